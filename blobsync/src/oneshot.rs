//! `blobsync sync --once` and `blobsync scrub --once`: through the running daemon's API when one
//! holds this config's queue ([`crate::remote`]), else by opening the queue here, doing the pass,
//! and copying (or repairing) until nothing untried is left. Progress goes to stderr.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use service::Shutdown;

use crate::engine::open;
use crate::engine::Engine;
use crate::limit::RateLimiter;
use crate::remote::Daemon;
use crate::report::{eta, not_checked, Reporter};
use crate::{scrub, Config, Error};

/// What a one-shot run left: objects still waiting (on an unreachable server), and for a scrub
/// the corrupt copies it found and the fileservers it could not check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub left: u64,
    pub corrupt: u64,
    pub unchecked: Vec<String>,
}

impl Outcome {
    /// Everything done: nothing waiting, every fileserver checked.
    pub fn complete(&self) -> bool {
        self.left == 0 && self.unchecked.is_empty()
    }
}

/// Waits for the running daemon's pass, or for Ctrl-C (the daemon carries on with the pass).
async fn with_daemon<T>(
    shutdown: &Shutdown,
    work: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, Error> {
    tokio::select! {
        r = work => r.map_err(Error::Daemon),
        _ = shutdown.cancelled() => Err(Error::Daemon(
            "interrupted; the running daemon carries on with the pass (see `blobsync status`)".into(),
        )),
    }
}

/// One anti-entropy pass over every bucket, then copies until nothing untried is left.
pub async fn sync_once(config: Config, shutdown: Shutdown) -> Result<Outcome, Error> {
    let mut reporter = Reporter::default();
    if let Some(daemon) = Daemon::find(&config).await {
        let left = with_daemon(&shutdown, daemon.sync(&mut reporter)).await?;
        return Ok(Outcome {
            left,
            ..Outcome::default()
        });
    }
    let engine = open(&config)?;
    let ae_ok = {
        let e = engine.clone();
        let progress = watch(&engine, true, move |rate| {
            let p = &e.progress;
            let (scanned, queued) = (
                p.scanned.load(Ordering::Relaxed),
                p.queued.load(Ordering::Relaxed),
            );
            let backlog = e.queue.backlog() as u64;
            format!(
                "scanned {scanned} · queued {queued} · left {backlog} · {rate:.0}/s · ETA {}",
                eta(backlog, rate)
            )
        });
        // Copies start as the pass finds work, and the pass keeps at most
        // `anti_entropy.max_ahead` objects ahead of them.
        let ok = drain(&engine, &config, &shutdown, engine.anti_entropy()).await;
        progress.abort();
        ok
    };
    let left = engine.queue.backlog() as u64;
    reporter.finish(&format!(
        "sync finished in {:.1}s: {} scanned, {} queued, {left} waiting (retried by the daemon){}",
        reporter.elapsed().as_secs_f64(),
        engine.progress.scanned.load(Ordering::Relaxed),
        engine.progress.queued.load(Ordering::Relaxed),
        match ae_ok {
            Some(true) => "",
            Some(false) => "; a listing failed, run again when every fileserver is up",
            None => "; interrupted, the next pass resumes from its checkpoint",
        }
    ));
    Ok(Outcome {
        left,
        ..Outcome::default()
    })
}

/// One scrub pass now (resuming one cut short), then the repairs it queued.
pub async fn scrub_once(config: Config, shutdown: Shutdown) -> Result<Outcome, Error> {
    let mut reporter = Reporter::default();
    if let Some(daemon) = Daemon::find(&config).await {
        let (corrupt, left, unchecked) = with_daemon(&shutdown, daemon.scrub(&mut reporter)).await?;
        return Ok(Outcome {
            left,
            corrupt,
            unchecked,
        });
    }
    let engine = open(&config)?;
    let limiter = RateLimiter::new(config.scrub.bandwidth_limit);
    let e = engine.clone();
    let progress = watch(&engine, false, move |_| {
        let p = &e.scrub_progress;
        format!(
            "scrub checked {} · corrupt {} · {:.1} MB",
            p.checked.load(Ordering::Relaxed),
            p.corrupt.load(Ordering::Relaxed),
            p.bytes.load(Ordering::Relaxed) as f64 / 1e6
        )
    });
    let pass = scrub::pass(
        &engine.replicator.servers,
        &config.buckets,
        &engine.queue,
        limiter.as_ref(),
        config.scrub.parallel,
        &engine.scrub_progress,
    )
    .await;
    progress.abort();
    let pass = pass?;
    drain(&engine, &config, &shutdown, std::future::ready(())).await;
    let left = engine.queue.backlog() as u64;
    reporter.finish(&format!(
        "scrub finished in {:.1}s: {} copies checked, {} corrupt (queued for repair), {left} waiting{}",
        reporter.elapsed().as_secs_f64(),
        pass.checked,
        pass.corrupt,
        not_checked(&pass.unreachable)
    ));
    Ok(Outcome {
        left,
        corrupt: pass.corrupt,
        unchecked: pass.unreachable,
    })
}

/// Prints `line(rate)` every second until aborted; `rate` is queue items done per second. With
/// `bar`, the share of the queue done so far is shown too.
fn watch(
    engine: &Arc<Engine>,
    bar: bool,
    line: impl Fn(f64) -> String + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let engine = engine.clone();
    tokio::spawn(async move {
        let mut reporter = Reporter::default();
        let start = engine.queue.backlog() as f64;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let backlog = engine.queue.backlog() as u64;
            let done =
                (engine.progress.queued.load(Ordering::Relaxed) as f64 + start - backlog as f64).max(0.0);
            let share = if bar {
                crate::report::fraction(done as u64, backlog)
            } else {
                None
            };
            reporter.progress(share, &line(done / reporter.elapsed().as_secs_f64().max(0.001)));
        }
    })
}

/// Runs the workers while `first` runs (a pass that queues work as it goes, and may wait for
/// the workers to take it), then until every queued item has been tried once (what is left waits
/// on a server that is down, and is retried by the daemon). `None` if interrupted before `first`
/// finished; work it queued stays queued.
async fn drain<T>(
    engine: &Arc<Engine>,
    config: &Config,
    shutdown: &Shutdown,
    first: impl std::future::Future<Output = T>,
) -> Option<T> {
    let work = Shutdown::new();
    let workers = tokio::spawn(
        engine
            .clone()
            .run_workers(work.clone(), config.admin.drain_timeout),
    );
    let out = tokio::select! {
        out = first => Some(out),
        _ = shutdown.cancelled() => None,
    };
    while out.is_some() && engine.queue.has_untried() && !shutdown.is_triggered() {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    work.trigger();
    let _ = workers.await;
    out
}
