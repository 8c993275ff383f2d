//! blobsync in-process over real fileservers (Garage pairs, and directories where a test must
//! tamper with stored bytes): event-driven copies, outage repair, takedowns, listings that never
//! delete, and scrub repair.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use blobstore::{body_from_bytes, collect_body, BlobStore, FileserverConfig, Key, ListRequest, PutOptions};
use blobsync::Config;
use harness::content::upload;
use harness::http::Response;
use harness::Garage;
use service::Shutdown;

fn metric(name: &str) -> f64 {
    service::admin::render_metrics()
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|v| v.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

fn s3(g: &Garage) -> FileserverConfig {
    g.fileserver_failing_fast(Duration::from_millis(300))
}

struct Fixture {
    addr: SocketAddr,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<Result<(), blobsync::Error>>,
    /// `stores[server]` for the uploads bucket, opened independently of blobsync.
    stores: Vec<Arc<dyn BlobStore>>,
    garages: Vec<Garage>,
    _dir: tempfile::TempDir,
}

async fn start(
    fileservers: Vec<FileserverConfig>,
    garages: Vec<Garage>,
    dir: tempfile::TempDir,
    tweak: impl FnOnce(&mut Config),
) -> Fixture {
    let mut config = Config {
        fileservers,
        ..Config::default()
    };
    config.queue.path = dir.path().join("queue");
    config.copy.initial_backoff = Duration::from_millis(100);
    config.copy.max_backoff = Duration::from_millis(500);
    config.anti_entropy.interval = Duration::ZERO;
    config.scrub.interval = Duration::ZERO;
    tweak(&mut config);
    let stores = config
        .fileservers
        .iter()
        .map(|fs| blobstore::open_bucket(fs, "uploads").expect("open"))
        .collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = Shutdown::new();
    let task = tokio::spawn(blobsync::run(config, listener, shutdown.clone()));
    let f = Fixture {
        addr,
        shutdown,
        task,
        stores,
        garages,
        _dir: dir,
    };
    f.wait(Duration::from_secs(10), || async {
        f.request("GET", "/status", b"").await.status == 200
    })
    .await;
    f
}

async fn garage_pair(tweak: impl FnOnce(&mut Config)) -> Fixture {
    let garages = Garage::start_many(2, &["uploads", "proxy"]);
    let fs = garages.iter().map(s3).collect();
    start(fs, garages, harness::tempdir(), tweak).await
}

impl Fixture {
    async fn request(&self, method: &str, path: &str, body: &[u8]) -> Response {
        let (addr, method, path, body) = (self.addr, method.to_string(), path.to_string(), body.to_vec());
        tokio::task::spawn_blocking(move || {
            harness::http::request(addr, &method, &path, &[], &body).expect("request")
        })
        .await
        .expect("join")
    }

    async fn event(&self, bucket: &str, key: &str) -> Response {
        let body = serde_json::json!({
            "EventName": "s3:ObjectCreated:Put",
            "Key": format!("{bucket}/{key}"),
            "Records": [{
                "eventVersion": "2.0", "eventSource": "minio:s3", "eventName": "s3:ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 1}},
            }],
        });
        self.request("POST", "/events", body.to_string().as_bytes()).await
    }

    async fn put(&self, i: usize, key: &str, data: &[u8]) {
        self.stores[i]
            .put(
                &Key::new(key).expect("key"),
                body_from_bytes(data.to_vec()),
                &PutOptions::default(),
            )
            .await
            .expect("put directly on a fileserver");
    }

    async fn read(&self, i: usize, key: &str) -> Option<Vec<u8>> {
        let got = self.stores[i]
            .get(&Key::new(key).expect("key"), None)
            .await
            .ok()?;
        collect_body(got.body, 64 << 20).await.ok().map(|b| b.to_vec())
    }

    async fn keys(&self, i: usize) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut req = ListRequest::default();
        loop {
            let page = self.stores[i].list(&req).await.expect("list");
            out.extend(page.entries.into_iter().map(|e| e.key.to_string()));
            match page.next {
                Some(n) => req.start_after = Some(n),
                None => return out,
            }
        }
    }

    async fn status(&self) -> serde_json::Value {
        serde_json::from_slice(&self.request("GET", "/status", b"").await.body).expect("status json")
    }

    async fn wait<F, Fut>(&self, limit: Duration, mut cond: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        while !cond().await {
            assert!(start.elapsed() < limit, "condition not met within {limit:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("stops")
            .expect("join")
            .expect("ok");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_driven_copy_lands_within_seconds() {
    let f = garage_pair(|_| {}).await;
    let (key, data) = upload(1, 200_000);
    f.put(0, &key, &data).await;
    let sent = Instant::now();
    let r = f.event("uploads", &key).await;
    assert_eq!(
        (r.status, r.text()),
        (200, r#"{"ignored":0,"queued":1}"#.to_string())
    );
    f.wait(Duration::from_secs(10), || async {
        f.read(1, &key).await.as_deref() == Some(&data[..])
    })
    .await;
    eprintln!("event → verified copy on fs1 in {:?}", sent.elapsed());
    // One larger than what a copy reads whole is streamed to the target as it is read.
    let (large, large_data) = upload(2, blobsync::copy::WHOLE_MAX as usize + 100_000);
    f.put(0, &large, &large_data).await;
    assert_eq!(f.event("uploads", &large).await.status, 200);
    f.wait(Duration::from_secs(10), || async {
        f.read(1, &large).await.as_deref() == Some(&large_data[..])
    })
    .await;
    let s = f.status().await;
    assert_eq!(s["backlog"], 0);
    // Unmirrored buckets and delete events change nothing.
    let r = f.event("elsewhere", &key).await;
    assert_eq!(r.text(), r#"{"ignored":1,"queued":0}"#);
    let r = f.request("POST", "/events", b"not json").await;
    assert_eq!(r.status, 400);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fileserver_down_for_a_while_is_repaired_when_it_returns() {
    let mut f = garage_pair(|_| {}).await;
    f.garages[1].stop();
    let objects: Vec<(String, Vec<u8>)> = (0..20).map(|i| upload(100 + i, 5_000 + i as usize)).collect();
    for (k, d) in &objects {
        f.put(0, k, d).await;
        assert_eq!(f.event("uploads", k).await.status, 200);
    }
    // The backlog is exact and nothing is dropped while fs1 is away.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = f.status().await;
    assert_eq!(s["backlog"], 20, "{s}");
    assert_eq!(s["fileservers"]["fs1/uploads"], "unavailable");
    assert!(s["oldest_pending_seconds"].as_u64().is_some());

    f.garages[1].restart();
    let want: BTreeSet<String> = objects.iter().map(|(k, _)| k.clone()).collect();
    f.wait(Duration::from_secs(30), || async { f.keys(1).await == want })
        .await;
    for (k, d) in &objects {
        assert_eq!(f.read(1, k).await.as_deref(), Some(&d[..]), "{k} byte-identical");
    }
    f.wait(Duration::from_secs(5), || async {
        f.status().await["backlog"] == 0
    })
    .await;
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takedown_made_while_a_server_is_down_is_applied_later_and_never_undone() {
    let mut f = garage_pair(|_| {}).await;
    let (key, data) = upload(7, 3_000);
    f.put(0, &key, &data).await;
    f.put(1, &key, &data).await;
    f.garages[1].stop();

    let r = f.request("DELETE", &format!("/objects/uploads/{key}"), b"").await;
    assert_eq!(r.status, 202, "{}", r.text());
    f.wait(Duration::from_secs(5), || async {
        f.read(0, &key).await.is_none()
    })
    .await;

    f.garages[1].restart();
    f.wait(Duration::from_secs(15), || async {
        f.read(1, &key).await.is_none()
    })
    .await;

    // Someone writes it back behind blobsync's back, and anti-entropy or an event sees it:
    // the tombstone wins, the object is removed again and never copied.
    f.put(1, &key, &data).await;
    assert_eq!(f.event("uploads", &key).await.status, 200);
    assert_eq!(f.request("POST", "/sync", b"").await.status, 202);
    f.wait(Duration::from_secs(15), || async {
        f.read(1, &key).await.is_none()
    })
    .await;
    assert!(f.read(0, &key).await.is_none(), "never resurrected on fs0");
    assert_eq!(f.status().await["tombstones"], 1);
    f.stop().await;
}

/// An edge that is down during a takedown still gets its ban once it is back (it would serve the
/// image from its disk tier otherwise); `?wait=false` answers once the takedown is durable and
/// the workers carry it out the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takedown_bans_an_edge_that_was_down_once_it_returns() {
    let dir = harness::tempdir();
    let fs = vec![
        FileserverConfig::directory("fs0", dir.path().join("fs0")),
        FileserverConfig::directory("fs1", dir.path().join("fs1")),
    ];
    let edge = SocketAddr::from(([127, 0, 0, 1], harness::free_port()));
    let f = start(fs, Vec::new(), dir, |c| {
        c.takedown.purge_edges = vec![edge.to_string()]
    })
    .await;
    let (key, data) = upload(11, 2_000);
    f.put(0, &key, &data).await;
    f.put(1, &key, &data).await;

    let r = f.request("DELETE", &format!("/objects/uploads/{key}"), b"").await;
    assert_eq!(r.status, 202, "{}", r.text());
    let j: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(j["deleted_everywhere"], true, "{j}");
    assert!(
        j["edges"][edge.to_string()].is_string(),
        "the edge's failure is reported: {j}"
    );
    assert!(f.read(0, &key).await.is_none() && f.read(1, &key).await.is_none());
    assert_eq!(f.status().await["backlog"], 1, "the ban is still owed");

    let bans = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = bans.clone();
    let _edge = harness::origin::Origin::start_at(edge, move |req| {
        seen.lock().expect("lock").push(format!(
            "{} {} tag={}",
            req.method,
            req.path,
            req.header("x-ban-tag").unwrap_or("")
        ));
        harness::origin::Reply::ok("banned")
    });
    f.wait(Duration::from_secs(10), || async {
        f.status().await["backlog"] == 0
    })
    .await;
    assert!(bans.lock().expect("lock").contains(&format!("BAN / tag={key}")));

    let r = f
        .request("DELETE", &format!("/objects/uploads/{key}?wait=maybe"), b"")
        .await;
    assert_eq!(
        (r.status, r.text().contains("wait must be true or false")),
        (400, true)
    );

    let (key2, data2) = upload(12, 2_000);
    f.put(0, &key2, &data2).await;
    f.put(1, &key2, &data2).await;
    let r = f
        .request("DELETE", &format!("/objects/uploads/{key2}?wait=false"), b"")
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let j: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(j["queued"], true, "{j}");
    f.wait(Duration::from_secs(10), || async {
        f.read(0, &key2).await.is_none()
            && f.read(1, &key2).await.is_none()
            && f.status().await["backlog"] == 0
    })
    .await;
    assert!(bans.lock().expect("lock").contains(&format!("BAN / tag={key2}")));
    assert_eq!(f.status().await["tombstones"], 2);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_or_failing_listings_delete_nothing() {
    let garages = Garage::start_many(2, &["uploads", "proxy"]);
    let fs: Vec<FileserverConfig> = garages.iter().map(s3).collect();
    let objects: Vec<(String, Vec<u8>)> = (0..30).map(|i| upload(300 + i, 1_000)).collect();
    {
        let store = blobstore::open_bucket(&fs[0], "uploads").expect("open");
        for (k, d) in &objects {
            store
                .put(
                    &Key::new(k.as_str()).unwrap(),
                    body_from_bytes(d.clone()),
                    &PutOptions::default(),
                )
                .await
                .unwrap();
        }
    }
    let mut garages = garages;
    // fs1 is down at start-up: its listing fails, the pass aborts, and fs0 keeps everything.
    garages[1].stop();
    let mut f = start(fs, garages, harness::tempdir(), |_| {}).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let all: BTreeSet<String> = objects.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(f.keys(0).await, all, "a failed listing deleted nothing");

    // fs1 returns empty: an empty listing means "copy to it", never "delete elsewhere".
    f.garages[1].restart();
    assert_eq!(f.request("POST", "/sync", b"").await.status, 202);
    f.wait(Duration::from_secs(30), || async { f.keys(1).await == all })
        .await;
    assert_eq!(f.keys(0).await, all);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_finds_and_repairs_a_corrupted_copy_on_disk() {
    let dir = harness::tempdir();
    let fs = vec![
        FileserverConfig::directory("fs0", dir.path().join("fs0")),
        FileserverConfig::directory("fs1", dir.path().join("fs1")),
    ];
    let (key, data) = upload(9, 50_000);
    let (other, other_data) = upload(10, 1_000);
    let copy_on_fs1 = dir.path().join("fs1/uploads").join(&key);
    let f = start(fs, Vec::new(), dir, |c| {
        c.scrub.interval = Duration::from_millis(300)
    })
    .await;
    for i in 0..2 {
        f.put(i, &key, &data).await;
        f.put(i, &other, &other_data).await;
    }
    // Bit rot behind the store's back.
    let mut bytes = std::fs::read(&copy_on_fs1).expect("read copy");
    bytes[1234] ^= 0x40;
    std::fs::write(&copy_on_fs1, &bytes).expect("corrupt copy");

    f.wait(Duration::from_secs(20), || async {
        f.read(1, &key).await.as_deref() == Some(&data[..])
    })
    .await;
    assert!(metric("blobsync_scrub_corrupt_total") >= 1.0);
    assert!(metric("blobsync_scrub_repaired_total") >= 1.0);
    assert_eq!(
        f.read(0, &key).await.as_deref(),
        Some(&data[..]),
        "the good copy is untouched"
    );
    assert_eq!(f.read(1, &other).await.as_deref(), Some(&other_data[..]));
    f.stop().await;
}

/// A takedown sent with the wrong bucket (`proxy` for an upload key) still deletes the original:
/// a source key goes from every mirrored bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takedown_naming_the_wrong_bucket_still_deletes_the_original() {
    let dir = harness::tempdir();
    let fs = vec![
        FileserverConfig::directory("fs0", dir.path().join("fs0")),
        FileserverConfig::directory("fs1", dir.path().join("fs1")),
    ];
    let f = start(fs, Vec::new(), dir, |_| {}).await;
    let (key, data) = upload(14, 2_000);
    f.put(0, &key, &data).await;
    f.put(1, &key, &data).await;
    let r = f.request("DELETE", &format!("/objects/proxy/{key}"), b"").await;
    assert_eq!(r.status, 202, "{}", r.text());
    let j: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(j["deleted_everywhere"], true, "{j}");
    assert!(f.read(0, &key).await.is_none() && f.read(1, &key).await.is_none());
    f.stop().await;
}

/// A fileserver that does not answer does not stop the scrub: the pass skips it, checks and
/// repairs the others, finishes, and names the one it could not check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrub_goes_past_a_fileserver_that_is_down_and_names_it() {
    let dir = harness::tempdir();
    let fs: Vec<FileserverConfig> = (0..3)
        .map(|i| FileserverConfig::directory(&format!("fs{i}"), dir.path().join(format!("fs{i}"))))
        .collect();
    let (key, data) = upload(13, 20_000);
    let fs0 = dir.path().join("fs0");
    let copy_on_fs1 = dir.path().join("fs1/uploads").join(&key);
    let f = start(fs, Vec::new(), dir, |c| c.scrub.interval = Duration::ZERO).await;
    for i in 0..3 {
        f.put(i, &key, &data).await;
    }
    let mut bytes = std::fs::read(&copy_on_fs1).expect("read copy");
    bytes[99] ^= 0x01;
    std::fs::write(&copy_on_fs1, &bytes).expect("corrupt copy");
    // fs0, scrubbed first, goes away.
    let away = fs0.with_extension("away");
    std::fs::rename(&fs0, &away).expect("take fs0 away");
    assert_eq!(f.request("POST", "/scrub", b"").await.status, 202);
    f.wait(Duration::from_secs(20), || async {
        let s = f.status().await;
        s["scrub"]["last_complete_ms"].is_u64() && s["scrub"]["running"] == false
    })
    .await;
    let s = f.status().await;
    assert_eq!(s["scrub"]["last_unreachable"], serde_json::json!(["fs0"]), "{s}");
    assert!(
        s["scrub"]["corrupt"].as_u64() >= Some(1),
        "fs1 was still checked: {s}"
    );
    assert_eq!(metric("blobsync_scrub_unreachable_servers"), 1.0);
    f.wait(Duration::from_secs(20), || async {
        f.read(1, &key).await.as_deref() == Some(&data[..])
    })
    .await;
    std::fs::rename(&away, &fs0).expect("fs0 back");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_source_is_never_copied() {
    let dir = harness::tempdir();
    let fs = vec![
        FileserverConfig::directory("fs0", dir.path().join("fs0")),
        FileserverConfig::directory("fs1", dir.path().join("fs1")),
    ];
    // One object read whole before it is written, one streamed to the target as it is read.
    let objects = [
        upload(11, 4_000),
        upload(13, blobsync::copy::WHOLE_MAX as usize + 4_000),
    ];
    let f = start(fs, Vec::new(), dir, |_| {}).await;
    // The only replica does not match its key: it must not spread.
    for (key, data) in &objects {
        let mut wrong = data.clone();
        wrong[data.len() - 1] ^= 1;
        f.put(0, key, &wrong).await;
        assert_eq!(f.event("uploads", key).await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (key, _) in &objects {
        assert!(f.read(1, key).await.is_none(), "a corrupt replica is not copied");
    }
    let s = f.status().await;
    assert_eq!(
        s["backlog"], 2,
        "the items wait (never dropped) for a good replica: {s}"
    );
    // A good copy appears on fs1 (say, re-uploaded): the bad one on fs0 is left for scrub; the
    // queued item now finds fs1 present and fs0 present, so it converges.
    for (key, data) in &objects {
        f.put(1, key, data).await;
    }
    f.wait(Duration::from_secs(10), || async {
        f.status().await["backlog"] == 0
    })
    .await;
    f.stop().await;
}

/// Sizes differ, and the larger copy is the bad one (bytes appended): the smaller copy, marked bad
/// by its size, is still tried as a source, hashes to its key, and replaces the larger one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_larger_copy_is_the_corrupt_one_the_smaller_good_one_wins() {
    let dir = harness::tempdir();
    let fs = vec![
        FileserverConfig::directory("fs0", dir.path().join("fs0")),
        FileserverConfig::directory("fs1", dir.path().join("fs1")),
    ];
    let (key, data) = upload(12, 3_000);
    let f = start(fs, Vec::new(), dir, |_| {}).await;
    let mut longer = data.clone();
    longer.extend_from_slice(b"garbage appended by a broken writer");
    f.put(0, &key, &data).await;
    f.put(1, &key, &longer).await;
    assert_eq!(f.request("POST", "/sync", b"").await.status, 202);
    f.wait(Duration::from_secs(20), || async {
        f.read(1, &key).await.as_deref() == Some(&data[..]) && f.status().await["backlog"] == 0
    })
    .await;
    assert_eq!(
        f.read(0, &key).await.as_deref(),
        Some(&data[..]),
        "the good copy is untouched"
    );
    f.stop().await;
}

/// A takedown tells the imagehosts first (with the token), deletes the original and every
/// `<key>_…` variant in the proxy bucket on every fileserver (more than a listing page), bans the
/// edges by tag, and lists the key in `GET /takedowns`; a variant that turns up later on a
/// fileserver (one that was down) is deleted by the next pass instead of copied; variants cannot
/// be taken down on their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takedown_clears_variants_and_tells_imagehosts_before_edges() {
    let dir = harness::tempdir();
    let fs = vec![
        FileserverConfig::directory("fs0", dir.path().join("fs0")),
        FileserverConfig::directory("fs1", dir.path().join("fs1")),
    ];
    let proxy: Vec<Arc<dyn BlobStore>> = fs
        .iter()
        .map(|f| blobstore::open_bucket(f, "proxy").expect("open proxy"))
        .collect();
    let order = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = order.clone();
    let imagehost = harness::origin::Origin::start(move |req| {
        seen.lock().expect("lock").push(format!(
            "imagehost {} {} auth={} {}",
            req.method,
            req.path,
            req.header("authorization").unwrap_or(""),
            String::from_utf8_lossy(&req.body)
        ));
        harness::origin::Reply::ok("{}")
    });
    let seen = order.clone();
    let edge = harness::origin::Origin::start(move |req| {
        seen.lock().expect("lock").push(format!(
            "edge {} {} tag={}",
            req.method,
            req.path,
            req.header("x-ban-tag").unwrap_or("")
        ));
        harness::origin::Reply::ok("{}")
    });
    let (ih, ed) = (imagehost.addr().to_string(), edge.addr().to_string());
    let f = start(fs, Vec::new(), dir, |c| {
        c.server.token = Some(service::Secret::new("cluster-secret"));
        c.takedown.imagehosts = vec![ih.clone()];
        c.takedown.purge_edges = vec![ed.clone()];
    })
    .await;
    let (key, data) = upload(21, 2_000);
    let (other, other_data) = upload(22, 2_000);
    for (i, bucket) in proxy.iter().enumerate() {
        f.put(i, &key, &data).await;
        f.put(i, &other, &other_data).await;
        // More variants than a listing page holds, so the takedown has to page through them.
        let widths = (1..=blobsync::takedown::VARIANTS_PAGE).map(|w| format!("_{w}x0"));
        for v in [
            "_Cover_WEBP_320".to_string(),
            "_640x0".into(),
            "_Fit_PNG_5".into(),
        ]
        .into_iter()
        .chain(widths)
        {
            let k = Key::new(format!("{key}{v}")).expect("key");
            bucket
                .put(&k, body_from_bytes(vec![1u8; 50]), &PutOptions::default())
                .await
                .expect("put");
        }
        let k = Key::new(format!("{other}_640x0")).expect("key");
        bucket
            .put(&k, body_from_bytes(vec![2u8; 50]), &PutOptions::default())
            .await
            .expect("put");
    }

    let r = f.request("DELETE", &format!("/objects/uploads/{key}"), b"").await;
    assert_eq!(r.status, 401, "the token is required: {}", r.text());
    let auth = [("authorization", "Bearer cluster-secret")];
    let send = |method: &str, path: &str| {
        let (addr, method, path) = (f.addr, method.to_string(), path.to_string());
        tokio::task::spawn_blocking(move || {
            harness::http::request(addr, &method, &path, &auth, b"").expect("request")
        })
    };
    let r = send("DELETE", &format!("/objects/proxy/{key}_640x0"))
        .await
        .expect("join");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains(&format!("take down `{key}`")), "{}", r.text());

    let r = send("DELETE", &format!("/objects/uploads/{key}"))
        .await
        .expect("join");
    assert_eq!(r.status, 202, "{}", r.text());
    let j: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(
        (
            &j["deleted_everywhere"],
            &j["variants_deleted"],
            &j["imagehosts"][&ih],
            &j["edges"][&ed]
        ),
        (
            &true.into(),
            &(2 * (3 + blobsync::takedown::VARIANTS_PAGE)).into(),
            &200.into(),
            &200.into()
        ),
        "{j}"
    );
    let calls = order.lock().expect("lock").clone();
    assert_eq!(
        calls,
        [
            format!("imagehost POST /takedowns auth=Bearer cluster-secret {{\"keys\":[\"{key}\"]}}"),
            format!("edge BAN / tag={key}"),
        ],
        "imagehosts are told before the edges drop their copies"
    );
    for (i, bucket) in proxy.iter().enumerate() {
        let req = ListRequest {
            max_keys: 1000,
            ..ListRequest::default()
        };
        let left: Vec<String> = bucket
            .list(&req)
            .await
            .expect("list")
            .entries
            .into_iter()
            .map(|e| e.key.to_string())
            .collect();
        assert_eq!(
            left,
            [format!("{other}_640x0")],
            "fs{i}: only the other image's variant is left"
        );
        assert!(f.read(i, &key).await.is_none() && f.read(i, &other).await.is_some());
    }

    // The list: everything since 0, then nothing new since the last number.
    let r = send("GET", "/takedowns?since=0").await.expect("join");
    let list: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(list["takedowns"][0]["key"], key.as_str(), "{list}");
    let last = list["last"].as_u64().expect("last");
    let r = send("GET", &format!("/takedowns?since={last}"))
        .await
        .expect("join");
    let list: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(
        (list["takedowns"].as_array().map(Vec::len), list["last"].as_u64()),
        (Some(0), Some(last))
    );
    assert_eq!(f.request("GET", "/takedowns", b"").await.status, 401);

    // A fileserver that was away comes back with a variant: the next pass deletes it everywhere.
    let stale = Key::new(format!("{key}_Cover_Match_100_100")).expect("key");
    proxy[1]
        .put(&stale, body_from_bytes(vec![3u8; 50]), &PutOptions::default())
        .await
        .expect("put");
    assert_eq!(send("POST", "/sync").await.expect("join").status, 202);
    f.wait(Duration::from_secs(10), || async {
        !proxy[1].exists(&stale).await.expect("exists") && !proxy[0].exists(&stale).await.expect("exists")
    })
    .await;
    f.stop().await;
}
