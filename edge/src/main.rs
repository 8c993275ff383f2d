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
    let config: Config = match cli.common.loader("edge").load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("edge: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = config.validate() {
        eprintln!("edge: invalid configuration: {e}");
        std::process::exit(2);
    }
    if cli.common.check_config {
        println!(
            "edge: configuration OK (listen {}, {} upstream node(s))",
            config.server.listen,
            config.upstreams.nodes.len()
        );
        return;
    }
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
