//! Balancing over imagehost nodes: consistent hashing, health checks with rise/fall, failover on
//! connect errors and on 502/503, and a dead node's return.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::faults::{Fault, FaultProxy};
use harness::origin::{Origin, Reply, Request};

use crate::support::{count, origin, Edge};

fn tagged(name: &'static str, hits: Arc<AtomicUsize>) -> impl Fn(&Request) -> Reply + Send + Sync + 'static {
    move |req: &Request| {
        if req.path == "/healthcheck" {
            return Reply::ok("ok");
        }
        hits.fetch_add(1, Ordering::SeqCst);
        Reply::ok(name).header("Cache-Control", "no-store")
    }
}

#[test]
fn one_url_always_goes_to_one_node() {
    let (a, _) = origin(|_| Reply::ok("a").header("Cache-Control", "no-store"));
    let (b, _) = origin(|_| Reply::ok("b").header("Cache-Control", "no-store"));
    let edge = Edge::start(&[a.addr(), b.addr()], &[]);
    let mut seen: HashMap<String, String> = HashMap::new();
    for round in 0..3 {
        for i in 0..24 {
            let path = format!("/DQm{i}/x.jpg");
            let node = edge.get(&path).text();
            if round == 0 {
                seen.insert(path, node);
            } else {
                assert_eq!(seen[&path], node, "{path} moved");
            }
        }
    }
    let on_a = seen.values().filter(|v| *v == "a").count();
    assert!(on_a > 0 && on_a < 24, "both nodes get a share: {on_a}/24 on a");
}

#[test]
fn a_node_answering_503_is_skipped_for_gets() {
    let (a, a_hits) = origin(|_| Reply::status(503));
    let (b, _) = origin(|_| Reply::ok("b").header("Cache-Control", "no-store"));
    let edge = Edge::start(&[a.addr(), b.addr()], &[]);
    for i in 0..20 {
        let r = edge.get(&format!("/img/{i}"));
        assert_eq!((r.status, r.text().as_str()), (200, "b"), "request {i}");
    }
    assert!(
        count(&a_hits) > 0,
        "some requests hashed to the failing node first"
    );
}

#[test]
fn killing_a_node_under_load_loses_no_request_and_it_returns() {
    let (a_hits, b_hits) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let a = Origin::start(tagged("a", a_hits.clone()));
    let b = Origin::start(tagged("b", b_hits.clone()));
    let a_addr = a.addr();
    let edge = Edge::start(
        &[a_addr, b.addr()],
        &[
            "upstreams.fall=2".into(),
            "upstreams.rise=2".into(),
            "upstreams.connect_timeout=500ms".into(),
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let addr = edge.addr;
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    i += 1;
                    match harness::http::get(addr, &format!("/load/{t}/{i}")) {
                        Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::SeqCst),
                        other => {
                            eprintln!("failed: {other:?}");
                            failed.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    assert!(count(&a_hits) > 0, "node a served before it died");
    let killed = Instant::now();
    drop(a);
    let down = harness::wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        (edge.node_up(a_addr) == Some(false)).then(Instant::now)
    })
    .expect("node a is marked down");
    let took = down - killed;
    // fall = 2 checks at 200 ms, plus a check's own timeout and scheduling slack.
    assert!(took < Duration::from_secs(3), "marked down after {took:?}");
    std::thread::sleep(Duration::from_millis(500));

    let a_hits2 = Arc::new(AtomicUsize::new(0));
    let a = Origin::start_at(a_addr, tagged("a", a_hits2.clone()));
    harness::wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        (edge.node_up(a_addr) == Some(true)).then_some(())
    })
    .expect("node a is marked up again");
    harness::wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        (count(&a_hits2) > 5).then_some(())
    })
    .expect("traffic returns to node a");
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("client");
    }
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "no client request failed ({} ok)",
        ok.load(Ordering::SeqCst)
    );
    assert!(ok.load(Ordering::SeqCst) > 100);
    assert!(count(&b_hits) > 0);
    drop(a);
}

/// Two tagged nodes, `a` reached through a fault proxy (healthy until a test says otherwise).
struct Faulty {
    a: Origin,
    b: Origin,
    a_hits: Arc<AtomicUsize>,
    b_hits: Arc<AtomicUsize>,
    proxy: FaultProxy,
}

fn faulty_and_healthy() -> Faulty {
    let (a_hits, b_hits) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let a = Origin::start(tagged("a", a_hits.clone()));
    let b = Origin::start(tagged("b", b_hits.clone()));
    let proxy = FaultProxy::start(a.addr());
    Faulty {
        a,
        b,
        a_hits,
        b_hits,
        proxy,
    }
}

/// A node that turns slow (every answer 600 ms late, its health checks still passing) is
/// ejected after `eject_after` slow answers in a row and its URLs go to the other node; counted,
/// not timed: after the ejection no request reaches it.
#[test]
fn a_slowed_node_is_ejected_and_its_traffic_moves() {
    let Faulty {
        a: _a,
        b,
        a_hits,
        b_hits,
        proxy: slow,
    } = faulty_and_healthy();
    let edge = Edge::start(
        &[slow.addr(), b.addr()],
        &[
            "upstreams.slow_after=300ms".into(),
            "upstreams.eject_after=2".into(),
            "upstreams.eject_time=60s".into(),
            "upstreams.health_timeout=2s".into(),
        ],
    );
    let paths: Vec<String> = (0..30).map(|i| format!("/DQm{i}/x.jpg")).collect();
    let on_a = paths.iter().filter(|p| edge.get(p).text() == "a").count();
    assert!(on_a > 2, "a has its share first: {on_a}/30");

    slow.set(Fault::Latency(Duration::from_millis(600)));
    let before = count(&a_hits);
    for p in &paths {
        let r = edge.get(p);
        assert_eq!(r.status, 200, "{p}: every request answered");
    }
    let slow_answers = count(&a_hits) - before;
    assert_eq!(
        slow_answers, 2,
        "only the two slow answers that ejected it reached a"
    );
    assert!(count(&b_hits) >= 30 + 30 - on_a - 2);
    // Ejected, not down: the health checks still pass, and the metrics say which it is.
    let metrics = harness::http::get(edge.admin, "/metrics")
        .expect("metrics")
        .text();
    let ejected = format!("edge_upstream_ejected{{backend=\"{}\"}} 1", slow.addr());
    assert!(metrics.contains(&ejected), "{ejected} in:\n{metrics}");
}

/// A node that stalls (takes requests, never answers; its health not yet checked again): a read
/// of an upload waits on it only `serve_timeout`, then goes to the other node and is answered;
/// after `eject_after` such stalls the node is ejected and no request waits on it any more.
#[test]
fn a_stalled_node_holds_an_upload_read_only_for_the_serve_timeout() {
    let Faulty {
        a: _a,
        b,
        a_hits,
        b_hits: _b_hits,
        proxy: stalled,
    } = faulty_and_healthy();
    let edge = Edge::start(
        &[stalled.addr(), b.addr()],
        &[
            "upstreams.serve_timeout=300ms".into(),
            "upstreams.eject_after=3".into(),
            "upstreams.eject_time=60s".into(),
            "upstreams.health_interval=60s".into(),
            "upstreams.read_timeout=120s".into(),
        ],
    );
    stalled.set(Fault::Stall);
    for i in 0..30 {
        // A client's patience, far above serve_timeout and far below read_timeout.
        let r = harness::http::request_within(
            edge.addr,
            "GET",
            &format!("/DQm{i}/x.jpg"),
            &[],
            &[],
            Duration::from_secs(15),
        )
        .unwrap_or_else(|e| panic!("request {i} unanswered: {e}"));
        assert_eq!((r.status, r.text().as_str()), (200, "b"), "request {i}");
    }
    let waited = count(&a_hits);
    assert!(
        (1..=3).contains(&waited),
        "{waited} requests waited on the stalled node (ejected after 3)"
    );
}

/// A render's time belongs to the remote origin and the image a client picked: slow `/p/`
/// answers never eject a node (a client could otherwise eject nodes at will with a slow origin
/// of its own); only reads answered from the stores are judged by their latency.
#[test]
fn slow_renders_chosen_by_a_client_never_eject_a_node() {
    let Faulty {
        a: _a,
        b,
        a_hits: _a_hits,
        b_hits: _b_hits,
        proxy: slow,
    } = faulty_and_healthy();
    let edge = Edge::start(
        &[slow.addr(), b.addr()],
        &[
            "upstreams.slow_after=300ms".into(),
            "upstreams.eject_after=2".into(),
            "upstreams.health_timeout=2s".into(),
        ],
    );
    slow.set(Fault::Latency(Duration::from_millis(600)));
    let paths: Vec<String> = (0..16).map(|i| format!("/p/slow{i}?width=100")).collect();
    let on_a = paths.iter().filter(|p| edge.get(p).text() == "a").count();
    assert!(on_a > 2, "a has its share of the renders: {on_a}/16");
    let again = paths.iter().filter(|p| edge.get(p).text() == "a").count();
    assert_eq!(again, on_a, "the same renders still go to a: never ejected");
    let metrics = harness::http::get(edge.admin, "/metrics")
        .expect("metrics")
        .text();
    assert!(
        !metrics.contains("edge_upstream_ejections_total{"),
        "no ejection:\n{metrics}"
    );
}
