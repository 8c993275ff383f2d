//! The blobsync binary: `run` (the daemon, default), `status`, `sync --once`, `scrub --once`,
//! `migrate`.

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::Context;
use blobsync::config::SECRET_KEYS;
use blobsync::Config;
use clap::{Parser, Subcommand};
use service::{CommonArgs, Shutdown};

/// Verified N-way replication between fileservers.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Print the running daemon's backlog, oldest pending age and per-server state (with no
    /// daemon running, what its queue holds).
    Status,
    /// One anti-entropy pass over every fileserver, then copy until done; progress and ETA on
    /// stderr. Asks the running daemon when there is one. Exit 3: objects still waiting.
    Sync {
        /// Run once and exit (the daemon does this periodically on its own).
        #[arg(long, required = true)]
        once: bool,
    },
    /// Re-read and re-hash every stored copy now, then repair the bad ones from a verified
    /// replica; asks the running daemon when there is one. Exit 3: repairs still waiting.
    Scrub {
        /// Run once and exit (the daemon scrubs every `scrub.interval` on its own).
        #[arg(long, required = true)]
        once: bool,
    },
    /// Copy an existing store (the reference imagehoster's directory, or an S3 bucket) into one
    /// bucket of every fileserver, each upload verified against its key. Resumable: run the same
    /// command again after a kill. Exit 3: corrupt objects were found, or some could not be copied
    /// (too large); both are listed at the end.
    Migrate(MigrateArgs),
}

#[derive(clap::Args)]
struct MigrateArgs {
    /// The store's directory (the one holding the objects, or their 2-character folders).
    #[arg(long, conflicts_with = "from_s3", required_unless_present = "from_s3")]
    from_dir: Option<std::path::PathBuf>,
    /// An S3 endpoint (`http(s)://host:port`) to read `--from-bucket` from; credentials from
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    #[arg(long, requires = "from_bucket")]
    from_s3: Option<String>,
    #[arg(long)]
    from_bucket: Option<String>,
    /// The source's layout: `flat`, or `partitioned` (the imagehoster's `storage_partitioning`).
    #[arg(long, default_value = "flat")]
    layout: String,
    /// The cluster's bucket to fill.
    #[arg(long, default_value = "uploads")]
    bucket: String,
    /// Keys that are not content hashes (`U…` originals, variants): `copy` as they are, or `skip`.
    #[arg(long, default_value = "copy", value_parser = ["copy", "skip"])]
    unverifiable: String,
    /// The checkpoint file (default: `migrate-<bucket>.json` beside the queue).
    #[arg(long)]
    state: Option<std::path::PathBuf>,
    /// Objects copied at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

impl MigrateArgs {
    fn options(self, config: &Config) -> anyhow::Result<blobsync::migrate::Options> {
        let layout: blobstore::Layout =
            serde_json::from_value(serde_json::Value::String(self.layout.clone()))
                .with_context(|| format!("--layout {}: flat or partitioned", self.layout))?;
        let (source, source_bucket) = match (self.from_dir, self.from_s3) {
            (Some(dir), _) => {
                let bucket = dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .context("--from-dir must name a directory")?
                    .to_string();
                let root = dir.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
                let fs = blobstore::FileserverConfig {
                    name: "source".into(),
                    layout,
                    directory: Some(blobstore::DirConfig {
                        path: root,
                        create: false,
                    }),
                    ..Default::default()
                };
                (fs, bucket)
            }
            (None, Some(endpoint)) => {
                let fs = blobstore::FileserverConfig {
                    name: "source".into(),
                    layout,
                    s3: Some(blobstore::S3Config {
                        endpoint,
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                (fs, self.from_bucket.unwrap_or_default())
            }
            (None, None) => anyhow::bail!("give --from-dir or --from-s3"),
        };
        let state = self.state.unwrap_or_else(|| {
            config
                .queue
                .path
                .with_file_name(format!("migrate-{}.json", self.bucket))
        });
        Ok(blobsync::migrate::Options {
            source,
            source_bucket,
            bucket: self.bucket,
            copy_unverifiable: self.unverifiable == "copy",
            state,
            concurrency: self.concurrency,
        })
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: Config = cli
        .common
        .load_or_exit("blobsync", SECRET_KEYS, Config::validate, |c| {
            format!(
                "listen {}, {} fileservers, buckets {:?}",
                c.server.listen,
                c.fileservers.len(),
                c.buckets
            )
        });
    if let Some(Command::Status) = cli.command {
        return status(&config);
    }
    service::telemetry::init(&config.log);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the runtime")?;
    rt.block_on(async {
        match cli.command {
            Some(Command::Sync { .. }) => {
                let out = blobsync::oneshot::sync_once(config, Shutdown::on_signals()).await?;
                std::process::exit(if out.complete() { 0 } else { 3 });
            }
            Some(Command::Migrate(args)) => {
                let opts = args.options(&config)?;
                let done = blobsync::migrate::migrate(&config, &opts, &Shutdown::on_signals()).await?;
                println!("{}", blobsync::migrate::summary(&done));
                let c = &done.counts;
                std::process::exit(if c.corrupt + c.failed > 0 { 3 } else { 0 });
            }
            Some(Command::Scrub { .. }) => {
                let out = blobsync::oneshot::scrub_once(config, Shutdown::on_signals()).await?;
                std::process::exit(if out.complete() { 0 } else { 3 });
            }
            _ => {
                let listener = tokio::net::TcpListener::bind(config.server.listen)
                    .await
                    .with_context(|| format!("listen on {}", config.server.listen))?;
                blobsync::run(config, listener, Shutdown::on_signals())
                    .await
                    .context("blobsync failed")
            }
        }
    })
}

/// The running daemon's `GET /status`, printed for people; with no daemon answering, what its
/// queue holds (opened directly, which only works while no daemon holds it).
fn status(config: &Config) -> anyhow::Result<()> {
    let addr = config.server.listen;
    match daemon_status(addr) {
        Ok(v) => {
            print_status(&v);
            Ok(())
        }
        Err(e) => {
            eprintln!("no blobsync daemon answers on {addr} ({e:#}); reading its queue instead");
            let path = &config.queue.path;
            anyhow::ensure!(
                path.exists(),
                "no queue at {} either: nothing to report",
                path.display()
            );
            let queue = blobsync::queue::Queue::open(path).with_context(|| {
                format!(
                    "open the queue at {} (held by a daemon that does not answer?)",
                    path.display()
                )
            })?;
            let counts = queue.summary();
            let oldest = counts
                .oldest_enqueued_ms
                .map(|t| blobsync::queue::now_ms().saturating_sub(t) / 1000);
            print_status(&serde_json::json!({
                "backlog": counts.backlog,
                "pending_copies": counts.copies,
                "pending_takedowns": counts.backlog - counts.copies,
                "oldest_pending_seconds": oldest,
                "tombstones": counts.tombstones,
                "takedowns": counts.takedowns,
                "scrub": { "last_complete_ms": blobsync::scrub::last_done(&queue) },
            }));
            println!(
                "daemon                not running (figures from {})",
                path.display()
            );
            Ok(())
        }
    }
}

/// `GET /status` from the daemon at `addr`.
fn daemon_status(addr: std::net::SocketAddr) -> anyhow::Result<serde_json::Value> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)).context("connect")?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    serde_json::from_str(body).context("the daemon's /status is not JSON")
}

fn print_status(v: &serde_json::Value) {
    println!("backlog               {}", v["backlog"]);
    println!(
        "  copies / takedowns  {} / {}",
        v["pending_copies"], v["pending_takedowns"]
    );
    match v["oldest_pending_seconds"].as_u64() {
        Some(s) => println!("oldest pending        {s}s"),
        None => println!("oldest pending        -"),
    }
    println!("tombstones            {}", v["tombstones"]);
    println!("takedowns             {}", v["takedowns"]);
    let scrub = &v["scrub"];
    match scrub["last_complete_ms"].as_u64() {
        Some(ms) => println!(
            "last scrub            {}s ago{}",
            blobsync::queue::now_ms().saturating_sub(ms) / 1000,
            if scrub["running"] == true {
                " (one running)"
            } else {
                ""
            }
        ),
        None => println!("last scrub            never"),
    }
    if let Some(servers) = v["fileservers"].as_object() {
        for (name, state) in servers {
            println!("{name:<22}{}", state.as_str().unwrap_or("?"));
        }
    }
}
