//! Per-client shares of cold renders: a client (as the trusted edge names it in
//! `X-Forwarded-For`) that asks for more distinct new sizes than its share gets 429 with
//! Retry-After; another client is unaffected; answers already rendered never count; and the
//! source host's share, when set, bounds every client together.

use harness::origin::{Origin, Reply};

use super::fixture::{json, metric, Backend, Fixture};
use super::images;
use super::proxy::p;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_past_its_share_of_cold_renders_gets_429_and_cached_answers_never_count() {
    let photo = images::jpeg(200, 150);
    let origin = Origin::start(move |_| Reply::ok(photo.clone()));
    let f = Fixture::start(Backend::Directory, |c, _, _| {
        c.proxy.allow_loopback = true;
        c.proxy.renders_per_client = 3;
        c.proxy.renders_per_host = 5;
    })
    .await;
    let url = format!("http://{}/photo.jpg", origin.addr());
    let ask = |width: u32, client: &'static str| {
        let path = p(&url, &format!("width={width}"));
        let f = &f;
        async move { f.request("GET", &path, &[("X-Forwarded-For", client)], b"").await }
    };
    for w in [10, 11, 12] {
        let r = ask(w, "203.0.113.1").await;
        assert_eq!(r.status, 200, "width {w}: {}", r.text());
    }
    let r = ask(13, "203.0.113.1").await;
    assert_eq!(
        (r.status, json(&r)["error"]["name"].as_str()),
        (429, Some("too_many_renders"))
    );
    let wait: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=20).contains(&wait), "one render back every 20 s: {wait}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // What is already rendered is served to the same client whatever its share.
    for w in [10, 11, 12] {
        assert_eq!(ask(w, "203.0.113.1").await.status, 200, "cached width {w}");
    }
    // Another client has its own share; a spoofed hop before the edge's entry changes nothing.
    assert_eq!(ask(14, "203.0.113.2").await.status, 200);
    assert_eq!(ask(15, "6.6.6.6, 203.0.113.1").await.status, 429);
    // The source host's share (5) bounds all clients together.
    assert_eq!(ask(16, "203.0.113.3").await.status, 200);
    let r = ask(17, "203.0.113.4").await;
    assert_eq!(r.status, 429, "the host's share is spent: {}", r.text());
    assert_eq!(metric(r#"imagehost_render_limited_total{by="client"}"#), 2.0);
    assert_eq!(metric(r#"imagehost_render_limited_total{by="host"}"#), 1.0);
    f.stop().await;
}
