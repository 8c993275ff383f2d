//! The router, in OH's registration order (§1.1), and what every response carries (§1.2):
//! `X-Request-Id`, `X-Content-Type-Options: nosniff`, CORS reflecting `Origin` with `Vary: Origin`,
//! and 204 preflights. Methods a path does not route fall through to the JSON 404, never 405.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path as Params, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use blobstore::ListRequest;
use serde_json::json;

use crate::auth::AccountSource;
use crate::blacklist::Blacklist;
use crate::fetch::Fetcher;
use crate::flight::Flights;
use crate::hotcache::HotCache;
use crate::metrics::{FILESERVER_PROBES, PROXY_RESPONSES, RESPONSES};
use crate::pipeline::Settings;
use crate::pool::Pool;
use crate::proxy::original::Original;
use crate::proxy::{profile, Variant};
use crate::quota::Quota;
use crate::stores::Stores;
use crate::{proxy, serve, upload, ApiError, Config};

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

pub struct Inner {
    pub config: Config,
    pub stores: Stores,
    pub accounts: AccountSource,
    pub blacklist: Arc<Blacklist>,
    pub quota: Quota,
    pub replication: Option<Arc<crate::replication::Replication>>,
    pub spool_dir: Arc<Path>,
    /// `server.service_url`, parsed: our own origin for `/p/` unwrapping and upload shortcuts.
    pub service_url: url::Url,
    pub fetcher: Fetcher,
    pub pool: Pool,
    /// Room for originals held in memory (fetching, read, waiting for the pool).
    pub inputs: crate::inputs::Inputs,
    /// Shares of cold renders per client and per source host.
    pub render_limits: crate::proxy::limit::RenderLimits,
    pub settings: Settings,
    pub hotcache: Option<HotCache>,
    pub variants: Flights<Result<Arc<Variant>, ApiError>>,
    pub originals: Flights<Result<Original, ApiError>>,
    /// The cluster-wide takedown list: covered keys are refused (451) on every route.
    pub takedowns: Arc<crate::takedowns::Takedowns>,
    version: String,
}

impl AppState {
    pub fn new(
        config: Config,
        stores: Stores,
        accounts: AccountSource,
        blacklist: Arc<Blacklist>,
        quota: Quota,
        replication: Option<Arc<crate::replication::Replication>>,
    ) -> Result<Self, crate::Error> {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let version = format!("{}-{}", env!("CARGO_PKG_VERSION"), started);
        let spool_dir: Arc<Path> =
            Arc::from(config.upload.spool_dir.clone().unwrap_or_else(std::env::temp_dir));
        let service_url = url::Url::parse(&config.server.service_url)
            .map_err(|e| crate::Error::Config(format!("server.service_url: {e}")))?;
        let fetcher = Fetcher::new(config.proxy.fetch()).map_err(crate::Error::Config)?;
        let pool = Pool::new(
            config.pipeline.workers,
            config.pipeline.queue,
            config.pipeline.memory_budget,
        );
        let inputs = crate::inputs::Inputs::new(config.pipeline.input_budget, config.pipeline.input_wait);
        let render_limits = crate::proxy::limit::RenderLimits::new(&config).map_err(crate::Error::Config)?;
        let settings = config.pipeline.settings(&config.proxy);
        let hotcache = match &config.cache.dir {
            Some(dir) => Some(
                HotCache::open(dir, config.cache.max_bytes)
                    .map_err(|e| crate::Error::Config(format!("cache.dir `{}`: {e}", dir.display())))?,
            ),
            None => {
                tracing::warn!("cache.dir unset: no local hot cache; every miss goes to the fileservers");
                None
            }
        };
        let takedowns =
            crate::takedowns::Takedowns::open(config.takedowns.state_file.clone()).map_err(|e| {
                crate::Error::Config(format!(
                    "takedowns.state_file `{}`: {e}",
                    config
                        .takedowns
                        .state_file
                        .as_deref()
                        .unwrap_or(Path::new(""))
                        .display()
                ))
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                stores,
                accounts,
                blacklist,
                quota,
                replication,
                spool_dir,
                service_url,
                fetcher,
                pool,
                inputs,
                render_limits,
                settings,
                hotcache,
                variants: Flights::default(),
                originals: Flights::default(),
                takedowns: Arc::new(takedowns),
                version,
            }),
        })
    }

    pub fn inner(&self) -> &Inner {
        &self.inner
    }

    /// Records taken-down keys (pushed or pulled) and clears the hot cache of them and their
    /// variants; the keys that were new.
    /// The state file's fsync and the hot cache's sweep run on a blocking thread.
    pub async fn take_down(&self, keys: Vec<String>, last: Option<u64>) -> std::io::Result<Vec<String>> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let new = state.inner().takedowns.add(&keys, last)?;
            state.forget(&new);
            Ok(new)
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Clears the hot cache of taken-down keys and their variants.
    pub fn forget(&self, keys: &[String]) {
        for k in keys {
            let n = self.inner().hotcache.as_ref().map_or(0, |c| c.remove_derived(k));
            tracing::info!(key = %k, hot_cache_files = n, "taken down");
        }
    }
}

pub fn router(state: AppState) -> Router {
    let max_body = state.inner.config.upload.max_image_size as usize + 64 * 1024;
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
        Json(json!({"ok": true, "version": state.inner.version, "date": iso_now()})),
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
    let probes = state.inner.stores.servers.iter().map(|fs| async move {
        let req = ListRequest {
            max_keys: 1,
            ..ListRequest::default()
        };
        let state = match tokio::time::timeout(Duration::from_secs(2), fs.uploads.list(&req)).await {
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
