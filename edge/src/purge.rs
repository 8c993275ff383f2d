//! `PURGE <url>` removes one URL (every variant, memory and disk) at once; `BAN <prefix>` bans
//! every URL under a path prefix, `BAN /` with `X-Ban-Regex: <re>` every URL matching a regex,
//! and `BAN /` with `X-Ban-Tag: <key> …` every answer tagged with a surrogate key (what a
//! takedown sends). A ban is recorded and answered at once and applied lazily ([`crate::cache::
//! bans`]), so no ban stalls serving. Allowed from `purge.allow` networks or with the purge token
//! (compared in constant time); a request that did not come from a peer is forwarded to every
//! `purge.peers` edge, so a takedown clears the whole cluster.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use pingora::cache::key::CacheHashKey;
use pingora::cache::CacheKey;
use pingora::http::ResponseHeader;
use pingora::prelude::Session;

use crate::cache::bans::{AddError, Condition, Spec};
use crate::cache::{key, Cache};
use crate::config::PurgeConfig;
use crate::metrics;
use service::net::{any_contains, Cidr};

/// Set on purges one edge forwards to another, so they are not forwarded again.
pub const FORWARDED: &str = "x-edge-purge-forwarded";
/// `BAN /` with this header bans every answer tagged with one of its keys (space separated).
pub const BAN_TAG: &str = "x-ban-tag";
pub const BAN_REGEX: &str = "x-ban-regex";

#[derive(Debug)]
pub enum Action {
    Purge {
        host: String,
        path: String,
        query: Option<String>,
    },
    Ban(Spec, Condition),
}

impl Action {
    fn kind(&self) -> &'static str {
        match self {
            Action::Purge { .. } => "purge",
            Action::Ban(spec, _) => spec.kind(),
        }
    }
}

/// What applying an action locally did.
enum Applied {
    Purged(usize),
    Banned(u64),
    Refused(u16, String),
}

/// Whether `method` is one of ours.
pub fn is_purge_method(method: &str) -> bool {
    method.eq_ignore_ascii_case("PURGE") || method.eq_ignore_ascii_case("BAN")
}

/// Reads the action from the request line and headers (`regex`: X-Ban-Regex, `tags`: X-Ban-Tag).
pub fn parse(
    method: &str,
    host: &str,
    path: &str,
    query: Option<&str>,
    regex: Option<&str>,
    tags: Option<&str>,
) -> Result<Action, String> {
    if method.eq_ignore_ascii_case("PURGE") {
        return Ok(Action::Purge {
            host: host.to_string(),
            path: path.to_string(),
            query: query.map(str::to_string),
        });
    }
    let spec = match (tags, regex) {
        (Some(_), Some(_)) => return Err("give X-Ban-Tag or X-Ban-Regex, not both".into()),
        (Some(t), None) => Spec::Tags(t.split_whitespace().map(str::to_string).collect()),
        (None, Some(re)) => Spec::Regex(re.to_string()),
        (None, None) if path == "/" || path.is_empty() => {
            return Err(
                "BAN / would remove everything: give a longer prefix, X-Ban-Regex or X-Ban-Tag".into(),
            )
        }
        (None, None) => Spec::Prefix(key::url_part(path, query)),
    };
    let condition = spec.compile()?;
    Ok(Action::Ban(spec, condition))
}

pub struct Purger {
    allow: Vec<Cidr>,
    token: Option<service::Secret>,
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
        let token = config.token.clone().filter(|t| !t.is_empty());
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
            (Some(want), Some(got)) => want.matches(got.trim()),
            _ => false,
        };
        token_ok || any_contains(&self.allow, peer)
    }

    /// Applies `action` to this edge's cache: a purge removes the URL's objects now; a ban is
    /// recorded (durably with a disk tier) and applied lazily. Both touch the disk (file
    /// deletes, the ban list's fsync), so they run on a blocking thread, never a proxy worker.
    async fn apply_local(&self, action: Action) -> Applied {
        let Some(cache) = self.cache else {
            return Applied::Purged(0);
        };
        tokio::task::spawn_blocking(move || apply(cache, action))
            .await
            .unwrap_or_else(|e| Applied::Refused(500, format!("purge not applied: {e}")))
    }
}

/// [`Purger::apply_local`]'s work, on a blocking thread.
fn apply(cache: &'static Cache, action: Action) -> Applied {
    match action {
        Action::Purge { host, path, query } => {
            let primary = CacheKey::new(key::primary(&host, &path, query.as_deref()), "").primary_bin();
            Applied::Purged(cache.store.purge_primary(&primary))
        }
        Action::Ban(spec, condition) => {
            let what = format!("{spec:?}");
            match cache.store.bans.add(spec, condition) {
                Ok(seq) => {
                    metrics::BANS_ACTIVE.set(cache.store.bans.active().len() as i64);
                    tracing::info!(seq, ban = %what, "ban recorded");
                    Applied::Banned(seq)
                }
                Err(AddError::TooMany) => Applied::Refused(
                    503,
                    format!(
                        "{} bans are still being applied; retry in a few seconds",
                        crate::cache::bans::ACTIVE_LIMIT
                    ),
                ),
                Err(AddError::Loading) => Applied::Refused(
                    503,
                    "the ban file was missing and the disk tier is still being indexed; retry when edge_cache_disk_loading is 0".into(),
                ),
                Err(AddError::Io(e)) => Applied::Refused(500, format!("ban not recorded: {e}")),
            }
        }
    }
}

impl Purger {
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
        let regex = header(BAN_REGEX);
        let tags = header(BAN_TAG);
        let forwarded = header(FORWARDED).is_some();
        if !self.authorised(peer, header("authorization").as_deref()) {
            metrics::PURGES
                .with_label_values(&[&method.to_ascii_lowercase(), "forbidden"])
                .inc();
            return respond(session, 403, r#"{"error":"forbidden","message":"purge is allowed only from purge.allow networks or with the purge token"}"#.into()).await;
        }
        let action = match parse(
            &method,
            &host,
            &path,
            query.as_deref(),
            regex.as_deref(),
            tags.as_deref(),
        ) {
            Ok(a) => a,
            Err(msg) => {
                metrics::PURGES
                    .with_label_values(&[&method.to_ascii_lowercase(), "refused"])
                    .inc();
                let body = serde_json::json!({"error": "bad_request", "message": msg}).to_string();
                return respond(session, 400, body).await;
            }
        };
        let kind = action.kind();
        let (mut body, outcome, status) = match self.apply_local(action).await {
            Applied::Purged(n) => (
                serde_json::json!({ "removed": n }),
                if n > 0 { "removed" } else { "not_found" },
                // One URL not in the cache is a 404, as Varnish answers.
                if n > 0 { 200 } else { 404 },
            ),
            Applied::Banned(seq) => (serde_json::json!({ "banned": seq }), "banned", 200),
            Applied::Refused(status, msg) => {
                metrics::PURGES.with_label_values(&[kind, "refused"]).inc();
                let body = serde_json::json!({"error": "unavailable", "message": msg}).to_string();
                return respond(session, status, body).await;
            }
        };
        let peers = if forwarded {
            Vec::new()
        } else {
            self.forward(
                &method,
                &host,
                &path,
                query.as_deref(),
                regex.as_deref(),
                tags.as_deref(),
            )
            .await
        };
        let all_peers_ok = peers.iter().all(|(_, r)| r.is_ok());
        metrics::PURGES.with_label_values(&[kind, outcome]).inc();
        tracing::info!(kind, host, path, outcome, forwarded, "purge");
        body["peers"] = peers
            .into_iter()
            .map(|(p, r)| {
                (
                    p.to_string(),
                    r.map_or_else(serde_json::Value::from, serde_json::Value::from),
                )
            })
            .collect::<serde_json::Map<String, serde_json::Value>>()
            .into();
        let status = if all_peers_ok { status } else { 502 };
        respond(session, status, body.to_string()).await
    }

    /// Sends the same purge to every peer edge; each peer's answer status (or the error).
    async fn forward(
        &self,
        method: &str,
        host: &str,
        path: &str,
        query: Option<&str>,
        regex: Option<&str>,
        tags: Option<&str>,
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
                rb = rb.bearer_auth(t.expose());
            }
            if let Some(re) = regex {
                rb = rb.header(BAN_REGEX, re);
            }
            if let Some(t) = tags {
                rb = rb.header(BAN_TAG, t);
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
            parse("PURGE", "h", "/DQm1/a.jpg", None, None, None),
            Ok(Action::Purge { .. })
        ));
        match parse("BAN", "h", "/p/", Some("b=2&a=1"), None, None) {
            Ok(Action::Ban(Spec::Prefix(p), _)) => assert_eq!(p, "/p/?a=1&b=2"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse("BAN", "h", "/DQm", None, None, None),
            Ok(Action::Ban(Spec::Prefix(p), _)) if p == "/DQm"
        ));
        assert!(matches!(
            parse("ban", "h", "/", None, Some("^/DQm[a-z]+"), None),
            Ok(Action::Ban(Spec::Regex(_), _))
        ));
        match parse("BAN", "h", "/", None, None, Some(" DQmA  Ub ")) {
            Ok(Action::Ban(Spec::Tags(t), _)) => assert_eq!(t, ["DQmA", "Ub"]),
            other => panic!("{other:?}"),
        }
        assert!(parse("BAN", "h", "/", None, None, None)
            .unwrap_err()
            .contains("would remove everything"));
        assert!(parse("BAN", "h", "/", None, Some("("), None)
            .unwrap_err()
            .contains("X-Ban-Regex"));
        assert!(parse("BAN", "h", "/", None, Some("x"), Some("t"))
            .unwrap_err()
            .contains("not both"));
        assert!(parse("BAN", "h", "/", None, Some(&"(a|b)*".repeat(2000)), None)
            .unwrap_err()
            .contains("limit"));
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
