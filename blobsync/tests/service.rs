//! blobsync: the status API over real fileservers, --check-config, and graceful SIGTERM with the
//! queue database flushed.

use std::process::{Command, Stdio};
use std::time::Duration;

use blobstore::FileserverConfig;
use blobsync::Config;
use harness::process::{spawn_tied, terminate, wait_exit};
use service::Shutdown;

const BIN: &str = env!("CARGO_BIN_EXE_blobsync");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_each_fileserver_bucket() {
    let root = harness::tempdir();
    let config = Config {
        fileservers: vec![
            FileserverConfig::directory("a", root.path().join("a")),
            FileserverConfig::directory("b", root.path().join("b")),
        ],
        queue: blobsync::config::QueueConfig {
            path: root.path().join("queue"),
            ..Default::default()
        },
        ..Config::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = Shutdown::new();
    let task = tokio::spawn(blobsync::run(config, listener, shutdown.clone()));

    // Once the API answers, the stores are open; then fileserver b's disk goes away.
    tokio::task::spawn_blocking(move || {
        harness::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            (harness::http_status(addr, "/status") == Some(200)).then_some(())
        })
    })
    .await
    .expect("join")
    .expect("blobsync ready");
    std::fs::rename(root.path().join("b"), root.path().join("b-gone")).expect("unmount b");
    let r = tokio::task::spawn_blocking(move || harness::http::get(addr, "/status").expect("GET /status"))
        .await
        .expect("join");
    assert_eq!(r.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(body["backlog"], 0);
    assert_eq!(
        body["fileservers"],
        serde_json::json!({"a/uploads": "ok", "a/proxy": "ok", "b/uploads": "unavailable", "b/proxy": "unavailable"})
    );
    let metrics =
        tokio::task::spawn_blocking(move || harness::http::get(addr, "/metrics").expect("GET /metrics"))
            .await
            .expect("join");
    // The same answers are on /metrics, with the process family every target carries.
    for line in [
        "blobsync_backlog_objects 0",
        "blobsync_fileserver_up{store=\"a/uploads\"} 1",
        "blobsync_fileserver_up{store=\"b/proxy\"} 0",
        "process_resident_memory_bytes",
    ] {
        assert!(metrics.text().contains(line), "{line}:\n{}", metrics.text());
    }

    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("stops")
        .expect("join")
        .expect("ok");
    assert!(
        root.path().join("queue").exists(),
        "the queue database was created"
    );
}

#[test]
fn check_config_and_sigterm() {
    let out = Command::new(BIN)
        .args(["--check-config", "--set", "buckets=[]"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least one bucket"));

    let dir = harness::tempdir();
    let port = harness::free_port();
    let d = dir.path().display();
    let mut child = spawn_tied(
        Command::new(BIN)
            .args(["--set", &format!("server.listen=127.0.0.1:{port}")])
            .args(["--set", &format!("queue.path={d}/queue")])
            .args(["--set", &format!(
                "fileservers=[{{ name = \"a\", directory = {{ path = \"{d}/a\" }} }}, {{ name = \"b\", directory = {{ path = \"{d}/b\" }} }}]"
            )])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .expect("spawn blobsync");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    harness::wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        (harness::http_status(addr, "/status") == Some(200)).then_some(())
    })
    .expect("blobsync became ready");

    // `blobsync status` asks the running daemon.
    let out = Command::new(BIN)
        .args(["status", "--set", &format!("server.listen=127.0.0.1:{port}")])
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("backlog") && text.contains("a/uploads"),
        "{text}"
    );
    terminate(&child);
    let status = wait_exit(&mut child, Duration::from_secs(15)).expect("exits in time");
    assert!(status.success(), "{status:?}");

    // With the daemon gone, `status` reads its queue instead, and says so.
    let out = Command::new(BIN)
        .args(["status", "--set", &format!("server.listen=127.0.0.1:{port}")])
        .args(["--set", &format!("queue.path={d}/queue")])
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("backlog               0") && text.contains("daemon                not running"),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no blobsync daemon answers"));
}

#[test]
fn sync_once_backfills_and_reports_what_is_left() {
    let dir = harness::tempdir();
    let d = dir.path().display().to_string();
    // fs-a holds 50 objects, fs-b none.
    for i in 0..50 {
        let p = dir.path().join("a/uploads");
        std::fs::create_dir_all(&p).expect("mkdir");
        std::fs::write(p.join(format!("U{i:03}")), format!("object {i}")).expect("write");
    }
    let fileservers = format!(
        "fileservers=[{{ name = \"a\", directory = {{ path = \"{d}/a\" }} }}, {{ name = \"b\", directory = {{ path = \"{d}/b\" }} }}]"
    );
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args([
                "sync",
                "--once",
                "--set",
                &fileservers,
                "--set",
                &format!("queue.path={d}/queue"),
            ])
            .args(extra)
            .output()
            .expect("sync --once")
    };
    let out = run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("sync finished") && err.contains("50 queued"),
        "{err}"
    );
    for i in 0..50 {
        let copy = std::fs::read_to_string(dir.path().join(format!("b/uploads/U{i:03}"))).expect("copied");
        assert_eq!(copy, format!("object {i}"));
    }
    // Idempotent: nothing left to do.
    let out = run(&[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 queued"));
    let _ = Stdio::null();
}
