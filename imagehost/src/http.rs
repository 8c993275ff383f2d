//! Routes: the OH health routes, the load-balancer readiness route (D14) and the 404 fallback.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use blobstore::ListRequest;
use serde_json::json;

use crate::metrics::{FILESERVER_PROBES, RESPONSES};
use crate::stores::Stores;
use crate::Config;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    #[allow(dead_code)]
    config: Config,
    stores: Stores,
    version: String,
}

impl AppState {
    pub fn new(config: Config, stores: Stores) -> Self {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let version = format!("{}-{}", env!("CARGO_PKG_VERSION"), started);
        Self {
            inner: Arc::new(Inner {
                config,
                stores,
                version,
            }),
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(healthcheck))
        .route("/.well-known/healthcheck.json", get(healthcheck))
        .route("/healthcheck", get(readiness))
        .fallback(not_found)
        .with_state(state)
}

/// OH's health body: `{"ok":true,"version":…,"date":…}` with `Cache-Control: no-cache`.
async fn healthcheck(State(state): State<AppState>) -> Response {
    RESPONSES.with_label_values(&["healthcheck", "200"]).inc();
    let date = humanize_now();
    (
        [(header::CACHE_CONTROL, "no-cache")],
        Json(json!({"ok": true, "version": state.inner.version, "date": date})),
    )
        .into_response()
}

/// D14: 200 when at least one fileserver answers, 503 otherwise; the body names each one's state.
async fn readiness(State(state): State<AppState>) -> Response {
    let probes = state.inner.stores.servers.iter().map(|fs| async move {
        let req = ListRequest {
            max_keys: 1,
            ..ListRequest::default()
        };
        let ok = tokio::time::timeout(Duration::from_secs(2), fs.uploads.list(&req)).await;
        let state = match ok {
            Ok(Ok(_)) => "ok",
            Ok(Err(_)) => "unavailable",
            Err(_) => "timeout",
        };
        FILESERVER_PROBES
            .with_label_values(&[fs.name.as_str(), state])
            .inc();
        (fs.name.clone(), state)
    });
    let results = futures::future::join_all(probes).await;
    let up = results.iter().any(|(_, s)| *s == "ok");
    let status = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    RESPONSES.with_label_values(&["readiness", status.as_str()]).inc();
    let fileservers: serde_json::Map<String, serde_json::Value> =
        results.into_iter().map(|(n, s)| (n, json!(s))).collect();
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"ok": up, "fileservers": fileservers})),
    )
        .into_response()
}

async fn not_found() -> Response {
    RESPONSES.with_label_values(&["fallback", "404"]).inc();
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": {"name": "not_found"}})),
    )
        .into_response()
}

/// RFC 3339 UTC time with milliseconds, as JavaScript's `Date.toISOString()` prints it.
fn humanize_now() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_414), (2025, 11, 22));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
