//! One takedown leaves nothing, through the whole cluster: three edges (one of them down during
//! the takedown), two imagehosts, two Garage fileservers, blobsync. Before it, every URL form of
//! an uploaded image is cached on every edge (memory and disk): the upload's URL, other filenames,
//! the bare key, a percent-encoded spelling, `/p/` renderings at several sizes and formats, a
//! double-wrapped `/p/`, and the legacy `/WxH/` redirect; the renderings' variants sit in the
//! proxy bucket of both fileservers and in the imagehosts' hot caches. After the one DELETE:
//! no form yields image bytes on any edge, also after an edge restarts and when the edge that
//! was down returns with the image in its disk tier; no fileserver holds the original or a
//! variant; no hot cache holds a file of it; a re-upload of the same bytes is refused with 451.

use std::net::SocketAddr;
use std::time::Duration;

use crate::setup::{png, Cluster, Uploaded};

fn b58(s: &str) -> String {
    bs58::encode(s.as_bytes()).into_string()
}

fn get(edge: SocketAddr, path: &str) -> harness::http::Response {
    harness::http::get(edge, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Whether `path` on `edge` answers with image bytes (following one legacy redirect).
fn yields_image(edge: SocketAddr, path: &str) -> (bool, String) {
    let mut r = get(edge, path);
    if r.status == 301 || r.status == 302 {
        let to = r.header("location").unwrap_or("/").to_string();
        r = get(edge, &to);
    }
    let image = r.status == 200 && r.header("content-type").is_some_and(|t| t.starts_with("image/"));
    (image, format!("{} {:?}", r.status, r.header("x-cache")))
}

fn cached_everywhere(edge: SocketAddr, path: &str) {
    let mut last = String::new();
    for _ in 0..50 {
        let r = get(edge, path);
        assert!(r.status < 400, "{path}: {}", r.status);
        if r.header("x-cache") == Some("HIT") || r.status == 301 {
            return;
        }
        last = format!("{} {:?}", r.status, r.header("x-cache"));
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{path} never cached on {edge}: {last}");
}

/// Takes `key` down and returns blobsync's report of it (a worker's, when one had the item in
/// hand: the request answers with it rather than `queued`).
fn takedown(c: &Cluster, key: &str) -> serde_json::Value {
    let r = harness::http::request(
        c.blobsync.addr,
        "DELETE",
        &format!("/objects/uploads/{key}"),
        &[("Authorization", "Bearer cluster-test-token")],
        &[],
    )
    .expect("takedown");
    assert_eq!(r.status, 202, "{}", r.text());
    serde_json::from_slice(&r.body).expect("json")
}

#[test]
fn one_takedown_leaves_no_url_form_fileserver_copy_or_cached_derivative_anywhere() {
    let mut c = Cluster::start(3);
    let image = png(400, 300, 9);
    let Uploaded { url, path, key } = c.upload_ok(&image, "dmca.png");
    harness::wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        (c.stored(0, &key).is_some() && c.stored(1, &key).is_some()).then_some(())
    })
    .expect("replicated");
    let own = format!("http://{}/{key}/dmca.png", c.edge());
    let wrapped = format!("http://{}/p/{}?width=999", c.edge(), b58(&own));
    let forms = [
        path.clone(),
        format!("/{key}/another-name.jpg"),
        format!("/{key}"),
        format!("/%44{}/dmca.png", &key[1..]),
        format!("/p/{}?width=100", b58(&own)),
        format!("/p/{}?width=200&format=webp", b58(&own)),
        format!("/p/{}?mode=fit&width=150", b58(&url)),
        format!("/p/{}?width=120", b58(&wrapped)),
        format!("/320x0/{own}"),
    ];
    for e in &c.edges {
        for f in &forms {
            cached_everywhere(e.addr, f);
        }
    }
    // The renderings' variants reach the proxy bucket of both fileservers in the background.
    harness::wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        (0..2)
            .all(|i| c.keys_with(i, "proxy", &format!("{key}_")).len() >= 3)
            .then_some(())
    })
    .expect("variants stored");
    let hot = |i: usize| -> Vec<String> {
        std::fs::read_dir(c.dir.path().join(format!("imagehost-{i}-cache")))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&key))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(!hot(0).is_empty() || !hot(1).is_empty(), "in a hot cache");

    // The third edge is down during the takedown, its disk tier full of the image.
    c.edges[2].kill();
    let j = takedown(&c, &key);
    assert_eq!(j["deleted_everywhere"], true, "{j}");
    // A count, not an error. How many this call deleted itself varies: blobsync's workers also
    // delete a variant whose queued copy comes up after its source was taken down. That none is
    // left anywhere is checked below.
    assert!(j["variants_deleted"].is_u64(), "{j}");
    for ih in &c.imagehosts {
        let admin = j["imagehosts"].as_object().expect("imagehosts");
        assert!(admin.values().all(|v| v == 200), "{} told: {j}", ih.name);
    }
    for e in &c.edges[..2] {
        assert_eq!(j["edges"][e.addr.to_string()], 200, "{j}");
    }
    assert!(
        j["edges"][c.edges[2].addr.to_string()].is_string(),
        "the down edge's failure: {j}"
    );

    let nothing_anywhere = |c: &Cluster, edges: &[usize], when: &str| {
        for &i in edges {
            for f in &forms {
                let (image, how) = yields_image(c.edges[i].addr, f);
                assert!(!image, "{when}: edge-{i} still yields {f}: {how}");
            }
        }
    };
    nothing_anywhere(&c, &[0, 1], "right after the takedown");
    for i in 0..2 {
        assert!(c.stored(i, &key).is_none(), "fs{i} original");
        assert_eq!(
            c.keys_with(i, "proxy", &key),
            Vec::<String>::new(),
            "fs{i} variants"
        );
        assert_eq!(hot(i), Vec::<String>::new(), "imagehost-{i} hot cache");
    }

    // An edge restarted keeps it gone (bans on disk). The one that was down returns with the
    // image in its disk tier while blobsync is down too (no list to pull, no ban retried): it
    // reads nothing from disk until it has the list, and the imagehosts refuse its misses.
    c.edges[0].kill();
    c.edges[0].restart();
    nothing_anywhere(&c, &[0, 1], "after edge-0 restarted");
    c.blobsync.kill();
    c.edges[2].restart();
    nothing_anywhere(&c, &[2], "edge-2 back, blobsync down");
    c.blobsync.restart();
    nothing_anywhere(&c, &[0, 1, 2], "after restarts");

    // The same bytes again: refused everywhere.
    for e in &c.edges {
        let (status, json) = c.upload(e.addr, &image, "again.png");
        assert_eq!(status, 451, "{json}");
    }
    // blobsync keeps the ban owed to the edge that was down until it took it, then nothing is left.
    harness::wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        let s = harness::http::get(c.blobsync.addr, "/status").ok()?;
        let v: serde_json::Value = serde_json::from_slice(&s.body).ok()?;
        (v["backlog"] == 0).then_some(())
    })
    .expect("the takedown completed everywhere");
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        c.stored(0, &key).is_none() && c.stored(1, &key).is_none(),
        "never resurrected"
    );
    nothing_anywhere(&c, &[0, 1, 2], "at the end");
}
