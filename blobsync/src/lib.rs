//! blobsync: keeps every fileserver's copy of every object converged, verified by hash.
//!
//! A library with a thin binary. [`run`] opens the persistent queue (sled) and the fileservers and
//! serves the status API until shutdown. The replication engine (intake, queue workers,
//! anti-entropy, tombstones, scrub) lands in later steps.

pub mod config;
pub mod error;
pub mod http;
pub mod metrics;

pub use config::Config;
pub use error::Error;

use std::sync::Arc;

use service::Shutdown;
use tokio::net::TcpListener;

/// Serves blobsync's API on `listener` until `shutdown`.
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    config.validate().map_err(Error::Config)?;
    let db = sled::Config::new()
        .path(&config.queue.path)
        .open()
        .map_err(|e| Error::Queue {
            path: config.queue.path.display().to_string(),
            source: e,
        })?;
    let mut servers = Vec::new();
    for fs in &config.fileservers {
        for bucket in &config.buckets {
            servers.push(blobstore::open_bucket(fs, bucket)?);
        }
    }
    let state = http::AppState {
        inner: Arc::new(http::Inner { db, stores: servers }),
    };
    let app = http::router(state.clone());
    tracing::info!(addr = %listener.local_addr().map_err(Error::Io)?, "blobsync ready");
    let drain = config.admin.drain_timeout;
    service::admin::serve(listener, app.merge(service::admin::router()), shutdown, drain)
        .await
        .map_err(Error::Io)?;
    state.inner.db.flush_async().await.map_err(|e| Error::Queue {
        path: config.queue.path.display().to_string(),
        source: e,
    })?;
    tracing::info!("blobsync stopped");
    Ok(())
}
