//! Shared helpers for the benchmarks: timing a child process with its peak RSS, and a results
//! table that prints each figure beside the reference tool's and the ratio.

pub mod arrivals;
mod load;
pub mod mounts;
pub mod profile;
pub mod scene;

pub use load::{pinned, wrk, wrk_on, KeepAlive, Wrk};
pub use scene::scene;

use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// Wall time, peak resident memory (bytes) and exit status of a child process.
pub struct Measured {
    pub wall: Duration,
    pub peak_rss: u64,
    pub status: ExitStatus,
}

/// Runs `cmd` to completion and reads its peak RSS from `wait4`'s resource usage.
#[allow(clippy::zombie_processes)] // reaped by `wait_with_rusage`, which also reads the rusage
pub fn measure(cmd: &mut Command) -> Measured {
    let start = Instant::now();
    let child = cmd.spawn().expect("spawn the measured command");
    let (status, peak_rss) = wait_with_rusage(child.id());
    Measured {
        wall: start.elapsed(),
        peak_rss,
        status,
    }
}

/// Waits for `pid` and returns its exit status and peak RSS in bytes.
#[allow(unsafe_code)]
pub fn wait_with_rusage(pid: u32) -> (ExitStatus, u64) {
    use std::os::unix::process::ExitStatusExt;
    let mut status = 0;
    // SAFETY: wait4 on our own child with valid out-pointers.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    (ExitStatus::from_raw(status), usage.ru_maxrss as u64 * 1024)
}

/// One row: our figure, the reference's, and the ratio ours/reference.
pub struct Row {
    pub what: String,
    pub ours: f64,
    pub reference: Option<f64>,
    pub unit: &'static str,
    pub target: &'static str,
}

/// The median of `v` (the mean of the middle two for an even count; 0 for none).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Prints a table, and appends its rows to the file named by `BENCH_SUMMARY` (if set), from which
/// `bench/run` prints every benchmark's figures as one table at the end.
pub fn print_table(title: &str, ours: &str, reference: &str, rows: &[Row]) {
    if let Ok(path) = std::env::var("BENCH_SUMMARY") {
        let mut lines = String::new();
        for r in rows {
            let (reference_text, ratio) = match r.reference {
                Some(v) if v > 0.0 => (
                    format!("{reference} {v:.1} {}", r.unit),
                    format!("{:.2}x", r.ours / v),
                ),
                _ => ("-".to_string(), "-".to_string()),
            };
            lines.push_str(&format!(
                "{}: {}\t{} {:.1} {}\t{reference_text}\t{ratio}\t{}\n",
                title.split(',').next().unwrap_or(title),
                r.what,
                ours,
                r.ours,
                r.unit,
                r.target
            ));
        }
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = f.write_all(lines.as_bytes());
        }
    }
    println!("\n{title}");
    println!(
        "{:<44} {:>14} {:>14} {:>8}  target",
        "measure", ours, reference, "ratio"
    );
    for r in rows {
        let reference_text = r
            .reference
            .map(|v| format!("{v:.1} {}", r.unit))
            .unwrap_or_else(|| "-".into());
        let ratio = r
            .reference
            .filter(|v| *v > 0.0)
            .map(|v| format!("{:.2}x", r.ours / v))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<44} {:>14} {:>14} {:>8}  {}",
            r.what,
            format!("{:.1} {}", r.ours, r.unit),
            reference_text,
            ratio,
            r.target
        );
    }
}

/// CPU milliseconds (user + system), peak RSS (MiB) and standard output of a child run to its
/// end; panics if it fails.
#[allow(unsafe_code)]
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which also reads the rusage
pub fn cpu_of(mut cmd: std::process::Command) -> (f64, f64, String) {
    let child = cmd.stdout(std::process::Stdio::piped()).spawn().expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut out = String::new();
    if let Some(mut so) = child.stdout {
        std::io::Read::read_to_string(&mut so, &mut out).ok();
    }
    let mut status = 0;
    // SAFETY: wait4 on our own child with valid out-pointers.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(pid, &mut status, 0, &mut u) };
    assert_eq!(status, 0, "child failed");
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    (ms(u.ru_utime) + ms(u.ru_stime), u.ru_maxrss as f64 / 1024.0, out)
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A synthetic photo-like JPEG (gradients, noise and shapes, q90), the same in every run.
pub fn photo(w: u32, h: u32) -> Vec<u8> {
    let mut seed = 0x9E37_79B9u32;
    let mut data = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let n = seed % 48;
            let shape = if ((x / 97) + (y / 83)) % 3 == 0 { 60 } else { 0 };
            data.push(((x * 200 / w) + n + shape).min(255) as u8);
            data.push(((y * 200 / h) + n).min(255) as u8);
            data.push((((x + y) % 256) / 2 + n + shape / 2).min(255) as u8);
        }
    }
    let r = imagehost::pipeline::raster::Raster {
        width: w,
        height: h,
        channels: 3,
        data,
    };
    imagehost::pipeline::encode::jpeg(&r, 90).expect("encode test photo")
}

/// A release edge (`EDGE_BIN`, default `target/release/edge`) on free loopback ports in front of
/// `origin`, two threads, quiet; killed when dropped. `extra` are more `--set` settings.
pub struct Edge {
    pub child: harness::process::Killed,
    pub addr: std::net::SocketAddr,
    pub admin: std::net::SocketAddr,
    /// Where its upgrade socket and pid file are; removed with it.
    pub dir: tempfile::TempDir,
}

/// Starts an [`Edge`] and waits until its admin and proxy listeners answer.
pub fn start_edge(origin: std::net::SocketAddr, extra: &[String]) -> Edge {
    use std::net::SocketAddr;
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = harness::ports::free_ports(2);
    let (addr, admin) = (
        SocketAddr::from(([127, 0, 0, 1], ports[0])),
        SocketAddr::from(([127, 0, 0, 1], ports[1])),
    );
    let bin = std::env::var("EDGE_BIN").unwrap_or_else(|_| "target/release/edge".into());
    let mut cmd = Command::new(&bin);
    for s in [
        format!("server.listen={addr}"),
        format!("admin.listen={admin}"),
        format!("upstreams.nodes=[\"{origin}\"]"),
        "upstreams.health_path=/healthcheck".into(),
        "server.threads=2".into(),
        format!("server.upgrade_sock={}", dir.path().join("u.sock").display()),
        format!("server.pid_file={}", dir.path().join("e.pid").display()),
    ]
    .iter()
    .chain(extra)
    {
        cmd.args(["--set", s]);
    }
    let child = harness::process::Killed(
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}")),
    );
    harness::wait_until(Duration::from_secs(30), Duration::from_millis(20), || {
        harness::http_status(admin, "/healthz").filter(|s| *s == 200)
    })
    .expect("edge up");
    assert!(harness::listening(addr, Duration::from_secs(20)), "edge listens");
    Edge {
        child,
        addr,
        admin,
        dir,
    }
}

/// A Hive account `bench.user` whose every authority is one new key, written to
/// `dir/accounts.json` for imagehost's static account source, with empty blacklists beside it
/// (`bl-images.json`, `bl-accounts.json`); returns the key its uploads are signed with.
pub fn bench_account(dir: &std::path::Path) -> k256::ecdsa::SigningKey {
    let key = imagehost::auth::signature::random_signing_key();
    let public = imagehost::auth::signature::public_key_string(key.verifying_key());
    harness::hive::static_account_files(dir, "bench.user", &public);
    key
}

/// Object ranks drawn from a Zipf law over `n` objects (inverse CDF on precomputed weights).
pub struct Zipf {
    cdf: Vec<f64>,
    state: u64,
}

impl Zipf {
    pub fn new(n: usize, s: f64, seed: u64) -> Self {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                acc += 1.0 / (k as f64).powf(s);
                acc
            })
            .collect();
        cdf.iter_mut().for_each(|c| *c /= acc);
        Self { cdf, state: seed | 1 }
    }

    pub fn draw(&mut self) -> usize {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let u = (self.state >> 11) as f64 / (1u64 << 53) as f64;
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// This process's resident memory, KiB (`VmRSS`).
pub fn self_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// For benches that fill a directory in a child process (so that their own memory is what they
/// measure afterwards): when this process was started as `<self> --fill DIR`, calls `fill(DIR)`
/// and returns `None` (the process then ends); otherwise runs that child on a new temporary
/// directory in the working directory (on this disk) and returns it.
pub fn filled_by_child(what: &str, fill: impl FnOnce(&std::path::Path)) -> Option<tempfile::TempDir> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--fill") {
        fill(std::path::Path::new(&args[2]));
        return None;
    }
    let dir = tempfile::tempdir_in(".").expect("a temp dir on this disk");
    let t0 = Instant::now();
    let status = Command::new(&args[0])
        .arg("--fill")
        .arg(dir.path())
        .status()
        .expect("fill child");
    assert!(status.success(), "fill child failed");
    eprintln!("{what} written in {:.1} s", t0.elapsed().as_secs_f64());
    Some(dir)
}

/// Puts the generated uploads `seeds` of `size` bytes into `store` (durably), 64 at a time.
pub async fn put_uploads(
    store: &std::sync::Arc<dyn blobstore::BlobStore>,
    seeds: impl Iterator<Item = u64>,
    size: usize,
) {
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(seeds)
        .map(|s| {
            let store = store.clone();
            async move {
                let (k, d) = harness::content::upload(s, size);
                store
                    .put(
                        &blobstore::Key::new(k).expect("key"),
                        blobstore::body_from_bytes(d),
                        &blobstore::PutOptions::default(),
                    )
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await
        .expect("seed objects");
}

/// The size of object `rank` drawn from a log-normal distribution (as image sizes are): `median`
/// bytes, shape `sigma`, clamped to `lo..=hi`. The same rank always gets the same size.
pub fn log_normal_size(rank: u64, median: f64, sigma: f64, lo: usize, hi: usize) -> usize {
    // A normal deviate from two hashed uniforms (Box–Muller).
    let h = |x: u64| {
        let mut z = x.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        z ^= z >> 29;
        z = z.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z ^= z >> 32;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let (u1, u2) = (h(rank), h(rank ^ 0xABCD));
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    ((median * (sigma * z).exp()) as usize).clamp(lo, hi)
}

/// The edge disk tier's object `i` as the scale benches store it: a key (one in four a variant,
/// as `Accept` classes of `/p/` URLs make), and a record with a URL, tags, pingora's two meta blobs
/// and a small body (the index's cost depends on the number of files, not their size).
pub fn edge_object(i: u64) -> (edge::cache::disk::Slot, edge::cache::disk::Record) {
    let mut p = [0u8; 16];
    p[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    p[8..].copy_from_slice(&i.to_le_bytes());
    let slot = (p, (i % 4 == 0).then_some([i as u8 | 1; 16]));
    let rec = edge::cache::disk::Record {
        url: bytes::Bytes::from(format!(
            "images.hive.blog/p/{i:040x}?format=match&mode=fit&width=640"
        )),
        tags: bytes::Bytes::from_static(b"DQmbench"),
        meta: (vec![1u8; 120], vec![2u8; 60]),
        body: bytes::Bytes::from_static(&[7u8; 64]),
        checked: 0,
    };
    (slot, rec)
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(super::median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(super::median(vec![]), 0.0);
    }
}
