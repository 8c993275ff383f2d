//! Scrub throughput against the disk's own read rate: `blobsync scrub --once` (release, no
//! bandwidth limit) re-reads and re-hashes every copy of a directory fileserver holding
//! `SCRUB_OBJECTS` (16,000) uploads of log-normal sizes (median 60 KB, σ 0.8, 4 KB–2 MB: about
//! 1.3 GB), and the same files are read by `cat` (one reader, then 8 at once) and hashed by
//! `sha256sum`, each from a cold page cache (dropped before every run; where it cannot be, the
//! table says so and every figure is a memory rate). MB/s of object bytes for each, and the
//! scrub's CPU per GB: on a small machine re-hashing, not the disk, can be its bound.
//!
//!   BLOBSYNC_BIN=target/release/blobsync target/release/scrub

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use bench::{print_table, Row};

/// Empties the page cache so every run reads from the disk; false where that is not allowed.
fn drop_caches() -> bool {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// Runs `cmd` from a cold cache; its wall time in seconds.
fn timed(cmd: &mut Command) -> f64 {
    drop_caches();
    let t = Instant::now();
    let status = cmd.status().expect("run");
    assert!(status.success(), "{cmd:?}: {status}");
    t.elapsed().as_secs_f64()
}

fn config(dir: &Path, fs: &[&Path]) -> std::path::PathBuf {
    let mut text = format!(
        "buckets = [\"uploads\"]\n[server]\nlisten = \"127.0.0.1:{}\"\n[queue]\npath = \"{}\"\n[anti_entropy]\ninterval = \"0s\"\n[scrub]\ninterval = \"0s\"\nbandwidth_limit = 0\n[log]\nlevel = \"warn\"\n",
        harness::free_port(),
        dir.join("queue").display()
    );
    for (i, p) in fs.iter().enumerate() {
        text += &format!(
            "[[fileservers]]\nname = \"fs{i}\"\ndirectory = {{ path = \"{}\" }}\n",
            p.display()
        );
    }
    let path = dir.join("blobsync.toml");
    std::fs::write(&path, text).expect("config");
    path
}

fn main() {
    let n: u64 = std::env::var("SCRUB_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16_000);
    let bin = std::env::var("BLOBSYNC_BIN").unwrap_or_else(|_| "target/release/blobsync".into());
    let root = tempfile::tempdir_in(".").expect("a temp dir on this disk");
    let (full, empty) = (root.path().join("fs0"), root.path().join("fs1"));
    let bucket = full.join("uploads");
    std::fs::create_dir_all(&bucket).expect("bucket");
    std::fs::create_dir_all(empty.join("uploads")).expect("empty bucket");

    let t = Instant::now();
    let mut names = Vec::with_capacity(n as usize);
    let mut bytes = 0u64;
    for seed in 0..n {
        let size = bench::log_normal_size(seed, 60_000.0, 0.8, 4_000, 2_000_000);
        let (key, data) = harness::content::upload(seed, size);
        std::fs::write(bucket.join(&key), &data).expect("object");
        bytes += data.len() as u64;
        names.push(key);
    }
    names.sort();
    let mb = bytes as f64 / 1e6;
    eprintln!(
        "{n} objects, {mb:.0} MB, written in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // The files in the order scrub reads them (key order), NUL-separated for xargs.
    let list = root.path().join("files");
    {
        let mut f = std::fs::File::create(&list).expect("list");
        for k in &names {
            f.write_all(bucket.join(k).as_os_str().as_encoded_bytes())
                .and_then(|_| f.write_all(b"\0"))
                .expect("list");
        }
    }
    let cold = drop_caches();
    let xargs = |parallel: u32, program: &str| {
        let mut c = Command::new("xargs");
        c.arg("-0")
            .arg("-n")
            .arg("256")
            .arg("-P")
            .arg(parallel.to_string())
            .arg(program)
            .stdin(std::fs::File::open(&list).expect("list"))
            .stdout(Stdio::null());
        c
    };

    let run = root.path().join("run");
    std::fs::create_dir_all(&run).expect("run dir");
    let cfg = config(&run, &[&full, &empty]);
    let mut scrub = Command::new(&bin);
    scrub
        .arg("--config")
        .arg(&cfg)
        .args(["scrub", "--once"])
        .stderr(Stdio::null());
    drop_caches();
    let t = Instant::now();
    let (cpu_ms, _, _) = bench::cpu_of(scrub);
    let ours = t.elapsed().as_secs_f64();
    let cat1 = timed(&mut xargs(1, "cat"));
    let cat8 = timed(&mut xargs(8, "cat"));
    let sha = timed(&mut xargs(1, "sha256sum"));
    let disk = cat1.min(cat8);
    let rate = |s: f64| mb / s;
    eprintln!(
        "scrub {:.0} MB/s, cat {:.0} / {:.0} MB/s (1 / 8 readers), sha256sum {:.0} MB/s",
        rate(ours),
        rate(cat1),
        rate(cat8),
        rate(sha)
    );
    let when = if cold {
        "cold page cache"
    } else {
        "page cache NOT dropped (no permission): memory rates"
    };
    let rows = vec![
        Row {
            what: format!("scrub --once of {n} objects ({mb:.0} MB), {when}"),
            ours: rate(ours),
            reference: Some(rate(disk)),
            unit: "MB/s",
            target: "as near 1x as the CPU allows",
        },
        Row {
            what: format!(
                "  scrub's CPU (user + system) per GB; wall {ours:.2} s, so {:.0} % of 2 cores",
                cpu_ms / 10.0 / ours / 2.0
            ),
            ours: cpu_ms / 1000.0 / (mb / 1000.0),
            reference: None,
            unit: "s/GB",
            target: "-",
        },
        Row {
            what: "  the same files hashed by sha256sum (one process)".into(),
            ours: rate(ours),
            reference: Some(rate(sha)),
            unit: "MB/s",
            target: ">= 1x",
        },
        Row {
            what: "  read by cat, 1 reader".into(),
            ours: rate(cat1),
            reference: None,
            unit: "MB/s",
            target: "-",
        },
        Row {
            what: "  read by cat, 8 readers (the better is the disk's rate above)".into(),
            ours: rate(cat8),
            reference: None,
            unit: "MB/s",
            target: "-",
        },
    ];
    print_table(
        "scrub throughput against the disk's read rate (MB/s; higher is better)",
        "blobsync",
        "disk / tool",
        &rows,
    );
}
