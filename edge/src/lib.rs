//! edge: the HTTP front of the cluster, on pingora.
//!
//! So far a health-checked round-robin reverse proxy over the configured upstreams; the cache,
//! consistent hashing, purge, limits and TLS land in later steps. Pingora's `Server` owns threads,
//! signals and listeners, so the library exposes [`build_server`] and the binary runs it.

pub mod config;
pub mod error;
pub mod metrics;
pub mod proxy;

pub use config::Config;
pub use error::Error;

use std::sync::Arc;

use pingora::lb::health_check::TcpHealthCheck;
use pingora::lb::selection::RoundRobin;
use pingora::lb::LoadBalancer;
use pingora::proxy::http_proxy_service;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::background_service;

/// A pingora server with the proxy service and its health checker, ready for `run_forever`.
pub fn build_server(config: &Config) -> Result<Server, Error> {
    config.validate().map_err(Error::Config)?;
    let conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(config.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(config.server.shutdown_timeout.as_secs()),
        upstream_keepalive_pool_size: config.upstreams.keepalive_pool,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();

    let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(config.upstreams.nodes.iter().map(String::as_str))
        .map_err(|e| Error::Config(format!("upstreams.nodes: {e}")))?;
    lb.set_health_check(TcpHealthCheck::new());
    lb.health_check_frequency = Some(config.upstreams.health_interval);
    let health = background_service("upstream health checks", lb);
    let lb: Arc<LoadBalancer<RoundRobin>> = health.task();

    let mut proxy = http_proxy_service(
        &server.configuration,
        proxy::Edge::new(lb, config.upstreams.clone()),
    );
    proxy.add_tcp(&config.server.listen.to_string());
    server.add_service(health);
    server.add_service(proxy);
    Ok(server)
}
