//! The SSRF guard (D9) end to end: with loopback closed (the production default), every spelling
//! of a private address, a DNS name that resolves to one, and redirects into private ranges are
//! refused with 400 upstream_error, and the private listeners they target never see a connection.

use std::net::{IpAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harness::origin::{Origin, Reply};

use super::fixture::{json, metric, Backend, Fixture};
use super::images;
use super::proxy::p;

/// A bare listener that only counts connections (the "internal service" an attacker aims at).
fn counting_listener(addr: &str) -> Option<(u16, Arc<AtomicUsize>)> {
    let l = TcpListener::bind(addr).ok()?;
    let port = l.local_addr().ok()?.port();
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            if conn.is_ok() {
                c.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    Some((port, n))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_targets_are_never_reached() {
    let jpeg = images::jpeg(64, 64);
    let private = Origin::start(move |_| Reply::ok(jpeg.clone()));
    let port = private.addr().port();
    let v6 = counting_listener("[::1]:0");
    let f = Fixture::start(Backend::Directory, |c, _, _| {
        c.proxy
            .resolve
            .insert("rebind.example".into(), vec![IpAddr::from([127, 0, 0, 1])]);
        c.proxy.resolve.insert(
            "mixed.example".into(),
            vec![IpAddr::from([93, 184, 216, 34]), IpAddr::from([127, 0, 0, 1])],
        );
    })
    .await;
    assert!(!f.config.proxy.allow_loopback, "the production default");
    let mut targets: Vec<String> = [
        "http://127.0.0.1:{P}/a.jpg",
        "http://127.1:{P}/a.jpg",
        "http://localhost:{P}/a.jpg",
        "http://LOCALHOST.:{P}/a.jpg",
        "http://2130706433:{P}/a.jpg",
        "http://0x7f.1:{P}/a.jpg",
        "http://0x7f000001:{P}/a.jpg",
        "http://0177.0.0.1:{P}/a.jpg",
        "http://017700000001:{P}/a.jpg",
        "http://0.0.0.0:{P}/a.jpg",
        "http://0:{P}/a.jpg",
        "http://[::ffff:127.0.0.1]:{P}/a.jpg",
        "http://[::ffff:7f00:1]:{P}/a.jpg",
        "http://[::127.0.0.1]:{P}/a.jpg",
        "http://rebind.example:{P}/a.jpg",
        "http://mixed.example:{P}/a.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00::1]:{P}/a.jpg",
        "https://127.0.0.1:{P}/a.jpg",
    ]
    .iter()
    .map(|t| t.replace("{P}", &port.to_string()))
    .collect();
    if let Some((p6, _)) = &v6 {
        targets.push(format!("http://[::1]:{p6}/a.jpg"));
        targets.push(format!("http://[0:0:0:0:0:0:0:1]:{p6}/a.jpg"));
    }
    for t in &targets {
        let r = f.get(&p(t, "width=10")).await;
        assert_eq!(
            (r.status, json(&r)["error"]["name"].as_str()),
            (400, Some("upstream_error")),
            "{t}"
        );
        assert_eq!(r.header("cache-control"), Some("no-store"), "{t}");
    }
    // Legacy URLs go through the same guard once followed.
    let r = f.get(&format!("/0x0/http://127.0.0.1:{port}/a.jpg")).await;
    let loc = r.header("location").expect("legacy redirect").to_string();
    assert_eq!(f.get(&loc).await.status, 400);

    assert_eq!(private.hits(), 0, "the private origin never saw a request");
    if let Some((_, n)) = &v6 {
        assert_eq!(n.load(Ordering::SeqCst), 0, "nothing connected to [::1]");
    }
    assert!(metric("imagehost_fetches_total{outcome=\"blocked\"}") >= targets.len() as f64 - 1.0);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_redirect_hop_is_checked_again() {
    // Loopback opened for the test origin only; private ranges stay closed.
    let inner = counting_listener("127.0.0.1:0").map(|(p, _)| p).unwrap_or(1);
    let hops = Origin::start(move |req| match req.path.as_str() {
        "/to-metadata" => Reply::status(302).header("Location", "http://169.254.169.254/latest/meta-data/"),
        "/to-private" => Reply::status(301).header("Location", &format!("http://10.11.12.13:{inner}/a.jpg")),
        "/to-named" => Reply::status(307).header("Location", "http://private.example/a.jpg"),
        "/to-mapped" => Reply::status(308).header("Location", "http://[::ffff:a9fe:a9fe]/x"),
        "/to-file" => Reply::status(302).header("Location", "file:///etc/passwd"),
        _ => Reply::status(404),
    });
    let f = Fixture::start(Backend::Directory, |c, _, _| {
        c.proxy.allow_loopback = true;
        c.proxy.connect_timeout = Duration::from_secs(1);
        c.proxy
            .resolve
            .insert("private.example".into(), vec![IpAddr::from([192, 168, 1, 1])]);
    })
    .await;
    for hop in [
        "/to-metadata",
        "/to-private",
        "/to-named",
        "/to-mapped",
        "/to-file",
    ] {
        let r = f.get(&p(&format!("http://{}{hop}", hops.addr()), "")).await;
        assert_eq!(
            (r.status, json(&r)["error"]["name"].as_str()),
            (400, Some("upstream_error")),
            "{hop}"
        );
    }
    assert_eq!(
        metric("imagehost_fetches_total{outcome=\"blocked\"}"),
        5.0,
        "refused by the guard, not by a timeout"
    );
    f.stop().await;
}
