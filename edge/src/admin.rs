//! The admin listener: Prometheus `/metrics`, `/healthz`, and a live stats page like HAProxy's
//! (`/stats`: graphs of the last minutes, backends and their health, the cache tiers; drawn from
//! `/stats.json`, which scripts read too). Bound with SO_REUSEPORT so a process taking over by
//! `--upgrade` can listen while the old one drains.

use std::net::SocketAddr;
use std::sync::Arc;

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use axum::extract::State as AxumState;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::metrics;
use crate::state::State;
use crate::stats::Stats;

pub struct Admin {
    pub listen: SocketAddr,
    pub state: Arc<State>,
}

fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let s = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    s.set_reuseaddr(true)?;
    s.set_reuseport(true)?;
    s.bind(addr)?;
    s.listen(1024)
}

#[async_trait]
impl BackgroundService for Admin {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let listener = match bind(self.listen) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(listen = %self.listen, error = %e, "admin listener failed to bind");
                return;
            }
        };
        tracing::info!(listen = %self.listen, "admin listening (/metrics, /stats, /healthz)");
        let admin = Arc::new(AdminState {
            state: self.state.clone(),
            stats: Stats::default(),
        });
        let mut watch = shutdown.clone();
        tokio::spawn(service::stats::sample_forever(
            admin.stats.history(),
            async move {
                let _ = watch.changed().await;
            },
            crate::stats::sampler(),
        ));
        let app = Router::new()
            .route("/metrics", get(prometheus_text))
            .route("/stats", get(|| async { service::stats::html() }))
            .route("/stats.json", get(stats_json))
            .route("/hot.json", get(hot_json))
            .route("/healthz", get(|| async { "ok\n" }))
            .with_state(admin);
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
            tracing::error!(error = %e, "admin listener failed");
        }
    }
}

/// What the admin routes read: the edge's state and the stats page's samples.
struct AdminState {
    state: Arc<State>,
    stats: Stats,
}

async fn prometheus_text(AxumState(admin): AxumState<Arc<AdminState>>) -> impl IntoResponse {
    refresh(&admin.state);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        service::admin::render_metrics(),
    )
}

/// The flat figures scripts read from `/stats.json`.
#[derive(serde::Serialize)]
struct Figures {
    backends: Vec<Backend>,
    hits: u64,
    misses: u64,
    stale: u64,
    hit_ratio: f64,
    coalesced_waits: u64,
    cache_memory_bytes: u64,
    cache_memory_limit: u64,
    cache_objects: usize,
    cache_evictions: usize,
    cache_disk_objects: usize,
    cache_disk_bytes: u64,
    /// The disk tier's index is still being loaded (lookups look on disk meanwhile).
    cache_disk_loading: bool,
    cache_disk_index_bytes: usize,
    client_connections: i64,
    warm: Warm,
}

/// This edge's preload from a peer (`[warm] peers`).
#[derive(serde::Serialize)]
struct Warm {
    phase: &'static str,
    peer: Option<String>,
    listed: u64,
    fetched: u64,
    failed: u64,
}

#[derive(serde::Serialize)]
struct Backend {
    addr: String,
    up: bool,
    errors: u64,
}

fn collect(state: &State) -> Figures {
    let count = |r: &str| metrics::CACHE.with_label_values(&[r]).get();
    let (hits, misses, stale) = (count("hit"), count("miss") + count("expired"), count("stale"));
    let served = hits + misses + stale;
    let backends = state
        .upstreams
        .health()
        .into_iter()
        .map(|(addr, up)| {
            let errors = metrics::upstream_errors(&addr);
            Backend { addr, up, errors }
        })
        .collect();
    let c = state.cache.map(|c| c.stats());
    Figures {
        backends,
        hits,
        misses,
        stale,
        hit_ratio: if served == 0 {
            0.0
        } else {
            (hits + stale) as f64 / served as f64
        },
        coalesced_waits: metrics::COALESCED.get(),
        cache_memory_bytes: c.map_or(0, |c| c.memory_bytes),
        cache_memory_limit: c.map_or(0, |c| c.memory_limit),
        cache_objects: c.map_or(0, |c| c.objects),
        cache_evictions: c.map_or(0, |c| c.evicted_items),
        cache_disk_objects: c.map_or(0, |c| c.disk_objects),
        cache_disk_bytes: c.map_or(0, |c| c.disk_bytes),
        cache_disk_loading: c.is_some_and(|c| c.disk_loading),
        cache_disk_index_bytes: c.map_or(0, |c| c.disk_index_bytes),
        client_connections: metrics::CONNECTIONS.get(),
        warm: Warm {
            phase: state.warm.phase().name(),
            peer: state.warm.peer.lock().clone(),
            listed: state.warm.listed.load(Ordering::Relaxed),
            fetched: state.warm.fetched.load(Ordering::Relaxed),
            failed: state.warm.failed.load(Ordering::Relaxed),
        },
    }
}

#[derive(serde::Deserialize)]
struct HotQuery {
    limit: Option<usize>,
}

/// The most requested objects, most first (`?limit=`, at most `warm.hot_keys`): what a new edge
/// preloads from this one.
async fn hot_json(
    AxumState(admin): AxumState<Arc<AdminState>>,
    axum::extract::Query(q): axum::extract::Query<HotQuery>,
) -> impl IntoResponse {
    let limit = q.limit.unwrap_or(1000).min(admin.state.config.warm.hot_keys);
    Json(serde_json::json!({ "keys": admin.state.hot.top(limit) }))
}

/// The figures scripts read (flat), and under `page` what the stats page draws.
async fn stats_json(AxumState(admin): AxumState<Arc<AdminState>>) -> impl IntoResponse {
    refresh(&admin.state);
    let mut json = serde_json::to_value(collect(&admin.state)).unwrap_or_default();
    json["page"] = admin.stats.page(&admin.state);
    ([(header::CACHE_CONTROL, "no-store")], Json(json))
}

/// Copies cache sizes and backend health into their gauges.
fn refresh(state: &State) {
    if let Some(c) = state.cache {
        let s = c.stats();
        metrics::CACHE_BYTES.set(s.memory_bytes as i64);
        metrics::CACHE_OBJECTS.set(s.objects as i64);
        metrics::CACHE_DISK_BYTES.set(s.disk_bytes as i64);
        metrics::CACHE_DISK_INDEX_BYTES.set(s.disk_index_bytes as i64);
        metrics::CACHE_DISK_LOADING.set(s.disk_loading as i64);
        // The eviction manager counts from start; the counter follows it, each step once
        // however many scrapes run at a time.
        static SEEN: AtomicU64 = AtomicU64::new(0);
        let total = s.evicted_items as u64;
        let before = SEEN.fetch_max(total, Ordering::Relaxed);
        // inc_by(0) too: the counter is exported (as 0) before the first eviction.
        metrics::CACHE_EVICTED.inc_by(total.saturating_sub(before));
    }
    for (addr, up) in state.upstreams.health() {
        metrics::BACKEND_UP.with_label_values(&[&addr]).set(up as i64);
    }
}
