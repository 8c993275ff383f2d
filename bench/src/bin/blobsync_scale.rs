//! blobsync over two directory fileservers (flat layout) holding 2,000, 200,000 and
//! `BLOBSYNC_SCALE_MAX` (1,000,000) objects: its anti-entropy pass over the whole bucket (time,
//! and the daemon's peak RSS: it must stay flat) and a burst of 400 uploads announced by events
//! (time until the second fileserver holds them all, then compared byte for byte), against the
//! fileservers' own floor for that burst: the calls any replicator must make, issued directly
//! with as many at once as blobsync's workers (the same 400 reads from one, each at once with a
//! head on the other to see whether it holds the object already, as the Garage floor of
//! `replication` heads both, then the durable writes to it). Both are timed to the last copy's
//! rename into place, told by inotify to a watcher thread that runs beside either. The burst's
//! cost must not grow with N. Beside it: when the last of its events was accepted (each is
//! answered once it is durable in the queue against a crash of the process: written to its intake
//! journal), and the daemon's CPU time (and the floor's own).
//! Burst and floor alternate `BLOBSYNC_SCALE_ROUNDS` (11) times, which goes first changing every
//! round, after a pair that is not counted (the first after the seeding pays for its writeback,
//! whatever `sync` did); medians, and the median of the rounds' own ratios (each burst over the
//! floor measured beside it).
//! Events come from `BLOBSYNC_SCALE_CLIENTS` (4) senders, each on one kept-alive connection.
//! `BLOBSYNC_SCALE_SIZES` lists other sizes (e.g. `2000,1000000,2000`): one below the size before
//! it is measured on a new pair of fileservers, beside the larger one, which stays (to tell what
//! a bucket's size costs from what the file system's own growth and the run's order cost).
//!
//! Objects are 1 KiB; the second fileserver's copies are hard links of the first's, so a million
//! objects cost one set of files.
//!
//!   BLOBSYNC_BIN=target/release/blobsync target/release/blobsync_scale

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::{median, print_table, Row};
use blobstore::{BlobStore, Key, PutOptions};
use futures::StreamExt;

const SIZE: usize = 1024;
const BURST: u64 = 400;
const WORKERS: usize = 8;

#[path = "blobsync_scale/measure.rs"]
mod measure;
#[path = "blobsync_scale/setup.rs"]
mod setup;
use measure::{cpu_ns, own_cpu_ns, peak_rss_kib, settle, until_copied};
use setup::{config, remove_outside_queue, sizes, Stores};

fn status(addr: std::net::SocketAddr) -> Option<serde_json::Value> {
    let r = harness::http::get(addr, "/status").ok()?;
    serde_json::from_slice(&r.body).ok()
}

fn event(key: &str) -> String {
    serde_json::json!({"Records": [{"eventName": "s3:ObjectCreated:Put",
        "s3": {"bucket": {"name": "uploads"}, "object": {"key": key}}}]})
    .to_string()
}

/// A burst of uploads to fs0, announced by events from `clients` senders to the daemon (its
/// address and pid): ms until the second fileserver held every upload, until all its events
/// were accepted, of the daemon's CPU time meanwhile (its live threads': one that exits meanwhile
/// takes its time along, which tokio's blocking threads do after 10 s idle), and of this
/// process's (the senders' and the watcher's).
fn burst_once(
    rt: &tokio::runtime::Runtime,
    fs0: &Arc<dyn BlobStore>,
    copies: &Path,
    (addr, pid): (std::net::SocketAddr, u32),
    seeds: &[u64],
    clients: usize,
) -> (f64, f64, f64, f64) {
    rt.block_on(bench::put_uploads(fs0, seeds.iter().copied(), SIZE));
    settle();
    let (cpu, own) = (cpu_ns(pid), own_cpu_ns());
    let mut announced = 0.0;
    let burst = until_copied(copies, seeds, |t| {
        std::thread::scope(|s| {
            for chunk in seeds.chunks(seeds.len().div_ceil(clients)) {
                s.spawn(move || {
                    // Kept alive, as imagehost's and MinIO's event senders keep their connections.
                    let mut conn = harness::http::Conn::new(addr);
                    for seed in chunk {
                        let key = harness::content::upload(*seed, SIZE).0;
                        let r = conn
                            .request("POST", "/events", event(&key).as_bytes())
                            .expect("event");
                        assert!(matches!(r.status, 200 | 202), "event: {}", r.status);
                    }
                });
            }
        });
        announced = t.elapsed().as_secs_f64() * 1e3;
    });
    // A thread that exited meanwhile takes its time with it: never a negative difference.
    let cpu = cpu_ns(pid).saturating_sub(cpu) as f64 / 1e6;
    // The bench's, its senders' and watcher's: on the same two cores as the daemon, where the
    // floor's run has no other process.
    let own = own_cpu_ns().saturating_sub(own) as f64 / 1e6;
    harness::wait_until(Duration::from_secs(60), Duration::from_millis(5), || {
        (status(addr)?["backlog"].as_u64()? == 0).then_some(())
    })
    .expect("the daemon is done with the burst");
    for seed in seeds {
        let (k, d) = harness::content::upload(*seed, SIZE);
        assert_eq!(std::fs::read(copies.join(&k)).expect("copied"), d, "copied whole");
    }
    (burst, announced, cpu, own)
}

/// The floor: the same work issued directly, as many at once as blobsync's workers: ms until the
/// last copy was renamed into place (timed as the burst is), and ms of this process's CPU time
/// for it (the watcher's included, as in the bench's own beside the burst).
fn floor_once(
    rt: &tokio::runtime::Runtime,
    fs0: &Arc<dyn BlobStore>,
    fs1: &Arc<dyn BlobStore>,
    copies: &Path,
    seeds: &[u64],
) -> (f64, f64) {
    rt.block_on(bench::put_uploads(fs0, seeds.iter().copied(), SIZE));
    settle();
    let cpu = own_cpu_ns();
    let ms = until_copied(copies, seeds, |_| {
        rt.block_on(
            futures::stream::iter(seeds.iter().copied())
                .map(|s| {
                    let (fs0, fs1) = (fs0.clone(), fs1.clone());
                    async move {
                        let key = Key::new(harness::content::upload(s, SIZE).0).expect("key");
                        // What any replicator must ask: the source's bytes, and whether the target
                        // holds them already (imagehost writes every upload to each fileserver it
                        // can), at once, as blobsync does; then the write.
                        let (got, there) = futures::join!(fs0.get(&key, None), fs1.head(&key));
                        let got = got.expect("get");
                        assert!(there.is_err_and(|e| e.is_not_found()), "the target lacks {key}");
                        fs1.put(&key, got.body, &PutOptions::default())
                            .await
                            .expect("put");
                    }
                })
                .buffer_unordered(WORKERS)
                .collect::<()>(),
        )
    });
    (ms, own_cpu_ns().saturating_sub(cpu) as f64 / 1e6)
}

fn main() {
    let max: u64 = std::env::var("BLOBSYNC_SCALE_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // The cold backfill copies every object, so it is measured up to here only.
    let backfill_max: u64 = std::env::var("BLOBSYNC_SCALE_BACKFILL_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let rounds: usize = std::env::var("BLOBSYNC_SCALE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|r| *r > 0)
        .unwrap_or(11);
    let clients: usize = std::env::var("BLOBSYNC_SCALE_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|r| *r > 0)
        .unwrap_or(4);
    let bin = std::env::var("BLOBSYNC_BIN").unwrap_or_else(|_| "target/release/blobsync".into());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let root = tempfile::tempdir_in(".").expect("a temp dir on this disk");
    // Seeds: the standing objects count up from 0; bursts and floors from 1 << 40.
    let mut have = 0u64;
    let mut fresh = 1u64 << 40;
    let mut rows = Vec::new();
    let mut stores: Option<(usize, Stores)> = None;
    for (n, pair) in sizes(max) {
        // A size below the last one is measured on a new pair of fileservers.
        if stores.as_ref().is_some_and(|(p, _)| *p != pair) {
            stores = None;
            have = 0;
        }
        let (_, made) =
            stores.get_or_insert_with(|| (pair, Stores::new(&root.path().join(format!("pair-{pair}")))));
        let Stores {
            fs,
            buckets,
            fs0,
            fs1,
        } = &*made;
        let again = match pair {
            0 => String::new(),
            p => format!(", pair {p}"),
        };
        let t = Instant::now();
        while have < n {
            let (k, d) = harness::content::upload(have, SIZE);
            std::fs::write(buckets[0].join(&k), &d).expect("object");
            std::fs::hard_link(buckets[0].join(&k), buckets[1].join(&k)).expect("link");
            have += 1;
        }
        eprintln!(
            "{n} objects on both fileservers ({:.1} s)",
            t.elapsed().as_secs_f64()
        );

        // A cold backfill: `sync --once` copies every object into an empty fileserver. Its
        // memory must not grow with the number of objects it copies.
        if n <= backfill_max {
            let empty = root.path().join(format!("empty-{n}"));
            std::fs::create_dir_all(empty.join("uploads")).expect("empty bucket");
            let run = root.path().join(format!("backfill-{n}"));
            std::fs::create_dir_all(&run).expect("run dir");
            let cfg = config(&run, harness::free_port(), &[fs[0].clone(), empty.clone()]);
            let m = bench::measure(
                std::process::Command::new(&bin)
                    .arg("--config")
                    .arg(cfg)
                    .args(["sync", "--once"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null()),
            );
            remove_outside_queue(&run);
            let (exit, rss, wall) = (m.status, m.peak_rss, m.wall.as_secs_f64());
            assert!(exit.success(), "sync --once: {exit}");
            let count = |dir: &Path| {
                std::fs::read_dir(dir)
                    .expect("a bucket")
                    .filter_map(Result::ok)
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .count()
            };
            assert_eq!(
                count(&empty.join("uploads")),
                count(&buckets[0]),
                "every object copied"
            );
            let rss = rss as f64 / (1 << 20) as f64;
            eprintln!("{n}: cold backfill {wall:.1} s, peak RSS {rss:.1} MiB");
            rows.push(Row {
                what: format!("cold backfill of {n} objects, wall (peak RSS {rss:.0} MiB)"),
                ours: wall,
                reference: None,
                unit: "s",
                target: "grows ~N, RSS flat",
            });
            let _ = std::fs::remove_dir_all(&empty);
            let _ = std::fs::remove_dir_all(&run);
        }

        // The daemon's start-up pass over the whole bucket, with a new queue each time.
        let run = root.path().join(format!("run-{n}"));
        std::fs::create_dir_all(&run).expect("run dir");
        let port = harness::free_port();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let started_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let t = Instant::now();
        let child = harness::process::Killed(
            std::process::Command::new(&bin)
                .arg("--config")
                .arg(config(&run, port, fs))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start blobsync"),
        );
        harness::wait_until(Duration::from_secs(3600), Duration::from_millis(20), || {
            status(addr)?["anti_entropy"]["uploads"]["last_complete_pass_ms"]
                .as_u64()
                .filter(|t| *t >= started_ms)
        })
        .expect("the start-up pass ends");
        let pass = t.elapsed().as_secs_f64();
        let rss = peak_rss_kib(child.0.id()) as f64 / 1024.0;
        assert_eq!(
            status(addr).and_then(|s| s["backlog"].as_u64()),
            Some(0),
            "nothing to do after the pass"
        );

        // The burst and its floor, alternately, `ROUNDS` times each: each is a fraction of a
        // second, and one sample of either is at the mercy of the disk's flush latency. Which
        // goes first changes every round, after a pair that is not counted (the first after the
        // seeding pays for its writeback).
        let (mut bursts, mut accepts, mut cpus, mut senders) = (vec![], vec![], vec![], vec![]);
        let (mut floors, mut floor_cpus) = (vec![], vec![]);
        for round in 0..=rounds {
            for floor_turn in [round % 2 == 1, round % 2 == 0] {
                let seeds: Vec<u64> = (fresh..fresh + BURST).collect();
                fresh += BURST;
                if round == 0 {
                    if floor_turn {
                        floor_once(&rt, fs0, fs1, &buckets[1], &seeds);
                    } else {
                        burst_once(&rt, fs0, &buckets[1], (addr, child.0.id()), &seeds, clients);
                    }
                } else if floor_turn {
                    let (ms, cpu) = floor_once(&rt, fs0, fs1, &buckets[1], &seeds);
                    floors.push(ms);
                    floor_cpus.push(cpu);
                } else {
                    let (burst, announced, cpu, own) =
                        burst_once(&rt, fs0, &buckets[1], (addr, child.0.id()), &seeds, clients);
                    cpus.push(cpu);
                    senders.push(own);
                    bursts.push(burst);
                    accepts.push(announced);
                }
            }
        }
        drop(child);
        remove_outside_queue(&run);
        // Each round's burst over the floor taken beside it: the machine's drift between rounds
        // cancels out of these, not out of the medians' own ratio.
        let paired = median(bursts.iter().zip(&floors).map(|(b, f)| b / f).collect());
        let (burst, announced, cpu) = (median(bursts), median(accepts), median(cpus));
        let senders = median(senders);
        let (floor, floor_cpu) = (median(floors), median(floor_cpus));
        eprintln!(
            "{n}: pass {pass:.2} s, peak RSS {rss:.0} MiB; medians of {rounds}: burst {burst:.1} ms \
             (events accepted {announced:.1} ms, blobsync's CPU {cpu:.1} ms, the bench's {senders:.1} ms), \
             floor {floor:.1} ms \
             (its CPU {floor_cpu:.1} ms); median of the rounds' own ratios {paired:.2}x"
        );
        rows.push(Row {
            what: format!("anti-entropy pass over {n} objects{again} (peak RSS {rss:.0} MiB)"),
            ours: pass,
            reference: None,
            unit: "s",
            target: "grows ~N, RSS flat",
        });
        rows.push(Row {
            what: format!("{BURST}-upload burst at {n} objects{again} (median of {rounds})"),
            ours: burst,
            reference: Some(floor),
            unit: "ms",
            target: "<= 1.2x, flat in N",
        });
        // Each event is answered once it is on disk (a sled flush, group-committed): with a few
        // senders announcing one upload per request, intake alone bounds the burst from below.
        rows.push(Row {
            what: format!("  of which: all {BURST} events accepted (durable, {clients} senders)"),
            ours: announced,
            reference: Some(floor),
            unit: "ms",
            target: "-",
        });
        // CPU time: the daemon's (every thread's) for the burst, this process's for the floor.
        rows.push(Row {
            what: format!(
                "  CPU time for the {BURST} copies (and their events; the bench's {senders:.0} ms beside)"
            ),
            ours: cpu,
            reference: Some(floor_cpu),
            unit: "ms",
            target: "-",
        });
        rows.push(Row {
            what: format!("  the burst over its floor, median of the {rounds} rounds' own ratios"),
            ours: paired * 100.0,
            reference: None,
            unit: "%",
            target: "<= 120 %",
        });
    }
    print_table(
        "blobsync over two directory fileservers (flat layout)",
        "blobsync",
        "fileservers' floor",
        &rows,
    );
}
