//! The imagehost binary: CLI, config, logs, then `imagehost::run`.

use anyhow::Context;
use clap::Parser;
use imagehost::config::SECRET_KEYS;
use imagehost::Config;
use service::{CommonArgs, Shutdown};

/// The Hive imagehoster API: signed uploads, serving, resizing proxy, avatars and covers.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: Config = match cli.common.loader("imagehost").secrets(SECRET_KEYS).load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("imagehost: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = config.validate() {
        eprintln!("imagehost: invalid configuration: {e}");
        std::process::exit(2);
    }
    if cli.common.check_config {
        println!(
            "imagehost: configuration OK (listen {}, {} fileserver(s), buckets {}/{})",
            config.server.listen,
            config.fileservers.len(),
            config.buckets.uploads,
            config.buckets.proxy
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
        imagehost::run(config, listener, Shutdown::on_signals())
            .await
            .context("imagehost failed")
    })
}
