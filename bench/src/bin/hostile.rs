//! imagehost (release) over the hostile corpus of `harness::hostile`, through `/p/` from a
//! loopback origin: each request's time (target ≤ 1 s) and what it got, then eight heavy renders
//! at once, and the process's peak RSS over all of it (target ≤ 256 MB). The reference is
//! `vipsthumbnail` on the same files at the same widths, each in its own process (time and peak
//! RSS), where it can take them. vipsthumbnail is started from a small copy of this program
//! (`--vips FILE WIDTH`): a child's peak RSS counts the memory of the process that spawned it
//! (the kernel keeps the pre-exec high-water mark), and this one holds the whole corpus.
//!
//!   BIN_DIR=target/release target/release/hostile

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bench::{measure, mib, print_table, Row};
use harness::hostile::{self, Case, Expect};
use harness::origin::{Origin, Reply};

fn ask(addr: SocketAddr, origin: SocketAddr, case: &Case) -> (u16, Duration) {
    let url = format!("http://{origin}/{}", case.name);
    let path = format!("/p/{}?{}", imagehost::proxy::target::encode(&url), case.query);
    let t = Instant::now();
    let r =
        harness::http::request_within(addr, "GET", &path, &[], &[], Duration::from_secs(60)).expect("answer");
    (r.status, t.elapsed())
}

/// The width a plain `width=N` query asks for (the cases vipsthumbnail can be given alike).
fn plain_width(query: &str) -> Option<u32> {
    query.strip_prefix("width=")?.parse().ok().filter(|w| *w <= 2000)
}

/// `--vips FILE WIDTH`: runs vipsthumbnail once and prints `milliseconds peak-bytes ok`.
fn vips_once(file: &str, width: &str) {
    let out = std::path::Path::new(file).with_extension("vips-out.jpg");
    let m = measure(
        Command::new("vipsthumbnail")
            .arg(file)
            .args(["--size", width, "-o"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    println!("{} {} {}", m.wall.as_millis(), m.peak_rss, m.status.success());
}

fn vips(file: &std::path::Path, width: u32) -> (Duration, u64, bool) {
    let out = Command::new(std::env::current_exe().expect("own path"))
        .arg("--vips")
        .arg(file)
        .arg(width.to_string())
        .output()
        .expect("measure vipsthumbnail");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = text.split_whitespace();
    let ms: u64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let rss: u64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    (Duration::from_millis(ms), rss, f.next() == Some("true"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--vips" {
        return vips_once(&args[2], &args[3]);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let files: HashMap<String, Vec<u8>> = hostile::files()
        .into_iter()
        .map(|(n, b)| (n.to_string(), b))
        .collect();
    for (n, b) in &files {
        std::fs::write(dir.path().join(n), b).expect("write corpus file");
    }
    let served = files.clone();
    let origin = Origin::start(move |req| match served.get(req.path.trim_start_matches('/')) {
        Some(b) => Reply::ok(b.clone()),
        None => Reply::status(404),
    });
    let port = harness::free_port();
    let bin = format!(
        "{}/imagehost",
        std::env::var("BIN_DIR").unwrap_or_else(|_| "target/release".into())
    );
    let mut child = hostile::imagehost_command(&bin, port, dir.path())
        .spawn()
        .unwrap_or_else(|e| panic!("start {bin}: {e}"));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    harness::wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
        harness::http_status(addr, "/healthcheck").filter(|s| *s == 200)
    })
    .expect("imagehost up");

    println!(
        "{:<42} {:<26} {:>6} {:>10} {:>12} {:>12}",
        "file", "query", "status", "imagehost", "vips", "vips RSS"
    );
    let mut slowest = Duration::ZERO;
    let (mut vips_slowest, mut vips_peak) = (Duration::ZERO, 0u64);
    let mut wrong = 0;
    for case in hostile::cases() {
        let (status, took) = ask(addr, origin.addr(), &case);
        let want = match case.expect {
            Expect::Image { .. } => 200,
            Expect::Refused => 400,
        };
        wrong += (status != want) as usize;
        slowest = slowest.max(took);
        let vips = plain_width(case.query).map(|w| vips(&dir.path().join(case.name), w));
        let vips_text = match vips {
            Some((t, rss, ok)) => {
                vips_slowest = vips_slowest.max(t);
                vips_peak = vips_peak.max(rss);
                (
                    format!(
                        "{:.0} ms{}",
                        t.as_secs_f64() * 1000.0,
                        if ok { "" } else { " (err)" }
                    ),
                    format!("{:.0} MiB", mib(rss)),
                )
            }
            None => ("-".into(), "-".into()),
        };
        println!(
            "{:<42} {:<26} {:>6} {:>7.0} ms {:>12} {:>12}",
            case.name,
            case.query,
            status,
            took.as_secs_f64() * 1000.0,
            vips_text.0,
            vips_text.1
        );
    }
    let t = Instant::now();
    let threads: Vec<_> = hostile::concurrent()
        .into_iter()
        .map(|case| {
            let o = origin.addr();
            std::thread::spawn(move || ask(addr, o, &case))
        })
        .collect();
    let mut concurrent_slowest = Duration::ZERO;
    for th in threads {
        let (status, took) = th.join().expect("request");
        wrong += (status != 200) as usize;
        concurrent_slowest = concurrent_slowest.max(took);
    }
    println!(
        "8 heavy renders at once: all answered in {:.0} ms (slowest {:.0} ms)",
        t.elapsed().as_secs_f64() * 1000.0,
        concurrent_slowest.as_secs_f64() * 1000.0
    );
    let peak = harness::process::peak_rss_kib(child.id()) * 1024;
    let _ = child.kill();
    let _ = child.wait();
    if wrong > 0 {
        eprintln!("{wrong} answers differed from the corpus's expectations");
    }
    print_table(
        "hostile corpus, imagehost (release) vs vipsthumbnail on the same files",
        "imagehost",
        "vips",
        &[
            Row {
                what: "slowest answer of the corpus, one at a time".into(),
                ours: slowest.as_secs_f64() * 1000.0,
                reference: Some(vips_slowest.as_secs_f64() * 1000.0),
                unit: "ms",
                target: "≤ 1000 ms",
            },
            Row {
                what: "slowest of 8 heavy renders at once".into(),
                ours: concurrent_slowest.as_secs_f64() * 1000.0,
                reference: None,
                unit: "ms",
                target: "≤ 1000 ms",
            },
            Row {
                what: "peak RSS, corpus then 8 at once (vips: one file)".into(),
                ours: mib(peak),
                reference: Some(mib(vips_peak)),
                unit: "MiB",
                target: "≤ 244 MiB (256 MB)",
            },
        ],
    );
}
