//! Upload quotas on a real Redis shared by two imagehost nodes, and account lookups: RPC failover,
//! caching, an RPC outage, and the static accounts file.

use std::collections::BTreeSet;
use std::time::Duration;

use harness::hive::{account, Authority};
use harness::redis::Redis;
use imagehost::auth::signature::public_key_string;
use service::{Secret, Shutdown};

use super::fixture::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_quota_is_exact_and_shared_between_nodes() {
    let redis = Redis::start();
    let url = redis.url();
    let f = Fixture::start(Backend::Directory, |c, _, _| {
        c.redis_url = Some(Secret::new(url.clone()));
        c.upload_limits.max = 2;
    })
    .await;
    let up = |data: &[u8]| format!("/alice/{}", signature(&f.keys.posting, data, false));
    for (i, w) in [(1u32, 200u16), (2, 200), (3, 429)] {
        let img = png(i, i);
        let r = f.upload(&up(&img), "q.png", &img).await;
        assert_eq!(r.status, w, "upload {i}: {}", r.text());
        if w == 429 {
            assert_eq!(r.text(), r#"{"error":{"name":"qouta_exceeded"}}"#);
        }
    }
    // A second node on the same Redis sees the same count.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr2 = listener.local_addr().expect("addr");
    let shutdown2 = Shutdown::new();
    let node2 = tokio::spawn(imagehost::run(f.config.clone(), listener, shutdown2.clone()));
    let img = png(4, 4);
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let body = multipart("file", Some("n2.png"), &img);
    let path = up(&img);
    let r = tokio::task::spawn_blocking(move || {
        harness::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            harness::http_status(addr2, "/")
        });
        harness::http::request(addr2, "POST", &path, &[("Content-Type", &ct)], &body).expect("request")
    })
    .await
    .expect("join");
    assert_eq!(r.status, 429, "the limit is cluster-wide");

    // OH-master's format: a trimmed sorted set of microsecond timestamps with an expiry.
    let client = redis::Client::open(url.as_str()).expect("client");
    let mut conn = client.get_multiplexed_async_connection().await.expect("connect");
    let members: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg("limit:alice")
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .expect("zrange");
    assert_eq!(members.len(), 2, "trimmed to max");
    assert!(
        members.iter().all(|(_, s)| *s > 1e15),
        "scores are microseconds: {members:?}"
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg("limit:alice")
        .query_async(&mut conn)
        .await
        .expect("pttl");
    assert!(ttl > 0, "the key expires");

    // Other accounts are unaffected.
    let gif = hex::decode(VECTOR_GIF).expect("vector");
    assert_eq!(
        f.upload(&format!("/imagehoster-test/{VECTOR_SIG}"), "v.gif", &gif)
            .await
            .status,
        200
    );
    shutdown2.trigger();
    let _ = node2.await;
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_failover_and_cache() {
    let dead = format!("http://127.0.0.1:{}", harness::free_port());
    let f = Fixture::start(Backend::Directory, |c, _, _| {
        c.accounts.rpc_nodes.insert(0, dead.clone());
    })
    .await;
    for i in 1..=3 {
        let img = png(i, 2);
        let r = f
            .upload(
                &format!("/alice/{}", signature(&f.keys.posting, &img, false)),
                "r.png",
                &img,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(
        f.hive.calls(),
        1,
        "the first node is down; the second answers once, then the cache does"
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_outage_is_an_internal_error_and_stores_nothing() {
    let dead = format!("http://127.0.0.1:{}", harness::free_port());
    let f = Fixture::start(Backend::Directory, |c, _, _| {
        c.accounts.rpc_nodes = vec![dead.clone()]
    })
    .await;
    let img = png(3, 5);
    let r = f
        .upload(
            &format!("/alice/{}", signature(&f.keys.posting, &img, false)),
            "o.png",
            &img,
        )
        .await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (500, r#"{"error":{"name":"internal_error"}}"#)
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    f.expect_keys_everywhere(&BTreeSet::new()).await;
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_accounts_file_needs_no_rpc() {
    let f = Fixture::start(Backend::Directory, |c, dir, keys| {
        let pk = public_key_string(keys.posting.verifying_key());
        let accounts = vec![account(
            "alice",
            &Authority::none(),
            &Authority::none(),
            &Authority::single(&pk),
            0,
        )];
        let path = dir.join("accounts.json");
        std::fs::write(&path, serde_json::to_string(&accounts).expect("json")).expect("write");
        c.accounts.static_file = Some(path);
    })
    .await;
    let img = png(2, 9);
    let r = f
        .upload(
            &format!("/alice/{}", signature(&f.keys.posting, &img, false)),
            "s.png",
            &img,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = f
        .upload(
            &format!("/lowrep/{}", signature(&f.keys.posting, &img, false)),
            "s.png",
            &img,
        )
        .await;
    assert_eq!(r.status, 404, "only the file's accounts exist");
    assert_eq!(f.hive.calls(), 0);
    f.stop().await;
}
