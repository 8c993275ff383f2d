//! Fileservers failing under the service: one of two down (uploads go on at W=1, everything is
//! still served, the miss is recorded), then both down (a clear 503, and nothing partial later).

use std::collections::BTreeSet;
use std::time::Duration;

use super::fixture::*;

async fn wait_metric_at_least(sample: &str, want: f64) -> f64 {
    for _ in 0..100 {
        let v = metric(sample);
        if v >= want {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    metric(sample)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garage_outages_lose_nothing() {
    let mut f = Fixture::start(Backend::Garage, |_, _, _| {}).await;
    let up = |data: &[u8]| format!("/alice/{}", signature(&f.keys.posting, data, false));

    let a = png(10, 10);
    assert_eq!(f.upload(&up(&a), "a.png", &a).await.status, 200);
    f.expect_keys_everywhere(&BTreeSet::from([key_of(&a)])).await;

    // One of two fileservers down: uploads still succeed and everything is served from the other.
    f.garages[0].stop();
    let repairs = metric(r#"imagehost_repairs_recorded_total{server="fs0"}"#);
    let b = png(11, 11);
    let r = f.upload(&up(&b), "b.png", &b).await;
    assert_eq!(r.status, 200, "{}", r.text());
    for (data, name) in [(&a, "a"), (&b, "b")] {
        let r = f.get(&format!("/{}/{name}.png", key_of(data))).await;
        assert_eq!(
            (r.status, &r.body),
            (200, data),
            "{name} served while fs0 is down"
        );
    }
    let now = wait_metric_at_least(r#"imagehost_repairs_recorded_total{server="fs0"}"#, repairs + 1.0).await;
    assert_eq!(
        now,
        repairs + 1.0,
        "the missed write on fs0 is recorded for repair"
    );
    assert!(metric(r#"imagehost_read_fallbacks_total{reason="unavailable",server="fs0"}"#) >= 2.0);

    // Both down: a clear, uncacheable 5xx for uploads and reads.
    f.garages[1].stop();
    let c = png(12, 12);
    let r = f.upload(&up(&c), "c.png", &c).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (503, r#"{"error":{"name":"internal_error"}}"#)
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = f.get(&format!("/{}/a.png", key_of(&a))).await;
    assert_eq!((r.status, r.header("cache-control")), (503, Some("no-store")));

    // Back up: the refused upload left nothing anywhere; fs0 lacks only what it missed.
    f.garages[0].restart();
    f.garages[1].restart();
    assert_eq!(f.keys_on(0).await, BTreeSet::from([key_of(&a)]));
    assert_eq!(f.keys_on(1).await, BTreeSet::from([key_of(&a), key_of(&b)]));
    let r = f.get(&format!("/{}/c.png", key_of(&c))).await;
    assert_eq!((r.status, r.body.len()), (404, 0));
    let r = f.get(&format!("/{}/b.png", key_of(&b))).await;
    assert_eq!(
        (r.status, &r.body),
        (200, &b),
        "not-found on fs0 falls back to fs1"
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_quorum_of_two_refuses_when_one_is_down() {
    let mut f = Fixture::start(Backend::Garage, |c, _, _| c.upload.write_quorum = 2).await;
    f.garages[1].stop();
    let img = png(7, 3);
    let r = f
        .upload(
            &format!("/alice/{}", signature(&f.keys.posting, &img, false)),
            "q.png",
            &img,
        )
        .await;
    assert_eq!(
        r.status, 503,
        "W=2 with one fileserver down cannot be acknowledged"
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_write_is_reported_to_replication() {
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let sink = received.clone();
    let intake = harness::origin::Origin::start(move |req| {
        if let Ok(v) = serde_json::from_slice(&req.body) {
            sink.lock().unwrap().push(v);
        }
        harness::origin::Reply::ok(r#"{"queued":1,"ignored":0}"#)
    });
    let url = format!("http://{}/events", intake.addr());
    let mut f = Fixture::start(Backend::Garage, |c, _, _| {
        c.replication.events_url = Some(url.clone())
    })
    .await;

    // All fileservers up: nothing to report.
    let a = png(5, 5);
    assert_eq!(
        f.upload(
            &format!("/alice/{}", signature(&f.keys.posting, &a, false)),
            "a.png",
            &a
        )
        .await
        .status,
        200
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(received.lock().unwrap().is_empty());

    f.garages[0].stop();
    let b = png(6, 5);
    assert_eq!(
        f.upload(
            &format!("/alice/{}", signature(&f.keys.posting, &b, false)),
            "b.png",
            &b
        )
        .await
        .status,
        200
    );
    let key = key_of(&b);
    for _ in 0..100 {
        if !received.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = received.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    let r = &events[0]["Records"][0];
    assert_eq!(r["eventName"], "s3:ObjectCreated:Put");
    assert_eq!(r["s3"]["bucket"]["name"], "uploads");
    assert_eq!(r["s3"]["object"]["key"], key.as_str());
    f.stop().await;
}

/// One of two fileservers stalls (accepts, takes the request, never answers), as an overloaded
/// MinIO or a failing disk does. Every read is still answered, by a hedged read to the other
/// one, and later reads go to the other one first, so few reads wait on the stalled one at all
/// (counted: the hedges sent). Once it answers again, its slow spell fades and it is used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_fileserver_is_overtaken_by_hedged_reads_and_then_skipped() {
    use harness::faults::{Fault, FaultProxy};
    let proxy: std::sync::Arc<std::sync::Mutex<Option<FaultProxy>>> = Default::default();
    let p = proxy.clone();
    let f = Fixture::start(Backend::Garage, move |c, _, _| {
        let s3 = c.fileservers[0].s3.as_mut().expect("garage fileserver");
        let upstream: std::net::SocketAddr = s3
            .endpoint
            .trim_start_matches("http://")
            .parse()
            .expect("garage address");
        let faulty = FaultProxy::start(upstream);
        s3.endpoint = format!("http://{}", faulty.addr());
        *p.lock().expect("lock") = Some(faulty);
        c.reads.hedge_max = Duration::from_millis(150);
        c.reads.breaker_cooldown = Duration::from_millis(500);
    })
    .await;
    let with = |f: &dyn Fn(&FaultProxy) -> usize| f(proxy.lock().expect("lock").as_ref().expect("proxy"));
    let images: Vec<Vec<u8>> = (0..4).map(|i| png(20 + i, 20)).collect();
    for (i, data) in images.iter().enumerate() {
        let sig = signature(&f.keys.posting, data, false);
        let r = f
            .upload(&format!("/alice/{sig}"), &format!("{i}.png"), data)
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    with(&|p| {
        p.set(Fault::Stall);
        0
    });
    let hedges = || metric(r#"imagehost_read_hedges_total{server="fs1"}"#);
    let before = hedges();
    let mut reads = 0;
    for round in 0..5 {
        for (i, data) in images.iter().enumerate() {
            let r = f.get(&format!("/{}/{i}.png", key_of(data))).await;
            assert_eq!((r.status, &r.body), (200, data), "round {round}, image {i}");
            reads += 1;
        }
    }
    let hedged = hedges() - before;
    assert!(
        (1.0..=3.0).contains(&hedged),
        "{hedged} of {reads} reads waited on the stalled fileserver"
    );

    // It recovers: once its slow spell has faded it is asked first again, and answers.
    with(&|p| {
        p.set(Fault::Pass);
        0
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    let answered = with(&|p| p.answered());
    for (i, data) in images.iter().enumerate() {
        let r = f.get(&format!("/{}/{i}.png", key_of(data))).await;
        assert_eq!((r.status, &r.body), (200, data), "after recovery, image {i}");
    }
    assert!(
        with(&|p| p.answered()) > answered,
        "the recovered fileserver is read again"
    );
    f.stop().await;
}
