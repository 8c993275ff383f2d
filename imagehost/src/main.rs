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
    let config: Config = cli
        .common
        .load_or_exit("imagehost", SECRET_KEYS, Config::validate, |c| {
            format!(
                "listen {}, {} fileserver(s), buckets {}/{}",
                c.server.listen,
                c.fileservers.len(),
                c.buckets.uploads,
                c.buckets.proxy
            )
        });
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
