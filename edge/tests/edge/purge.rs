//! PURGE and BAN: they remove what they name (every variant, memory and disk), are refused
//! without access, and propagate to the peer edges so a takedown clears the cluster.

use std::time::Duration;

use harness::origin::Reply;

use crate::support::{count, origin, Edge};

/// Both edges answer for the one public name, as behind a DNS round robin.
const HOST: (&str, &str) = ("Host", "images.example.test");

fn get(edge: &Edge, path: &str) -> harness::http::Response {
    edge.request("GET", path, &[HOST])
}

fn cached(edge: &Edge, path: &str) -> bool {
    get(edge, path).header("x-cache") == Some("HIT")
}

#[test]
fn purge_and_ban_clear_this_edge_and_its_peers() {
    let (o, _) =
        origin(|req| Reply::ok(format!("body of {}", req.path)).header("Cache-Control", "max-age=600"));
    let peer = Edge::start(&[o.addr()], &[]);
    let edge = Edge::start(&[o.addr()], &[format!("purge.peers=[\"{}\"]", peer.addr)]);
    let paths = [
        "/DQmTakedown/a.jpg",
        "/p/one?width=10",
        "/p/two",
        "/DQmKeep/b.jpg",
    ];
    for e in [&edge, &peer] {
        for p in paths {
            get(e, p);
            assert!(cached(e, p), "{p} cached");
        }
    }

    let r = edge.request("PURGE", "/DQmTakedown/a.jpg", &[HOST]);
    assert_eq!(r.status, 200, "{}", r.text());
    let j: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(j["removed"], 1);
    assert_eq!(j["peers"][peer.addr.to_string()], 200, "{j}");
    for e in [&edge, &peer] {
        assert_eq!(
            get(e, "/DQmTakedown/a.jpg").header("x-cache"),
            Some("MISS"),
            "purged on both"
        );
    }
    let r = peer.request("PURGE", "/nothing-here", &[]);
    assert_eq!(r.status, 404);

    let r = edge.request("BAN", "/p/", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    for e in [&edge, &peer] {
        assert_eq!(get(e, "/p/one?width=10").header("x-cache"), Some("MISS"));
        assert_eq!(get(e, "/p/two").header("x-cache"), Some("MISS"));
        assert!(cached(e, "/DQmKeep/b.jpg"), "outside the prefix: kept");
    }

    let r = edge.request("BAN", "/", &[("X-Ban-Regex", "^/DQmKeep/.*\\.jpg$")]);
    assert_eq!(r.status, 200, "{}", r.text());
    for e in [&edge, &peer] {
        assert_eq!(get(e, "/DQmKeep/b.jpg").header("x-cache"), Some("MISS"));
    }
    let r = edge.request("BAN", "/", &[]);
    assert_eq!(r.status, 400, "a ban of everything needs a regex");
    let r = edge.request("BAN", "/", &[("X-Ban-Regex", "(")]);
    assert_eq!(r.status, 400);
}

#[test]
fn purge_removes_every_variant() {
    let (o, fetches) = origin(|req| {
        let webp = req.header("accept").is_some_and(|a| a.contains("webp"));
        Reply::ok(if webp { "W" } else { "J" })
            .header("Vary", "Accept")
            .header("Cache-Control", "max-age=600")
    });
    let edge = Edge::start(&[o.addr()], &[]);
    for a in ["image/webp", "*/*"] {
        edge.request("GET", "/v", &[("Accept", a)]);
    }
    assert_eq!(count(&fetches), 2);
    let r = edge.request("PURGE", "/v", &[]);
    assert_eq!(r.status, 200);
    for a in ["image/webp", "*/*"] {
        assert_eq!(
            edge.request("GET", "/v", &[("Accept", a)]).header("x-cache"),
            Some("MISS"),
            "{a}"
        );
    }
}

#[test]
fn purge_needs_an_allowed_network_or_the_token() {
    let (o, _) = origin(|_| Reply::ok("x").header("Cache-Control", "max-age=600"));
    let dir = harness::tempdir();
    let token = dir.path().join("purge-token");
    std::fs::write(&token, "t0ken-from-a-vault\n").expect("token file");
    let edge = Edge::start(
        &[o.addr()],
        &[
            "purge.allow=[]".into(),
            format!("purge.token_file={}", token.display()),
        ],
    );
    edge.get("/a");
    let r = edge.request("PURGE", "/a", &[]);
    assert_eq!(r.status, 403);
    assert!(r.text().contains("forbidden"));
    let r = edge.request("PURGE", "/a", &[("Authorization", "Bearer wrong")]);
    assert_eq!(r.status, 403);
    assert_eq!(
        edge.get("/a").header("x-cache"),
        Some("HIT"),
        "a refused purge removes nothing"
    );
    let r = edge.request("PURGE", "/a", &[("Authorization", "Bearer t0ken-from-a-vault")]);
    assert_eq!(r.status, 200);
    assert_eq!(edge.get("/a").header("x-cache"), Some("MISS"));
}

/// A ban by tag removes every answer derived from a key, whatever its URL: those whose
/// `Surrogate-Key` names it (every `/p/` rendering) and those whose URL starts with it (objects
/// cached before imagehost tagged them); others stay. The header never reaches clients. With a
/// disk tier the ban survives a restart: nothing banned comes back from disk.
#[test]
fn a_tag_ban_removes_every_answer_derived_from_a_key_on_memory_and_disk() {
    let (o, _) = origin(|req| {
        let tags = match req.path.as_str() {
            p if p.starts_with("/p/thumb") => "DQmGone",
            "/u/alice/avatar" => "DQmGone Ualice",
            _ => "DQmOther",
        };
        Reply::ok(format!("body of {}", req.path))
            .header("Cache-Control", "public,max-age=29030400,immutable")
            .header("Surrogate-Key", tags)
    });
    let dir = harness::tempdir();
    let disk = dir.path().join("disk");
    let settings = [format!("cache.disk_dir={}", disk.display())];
    let edge = Edge::start_in(dir, &[o.addr()], &settings, false);
    let gone = [
        "/DQmGone/photo.jpg",
        "/DQmGone",
        "/p/thumb1?width=100",
        "/p/thumb2",
        "/u/alice/avatar",
    ];
    let kept = ["/DQmKept/photo.jpg", "/p/other?width=100", "/DQmGoneNot/x.jpg"];
    for p in gone.iter().chain(&kept) {
        let r = get(&edge, p);
        assert!(
            r.header("surrogate-key").is_none(),
            "{p}: the tags stay inside the cluster"
        );
        assert!(cached(&edge, p), "{p} cached");
    }
    let r = edge.request("BAN", "/", &[("X-Ban-Tag", "DQmGone")]);
    assert_eq!(r.status, 200, "{}", r.text());
    let j: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert!(j["banned"].as_u64().is_some(), "{j}");
    // Killed at once: whatever the lurker had not reached is still on disk, and must not be
    // served after the restart.
    let dir = edge.crash();
    let edge = Edge::start_in(dir, &[o.addr()], &settings, false);
    for p in gone {
        assert_eq!(get(&edge, p).header("x-cache"), Some("MISS"), "{p}");
    }
    for p in kept {
        assert_eq!(
            get(&edge, p).header("x-cache"),
            Some("HIT"),
            "{p} kept, from disk"
        );
    }
    // A new answer after the ban is not affected by it.
    assert!(cached(&edge, "/p/thumb1?width=100"));
}

/// Takedowns pulled from blobsync's list become tag bans; a key no answer can carry as a tag
/// (over 256 bytes) is skipped instead of stopping the feed, so the keys after it still land.
#[test]
fn pulled_takedowns_ban_their_tags_and_an_untaggable_key_does_not_stop_the_feed() {
    let (o, _) = origin(|req| {
        let tag = if req.path.starts_with("/p/gone") {
            "DQmGone"
        } else {
            "DQmKept"
        };
        Reply::ok(format!("body of {}", req.path))
            .header("Cache-Control", "public,max-age=600")
            .header("Surrogate-Key", tag)
    });
    let published = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let p2 = published.clone();
    let feed = harness::origin::Origin::start(move |req| {
        let first = req.path.ends_with("since=0");
        let body = if p2.load(std::sync::atomic::Ordering::SeqCst) && first {
            serde_json::json!({
                "takedowns": [{ "key": "D".repeat(300) }, { "key": "DQmGone" }],
                "last": 2
            })
        } else {
            serde_json::json!({ "takedowns": [], "last": 0 })
        };
        Reply::ok(body.to_string()).header("Content-Type", "application/json")
    });
    let settings = [
        format!("takedowns.url=http://{}/takedowns", feed.addr()),
        "takedowns.poll_interval=100ms".to_string(),
    ];
    let edge = Edge::start(&[o.addr()], &settings);
    for p in ["/p/gone?width=1", "/p/kept?width=1"] {
        get(&edge, p);
        assert!(cached(&edge, p), "{p} cached");
    }
    published.store(true, std::sync::atomic::Ordering::SeqCst);
    harness::wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        (!cached(&edge, "/p/gone?width=1")).then_some(())
    })
    .expect("the key after the untaggable one was banned");
    assert!(cached(&edge, "/p/kept?width=1"), "other tags kept");
}

/// A costly regex ban is recorded and answered at once and applied in the background: another
/// client's hits keep being answered while the lurker works through the cache, and then the
/// matching objects are gone and the others kept. A pattern over the compiled-size limit is a
/// 400 naming it.
#[test]
fn a_costly_ban_is_answered_at_once_and_hits_go_on_while_it_is_applied() {
    let (o, _) =
        origin(|req| Reply::ok(format!("body of {}", req.path)).header("Cache-Control", "max-age=600"));
    let edge = Edge::start(&[o.addr()], &[]);
    const N: usize = 1500;
    for i in 0..N {
        get(&edge, &format!("/obj/{i}"));
    }
    get(&edge, "/hot");
    assert!(cached(&edge, "/hot"));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (addr, flag) = (edge.addr, stop.clone());
    let hitter = std::thread::spawn(move || {
        let mut hits = Vec::new();
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            let r = harness::http::request(addr, "GET", "/hot", &[HOST], &[]).expect("hit");
            assert_eq!(r.header("x-cache"), Some("HIT"));
            hits.push(std::time::Instant::now());
        }
        hits
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    // The slowest pattern found for the regex engine within the limits, or one matching odd ids.
    let costly = "(?:[a-z0-9]{1,5}[/?=&]){1,10}Z|^/obj/[0-9]*[13579]$";
    let sent = std::time::Instant::now();
    let r = edge.request("BAN", "/", &[("X-Ban-Regex", costly)]);
    assert_eq!(r.status, 200, "{}", r.text());
    let answered = std::time::Instant::now();
    let mut polls = 0;
    while edge.metric("edge_bans_active") > 0.0 {
        polls += 1;
        assert!(polls < 3000, "the lurker retires the ban");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let retired = std::time::Instant::now();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let hits = hitter.join().expect("hitter");
    let during = hits.iter().filter(|t| **t >= sent && **t <= retired).count();
    eprintln!(
        "ban answered in {:?}, retired after {:?}; {during} hits answered meanwhile",
        answered - sent,
        retired - sent
    );
    assert!(during > 0, "hits were answered while the ban was applied");
    assert!(
        edge.metric("edge_banned_objects_total{how=\"lurker\",where=\"memory\"}") > 0.0,
        "the lurker removed objects in the background"
    );
    for i in [1, 3, 501, 1499] {
        assert_eq!(
            get(&edge, &format!("/obj/{i}")).header("x-cache"),
            Some("MISS"),
            "{i}"
        );
    }
    for i in [0, 2, 500, 1498] {
        assert_eq!(
            get(&edge, &format!("/obj/{i}")).header("x-cache"),
            Some("HIT"),
            "{i}"
        );
    }
    let r = edge.request("BAN", "/", &[("X-Ban-Regex", "(?:\\w{1,3}x){1,12}")]);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("65536-byte limit"), "{}", r.text());
}
