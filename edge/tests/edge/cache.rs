//! Caching: MISS then HIT with identical bodies, ranges from cache, one upstream fetch for a
//! flood, stale-if-error, uncacheable responses, Vary variants, the disk tier across restarts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harness::origin::Reply;

use crate::support::{body, count, origin, Edge};

const HOST: (&str, &str) = ("Host", "images.example.test");

#[test]
fn miss_then_hit_with_identical_bodies_ranges_and_normalised_queries() {
    let data = body(50 * 1024, 1);
    let served = data.clone();
    let (o, fetches) =
        origin(move |_| Reply::ok(served.clone()).header("Cache-Control", "public, max-age=600"));
    let edge = Edge::start(&[o.addr()], &[]);

    let first = edge.get("/DQmA/photo.jpg?width=100&mode=fit");
    assert_eq!((first.status, first.header("x-cache")), (200, Some("MISS")));
    let second = edge.get("/DQmA/photo.jpg?mode=fit&width=100");
    assert_eq!((second.status, second.header("x-cache")), (200, Some("HIT")));
    assert_eq!(first.body, data);
    assert_eq!(second.body, data, "the hit is byte-identical");
    assert!(second.header("age").is_some(), "hits carry Age");

    let r = edge.request(
        "GET",
        "/DQmA/photo.jpg?width=100&mode=fit",
        &[("Range", "bytes=100-199")],
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 100-199/51200"));
    assert_eq!(r.body, &data[100..200]);
    let r = edge.request(
        "GET",
        "/DQmA/photo.jpg?width=100&mode=fit",
        &[("Range", "bytes=51000-")],
    );
    assert_eq!((r.status, &r.body[..]), (206, &data[51000..]));
    let r = edge.request("HEAD", "/DQmA/photo.jpg?width=100&mode=fit", &[]);
    assert_eq!((r.status, r.header("content-length")), (200, Some("51200")));
    assert_eq!(count(&fetches), 1, "one upstream fetch for all of it");
}

/// The origin is asked for exactly what the cache key names: `/%75/alice/avatar` is fetched as
/// `/u/alice/avatar` and the query in its sorted form, so no spelling can store an answer (a 404
/// from a route that did not match, a different duplicate parameter) under another's key.
#[test]
fn the_origin_is_asked_for_the_normalised_url_the_key_names() {
    let asked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = asked.clone();
    let (o, _) = origin(move |req| {
        let url = req.path.clone();
        seen.lock().expect("lock").push(url.clone());
        let reply = if url.starts_with("/u/alice/avatar") {
            Reply::ok("avatar")
        } else {
            Reply::status(404)
        };
        reply.header("Cache-Control", "public, max-age=600")
    });
    let edge = Edge::start(&[o.addr()], &[]);
    let r = edge.get("/%75/alice/avatar");
    assert_eq!((r.status, &r.body[..]), (200, &b"avatar"[..]));
    let r = edge.get("/u/alice/avatar");
    assert_eq!((r.status, r.header("x-cache")), (200, Some("HIT")));
    edge.get("/p/x?width=200&width=100&%6Dode=fit");
    assert_eq!(
        *asked.lock().expect("lock"),
        ["/u/alice/avatar", "/p/x?mode=fit&width=100&width=200"]
    );
}

#[test]
fn a_flood_for_one_cold_object_costs_one_upstream_fetch() {
    let data = body(20_000, 2);
    let served = data.clone();
    let (o, fetches) = origin(move |_| {
        std::thread::sleep(Duration::from_millis(400));
        Reply::ok(served.clone()).header("Cache-Control", "max-age=600")
    });
    let edge = Edge::start(&[o.addr()], &[]);
    let addr = edge.addr;
    let threads: Vec<_> = (0..100)
        .map(|_| std::thread::spawn(move || harness::http::get(addr, "/p/cold?width=640").expect("request")))
        .collect();
    for t in threads {
        let r = t.join().expect("client thread");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, data);
    }
    assert_eq!(
        count(&fetches),
        1,
        "100 concurrent cold requests, one origin fetch"
    );
    let m = harness::http::get(edge.admin, "/metrics")
        .expect("metrics")
        .text();
    assert!(
        m.lines()
            .any(|l| l.starts_with("edge_cache_coalesced_waits_total ") && !l.ends_with(" 0")),
        "{m}"
    );
}

#[test]
fn stale_is_served_while_the_origin_is_down() {
    let (o, _) = origin(|_| Reply::ok("v1").header("Cache-Control", "max-age=1, stale-if-error=600"));
    let node = o.addr();
    let edge = Edge::start(&[node], &["upstreams.retries=0".into()]);
    assert_eq!(edge.get("/img").text(), "v1");
    drop(o);
    std::thread::sleep(Duration::from_millis(1500));
    let r = edge.get("/img");
    assert_eq!(
        (r.status, r.text().as_str(), r.header("x-cache")),
        (200, "v1", Some("STALE"))
    );
    // Something never cached has nothing to fall back on.
    assert_eq!(edge.get("/never-seen").status, 502);
}

#[test]
fn stale_while_revalidate_answers_at_once_and_refreshes_in_the_background() {
    let version = Arc::new(AtomicBool::new(false));
    let v = version.clone();
    let (o, fetches) = origin(move |_| {
        let body = if v.load(Ordering::SeqCst) { "v2" } else { "v1" };
        Reply::ok(body).header("Cache-Control", "max-age=1, stale-while-revalidate=600")
    });
    let edge = Edge::start(&[o.addr()], &[]);
    assert_eq!(edge.get("/swr").text(), "v1");
    version.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1300));
    let r = edge.get("/swr");
    assert_eq!((r.text().as_str(), r.header("x-cache")), ("v1", Some("STALE")));
    let fresh = harness::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let r = edge.get("/swr");
        (r.text() == "v2").then_some(r)
    })
    .expect("the background refresh lands");
    assert_eq!(fresh.header("x-cache"), Some("HIT"));
    assert_eq!(count(&fetches), 2);
}

#[test]
fn private_no_store_and_set_cookie_are_never_cached() {
    let (o, fetches) = origin(|req| match req.path.as_str() {
        "/private" => Reply::ok("p").header("Cache-Control", "private, max-age=600"),
        "/no-store" => Reply::ok("n").header("Cache-Control", "no-store"),
        "/cookie" => Reply::ok("c")
            .header("Cache-Control", "max-age=600")
            .header("Set-Cookie", "session=secret"),
        _ => Reply::ok("public").header("Cache-Control", "max-age=600"),
    });
    let edge = Edge::start(&[o.addr()], &[]);
    for path in ["/private", "/no-store", "/cookie"] {
        let before = count(&fetches);
        for _ in 0..3 {
            let r = edge.get(path);
            assert_eq!(r.status, 200);
            assert_ne!(r.header("x-cache"), Some("HIT"), "{path}");
        }
        assert_eq!(
            count(&fetches) - before,
            3,
            "{path} went to the origin every time"
        );
    }
    let r = edge.get("/cookie");
    assert_eq!(
        r.header("set-cookie"),
        Some("session=secret"),
        "passed through, not stripped"
    );
}

#[test]
fn vary_accept_variants_are_kept_apart() {
    let (o, fetches) = origin(|req| {
        let webp = req.header("accept").is_some_and(|a| a.contains("image/webp"));
        let (ty, body) = if webp {
            ("image/webp", "WEBP")
        } else {
            ("image/jpeg", "JPEG")
        };
        Reply::ok(body)
            .header("Content-Type", ty)
            .header("Vary", "Accept")
            .header("Cache-Control", "max-age=600")
    });
    let edge = Edge::start(&[o.addr()], &[]);
    let chrome = [("Accept", "image/avif,image/webp,image/apng,image/*,*/*;q=0.8")];
    let chrome_like = [("Accept", "image/webp,image/avif,*/*")];
    let old = [("Accept", "*/*")];
    let get = |h: &[(&str, &str)]| {
        let r = edge.request("GET", "/p/img?format=auto", h);
        (r.text(), r.header("x-cache").unwrap_or("").to_string())
    };
    assert_eq!(get(&chrome), ("WEBP".into(), "MISS".into()));
    assert_eq!(get(&old), ("JPEG".into(), "MISS".into()));
    assert_eq!(get(&chrome), ("WEBP".into(), "HIT".into()));
    assert_eq!(get(&old), ("JPEG".into(), "HIT".into()));
    assert_eq!(
        get(&chrome_like),
        ("WEBP".into(), "HIT".into()),
        "Accept is normalised"
    );
    assert_eq!(
        get(&[]),
        ("JPEG".into(), "HIT".into()),
        "no Accept is the same class as */*"
    );
    assert_eq!(count(&fetches), 2, "one fetch per class");
}

#[test]
fn the_disk_tier_serves_hits_after_a_restart() {
    let data = body(100_000, 3);
    let served = data.clone();
    let (o, fetches) = origin(move |_| Reply::ok(served.clone()).header("Cache-Control", "max-age=3600"));
    let node = o.addr();
    let disk = harness::tempdir();
    let settings = vec![format!("cache.disk_dir={}", disk.path().display())];
    let edge = Edge::start(&[node], &settings);
    assert_eq!(
        edge.request("GET", "/DQmDisk/a.jpg", &[HOST]).header("x-cache"),
        Some("MISS")
    );
    assert_eq!(
        edge.request("GET", "/DQmDisk/a.jpg", &[HOST]).header("x-cache"),
        Some("HIT")
    );
    edge.stop();
    drop(o);

    // A new process on new ports: the same public name finds the same objects.
    let edge = Edge::start(&[node], &settings);
    let r = edge.request("GET", "/DQmDisk/a.jpg", &[HOST]);
    assert_eq!(
        (r.status, r.header("x-cache")),
        (200, Some("HIT")),
        "{}",
        edge.log()
    );
    assert_eq!(r.body, data);
    let r = edge.request("GET", "/DQmDisk/a.jpg", &[HOST, ("Range", "bytes=10-19")]);
    assert_eq!((r.status, &r.body[..]), (206, &data[10..20]));
    assert_eq!(count(&fetches), 1);
    assert_eq!(edge.stats()["cache_disk_objects"], 1);
}

#[test]
fn memory_stays_within_its_byte_bound() {
    let (o, _) = origin(|req| {
        Reply::ok(crate::support::body(100_000, req.path.len() as u8)).header("Cache-Control", "max-age=600")
    });
    let edge = Edge::start(
        &[o.addr()],
        &[
            "cache.memory_bytes=2000000".into(),
            "cache.max_object_bytes=1000000".into(),
        ],
    );
    for i in 0..60 {
        assert_eq!(edge.get(&format!("/obj/{i}")).status, 200);
    }
    let s = edge.stats();
    let bytes = s["cache_memory_bytes"].as_u64().expect("bytes");
    // Eviction runs right after each admission, so at most the newest object is over the bound.
    assert!(bytes <= 2_000_000 + 101_000, "{s}");
    assert!(s["cache_evictions"].as_u64().expect("evictions") >= 40, "{s}");
    // The most recent objects are still hits.
    assert_eq!(edge.get("/obj/59").header("x-cache"), Some("HIT"));
}

/// A memory tier of about 19 objects holding a hot one, flooded by keys asked for once each (the
/// long tail): the hot object stays a hit throughout, where plain LRU would have pushed it out
/// within the first 20 of the flood. Flood keys replace each other; when the hot object is the
/// least recent, they are refused, and counted.
#[test]
fn admission_keeps_the_hot_object_in_memory_under_a_one_hit_wonder_flood() {
    let (o, fetches) = origin(|req| {
        Reply::ok(crate::support::body(50_000, req.path.len() as u8)).header("Cache-Control", "max-age=600")
    });
    let edge = Edge::start(
        &[o.addr()],
        &[
            "cache.memory_bytes=1000000".into(),
            "cache.max_object_bytes=500000".into(),
        ],
    );
    for _ in 0..4 {
        edge.get("/hot/photo.jpg");
    }
    let fetched = count(&fetches);
    for i in 0..300 {
        assert_eq!(edge.get(&format!("/tail/{i}")).status, 200);
        if i % 30 == 29 {
            let r = edge.get("/hot/photo.jpg");
            assert_eq!(r.header("x-cache"), Some("HIT"), "after {} of the flood", i + 1);
        }
    }
    assert_eq!(
        count(&fetches),
        fetched + 300,
        "the hot object was never fetched again"
    );
    let refused = edge.metric("edge_cache_memory_refused_total");
    assert!(refused >= 1.0, "{refused} refused");
}

#[test]
fn cors_vary_origin_is_answered_by_the_edge_from_one_cached_copy() {
    // What imagehost sends: any Origin echoed, and Vary: Origin on every response.
    let (o, fetches) = origin(|req| {
        let mut r = Reply::ok("img")
            .header("Cache-Control", "max-age=600")
            .header("Vary", "Origin");
        if let Some(origin) = req.header("origin") {
            r = r.header("Access-Control-Allow-Origin", origin);
        }
        r
    });
    let edge = Edge::start(&[o.addr()], &[]);
    let plain = edge.get("/DQmCors/a.jpg");
    assert_eq!(
        (
            plain.header("x-cache"),
            plain.header("access-control-allow-origin")
        ),
        (Some("MISS"), None)
    );
    for site in ["https://peakd.com", "https://ecency.com", "https://hive.blog"] {
        let r = edge.request("GET", "/DQmCors/a.jpg", &[("Origin", site)]);
        assert_eq!(
            (r.header("x-cache"), r.header("access-control-allow-origin")),
            (Some("HIT"), Some(site))
        );
        assert_eq!(r.header("vary"), Some("Origin"));
    }
    assert_eq!(count(&fetches), 1, "one copy for every embedding site");
}

/// The disk tier on a disk that fills up (a 2 MiB disk of its own, objects of 100 KB): every
/// request is still answered and hits come from memory; the full disk is logged once, counted,
/// and nothing half-written is left in it; least recently used disk objects make room.
#[test]
fn a_full_disk_tier_keeps_serving_from_memory_logs_once_and_leaves_no_partial_files() {
    let (o, hits) = origin(|req| {
        Reply::ok(vec![b'x'; 100_000 + req.path.len()]).header("Cache-Control", "public,max-age=600")
    });
    let edge = Edge::start_on_small_disk(&[o.addr()], &[], 2 << 20);
    let paths: Vec<String> = (0..40).map(|i| format!("/DQmFull{i}/x.jpg")).collect();
    for p in &paths {
        let r = edge.get(p);
        assert_eq!((r.status, r.body.len()), (200, 100_000 + p.len()), "{p}");
    }
    for p in &paths {
        assert_eq!(edge.get(p).header("x-cache"), Some("HIT"), "{p} from memory");
    }
    assert_eq!(count(&hits), 40, "each fetched once");
    let metrics = harness::http::get(edge.admin, "/metrics")
        .expect("metrics")
        .text();
    let full = metrics
        .lines()
        .find_map(|l| l.strip_prefix("edge_cache_disk_write_errors_total{reason=\"full\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(full > 0, "the full disk is counted:\n{metrics}");
    let log = edge.log();
    assert_eq!(
        log.matches("disk tier full").count(),
        1,
        "logged once per spell:\n{log}"
    );
    // Inside its own mount namespace the disk is the edge's alone: ask it what it holds.
    let tmp_left = std::fs::read_dir(format!(
        "/proc/{}/root{}/disk/tmp",
        edge.child.id(),
        edge.dir.path().display()
    ))
    .map(|d| d.count())
    .unwrap_or(0);
    assert_eq!(tmp_left, 0, "no half-written object left behind");
}
