//! blobsync: keeps every fileserver's copy of every object converged, verified by hash.
//!
//! Work arrives as change events (imagehost, MinIO webhooks) and from anti-entropy passes over
//! the listings; it sits in a persistent sled queue until done ([`queue`]); workers copy each
//! object once from a verified replica to every server that lacks it ([`copy`]); takedowns are
//! tombstones that win over every copy; the scrub re-hashes stored copies ([`scrub`]).
//!
//! A library with a thin binary: [`run`] is the daemon, [`sync_once`] the one-shot backfill.

pub mod antientropy;
pub mod config;
pub mod copy;
pub mod engine;
pub mod error;
pub mod http;
pub mod limit;
pub mod metrics;
pub mod purge;
pub mod queue;
pub mod scrub;

pub use config::Config;
pub use error::Error;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use service::Shutdown;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::copy::{Replicator, Server};
use crate::engine::Engine;
use crate::limit::RateLimiter;
use crate::queue::Queue;

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
    let replicator = Replicator {
        servers,
        limiter: RateLimiter::new(config.copy.bandwidth_limit).map(Arc::new),
        max_object_size: config.copy.max_object_size,
    };
    Ok(Arc::new(Engine {
        config: config.clone(),
        queue: Arc::new(queue),
        replicator: Arc::new(replicator),
        edges: purge::EdgePurger::new(&config.takedown).map_err(Error::Config)?,
        wake: Notify::new(),
        sync_now: Notify::new(),
        progress: Default::default(),
    }))
}

/// The daemon: API on `listener`, workers, anti-entropy, scrub, until `shutdown`; then in-flight
/// copies get `admin.drain_timeout` to finish, and whatever remains stays queued.
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    let engine = open(&config)?;
    let drain = config.admin.drain_timeout;
    let workers = tokio::spawn(engine.clone().run_workers(shutdown.clone(), drain));
    tokio::spawn(engine.clone().anti_entropy_loop(shutdown.clone()));
    tokio::spawn(engine.clone().scrub_loop(shutdown.clone()));
    tokio::spawn(engine.clone().housekeeping_loop(shutdown.clone()));
    let app = http::router(http::AppState {
        engine: engine.clone(),
    })
    .merge(service::admin::router());
    tracing::info!(addr = %listener.local_addr().map_err(Error::Io)?, "blobsync ready");
    service::admin::serve(listener, app, shutdown, drain)
        .await
        .map_err(Error::Io)?;
    let _ = workers.await;
    engine.queue.flush().await.map_err(|e| Error::Queue {
        path: config.queue.path.display().to_string(),
        source: e,
    })?;
    tracing::info!("blobsync stopped");
    Ok(())
}

/// One anti-entropy pass over every bucket, then copies until the queue holds nothing due; prints
/// progress with an ETA to stderr. Returns the backlog left (items waiting on an unreachable server).
pub async fn sync_once(config: Config, shutdown: Shutdown) -> Result<usize, Error> {
    let engine = open(&config)?;
    let started = Instant::now();
    let reporter = {
        let engine = engine.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let scanned = engine.progress.scanned.load(Ordering::Relaxed);
                let queued = engine.progress.queued.load(Ordering::Relaxed);
                let backlog = engine.queue.backlog() as u64;
                let done = queued.saturating_sub(backlog);
                let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
                let eta = if rate > 0.0 {
                    format!("{:.0}s", backlog as f64 / rate)
                } else {
                    "?".into()
                };
                eprint!("\rscanned {scanned} · queued {queued} · copied {done} · left {backlog} · {rate:.0}/s · ETA {eta}   ");
            }
        })
    };
    let ae_ok = engine.anti_entropy().await;
    let work = Shutdown::new();
    let workers = tokio::spawn(
        engine
            .clone()
            .run_workers(work.clone(), config.admin.drain_timeout),
    );
    loop {
        // Done when nothing is left that has not been tried at least once (the rest waits on a
        // server that is down, and is retried by the daemon).
        if !engine.queue.has_untried() || shutdown.is_triggered() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    work.trigger();
    let _ = workers.await;
    reporter.abort();
    let left = engine.queue.backlog();
    eprintln!(
        "\nsync finished in {:.1}s: {} scanned, {} queued, {left} waiting (retried by the daemon){}",
        started.elapsed().as_secs_f64(),
        engine.progress.scanned.load(Ordering::Relaxed),
        engine.progress.queued.load(Ordering::Relaxed),
        if ae_ok {
            ""
        } else {
            "; a listing failed, run again when every fileserver is up"
        }
    );
    Ok(left)
}
