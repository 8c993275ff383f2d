//! The edge's disk tier at scale. Over `EDGE_DISK_FILES` (1,000,000) object files written
//! through the tier by a child process: how soon after opening it serves a disk hit (while its
//! index loads in the background), against that full load (what a start waited for before);
//! the index's memory per object, there and with `EDGE_INDEX_OBJECTS` (10,000,000) entries in
//! memory alone. Then its policies on a Zipf trace (`EDGE_ZIPF` 0.9, 4,000,000 requests over
//! 1,000,000 objects, room for 1 %): the hit ratio of sampled LRU with TinyLFU admission (the
//! disk tier's, and the memory tier's, which admits on ties) against exact LRU (what both
//! tiers did before) and sampled LRU alone.
//!
//!   target/release/edge_disk

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bench::{print_table, Row, Zipf};
use edge::cache::disk::index::{Id, Index};
use edge::cache::disk::{Disk, Slot};
use service::admission::Frequency;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn slot(i: u64) -> Slot {
    bench::edge_object(i).0
}

/// The child: `n` objects written through the tier at `dir`, by 4 threads.
fn fill(dir: &std::path::Path, n: u64) {
    let disk = Disk::open(dir, u64::MAX / 2).expect("open");
    disk.load(&|_, _| {});
    let everyone = Frequency::new(1024);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (disk, everyone) = (&disk, &everyone);
            s.spawn(move || {
                for i in (t..n).step_by(4) {
                    let (slot, rec) = bench::edge_object(i);
                    disk.write(&slot, &rec, everyone).expect("write");
                }
            });
        }
    });
}

fn main() {
    let n = env("EDGE_DISK_FILES", 1_000_000);
    // Written through the tier by a child, so that this process's memory is the index's alone.
    let Some(dir) = bench::filled_by_child(&format!("{n} files"), |d| fill(d, n)) else {
        return;
    };

    let before = bench::self_rss_kib();
    let opened = Instant::now();
    let disk: &'static Disk = Box::leak(Box::new(Disk::open(dir.path(), u64::MAX / 2).expect("open")));
    disk.start_load(|_, _| {});
    let first = disk.read(&slot(n / 2));
    let serving = opened.elapsed();
    assert!(first.is_some(), "a file on disk is served while the index loads");
    while disk.loading() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let loaded = opened.elapsed();
    let rss_per = (bench::self_rss_kib().saturating_sub(before) * 1024) as f64 / n as f64;
    assert_eq!(disk.usage().0 as u64, n, "every file indexed");
    let index_per = disk.index_bytes() as f64 / n as f64;

    let m = env("EDGE_INDEX_OBJECTS", 10_000_000);
    let before = bench::self_rss_kib();
    let index = Index::default();
    for i in 0..m {
        index.insert(Id::of(&slot(i)), 3000, 0);
    }
    let big_rss_per = (bench::self_rss_kib().saturating_sub(before) * 1024) as f64 / m as f64;
    let big_per = index.heap_bytes() as f64 / m as f64;
    drop(index);
    print_table(
        &format!("edge disk tier opened over {n} files"),
        "ours",
        "full load",
        &[
            Row {
                what: "first disk hit after opening".into(),
                ours: serving.as_secs_f64() * 1000.0,
                reference: Some(loaded.as_secs_f64() * 1000.0),
                unit: "ms",
                target: "≤ 1000 ms",
            },
            Row {
                what: format!("index memory per object, {n} files (RSS growth {rss_per:.0} B)"),
                ours: index_per,
                reference: None,
                unit: "B",
                target: "≤ 64 B",
            },
            Row {
                what: format!("index memory per object, {m} in memory (RSS growth {big_rss_per:.0} B)"),
                ours: big_per,
                reference: None,
                unit: "B",
                target: "≤ 64 B",
            },
        ],
    );

    let zipf_s: f64 = std::env::var("EDGE_ZIPF")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.9);
    let objects = 1_000_000u64;
    let mut zipf = Zipf::new(objects as usize, zipf_s, 11);
    let trace: Vec<u64> = (0..4_000_000).map(|_| zipf.draw() as u64).collect();
    let room = objects / 100;
    let exact = exact_lru(&trace, room);
    let plain = sampled(&trace, room, |_, _, _| true);
    let tinylfu = sampled(&trace, room, |f: &Frequency, c: &Id, v: &Id| f.admits(c, v));
    // The memory tier weighs the candidate against all it would push out; with objects of one
    // size that is one victim, and a tie admits.
    let on_tie = sampled(&trace, room, |f: &Frequency, c: &Id, v: &Id| {
        f.estimate(c) >= f.estimate(v)
    });
    print_table(
        &format!(
            "edge tier policies, Zipf {zipf_s}: 4,000,000 requests over {objects} objects, room for {room}"
        ),
        "sampled LRU + TinyLFU",
        "exact LRU",
        &[
            Row {
                what: "hit ratio".into(),
                ours: tinylfu * 100.0,
                reference: Some(exact * 100.0),
                unit: "%",
                target: "≥ LRU",
            },
            Row {
                what: "hit ratio, admitted on ties (the memory tier's rule)".into(),
                ours: on_tie * 100.0,
                reference: Some(exact * 100.0),
                unit: "%",
                target: "≥ LRU",
            },
            Row {
                what: "hit ratio, sampled LRU alone".into(),
                ours: plain * 100.0,
                reference: Some(exact * 100.0),
                unit: "%",
                target: "≈ LRU",
            },
        ],
    );
}

/// Exact LRU of `room` objects over `trace`: its hit ratio.
fn exact_lru(trace: &[u64], room: u64) -> f64 {
    let (mut at, mut order, mut hits) = (HashMap::new(), BTreeMap::new(), 0u64);
    for (tick, &k) in trace.iter().enumerate() {
        if let Some(old) = at.insert(k, tick) {
            order.remove(&old);
            hits += 1;
        }
        order.insert(tick, k);
        if order.len() as u64 > room {
            if let Some((_, gone)) = order.pop_first() {
                at.remove(&gone);
            }
        }
    }
    hits as f64 / trace.len() as f64
}

/// The tier's own index (sampled LRU) of `room` objects, taking a missed object when `admit`
/// says so (given the sketch, the candidate and the victim): its hit ratio.
fn sampled(trace: &[u64], room: u64, admit: impl Fn(&Frequency, &Id, &Id) -> bool) -> f64 {
    let (index, frequency) = (Index::default(), Frequency::new(room as usize));
    let mut hits = 0u64;
    for &k in trace {
        let id = Id::of(&slot(k));
        frequency.record(&id);
        if index.touch(id).is_some() {
            hits += 1;
            continue;
        }
        if index.usage().0 as u64 >= room {
            match index.least_recent() {
                Some((victim, _)) if !admit(&frequency, &id, &victim) => continue,
                _ => {}
            }
        }
        index.insert(id, 1, 0);
        if index.usage().0 as u64 > room {
            index.evict(1);
        }
    }
    hits as f64 / trace.len() as f64
}
