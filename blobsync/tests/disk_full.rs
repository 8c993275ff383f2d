//! The queue's disk filling up, on the blobsync binary (its queue on a 32 MiB disk of its own,
//! `harness::faults::on_small_disk`): once less than `queue.min_free_bytes` is free, change events
//! get a 503 that says why (the sender retries), the daemon keeps running, and every event
//! accepted before is still queued. sled never sees a full disk, from which it does not recover.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::process::{spawn_tied, Killed};

const BIN: &str = env!("CARGO_BIN_EXE_blobsync");

fn events(first: usize, n: usize) -> Vec<u8> {
    let records: Vec<serde_json::Value> = (first..first + n)
        .map(|i| {
            serde_json::json!({
                "eventName": "s3:ObjectCreated:Put",
                "s3": { "bucket": { "name": "uploads" }, "object": { "key": format!("DQm{i:0>300}") } }
            })
        })
        .collect();
    serde_json::json!({ "Records": records }).to_string().into_bytes()
}

#[test]
fn a_nearly_full_queue_disk_refuses_new_events_with_503_and_keeps_what_it_queued() {
    let dir = harness::tempdir();
    let queue = dir.path().join("queue");
    std::fs::create_dir_all(&queue).expect("queue dir");
    let port = harness::free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Two fileservers nobody listens on: copies fail and wait, so what was queued stays queued.
    let (a, b) = (harness::free_port(), harness::free_port());
    let mut cmd = Command::new(BIN);
    for s in [
        format!("server.listen={addr}"),
        format!("queue.path={}/db", queue.display()),
        "queue.min_free_bytes=25165824".to_string(),
        format!(
            "fileservers=[{{ name = \"a\", s3 = {{ endpoint = \"http://127.0.0.1:{a}\", access_key_id = \"k\", secret_access_key = \"s\" }} }}, {{ name = \"b\", s3 = {{ endpoint = \"http://127.0.0.1:{b}\", access_key_id = \"k\", secret_access_key = \"s\" }} }}]"
        ),
        "anti_entropy.interval=0s".into(),
        "scrub.interval=0s".into(),
        "copy.initial_backoff=1h".into(),
        "copy.max_backoff=1h".into(),
    ] {
        cmd.args(["--set", &s]);
    }
    let log = std::fs::File::create(dir.path().join("blobsync.log")).expect("log");
    let mut wrapped = harness::faults::on_small_disk(&cmd, &queue, 32 << 20);
    let _daemon = Killed(spawn_tied(wrapped.stdout(Stdio::null()).stderr(log)).expect("spawn"));
    let log_text = || std::fs::read_to_string(dir.path().join("blobsync.log")).unwrap_or_default();
    harness::wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        (harness::http_status(addr, "/status") == Some(200)).then_some(())
    })
    .unwrap_or_else(|| panic!("blobsync up: {}", log_text()));

    let (mut accepted, mut refused) = (0usize, None);
    for post in 0..2000 {
        let r = harness::http::request(
            addr,
            "POST",
            "/events",
            &[("Content-Type", "application/json")],
            &events(post * 200, 200),
        )
        .expect("answer");
        match r.status {
            200 => accepted += 200,
            503 => {
                refused = Some(r.text());
                break;
            }
            other => panic!("event post {post}: {other} {}", r.text()),
        }
    }
    let refused =
        refused.unwrap_or_else(|| panic!("the disk never filled past the reserve; {accepted} accepted"));
    assert!(refused.contains("queue disk nearly full"), "{refused}");
    assert!(
        accepted > 0,
        "events were accepted before the reserve was reached"
    );
    // Still running; everything accepted is still queued.
    let status = harness::http::get(addr, "/status").expect("status");
    assert_eq!(status.status, 200);
    let s: serde_json::Value = serde_json::from_slice(&status.body).expect("json");
    assert_eq!(s["backlog"].as_u64(), Some(accepted as u64), "{s}");
    assert_eq!(
        log_text().matches("queue disk nearly full").count(),
        1,
        "logged once, not per event: {}",
        log_text()
    );
}
