//! The edge binary: CLI, config, logs, then pingora's server loop.

use clap::Parser;
use edge::Config;
use service::CommonArgs;

/// The caching load balancer of the Hive image cluster.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() {
    let cli = Cli::parse();
    let config: Config = cli.common.load_or_exit("edge", &[], Config::validate, |c| {
        format!(
            "listen {}, {} upstream node(s)",
            c.server.listen,
            c.upstreams.nodes.len()
        )
    });
    service::telemetry::init(&config.log);
    match edge::build_server(&config) {
        Ok(server) => {
            tracing::info!(listen = %config.server.listen, "edge starting");
            server.run_forever()
        }
        Err(e) => {
            eprintln!("edge: {e}");
            std::process::exit(2);
        }
    }
}
