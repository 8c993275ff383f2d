//! `DELETE /objects/{bucket}/{key}`: records a takedown durably, then carries it out and answers
//! what it did, whether this request or a worker that took the item first does the work.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use blobstore::Key;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::{authorised, error, AppState};
use crate::engine::{Carried, Engine};
use crate::queue::Action;
use crate::takedown::Report;

/// How long a request waits for a worker that took the takedown before it could: past this it
/// answers `queued` (the takedown is durable and goes on without it). A worker's attempt that
/// fails is retried with backoff, so a request may wait this long when a fileserver is down.
const WORKER_WAIT: Duration = Duration::from_secs(30);

/// How often a waiting request tries to take the item itself, in case the worker that had the key
/// was copying it and left the takedown pending.
const CLAIM_EVERY: Duration = Duration::from_millis(25);

/// `?wait=false`: answer once the takedown is durable and leave the work to the workers (for
/// scripts removing many keys); by default the request carries it out and reports the result.
#[derive(Deserialize)]
pub(super) struct TakedownParams {
    #[serde(default = "yes")]
    wait: bool,
}

fn yes() -> bool {
    true
}

pub(super) async fn takedown(
    State(state): State<AppState>,
    Path((bucket, key)): Path<(String, String)>,
    params: Result<Query<TakedownParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    if !authorised(&state, &headers) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    let Ok(Query(params)) = params else {
        return error(StatusCode::BAD_REQUEST, "wait must be true or false");
    };
    let engine = &state.engine;
    let Some(lane) = engine.lane(&bucket) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("bucket `{bucket}` is not mirrored"),
        );
    };
    if Key::new(key.as_str()).is_err() {
        return error(StatusCode::BAD_REQUEST, "invalid key");
    }
    let source = crate::queue::source_of(&key);
    if source != key {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "`{key}` is derived from `{source}`: take down `{source}`, and every variant goes with it"
            ),
        );
    }
    // Listening before the item exists: a worker that takes it at once is still heard.
    let reports = engine.reports.subscribe();
    let listed = match engine.queue.add_takedown(&key) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, format!("queue: {e}")),
    };
    let retention = engine.config.tombstones.retention;
    let t = match engine.queue.add_tombstone(&bucket, &key, retention) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, format!("queue: {e}")),
    };
    // Which enqueue this is: an attempt made before it does not answer this request.
    let mine = match engine.queue.add(&bucket, &key, Action::Delete, lane, &[]) {
        Ok((_, Some(item))) => Mine {
            enqueued_ms: item.enqueued_ms,
            version: item.version,
        },
        Ok((_, None)) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue: the takedown item did not read back",
            )
        }
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, format!("queue: {e}")),
    };
    if let Err(e) = engine.queue.flush_to_device().await {
        return error(StatusCode::SERVICE_UNAVAILABLE, format!("queue: {e}"));
    }
    tracing::info!(%bucket, %key, "takedown recorded");
    let mut answer = json!({
        "bucket": bucket,
        "key": key,
        "seq": listed.seq,
        "tombstone_until_ms": t.keep_until_ms,
    });
    // The takedown is durable: from here on a crash or a failure only delays it. Carry it out
    // now unless asked not to; what fails stays queued and retried.
    let done = if params.wait {
        carry_out(engine, &bucket, &key, mine, reports).await
    } else {
        Outcome::Queued
    };
    match done {
        Outcome::Report(report) => render(&mut answer, &report),
        Outcome::DoneUnheard => {
            // Completed means deleted everywhere and every imagehost and edge told.
            answer["deleted_everywhere"] = true.into();
            answer["carried_out_by"] = "a worker (its report was not kept)".into();
        }
        Outcome::Queued => {
            engine.wake.notify_one();
            answer["queued"] = true.into();
        }
    }
    (StatusCode::ACCEPTED, Json(answer)).into_response()
}

/// The enqueue a takedown request made ([`Carried`] names the same two).
#[derive(Clone, Copy)]
struct Mine {
    enqueued_ms: u64,
    version: u64,
}

impl Mine {
    /// Whether `c` reports an attempt that carried out this request's enqueue: the same life of
    /// the item in the queue, at this version or a later one merged into it.
    fn answered_by(self, c: &Carried, bucket: &str, key: &str) -> bool {
        c.bucket == bucket && c.key == key && c.enqueued_ms == self.enqueued_ms && c.version >= self.version
    }

    /// Whether `pending` (the object's item now, if any) shows this enqueue completed: the item
    /// is gone, or it is a later life.
    fn completed(self, pending: Option<&crate::queue::Item>) -> bool {
        pending.is_none_or(|it| it.enqueued_ms != self.enqueued_ms)
    }
}

/// How a takedown request ends.
enum Outcome {
    /// What the attempt that carried it out did (this request's, or a worker's).
    Report(Arc<Report>),
    /// A worker completed it, and its report was not heard (more reports were sent meanwhile than
    /// the channel keeps).
    DoneUnheard,
    /// Not done yet, or the queue could not be read: queued.
    Queued,
}

/// Carries the takedown out in this request, or, when a worker took it first (it was due at
/// once), waits up to [`WORKER_WAIT`] for that worker's report.
async fn carry_out(
    engine: &Arc<Engine>,
    bucket: &str,
    key: &str,
    mine: Mine,
    mut reports: tokio::sync::broadcast::Receiver<Arc<Carried>>,
) -> Outcome {
    let deadline = Instant::now() + WORKER_WAIT;
    let mut seen_completed = false;
    loop {
        match engine.queue.claim(bucket, key) {
            Ok(Some(item)) => {
                // Its own task: a caller that hangs up must not drop the work half done, with
                // the item claimed and no longer scheduled.
                let worker = Arc::clone(engine);
                let done = tokio::spawn(async move { worker.process(item).await }).await;
                return match done.ok().flatten() {
                    Some(report) => Outcome::Report(report),
                    None => Outcome::Queued,
                };
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%bucket, %key, error = %e, "takedown recorded; carrying it out is left to the workers");
                return Outcome::Queued;
            }
        }
        // Someone has the key in hand: a worker carrying out this takedown (its report answers
        // this request), or one copying the key, after which the takedown is claimable again.
        let until = deadline.min(Instant::now() + CLAIM_EVERY);
        loop {
            match tokio::time::timeout_at(until, reports.recv()).await {
                Ok(Ok(c)) if mine.answered_by(&c, bucket, key) => return Outcome::Report(c.report.clone()),
                Ok(Ok(_) | Err(RecvError::Lagged(_))) => continue,
                Ok(Err(RecvError::Closed)) => return Outcome::Queued,
                Err(_) => break,
            }
        }
        // Completed with no report heard: its report comes right after, unless it was lost to
        // a lag; one more wait tells.
        match engine.queue.item(bucket, key) {
            Ok(pending) if mine.completed(pending.as_ref()) => {
                if seen_completed {
                    return Outcome::DoneUnheard;
                }
                seen_completed = true;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(%bucket, %key, error = %e, "takedown recorded; carrying it out is left to the workers");
                return Outcome::Queued;
            }
        }
        if Instant::now() >= deadline {
            tracing::warn!(%bucket, %key, "a worker still has the takedown; answering queued");
            return Outcome::Queued;
        }
    }
}

/// Adds what the takedown did to the answer.
fn render(answer: &mut Value, done: &Report) {
    let outcome = |list: &[(String, Result<u16, String>)]| -> Value {
        list.iter()
            .map(|(who, r)| (who.clone(), r.clone().map_or_else(Into::into, Into::into)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    answer["deleted_everywhere"] = done.deleted_everywhere.into();
    answer["variants_deleted"] = match &done.variants {
        Ok(n) => (*n).into(),
        Err(e) => e.as_str().into(),
    };
    answer["imagehosts"] = outcome(&done.imagehosts);
    answer["edges"] = outcome(&done.edges);
}

#[cfg(test)]
mod tests {
    use blobstore::{body_from_bytes, BlobStore, FileserverConfig, PutOptions};

    use super::*;
    use crate::config::Config;

    const KEY: &str = "U5dtZPvjpfzc3fgGtsoNQq7WLNv8sLT";

    /// An engine with no workers running over two directory fileservers that both hold `KEY`
    /// in `proxy`, a takedown of it recorded and due; and a receiver for takedown reports.
    async fn recorded(
        dir: &tempfile::TempDir,
    ) -> (
        Arc<Engine>,
        Vec<Arc<dyn BlobStore>>,
        tokio::sync::broadcast::Receiver<Arc<Carried>>,
    ) {
        let mut config = Config {
            fileservers: (0..2)
                .map(|i| FileserverConfig::directory(&format!("fs{i}"), dir.path().join(format!("fs{i}"))))
                .collect(),
            ..Config::default()
        };
        config.queue.path = dir.path().join("queue");
        let engine = crate::engine::open(&config).expect("engine");
        let mut stores = Vec::new();
        for fs in &config.fileservers {
            let store = blobstore::open_bucket(fs, "proxy").expect("open");
            let key = Key::new(KEY).expect("key");
            store
                .put(&key, body_from_bytes(b"bytes".to_vec()), &PutOptions::default())
                .await
                .expect("put");
            stores.push(store);
        }
        let reports = engine.reports.subscribe();
        (engine, stores, reports)
    }

    /// Records a takedown of `KEY` as the handler does; the enqueue it made.
    fn record(engine: &Engine) -> Mine {
        let lane = engine.lane("proxy").expect("mirrored");
        engine.queue.add_takedown(KEY).expect("list");
        let (_, item) = engine
            .queue
            .add("proxy", KEY, Action::Delete, lane, &[])
            .expect("enqueue");
        let item = item.expect("read back");
        Mine {
            enqueued_ms: item.enqueued_ms,
            version: item.version,
        }
    }

    fn report(deleted_everywhere: bool) -> Arc<Report> {
        Arc::new(Report {
            deleted_everywhere,
            variants: Ok(0),
            imagehosts: Vec::new(),
            edges: Vec::new(),
        })
    }

    fn answered(outcome: Outcome) -> Arc<Report> {
        match outcome {
            Outcome::Report(r) => r,
            Outcome::DoneUnheard => panic!("answered without a report"),
            Outcome::Queued => panic!("answered queued"),
        }
    }

    async fn gone(stores: &[Arc<dyn BlobStore>]) -> bool {
        let key = Key::new(KEY).expect("key");
        for s in stores {
            if s.get(&key, None).await.is_ok() {
                return false;
            }
        }
        true
    }

    /// A worker that took the takedown first (it is due at once) answers the request with its
    /// report: the request does not say `queued` for work done under it.
    #[tokio::test]
    async fn a_takedown_a_worker_took_first_is_answered_with_its_report() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (engine, stores, reports) = recorded(&dir).await;
        let mine = record(&engine);
        let item = engine.queue.claim("proxy", KEY).expect("queue").expect("due");
        // An attempt of an earlier enqueue, reported meanwhile, does not answer it.
        let earlier = Carried {
            bucket: "proxy".into(),
            key: KEY.into(),
            enqueued_ms: item.enqueued_ms,
            version: item.version - 1,
            report: report(false),
        };
        engine.reports.send(Arc::new(earlier)).expect("a receiver");
        let worker = Arc::clone(&engine);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            worker.process(item).await
        });
        let report = answered(carry_out(&engine, "proxy", KEY, mine, reports).await);
        assert!(report.deleted_everywhere);
        assert!(gone(&stores).await);
    }

    /// A worker that completed the takedown while its report was pushed out of the channel (more
    /// reports than it keeps) is still found done: the request does not say `queued`.
    #[tokio::test]
    async fn a_takedown_done_while_its_report_was_lost_is_answered_done() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (engine, stores, mut reports) = recorded(&dir).await;
        let mine = record(&engine);
        let item = engine.queue.claim("proxy", KEY).expect("queue").expect("due");
        engine.process(item).await.expect("a takedown report");
        // The receiver lags: its report is gone.
        for _ in 0..engine.reports.len() + 1024 {
            let _ = engine.reports.send(Arc::new(Carried {
                bucket: "uploads".into(),
                key: KEY.into(),
                enqueued_ms: 0,
                version: 0,
                report: report(true),
            }));
        }
        assert!(matches!(
            reports.try_recv(),
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_))
        ));
        assert!(matches!(
            carry_out(&engine, "proxy", KEY, mine, reports).await,
            Outcome::DoneUnheard
        ));
        assert!(gone(&stores).await);
    }

    /// A worker copying the key when the takedown lands leaves it pending: the request takes it
    /// once the copy is done and carries it out itself.
    #[tokio::test]
    async fn a_takedown_behind_a_copy_of_its_key_is_carried_out_by_the_request() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (engine, stores, reports) = recorded(&dir).await;
        let lane = engine.lane("proxy").expect("mirrored");
        engine
            .queue
            .enqueue("proxy", KEY, Action::Copy, lane, &[])
            .expect("enqueue");
        let copying = engine.queue.claim("proxy", KEY).expect("queue").expect("due");
        let mine = record(&engine);
        let worker = Arc::clone(&engine);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            worker.queue.complete(&copying)
        });
        let report = answered(carry_out(&engine, "proxy", KEY, mine, reports).await);
        assert!(report.deleted_everywhere);
        assert!(gone(&stores).await);
        assert_eq!(
            engine.queue.claim("proxy", KEY).expect("queue").map(|i| i.key),
            None
        );
    }
}
