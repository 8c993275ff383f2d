//! The one-shot commands talking to a running daemon through its API (`POST /sync`, `POST /scrub`,
//! `GET /status`), so they work beside it: the daemon holds the queue's lock, and it is the one
//! whose workers carry the work out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde_json::Value;

use crate::config::Config;
use crate::queue::now_ms;
use crate::report::Reporter;

/// A daemon answering on `server.listen` with this config's queue.
pub struct Daemon {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
}

/// Where to reach a daemon that listens on `listen` (an unspecified address means this host).
fn reach(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port()),
        _ => listen,
    }
}

impl Daemon {
    /// The daemon of this config, if one runs: it must answer `/status` and report the same
    /// queue (another service on the port, or another blobsync, is not ours).
    pub async fn find(config: &Config) -> Option<Daemon> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .ok()?;
        let d = Daemon {
            base: format!("http://{}", reach(config.server.listen)),
            token: config.server.token.as_ref().map(|t| t.expose().to_string()),
            client,
        };
        let status = d.status().await.ok()?;
        let ours = crate::queue::identity(&config.queue.path);
        (status["queue"].as_str() == Some(ours.as_str())).then_some(d)
    }

    pub async fn status(&self) -> Result<Value, String> {
        let resp = self
            .client
            .get(format!("{}/status", self.base))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        resp.json().await.map_err(|e| e.to_string())
    }

    /// Every key on the daemon's takedown list.
    pub async fn takedown_keys(&self) -> Result<Vec<String>, String> {
        let token = self.token.clone().map(service::Secret::new);
        let feed = service::takedown_feed::Feed::new(&format!("{}/takedowns", self.base), token)?;
        let (mut keys, mut since) = (Vec::new(), 0);
        loop {
            let page = feed.page(since).await?;
            if page.keys.is_empty() {
                return Ok(keys);
            }
            keys.extend(page.keys);
            since = page.last;
        }
    }

    async fn post(&self, path: &str) -> Result<Value, String> {
        let mut rb = self.client.post(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        let resp = rb.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or_default();
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("{path}: {status} {body}"))
        }
    }

    /// Asks for an anti-entropy pass, waits for one that started after the request to finish
    /// and for the copies it queued to be tried; returns the backlog left.
    pub async fn sync(&self, reporter: &mut Reporter) -> Result<u64, String> {
        let asked = now_ms();
        self.post("/sync").await?;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let s = self.status().await?;
            let sync = &s["sync"];
            let num = |v: &Value| v.as_u64().unwrap_or(0);
            let (started, finished) = (num(&sync["started_ms"]), num(&sync["finished_ms"]));
            let backlog = num(&s["backlog"]);
            let queued = num(&sync["queued"]);
            reporter.progress(
                crate::report::fraction(queued.saturating_sub(backlog), backlog),
                &format!(
                    "daemon: scanned {} · queued {} · left {backlog} · {:.0}s",
                    num(&sync["scanned"]),
                    num(&sync["queued"]),
                    reporter.elapsed().as_secs_f64()
                ),
            );
            if started >= asked && finished >= started && num(&s["untried"]) == 0 {
                reporter.finish(&format!(
                    "sync finished in {:.1}s (by the running daemon): {} scanned, {} queued, {backlog} waiting (retried by the daemon)",
                    reporter.elapsed().as_secs_f64(),
                    num(&sync["scanned"]),
                    num(&sync["queued"]),
                ));
                return Ok(backlog);
            }
        }
    }

    /// Asks for a scrub pass (after the one running, if any, so the pass covers everything from
    /// now), waits for it and for the repairs it queued; returns (corrupt found, backlog left,
    /// fileservers it could not check).
    pub async fn scrub(&self, reporter: &mut Reporter) -> Result<(u64, u64, Vec<String>), String> {
        let num = |v: &Value| v.as_u64().unwrap_or(0);
        let mut asked = now_ms();
        let mut answer = self.post("/scrub").await?;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let s = self.status().await?;
            let scrub = &s["scrub"];
            let running = scrub["running"].as_bool().unwrap_or(false);
            if answer["scrub"] == "running" {
                if running {
                    reporter.update("daemon: waiting for the scrub pass already running");
                    continue;
                }
                asked = now_ms();
                answer = self.post("/scrub").await?;
                continue;
            }
            let (checked, corrupt) = (num(&scrub["checked"]), num(&scrub["corrupt"]));
            let mb = num(&scrub["bytes"]) as f64 / 1e6;
            reporter.update(&format!(
                "daemon: scrub checked {checked} · corrupt {corrupt} · {mb:.1} MB · {:.1} MB/s",
                mb / reporter.elapsed().as_secs_f64().max(0.001)
            ));
            let done = scrub["last_complete_ms"].as_u64().is_some_and(|t| t >= asked);
            if done && !running && num(&s["untried"]) == 0 {
                let backlog = num(&s["backlog"]);
                let unreachable: Vec<String> = scrub["last_unreachable"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                reporter.finish(&format!(
                    "scrub finished in {:.1}s (by the running daemon): {checked} copies checked, {corrupt} corrupt (queued for repair), {backlog} waiting{}",
                    reporter.elapsed().as_secs_f64(),
                    crate::report::not_checked(&unreachable)
                ));
                return Ok((corrupt, backlog, unreachable));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listener_is_reached_on_loopback() {
        let cases = [
            ("0.0.0.0:8900", "127.0.0.1:8900"),
            ("[::]:8900", "[::1]:8900"),
            ("10.0.0.5:8900", "10.0.0.5:8900"),
        ];
        for (listen, want) in cases {
            assert_eq!(reach(listen.parse().unwrap()).to_string(), want);
        }
    }
}
