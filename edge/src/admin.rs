//! The admin listener: Prometheus `/metrics`, `/healthz`, and a live HTML stats page like HAProxy's
//! (`/stats`: backends and their health, hit ratio, cache size; `/stats.json` for scripts). Bound
//! with SO_REUSEPORT so a process taking over by `--upgrade` can listen while the old one drains.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::State as AxumState;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::metrics;
use crate::State;

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
        let app = Router::new()
            .route("/metrics", get(prometheus_text))
            .route("/stats", get(stats_page))
            .route("/stats.json", get(stats_json))
            .route("/healthz", get(|| async { "ok\n" }))
            .with_state(self.state.clone());
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
            tracing::error!(error = %e, "admin listener failed");
        }
    }
}

async fn prometheus_text(AxumState(state): AxumState<Arc<State>>) -> impl IntoResponse {
    metrics::refresh(&state);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        service::admin::render_metrics(),
    )
}

#[derive(serde::Serialize)]
struct Stats {
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
    client_connections: i64,
}

#[derive(serde::Serialize)]
struct Backend {
    addr: String,
    up: bool,
    errors: u64,
}

fn collect(state: &State) -> Stats {
    let count = |r: &str| metrics::CACHE.with_label_values(&[r]).get();
    let (hits, misses, stale) = (count("hit"), count("miss") + count("expired"), count("stale"));
    let served = hits + misses + stale;
    let backends = state
        .upstreams
        .health()
        .into_iter()
        .map(|(addr, up)| {
            let errors = ["connect", "status", "proxy"]
                .iter()
                .map(|k| {
                    metrics::UPSTREAM_ERRORS
                        .with_label_values(&[addr.as_str(), k])
                        .get()
                })
                .sum();
            Backend { addr, up, errors }
        })
        .collect();
    let c = state.cache.map(|c| c.stats());
    Stats {
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
        client_connections: metrics::CONNECTIONS.get(),
    }
}

async fn stats_json(AxumState(state): AxumState<Arc<State>>) -> impl IntoResponse {
    Json(collect(&state))
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

async fn stats_page(AxumState(state): AxumState<Arc<State>>) -> impl IntoResponse {
    let s = collect(&state);
    let rows: String = s
        .backends
        .iter()
        .map(|b| {
            let (class, word) = if b.up { ("up", "UP") } else { ("down", "DOWN") };
            format!(
                "<tr class=\"{class}\"><td>{}</td><td>{word}</td><td>{}</td></tr>",
                b.addr, b.errors
            )
        })
        .collect();
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">\
<title>edge stats</title><style>body{{font:14px sans-serif;margin:2em}}table{{border-collapse:collapse}}\
td,th{{border:1px solid #999;padding:4px 10px}}tr.up td{{background:#cfc}}tr.down td{{background:#f99}}</style></head>\
<body><h1>edge</h1><h2>Backends</h2><table><tr><th>node</th><th>health</th><th>errors</th></tr>{rows}</table>\
<h2>Cache</h2><table><tr><th>hit ratio</th><td>{:.1} %</td></tr><tr><th>hits / misses / stale</th><td>{} / {} / {}</td></tr>\
<tr><th>coalesced waits</th><td>{}</td></tr><tr><th>memory</th><td>{} of {} ({} objects, {} evicted)</td></tr>\
<tr><th>disk tier</th><td>{} ({} objects)</td></tr><tr><th>client connections</th><td>{}</td></tr></table></body></html>",
        s.hit_ratio * 100.0, s.hits, s.misses, s.stale, s.coalesced_waits, mib(s.cache_memory_bytes), mib(s.cache_memory_limit),
        s.cache_objects, s.cache_evictions, mib(s.cache_disk_bytes), s.cache_disk_objects, s.client_connections
    ))
}
