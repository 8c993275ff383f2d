//! Warm boot: an edge keeps a hot list of what it serves (`/hot.json`), and a new edge given it
//! as a peer preloads that set through its normal path before clients ask, so their first
//! requests are hits; with no peer answering it simply serves.

use std::sync::atomic::Ordering;
use std::time::Duration;

use harness::origin::Reply;

use crate::support::{body, origin, Edge};

/// Every edge serves the one public name.
const HOST: &[(&str, &str)] = &[("Host", "Images.Hive.Blog")];

/// Every request counted (tests need exact lists, not samples).
fn counted_all() -> Vec<String> {
    vec!["warm.sample_one_in=1".into()]
}

#[test]
fn a_new_edge_preloads_its_peers_hot_set_and_serves_it_as_hits() {
    let (o, fetches) = origin(|req| {
        Reply::ok(body(2_000, req.path.len() as u8)).header("Cache-Control", "public, max-age=3600")
    });
    let a = Edge::start(&[o.addr()], &counted_all());
    // Ten objects asked for ten times each (a mix of fast-path hits and misses), and a tail
    // of one-off objects.
    for round in 0..10 {
        for i in 0..10 {
            let r = a.request("GET", &format!("/DQmHot{i}/photo.jpg?width={}", 100 + i), HOST);
            assert_eq!(r.status, 200);
        }
        a.request("GET", &format!("/DQmTail{round}/x.jpg"), HOST);
    }
    let hot = harness::http::get(a.admin, "/hot.json?limit=10").expect("hot list");
    let listed: serde_json::Value = serde_json::from_slice(&hot.body).expect("json");
    let keys = listed["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 10, "{listed}");
    for k in keys {
        assert!(
            k["url"].as_str().is_some_and(|u| u.starts_with("/DQmHot")),
            "{listed}"
        );
        assert_eq!(k["host"], "images.hive.blog", "{listed}");
        assert_eq!(k["count"], 10, "{listed}");
    }

    let mut extra = counted_all();
    extra.push(format!("warm.peers=[\"http://{}\"]", a.admin));
    extra.push("warm.keys=10".into());
    extra.push("warm.rate=200".into());
    let b = Edge::start(&[o.addr()], &extra);
    let done = harness::wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        let w = &b.stats()["warm"];
        (w["phase"] == "done").then(|| w.clone())
    })
    .unwrap_or_else(|| panic!("preload ends: {}\n{}", b.stats()["warm"], b.log()));
    assert_eq!(
        (
            done["listed"].as_u64(),
            done["fetched"].as_u64(),
            done["failed"].as_u64()
        ),
        (Some(10), Some(10), Some(0)),
        "{done}"
    );
    assert_eq!(done["peer"], format!("http://{}", a.admin));
    let before = fetches.load(Ordering::SeqCst);
    for i in 0..10 {
        let r = b.request("GET", &format!("/DQmHot{i}/photo.jpg?width={}", 100 + i), HOST);
        assert_eq!((r.status, r.header("x-cache")), (200, Some("HIT")), "object {i}");
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        before,
        "the origin saw none of them"
    );
    let m = harness::http::get(b.admin, "/metrics").expect("metrics").text();
    assert!(
        m.contains("edge_warm_requests_total{outcome=\"fetched\"} 10"),
        "{m}"
    );
}

#[test]
fn with_no_peer_answering_the_edge_serves_and_says_so() {
    let (o, _) = origin(|_| Reply::ok("x").header("Cache-Control", "max-age=60"));
    let dead = harness::free_port();
    let b = Edge::start(
        &[o.addr()],
        &[
            format!("warm.peers=[\"http://127.0.0.1:{dead}\"]"),
            "warm.list_timeout=1s".into(),
        ],
    );
    assert_eq!(b.get("/a").status, 200);
    let w = harness::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let w = &b.stats()["warm"];
        (w["phase"] == "no_peer").then(|| w.clone())
    });
    assert!(w.is_some(), "{}", b.stats()["warm"]);
    // An edge without peers does not preload at all.
    let c = Edge::start(&[o.addr()], &[]);
    assert_eq!(c.stats()["warm"]["phase"], "off");
    // The list is bounded by what the edge keeps, whatever is asked.
    let r = harness::http::get(c.admin, "/hot.json?limit=99999999").expect("hot");
    assert_eq!(r.status, 200);
}
