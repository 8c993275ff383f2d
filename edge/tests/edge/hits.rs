//! The hit fast path: fresh memory hits on plain HTTP/1.1 answered before pingora, with the same
//! headers pingora gives; on one keep-alive connection, pipelined hits, then a request only
//! pingora serves (a range), after which the connection comes back to the fast path; keep-alive
//! limits; a purge or ban seen at once by a connection the fast path serves.

use harness::origin::Reply;

use crate::support::{body, closed, connect, count, origin, read, send, Edge};

fn fast_hits(edge: &Edge) -> u64 {
    edge.metric("edge_cache_fast_hits_total") as u64
}

#[test]
fn fast_hits_carry_the_headers_pingora_gives_a_hit() {
    let data = body(30_000, 7);
    let served = data.clone();
    let (o, fetches) = origin(move |_| {
        Reply::ok(served.clone())
            .header("Content-Type", "image/jpeg")
            .header("Cache-Control", "public, max-age=600")
            .header("Server", "imagehost")
    });
    let edge = Edge::start(&[o.addr()], &[]);
    let miss = edge.get("/DQmF/a.jpg");
    assert_eq!(miss.header("x-cache"), Some("MISS"));
    let before = fast_hits(&edge);

    // The same hit, once by the fast path (HTTP/1.1) and once by pingora (HTTP/1.0 goes there).
    let mut fast = connect(edge.addr);
    send(
        &mut fast,
        &format!(
            "GET /DQmF/a.jpg HTTP/1.1\r\nHost: {}\r\nOrigin: https://peakd.com\r\n\r\n",
            edge.addr
        ),
    );
    let f = read(&mut fast, false);
    let mut slow = connect(edge.addr);
    send(
        &mut slow,
        &format!(
            "GET /DQmF/a.jpg HTTP/1.0\r\nHost: {}\r\nOrigin: https://peakd.com\r\n\r\n",
            edge.addr
        ),
    );
    let p = read(&mut slow, false);
    assert_eq!(fast_hits(&edge), before + 1, "one answer came from the fast path");
    for r in [&f, &p] {
        assert_eq!(r.status, 200);
        assert_eq!(r.body, data, "identical bodies");
        assert_eq!(r.header("x-cache"), Some("HIT"));
        assert!(r.header("age").is_some_and(|a| a.parse::<u64>().is_ok()));
        assert_eq!(r.header("content-type"), Some("image/jpeg"));
        assert_eq!(r.header("cache-control"), Some("public, max-age=600"));
        assert_eq!(r.header("content-length"), Some("30000"));
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        assert_eq!(r.header("access-control-allow-origin"), Some("https://peakd.com"));
        assert_eq!(r.header("vary"), Some("Origin"));
        assert_eq!(r.header("server"), None);
    }
    assert_eq!(count(&fetches), 1);
}

#[test]
fn one_connection_pipelined_hits_then_pingora_for_a_range_and_after() {
    let data = body(20_000, 9);
    let served = data.clone();
    let (o, fetches) = origin(move |req| {
        if req.path == "/healthcheck" {
            return Reply::ok("ok");
        }
        Reply::ok(served.clone()).header("Cache-Control", "public, max-age=600")
    });
    let edge = Edge::start(&[o.addr()], &[]);
    assert_eq!(edge.get("/DQmP/a.jpg").header("x-cache"), Some("MISS"));
    let before = fast_hits(&edge);

    let mut c = connect(edge.addr);
    let get = &format!("GET /DQmP/a.jpg HTTP/1.1\r\nHost: {}\r\n\r\n", edge.addr);
    send(
        &mut c,
        &format!(
            "{get}{get}HEAD /DQmP/a.jpg HTTP/1.1\r\nHost: {}\r\n\r\n",
            edge.addr
        ),
    );
    for head_only in [false, false, true] {
        let r = read(&mut c, head_only);
        assert_eq!((r.status, r.header("x-cache")), (200, Some("HIT")));
        assert_eq!(r.header("connection"), Some("keep-alive"));
        assert_eq!(r.header("content-length"), Some("20000"));
        if !head_only {
            assert_eq!(r.body, data);
        }
    }
    assert_eq!(fast_hits(&edge), before + 3);

    // A range is pingora's: that one request is handed over, and the connection comes back.
    send(
        &mut c,
        &format!(
            "GET /DQmP/a.jpg HTTP/1.1\r\nHost: {}\r\nRange: bytes=10-19\r\n\r\n",
            edge.addr
        ),
    );
    let r = read(&mut c, false);
    assert_eq!((r.status, &r.body[..]), (206, &data[10..20]));
    send(&mut c, get);
    let r = read(&mut c, false);
    assert_eq!((r.status, r.header("x-cache")), (200, Some("HIT")));
    assert_eq!(r.body, data);
    send(
        &mut c,
        &format!(
            "GET /DQmP/other.jpg HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            edge.addr
        ),
    );
    let r = read(&mut c, false);
    assert_eq!((r.status, r.header("x-cache")), (200, Some("MISS")));
    assert!(closed(&mut c), "closed after Connection: close");
    assert_eq!(
        fast_hits(&edge),
        before + 4,
        "after pingora's answer the next hit is the fast path's again"
    );
    assert_eq!(count(&fetches), 2);
}

#[test]
fn fast_path_connections_close_at_the_keepalive_request_limit_or_when_asked() {
    let (o, _) = origin(move |_| Reply::ok(body(1000, 3)).header("Cache-Control", "max-age=600"));
    let edge = Edge::start(&[o.addr()], &["server.keepalive_requests=3".into()]);
    edge.get("/DQmK/a.jpg");
    let get = &format!("GET /DQmK/a.jpg HTTP/1.1\r\nHost: {}\r\n\r\n", edge.addr);
    let mut c = connect(edge.addr);
    send(&mut c, &format!("{get}{get}{get}"));
    for want in ["keep-alive", "keep-alive", "close"] {
        let r = read(&mut c, false);
        assert_eq!((r.status, r.header("x-cache")), (200, Some("HIT")));
        assert_eq!(r.header("connection"), Some(want));
    }
    assert!(closed(&mut c), "closed at server.keepalive_requests");

    let mut c = connect(edge.addr);
    send(
        &mut c,
        &format!(
            "GET /DQmK/a.jpg HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            edge.addr
        ),
    );
    let r = read(&mut c, false);
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert!(closed(&mut c));
}

#[test]
fn a_purge_or_ban_is_seen_at_once_by_a_fast_path_connection() {
    let data = body(5_000, 11);
    let served = data.clone();
    let (o, fetches) = origin(move |_| Reply::ok(served.clone()).header("Cache-Control", "max-age=600"));
    let edge = Edge::start(&[o.addr()], &[]);
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", edge.addr);
    let mut c = connect(edge.addr);
    for (path, want) in [("/DQmZ/a.jpg", "MISS"), ("/DQmZ/a.jpg", "HIT")] {
        send(&mut c, &get(path));
        let r = read(&mut c, false);
        assert_eq!((r.status, r.header("x-cache")), (200, Some(want)));
    }
    // The first answer was pingora's (a miss hands the connection over): start a fresh
    // connection that the fast path serves, then purge behind its back.
    let mut fast = connect(edge.addr);
    send(&mut fast, &get("/DQmZ/a.jpg"));
    assert_eq!(read(&mut fast, false).header("x-cache"), Some("HIT"));
    let before = fast_hits(&edge);
    assert_eq!(edge.request("PURGE", "/DQmZ/a.jpg", &[]).status, 200);
    send(&mut fast, &get("/DQmZ/a.jpg"));
    let r = read(&mut fast, false);
    assert_eq!(
        (r.status, r.header("x-cache"), &r.body),
        (200, Some("MISS"), &data)
    );
    assert_eq!(
        fast_hits(&edge),
        before,
        "the purged object was not served from memory"
    );

    let mut fast = connect(edge.addr);
    send(&mut fast, &get("/DQmZ/a.jpg"));
    assert_eq!(read(&mut fast, false).header("x-cache"), Some("HIT"));
    assert_eq!(edge.request("BAN", "/DQmZ", &[]).status, 200);
    send(&mut fast, &get("/DQmZ/a.jpg"));
    assert_eq!(read(&mut fast, false).header("x-cache"), Some("MISS"));
    assert_eq!(count(&fetches), 3);
}
