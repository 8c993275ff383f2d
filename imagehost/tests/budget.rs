//! The render budget against the hostile corpus (`harness::hostile`), on the imagehost binary so
//! that its memory is its own: every request gets its clear answer (images bounded in size, the
//! rest `400 invalid_image`), eight heavy renders at once are admitted by memory rather than
//! adding up, and the process's peak resident memory stays under 256 MiB throughout. The
//! server is up and serving afterwards.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use harness::hostile::{self, Case, Expect};
use harness::origin::{Origin, Reply};
use harness::process::{peak_rss_kib, spawn_tied, terminate, wait_exit};

const BIN: &str = env!("CARGO_BIN_EXE_imagehost");
/// The ceiling for imagehost's resident memory over the hostile corpus.
const CEILING_MIB: u64 = 256;

fn ask(addr: SocketAddr, origin: SocketAddr, case: &Case) -> harness::http::Response {
    let url = format!("http://{origin}/{}", case.name);
    let path = format!("/p/{}?{}", imagehost::proxy::target::encode(&url), case.query);
    // A debug build renders slowly; what is checked is the answer and the memory, not the time.
    harness::http::request_within(addr, "GET", &path, &[], &[], Duration::from_secs(300)).expect("answer")
}

fn check(case: &Case, r: &harness::http::Response) {
    let what = format!("{} ?{}", case.name, case.query);
    match case.expect {
        Expect::Image { max_side } => {
            assert_eq!(r.status, 200, "{what}: {}", r.text());
            let img = image::load_from_memory(&r.body).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(
                img.width() <= max_side && img.height() <= max_side,
                "{what}: {}×{}",
                img.width(),
                img.height()
            );
        }
        Expect::Refused => {
            assert_eq!(r.status, 400, "{what}: {}", r.text());
            assert!(r.text().contains("invalid_image"), "{what}: {}", r.text());
        }
    }
}

#[test]
fn hostile_requests_get_clear_answers_within_a_memory_ceiling() {
    let files: HashMap<String, Vec<u8>> = hostile::files()
        .into_iter()
        .map(|(n, b)| (format!("/{n}"), b))
        .collect();
    for (n, b) in &files {
        eprintln!("{n}: {} bytes", b.len());
    }
    let origin = Origin::start(move |req| match files.get(&req.path) {
        Some(b) => Reply::ok(b.clone()),
        None => Reply::status(404),
    });
    let dir = harness::tempdir();
    let port = harness::free_port();
    let mut child = spawn_tied(
        hostile::imagehost_command(BIN, port, dir.path()).args(["--set", "pipeline.job_timeout=5m"]),
    )
    .expect("spawn imagehost");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    harness::wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        (harness::http_status(addr, "/healthcheck") == Some(200)).then_some(())
    })
    .expect("imagehost ready");
    let idle = peak_rss_kib(child.id()) / 1024;

    for case in hostile::cases() {
        let t = Instant::now();
        let r = ask(addr, origin.addr(), &case);
        eprintln!(
            "{} ?{}: {} in {:?}, peak {} MiB",
            case.name,
            case.query,
            r.status,
            t.elapsed(),
            peak_rss_kib(child.id()) / 1024
        );
        check(&case, &r);
    }

    // Eight heavy renders at once: admitted by their memory estimates, so they queue.
    let heavy = hostile::concurrent();
    assert_eq!(heavy.len(), 8);
    let at_once = heavy
        .iter()
        .map(|case| {
            let (case, o) = (case.clone(), origin.addr());
            std::thread::spawn(move || {
                let r = ask(addr, o, &case);
                (case, r)
            })
        })
        .collect::<Vec<_>>();
    for t in at_once {
        let (case, r) = t.join().expect("request thread");
        check(&case, &r);
    }

    let peak = peak_rss_kib(child.id()) / 1024;
    eprintln!("imagehost peak RSS: {peak} MiB (idle {idle} MiB)");
    assert!(peak <= CEILING_MIB, "peak RSS {peak} MiB over {CEILING_MIB} MiB");
    assert_eq!(harness::http_status(addr, "/healthcheck"), Some(200));
    terminate(&child);
    wait_exit(&mut child, Duration::from_secs(15)).expect("exits");
}
