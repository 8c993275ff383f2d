//! The edge binary: CLI, config, logs, then pingora's server loop.

use clap::Parser;
use edge::{Config, RunOptions};
use service::CommonArgs;

// Per-request allocations (headers, metas, tasks) dominate a cache hit under glibc malloc.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The caching load balancer of the Hive image cluster.
///
/// Zero-downtime upgrade or config reload: start a second process with `--upgrade` (same
/// `server.upgrade_sock`), then send SIGQUIT to the old one; it hands over its listeners and
/// drains. SIGTERM stops gracefully within `server.grace_period` + `server.shutdown_timeout`.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Take the listening sockets over from the running edge (then SIGQUIT the old process).
    #[arg(short = 'u', long)]
    upgrade: bool,
    /// Run in the background (for systemd `Type=forking`); writes `server.pid_file`.
    #[arg(short = 'd', long)]
    daemon: bool,
}

fn main() {
    let cli = Cli::parse();
    let config: Config = cli
        .common
        .load_or_exit("edge", edge::config::SECRET_KEYS, Config::validate, |c| {
            format!(
                "listen {}{}, {} upstream node(s), cache {}",
                c.server.listen,
                c.tls.listen.map(|t| format!(" + tls {t}")).unwrap_or_default(),
                c.upstreams.nodes.len(),
                if c.cache.enabled {
                    format!("{} MiB memory", c.cache.memory_bytes >> 20)
                } else {
                    "off".into()
                }
            )
        });
    service::telemetry::init(&quiet_pingora(&config.log));
    let run = RunOptions {
        upgrade: cli.upgrade,
        daemon: cli.daemon,
    };
    match edge::build_server(&config, &run) {
        Ok(server) => {
            tracing::info!(listen = %config.server.listen, upgrade = run.upgrade, "edge starting");
            server.run_forever()
        }
        Err(e) => {
            eprintln!("edge: {e}");
            std::process::exit(2);
        }
    }
}

/// The log filter with pingora-cache's one-time "no header compression dictionary loaded"
/// warning left out: the optional zstd dictionary would only shrink the few header bytes of each
/// disk-tier record, and the warning on every first write reads as a fault. Other pingora-cache
/// warnings still show; a filter that names `pingora_cache` itself is left as given.
fn quiet_pingora(log: &service::telemetry::LogConfig) -> service::telemetry::LogConfig {
    let mut log = log.clone();
    if !log.level.contains("pingora_cache") {
        log.level = format!("{},pingora_cache::meta=error", log.level);
    }
    log
}
