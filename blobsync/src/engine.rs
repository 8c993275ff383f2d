//! The workers: take due items from the queue, carry them out, complete or reschedule them; and
//! the periodic jobs (anti-entropy, scrub, tombstone GC, gauges).

use std::sync::Arc;
use std::time::Duration;

use blobstore::Key;
use service::Shutdown;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::antientropy::{self, Progress};
use crate::config::Config;
use crate::copy::{backoff, CopyOutcome, Replicator};
use crate::limit::RateLimiter;
use crate::metrics::{AE_PASSES, BACKLOG, DELETES, LAG, OLDEST_PENDING, SCRUB_REPAIRED, TOMBSTONES};
use crate::purge::EdgePurger;
use crate::queue::{now_ms, Action, Item, Queue};
use crate::scrub;

/// What one attempt at a takedown did: the deletes, then (uploads only) each edge's ban.
#[derive(Debug)]
pub struct Takedown {
    pub deleted: Result<(), String>,
    pub edges: Vec<(String, Result<u16, String>)>,
}

impl Takedown {
    /// Done only when every fileserver deleted it and every edge banned it.
    fn result(&self) -> Result<(), String> {
        self.deleted.clone()?;
        let failed: Vec<String> = self
            .edges
            .iter()
            .filter_map(|(e, r)| r.as_ref().err().map(|err| format!("edge {e}: {err}")))
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }
}

pub struct Engine {
    pub config: Config,
    pub queue: Arc<Queue>,
    pub replicator: Arc<Replicator>,
    /// Takedowns of uploads are also banned on these edges.
    pub edges: EdgePurger,
    /// Wakes the worker loop when work arrives, so copies start at once (`notify_one` keeps the
    /// wake-up if the loop is busy, so an enqueue racing its check for due work is never missed).
    pub wake: Notify,
    /// Wakes the anti-entropy loop for an immediate pass.
    pub sync_now: Notify,
    pub progress: Progress,
}

impl Engine {
    /// The lane of a bucket: its position in the config (takedowns use lane 0).
    pub fn lane(&self, bucket: &str) -> Option<u8> {
        self.config
            .buckets
            .iter()
            .position(|b| b == bucket)
            .map(|i| i as u8 + 1)
    }

    /// Runs workers until shutdown; in-flight items then get `drain` to finish. Anything cut
    /// short stays in the queue and is resumed at the next start.
    pub async fn run_workers(self: Arc<Self>, shutdown: Shutdown, drain: Duration) {
        let slots = Arc::new(Semaphore::new(self.config.copy.workers));
        let mut tasks = JoinSet::new();
        loop {
            while tasks.try_join_next().is_some() {}
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = shutdown.cancelled() => break,
            };
            match self.queue.take_due(now_ms()) {
                Ok(Some(item)) => {
                    let me = self.clone();
                    tasks.spawn(async move {
                        me.process(item).await;
                        drop(permit);
                    });
                }
                Ok(None) => {
                    drop(permit);
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "queue read failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        let busy = tasks.len();
        if busy > 0 {
            tracing::info!(
                in_flight = busy,
                ?drain,
                "stopping: letting in-flight copies finish"
            );
        }
        if tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            tracing::warn!("drain deadline passed; unfinished copies stay queued for the next start");
            tasks.abort_all();
        }
        let _ = self.queue.flush().await;
    }

    /// Carries out one item: complete it, or reschedule it with backoff. For a takedown, returns
    /// what this attempt did.
    pub async fn process(&self, item: Item) -> Option<Takedown> {
        let Ok(key) = Key::new(item.key.as_str()) else {
            tracing::error!(key = %item.key, "not a valid key; dropping the item");
            let _ = self.queue.complete(&item);
            return None;
        };
        let tombstoned = matches!(self.queue.tombstone(&item.bucket, &item.key), Ok(Some(_)));
        let (result, takedown) = if item.action == Action::Delete || tombstoned {
            let t = self.take_down(&item.bucket, &key).await;
            (t.result(), Some(t))
        } else {
            let copied = self
                .replicator
                .copy(&item.bucket, &key, &item.bad)
                .await
                .map(|outcome| {
                    if let CopyOutcome::Copied(to) = &outcome {
                        if to.iter().any(|s| item.bad.contains(s)) {
                            SCRUB_REPAIRED.inc();
                        }
                        LAG.observe(now_ms().saturating_sub(item.enqueued_ms) as f64 / 1000.0);
                        tracing::debug!(bucket = %item.bucket, %key, ?to, "copied");
                    }
                });
            (copied, None)
        };
        let outcome = match result {
            Ok(()) => self.queue.complete(&item),
            Err(e) => {
                let wait = backoff(
                    self.config.copy.initial_backoff,
                    self.config.copy.max_backoff,
                    item.attempts,
                );
                tracing::debug!(bucket = %item.bucket, %key, error = %e, ?wait, "will retry");
                self.queue.retry(&item, &e, wait)
            }
        };
        if let Err(e) = outcome {
            tracing::error!(error = %e, "queue update failed");
        }
        takedown
    }

    /// Deletes on every fileserver first, then (uploads, the bucket public URLs address by key)
    /// bans `/<key>` on every edge. The item is done only when both succeeded; until then every
    /// retry deletes and bans again, so an edge that refilled from a fileserver that was
    /// unreachable (or was down itself and kept the image in its disk tier) is cleared once the
    /// last copy is gone.
    async fn take_down(&self, bucket: &str, key: &Key) -> Takedown {
        let deleted = self.replicator.delete(bucket, key).await;
        if deleted.is_ok() {
            let _ = self.queue.mark_applied(bucket, key.as_str());
            DELETES.inc();
            tracing::info!(%bucket, %key, "takedown applied on every fileserver");
        }
        let edges = if bucket == self.config.buckets[0] {
            self.edges.ban(key.as_str()).await
        } else {
            Vec::new()
        };
        Takedown { deleted, edges }
    }

    /// Anti-entropy over every bucket, in lane order. Returns false if any pass failed.
    pub async fn anti_entropy(&self) -> bool {
        let mut ok = true;
        for bucket in &self.config.buckets {
            let stores: Vec<_> = self
                .replicator
                .servers
                .iter()
                .filter_map(|s| s.buckets.get(bucket).cloned())
                .collect();
            let lane = self.lane(bucket).unwrap_or(1);
            match antientropy::pass(
                &stores,
                bucket,
                lane,
                &self.queue,
                self.config.anti_entropy.page_size,
                &self.progress,
            )
            .await
            {
                Ok(()) => AE_PASSES.with_label_values(&["complete"]).inc(),
                Err(e) => {
                    ok = false;
                    AE_PASSES.with_label_values(&["aborted"]).inc();
                    tracing::warn!(bucket, error = %e, "anti-entropy pass aborted; it resumes from its checkpoint");
                }
            }
            self.wake.notify_one();
        }
        ok
    }

    pub async fn anti_entropy_loop(self: Arc<Self>, shutdown: Shutdown) {
        let every = self.config.anti_entropy.interval;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.anti_entropy() => {}
            }
            let wait = if every.is_zero() {
                Duration::from_secs(365 * 86400)
            } else {
                every
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.sync_now.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    pub async fn scrub_loop(self: Arc<Self>, shutdown: Shutdown) {
        let every = self.config.scrub.interval;
        if every.is_zero() {
            return;
        }
        let limiter = RateLimiter::new(self.config.scrub.bandwidth_limit);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let run = scrub::pass(
                &self.replicator.servers,
                &self.config.buckets,
                &self.queue,
                limiter.as_ref(),
            );
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = run => match r {
                    Ok((checked, corrupt)) => tracing::info!(checked, corrupt, "scrub pass finished"),
                    Err(e) => tracing::warn!(error = %e, "scrub pass stopped early"),
                },
            }
            self.wake.notify_one();
        }
    }

    /// Gauges and tombstone garbage collection.
    pub async fn housekeeping_loop(self: Arc<Self>, shutdown: Shutdown) {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let mut last_gc = 0;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.update_gauges();
            let now = now_ms();
            if now - last_gc > 3_600_000 {
                last_gc = now;
                if let Ok(n) = self.queue.gc_tombstones(now) {
                    if n > 0 {
                        tracing::info!(forgotten = n, "tombstones past retention and applied everywhere");
                    }
                }
            }
        }
    }

    pub fn update_gauges(&self) {
        BACKLOG.set(self.queue.backlog() as i64);
        let oldest = self
            .queue
            .oldest_pending_ms()
            .map(|t| now_ms().saturating_sub(t) / 1000)
            .unwrap_or(0);
        OLDEST_PENDING.set(oldest as i64);
        TOMBSTONES.set(self.queue.tombstone_count() as i64);
    }
}
