//! blobsync against `rclone sync --checksum --fast-list` from the same Garage instance, in the
//! same run: a cold backfill of N objects into an empty server (each tool its own), then a pass
//! after 1 % churn (adds plus takedowns); wall time and peak RSS of both, and the ratios. Then replication lag p50/p99
//! under a steady 50 uploads/s, and the fileservers' own floor for the churn's work (the S3 calls
//! it needs at the least, issued directly).
//!
//! For blobsync the churn arrives as it does in production: an event per upload, and the
//! takedowns from a script, so in bulk mode (`?wait=false`: acknowledged once durable, carried
//! out by the workers); the clock stops when every copy and delete is done on both servers.
//!
//! Run it through `bench/run` (release build). `BENCH_OBJECTS` sets N (default 20000),
//! `BENCH_CHURN` the number of adds and of takedowns (default N / 100); `BENCH_COLD=0` skips the
//! cold backfills and seeds both targets directly.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::{measure, mib, print_table, wait_with_rusage, Row};
use blobstore::{body_from_bytes, BlobStore, Key, ListRequest, PutOptions};
use futures::StreamExt;
use harness::{Garage, S3Access};

const SIZE: usize = 8 * 1024;

fn fileserver(name: &str, a: &S3Access) -> blobstore::FileserverConfig {
    blobstore::FileserverConfig::s3(name, &a.endpoint, &a.access_key, &a.secret_key)
}

async fn keys(store: &Arc<dyn BlobStore>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut req = ListRequest::default();
    loop {
        let page = store.list(&req).await.expect("list");
        out.extend(page.entries.into_iter().map(|e| e.key.to_string()));
        match page.next {
            Some(n) => req.start_after = Some(n),
            None => return out,
        }
    }
}

/// Deletes the uploads of these seeds from one server, one after another.
async fn delete_uploads(store: &Arc<dyn BlobStore>, seeds: std::ops::Range<u64>) {
    for s in seeds {
        let key = Key::new(harness::content::upload(s, SIZE).0).expect("key");
        store.delete(&key).await.expect("delete");
    }
}

/// The listing a takedown makes to find a key's variants (blobsync's page size).
fn variants_of(store: &Arc<dyn BlobStore>, key: &Key) -> ListRequest {
    ListRequest {
        prefix: store.layout().variants_prefix(key.as_str()),
        start_after: None,
        max_keys: blobsync::takedown::VARIANTS_PAGE,
    }
}

fn rclone(a: &S3Access, b: &S3Access, log: &Path) -> Command {
    let mut c = Command::new("rclone");
    // The plain-HTTP Garage endpoints need no CA; a machine-wide AWS_CA_BUNDLE breaks rclone's
    // S3 backend setup ("unsupported transport").
    c.env_remove("AWS_CA_BUNDLE");
    c.args([
        "sync",
        "--checksum",
        "--fast-list",
        "--transfers",
        "8",
        "--checkers",
        "16",
        "a:uploads",
        "b:uploads",
    ]);
    for (name, acc) in [("A", a), ("B", b)] {
        let v = |k: &str| format!("RCLONE_CONFIG_{name}_{k}");
        c.env(v("TYPE"), "s3")
            .env(v("PROVIDER"), "Other")
            .env(v("ENDPOINT"), &acc.endpoint)
            .env(v("REGION"), "us-east-1")
            .env(v("ACCESS_KEY_ID"), &acc.access_key)
            .env(v("SECRET_ACCESS_KEY"), &acc.secret_key)
            .env(v("FORCE_PATH_STYLE"), "true")
            .env(v("NO_CHECK_BUCKET"), "true");
    }
    c.stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("rclone log"));
    c
}

fn check(ok: bool, what: &str, log: &Path) {
    if !ok {
        panic!(
            "{what} failed:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
}

/// blobsync's copy workers, and as many S3 calls in flight for the floor (`BENCH_WORKERS`).
fn workers() -> usize {
    std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

fn blobsync_config(dir: &Path, port: u16, a: &S3Access, b: &S3Access) -> PathBuf {
    let fs = |n: &str, x: &S3Access| {
        format!(
            "[[fileservers]]\nname = \"{n}\"\ns3 = {{ endpoint = \"{}\", access_key_id = \"{}\", secret_access_key = \"{}\" }}\n",
            x.endpoint, x.access_key, x.secret_key
        )
    };
    let path = dir.join("blobsync.toml");
    std::fs::write(
        &path,
        format!(
            "buckets = [\"uploads\"]\n[server]\nlisten = \"127.0.0.1:{port}\"\n[queue]\npath = \"{}\"\n[copy]\nworkers = {}\n[anti_entropy]\ninterval = \"0s\"\n[scrub]\ninterval = \"0s\"\n[log]\nlevel = \"warn\"\n{}{}",
            dir.join("queue").display(),
            workers(),
            fs("fs0", a),
            fs("fs1", b)
        ),
    )
    .expect("write config");
    path
}

fn post(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> u16 {
    match harness::http::request(addr, method, path, &[], body.as_bytes()) {
        Ok(r) => {
            if r.status >= 300 {
                eprintln!("{method} {path}: HTTP {} {}", r.status, r.text());
            }
            r.status
        }
        Err(e) => {
            eprintln!("{method} {path}: {e}");
            0
        }
    }
}

fn event(key: &str) -> String {
    serde_json::json!({"Records": [{"eventName": "s3:ObjectCreated:Put",
        "s3": {"bucket": {"name": "uploads"}, "object": {"key": key}}}]})
    .to_string()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[allow(unsafe_code)]
fn main() {
    let n: u64 = std::env::var("BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let bin = std::env::var("BLOBSYNC_BIN").unwrap_or_else(|_| "target/release/blobsync".into());
    assert!(
        Path::new(&bin).exists(),
        "build blobsync first (bench/run does): {bin}"
    );
    // a is the source; rclone copies to b, blobsync to c. Each target starts empty: wiping one
    // for the other would leave its server working through N dropped references in the
    // background (Garage acts on a block 10 minutes after its last reference goes), during
    // whatever is measured next.
    let garages = Garage::start_many(3, &["uploads"]);
    let [a, b, c] = [0, 1, 2].map(|i| garages[i].access().clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let fs0 = blobstore::open_bucket(&fileserver("fs0", &a), "uploads").expect("fs0");
    let rclone_target = blobstore::open_bucket(&fileserver("b", &b), "uploads").expect("b");
    let fs1 = blobstore::open_bucket(&fileserver("fs1", &c), "uploads").expect("fs1");
    let dir = harness::tempdir();

    eprintln!("seeding {n} objects of {SIZE} bytes into fs0 …");
    rt.block_on(bench::put_uploads(&fs0, 0..n, SIZE));

    // ---- cold backfill ------------------------------------------------------------------------
    let log = dir.path().join("rclone.log");
    let port = harness::free_port();
    let cfg = blobsync_config(dir.path(), port, &a, &c);
    // BENCH_COLD=0 seeds both targets directly instead, to study the churn at a large N sooner.
    let backfills = if std::env::var("BENCH_COLD").map_or(true, |v| v != "0") {
        eprintln!("rclone cold backfill …");
        let rclone_cold = measure(&mut rclone(&a, &b, &log));
        check(rclone_cold.status.success(), "rclone cold", &log);
        assert_eq!(rt.block_on(keys(&rclone_target)).len() as u64, n);

        eprintln!("blobsync cold backfill …");
        let ours_cold = measure(
            Command::new(&bin)
                .args(["sync", "--once", "--config"])
                .arg(&cfg)
                .stderr(Stdio::null()),
        );
        assert!(ours_cold.status.success());
        Some((rclone_cold, ours_cold))
    } else {
        eprintln!("BENCH_COLD=0: seeding both targets directly …");
        rt.block_on(async {
            futures::join!(
                bench::put_uploads(&rclone_target, 0..n, SIZE),
                bench::put_uploads(&fs1, 0..n, SIZE)
            )
        });
        None
    };
    assert_eq!(rt.block_on(keys(&fs1)).len() as u64, n);

    // ---- 1 % churn: adds plus takedowns --------------------------------------------------------
    // BENCH_CHURN overrides the 1 % (to study the churn phase on a small N).
    let churn: u64 = std::env::var("BENCH_CHURN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n / 100);
    eprintln!("rclone after {churn} adds + {churn} takedowns …");
    rt.block_on(bench::put_uploads(&fs0, n..n + churn, SIZE));
    rt.block_on(delete_uploads(&fs0, 0..churn));
    let rclone_churn = measure(&mut rclone(&a, &b, &log));
    check(rclone_churn.status.success(), "rclone churn", &log);
    // blobsync's pair starts the same: in sync after those adds and takedowns.
    rt.block_on(bench::put_uploads(&fs1, n..n + churn, SIZE));
    rt.block_on(delete_uploads(&fs1, 0..churn));

    eprintln!("blobsync after {churn} adds + {churn} takedowns (events and the takedown API) …");
    let log_path = std::env::temp_dir().join("bench-blobsync-daemon.log");
    let daemon_log = std::fs::File::create(&log_path).expect("daemon log");
    let spawned_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut daemon = Command::new(&bin)
        .args(["--config"])
        .arg(&cfg)
        .env(
            "RUST_LOG",
            std::env::var("BENCH_DAEMON_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stderr(daemon_log)
        .spawn()
        .expect("daemon");
    eprintln!("daemon log: {}", log_path.display());
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    harness::wait_until(Duration::from_secs(20), Duration::from_millis(20), || {
        harness::http_status(addr, "/status")
    })
    .expect("daemon up");
    // Steady state: the daemon's start-up anti-entropy pass over all N keys is finished.
    harness::wait_until(Duration::from_secs(300), Duration::from_millis(50), || {
        let r = harness::http::get(addr, "/status").ok()?;
        let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        v["anti_entropy"]["uploads"]["last_complete_pass_ms"]
            .as_u64()
            .filter(|t| *t >= spawned_ms)
    })
    .expect("start-up anti-entropy pass finished");
    let (adds, downs): (Vec<u64>, Vec<u64>) =
        ((n + churn..n + 2 * churn).collect(), (churn..2 * churn).collect());
    rt.block_on(bench::put_uploads(&fs0, adds.iter().copied(), SIZE));
    // Changes arrive concurrently, as from several imagehost nodes; each is fsynced before its 200.
    let start = Instant::now();
    let requests: Vec<(&str, String, String)> = adds
        .iter()
        .map(|s| {
            (
                "POST",
                "/events".to_string(),
                event(&harness::content::upload(*s, SIZE).0),
            )
        })
        .chain(downs.iter().map(|s| {
            (
                "DELETE",
                format!(
                    "/objects/uploads/{}?wait=false",
                    harness::content::upload(*s, SIZE).0
                ),
                String::new(),
            )
        }))
        .collect();
    let retries = std::sync::atomic::AtomicUsize::new(0);
    // Microseconds spent in event POSTs and in takedown DELETEs, summed over clients.
    let spent = [
        std::sync::atomic::AtomicU64::new(0),
        std::sync::atomic::AtomicU64::new(0),
    ];
    std::thread::scope(|scope| {
        for chunk in requests.chunks(requests.len().div_ceil(4)) {
            let (retries, spent) = (&retries, &spent);
            scope.spawn(move || {
                for (method, path, body) in chunk {
                    let mut tries = 0;
                    let t = Instant::now();
                    while !matches!(post(addr, method, path, body), 200 | 202) {
                        tries += 1;
                        retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        assert!(tries < 5, "{method} {path} kept failing");
                    }
                    spent[usize::from(*method == "DELETE")].fetch_add(
                        t.elapsed().as_micros() as u64,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                }
            });
        }
    });
    let retries = retries.into_inner();
    let acknowledged = start.elapsed();
    // Done when blobsync's exact backlog is empty: every copy verified, every takedown applied.
    let backlog = || {
        harness::http::get(addr, "/status")
            .ok()
            .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
            .and_then(|v| v["backlog"].as_u64())
    };
    while backlog() != Some(0) {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "blobsync churn did not converge"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let ours_churn = start.elapsed();
    let mean_ms =
        |i: usize| spent[i].load(std::sync::atomic::Ordering::Relaxed) as f64 / 1000.0 / churn as f64;
    eprintln!(
        "churn: every change acknowledged (durable) after {:.0} ms (an event {:.1} ms, a takedown {:.1} ms), backlog empty after {:.0} ms",
        acknowledged.as_secs_f64() * 1000.0,
        mean_ms(0),
        mean_ms(1),
        ours_churn.as_secs_f64() * 1000.0
    );
    if retries > 0 {
        eprintln!("note: {retries} churn requests had to be retried (see the daemon log)");
    }
    // Outside the timing: check the result for real.
    let want: BTreeSet<String> = (2 * churn..n + 2 * churn)
        .map(|s| harness::content::upload(s, SIZE).0)
        .collect();
    assert_eq!(rt.block_on(keys(&fs1)), want, "fs1 converged");
    assert_eq!(rt.block_on(keys(&fs0)), want, "fs0 converged");

    // ---- lag under a steady 50 uploads/s for 30 s ------------------------------------------------
    eprintln!("replication lag at 50 uploads/s for 30 s …");
    let lags: Vec<f64> = rt.block_on(async {
        let mut tasks = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for s in n + 2 * churn..n + 2 * churn + 1500 {
            tick.tick().await;
            let (k, d) = harness::content::upload(s, SIZE);
            let key = Key::new(k.as_str()).expect("key");
            fs0.put(&key, body_from_bytes(d), &PutOptions::default())
                .await
                .expect("put");
            let acked = Instant::now();
            let body = event(&k);
            tokio::task::spawn_blocking(move || post(addr, "POST", "/events", &body));
            let fs1 = fs1.clone();
            tasks.push(tokio::spawn(async move {
                while !fs1.exists(&key).await.unwrap_or(false) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                acked.elapsed().as_secs_f64()
            }));
        }
        let mut lags = Vec::new();
        for t in tasks {
            lags.push(t.await.expect("lag task"));
        }
        lags
    });
    let mut sorted = lags.clone();
    sorted.sort_by(f64::total_cmp);
    // SAFETY: SIGTERM to our own child.
    unsafe { libc::kill(daemon.id() as libc::pid_t, libc::SIGTERM) };
    let (_, daemon_rss) = wait_with_rusage(daemon.id());
    let _ = daemon.try_wait();

    // ---- the fileservers' own floor for the churn's work ------------------------------------------
    // The S3 calls blobsync needs for the churn at the least (a copy: HEAD both, GET, PUT; a
    // takedown: on both, DELETE and the listing of the key's `<key>_…` variants, which a takedown
    // deletes too), issued directly with as many in flight as blobsync's workers.
    eprintln!("the same S3 calls issued directly …");
    let base = n + 2 * churn + 1500;
    rt.block_on(bench::put_uploads(&fs0, base..base + 2 * churn, SIZE));
    rt.block_on(bench::put_uploads(&fs1, base + churn..base + 2 * churn, SIZE));
    let floor = rt.block_on(async {
        let start = Instant::now();
        futures::stream::iter(base..base + 2 * churn)
            .map(|s| {
                let (fs0, fs1) = (fs0.clone(), fs1.clone());
                async move {
                    let key = Key::new(harness::content::upload(s, SIZE).0).expect("key");
                    if s < base + churn {
                        let _ = futures::join!(fs0.head(&key), fs1.head(&key));
                        let got = fs0.get(&key, None).await.expect("get");
                        let data = blobstore::collect_body(got.body, SIZE as u64 * 2)
                            .await
                            .expect("body");
                        fs1.put(&key, body_from_bytes(data), &PutOptions::default())
                            .await
                            .expect("put");
                    } else {
                        let (a, b) = futures::join!(fs0.delete(&key), fs1.delete(&key));
                        a.and(b).expect("delete");
                        let (v0, v1) = (variants_of(&fs0, &key), variants_of(&fs1, &key));
                        let (a, b) = futures::join!(fs0.list(&v0), fs1.list(&v1));
                        a.and(b).expect("list variants");
                    }
                }
            })
            .buffer_unordered(workers())
            .collect::<Vec<()>>()
            .await;
        start.elapsed()
    });

    // Where the floor goes: each kind of call alone, as many in flight, on fs1.
    let base = base + 2 * churn;
    let calls = rt.block_on(async {
        let keys: Vec<Key> = (base..base + churn)
            .map(|s| Key::new(harness::content::upload(s, SIZE).0).expect("key"))
            .collect();
        let data = harness::content::upload(0, SIZE).1;
        let mut out = Vec::new();
        for kind in ["PUT", "HEAD", "GET", "DELETE", "LIST"] {
            let start = Instant::now();
            futures::stream::iter(keys.iter().cloned())
                .map(|key| {
                    let (fs1, data) = (fs1.clone(), &data);
                    async move {
                        match kind {
                            "PUT" => fs1
                                .put(&key, body_from_bytes(data.clone()), &PutOptions::default())
                                .await
                                .map(|_| ()),
                            "HEAD" => fs1.head(&key).await.map(|_| ()),
                            "GET" => fs1.get(&key, None).await.map(|_| ()),
                            "DELETE" => fs1.delete(&key).await,
                            _ => fs1.list(&variants_of(&fs1, &key)).await.map(|_| ()),
                        }
                        .expect("call")
                    }
                })
                .buffer_unordered(workers())
                .collect::<Vec<()>>()
                .await;
            out.push(format!(
                "{kind} {:.2} ms",
                start.elapsed().as_secs_f64() * 1000.0 / churn as f64
            ));
        }
        out
    });
    eprintln!(
        "one Garage's calls, {} in flight, wall per call: {}",
        workers(),
        calls.join(", ")
    );
    let per_object = 64.0 * n as f64;
    let mut rows = Vec::new();
    if let Some((rclone_cold, ours_cold)) = &backfills {
        rows.push(Row {
            what: "cold backfill, wall".into(),
            ours: ours_cold.wall.as_secs_f64(),
            reference: Some(rclone_cold.wall.as_secs_f64()),
            unit: "s",
            target: "≤ 0.8x",
        });
        rows.push(Row {
            what: "cold backfill, peak RSS".into(),
            ours: mib(ours_cold.peak_rss),
            reference: Some(mib(rclone_cold.peak_rss)),
            unit: "MiB",
            target: "≤ 64 MiB + 64 B/object",
        });
    }
    rows.extend([
        Row {
            what: format!("1% churn ({churn} adds + {churn} takedowns), wall"),
            ours: ours_churn.as_secs_f64(),
            reference: Some(rclone_churn.wall.as_secs_f64()),
            unit: "s",
            target: "≤ 0.1x",
        },
        Row {
            what: format!("  the same S3 calls issued directly ({} in flight)", workers()),
            ours: floor.as_secs_f64(),
            reference: None,
            unit: "s",
            target: "floor set by the fileservers",
        },
        Row {
            what: "daemon peak RSS (churn + lag phases)".into(),
            ours: mib(daemon_rss),
            reference: Some(mib(rclone_churn.peak_rss)),
            unit: "MiB",
            target: "",
        },
        Row {
            what: "replication lag p50 at 50 uploads/s".into(),
            ours: percentile(&sorted, 0.5) * 1000.0,
            reference: None,
            unit: "ms",
            target: "",
        },
        Row {
            what: "replication lag p99 at 50 uploads/s".into(),
            ours: percentile(&sorted, 0.99) * 1000.0,
            reference: None,
            unit: "ms",
            target: "≤ 5000 ms",
        },
    ]);
    print_table(
        &format!(
            "blobsync vs rclone {}: {n} objects of {} KiB, Garage 2.5.0 instances, same run",
            "1.60",
            SIZE / 1024
        ),
        "blobsync",
        "rclone",
        &rows,
    );
    println!(
        "the churn against the fileservers' floor: {:.2}x (target ≤ 1.2x); against rclone's pass: {:.2}x (target ≤ 0.1x)",
        ours_churn.as_secs_f64() / floor.as_secs_f64(),
        ours_churn.as_secs_f64() / rclone_churn.wall.as_secs_f64()
    );
    println!(
        "RSS budget for {n} objects: {:.1} MiB",
        (64.0 * 1024.0 * 1024.0 + per_object) / (1024.0 * 1024.0)
    );
}
