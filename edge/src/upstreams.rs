//! The imagehost nodes: consistent hashing on the cache key (so each node's hot cache sees the
//! same URLs), HTTP health checks with rise/fall thresholds, passive outlier ejection of nodes
//! that fail or answer slowly (`outliers`), and the choice of the next node when one fails
//! during a request.

pub mod outliers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::http::RequestHeader;
use pingora::lb::health_check::{HealthObserve, HttpHealthCheck};
use pingora::lb::selection::Consistent;
use pingora::lb::{Backend, LoadBalancer};
use pingora::prelude::HttpPeer;
use pingora::services::background::{background_service, GenBackgroundService};

use crate::config::UpstreamsConfig;
use crate::metrics;
use crate::Error;
use outliers::{Outliers, Policy, Vote};

/// Logs every change of a node's health; a node the checks see come back up starts with a
/// clean record (its ejection, if any, was for the outage the checks have now seen end).
struct LogHealth {
    outliers: Arc<Outliers>,
}

#[async_trait::async_trait]
impl HealthObserve for LogHealth {
    async fn observe(&self, b: &Backend, healthy: bool) {
        if healthy {
            tracing::info!(backend = %b.addr, "backend is up");
            if let Some(addr) = b.addr.as_inet() {
                self.outliers.forget(addr);
                metrics::UPSTREAM_EJECTED
                    .with_label_values(&[&addr.to_string()])
                    .set(0);
            }
        } else {
            tracing::warn!(backend = %b.addr, "backend is down");
        }
    }
}

pub struct Upstreams {
    lb: Arc<LoadBalancer<Consistent>>,
    config: UpstreamsConfig,
    outliers: Arc<Outliers>,
}

impl Upstreams {
    /// The balancer and the background service that runs its health checks.
    pub fn build(
        config: &UpstreamsConfig,
    ) -> Result<(Arc<Upstreams>, GenBackgroundService<LoadBalancer<Consistent>>), Error> {
        let mut lb = LoadBalancer::<Consistent>::try_from_iter(config.nodes.iter().map(String::as_str))
            .map_err(|e| Error::Config(format!("upstreams.nodes: {e}")))?;
        let mut hc = HttpHealthCheck::new("imagehost", false);
        let mut req = RequestHeader::build("GET", config.health_path.as_bytes(), None)
            .map_err(|e| Error::Config(format!("upstreams.health_path: {e}")))?;
        req.insert_header("Host", "imagehost")
            .map_err(|e| Error::Config(e.to_string()))?;
        req.insert_header("User-Agent", "hive-edge-health")
            .map_err(|e| Error::Config(e.to_string()))?;
        hc.req = req;
        hc.consecutive_success = config.rise;
        hc.consecutive_failure = config.fall;
        hc.peer_template.options.connection_timeout = Some(config.health_timeout);
        hc.peer_template.options.read_timeout = Some(config.health_timeout);
        let outliers = Arc::new(Outliers::new(
            Policy {
                eject_after: config.eject_after,
                eject_time: config.eject_time,
                max_eject_time: config.max_eject_time,
                slow_after: config.slow_after,
            },
            config.nodes.len(),
        ));
        hc.health_changed_callback = Some(Box::new(LogHealth {
            outliers: outliers.clone(),
        }));
        lb.set_health_check(Box::new(hc));
        lb.health_check_frequency = Some(config.health_interval);
        lb.parallel_health_check = true;
        let service = background_service("upstream health checks", lb);
        let lb = service.task();
        Ok((
            Arc::new(Upstreams {
                lb,
                config: config.clone(),
                outliers,
            }),
            service,
        ))
    }

    /// The node for `key`: the first healthy, not ejected one on the hash ring not yet tried for
    /// this request; else the first healthy untried one; if every untried node is down, the
    /// first untried one anyway (fail open beats a sure 502).
    pub fn pick(&self, key: &[u8], tried: &[SocketAddr]) -> Option<SocketAddr> {
        let now = Instant::now();
        let untried = |b: &Backend| b.addr.as_inet().is_some_and(|a| !tried.contains(a));
        let serving = |b: &Backend| b.addr.as_inet().is_some_and(|a| !self.outliers.ejected(a, now));
        let best = self
            .lb
            .select_with(key, 256, |b, healthy| healthy && untried(b) && serving(b));
        let healthy = || self.lb.select_with(key, 256, |b, healthy| healthy && untried(b));
        let any = || self.lb.select_with(key, 256, |b, _| untried(b));
        best.or_else(healthy)
            .or_else(any)
            .and_then(|b| b.addr.as_inet().copied())
    }

    /// Records how an attempt at `addr` went: answered after `latency`, or failed (`None`).
    pub fn record(&self, addr: SocketAddr, latency: Option<Duration>) {
        let vote = latency.map_or(Vote::Bad, |l| self.outliers.vote_for(l));
        let now = Instant::now();
        if self.outliers.record(addr, vote, now) {
            metrics::UPSTREAM_EJECTIONS
                .with_label_values(&[&addr.to_string()])
                .inc();
            tracing::warn!(backend = %addr, "backend failing or slow: ejected for a while");
        }
        metrics::UPSTREAM_EJECTED
            .with_label_values(&[&addr.to_string()])
            .set(self.outliers.ejected(&addr, now) as i64);
    }

    /// The peer for `addr`; a `quick` read (an upload served from the stores) waits at most
    /// `serve_timeout` for each read instead of `read_timeout`.
    pub fn peer(&self, addr: SocketAddr, quick: bool) -> HttpPeer {
        let c = &self.config;
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(c.connect_timeout);
        peer.options.total_connection_timeout = Some(c.connect_timeout * 2);
        peer.options.read_timeout = Some(if quick {
            c.serve_timeout.min(c.read_timeout)
        } else {
            c.read_timeout
        });
        peer.options.write_timeout = Some(c.read_timeout);
        peer.options.idle_timeout = Some(c.idle_timeout);
        peer
    }

    pub fn node_count(&self) -> usize {
        self.config.nodes.len()
    }

    pub fn retries(&self) -> usize {
        self.config.retries
    }

    /// Each node with whether the health checks consider it up.
    pub fn health(&self) -> Vec<(String, bool)> {
        let backends = self.lb.backends();
        backends
            .get_backend()
            .iter()
            .map(|b| (b.addr.to_string(), backends.ready(b)))
            .collect()
    }
}
