//! Cache hits of a 50 KB object: edge against Varnish (Debian's, `malloc` storage) in front of
//! the same loopback origin, the same `wrk` load, interleaved rounds. Prints requests/s and p99
//! for both and the ratios; then edge's RSS against the bytes it caches after filling it with
//! 2,000 distinct 50 KB objects.
//!
//!   EDGE_BIN=target/release/edge target/release/cache_hits

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bench::{mib, print_table, Row, Wrk};
use harness::origin::{Origin, Reply};

const OBJECT: usize = 50 * 1024;
const ROUNDS: usize = 3;
const SECONDS: u32 = 8;
const FILL: usize = 2000;

fn wrk(addr: SocketAddr, path: &str) -> Wrk {
    bench::wrk(&format!("http://{addr}{path}"), None, 2, 64, SECONDS)
}

fn wait_http(addr: SocketAddr, path: &str) {
    harness::wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        harness::http::get(addr, path).ok().filter(|r| r.status == 200)
    })
    .unwrap_or_else(|| panic!("{addr} serves {path}"));
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_varnish(dir: &std::path::Path, origin: SocketAddr) -> (Killed, SocketAddr) {
    let port = harness::free_port();
    let child = Command::new("varnishd")
        .args([
            "-F",
            "-a",
            &format!("127.0.0.1:{port}"),
            "-b",
            &origin.to_string(),
        ])
        .args(["-s", "malloc,512m", "-t", "3600", "-n"])
        .arg(dir.join("varnish"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start varnishd (apt-get install varnish)");
    (Killed(child), SocketAddr::from(([127, 0, 0, 1], port)))
}

fn start_edge(dir: &std::path::Path, origin: SocketAddr) -> (Killed, SocketAddr, SocketAddr) {
    let bin = std::env::var("EDGE_BIN").unwrap_or_else(|_| "target/release/edge".into());
    let (port, admin) = (harness::free_port(), harness::free_port());
    let sets = [
        format!("server.listen=127.0.0.1:{port}"),
        format!("admin.listen=127.0.0.1:{admin}"),
        format!("upstreams.nodes=[\"{origin}\"]"),
        "server.threads=2".into(),
        "cache.memory_bytes=536870912".into(),
        format!("server.upgrade_sock={}", dir.join("edge.sock").display()),
        format!("server.pid_file={}", dir.join("edge.pid").display()),
        "log.level=warn".into(),
    ];
    let mut cmd = Command::new(bin);
    for s in &sets {
        cmd.args(["--set", s]);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start edge");
    (
        Killed(child),
        SocketAddr::from(([127, 0, 0, 1], port)),
        SocketAddr::from(([127, 0, 0, 1], admin)),
    )
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = fetches.clone();
    let origin = Origin::start(move |req| {
        if req.path == "/healthcheck" {
            return Reply::ok("ok");
        }
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let seed = req
            .path
            .bytes()
            .fold(0u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
        let body: Vec<u8> = (0..OBJECT).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect();
        Reply::ok(body)
            .header("Content-Type", "image/jpeg")
            .header("Cache-Control", "public, max-age=3600")
    });
    let (edge, edge_addr, edge_admin) = start_edge(dir.path(), origin.addr());
    let (varnish, varnish_addr) = start_varnish(dir.path(), origin.addr());
    let path = "/DQmBench/photo.jpg";
    wait_http(edge_addr, path);
    wait_http(varnish_addr, path);
    let before = fetches.load(std::sync::atomic::Ordering::SeqCst);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let e = wrk(edge_addr, path);
        let v = wrk(varnish_addr, path);
        println!(
            "round {}: edge {:.0} req/s p99 {:.2} ms | varnish {:.0} req/s p99 {:.2} ms",
            round + 1,
            e.rps,
            e.p99_ms,
            v.rps,
            v.p99_ms
        );
        ours.push(e);
        theirs.push(v);
    }
    assert!(
        fetches.load(std::sync::atomic::Ordering::SeqCst) - before == 0,
        "the load was served from the caches"
    );
    let mean = |v: &[Wrk], f: fn(&Wrk) -> f64| v.iter().map(f).sum::<f64>() / v.len() as f64;

    // RSS against cached bytes: fill the edge with distinct objects.
    for i in 0..FILL {
        let r = harness::http::get(edge_addr, &format!("/DQmFill{i}/p.jpg")).expect("fill");
        assert_eq!(r.status, 200);
    }
    std::thread::sleep(Duration::from_millis(500));
    let stats: serde_json::Value =
        serde_json::from_slice(&harness::http::get(edge_admin, "/stats.json").expect("stats").body)
            .expect("json");
    let cached = stats["cache_memory_bytes"].as_u64().unwrap_or(0);
    let rss = harness::process::rss_kib(edge.0.id()) * 1024;
    let varnish_rss: u64 = {
        // varnishd's cache lives in its child process: sum the manager and its children.
        let out = Command::new("pgrep")
            .args(["-P", &varnish.0.id().to_string()])
            .output()
            .ok();
        let kids: Vec<u32> = out
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        (harness::process::rss_kib(varnish.0.id())
            + kids.iter().map(|k| harness::process::rss_kib(*k)).sum::<u64>())
            * 1024
    };
    print_table(
        "cache hits, 50 KB object, wrk -t2 -c64, same origin, interleaved rounds",
        "edge",
        "varnish",
        &[
            Row {
                what: "requests/s (mean of rounds)".into(),
                ours: mean(&ours, |w| w.rps),
                reference: Some(mean(&theirs, |w| w.rps)),
                unit: "",
                target: ">= 1.25x",
            },
            Row {
                what: "p99 latency (mean of rounds)".into(),
                ours: mean(&ours, |w| w.p99_ms),
                reference: Some(mean(&theirs, |w| w.p99_ms)),
                unit: "ms",
                target: "<= 0.5x",
            },
            Row {
                what: format!("edge RSS above cached bytes ({FILL} x 50 KB cached)"),
                ours: mib(rss.saturating_sub(cached)),
                reference: None,
                unit: "MiB",
                target: "<= 48 MiB",
            },
        ],
    );
    println!(
        "\nedge RSS with {FILL} objects cached: {:.1} MiB for {:.1} MiB cached = cached + {:.1} MiB (target: cached + 48 MiB); varnish (idle fill not loaded) RSS {:.1} MiB",
        mib(rss), mib(cached), mib(rss.saturating_sub(cached)), mib(varnish_rss)
    );
    drop(varnish);
    drop(edge);
}
