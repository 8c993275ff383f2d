//! Cache hits of a 50 KB object: edge against Varnish (Debian's, `malloc` storage) in front of
//! the same loopback origin, the same `wrk` load, interleaved rounds. Two layouts: everything
//! sharing both cores (wrk -t2, which steals CPU from the server it measures), and each server
//! alone on core 0 with wrk -t1 alone on core 1 (edge with one thread, Varnish with one thread
//! pool, as its tuning guide says per core). Prints requests/s and p99 for both and the ratios;
//! then edge's RSS against the bytes it caches after filling it with 2,000 distinct 50 KB objects.
//!
//!   EDGE_BIN=target/release/edge target/release/cache_hits

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use bench::{mib, print_table, Row, Wrk};
use harness::origin::{Origin, Reply};
use harness::process::Killed;

const OBJECT: usize = 50 * 1024;
const ROUNDS: usize = 3;
const SECONDS: u32 = 8;
const FILL: usize = 2000;

/// Where the servers and the load generator run, and the thread settings that go with it.
struct Layout {
    name: &'static str,
    server_cpus: Option<&'static str>,
    client_cpus: Option<&'static str>,
    wrk_threads: u32,
    edge_threads: usize,
    /// Varnish's tuning guidance: one thread pool per core (its default is 2).
    varnish_pools: Option<u32>,
}

const LAYOUTS: [Layout; 2] = [
    Layout {
        name: "shared",
        server_cpus: None,
        client_cpus: None,
        wrk_threads: 2,
        edge_threads: 2,
        varnish_pools: None,
    },
    Layout {
        name: "pinned",
        server_cpus: Some("0"),
        client_cpus: Some("1"),
        wrk_threads: 1,
        edge_threads: 1,
        varnish_pools: Some(1),
    },
];

fn wrk(layout: &Layout, addr: SocketAddr, path: &str) -> Wrk {
    bench::wrk_on(
        layout.client_cpus,
        &format!("http://{addr}{path}"),
        None,
        layout.wrk_threads,
        64,
        SECONDS,
    )
}

fn wait_http(addr: SocketAddr, path: &str) {
    harness::wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        harness::http::get(addr, path).ok().filter(|r| r.status == 200)
    })
    .unwrap_or_else(|| panic!("{addr} serves {path}"));
}

fn start_varnish(dir: &std::path::Path, origin: SocketAddr, layout: &Layout) -> (Killed, SocketAddr) {
    let port = harness::free_port();
    let mut cmd = bench::pinned(layout.server_cpus, "varnishd");
    cmd.args([
        "-F",
        "-a",
        &format!("127.0.0.1:{port}"),
        "-b",
        &origin.to_string(),
    ])
    .args(["-s", "malloc,512m", "-t", "3600", "-n"])
    .arg(dir.join("varnish"));
    if let Some(pools) = layout.varnish_pools {
        cmd.args(["-p", &format!("thread_pools={pools}")]);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start varnishd (apt-get install varnish)");
    (Killed(child), SocketAddr::from(([127, 0, 0, 1], port)))
}

fn start_edge(
    dir: &std::path::Path,
    origin: SocketAddr,
    layout: &Layout,
) -> (Killed, SocketAddr, SocketAddr) {
    let bin = std::env::var("EDGE_BIN").unwrap_or_else(|_| "target/release/edge".into());
    let (port, admin) = (harness::free_port(), harness::free_port());
    let sets = [
        format!("server.listen=127.0.0.1:{port}"),
        format!("admin.listen=127.0.0.1:{admin}"),
        format!("upstreams.nodes=[\"{origin}\"]"),
        format!("server.threads={}", layout.edge_threads),
        "cache.memory_bytes=536870912".into(),
        format!("server.upgrade_sock={}", dir.join("edge.sock").display()),
        format!("server.pid_file={}", dir.join("edge.pid").display()),
        "log.level=warn".into(),
    ];
    let mut cmd = bench::pinned(layout.server_cpus, &bin);
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
    let path = "/DQmBench/photo.jpg";
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut results = Vec::new();
    let mut rss_figures = None;
    for (i, layout) in LAYOUTS.iter().enumerate() {
        if layout.server_cpus.is_some() && cores < 2 {
            println!("{}: skipped, one core", layout.name);
            continue;
        }
        let ldir = dir.path().join(format!("layout-{i}"));
        std::fs::create_dir_all(&ldir).expect("layout dir");
        let (edge, edge_addr, edge_admin) = start_edge(&ldir, origin.addr(), layout);
        let (varnish, varnish_addr) = start_varnish(&ldir, origin.addr(), layout);
        wait_http(edge_addr, path);
        wait_http(varnish_addr, path);
        let before = fetches.load(std::sync::atomic::Ordering::SeqCst);
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let e = wrk(layout, edge_addr, path);
            let v = wrk(layout, varnish_addr, path);
            println!(
                "{} round {}: edge {:.0} req/s p99 {:.2} ms | varnish {:.0} req/s p99 {:.2} ms",
                layout.name,
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
        if rss_figures.is_none() {
            rss_figures = Some(rss(&edge, edge_addr, edge_admin, &varnish));
        }
        results.push((layout, ours, theirs));
    }
    // The median of the rounds: one stalled round (Varnish has them pinned) must not carry it.
    let median = |v: &[Wrk], f: fn(&Wrk) -> f64| {
        let mut xs: Vec<f64> = v.iter().map(f).collect();
        xs.sort_by(f64::total_cmp);
        xs[xs.len() / 2]
    };

    let (rss, cached, varnish_rss) = rss_figures.expect("the shared layout ran");
    let mut rows = Vec::new();
    for (layout, ours, theirs) in &results {
        rows.push(Row {
            what: format!("requests/s, {} (median round)", layout.name),
            ours: median(ours, |w| w.rps),
            reference: Some(median(theirs, |w| w.rps)),
            unit: "",
            target: ">= 1.25x",
        });
        rows.push(Row {
            what: format!("p99 latency, {} (median round)", layout.name),
            ours: median(ours, |w| w.p99_ms),
            reference: Some(median(theirs, |w| w.p99_ms)),
            unit: "ms",
            target: "<= 0.5x",
        });
    }
    rows.push(Row {
        what: format!("edge RSS above cached bytes ({FILL} x 50 KB cached)"),
        ours: mib(rss.saturating_sub(cached)),
        reference: None,
        unit: "MiB",
        target: "<= 48 MiB",
    });
    print_table(
        "cache hits, 50 KB object, wrk -c64, same origin, interleaved rounds \
         (shared: servers and wrk -t2 on both cores; pinned: server alone on core 0, wrk -t1 on core 1)",
        "edge",
        "varnish",
        &rows,
    );
    println!(
        "\nedge RSS with {FILL} objects cached: {:.1} MiB for {:.1} MiB cached = cached + {:.1} MiB (target: cached + 48 MiB); varnish (idle fill not loaded) RSS {:.1} MiB",
        mib(rss), mib(cached), mib(rss.saturating_sub(cached)), mib(varnish_rss)
    );
}

/// Edge's RSS, the bytes it caches after a fill of distinct objects, and Varnish's RSS.
fn rss(edge: &Killed, edge_addr: SocketAddr, edge_admin: SocketAddr, varnish: &Killed) -> (u64, u64, u64) {
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
    (rss, cached, varnish_rss)
}
