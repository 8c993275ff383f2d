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
