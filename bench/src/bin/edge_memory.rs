//! What a cached object costs the edge in resident memory, against what its cache charges for it:
//! a release edge (2 GiB of memory cache) is filled with `EDGE_MEMORY_OBJECTS` (50,000) distinct
//! objects from a loopback origin through one kept-alive connection, each then asked for again
//! (a hit), and its resident memory is read before and after. Two sets: bodies of 2,000 B (where the per-object cost shows most), and
//! log-normal sizes as `peers` uses (median 16 KB, σ 0.6, 2–200 KB). Each object's charge
//! (`cache_memory_bytes`) is what the memory bound counts: it must be at least what the object
//! really holds, or the bound is not one.
//!
//!   EDGE_BIN=target/release/edge target/release/edge_memory

use bench::{print_table, Row};
use harness::origin::{Origin, Reply};

/// The body size of object `i` in each set.
fn small(_: u64) -> usize {
    2_000
}
fn log_normal(i: u64) -> usize {
    bench::log_normal_size(i + 1, 16_000.0, 0.6, 2_000, 200_000)
}

fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn stats(admin: std::net::SocketAddr) -> serde_json::Value {
    let r = harness::http::get(admin, "/stats.json").expect("stats");
    serde_json::from_slice(&r.body).expect("stats json")
}

/// Fills a new edge with `objects` objects sized by `size`: bytes per object charged, resident.
fn measure(objects: u64, size: fn(u64) -> usize) -> (f64, f64) {
    let origin = Origin::start_keep_alive(move |req| {
        let i: u64 = req
            .path
            .strip_prefix("/DQmObject")
            .and_then(|p| p.split('/').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        // Bodies differ by their path, so none is shared with another.
        let mut body = vec![b'x'; size(i)];
        let tag = req.path.as_bytes();
        let n = tag.len().min(body.len());
        body[..n].copy_from_slice(&tag[..n]);
        Reply::ok(body)
            .header("Content-Type", "image/jpeg")
            .header("Cache-Control", "public, max-age=3600")
    });
    let edge = bench::start_edge(
        origin.addr(),
        &[
            format!("cache.memory_bytes={}", 2u64 << 30),
            "log.level=warn".into(),
        ],
    );
    let pid = edge.child.0.id();
    let mut conn = harness::http::Conn::new(edge.addr);
    // A few requests first, so the allocator's and the runtime's first growth is not counted.
    for i in 0..1000 {
        conn.request("GET", &format!("/DQmWarm{i}/a.jpg"), &[])
            .expect("warm");
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (rss0, s0) = (rss_bytes(pid), stats(edge.admin));
    // Each object twice: fetched, then hit (the fast path keeps a wire form of its header).
    for _ in 0..2 {
        for i in 0..objects {
            let r = conn
                .request("GET", &format!("/DQmObject{i}/photo.jpg"), &[])
                .expect("fetch");
            assert_eq!((r.status, r.body.len()), (200, size(i)), "object {i}");
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (rss1, s1) = (rss_bytes(pid), stats(edge.admin));
    let count = |s: &serde_json::Value, f: &str| s[f].as_u64().unwrap_or(0);
    let held = count(&s1, "cache_objects") - count(&s0, "cache_objects");
    assert_eq!(held, objects, "every object cached");
    let charged = count(&s1, "cache_memory_bytes") - count(&s0, "cache_memory_bytes");
    let per = |b: u64| b as f64 / objects as f64;
    (per(charged), per(rss1.saturating_sub(rss0)))
}

fn main() {
    let objects: u64 = std::env::var("EDGE_MEMORY_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let mut rows = Vec::new();
    for (what, size) in [
        ("2,000 B", small as fn(u64) -> usize),
        ("log-normal, median 16 KB", log_normal),
    ] {
        let (charged, resident) = measure(objects, size);
        let body = (0..objects).map(|i| size(i) as f64).sum::<f64>() / objects as f64;
        eprintln!("{what}: body {body:.0} B, charged {charged:.0} B, resident {resident:.0} B per object");
        rows.push(Row {
            what: format!("bytes per object, bodies {what} (mean {body:.0} B)"),
            ours: charged,
            reference: Some(resident),
            unit: "B",
            target: ">= 1x (the bound holds)",
        });
    }
    print_table(
        &format!("edge memory per cached object, charged by its cache vs resident ({objects} objects)"),
        "charged",
        "resident",
        &rows,
    );
}
