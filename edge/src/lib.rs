//! edge: the HTTP front of the cluster, on pingora — a byte-bounded memory cache with a disk
//! tier, request coalescing, stale serving, purge and bans propagated to peer edges, consistent
//! hashing over health-checked imagehost nodes with failover, upload limits, TLS with SNI and
//! HTTP/2, and an admin listener with metrics and a stats page.
//!
//! Pingora's `Server` owns threads, signals, listeners and the zero-downtime upgrade, so the
//! library exposes [`build_server`] and the binary runs it.

pub mod admin;
pub mod cache;
pub mod config;
pub mod error;
pub mod hits;
pub mod hot;
pub mod limits;
pub mod metrics;
/// CIDR networks and the client address behind trusted proxies (shared with imagehost).
pub use service::net;
pub mod proxy;
pub mod purge;
pub mod state;
pub mod stats;
pub mod takedowns;
pub mod tls;
pub mod upstreams;
pub mod warm;

pub use config::Config;
pub use error::Error;
pub use state::State;

use std::sync::Arc;

use pingora::apps::HttpServerOptions;
use pingora::lb::selection::Consistent;
use pingora::lb::LoadBalancer;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::proxy::http_proxy;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::{background_service, GenBackgroundService};
use pingora::services::listening::Service;

/// How the process was started: `upgrade` takes the listeners over from a running edge.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub upgrade: bool,
    pub daemon: bool,
}

/// A pingora server with the proxy, health checks and admin listener, ready for `run_forever`.
pub fn build_server(config: &Config, run: &RunOptions) -> Result<Server, Error> {
    config.validate().map_err(Error::Config)?;
    let (opt, conf) = server_conf(config, run);
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let (state, health) = build_state(config)?;
    let mut app = http_proxy(&server.configuration, proxy::Edge::new(state.clone()));
    let mut options = HttpServerOptions::default();
    options.keepalive_request_limit = Some(config.server.keepalive_requests);
    options.h2_idle_timeout = Some(config.server.h2_idle_timeout);
    app.server_options = Some(options);
    let mut proxy = Service::new(
        "edge proxy".into(),
        limits::ConnectionCap::new(
            hits::HitPath::new(app, state.clone()),
            config.server.max_connections,
        ),
    );
    add_listeners(&mut proxy, config)?;
    server.add_service(health);
    server.add_service(proxy);
    add_background(&mut server, config, state)?;
    Ok(server)
}

/// Pingora's own settings: threads, grace periods, upstream pool and retries, upgrade socket.
fn server_conf(config: &Config, run: &RunOptions) -> (Opt, ServerConf) {
    let conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(config.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(config.server.shutdown_timeout.as_secs()),
        upstream_keepalive_pool_size: config.upstreams.keepalive_pool,
        max_retries: config.upstreams.retries + 1,
        upgrade_sock: config.server.upgrade_sock.to_string_lossy().into_owned(),
        pid_file: config.server.pid_file.to_string_lossy().into_owned(),
        daemon: run.daemon,
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: run.upgrade,
        daemon: run.daemon,
        ..Opt::default()
    };
    (opt, conf)
}

/// The upstreams' health checks, run as a pingora background service.
type HealthChecks = GenBackgroundService<LoadBalancer<Consistent>>;

/// The state every handler shares, and the upstreams' health-check service.
fn build_state(config: &Config) -> Result<(Arc<State>, HealthChecks), Error> {
    let cache = if config.cache.enabled {
        Some(cache::Cache::build(&config.cache)?)
    } else {
        None
    };
    let (upstreams, health) = upstreams::Upstreams::build(&config.upstreams)?;
    let state = Arc::new(State {
        config: config.clone(),
        cache,
        upstreams,
        purger: purge::Purger::new(&config.purge, cache).map_err(Error::Config)?,
        upload_rate: limits::RateLimiter::new(config.limits.uploads_per_second),
        trusted_proxies: config
            .limits
            .trusted_proxies
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()
            .map_err(Error::Config)?,
        hot: hot::Hot::new(config.warm.hot_keys, config.warm.sample_one_in),
        warm: Arc::default(),
    });
    Ok((state, health))
}

/// The plain HTTP listener, and the TLS one (HTTP/2 by ALPN, certificates by SNI) if configured.
fn add_listeners<A>(proxy: &mut Service<A>, config: &Config) -> Result<(), Error> {
    // pingora's default read buffer is 64 KiB per connection: idle and slow clients would each
    // hold that much. Requests are small; uploads stream through in several reads.
    let buffers = L4BufferSettings::new(config.server.read_buffer_bytes, config.server.write_buffer_bytes);
    proxy.add_listener(ListenerConfig::tcp(config.server.listen.to_string()).l4_buffer(buffers));
    if let Some(listen) = config.tls.listen {
        let first = &config.tls.certs[0];
        let mut tls = TlsSettings::intermediate(
            &first.cert_file.to_string_lossy(),
            &first.key_file.to_string_lossy(),
        )
        .map_err(|e| Error::Config(format!("tls: {e}")))?;
        tls.set_cert_resolver(tls::SniResolver::new(&config.tls.certs).map_err(Error::Config)?);
        tls.enable_h2();
        proxy.add_listener(
            ListenerConfig::tcp(listen.to_string())
                .tls(tls)
                .l4_buffer(buffers),
        );
    }
    Ok(())
}

/// The ban lurker and the takedown puller (with a cache), the warm boot, and the admin listener.
fn add_background(server: &mut Server, config: &Config, state: Arc<State>) -> Result<(), Error> {
    if let Some(cache) = state.cache {
        server.add_service(background_service(
            "ban lurker",
            cache::store::lurker::Lurker { store: cache.store },
        ));
        if let Some(url) = &config.takedowns.url {
            cache.store.close_disk();
            server.add_service(background_service(
                "takedown list",
                takedowns::Puller {
                    cache,
                    feed: service::takedown_feed::Feed::new(url, config.takedowns.token.clone())
                        .map_err(Error::Config)?,
                    poll_interval: config.takedowns.poll_interval,
                },
            ));
        }
    }
    if !config.warm.peers.is_empty() {
        server.add_service(background_service(
            "warm boot",
            warm::Warmer {
                config: config.warm.clone(),
                listen: config.server.listen,
                progress: state.warm.clone(),
            },
        ));
    }
    if let Some(listen) = config.admin.listen {
        server.add_service(background_service("admin", admin::Admin { listen, state }));
    }
    Ok(())
}
