//! edge as a process in front of a real HTTP origin: requests are proxied, a dead upstream is
//! skipped, --check-config rejects bad input, and SIGTERM exits within the configured grace.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::origin::{Origin, Reply};
use harness::process::{spawn_tied, terminate, wait_exit};

const BIN: &str = env!("CARGO_BIN_EXE_edge");

fn start_edge(nodes: &[SocketAddr]) -> (Child, SocketAddr) {
    let port = harness::free_port();
    let nodes: Vec<String> = nodes.iter().map(|a| format!("\"{a}\"")).collect();
    let child = spawn_tied(
        Command::new(BIN)
            .args(["--set", &format!("server.listen=127.0.0.1:{port}")])
            .args(["--set", &format!("upstreams.nodes=[{}]", nodes.join(","))])
            .args([
                "--set",
                "upstreams.health_interval=200ms",
                "--set",
                "server.grace_period=1s",
            ])
            .args([
                "--set",
                "server.shutdown_timeout=1s",
                "--set",
                "admin.listen=127.0.0.1:0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .expect("spawn edge");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    harness::wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        harness::http_status(addr, "/ping").map(|_| ())
    })
    .expect("edge listens");
    (child, addr)
}

#[test]
fn proxies_to_healthy_upstreams_and_stops_on_sigterm() {
    let origin = Origin::start(|req| {
        Reply::ok(format!("origin saw {}", req.path)).header("Content-Type", "text/plain")
    });
    // The second node is a port nothing listens on: health checks mark it down.
    let dead = SocketAddr::from(([127, 0, 0, 1], harness::free_port()));
    let (mut edge, addr) = start_edge(&[origin.addr(), dead]);
    std::thread::sleep(Duration::from_millis(600));

    let before = origin.hits(); // the readiness probe went through to the origin too
    for i in 0..10 {
        let r = harness::http::get(addr, &format!("/img/{i}")).expect("request through edge");
        assert_eq!((r.status, r.text()), (200, format!("origin saw /img/{i}")));
    }
    assert_eq!(
        origin.hits() - before,
        10,
        "every request reached the one live origin"
    );

    terminate(&edge);
    let status =
        wait_exit(&mut edge, Duration::from_secs(10)).expect("exits within grace + shutdown timeout");
    assert!(status.success(), "{status:?}");
}

#[test]
fn check_config_rejects_bad_upstreams() {
    let out = Command::new(BIN)
        .args(["--check-config", "--set", "upstreams.nodes=[\"imagehost:80\"]"])
        .output()
        .expect("run edge");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not an ip:port"), "{err}");
    let out = Command::new(BIN)
        .arg("--check-config")
        .output()
        .expect("run edge");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
