//! The workers: take due items from the queue, carry them out, complete or reschedule them; and
//! the periodic jobs (anti-entropy, scrub, tombstone GC, gauges).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use blobstore::Key;
use service::Shutdown;
use tokio::sync::{broadcast, Notify, Semaphore};
use tokio::task::JoinSet;

use crate::antientropy::{self, Progress};
use crate::config::Config;
use crate::copy::{backoff, CopyOutcome, Replicator, Server};
use crate::counts::Counts;
use crate::error::{Error, SyncError};
use crate::limit::RateLimiter;
use crate::metrics::{
    AE_PASSES, BACKLOG, FAILURES, LAG, OLDEST_PENDING, SCRUB_REPAIRED, TAKEDOWNS, TOMBSTONES,
};
use crate::queue::{now_ms, Action, Item, Queue, Summary};
use crate::scrub;
use crate::takedown::{Report, Takedowns};
use crate::{imagehosts, purge, takedown};

pub struct Engine {
    pub config: Config,
    pub queue: Arc<Queue>,
    pub replicator: Arc<Replicator>,
    /// Carries out takedowns: imagehosts told, fileservers cleared, edges banned.
    pub takedowns: Takedowns,
    /// Wakes the worker loop when work arrives, so copies start at once (`notify_one` keeps the
    /// wake-up if the loop is busy, so an enqueue racing its check for due work is never missed).
    pub wake: Notify,
    /// Wakes the anti-entropy loop for an immediate pass.
    pub sync_now: Notify,
    pub progress: Progress,
    /// Wakes the scrub loop for an immediate pass.
    pub scrub_now: Notify,
    pub scrub_progress: scrub::Progress,
    /// The queue's counts, for `/status` and the gauges.
    pub counts: Counts,
    /// The report of every attempt at a takedown item (not of the deletes a copy makes when a
    /// takedown lands while it runs), for a request waiting on a takedown a worker took first.
    pub reports: broadcast::Sender<Arc<Carried>>,
}

/// A takedown attempt's report, with the item it was made for: its object, and which enqueue
/// (`enqueued_ms` names the item's life in the queue, `version` the enqueues merged into it).
#[derive(Debug)]
pub struct Carried {
    pub bucket: String,
    pub key: String,
    pub enqueued_ms: u64,
    pub version: u64,
    pub report: Arc<Report>,
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
    pub async fn process(&self, item: Item) -> Option<Arc<Report>> {
        let Ok(key) = Key::new(item.key.as_str()) else {
            tracing::error!(key = %item.key, "not a valid key; dropping the item");
            let _ = self.queue.complete(&item);
            return None;
        };
        // A tombstone, or a takedown of the source this object was derived from. Not knowing
        // is not "no": the item waits rather than risk copying a taken-down object back.
        let tombstoned = self
            .queue
            .tombstone(&item.bucket, &item.key)
            .and_then(|t| Ok(t.is_some() || self.queue.is_taken_down(&item.key)?));
        let tombstoned = match tombstoned {
            Ok(t) => t,
            Err(e) => {
                self.reschedule(&item, &key, &SyncError::Queue(e));
                return None;
            }
        };
        let (result, takedown) = if item.action == Action::Delete || tombstoned {
            let (result, report) = self.takedowns.take_down(&item.bucket, &key).await.finish();
            (result, Some(report))
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
            // A takedown that landed while this copy ran: remove what it wrote.
            if copied.is_ok() && matches!(self.queue.is_taken_down(&item.key), Ok(true)) {
                tracing::info!(bucket = %item.bucket, %key, "taken down while copying; deleting the copy");
                (
                    self.takedowns.take_down(&item.bucket, &key).await.finish().0,
                    None,
                )
            } else {
                (copied, None)
            }
        };
        match result {
            Ok(()) => {
                if let Err(e) = self.queue.complete(&item) {
                    tracing::error!(error = %e, "queue update failed");
                }
            }
            Err(e) => self.reschedule(&item, &key, &e),
        }
        let takedown = takedown.map(Arc::new);
        if let Some(report) = &takedown {
            // No request may be listening: nothing to do then.
            let _ = self.reports.send(Arc::new(Carried {
                bucket: item.bucket.clone(),
                key: item.key.clone(),
                enqueued_ms: item.enqueued_ms,
                version: item.version,
                report: Arc::clone(report),
            }));
        }
        takedown
    }

    /// Puts a failed item back with backoff. What retrying cannot fix (an object over the size
    /// limit, a fileserver refusing the credentials) waits the longest backoff at once and is
    /// logged as a warning: it is still retried, since the operator may change the configuration.
    fn reschedule(&self, item: &Item, key: &Key, error: &SyncError) {
        let (initial, max) = (self.config.copy.initial_backoff, self.config.copy.max_backoff);
        let wait = if error.is_retriable() {
            tracing::debug!(bucket = %item.bucket, %key, %error, "will retry");
            backoff(initial, max, item.attempts)
        } else {
            FAILURES.with_label_values(&["permanent"]).inc();
            tracing::warn!(bucket = %item.bucket, %key, %error, ?max, "retrying will not fix this; waiting the longest backoff");
            max
        };
        if let Err(e) = self.queue.retry(item, &error.to_string(), wait) {
            tracing::error!(error = %e, "queue update failed");
        }
    }

    /// Anti-entropy over every bucket, in lane order. Returns false if any pass failed.
    pub async fn anti_entropy(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let mut ok = true;
        self.progress.scanned.store(0, Relaxed);
        self.progress.queued.store(0, Relaxed);
        self.progress.started_ms.store(now_ms(), Relaxed);
        for bucket in &self.config.buckets {
            let (names, stores): (Vec<String>, Vec<_>) = self
                .replicator
                .servers
                .iter()
                .filter_map(|s| s.buckets.get(bucket).map(|st| (s.name.clone(), st.clone())))
                .unzip();
            let lane = self.lane(bucket).unwrap_or(1);
            let q = &self.config.queue;
            if let Err(free) = crate::queue::room::check(&q.path, q.min_free_bytes) {
                ok = false;
                AE_PASSES.with_label_values(&["aborted"]).inc();
                tracing::warn!(
                    bucket,
                    free,
                    min = q.min_free_bytes,
                    "anti-entropy pass skipped: the queue's disk is nearly full"
                );
                continue;
            }
            match antientropy::pass(
                &stores,
                &names,
                bucket,
                lane,
                &self.queue,
                &self.config.anti_entropy,
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
        // Counts made before this point may show work the pass has since queued as absent.
        self.counts.forget();
        self.progress.finished_ms.store(now_ms(), Relaxed);
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

    /// Scrubs when a pass is due (persisted, so restarts do not postpone it) or asked for
    /// (`POST /scrub`); `scrub.interval = 0` leaves only the asked-for passes.
    pub async fn scrub_loop(self: Arc<Self>, shutdown: Shutdown) {
        let every = self.config.scrub.interval;
        let limiter = RateLimiter::new(self.config.scrub.bandwidth_limit);
        if let Some(done) = scrub::last_done(&self.queue) {
            crate::metrics::SCRUB_LAST_COMPLETE.set((done / 1000) as i64);
        }
        loop {
            let wait = if every.is_zero() {
                Duration::from_secs(365 * 86400)
            } else {
                scrub::due_in(&self.queue, every, now_ms())
            };
            if !wait.is_zero() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.scrub_now.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            let progress = &self.scrub_progress;
            progress.checked.store(0, std::sync::atomic::Ordering::Relaxed);
            progress.corrupt.store(0, std::sync::atomic::Ordering::Relaxed);
            progress.bytes.store(0, std::sync::atomic::Ordering::Relaxed);
            progress.running.store(true, std::sync::atomic::Ordering::Relaxed);
            let run = scrub::pass(
                &self.replicator.servers,
                &self.config.buckets,
                &self.queue,
                limiter.as_ref(),
                self.config.scrub.parallel,
                progress,
            );
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => None,
                r = run => Some(r),
            };
            // Counts made before this point may not show the repairs the pass queued.
            self.counts.forget();
            progress
                .running
                .store(false, std::sync::atomic::Ordering::Relaxed);
            match outcome {
                None => return,
                Some(Ok(o)) if o.unreachable.is_empty() => {
                    tracing::info!(o.checked, o.corrupt, "scrub pass finished")
                }
                Some(Ok(o)) => tracing::warn!(
                    o.checked,
                    o.corrupt,
                    unreachable = ?o.unreachable,
                    "scrub pass finished without the fileservers that did not answer"
                ),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "scrub pass stopped early; it resumes from its cursor");
                    // Do not spin on a queue that cannot be written: try again in a while.
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = self.scrub_now.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                    }
                }
            }
            self.wake.notify_one();
        }
    }

    /// Gauges, fileserver probes and tombstone garbage collection.
    pub async fn housekeeping_loop(self: Arc<Self>, shutdown: Shutdown) {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let mut last_gc = 0;
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.update_gauges().await;
            // Every 10 s: which fileservers answer (blobsync_fileserver_up).
            if ticks % 5 == 0 {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = crate::probe::fileservers(&self.replicator) => {}
                }
            }
            ticks += 1;
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

    pub async fn update_gauges(&self) -> Summary {
        let s = self.counts.get().await;
        BACKLOG.set(s.backlog as i64);
        let oldest = s
            .oldest_enqueued_ms
            .map(|t| now_ms().saturating_sub(t) / 1000)
            .unwrap_or(0);
        OLDEST_PENDING.set(oldest as i64);
        TOMBSTONES.set(s.tombstones as i64);
        TAKEDOWNS.set(s.takedowns as i64);
        s
    }
}

/// Opens the queue (recovering work in flight at a crash) and the fileservers.
pub fn open(config: &Config) -> Result<Arc<Engine>, Error> {
    config.validate().map_err(Error::Config)?;
    let queue = Queue::open(&config.queue.path).map_err(|e| Error::Queue {
        path: config.queue.path.display().to_string(),
        source: e,
    })?;
    queue.set_lanes(config.buckets.len() as u8);
    let pending = queue.recover().map_err(|e| Error::Queue {
        path: config.queue.path.display().to_string(),
        source: e,
    })?;
    if pending > 0 {
        tracing::info!(pending, "resuming queued work");
    }
    let (queue, replicator) = (Arc::new(queue), Arc::new(replicator(config)?));
    let counts = Counts::new(queue.clone());
    let takedowns = takedown::Takedowns {
        buckets: config.buckets.clone(),
        replicator: replicator.clone(),
        queue: queue.clone(),
        imagehosts: imagehosts::ImagehostNotifier::new(
            &config.takedown.imagehosts,
            config.server.token.clone(),
        )
        .map_err(Error::Config)?,
        edges: purge::EdgePurger::new(&config.takedown).map_err(Error::Config)?,
    };
    Ok(Arc::new(Engine {
        config: config.clone(),
        queue,
        replicator,
        takedowns,
        wake: Notify::new(),
        sync_now: Notify::new(),
        progress: Default::default(),
        scrub_now: Notify::new(),
        scrub_progress: Default::default(),
        counts,
        reports: broadcast::channel(1024).0,
    }))
}

/// Every fileserver of the config, each bucket opened, with the copy settings.
pub fn replicator(config: &Config) -> Result<Replicator, Error> {
    let mut servers = Vec::new();
    for fs in &config.fileservers {
        let mut buckets = HashMap::new();
        for b in &config.buckets {
            buckets.insert(b.clone(), blobstore::open_bucket(fs, b)?);
        }
        servers.push(Server {
            name: fs.name.clone(),
            buckets,
        });
    }
    Ok(Replicator {
        servers,
        limiter: RateLimiter::new(config.copy.bandwidth_limit).map(Arc::new),
        max_object_size: config.copy.max_object_size,
    })
}
