//! The admin listener: Prometheus `/metrics` and a liveness `/healthz`, plus graceful HTTP serving.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::Shutdown;

/// The `[admin]` section: where `/metrics` is served, and how long shutdown may drain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin listener (`/metrics`, `/healthz`); keep it off the public interface.
    pub listen: Option<SocketAddr>,
    /// How long in-flight requests may finish after SIGTERM before connections are closed.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl AdminConfig {
    pub fn with_listen(listen: &str) -> Self {
        Self {
            listen: listen.parse().ok(),
            ..Self::default()
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: None,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Text exposition of every metric registered in the default Prometheus registry, with the
/// standard `process_*` ones (CPU seconds, resident and virtual memory, open and maximum file
/// descriptors, start time) that dashboards and alerts expect of every target.
pub fn render_metrics() -> String {
    static PROCESS: std::sync::Once = std::sync::Once::new();
    PROCESS.call_once(|| {
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            if let Err(e) = prometheus::register(Box::new(process)) {
                tracing::warn!("process metrics unavailable: {e}");
            }
        }
    });
    let families = prometheus::gather();
    prometheus::TextEncoder::new()
        .encode_to_string(&families)
        .unwrap_or_else(|e| format!("# error: {e}\n"))
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        render_metrics(),
    )
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

/// `/metrics` and `/healthz`, to be merged into a service's admin router or served alone.
pub fn router() -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
}

/// Serves `app` on `listener` until `shutdown`, then lets in-flight requests finish for at most
/// `drain`; every connection has the default deadlines ([`crate::http::Timeouts`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: Shutdown,
    drain: Duration,
) -> io::Result<()> {
    crate::http::serve(listener, app, shutdown, drain, crate::http::Timeouts::default()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_metrics_and_stops_on_shutdown() {
        let c = prometheus::register_int_counter!("service_selftest_total", "test counter").unwrap();
        c.inc();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(serve(
            listener,
            router(),
            shutdown.clone(),
            Duration::from_secs(2),
        ));

        let body = http_get(addr, "/metrics").await;
        assert!(body.contains("service_selftest_total 1"), "{body}");
        assert!(http_get(addr, "/healthz").await.ends_with("ok\n"));

        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    async fn http_get(addr: SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        out
    }
}
