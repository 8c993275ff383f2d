//! Reads through imagehost (release binary) from two Garage fileservers, the first behind a
//! fault proxy: read latency (p50/p99) with both healthy, with the first stalled (accepts, never
//! answers) and with the first 200 ms slow; hedged reads should keep the stalled case within
//! 100 ms of the healthy p99. The reference is the same imagehost in the same run, healthy.
//!
//!   BIN_DIR=target/release target/release/gray      # GRAY_READS=N reads per phase (default 2000)

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::faults::{Fault, FaultProxy};
use harness::process::Killed;
use harness::Garage;
use imagehost::auth::signature::sign;
use imagehost::keys::UploadDigests;

const OBJECTS: usize = 200;
const CLIENTS: usize = 4;

fn fileserver(name: &str, endpoint: &str, g: &Garage) -> String {
    let a = g.access();
    format!(
        "[[fileservers]]\nname = \"{name}\"\ns3 = {{ endpoint = \"{endpoint}\", region = \"{}\", access_key_id = \"{}\", secret_access_key = \"{}\", path_style = true }}\n\n",
        a.region, a.access_key, a.secret_key
    )
}

/// Latencies (ms, sorted) of `reads` GETs spread over `keys` by `CLIENTS` threads.
fn read_all(addr: SocketAddr, keys: &Arc<Vec<String>>, reads: usize) -> (Vec<f64>, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (next, failed, keys) = (next.clone(), failed.clone(), keys.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= reads {
                        return lat;
                    }
                    let path = format!("/{}/x.jpg", keys[i % keys.len()]);
                    let t = Instant::now();
                    match harness::http::request_within(addr, "GET", &path, &[], &[], Duration::from_secs(60))
                    {
                        Ok(r) if r.status == 200 => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                        _ => {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();
    let mut all: Vec<f64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("client"))
        .collect();
    all.sort_by(f64::total_cmp);
    (all, failed.load(Ordering::SeqCst))
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn main() {
    let reads: usize = std::env::var("GRAY_READS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let garages = Garage::start_many(2, &["uploads", "proxy"]);
    let first = garages[0]
        .access()
        .endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("garage address");
    let faulty = FaultProxy::start(first);
    let key = bench::bench_account(d);
    let port = harness::free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = d.join("imagehost.toml");
    let dir_s = d.display().to_string();
    let text = format!("[server]\nlisten = \"{addr}\"\nservice_url = \"http://{addr}\"\n\n[buckets]\nuploads = \"uploads\"\nproxy = \"proxy\"\n\n")
        + &fileserver("fs0", &format!("http://{}", faulty.addr()), &garages[0])
        + &fileserver("fs1", &garages[1].access().endpoint, &garages[1])
        + &format!(
            "[upload]\nwrite_quorum = 2\n\n[upload_limits]\nmax = 100000\n\n[accounts]\nstatic_file = \"{dir_s}/accounts.json\"\n\n\
[blacklist]\nimages_file = \"{dir_s}/bl-images.json\"\naccounts_file = \"{dir_s}/bl-accounts.json\"\n\n[log]\nlevel = \"warn\"\n"
        );
    std::fs::write(&config, text).expect("config");
    let bin = format!(
        "{}/imagehost",
        std::env::var("BIN_DIR").unwrap_or_else(|_| "target/release".into())
    );
    let _imagehost = Killed(
        Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}")),
    );
    harness::wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        harness::http_status(addr, "/healthcheck").filter(|s| *s == 200)
    })
    .expect("imagehost up");

    // ~50 KB JPEGs, each unique, on both fileservers.
    let keys: Vec<String> = (0..OBJECTS)
        .map(|i| {
            let mut img = bench::photo(320, 240);
            let tag = format!("gray {i}");
            let mut com = vec![0xFF, 0xFE];
            com.extend_from_slice(&((tag.len() + 2) as u16).to_be_bytes());
            com.extend_from_slice(tag.as_bytes());
            img.splice(2..2, com);
            let digests = UploadDigests::of(&img);
            let sig = sign(&key, &digests.image_hash);
            let (ty, body) = harness::http::multipart_file(&img, "b.jpg");
            let r = harness::http::request(
                addr,
                "POST",
                &format!("/bench.user/{sig}"),
                &[("Content-Type", &ty)],
                &body,
            )
            .expect("upload");
            assert_eq!(r.status, 200, "upload: {}", r.text());
            digests.upload_key()
        })
        .collect();
    let keys = Arc::new(keys);

    let mut phases = Vec::new();
    for (name, fault) in [
        ("healthy", Fault::Pass),
        ("fs0 stalled", Fault::Stall),
        ("fs0 200 ms slow", Fault::Latency(Duration::from_millis(200))),
    ] {
        faulty.set(fault);
        // A short warm-up so each phase starts from what the previous one left, as in life.
        let _ = read_all(addr, &keys, 50);
        let (lat, failed) = read_all(addr, &keys, reads);
        println!(
            "{name:<18} reads {} failed {failed} p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
            lat.len(),
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN)
        );
        assert_eq!(failed, 0, "{name}: every read answered");
        phases.push((name, pct(&lat, 0.5), pct(&lat, 0.99)));
    }
    faulty.set(Fault::Pass);
    let (_, base50, base99) = phases[0];
    let row = |what: String, ours: f64, reference: f64, target: &'static str| bench::Row {
        what,
        ours,
        reference: Some(reference),
        unit: "ms",
        target,
    };
    let mut rows = Vec::new();
    for (name, p50, p99) in &phases[1..] {
        rows.push(row(format!("read p50, {name}"), *p50, base50, ""));
        rows.push(row(
            format!("read p99, {name}"),
            *p99,
            base99,
            "p99 <= healthy p99 + 100 ms",
        ));
    }
    bench::print_table(
        &format!("reads with one fileserver failing, release imagehost, 2 Garage, {reads} reads by {CLIENTS} clients per phase"),
        "faulty",
        "healthy",
        &rows,
    );
    let stalled99 = phases[1].2;
    println!(
        "stalled p99 - healthy p99 = {:.1} ms (target <= 100 ms): {}",
        stalled99 - base99,
        if stalled99 - base99 <= 100.0 {
            "met"
        } else {
            "NOT met"
        }
    );
}
