//! The Hive imagehoster, rebuilt: the HTTP API frontends already speak, over N fileservers.
//!
//! This crate is a library with a thin binary (`main.rs`). [`run`] serves the API on a listener
//! until the shutdown signal, then drains. Routes: health and readiness, signed uploads
//! (`/:user/:sig`, `/cs/:user/:sig`) written to every fileserver at a quorum, serving uploads
//! (`/:hash/:filename?`) with fallback between fileservers, the `/p/` resizing proxy with its
//! legacy `/{W}x{H}/` redirects, and avatar/cover redirects.

pub mod admin;
pub mod auth;
pub mod blacklist;
pub mod config;
pub mod error;
pub mod fetch;
pub mod flight;
pub mod hotcache;
pub mod http;
pub mod inputs;
pub mod keys;
pub mod limit;
pub mod metrics;
pub mod pipeline;
pub mod pool;
pub mod proxy;
pub mod quota;
pub mod replication;
pub mod serve;
pub mod sniff;
pub mod spool_budget;
pub mod state;
pub mod stats;
pub mod stores;
pub mod takedowns;
pub mod upload;

pub use config::Config;
pub use error::{ApiError, Error};

use service::Shutdown;
use tokio::net::TcpListener;

use crate::auth::source::RpcAccounts;
use crate::auth::AccountSource;

/// Serves the API on `listener` (and `/metrics` on the admin listener, if configured) until
/// `shutdown`, then lets in-flight requests finish within `admin.drain_timeout`.
pub async fn run(config: Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    config.validate().map_err(Error::Config)?;
    let stores = stores::Stores::open(&config)?;
    let accounts = match &config.accounts.static_file {
        Some(path) => AccountSource::from_file(path)?,
        None => AccountSource::Rpc(RpcAccounts::new(
            config.accounts.rpc_nodes.clone(),
            config.accounts.timeout,
            config.accounts.cache_ttl,
        )?),
    };
    let blacklist = blacklist::Blacklist::load(
        config.blacklist.images_file.clone(),
        config.blacklist.accounts_file.clone(),
    )
    .map_err(Error::Blacklist)?;
    blacklist.spawn_reloader(config.blacklist.reload_interval);
    let redis_url = config.redis_url.as_ref().map(|s| s.expose().to_string());
    let quota = quota::Quota::connect(redis_url.as_deref())
        .await
        .map_err(Error::Redis)?;
    if redis_url.is_none() {
        tracing::warn!("no redis_url: upload quotas are counted per imagehost node, not across the cluster");
    }

    let replication = match &config.replication.events_url {
        Some(url) => Some(std::sync::Arc::new(
            replication::Replication::new(url, config.replication.token.clone(), &config.buckets.uploads)
                .map_err(Error::Config)?,
        )),
        None => None,
    };
    let state = state::AppState::new(config.clone(), stores, accounts, blacklist, quota, replication)?;
    if let Some(url) = &config.takedowns.url {
        let feed =
            service::takedown_feed::Feed::new(url, config.takedowns.token.clone()).map_err(Error::Config)?;
        let (list, on_new) = (state.inner().takedowns.clone(), state.clone());
        // The pull records them; what is left is the hot cache.
        tokio::spawn(takedowns::pull_forever(
            list,
            feed,
            config.takedowns.poll_interval,
            move |keys| on_new.forget(keys),
        ));
    }
    let stats = std::sync::Arc::new(stats::Stats::default());
    let stop = shutdown.clone();
    tokio::spawn(service::stats::sample_forever(
        stats.history(),
        async move { stop.cancelled().await },
        stats::sampler(),
    ));
    let admin_app = admin::router(state.clone(), stats);
    let app = http::router(state);
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
                admin_app,
                shutdown.clone(),
                drain,
            )))
        }
        None => None,
    };
    tracing::info!(addr = %listener.local_addr().map_err(Error::Io)?, "imagehost ready");
    service::http::serve(listener, app, shutdown, drain, config.server.timeouts())
        .await
        .map_err(Error::Io)?;
    if let Some(task) = admin {
        let _ = task.await;
    }
    tracing::info!("imagehost stopped");
    Ok(())
}
