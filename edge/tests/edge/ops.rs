//! Operations: SIGTERM within the grace, --check-config, the admin listener (metrics, stats
//! page), and a zero-downtime upgrade that keeps serving and keeps the cache.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::origin::Reply;
use harness::process::wait_exit;

use crate::support::{body, count, origin, Edge, BIN};

#[test]
fn check_config_accepts_defaults_and_rejects_bad_upstreams() {
    let out = Command::new(BIN)
        .args(["--check-config", "--set", "upstreams.nodes=[\"imagehost:80\"]"])
        .output()
        .expect("run edge");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an ip:port"));
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
    let out = Command::new(BIN).arg("--help").output().expect("run edge");
    assert!(String::from_utf8_lossy(&out.stdout).contains("--upgrade"));
}

#[test]
fn admin_serves_metrics_and_a_stats_page_and_sigterm_stops_in_seconds() {
    let (o, _) = origin(|_| Reply::ok("x").header("Cache-Control", "max-age=60"));
    let edge = Edge::start(&[o.addr()], &[]);
    edge.get("/a");
    edge.get("/a");
    let wanted = [
        "edge_cache_requests_total{result=\"hit\"} 1".to_string(),
        "edge_cache_requests_total{result=\"miss\"} 1".into(),
        "edge_cache_memory_bytes".into(),
        "edge_upstream_seconds_bucket".into(),
        format!("edge_backend_up{{backend=\"{}\"}} 1", o.addr()),
        "edge_responses_total{status=\"200\"} 2".into(),
    ];
    // Counters move in pingora's logging phase, just after the response is sent: poll.
    let metrics = || {
        harness::http::get(edge.admin, "/metrics")
            .map(|r| r.text())
            .unwrap_or_default()
    };
    let found = harness::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let m = metrics();
        wanted.iter().all(|w| m.contains(w.as_str())).then_some(())
    });
    assert!(found.is_some(), "missing some of {wanted:?}:\n{}", metrics());
    // The page draws /stats.json (a real browser checks it: tests/tests/cluster/pages.rs).
    let page = harness::http::get(edge.admin, "/stats").expect("stats").text();
    assert!(page.contains("stats.json") && page.contains("<script>"), "{page}");
    let s = edge.stats();
    assert_eq!(s["hit_ratio"], 0.5);
    let backends = &s["page"]["tables"][0];
    assert_eq!(backends["title"], "Backends");
    assert_eq!(backends["rows"][0]["cells"][0], o.addr().to_string(), "{s}");
    assert_eq!(backends["rows"][0]["cells"][1], "UP", "{s}");
    assert_eq!(s["page"]["service"], "edge");
    let cache = s["page"]["tables"][1].to_string();
    assert!(
        cache.contains("hit ratio since start") && cache.contains("50.0 %"),
        "{cache}"
    );
    let started = Instant::now();
    edge.stop();
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[allow(unsafe_code)]
#[test]
fn zero_downtime_upgrade_keeps_serving_and_keeps_the_cache() {
    let data = body(30_000, 9);
    let served = data.clone();
    let (o, fetches) = origin(move |_| Reply::ok(served.clone()).header("Cache-Control", "max-age=3600"));
    let disk = harness::tempdir();
    let settings = vec![format!("cache.disk_dir={}", disk.path().display())];
    let old = Edge::start(&[o.addr()], &settings);
    assert_eq!(old.get("/DQmUp/a.jpg").header("x-cache"), Some("MISS"));

    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let addr = old.addr;
    let load = {
        let (stop, failed, done, data) = (stop.clone(), failed.clone(), done.clone(), data.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                match harness::http::get(addr, "/DQmUp/a.jpg") {
                    Ok(r) if r.status == 200 && r.body == data => done.fetch_add(1, Ordering::SeqCst),
                    other => {
                        eprintln!("failed during upgrade: {:?}", other.map(|r| r.status));
                        failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
            }
        })
    };
    // The new process takes the listeners through the upgrade socket, then the old one drains.
    let (port, admin) = (old.addr.port(), harness::free_port());
    let dir = harness::tempdir();
    // Same upgrade socket as the old process.
    let sock = old.dir.path().join("upgrade.sock");
    let mut upgraded = settings.clone();
    upgraded.push(format!("server.upgrade_sock={}", sock.display()));
    let mut new = Edge::spawn(dir, port, admin, &[o.addr()], &upgraded, true);
    let mut old = old;
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(old.child.id() as libc::pid_t, libc::SIGQUIT) };
    new.wait_ready();
    let exited = wait_exit(&mut old.child, Duration::from_secs(20));
    assert!(
        exited.is_some(),
        "the old edge exits after handing over:\n{}",
        old.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    load.join().expect("load");
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "no request failed across the upgrade ({} ok)",
        done.load(Ordering::SeqCst)
    );
    let r = new.get("/DQmUp/a.jpg");
    assert_eq!(r.header("x-cache"), Some("HIT"), "{}", new.log());
    assert_eq!(count(&fetches), 1, "the new process kept the cache (disk tier)");
    let _ = &mut new;
}

/// Kills a daemonised edge (not our child) by the PID in its PID file when the test ends.
struct Daemon(std::path::PathBuf);

impl Daemon {
    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.0).ok()?.trim().parse().ok()
    }
}

impl Drop for Daemon {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // SAFETY: signalling the daemon this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[allow(unsafe_code)]
fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[allow(unsafe_code)]
#[test]
fn systemd_reload_path_daemon_then_upgrade_keeps_serving() {
    // What hive-edge.service does: ExecStart=edge --daemon, and on reload a second
    // `edge --daemon --upgrade` followed by SIGQUIT to the old PID from the PID file.
    let (o, _) = origin(|_| Reply::ok("x").header("Cache-Control", "max-age=600"));
    let dir = harness::tempdir();
    let (port, admin) = (harness::free_port(), harness::free_port());
    let pid_file = dir.path().join("edge.pid");
    let args = |upgrade: bool| {
        let mut cmd = Command::new(BIN);
        for s in [
            format!("server.listen=127.0.0.1:{port}"),
            format!("admin.listen=127.0.0.1:{admin}"),
            format!("upstreams.nodes=[\"{}\"]", o.addr()),
            format!("server.upgrade_sock={}", dir.path().join("up.sock").display()),
            format!("server.pid_file={}", pid_file.display()),
            "server.grace_period=1s".into(),
            "server.shutdown_timeout=1s".into(),
        ] {
            cmd.args(["--set", &s]);
        }
        cmd.arg("--daemon");
        if upgrade {
            cmd.arg("--upgrade");
        }
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd
    };
    let status = args(false).status().expect("edge --daemon");
    assert!(status.success(), "the foreground process exits once daemonised");
    let daemon = Daemon(pid_file.clone());
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    harness::wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        harness::http::get(addr, "/a").ok().filter(|r| r.status == 200)
    })
    .expect("the daemon serves");
    let old = daemon.pid().expect("pid file written");

    let mut upgrade = args(true).spawn().expect("edge --daemon --upgrade");
    std::thread::sleep(Duration::from_secs(1));
    // SAFETY: signalling the daemon this test started.
    unsafe { libc::kill(old, libc::SIGQUIT) };
    let started = Instant::now();
    let mut failures = 0;
    while started.elapsed() < Duration::from_secs(4) {
        if harness::http::get(addr, "/a").map(|r| r.status).ok() != Some(200) {
            failures += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = upgrade.wait();
    assert_eq!(failures, 0, "no request failed across the reload");
    let new = daemon.pid().expect("pid file");
    assert_ne!(new, old, "the PID file names the new process");
    assert!(alive(new));
    harness::wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        (!alive(old)).then_some(())
    })
    .expect("the old process drains and exits");
}
