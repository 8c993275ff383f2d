//! PURGE and BAN: they remove what they name (every variant, memory and disk), are refused
//! without access, and propagate to the peer edges so a takedown clears the cluster.

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
