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

// Rust's allocations (request and response buffers, decoded rasters, index entries) come from
// mimalloc: under glibc malloc a steady soak grew imagehost's RSS by a third or more in its
// second half (allocator fragmentation across threads); see the bench's soak figures.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Image jobs allocate and free buffers of megabytes on several threads (ours and the C codecs':
/// libjpeg-turbo, libwebp, dav1d). glibc raises its mmap threshold after each large free, and
/// from then on buffers of up to 32 MB come from per-thread arenas that keep them: the process
/// held its high-water mark for good (the hostile corpus's 8 concurrent renders peaked at
/// 274–392 MiB with the jobs admitted for 160). A fixed threshold makes every buffer from 256 KiB
/// up its own mapping, given back when freed (117–141 MiB).
#[allow(unsafe_code)]
fn give_large_c_buffers_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of glibc's allocator, and is called first thing in
    // main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

fn main() -> anyhow::Result<()> {
    give_large_c_buffers_back();
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
