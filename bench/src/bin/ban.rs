//! Cache hits while a ban is applied: the edge (release) is filled with `BAN_OBJECTS` small
//! objects (1,000,000 by default), then `wrk` measures hits on a hot set for `SECONDS` without a
//! ban, and again right after the costliest ban the edge accepts (the slowest regex found for the
//! engine within its limits, over every URL, matching half of them) while the lurker works
//! through the cache. Target: the hit p99 during the ban ≤ 2× the p99 without one. The
//! reference is the same edge without a ban, in the same run.
//!
//!   EDGE_BIN=target/release/edge target/release/ban

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::{mib, print_table, start_edge, KeepAlive, Row};
use harness::origin::{Origin, Reply};

const SECONDS: u32 = 10;
const HOT: usize = 200;
/// The slowest pattern found for the `regex` engine within the edge's limits (~4 µs per URL),
/// or one matching the odd object numbers.
const COSTLY: &str = "(?:[a-z0-9]{1,5}[/?=&]){1,10}Z|^/o/[0-9]*[13579]$";

/// Requests `/o/<i>` for every `i` in `range` on one keep-alive connection (reopened as needed).
fn fill(addr: SocketAddr, range: std::ops::Range<usize>, done: &AtomicUsize) {
    let mut client = KeepAlive::new(addr);
    for i in range {
        client.get(&format!("/o/{i}"), "bench");
        done.fetch_add(1, Ordering::Relaxed);
    }
}

fn metric(admin: SocketAddr, name: &str) -> f64 {
    harness::http::get(admin, "/metrics")
        .map(|r| {
            r.text()
                .lines()
                .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0)
        })
        .unwrap_or(0.0)
}

fn main() {
    let objects: usize = std::env::var("BAN_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let origin = Origin::start(|req| {
        Reply::ok(format!("object {}", req.path)).header("Cache-Control", "public, max-age=86400")
    });
    let edge = start_edge(origin.addr(), &["cache.memory_bytes=4294967296".into()]);
    let (addr, admin, dir) = (edge.addr, edge.admin, &edge.dir);

    let t = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let workers = 16;
    let threads: Vec<_> = (0..workers)
        .map(|w| {
            let done = done.clone();
            let range = (objects * w / workers)..(objects * (w + 1) / workers);
            std::thread::spawn(move || fill(addr, range, &done))
        })
        .collect();
    for th in threads {
        th.join().expect("filler");
    }
    let cached = metric(admin, "edge_cache_objects");
    println!(
        "filled {} objects in {:.1}s ({:.0}/s); the edge holds {cached} ({:.0} MiB by its own count), RSS {:.0} MiB",
        done.load(Ordering::Relaxed),
        t.elapsed().as_secs_f64(),
        objects as f64 / t.elapsed().as_secs_f64(),
        mib(metric(admin, "edge_cache_memory_bytes") as u64),
        mib(harness::process::rss_kib(edge.child.0.id()) * 1024)
    );

    // The hot set: HOT of the cached objects, cycled by wrk.
    let script = dir.path().join("hot.lua");
    std::fs::write(
        &script,
        format!(
            "local i = 0\nrequest = function()\n  i = (i % {HOT}) + 1\n  return wrk.format(\"GET\", \"/o/\" .. (i * {}))\nend\n",
            (objects / HOT).max(1) * 2 / 2
        ),
    )
    .expect("script");
    let url = format!("http://{addr}/");
    let quiet = bench::wrk(&url, Some(&script), 2, 32, SECONDS);
    let before = metric(
        admin,
        "edge_banned_objects_total{how=\"lurker\",where=\"memory\"}",
    );
    let sent = Instant::now();
    let r = harness::http::request(addr, "BAN", "/", &[("X-Ban-Regex", COSTLY)], &[]).expect("ban");
    assert_eq!(r.status, 200, "{}", r.text());
    println!("ban answered in {:.1} ms", sent.elapsed().as_secs_f64() * 1000.0);
    let banned_at = Instant::now();
    let during = bench::wrk(&url, Some(&script), 2, 32, SECONDS);
    let active_after = metric(admin, "edge_bans_active");
    while metric(admin, "edge_bans_active") > 0.0 && banned_at.elapsed() < Duration::from_secs(600) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let removed = metric(
        admin,
        "edge_banned_objects_total{how=\"lurker\",where=\"memory\"}",
    ) - before;
    println!(
        "ban still being applied when the measurement ended: {}; retired after {:.1}s, {removed} objects removed by the lurker",
        active_after > 0.0,
        banned_at.elapsed().as_secs_f64()
    );
    print_table(
        &format!("cache hits during a ban, {objects} objects cached (wrk -t2 -c32, all on both cores)"),
        "during ban",
        "no ban",
        &[
            Row {
                what: "hit p99".into(),
                ours: during.p99_ms,
                reference: Some(quiet.p99_ms),
                unit: "ms",
                target: "≤ 2× no ban",
            },
            Row {
                what: "hits/s".into(),
                ours: during.rps,
                reference: Some(quiet.rps),
                unit: "/s",
                target: "",
            },
        ],
    );
    drop(edge);
}
