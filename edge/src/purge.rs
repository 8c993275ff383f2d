//! `PURGE <url>` removes one URL (every variant, memory and disk); `BAN <prefix>` removes every URL
//! under a path prefix, and `BAN /` with `X-Ban-Regex: <re>` every URL matching a regex. Allowed
//! from `purge.allow` networks or with the purge token; a request that did not come from a peer is
//! forwarded to every `purge.peers` edge, so a takedown clears the whole cluster.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use pingora::cache::key::CacheHashKey;
use pingora::cache::CacheKey;
use pingora::http::ResponseHeader;
use pingora::prelude::Session;
use regex::bytes::{Regex, RegexBuilder};

use crate::cache::{key, Cache};
use crate::config::PurgeConfig;
use crate::metrics;
use crate::net::{any_contains, Cidr};

/// Set on purges one edge forwards to another, so they are not forwarded again.
pub const FORWARDED: &str = "x-edge-purge-forwarded";

#[derive(Debug)]
pub enum Action {
    Purge {
        host: String,
        path: String,
        query: Option<String>,
    },
    BanPrefix(String),
    BanRegex(Regex),
}

impl Action {
    fn kind(&self) -> &'static str {
        match self {
            Action::Purge { .. } => "purge",
            Action::BanPrefix(_) => "ban_prefix",
            Action::BanRegex(_) => "ban_regex",
        }
    }
}

/// Whether `method` is one of ours.
pub fn is_purge_method(method: &str) -> bool {
    method.eq_ignore_ascii_case("PURGE") || method.eq_ignore_ascii_case("BAN")
}

/// Reads the action from the request line and headers.
pub fn parse(
    method: &str,
    host: &str,
    path: &str,
    query: Option<&str>,
    regex: Option<&str>,
) -> Result<Action, String> {
    if method.eq_ignore_ascii_case("PURGE") {
        return Ok(Action::Purge {
            host: host.to_string(),
            path: path.to_string(),
            query: query.map(str::to_string),
        });
    }
    match regex {
        Some(re) => RegexBuilder::new(re)
            .size_limit(1 << 20)
            .build()
            .map(Action::BanRegex)
            .map_err(|e| format!("X-Ban-Regex: {e}")),
        None if path == "/" || path.is_empty() => {
            Err("BAN / would remove everything: give a longer prefix, or X-Ban-Regex".into())
        }
        None => Ok(Action::BanPrefix(key::url_part(path, query))),
    }
}

pub struct Purger {
    allow: Vec<Cidr>,
    token: Option<String>,
    peers: Vec<SocketAddr>,
    client: reqwest::Client,
    cache: Option<&'static Cache>,
}

impl Purger {
    pub fn new(config: &PurgeConfig, cache: Option<&'static Cache>) -> Result<Purger, String> {
        let allow = config.allow.iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
        let peers = config
            .peers
            .iter()
            .map(|s| s.parse().map_err(|_| format!("purge.peers: {s}")))
            .collect::<Result<_, _>>()?;
        let client = reqwest::Client::builder()
            .timeout(config.peer_timeout)
            .no_proxy()
            .build()
            .map_err(|e| format!("purge client: {e}"))?;
        let token = config
            .token
            .as_ref()
            .map(|t| t.expose().to_string())
            .filter(|t| !t.is_empty());
        Ok(Purger {
            allow,
            token,
            peers,
            client,
            cache,
        })
    }

    pub fn authorised(&self, peer: IpAddr, authorization: Option<&str>) -> bool {
        let token_ok = match (&self.token, authorization.and_then(|a| a.strip_prefix("Bearer "))) {
            (Some(want), Some(got)) => constant_time_eq(want.as_bytes(), got.trim().as_bytes()),
            _ => false,
        };
        token_ok || any_contains(&self.allow, peer)
    }

    /// Removes what `action` names from this edge's cache; how many objects.
    pub fn apply_local(&self, action: &Action) -> usize {
        let Some(cache) = self.cache else { return 0 };
        match action {
            Action::Purge { host, path, query } => {
                let primary = CacheKey::new(key::primary(host, path, query.as_deref()), "").primary_bin();
                cache.store.purge_primary(&primary)
            }
            Action::BanPrefix(prefix) => cache.store.ban(&|url| url.starts_with(prefix.as_bytes())),
            Action::BanRegex(re) => cache.store.ban(&|url| re.is_match(url)),
        }
    }

    /// Answers a PURGE or BAN request completely (the caller returns `Ok(true)` from request_filter).
    pub async fn handle(&self, session: &mut Session, peer: IpAddr) -> pingora::Result<()> {
        let req = session.req_header();
        let header = |n: &str| {
            req.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let method = req.method.as_str().to_string();
        let host = header("host")
            .or_else(|| req.uri.authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let path = req.uri.path().to_string();
        let query = req.uri.query().map(str::to_string);
        let regex = header("x-ban-regex");
        let forwarded = header(FORWARDED).is_some();
        if !self.authorised(peer, header("authorization").as_deref()) {
            metrics::PURGES
                .with_label_values(&[&method.to_ascii_lowercase(), "forbidden"])
                .inc();
            return respond(session, 403, r#"{"error":"forbidden","message":"purge is allowed only from purge.allow networks or with the purge token"}"#.into()).await;
        }
        let action = match parse(&method, &host, &path, query.as_deref(), regex.as_deref()) {
            Ok(a) => a,
            Err(msg) => {
                let body = serde_json::json!({"error": "bad_request", "message": msg}).to_string();
                return respond(session, 400, body).await;
            }
        };
        let removed = self.apply_local(&action);
        let peers = if forwarded {
            Vec::new()
        } else {
            self.forward(&method, &host, &path, query.as_deref(), regex.as_deref())
                .await
        };
        let all_peers_ok = peers.iter().all(|(_, r)| r.is_ok());
        let outcome = if removed > 0 { "removed" } else { "not_found" };
        metrics::PURGES.with_label_values(&[action.kind(), outcome]).inc();
        tracing::info!(kind = action.kind(), host, path, removed, forwarded, "purge");
        let peer_json: serde_json::Map<String, serde_json::Value> = peers
            .into_iter()
            .map(|(p, r)| {
                (
                    p.to_string(),
                    r.map_or_else(serde_json::Value::from, serde_json::Value::from),
                )
            })
            .collect();
        let body = serde_json::json!({"removed": removed, "peers": peer_json}).to_string();
        // One URL not in the cache is a 404 (as Varnish answers); a ban always succeeds.
        let status = match (&action, removed, all_peers_ok) {
            (_, _, false) => 502,
            (Action::Purge { .. }, 0, _) => 404,
            _ => 200,
        };
        respond(session, status, body).await
    }

    /// Sends the same purge to every peer edge; each peer's answer status (or the error).
    async fn forward(
        &self,
        method: &str,
        host: &str,
        path: &str,
        query: Option<&str>,
        regex: Option<&str>,
    ) -> Vec<(SocketAddr, Result<u16, String>)> {
        let Ok(m) = reqwest::Method::from_bytes(method.as_bytes()) else {
            return Vec::new();
        };
        let target = match query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        };
        let sends = self.peers.iter().map(|peer| {
            let mut rb = self
                .client
                .request(m.clone(), format!("http://{peer}{target}"))
                .header("host", host)
                .header(FORWARDED, "1");
            if let Some(t) = &self.token {
                rb = rb.bearer_auth(t);
            }
            if let Some(re) = regex {
                rb = rb.header("x-ban-regex", re);
            }
            async move {
                let r = match rb.send().await {
                    Ok(resp) if resp.status().as_u16() < 500 && resp.status().as_u16() != 403 => {
                        Ok(resp.status().as_u16())
                    }
                    Ok(resp) => Err(format!("status {}", resp.status())),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = &r {
                    tracing::warn!(%peer, error = %e, "purge not applied on peer edge");
                }
                (*peer, r)
            }
        });
        futures::future::join_all(sends).await
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Writes a complete JSON response.
pub async fn respond(session: &mut Session, status: u16, body: String) -> pingora::Result<()> {
    let mut h = ResponseHeader::build(status, Some(3))?;
    h.insert_header("Content-Type", "application/json")?;
    h.insert_header("Content-Length", body.len().to_string())?;
    h.insert_header("Cache-Control", "no-store")?;
    session.write_response_header(Box::new(h), false).await?;
    session.write_response_body(Some(Bytes::from(body)), true).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        assert!(matches!(
            parse("PURGE", "h", "/DQm1/a.jpg", None, None),
            Ok(Action::Purge { .. })
        ));
        match parse("BAN", "h", "/p/", Some("b=2&a=1"), None) {
            Ok(Action::BanPrefix(p)) => assert_eq!(p, "/p/?a=1&b=2"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse("BAN", "h", "/DQm", None, None), Ok(Action::BanPrefix(p)) if p == "/DQm"));
        assert!(matches!(
            parse("ban", "h", "/", None, Some("^/DQm[a-z]+")),
            Ok(Action::BanRegex(_))
        ));
        assert!(parse("BAN", "h", "/", None, None)
            .unwrap_err()
            .contains("would remove everything"));
        assert!(parse("BAN", "h", "/", None, Some("("))
            .unwrap_err()
            .contains("X-Ban-Regex"));
        assert!(is_purge_method("purge") && is_purge_method("BAN") && !is_purge_method("GET"));
    }

    #[test]
    fn access_table() {
        let c = PurgeConfig {
            token: Some(service::Secret::new("s3cret")),
            ..PurgeConfig::default()
        };
        let p = Purger::new(&c, None).unwrap();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let remote: IpAddr = "203.0.113.9".parse().unwrap();
        assert!(p.authorised(local, None));
        assert!(!p.authorised(remote, None));
        assert!(!p.authorised(remote, Some("Bearer wrong")));
        assert!(p.authorised(remote, Some("Bearer s3cret")));
        assert!(!p.authorised(remote, Some("s3cret")));
    }
}
