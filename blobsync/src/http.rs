//! The API: change events in (S3 event-notification JSON, as MinIO's webhook and imagehost send),
//! takedowns and the takedown list, status, and on-demand anti-entropy and scrub passes (what
//! `blobsync sync --once` and `scrub --once` ask a running daemon for). Writes are fsynced before
//! the answer. With `server.token` set, everything but `/status` needs it; the config refuses a
//! non-loopback listener without one.

mod takedown;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use blobstore::Key;
use serde::Deserialize;
use serde_json::json;

use crate::engine::Engine;
use crate::metrics::{EVENTS, QUEUE_DISK_LOW};
use crate::queue::now_ms;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/events", post(events))
        .route("/objects/{bucket}/{*key}", delete(takedown::takedown))
        .route("/takedowns", get(takedowns))
        .route("/status", get(status))
        .route("/sync", post(sync))
        .route("/scrub", post(scrub))
        .layer(axum::extract::DefaultBodyLimit::max(4 << 20))
        .with_state(state)
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error": msg.into() }))).into_response()
}

/// When `server.token` is set, writes need `Authorization: Bearer <token>`, compared in constant
/// time.
fn authorised(state: &AppState, headers: &HeaderMap) -> bool {
    match &state.engine.config.server.token {
        None => true,
        Some(t) => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| t.matches(given.trim())),
    }
}

#[derive(Deserialize)]
struct Notification {
    #[serde(rename = "Records", default)]
    records: Vec<Record>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "eventName", default)]
    event_name: String,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: BucketEntity,
    object: ObjectEntity,
}

#[derive(Deserialize)]
struct BucketEntity {
    name: String,
}

#[derive(Deserialize)]
struct ObjectEntity {
    key: String,
}

/// S3 event keys are URL-encoded, with `+` for spaces.
fn decode_key(raw: &str) -> String {
    percent_encoding::percent_decode_str(&raw.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

async fn events(State(state): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if !authorised(&state, &headers) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    let Ok(n) = serde_json::from_slice::<Notification>(&body) else {
        EVENTS.with_label_values(&["malformed"]).inc();
        return error(
            StatusCode::BAD_REQUEST,
            "expected an S3 event notification: {\"Records\": [...]}",
        );
    };
    let engine = &state.engine;
    let q = &engine.config.queue;
    if let Err(free) = crate::queue::room::check(&q.path, q.min_free_bytes) {
        EVENTS.with_label_values(&["refused"]).inc();
        if QUEUE_DISK_LOW.get() == 0 {
            // Once when it starts, not per event: the log may share the disk.
            tracing::warn!(
                free,
                min = q.min_free_bytes,
                "queue disk nearly full: change events refused"
            );
        }
        QUEUE_DISK_LOW.set(1);
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "queue disk nearly full: {free} bytes free, queue.min_free_bytes is {}; retry later",
                q.min_free_bytes
            ),
        );
    }
    if QUEUE_DISK_LOW.get() == 1 {
        tracing::info!("queue disk has room again: change events accepted");
        QUEUE_DISK_LOW.set(0);
    }
    let (mut queued, mut ignored) = (0, 0);
    let mut pending = crate::queue::journal::Durability::default();
    for r in n.records {
        let key = decode_key(&r.s3.object.key);
        let created = r.event_name.contains("ObjectCreated");
        match (engine.lane(&r.s3.bucket.name), created, Key::new(key.as_str())) {
            (Some(lane), true, Ok(_)) => {
                if let Err(e) = engine.queue.accept(&r.s3.bucket.name, &key, lane, &mut pending) {
                    return error(StatusCode::SERVICE_UNAVAILABLE, format!("queue: {e}"));
                }
                queued += 1;
            }
            // Deletes never come from events (only takedowns delete), nor from unmirrored buckets.
            _ => ignored += 1,
        }
    }
    // The workers may start copying while the queue is made durable: a copy made for an event
    // that is then lost in a crash is harmless (it was not acknowledged, and is sent again).
    if queued > 0 {
        engine.wake.notify_one();
    }
    // Durable before acknowledged.
    if let Err(e) = engine.queue.make_durable(pending).await {
        return error(StatusCode::SERVICE_UNAVAILABLE, format!("queue: {e}"));
    }
    EVENTS.with_label_values(&["queued"]).inc_by(queued);
    EVENTS.with_label_values(&["ignored"]).inc_by(ignored);
    Json(json!({ "queued": queued, "ignored": ignored })).into_response()
}

#[derive(Deserialize)]
struct SinceParams {
    #[serde(default)]
    since: u64,
    #[serde(default = "page")]
    limit: usize,
}

fn page() -> usize {
    1000
}

/// The permanent takedown list after `since` (what imagehosts and edges catch up from).
async fn takedowns(
    State(state): State<AppState>,
    params: Result<Query<SinceParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    if !authorised(&state, &headers) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    let Ok(Query(p)) = params else {
        return error(StatusCode::BAD_REQUEST, "since and limit must be numbers");
    };
    let queue = &state.engine.queue;
    match queue
        .takedown_epoch()
        .and_then(|epoch| Ok((epoch, queue.takedowns_since(p.since, p.limit.clamp(1, 10_000))?)))
    {
        Ok((epoch, list)) => {
            let last = list.last().map_or(p.since, |t| t.seq);
            Json(json!({ "takedowns": list, "last": last, "epoch": epoch })).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("queue: {e}")),
    }
}

async fn sync(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !authorised(&state, &headers) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    state.engine.sync_now.notify_one();
    (StatusCode::ACCEPTED, Json(json!({ "anti_entropy": "started" }))).into_response()
}

async fn scrub(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !authorised(&state, &headers) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    let engine = &state.engine;
    if engine.scrub_progress.running.load(Ordering::Relaxed) {
        return (StatusCode::ACCEPTED, Json(json!({ "scrub": "running" }))).into_response();
    }
    engine.scrub_now.notify_one();
    (StatusCode::ACCEPTED, Json(json!({ "scrub": "started" }))).into_response()
}

/// Backlog, oldest pending age, takedowns, anti-entropy state and each fileserver's reachability.
async fn status(State(state): State<AppState>) -> Response {
    let engine = &state.engine;
    // The passes' state is read before the counts: a pass that shows as finished here forgot
    // the counts made before it ended, so the counts below include what it left.
    let sync = &engine.progress;
    let scrub = &engine.scrub_progress;
    let sync = json!({
        "scanned": sync.scanned.load(Ordering::Relaxed),
        "queued": sync.queued.load(Ordering::Relaxed),
        "started_ms": sync.started_ms.load(Ordering::Relaxed),
        "finished_ms": sync.finished_ms.load(Ordering::Relaxed),
    });
    let scrub = json!({
        "running": scrub.running.load(Ordering::Relaxed),
        "checked": scrub.checked.load(Ordering::Relaxed),
        "corrupt": scrub.corrupt.load(Ordering::Relaxed),
        "bytes": scrub.bytes.load(Ordering::Relaxed),
        "last_complete_ms": crate::scrub::last_done(&engine.queue),
        "last_unreachable": crate::scrub::last_unreachable(&engine.queue),
        "cursor": engine.queue.meta(crate::scrub::CURSOR).ok().flatten(),
    });
    let counts = engine.update_gauges().await;
    let oldest = counts
        .oldest_enqueued_ms
        .map(|t| now_ms().saturating_sub(t) / 1000);
    let servers: serde_json::Map<String, serde_json::Value> = crate::probe::fileservers(&engine.replicator)
        .await
        .into_iter()
        .map(|(n, up)| (n, json!(if up { "ok" } else { "unavailable" })))
        .collect();
    let ae: serde_json::Map<String, serde_json::Value> = engine
        .config
        .buckets
        .iter()
        .map(|b| {
            let done = engine.queue.meta(&format!("ae_done:{b}")).ok().flatten();
            let cp = engine.queue.meta(&crate::antientropy::checkpoint_name(b)).ok().flatten();
            (b.clone(), json!({ "last_complete_pass_ms": done.and_then(|d| d.parse::<u64>().ok()), "checkpoint": cp }))
        })
        .collect();
    Json(json!({
        "queue": crate::queue::identity(&engine.config.queue.path),
        "backlog": counts.backlog,
        "pending_copies": counts.copies,
        "pending_takedowns": counts.backlog - counts.copies,
        "untried": counts.untried,
        "oldest_pending_seconds": oldest,
        "tombstones": counts.tombstones,
        "takedowns": counts.takedowns,
        "fileservers": servers,
        "anti_entropy": ae,
        "sync": sync,
        "scrub": scrub,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_keys_are_url_decoded() {
        assert_eq!(super::decode_key("DQmAbc"), "DQmAbc");
        assert_eq!(super::decode_key("a+b%2Fc"), "a b/c");
    }
}
