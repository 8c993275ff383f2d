//! Warm boot: the hit ratio of an edge's first minute after it is added, preloading its peer's
//! hot set (`[warm] peers`) against starting cold, on the same Zipf trace (the long tail of an
//! image CDN: object ranks drawn with exponent `WARM_ZIPF`, 0.9 by default, over `WARM_OBJECTS`
//! objects of 16 KB). A peer edge (release build) first serves `WARM_FILL` requests of the trace;
//! then a new edge is started and the trace goes on against it at `WARM_RATE` requests per second
//! for `WARM_SECONDS`, once cold and once with the preload running beside the clients. The
//! reference is the same new edge started cold, in the same run.
//!
//!   EDGE_BIN=target/release/edge target/release/warm

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::{print_table, start_edge, KeepAlive, Row, Zipf};
use harness::origin::{Origin, Reply};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Replays `zipf` against `addr` from `threads` clients at `rate` requests/s for `seconds`;
/// hits and requests per 10-second window.
fn replay(
    addr: SocketAddr,
    objects: usize,
    zipf_s: f64,
    seed: u64,
    rate: f64,
    seconds: u64,
) -> Vec<(u64, u64)> {
    let threads = 4;
    let windows = seconds.div_ceil(10) as usize;
    let hits: Arc<Vec<AtomicU64>> = Arc::new((0..windows).map(|_| AtomicU64::new(0)).collect());
    let all: Arc<Vec<AtomicU64>> = Arc::new((0..windows).map(|_| AtomicU64::new(0)).collect());
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (hits, all) = (hits.clone(), all.clone());
            std::thread::spawn(move || {
                let mut zipf = Zipf::new(objects, zipf_s, seed + t);
                let mut client = KeepAlive::new(addr);
                let every = Duration::from_secs_f64(threads as f64 / rate);
                let mut k = 0u32;
                loop {
                    let due = start + every * k;
                    let now = Instant::now();
                    if due.duration_since(start).as_secs() >= seconds {
                        return;
                    }
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    let w = (Instant::now().duration_since(start).as_secs() / 10) as usize;
                    let hit = client.get(&format!("/o/{}/p.jpg", zipf.draw()), "images.bench");
                    if let (Some(h), Some(a)) = (hits.get(w), all.get(w)) {
                        h.fetch_add(hit as u64, Ordering::Relaxed);
                        a.fetch_add(1, Ordering::Relaxed);
                    }
                    k += 1;
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("client");
    }
    (0..windows)
        .map(|i| (hits[i].load(Ordering::Relaxed), all[i].load(Ordering::Relaxed)))
        .collect()
}

fn ratio((hits, all): (u64, u64)) -> f64 {
    if all == 0 {
        0.0
    } else {
        100.0 * hits as f64 / all as f64
    }
}

fn sum(windows: &[(u64, u64)]) -> (u64, u64) {
    windows.iter().fold((0, 0), |(h, a), (x, y)| (h + x, a + y))
}

fn main() {
    let objects: usize = env("WARM_OBJECTS", 50_000);
    let zipf_s: f64 = env("WARM_ZIPF", 0.9);
    let fill: usize = env("WARM_FILL", 300_000);
    let rate: f64 = env("WARM_RATE", 1_000.0);
    let seconds: u64 = env("WARM_SECONDS", 60);
    let keys: usize = env("WARM_KEYS", 5_000);
    let fetches = Arc::new(AtomicUsize::new(0));
    let counted = fetches.clone();
    let payload: Arc<Vec<u8>> = Arc::new(
        (0..16_384u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
    );
    let origin = Origin::start(move |req| {
        if req.path != "/healthcheck" {
            counted.fetch_add(1, Ordering::Relaxed);
        }
        Reply::ok(payload.as_slice().to_vec()).header("Cache-Control", "public, max-age=86400")
    });

    // The peer: it has served the trace for a while.
    let peer = start_edge(origin.addr(), &["cache.memory_bytes=1073741824".into()]);
    let t = Instant::now();
    let per = fill / 8;
    let fillers: Vec<_> = (0..8u64)
        .map(|t| {
            let addr = peer.addr;
            std::thread::spawn(move || {
                let mut zipf = Zipf::new(objects, zipf_s, 1000 + t);
                let mut client = KeepAlive::new(addr);
                (0..per)
                    .map(|_| client.get(&format!("/o/{}/p.jpg", zipf.draw()), "images.bench") as u64)
                    .sum::<u64>()
            })
        })
        .collect();
    let peer_hits: u64 = fillers.into_iter().map(|f| f.join().expect("filler")).sum();
    println!(
        "peer served {} requests of the trace in {:.1}s, hit ratio {:.1} % (its steady state); {objects} objects, Zipf {zipf_s}",
        per * 8,
        t.elapsed().as_secs_f64(),
        100.0 * peer_hits as f64 / (per * 8) as f64
    );

    let mut results = Vec::new();
    for warm in [false, true] {
        let extra: Vec<String> = if warm {
            vec![
                format!("warm.peers=[\"http://{}\"]", peer.admin),
                format!("warm.keys={keys}"),
                format!("warm.rate={}", env("WARM_PRELOAD_RATE", 2_000)),
                "warm.concurrency=8".into(),
            ]
        } else {
            Vec::new()
        };
        let before = fetches.load(Ordering::Relaxed);
        let mut extra = extra;
        extra.push("cache.memory_bytes=1073741824".into());
        let edge = start_edge(origin.addr(), &extra);
        let windows = replay(edge.addr, objects, zipf_s, 77, rate, seconds);
        let origin_fetches = fetches.load(Ordering::Relaxed) - before;
        let stats = harness::http::get(edge.admin, "/stats.json")
            .ok()
            .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
            .unwrap_or_default();
        println!(
            "{}: hit ratio per 10 s: {}; origin fetches {origin_fetches}; preload {}",
            if warm { "warm boot" } else { "cold" },
            windows
                .iter()
                .map(|w| format!("{:.1} %", ratio(*w)))
                .collect::<Vec<_>>()
                .join(", "),
            stats["warm"]
        );
        results.push((windows, origin_fetches));
    }
    let (cold, warm) = (&results[0], &results[1]);
    print_table(
        &format!(
            "warm boot, a new edge's first {seconds} s at {rate:.0} req/s (Zipf {zipf_s} over {objects} objects, {keys} preloaded)"
        ),
        "warm boot",
        "cold",
        &[
            Row {
                what: "hit ratio, first 10 s".into(),
                ours: ratio(warm.0[0]),
                reference: Some(ratio(cold.0[0])),
                unit: "%",
                target: "> cold",
            },
            Row {
                what: format!("hit ratio, first {seconds} s"),
                ours: ratio(sum(&warm.0)),
                reference: Some(ratio(sum(&cold.0))),
                unit: "%",
                target: "> cold",
            },
            Row {
                what: "origin fetches (clients' and preload's)".into(),
                ours: warm.1 as f64,
                reference: Some(cold.1 as f64),
                unit: "",
                target: "-",
            },
        ],
    );
}
