//! The Hive imagehoster, rebuilt: the HTTP API frontends already speak, over N fileservers.
//!
//! This crate is a library with a thin binary (`main.rs`). [`run`] serves the API on a listener
//! until the shutdown signal, then drains. So far it serves the health routes over the configured
//! fileservers; uploads, serving and the resizing proxy land in later steps.

pub mod config;
pub mod error;
pub mod http;
pub mod metrics;
pub mod stores;

pub use config::Config;
pub use error::Error;

use service::Shutdown;
use tokio::net::TcpListener;

/// Serves the API on `listener` (and `/metrics` on the admin listener, if configured) until
/// `shutdown`, then lets in-flight requests finish within `admin.drain_timeout`.
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    config.validate().map_err(Error::Config)?;
    let stores = stores::Stores::open(&config)?;
    let app = http::router(http::AppState::new(config.clone(), stores));
    let drain = config.admin.drain_timeout;
    let admin = match config.admin.listen {
        Some(addr) => {
            let l = TcpListener::bind(addr).await.map_err(|e| Error::Bind {
                addr: addr.to_string(),
                source: e,
            })?;
            tracing::info!(addr = %l.local_addr().map_err(Error::Io)?, "admin listener (metrics) ready");
            Some(tokio::spawn(service::admin::serve(
                l,
                service::admin::router(),
                shutdown.clone(),
                drain,
            )))
        }
        None => None,
    };
    tracing::info!(addr = %listener.local_addr().map_err(Error::Io)?, "imagehost ready");
    service::admin::serve(listener, app, shutdown, drain)
        .await
        .map_err(Error::Io)?;
    if let Some(task) = admin {
        let _ = task.await;
    }
    tracing::info!("imagehost stopped");
    Ok(())
}
