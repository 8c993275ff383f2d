//! Crash safety: the blobsync binary killed with SIGKILL 20 times during a backfill between two
//! Garage instances loses nothing, resumes from its queue and checkpoint, and finishes with every
//! object on both servers, each hashing to its key.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use blobstore::{body_from_bytes, collect_body, BlobStore, Key, ListRequest, PutOptions};
use harness::process::{kill, spawn_tied, terminate, wait_exit};
use harness::Garage;

const BIN: &str = env!("CARGO_BIN_EXE_blobsync");
const OBJECTS: u64 = 1000;

fn fileserver_toml(g: &Garage) -> String {
    let a = g.access();
    format!(
        "[[fileservers]]\nname = \"{}\"\ns3 = {{ endpoint = \"{}\", access_key_id = \"{}\", secret_access_key = \"{}\", connect_timeout = \"300ms\", max_attempts = 1 }}\n",
        g.name(),
        a.endpoint,
        a.access_key,
        a.secret_key
    )
}

async fn count(store: &dyn BlobStore) -> usize {
    let mut n = 0;
    let mut req = ListRequest::default();
    loop {
        let Ok(page) = store.list(&req).await else {
            return n;
        };
        n += page.entries.len();
        match page.next {
            Some(next) => req.start_after = Some(next),
            None => return n,
        }
    }
}

#[test]
fn twenty_sigkills_during_a_backfill_lose_nothing() {
    let garages = Garage::start_many(2, &["uploads", "proxy"]);
    let dir = harness::tempdir();
    let port = harness::free_port();
    let config = dir.path().join("blobsync.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[queue]\npath = \"{}\"\n[copy]\nworkers = 2\ninitial_backoff = \"100ms\"\nmax_backoff = \"1s\"\n[anti_entropy]\ninterval = \"0s\"\npage_size = 50\n[scrub]\ninterval = \"0s\"\n{}\n{}",
            dir.path().join("queue").display(),
            fileserver_toml(&garages[0]),
            fileserver_toml(&garages[1]),
        ),
    )
    .expect("write config");
    let cfg: blobsync::Config = service::ConfigLoader::new("blobsync")
        .file(Some(config.clone()))
        .load()
        .expect("config parses");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let fs1 = blobstore::open_bucket(&cfg.fileservers[1], "uploads").expect("fs1");
    // Seed through a client with default timeouts and retries (the service's config uses one
    // short attempt so kills are quick), a few PUTs at a time so a loaded CI machine copes.
    let fs0 = blobstore::open_bucket(&garages[0].fileserver(), "uploads").expect("fs0");
    rt.block_on(async {
        use futures::StreamExt;
        let results: Vec<_> = futures::stream::iter(0..OBJECTS)
            .map(|i| {
                let (k, d) = harness::content::upload(i, 8_000);
                let fs0 = fs0.clone();
                async move {
                    fs0.put(&Key::new(k).unwrap(), body_from_bytes(d), &PutOptions::default())
                        .await
                        .map(|_| ())
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        for r in results {
            r.expect("seed fs0");
        }
    });

    let mut counts = Vec::new();
    let mut resumed = 0;
    for round in 0..20 {
        let log = dir.path().join(format!("run-{round}.log"));
        let mut child = spawn_tied(
            Command::new(BIN)
                .args([
                    "--config",
                    config.to_str().unwrap(),
                    "--log-level",
                    "blobsync=info",
                ])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log file")),
        )
        .expect("spawn blobsync");
        std::thread::sleep(Duration::from_millis(rand::random_range(200..600)));
        kill(&mut child); // SIGKILL: no drain, no flush
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("resuming queued work") || text.contains("resuming from its checkpoint") {
            resumed += 1;
        }
        counts.push(rt.block_on(count(fs1.as_ref())));
    }
    eprintln!("objects on fs1 after each SIGKILL: {counts:?}; restarts that resumed saved work: {resumed}");
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1]),
        "nothing is ever lost: {counts:?}"
    );
    assert!(
        resumed >= 1,
        "restarts resume the saved queue or checkpoint instead of starting over"
    );

    // Let it finish.
    let mut child = spawn_tied(
        Command::new(BIN)
            .args(["--config", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .expect("spawn blobsync");
    let start = Instant::now();
    while rt.block_on(count(fs1.as_ref())) < OBJECTS as usize {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "backfill did not finish"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    terminate(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(20)).is_some_and(|s| s.success()));

    // Every copy is whole and hashes to its key.
    rt.block_on(async {
        for i in 0..OBJECTS {
            let (k, d) = harness::content::upload(i, 8_000);
            let got = fs1
                .get(&Key::new(k.as_str()).unwrap(), None)
                .await
                .expect("copied");
            assert_eq!(
                collect_body(got.body, 1 << 20).await.expect("body").as_ref(),
                &d[..],
                "{k}"
            );
        }
    });
}

/// Change events acknowledged a moment before a SIGKILL (before sled's own flush, every 500 ms,
/// and before the intake journal is emptied into it, every 500 ms) are queued again at the next
/// start and copied, with no anti-entropy pass to find them otherwise.
#[test]
fn events_acknowledged_just_before_a_sigkill_are_copied_after_it() {
    const EVENTS: u64 = 40;
    let dir = harness::tempdir();
    let d = dir.path();
    let port = harness::free_port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let start = |log: &std::path::Path| {
        let mut cmd = Command::new(BIN);
        cmd.args(["--set", &format!("server.listen=127.0.0.1:{port}")])
            .args(["--set", &format!("queue.path={}/queue", d.display())])
            .args(["--set", "anti_entropy.interval=\"0s\"", "--set", "scrub.interval=\"0s\""])
            .args(["--set", "copy.initial_backoff=\"100ms\"", "--set", "copy.max_backoff=\"200ms\""])
            .args(["--set", &format!(
                "fileservers=[{{ name = \"a\", directory = {{ path = \"{0}/a\" }} }}, {{ name = \"b\", directory = {{ path = \"{0}/b\" }} }}]",
                d.display()
            )])
            .args(["--log-level", "blobsync=info"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log file"));
        spawn_tied(&mut cmd).expect("spawn blobsync")
    };
    let ready = || {
        harness::wait_until(Duration::from_secs(20), Duration::from_millis(20), || {
            (harness::http_status(addr, "/status") == Some(200)).then_some(())
        })
        .expect("blobsync ready")
    };
    let mut child = start(&d.join("first.log"));
    ready();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = |name: &str| {
        blobstore::open_bucket(
            &blobstore::FileserverConfig::directory(name, d.join(name)),
            "uploads",
        )
        .expect("bucket")
    };
    let a = store("a");
    rt.block_on(async {
        for i in 0..EVENTS {
            let (k, body) = harness::content::upload(i, 2_000);
            a.put(
                &Key::new(k).unwrap(),
                body_from_bytes(body),
                &PutOptions::default(),
            )
            .await
            .expect("seed a");
        }
    });
    // b's disk goes away: every copy fails and waits, so only the queue remembers them.
    std::fs::rename(d.join("b"), d.join("b-gone")).expect("unmount b");
    let records: Vec<_> = (0..EVENTS)
        .map(|i| {
            serde_json::json!({"eventName": "s3:ObjectCreated:Put",
                "s3": {"bucket": {"name": "uploads"}, "object": {"key": harness::content::upload(i, 2_000).0}}})
        })
        .collect();
    let mut conn = harness::http::Conn::new(addr);
    for chunk in records.chunks(4) {
        let body = serde_json::json!({ "Records": chunk }).to_string();
        let r = conn.request("POST", "/events", body.as_bytes()).expect("event");
        assert_eq!(r.status, 200, "acknowledged: {}", r.text());
    }
    kill(&mut child); // SIGKILL at once: no drain, no flush
    std::fs::rename(d.join("b-gone"), d.join("b")).expect("b is back");

    let log = d.join("second.log");
    let mut child = start(&log);
    ready();
    let b = store("b");
    harness::wait_until(Duration::from_secs(60), Duration::from_millis(50), || {
        let held = rt.block_on(count(b.as_ref()));
        (held == EVENTS as usize).then_some(())
    })
    .expect("every acknowledged event's object copied to b");
    rt.block_on(async {
        for i in 0..EVENTS {
            let (k, body) = harness::content::upload(i, 2_000);
            let got = b.get(&Key::new(k.as_str()).unwrap(), None).await.expect("copied");
            assert_eq!(
                collect_body(got.body, 1 << 20).await.expect("body").as_ref(),
                &body[..]
            );
        }
    });
    terminate(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(20)).is_some_and(|s| s.success()));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("queued again"),
        "the events came back from the intake journal:\n{text}"
    );
    let left: Vec<_> = std::fs::read_dir(d.join("queue"))
        .expect("queue dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("intake-"))
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "a clean stop leaves no journal: {left:?}");
}
