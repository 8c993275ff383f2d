//! What every request handler shares: the configuration, the cache, the upstream pool, the purge
//! fan-out, the upload limiter and the trusted proxies; built once by `build_server`.

use std::sync::Arc;

use service::net::Cidr;

use crate::config::Config;
use crate::{cache, hot, limits, purge, upstreams, warm};

pub struct State {
    pub config: Config,
    pub cache: Option<&'static cache::Cache>,
    pub upstreams: Arc<upstreams::Upstreams>,
    pub purger: purge::Purger,
    pub upload_rate: limits::RateLimiter,
    pub trusted_proxies: Vec<Cidr>,
    /// The most requested objects, for peers to preload.
    pub hot: hot::Hot,
    /// This edge's own preload from a peer.
    pub warm: Arc<warm::Progress>,
}
