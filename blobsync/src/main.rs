//! The blobsync binary: CLI, config, logs, then `blobsync::run`.

use anyhow::Context;
use blobsync::config::SECRET_KEYS;
use blobsync::Config;
use clap::Parser;
use service::{CommonArgs, Shutdown};

/// Verified N-way replication between fileservers.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: Config = match cli.common.loader("blobsync").secrets(SECRET_KEYS).load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("blobsync: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = config.validate() {
        eprintln!("blobsync: invalid configuration: {e}");
        std::process::exit(2);
    }
    if cli.common.check_config {
        println!(
            "blobsync: configuration OK (listen {}, {} fileservers, buckets {:?})",
            config.server.listen,
            config.fileservers.len(),
            config.buckets
        );
        return Ok(());
    }
    service::telemetry::init(&config.log);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("listen on {}", config.server.listen))?;
        blobsync::run(config, listener, Shutdown::on_signals())
            .await
            .context("blobsync failed")
    })
}
