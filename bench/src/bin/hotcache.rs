//! imagehost's hot cache at `HOTCACHE_FILES` (1,000,000) files: how soon after opening it serves
//! (its first hit on a file it has not indexed yet), how long its index takes to load in the
//! background, and the index's memory per file. The reference is that full load, which a start
//! waited for before the index loaded in the background. Files are 64 bytes (and the cache's
//! trailer) with realistic names (a proxy key and a variant), written through the cache by a
//! child process: the index's cost depends on their number, not their size.
//!
//! Then its admission policy on a Zipf trace (`HOTCACHE_ZIPF` 0.9, 4,000,000 requests over
//! 1,000,000 objects, a cache of 1 % of them): the hit ratio with admission against plain LRU
//! (the index alone, `hotcache::simulated_hit_ratio`).
//!
//!   target/release/hotcache

use std::time::{Duration, Instant};

use bench::Zipf;
use bench::{print_table, Row};
use imagehost::hotcache::{simulated_hit_ratio, HotCache};

/// The child: `n` files of 64 bytes put into a hot cache at `dir`, 16 at a time.
fn fill(dir: &std::path::Path, n: u64) {
    use futures::StreamExt;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let cache = HotCache::open(dir, u64::MAX / 2).expect("open");
    let data = bytes::Bytes::from_static(&[7u8; 64]);
    rt.block_on(
        futures::stream::iter(0..n)
            .map(|i| {
                let (cache, data) = (&cache, &data);
                async move { cache.put(&name(i), data).await }
            })
            .buffer_unordered(16)
            .collect::<()>(),
    );
}

fn name(i: u64) -> String {
    format!("U{:044x}_640x0_WEBP", i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn main() {
    let n: u64 = std::env::var("HOTCACHE_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // Written through the cache itself (its file format), by a child, so that this process's
    // memory is the reopened index's alone.
    let Some(dir) = bench::filled_by_child(&format!("{n} files"), |d| fill(d, n)) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let before = bench::self_rss_kib();
    let opened = Instant::now();
    let cache = HotCache::open(dir.path(), u64::MAX / 2).expect("open");
    let probe = name(n / 2);
    let first = rt.block_on(cache.get(&probe));
    let serving = opened.elapsed();
    assert!(first.is_some(), "a file on disk is served while the index loads");
    while cache.loading() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let loaded = opened.elapsed();
    let per_file = (bench::self_rss_kib().saturating_sub(before) * 1024) as f64 / n as f64;
    assert_eq!(
        (cache.entries() as u64, cache.bytes()),
        (n, n * 64),
        "every file indexed"
    );
    print_table(
        &format!("hot cache opened over {n} files"),
        "ours",
        "full load",
        &[
            Row {
                what: "first hit after opening".into(),
                ours: serving.as_secs_f64() * 1000.0,
                reference: Some(loaded.as_secs_f64() * 1000.0),
                unit: "ms",
                target: "≤ 1000 ms",
            },
            Row {
                what: "index memory per file".into(),
                ours: per_file,
                reference: None,
                unit: "B",
                target: "bounded",
            },
        ],
    );
    drop(cache);

    let zipf_s: f64 = std::env::var("HOTCACHE_ZIPF")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.9);
    let objects = 1_000_000;
    let mut zipf = Zipf::new(objects, zipf_s, 7);
    let trace: Vec<u32> = (0..4_000_000).map(|_| zipf.draw() as u32).collect();
    let capacity = objects / 100;
    let lru = simulated_hit_ratio(&trace, capacity, false);
    let tinylfu = simulated_hit_ratio(&trace, capacity, true);
    print_table(
        &format!("hot cache admission, Zipf {zipf_s}: 4,000,000 requests over {objects} objects, room for {capacity}"),
        "admission",
        "plain LRU",
        &[Row {
            what: "hit ratio".into(),
            ours: tinylfu * 100.0,
            reference: Some(lru * 100.0),
            unit: "%",
            target: "≥ LRU",
        }],
    );
}
