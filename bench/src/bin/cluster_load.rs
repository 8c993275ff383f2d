//! Throughput of the whole request path on this machine, release binaries: signed uploads through
//! the edge, and `/p/` resizes of a 1200×800 JPEG from a loopback origin, cold (every request a new
//! size: fetch once, then one resize each) and warm (imagehost's hot cache; the edge's cache), with
//! `wrk`. There is no reference tool for these; they are the cluster's own figures. Then a soak:
//! `SOAK_SECONDS` (default 600; 0 skips it) of a realistic mix through the edge at about half
//! the measured rates (uploads, hits, cold and warm `/p/`), printing each process's resident
//! memory at the start and end (the drift) and the error count.
//!
//!   BIN_DIR=target/release target/release/cluster_load

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::origin::{Origin, Reply};
use harness::process::Killed;
use imagehost::auth::signature::sign;
use imagehost::keys::UploadDigests;

const UPLOADS: usize = 300;
const CLIENTS: usize = 8;
const SECONDS: u32 = 10;

fn bin(name: &str) -> String {
    format!(
        "{}/{name}",
        std::env::var("BIN_DIR").unwrap_or_else(|_| "target/release".into())
    )
}

fn spawn(name: &str, config: &std::path::Path) -> Killed {
    Killed(
        Command::new(bin(name))
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}")),
    )
}

fn wait_ok(addr: SocketAddr, path: &str) {
    harness::wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        harness::http_status(addr, path).filter(|s| *s == 200)
    })
    .unwrap_or_else(|| panic!("{addr}{path} did not come up"));
}

/// requests/s and p99 (ms) from `wrk`, with an optional Lua script.
fn wrk(url: &str, script: Option<&std::path::Path>, threads: u32, conns: u32) -> (f64, f64) {
    let w = bench::wrk(url, script, threads, conns, SECONDS);
    (w.rps, w.p99_ms)
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let original = bench::photo(1200, 800);
    let served = original.clone();
    let origin = Origin::start(move |_| Reply::ok(served.clone()).header("Content-Type", "image/jpeg"));
    let key = bench::bench_account(d);
    let ports = harness::ports::free_ports(6);
    let (edge, edge_admin) = (SocketAddr::from(([127, 0, 0, 1], ports[4])), ports[5]);
    let mut procs = Vec::new();
    let mut nodes = Vec::new();
    for i in 0..2 {
        let (port, admin) = (ports[2 * i], ports[2 * i + 1]);
        let path = d.join(format!("imagehost-{i}.toml"));
        std::fs::write(
            &path,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\nservice_url = \"http://{edge}\"\n\n\
[[fileservers]]\nname = \"fs1\"\ndirectory = {{ path = \"{0}/fs1\", create = true }}\n\n\
[[fileservers]]\nname = \"fs2\"\ndirectory = {{ path = \"{0}/fs2\", create = true }}\n\n\
[upload]\nwrite_quorum = 2\n\n[upload_limits]\nmax = 100000\n\n[accounts]\nstatic_file = \"{0}/accounts.json\"\n\n\
[blacklist]\nimages_file = \"{0}/bl-images.json\"\naccounts_file = \"{0}/bl-accounts.json\"\n\n\
[proxy]\nallow_loopback = true\nrenders_per_client = 0\n\n[cache]\ndir = \"{0}/cache-{i}\"\nmax_bytes = 1000000000\n\n\
[log]\nlevel = \"warn\"\n\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n",
                d.display()
            ),
        )
        .expect("imagehost config");
        procs.push(spawn("imagehost", &path));
        nodes.push(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    let edge_cfg = d.join("edge.toml");
    std::fs::write(
        &edge_cfg,
        format!(
            "[server]\nlisten = \"{edge}\"\nupgrade_sock = \"{0}/edge.sock\"\npid_file = \"{0}/edge.pid\"\n\n\
[upstreams]\nnodes = [\"{n0}\", \"{n1}\"]\n\n[limits]\nuploads_per_second = 0\n\n[log]\nlevel = \"warn\"\n\n\
[admin]\nlisten = \"127.0.0.1:{edge_admin}\"\n",
            d.display(),
            n0 = nodes[0],
            n1 = nodes[1],
        ),
    )
    .expect("edge config");
    procs.push(spawn("edge", &edge_cfg));
    for n in &nodes {
        wait_ok(*n, "/healthcheck");
    }
    wait_ok(edge, "/healthcheck");

    // Uploads: distinct ~60 KB JPEGs (a comment segment makes each unique), signed as frontends do.
    let bodies: Vec<(String, Vec<u8>)> = (0..UPLOADS)
        .map(|i| {
            let mut img = bench::photo(320, 240);
            let tag = format!("upload {i}");
            let mut com = vec![0xFF, 0xFE];
            com.extend_from_slice(&((tag.len() + 2) as u16).to_be_bytes());
            com.extend_from_slice(tag.as_bytes());
            img.splice(2..2, com);
            let sig = sign(&key, &UploadDigests::of(&img).image_hash);
            (format!("/bench.user/{sig}"), img)
        })
        .collect();
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(bodies);
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (next, failed, bodies) = (next.clone(), failed.clone(), bodies.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((path, img)) = bodies.get(i) else { break };
                let (ty, body) = harness::http::multipart_file(img, "b.jpg");
                match harness::http::request(edge, "POST", path, &[("Content-Type", &ty)], &body) {
                    Ok(r) if r.status == 200 => {}
                    other => {
                        eprintln!("upload failed: {:?}", other.map(|r| (r.status, r.text())));
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("upload client");
    }
    let upload_rate = UPLOADS as f64 / started.elapsed().as_secs_f64();
    assert_eq!(failed.load(Ordering::SeqCst), 0, "every upload succeeded");

    // /p/ of the origin's 1200×800 JPEG.
    let url = format!("http://{}/photo.jpg", origin.addr());
    let b58 = bs58::encode(url.as_bytes()).into_string();
    let cold = d.join("cold.lua");
    std::fs::write(
        &cold,
        format!(
            "i = 0\nrequest = function()\n  i = i + 1\n  local w = 64 + (i % 1000)\n  local h = 64 + math.floor(i / 1000)\n  \
return wrk.format(\"GET\", \"/p/{b58}?width=\" .. w .. \"&height=\" .. h .. \"&format=jpeg\")\nend\n"
        ),
    )
    .expect("lua");
    let (cold_rps, cold_p99) = wrk(&format!("http://{}", nodes[0]), Some(&cold), 2, 8);
    let warm_path = format!("/p/{b58}?width=640&format=jpeg");
    assert_eq!(
        harness::http::get(nodes[0], &warm_path).expect("warm").status,
        200
    );
    let (warm_rps, warm_p99) = wrk(&format!("http://{}{warm_path}", nodes[0]), None, 2, 32);
    let (edge_rps, edge_p99) = wrk(&format!("http://{edge}{warm_path}"), None, 2, 64);

    let row = |what: String, ours: f64, unit: &'static str| bench::Row {
        what,
        ours,
        reference: None,
        unit,
        target: "",
    };
    bench::print_table(
        "cluster throughput, release, 2 imagehosts + edge, directory fileservers",
        "cluster",
        "-",
        &[
            row(
                format!("signed uploads through the edge ({CLIENTS} clients, quorum 2)"),
                upload_rate,
                "/s",
            ),
            row("/p/ cold: a new size each (1200x800 JPEG)".into(), cold_rps, "/s"),
            row("/p/ cold: p99".into(), cold_p99, "ms"),
            row("/p/ warm: imagehost hot cache".into(), warm_rps, "/s"),
            row("/p/ warm: imagehost p99".into(), warm_p99, "ms"),
            row("/p/ warm: edge cache hit".into(), edge_rps, "/s"),
            row("/p/ warm: edge p99".into(), edge_p99, "ms"),
        ],
    );
    let soak = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600u64);
    if soak > 0 {
        let pids: Vec<(String, u32)> = procs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    if i < 2 {
                        format!("imagehost-{i}")
                    } else {
                        "edge".into()
                    },
                    p.0.id(),
                )
            })
            .collect();
        let signer: Signer = {
            let key = key.clone();
            Arc::new(move |img: &[u8]| sign(&key, &UploadDigests::of(img).image_hash))
        };
        soak_mix(
            edge,
            SocketAddr::from(([127, 0, 0, 1], edge_admin)),
            signer,
            &b58,
            (upload_rate / 2.0, cold_rps / 2.0),
            Duration::from_secs(soak),
            &pids,
        );
    }
    drop(procs);
}

/// The upload signature of an image's bytes.
type Signer = Arc<dyn Fn(&[u8]) -> String + Send + Sync>;

/// `seconds` of a mix through the edge at the given rates (uploads/s, cold renders/s, plus warm
/// `/p/` and upload hits at 20× the cold rate), RSS sampled every 10 s. Caches fill during the
/// first half, so the drift is the second half's: RSS at the end against RSS at half time, and
/// for the edge, RSS less the bytes its memory cache holds (its own gauge).
fn soak_mix(
    edge: SocketAddr,
    edge_admin: SocketAddr,
    signer: Signer,
    b58: &str,
    (uploads_per_s, cold_per_s): (f64, f64),
    length: Duration,
    pids: &[(String, u32)],
) {
    let errors = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let end = Instant::now() + length;
    let mut threads = Vec::new();
    // Uploads at their rate, each new.
    {
        let (errors, done) = (errors.clone(), done.clone());
        let every = Duration::from_secs_f64(1.0 / uploads_per_s.max(0.5));
        threads.push(std::thread::spawn(move || {
            let mut i = 0u64;
            while Instant::now() < end {
                i += 1;
                let mut img = bench::photo(200, 150);
                let tag = format!("soak {i}");
                let mut com = vec![0xFF, 0xFE];
                com.extend_from_slice(&((tag.len() + 2) as u16).to_be_bytes());
                com.extend_from_slice(tag.as_bytes());
                img.splice(2..2, com);
                let sig = signer(&img);
                let (ty, body) = harness::http::multipart_file(&img, "b.jpg");
                match harness::http::request(edge, "POST", &format!("/bench.user/{sig}"), &[("Content-Type", &ty)], &body) {
                    Ok(r) if r.status == 200 => {
                        done.fetch_add(1, Ordering::Relaxed);
                        // Read it back twice: a miss, then a hit.
                        let key = UploadDigests::of(&img).upload_key();
                        for _ in 0..2 {
                            if !matches!(harness::http::get(edge, &format!("/{key}/x.jpg")), Ok(r) if r.status == 200) {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(every);
            }
        }));
    }
    // Cold renders (new sizes) and warm ones (a few sizes again and again).
    for (cold, rate) in [(true, cold_per_s.max(0.5)), (false, cold_per_s.max(0.5) * 20.0)] {
        let (errors, done, b58) = (errors.clone(), done.clone(), b58.to_string());
        let every = Duration::from_secs_f64(1.0 / rate);
        threads.push(std::thread::spawn(move || {
            let mut i = 0u64;
            while Instant::now() < end {
                i += 1;
                let (w, h) = if cold {
                    (100 + i % 1000, 100 + i / 1000)
                } else {
                    (320 + (i % 4) * 100, 0)
                };
                let path = format!("/p/{b58}?width={w}&height={h}&format=jpeg");
                match harness::http::get(edge, &path) {
                    Ok(r) if r.status == 200 => done.fetch_add(1, Ordering::Relaxed),
                    _ => errors.fetch_add(1, Ordering::Relaxed),
                };
                std::thread::sleep(every);
            }
        }));
    }
    let rss = || -> Vec<u64> { pids.iter().map(|(_, p)| harness::process::rss_kib(*p)).collect() };
    let cached_kib = || -> u64 {
        harness::http::get(edge_admin, "/metrics")
            .map(|r| r.text())
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("edge_cache_memory_bytes "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |b| (b / 1024.0) as u64)
    };
    let half = Instant::now() + length / 2;
    let (mut start, mut start_cached) = (None, 0);
    let mut last = rss();
    while Instant::now() < end {
        std::thread::sleep(Duration::from_secs(10).min(end.saturating_duration_since(Instant::now())));
        last = rss();
        if start.is_none() && Instant::now() >= half {
            start = Some(last.clone());
            start_cached = cached_kib();
        }
    }
    let end_cached = cached_kib();
    let start = start.unwrap_or_else(|| last.clone());
    for t in threads {
        let _ = t.join();
    }
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "\nsoak: {} s, {} requests, {} errors",
        length.as_secs(),
        done.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed)
    );
    let rows: Vec<bench::Row> = pids
        .iter()
        .zip(start.iter().zip(&last))
        .map(|((name, _), (s, e))| bench::Row {
            what: format!("soak RSS, second half, {name}"),
            ours: mib(*e),
            reference: Some(mib(*s)),
            unit: "MiB",
            target: "end / half time near 1",
        })
        .chain(start.last().zip(last.last()).map(|(s, e)| bench::Row {
            what: "soak RSS less memory cache, second half, edge".into(),
            ours: mib(e.saturating_sub(end_cached)),
            reference: Some(mib(s.saturating_sub(start_cached))),
            unit: "MiB",
            target: "end / half time near 1",
        }))
        .chain(std::iter::once(bench::Row {
            what: "soak errors".into(),
            ours: errors.load(Ordering::Relaxed) as f64,
            reference: None,
            unit: "",
            target: "0",
        }))
        .collect();
    bench::print_table(
        &format!(
            "soak, {} s at about half capacity through the edge",
            length.as_secs()
        ),
        "end",
        "half time",
        &rows,
    );
}
