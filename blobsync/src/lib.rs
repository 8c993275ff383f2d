//! blobsync: keeps every fileserver's copy of every object converged, verified by hash.
//!
//! Work arrives as change events (imagehost, MinIO webhooks) and from anti-entropy passes over
//! the listings; it sits in a persistent sled queue until done ([`queue`]); workers copy each
//! object once from a verified replica to every server that lacks it ([`copy`]); takedowns are
//! tombstones that win over every copy; the scrub re-hashes stored copies ([`scrub`]).
//!
//! A library with a thin binary: [`run`] is the daemon, [`oneshot`] the one-shot commands
//! (`sync --once`, `scrub --once`), which ask a running daemon when there is one.

pub mod antientropy;
pub mod config;
pub mod copy;
pub mod counts;
pub mod engine;
pub mod error;
pub mod fanout;
pub mod http;
pub mod imagehosts;
pub mod limit;
pub mod metrics;
pub mod migrate;
pub mod oneshot;
pub mod probe;
pub mod purge;
pub mod queue;
pub mod remote;
pub mod report;
pub mod scrub;
pub mod stats;
pub mod takedown;

pub use config::Config;
pub use engine::open;
pub use error::Error;

use std::sync::Arc;

use service::Shutdown;
use tokio::net::TcpListener;

/// The daemon: API on `listener`, workers, anti-entropy, scrub, until `shutdown`; then in-flight
/// copies get `admin.drain_timeout` to finish, and whatever remains stays queued.
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    let engine = open(&config)?;
    let drain = config.admin.drain_timeout;
    let workers = tokio::spawn(engine.clone().run_workers(shutdown.clone(), drain));
    tokio::spawn(engine.clone().anti_entropy_loop(shutdown.clone()));
    tokio::spawn(engine.clone().scrub_loop(shutdown.clone()));
    tokio::spawn(engine.clone().housekeeping_loop(shutdown.clone()));
    let stats = Arc::new(stats::Stats::default());
    let stop = shutdown.clone();
    tokio::spawn(service::stats::sample_forever(
        stats.history(),
        async move { stop.cancelled().await },
        stats::sampler(),
    ));
    let app = http::router(http::AppState {
        engine: engine.clone(),
    })
    .merge(stats::router(stats))
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
