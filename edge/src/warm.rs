//! Warm boot: a new (or restarted) edge asks a peer edge for its hot list (`GET /hot.json` on the
//! peer's admin listener) and requests those objects from itself, on its own listener, so they
//! take the normal path (cache, coalescing, node choice) and land in its cache before clients ask
//! for them. The preload runs beside client traffic, at `warm.rate` requests per second and
//! `warm.concurrency` at once, most requested first; its progress is in `/stats.json`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use parking_lot::Mutex;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::WarmConfig;
use crate::hot::Counted;
use crate::metrics::WARM_REQUESTS;

/// Where a preload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Off = 0,
    Listing = 1,
    Warming = 2,
    Done = 3,
    /// No peer answered with a list: the edge fills from client traffic alone.
    NoPeer = 4,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Off => "off",
            Phase::Listing => "listing",
            Phase::Warming => "warming",
            Phase::Done => "done",
            Phase::NoPeer => "no_peer",
        }
    }

    fn from_u8(v: u8) -> Phase {
        [
            Phase::Off,
            Phase::Listing,
            Phase::Warming,
            Phase::Done,
            Phase::NoPeer,
        ]
        .get(v as usize)
        .copied()
        .unwrap_or(Phase::Off)
    }
}

/// The preload's progress, read by `/stats.json`.
#[derive(Default)]
pub struct Progress {
    phase: AtomicU8,
    pub listed: AtomicU64,
    pub fetched: AtomicU64,
    pub failed: AtomicU64,
    pub peer: Mutex<Option<String>>,
}

impl Progress {
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    fn set(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }
}

/// The `Accept` a preload request sends for a hot-list `Accept` class, so a variant lands in the
/// class it was asked for in.
pub fn accept_for(class: &str) -> &'static str {
    match class {
        "avif,webp" => "image/avif,image/webp,*/*",
        "avif" => "image/avif,*/*",
        "webp" => "image/webp,*/*",
        _ => "*/*",
    }
}

/// Where this edge's own listener is reached from this host.
fn own(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port()),
        _ => listen,
    }
}

pub struct Warmer {
    pub config: WarmConfig,
    /// This edge's plain-HTTP listener, where the preload requests go.
    pub listen: SocketAddr,
    pub progress: Arc<Progress>,
}

#[async_trait]
impl BackgroundService for Warmer {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            _ = preload(&self.config, self.listen, &self.progress) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn preload(w: &WarmConfig, listen: SocketAddr, progress: &Progress) {
    progress.set(Phase::Listing);
    let client = match reqwest::Client::builder()
        .timeout(w.list_timeout.max(Duration::from_secs(30)))
        .no_proxy()
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "warm boot: no HTTP client");
            progress.set(Phase::NoPeer);
            return;
        }
    };
    let Some((peer, list)) = hot_list(&client, &w.peers, w.keys, w.list_timeout).await else {
        tracing::warn!(peers = ?w.peers, "warm boot: no peer answered; filling from client traffic");
        progress.set(Phase::NoPeer);
        return;
    };
    tracing::info!(%peer, objects = list.len(), rate = w.rate, "warm boot: preloading the peer's hot set");
    progress.listed.store(list.len() as u64, Ordering::Relaxed);
    *progress.peer.lock() = Some(peer);
    progress.set(Phase::Warming);
    let target = own(listen);
    let ticker = tokio::sync::Mutex::new(tokio::time::interval(Duration::from_secs_f64(
        1.0 / w.rate as f64,
    )));
    futures::stream::iter(list)
        .map(|c| {
            let (client, ticker) = (&client, &ticker);
            async move {
                ticker.lock().await.tick().await;
                let ok = fetch(client, target, &c).await;
                let outcome = if ok { "fetched" } else { "failed" };
                WARM_REQUESTS.with_label_values(&[outcome]).inc();
                let counter = if ok { &progress.fetched } else { &progress.failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        })
        .buffer_unordered(w.concurrency)
        .collect::<()>()
        .await;
    tracing::info!(
        fetched = progress.fetched.load(Ordering::Relaxed),
        failed = progress.failed.load(Ordering::Relaxed),
        "warm boot: preload done"
    );
    progress.set(Phase::Done);
}

/// The first peer's hot list that answers.
async fn hot_list(
    client: &reqwest::Client,
    peers: &[String],
    keys: usize,
    timeout: Duration,
) -> Option<(String, Vec<Counted>)> {
    #[derive(serde::Deserialize)]
    struct Listed {
        keys: Vec<Counted>,
    }
    for peer in peers {
        let url = format!("{}/hot.json?limit={keys}", peer.trim_end_matches('/'));
        // At most this much is read of a peer's answer (each entry is bounded by the hot list).
        let cap = keys.saturating_mul(crate::hot::MAX_URL + crate::hot::MAX_HOST + 128) + (64 << 10);
        let got = async {
            let mut resp = client
                .get(&url)
                .timeout(timeout)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| e.to_string())?;
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
                if body.len() + chunk.len() > cap {
                    return Err(format!("answer over {cap} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            serde_json::from_slice::<Listed>(&body).map_err(|e| e.to_string())
        }
        .await;
        match got {
            Ok(mut l) => {
                l.keys.truncate(keys);
                return Some((peer.clone(), l.keys));
            }
            Err(e) => tracing::warn!(%peer, error = %e, "warm boot: peer's hot list unavailable"),
        }
    }
    None
}

/// Requests one object from this edge as a client would, reading the whole answer.
async fn fetch(client: &reqwest::Client, target: SocketAddr, c: &Counted) -> bool {
    // Only a path on this edge: a peer's `@host/…` must not name another server.
    if !c.key.url.starts_with('/') {
        tracing::warn!(url = %c.key.url, "warm boot: not a path; skipped");
        return false;
    }
    let resp = client
        .get(format!("http://{target}{}", c.key.url))
        .header(http::header::HOST, &c.key.host)
        .header(http::header::ACCEPT, accept_for(&c.key.accept))
        .send()
        .await;
    match resp {
        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
        Ok(r) => {
            tracing::debug!(url = %c.key.url, status = %r.status(), "warm boot: not preloaded");
            false
        }
        Err(e) => {
            tracing::debug!(url = %c.key.url, error = %e, "warm boot: not preloaded");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_classes_map_back_to_headers_of_the_same_class() {
        for class in ["avif,webp", "avif", "webp", ""] {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::ACCEPT, accept_for(class).parse().unwrap());
            assert_eq!(crate::cache::policy::accept_bucket(&h), class);
        }
    }

    #[test]
    fn own_listener_is_reached_on_loopback_when_bound_to_all() {
        assert_eq!(
            own("0.0.0.0:80".parse().unwrap()),
            "127.0.0.1:80".parse().unwrap()
        );
        assert_eq!(own("[::]:80".parse().unwrap()), "[::1]:80".parse().unwrap());
        assert_eq!(
            own("10.0.1.5:80".parse().unwrap()),
            "10.0.1.5:80".parse().unwrap()
        );
        assert_eq!(Phase::from_u8(Phase::Done as u8), Phase::Done);
    }
}
