//! The state every handler shares, built once at start: the configuration, the fileservers, the
//! account source, lists and quotas, the fetcher and the render pool, the hot cache, and the
//! single-flight maps through which concurrent requests share one load or render.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::auth::AccountSource;
use crate::blacklist::Blacklist;
use crate::fetch::Fetcher;
use crate::flight::Flights;
use crate::hotcache::HotCache;
use crate::pipeline::Settings;
use crate::pool::Pool;
use crate::quota::Quota;
use crate::stores::Stores;
use crate::{ApiError, Config};

mod shared;
pub use shared::{Original, OriginalFrom, Variant};

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

pub struct Inner {
    pub config: Config,
    pub stores: Stores,
    pub accounts: AccountSource,
    pub blacklist: Arc<Blacklist>,
    pub quota: Quota,
    pub replication: Option<Arc<crate::replication::Replication>>,
    pub spool_dir: Arc<Path>,
    /// What all uploads may hold in memory at once (`upload.spool_memory_total`).
    pub spool_budget: crate::spool_budget::Budget,
    /// `server.service_url`, parsed: our own origin for `/p/` unwrapping and upload shortcuts.
    pub service_url: url::Url,
    pub fetcher: Fetcher,
    pub pool: Pool,
    /// Room for originals held in memory (fetching, read, waiting for the pool).
    pub inputs: crate::inputs::Inputs,
    /// Shares of cold renders per client and per source host.
    pub render_limits: crate::limit::RenderLimits,
    pub settings: Settings,
    pub hotcache: Option<HotCache>,
    /// Decoded originals kept for the next sizes of a burst (`pipeline.kept_pixels_bytes`).
    pub kept: crate::pipeline::kept::Kept,
    pub variants: Flights<Result<Arc<Variant>, ApiError>>,
    pub originals: Flights<Result<Original, ApiError>>,
    /// The cluster-wide takedown list: covered keys are refused (451) on every route.
    pub takedowns: Arc<crate::takedowns::Takedowns>,
    pub(crate) version: String,
}

impl AppState {
    pub fn new(
        config: Config,
        stores: Stores,
        accounts: AccountSource,
        blacklist: Arc<Blacklist>,
        quota: Quota,
        replication: Option<Arc<crate::replication::Replication>>,
    ) -> Result<Self, crate::Error> {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let version = format!("{}-{}", env!("CARGO_PKG_VERSION"), started);
        let spool_dir: Arc<Path> =
            Arc::from(config.upload.spool_dir.clone().unwrap_or_else(std::env::temp_dir));
        let spool_budget = crate::spool_budget::Budget::new(config.upload.spool_memory_total);
        let service_url = url::Url::parse(&config.server.service_url)
            .map_err(|e| crate::Error::Config(format!("server.service_url: {e}")))?;
        let fetcher = Fetcher::new(config.proxy.fetch()).map_err(crate::Error::Config)?;
        let pool = Pool::new(
            config.pipeline.workers,
            config.pipeline.queue,
            config.pipeline.memory_budget,
        );
        let inputs = crate::inputs::Inputs::new(config.pipeline.input_budget, config.pipeline.input_wait);
        let render_limits = crate::limit::RenderLimits::new(&config).map_err(crate::Error::Config)?;
        let settings = config.pipeline.settings(&config.proxy);
        let hotcache = match &config.cache.dir {
            Some(dir) => Some(
                HotCache::open(dir, config.cache.max_bytes)
                    .map_err(|e| crate::Error::Config(format!("cache.dir `{}`: {e}", dir.display())))?,
            ),
            None => {
                tracing::warn!("cache.dir unset: no local hot cache; every miss goes to the fileservers");
                None
            }
        };
        let kept = crate::pipeline::kept::Kept::new(config.pipeline.kept_pixels_bytes);
        let takedowns =
            crate::takedowns::Takedowns::open(config.takedowns.state_file.clone()).map_err(|e| {
                crate::Error::Config(format!(
                    "takedowns.state_file `{}`: {e}",
                    config
                        .takedowns
                        .state_file
                        .as_deref()
                        .unwrap_or(Path::new(""))
                        .display()
                ))
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                stores,
                accounts,
                blacklist,
                quota,
                replication,
                spool_dir,
                spool_budget,
                service_url,
                fetcher,
                pool,
                inputs,
                render_limits,
                settings,
                hotcache,
                kept,
                variants: Flights::default(),
                originals: Flights::default(),
                takedowns: Arc::new(takedowns),
                version,
            }),
        })
    }

    pub fn inner(&self) -> &Inner {
        &self.inner
    }

    /// Records taken-down keys (pushed or pulled) and clears the hot cache of them and their
    /// variants; the keys that were new.
    /// The state file's fsync and the hot cache's sweep run on a blocking thread.
    pub async fn take_down(&self, keys: Vec<String>, last: Option<u64>) -> std::io::Result<Vec<String>> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let new = state.inner().takedowns.add(&keys, last)?;
            state.forget(&new);
            Ok(new)
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Clears the hot cache of taken-down keys and their variants, and forgets their decoded
    /// pixels.
    pub fn forget(&self, keys: &[String]) {
        for k in keys {
            let n = self.inner().hotcache.as_ref().map_or(0, |c| c.remove_derived(k));
            let pixels = self.inner().kept.forget(k);
            tracing::info!(key = %k, hot_cache_files = n, kept_pixels = pixels, "taken down");
        }
    }
}
