//! The edge against its peers on a long-tail trace: Varnish (Debian's, `malloc` and `file`
//! storage) and nginx's `proxy_cache` (Debian's `nginx-light`), each bounded to the same 96 MiB,
//! in front of the same loopback origin (keep-alive, as imagehost is), driven by the same `wrk`
//! script: Zipf popularity (`PEERS_ZIPF` 0.9) over `PEERS_OBJECTS` (20,000) objects of
//! log-normal sizes (median 16 KB, 2–200 KB: thumbnails and small originals), about 4× what the
//! caches hold. Each server is warmed with one run of the trace, then measured on a run with
//! other seeds. Prints, per server, requests/s, p99, hit ratio (1 − origin fetches / requests)
//! and origin fetches, and the edge against the best peer. Then the edge and Varnish `malloc`
//! run side by side in `PEERS_ROUNDS` (6, so each goes first as often; 0 skips them) paired
//! rounds of 10 s, measured in turn ([`paired`]), so that the machine's drift between runs does
//! not decide their ratios: the table gives each side's medians, and a line before it the
//! medians of the rounds' own ratios.
//!
//!   EDGE_BIN=target/release/edge target/release/peers

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bench::{print_table, Row};
use harness::origin::{Origin, Reply};

const CACHE_BYTES: u64 = 96 << 20;
const WARM_SECONDS: u32 = 15;
const SECONDS: u32 = 20;
const ROUND_SECONDS: u32 = 10;

#[path = "peers/paired.rs"]
mod paired;
#[path = "peers/servers.rs"]
mod servers;
use servers::{held, holder, nginx_cache, nginx_files, start_nginx, varnish, zone_for, Holder};

fn env(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The size of object `rank`: log-normal, median 16 KB, σ 0.6, within 2–200 KB.
fn size_of(rank: u64) -> usize {
    bench::log_normal_size(rank, 16_000.0, 0.6, 2_000, 200_000)
}

/// The highest hit ratio any cache holding `bytes` of bodies could have on this trace: requests
/// are drawn independently from the Zipf law, so no cache beats the best fixed set, and no fixed
/// set beats the one that keeps the objects of highest request rate per byte, the last of them
/// counted in part (a fractional knapsack, so an upper bound even on that).
fn best_possible(bytes: u64, objects: u64, zipf: f64) -> f64 {
    let rate: Vec<f64> = (1..=objects).map(|r| (r as f64).powf(-zipf)).collect();
    let all: f64 = rate.iter().sum();
    let mut by_density: Vec<(f64, f64)> = (1..=objects)
        .map(|r| (rate[r as usize - 1] / all, size_of(r) as f64))
        .collect();
    by_density.sort_by(|a, b| (b.0 / b.1).total_cmp(&(a.0 / a.1)));
    let (mut room, mut hits) = (bytes as f64, 0.0);
    for (p, size) in by_density {
        if room <= 0.0 {
            break;
        }
        hits += p * (room / size).min(1.0);
        room -= size;
    }
    hits
}

const SCRIPT: &str = r#"
local n = tonumber(os.getenv("ZIPF_N"))
local s = tonumber(os.getenv("ZIPF_S"))
local seed = tonumber(os.getenv("ZIPF_SEED"))
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  cdf = {}
  local acc = 0
  for k = 1, n do
    acc = acc + 1 / k ^ s
    cdf[k] = acc
  end
  for k = 1, n do cdf[k] = cdf[k] / acc end
  math.randomseed(seed * 7919 + tid)
end
function request()
  local u = math.random()
  local lo, hi = 1, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return wrk.format("GET", "/DQmZipf" .. lo .. "/photo.jpg", {["Host"] = "images.example.test"})
end
"#;

struct Server {
    name: &'static str,
    addr: SocketAddr,
    /// The process (or the edge handle), stopped when dropped.
    _keep: Box<dyn std::any::Any>,
}

fn wait_http(addr: SocketAddr) {
    harness::wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        harness::http::request(
            addr,
            "GET",
            "/DQmZipf1/photo.jpg",
            &[("Host", "images.example.test")],
            &[],
        )
        .ok()
        .filter(|r| r.status == 200)
    })
    .unwrap_or_else(|| panic!("{addr} serves"));
}

/// One server's figures on the measured run.
struct Figures {
    name: String,
    rps: f64,
    p99_ms: f64,
    hit_ratio: f64,
    fetches: usize,
    requests: u64,
    /// Bytes held, averaged over samples taken every 2 s of the measured run (nginx's manager
    /// trims its cache after the load stops, so a reading afterwards would understate it).
    held: u64,
    /// The most of those samples.
    peak: u64,
}

/// Runs `run` while sampling what the server holds every 2 s.
fn sampled<T>(dir: &std::path::Path, holder: &Holder, run: impl FnOnce() -> T) -> (T, Vec<u64>) {
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut samples = Vec::new();
            while !done.load(Ordering::Relaxed) {
                for _ in 0..20 {
                    std::thread::sleep(Duration::from_millis(100));
                    if done.load(Ordering::Relaxed) {
                        return samples;
                    }
                }
                samples.push(held(dir, holder));
            }
            samples
        });
        let out = run();
        done.store(true, Ordering::Relaxed);
        (out, sampler.join().expect("sampler"))
    })
}

fn drive(addr: SocketAddr, script: &std::path::Path, seed: u32, seconds: u32) -> bench::Wrk {
    // wrk passes its environment to the script's os.getenv.
    std::env::set_var("ZIPF_SEED", seed.to_string());
    bench::wrk(&format!("http://{addr}"), Some(script), 2, 64, seconds)
}

/// The edge with `bytes` of memory, and the settings in `PEERS_EDGE_SET` (comma-separated
/// `--set` values, e.g. `server.threads=4`, to compare a setting on the same trace).
fn edge(origin: SocketAddr, bytes: u64, name: &'static str) -> Server {
    let mut set = vec![format!("cache.memory_bytes={bytes}"), "log.level=warn".into()];
    set.extend(
        std::env::var("PEERS_EDGE_SET")
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from),
    );
    let e = bench::start_edge(origin, &set);
    Server {
        name,
        addr: e.addr,
        _keep: Box::new(e),
    }
}

fn main() {
    let objects = env("PEERS_OBJECTS", 20_000.0) as u64;
    let zipf = env("PEERS_ZIPF", 0.9);
    std::env::set_var("ZIPF_N", objects.to_string());
    std::env::set_var("ZIPF_S", zipf.to_string());
    let dir = tempfile::tempdir_in(".").expect("temp dir on this disk");
    let script = dir.path().join("zipf.lua");
    std::fs::write(&script, SCRIPT).expect("script");
    let total: u64 = (1..=objects).map(|r| size_of(r) as u64).sum();
    // One buffer the bodies are cut from, each object at its own offset.
    let pattern: Arc<Vec<u8>> = Arc::new(
        (0..400_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
    );
    let fetches = Arc::new(AtomicUsize::new(0));
    let counted = fetches.clone();
    let origin = Origin::start_keep_alive(move |req| {
        let rank: u64 = req
            .path
            .strip_prefix("/DQmZipf")
            .and_then(|p| p.split('/').next())
            .and_then(|r| r.parse().ok())
            .unwrap_or(1);
        counted.fetch_add(1, Ordering::Relaxed);
        let (size, at) = (size_of(rank), (rank as usize * 4099) % 190_000);
        Reply::ok(pattern[at..at + size].to_vec())
            .header("Content-Type", "image/jpeg")
            .header("Cache-Control", "public, max-age=3600")
    });
    println!(
        "{objects} objects, {:.0} MiB in all, caches of {} MiB ({:.1}x), Zipf {zipf}",
        total as f64 / 1048576.0,
        CACHE_BYTES >> 20,
        total as f64 / CACHE_BYTES as f64
    );
    let measure = |server: Server| -> Figures {
        wait_http(server.addr);
        drive(server.addr, &script, 1, WARM_SECONDS);
        let before = fetches.load(Ordering::Relaxed);
        let (w, samples) = sampled(dir.path(), &holder(dir.path(), &server), || {
            drive(server.addr, &script, 2, SECONDS)
        });
        let fetched = fetches.load(Ordering::Relaxed) - before;
        let held = samples.iter().sum::<u64>() / samples.len().max(1) as u64;
        let peak = samples.iter().copied().max().unwrap_or(0);
        let f = Figures {
            name: server.name.to_string(),
            rps: w.rps,
            p99_ms: w.p99_ms,
            hit_ratio: 1.0 - fetched as f64 / w.requests.max(1) as f64,
            fetches: fetched,
            requests: w.requests,
            held,
            peak,
        };
        println!(
            "{}: {:.0} req/s, p99 {:.2} ms, hit ratio {:.1} %, {fetched} origin fetches of {} requests; held {:.1} MiB on average, {:.1} MiB at most",
            f.name,
            f.rps,
            f.p99_ms,
            f.hit_ratio * 100.0,
            w.requests,
            bench::mib(held),
            bench::mib(peak)
        );
        drop(server);
        std::thread::sleep(Duration::from_millis(500));
        f
    };
    let o = origin.addr();
    let ours = measure(edge(o, CACHE_BYTES, "edge"));
    // `PEERS_EDGE_ONLY=1`: the edge alone (to profile it, or to see its spread between runs).
    if std::env::var_os("PEERS_EDGE_ONLY").is_some() {
        return;
    }
    let bounded = [
        measure(varnish(
            dir.path(),
            o,
            &format!("malloc,{}m", CACHE_BYTES >> 20),
            "varnish malloc",
        )),
        measure(varnish(
            dir.path(),
            o,
            &format!(
                "file,{},{}m",
                dir.path().join("varnish.bin").display(),
                CACHE_BYTES >> 20
            ),
            "varnish file",
        )),
    ];
    let nginx = measure(start_nginx(
        dir.path(),
        o,
        (CACHE_BYTES, "16m"),
        "nginx proxy_cache",
    ));
    // nginx's `max_size` does not hold it to 96 MiB: its manager trims the cache back under it
    // only when it wakes, at most 10 s apart, and at this miss rate the cache grows back to most
    // of the working set well within that (with `max_size` scaled down by what it held, it held
    // as much). What does bound it as it goes is its key zone: when the zone is full, each new
    // entry first pushes out the least recent one (and from then on the manager trims the keys
    // to 7/8 of that when it wakes). So nginx again with a zone of as many keys as 96 MiB of its
    // files hold (their average size from the run above): an LRU bounded by count, holding
    // between 7/8 of 96 MiB and 96 MiB, the bytes it holds measured as before.
    let (bytes, files) = nginx_files(&nginx_cache(dir.path(), &nginx.name));
    let nginx_by_keys = (files > 0 && bytes > 0 && nginx.peak > CACHE_BYTES + CACHE_BYTES / 10).then(|| {
        let keys = CACHE_BYTES * files / bytes;
        let zone = zone_for(keys);
        println!(
            "nginx, held by its key zone: {keys} keys of {:.1} KiB on average, keys_zone {zone}",
            bytes as f64 / files as f64 / 1024.0,
        );
        measure(start_nginx(
            dir.path(),
            o,
            (CACHE_BYTES, &zone),
            "nginx, held by its key zone",
        ))
    });
    // nginx's max_size is enforced by a background manager that falls behind under load: it
    // holds more than its bound. The edge is measured again with as much memory as nginx held on
    // average, and as much as it held at its peak (what a machine running it must have).
    // What no cache could beat with nginx's average: if nginx does better, it held more than
    // its average for much of the run. Its files also hold each response's header and fill
    // whole blocks, so taking all of that average as bodies makes this bound a loose one.
    println!(
        "the best hit ratio any cache could have: {:.1} % with 96 MiB of bodies, at most {:.1} % with nginx's average ({:.0} MiB of files, taken as bodies)",
        best_possible(CACHE_BYTES, objects, zipf) * 100.0,
        best_possible(nginx.held, objects, zipf) * 100.0,
        bench::mib(nginx.held)
    );
    let ours_as_nginx = (nginx.peak > CACHE_BYTES + CACHE_BYTES / 10).then(|| {
        [
            ("average", nginx.held, "edge, memory = nginx's average"),
            ("peak", nginx.peak, "edge, memory = nginx's peak"),
        ]
        .map(|(which, bytes, name)| {
            let label = format!("{:.0} MiB (nginx's {which})", bench::mib(bytes));
            (label, measure(edge(o, bytes, name)))
        })
    });

    let rounds = env("PEERS_ROUNDS", 6.0) as usize;
    let pair = (rounds > 0).then(|| {
        let (e, v) = (
            edge(o, CACHE_BYTES, "edge"),
            varnish(
                dir.path(),
                o,
                &format!("malloc,{}m", CACHE_BYTES >> 20),
                "varnish malloc, paired",
            ),
        );
        wait_http(e.addr);
        wait_http(v.addr);
        println!("edge and varnish malloc side by side, {rounds} paired rounds of {ROUND_SECONDS} s:");
        let m = paired::rounds(
            e.addr,
            v.addr,
            rounds,
            (WARM_SECONDS, ROUND_SECONDS),
            &fetches,
            &|addr, seed, secs| drive(addr, &script, seed, secs),
        );
        println!(
            "  medians of the rounds' ratios: requests/s {:.2}x, p99 {:.2}x, hit ratio {:.2}x",
            m.ratio.rps, m.ratio.p99_ms, m.ratio.hit_ratio
        );
        m
    });

    let best = |peers: &[&Figures], f: fn(&Figures) -> f64, higher: bool| -> (String, f64) {
        let p = peers
            .iter()
            .max_by(|a, b| {
                let o = f(a).total_cmp(&f(b));
                if higher {
                    o
                } else {
                    o.reverse()
                }
            })
            .expect("peers ran");
        (p.name.clone(), f(p))
    };
    let mut rows = Vec::new();
    let mut compare = |label: &str, ours: &Figures, peers: &[&Figures]| {
        let (n, rps) = best(peers, |f| f.rps, true);
        rows.push(Row {
            what: format!("{label}: requests/s (best: {n})"),
            ours: ours.rps,
            reference: Some(rps),
            unit: "",
            target: ">= 1.25x",
        });
        let (n, p99) = best(peers, |f| f.p99_ms, false);
        rows.push(Row {
            what: format!("{label}: p99 latency (best: {n})"),
            ours: ours.p99_ms,
            reference: Some(p99),
            unit: "ms",
            target: "<= 0.5x",
        });
        let (n, hit) = best(peers, |f| f.hit_ratio, true);
        rows.push(Row {
            what: format!("{label}: hit ratio (best: {n})"),
            ours: ours.hit_ratio * 100.0,
            reference: Some(hit * 100.0),
            unit: "%",
            target: ">= 1x",
        });
        // Per request served: the servers served different numbers of requests in the same time.
        let (n, fetched) = best(
            peers,
            |f| f.fetches as f64 * 1000.0 / f.requests.max(1) as f64,
            false,
        );
        rows.push(Row {
            what: format!("{label}: origin fetches per 1,000 requests (fewest: {n})"),
            ours: ours.fetches as f64 * 1000.0 / ours.requests.max(1) as f64,
            reference: Some(fetched),
            unit: "",
            target: "-",
        });
    };
    // At 96 MiB, against the peers that kept to it (never over a tenth more at any sample: nginx
    // when it did, or held by its key zone); nginx against the edge given what it held.
    let mut kept: Vec<&Figures> = bounded.iter().collect();
    if ours_as_nginx.is_none() {
        kept.push(&nginx);
    }
    if let Some(n) = nginx_by_keys
        .as_ref()
        .filter(|n| n.peak <= CACHE_BYTES + CACHE_BYTES / 10)
    {
        kept.push(n);
    }
    compare("96 MiB", &ours, &kept);
    for (label, e) in ours_as_nginx.iter().flatten() {
        compare(label, e, &[&nginx]);
    }
    if let Some(m) = &pair {
        let label = format!("96 MiB, {rounds} paired rounds with varnish malloc (medians)");
        for (what, ours, theirs, unit, target) in [
            ("requests/s", m.ours.rps, m.theirs.rps, "", ">= 1.25x"),
            ("p99 latency", m.ours.p99_ms, m.theirs.p99_ms, "ms", "<= 0.5x"),
            (
                "hit ratio",
                m.ours.hit_ratio * 100.0,
                m.theirs.hit_ratio * 100.0,
                "%",
                ">= 1x",
            ),
        ] {
            rows.push(Row {
                what: format!("{label}: {what}"),
                ours,
                reference: Some(theirs),
                unit,
                target,
            });
        }
    }
    print_table(
        &format!(
            "edge vs its peers, Zipf {zipf} over {objects} objects ({:.1}x the 96 MiB caches), wrk -t2 -c64 {SECONDS} s after a {WARM_SECONDS} s warm-up",
            total as f64 / CACHE_BYTES as f64
        ),
        "edge",
        "best peer",
        &rows,
    );
}
