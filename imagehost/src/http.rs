//! The router, in OH's registration order (§1.1), and what every response carries (§1.2):
//! `X-Request-Id`, `X-Content-Type-Options: nosniff`, CORS reflecting `Origin` with `Vary: Origin`,
//! and 204 preflights. Methods a path does not route fall through to the JSON 404, never 405.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path as Params, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::metrics::{FILESERVER_PROBES, PROXY_RESPONSES, RESPONSES};
use crate::proxy::profile;
pub use crate::state::AppState;
use crate::{proxy, serve, upload, ApiError};

pub fn router(state: AppState) -> Router {
    let max_body = state.inner().config.upload.max_image_size as usize + 64 * 1024;
    Router::new()
        .route("/", get(healthcheck).fallback(not_found))
        .route(
            "/.well-known/healthcheck.json",
            get(healthcheck).fallback(not_found),
        )
        .route("/healthcheck", get(readiness).fallback(not_found))
        .route("/u/{username}/avatar", get(profile::avatar).fallback(not_found))
        .route(
            "/u/{username}/avatar/{size}",
            get(profile::avatar_sized).fallback(not_found),
        )
        .route("/u/{username}/cover", get(profile::cover).fallback(not_found))
        .route(
            "/cs/{username}/{signature}",
            post(upload::checksum).fallback(not_found),
        )
        .route("/hs/{token}", post(upload::hivesigner).fallback(not_found))
        .route(
            "/{first}/{second}",
            post(upload::signed).get(get_two_segments).fallback(not_found),
        )
        .route("/{hash}", get(get_one_segment).fallback(not_found))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(legacy_redirects))
        .layer(middleware::from_fn(common_headers))
        .with_state(state)
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request id, nosniff and CORS on every response; CORS preflights answered here.
async fn common_headers(req: Request, next: Next) -> Response {
    let request_id = ["x-amzn-trace-id", "x-request-id"]
        .iter()
        .find_map(|h| req.headers().get(*h).cloned())
        .unwrap_or_else(|| {
            HeaderValue::from_str(&format!("dev-{}", rand::random::<u32>()))
                .unwrap_or(HeaderValue::from_static("dev-0"))
        });
    let origin = req.headers().get(header::ORIGIN).cloned();
    let preflight =
        req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut resp = if preflight {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET,POST,OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Content-Type,Authorization"),
        );
        r
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    h.insert(REQUEST_ID.clone(), request_id);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    resp
}

/// `GET /p/:url` (route 10) and `GET /:hash/:filename` (route 11) share a shape; `POST /p/…` is
/// an upload by the user `p` (route 7), as in OH. Segments are taken raw and decoded here: the
/// filename is never read (OH ignores it), so bytes that are not UTF-8 there still serve the image.
async fn get_two_segments(
    state: State<AppState>,
    uri: Uri,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    peer: Option<axum::Extension<service::http::Peer>>,
) -> Response {
    // From the URI itself: axum's path extractors refuse a segment that is not UTF-8.
    let mut segments = uri.path().split('/').skip(1).map(decoded);
    let (first, second) = (
        segments.next().unwrap_or_default(),
        segments.next().unwrap_or_default(),
    );
    if first == "p" {
        let peer = peer.map(|axum::Extension(p)| p.0.ip());
        return proxy::handle(state, Params(second), RawQuery(query), headers, peer).await;
    }
    serve::serve(state, first, method, headers).await
}

/// `GET /:hash`, decoded as above.
async fn get_one_segment(state: State<AppState>, uri: Uri, method: Method, headers: HeaderMap) -> Response {
    let hash = uri.path().split('/').nth(1).map(decoded).unwrap_or_default();
    serve::serve(state, hash, method, headers).await
}

/// A path segment percent-decoded; bytes that are not UTF-8 become U+FFFD (no key has them).
fn decoded(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

/// Route 9, `GET /{W}x{H}/{url}`: the URL spans any number of segments, so it is matched on the
/// raw request before routing (no earlier GET route can match such a path).
async fn legacy_redirects(req: Request, next: Next) -> Response {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        let raw = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
        if let Some(resp) = proxy::legacy::redirect(raw, accept) {
            PROXY_RESPONSES
                .with_label_values(&["legacy", resp.status().as_str()])
                .inc();
            return resp;
        }
    }
    next.run(req).await
}

/// OH's health body: `{"ok":true,"version":…,"date":…}` with `Cache-Control: no-cache`.
async fn healthcheck(State(state): State<AppState>) -> Response {
    RESPONSES.with_label_values(&["healthcheck", "200"]).inc();
    (
        [(header::CACHE_CONTROL, "no-cache")],
        Json(json!({"ok": true, "version": state.inner().version, "date": iso_now()})),
    )
        .into_response()
}

/// D14: 200 when at least one fileserver answers, 503 otherwise; the body names each one's state.
async fn readiness(State(state): State<AppState>) -> Response {
    // A node that has never had the takedown list would serve what the cluster took down.
    let s = state.inner();
    if s.config.takedowns.url.is_some() && !s.takedowns.pulled() {
        RESPONSES.with_label_values(&["readiness", "503"]).inc();
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CACHE_CONTROL, "no-store")],
            Json(json!({"ok": false, "takedowns": "never pulled from takedowns.url yet"})),
        )
            .into_response();
    }
    let probes = state.inner().stores.servers.iter().map(|fs| async move {
        let state = match tokio::time::timeout(Duration::from_secs(2), fs.uploads.probe()).await {
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
    ApiError::NotFound.into_response()
}

/// RFC 3339 UTC time with milliseconds, as JavaScript's `Date.toISOString()` prints it.
fn iso_now() -> String {
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
