//! Deadlines on every client connection, as HAProxy sets them: connections that send nothing are
//! closed (so they cannot hold `max_connections`), a head that never completes gets 408, an
//! oversized head 431, a trickled or stalled body is cut off, an idle keep-alive connection is
//! closed; HTTP/1.0 closes unless it asked to stay; a request pipelined behind a miss is
//! answered in order; a client's request id is echoed to it and never cached for others.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use harness::origin::Reply;

use crate::support::{closed, connect, origin, read, send, Edge};

fn quick() -> Vec<String> {
    vec![
        "server.request_timeout=1s".into(),
        "server.keepalive_timeout=1s".into(),
        "server.client_timeout=1s".into(),
    ]
}

/// Waits (bounded) until the peer closes `s`; true if it did.
fn closes(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn silent_connections_filling_max_connections_are_closed_by_the_deadline() {
    let (o, _) = origin(|_| Reply::ok("fine").header("Cache-Control", "max-age=60"));
    // A deadline far longer than filling the cap and trying once more takes, even on a loaded
    // machine (with 1 s, a slow run saw the silent connections closed before the check).
    let settings = vec![
        "server.request_timeout=5s".to_string(),
        "server.keepalive_timeout=5s".into(),
        "server.client_timeout=5s".into(),
        "server.max_connections=20".into(),
    ];
    let edge = Edge::start(&[o.addr()], &settings);
    let connections = || {
        harness::http::get(edge.admin, "/metrics")
            .map(|r| r.text())
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("edge_client_connections "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    // The start's readiness check connected too: once the edge has let it go, the 20 below are
    // the only connections (on a loaded machine it could still hold a place when they come).
    harness::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        (connections() == Some(0.0)).then_some(())
    })
    .expect("no connection left from the start");
    let mut silent: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(edge.addr).expect("connect"))
        .collect();
    // Until the edge has accepted all of them (its threads accept in parallel, so a later client
    // could otherwise be accepted before the last of them on a loaded machine).
    let accepted = |n: f64| connections().is_some_and(|v| v >= n);
    harness::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        accepted(20.0).then_some(())
    })
    .expect("the edge accepted the silent connections");
    // The cap is full of silent connections: a real client is closed at accept.
    let refused = harness::http::get(edge.addr, "/x").is_err();
    assert!(refused, "the cap is full");
    // ...until the deadline closes them, each without an answer.
    for s in &mut silent {
        assert!(closes(s), "a silent connection is closed by request_timeout");
    }
    let r = harness::http::get(edge.addr, "/x").expect("served again");
    assert_eq!(r.status, 200);
    let timed_out = edge.metric("edge_client_timeouts_total{phase=\"first_byte\"}");
    assert!(timed_out >= 20.0, "{timed_out} first-byte timeouts");
}

#[test]
fn a_head_that_never_completes_gets_408_and_an_oversized_one_431() {
    let (o, _) = origin(|_| Reply::ok("fine"));
    let edge = Edge::start(&[o.addr()], &quick());
    let mut c = connect(edge.addr);
    send(&mut c, "GET /slow HTTP/1.1\r\nHost: x\r\nX-A: b");
    let r = read(&mut c, false);
    assert_eq!(r.status, 408);
    assert!(String::from_utf8_lossy(&r.body).contains("request_timeout"));
    assert!(closed(&mut c));
    // A byte a second never completes the head either: the deadline is for the whole head.
    let mut s = TcpStream::connect(edge.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut answer = Vec::new();
    for b in b"GET /trickle HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaa" {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        if let Ok(n) = s.read(&mut buf) {
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || answer.ends_with(b"}") {
                break;
            }
        }
    }
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "{answer:?}"
    );

    let mut c = connect(edge.addr);
    let huge = "a".repeat(40_000);
    send(&mut c, &format!("GET /big HTTP/1.1\r\nHost: x\r\nX-Big: {huge}"));
    let r = read(&mut c, false);
    assert_eq!(r.status, 431);
}

#[test]
fn idle_keepalive_connections_close_and_http_1_0_closes_unless_asked() {
    let (o, _) = origin(|_| Reply::ok("fine").header("Cache-Control", "max-age=60"));
    let edge = Edge::start(&[o.addr()], &quick());
    edge.get("/k");
    let mut c = connect(edge.addr);
    send(&mut c, "GET /k HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = read(&mut c, false);
    assert_eq!((r.status, r.header("connection")), (200, Some("keep-alive")));
    assert!(closes(c.get_mut()), "idle past keepalive_timeout: closed");

    for path in ["/k", "/miss-1.0"] {
        let mut c = connect(edge.addr);
        send(&mut c, &format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n"));
        let r = read(&mut c, false);
        assert_eq!(r.status, 200, "{path}");
        assert_ne!(r.header("connection"), Some("keep-alive"), "{path}");
        assert!(
            closed(&mut c),
            "{path}: HTTP/1.0 without keep-alive is closed at once"
        );
    }
    let mut c = connect(edge.addr);
    send(
        &mut c,
        "GET /k HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
    );
    let r = read(&mut c, false);
    assert_eq!((r.status, r.header("connection")), (200, Some("keep-alive")));
    send(
        &mut c,
        "GET /k HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
    );
    assert_eq!(read(&mut c, false).status, 200, "and is kept when it asks");
}

#[test]
fn a_stalled_or_trickled_upload_body_is_cut_off() {
    let (o, _) = origin(|_| Reply::ok("stored"));
    let mut settings = quick();
    settings.push("server.min_body_rate=100000".into());
    let edge = Edge::start(&[o.addr()], &settings);
    // Stalled: a tenth of the body, then nothing.
    let mut s = TcpStream::connect(edge.addr).expect("connect");
    s.write_all(b"POST /u/sig HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n")
        .expect("head");
    s.write_all(&[7u8; 1000]).expect("part of the body");
    assert!(closes(&mut s), "a stalled body is cut off by client_timeout");
    // Trickled: a little every 300 ms, below min_body_rate once request_timeout has passed.
    let mut s = TcpStream::connect(edge.addr).expect("connect");
    s.write_all(b"POST /u/sig HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        .expect("head");
    let mut cut = false;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(300));
        if s.write_all(&[7u8; 100]).is_err() {
            cut = true;
            break;
        }
    }
    assert!(cut || closes(&mut s), "a trickled body is cut off");
}

/// Writes `chunk` every 300 ms for up to 6 s; whether the edge closed the connection meanwhile.
fn closed_while_trickling(s: &mut TcpStream, chunk: &[u8]) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(10)))
        .expect("timeout");
    for _ in 0..20 {
        if s.write_all(chunk).is_err() {
            return true;
        }
        let mut b = [0u8; 4096];
        match s.read(&mut b) {
            Ok(0) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    false
}

/// Empty lines before a request line are skipped, but they start the head's deadline: a client
/// that sends one every so often is closed like a silent one; and a body nobody reads (a GET of
/// a cached object with a trickled Content-Length body) is drained no longer than a head takes.
/// pingora's own per-read limits (keepalive, client_timeout: 5 s here) would let both go on.
#[test]
fn blank_lines_and_unread_bodies_do_not_outlive_the_deadlines() {
    let (o, _) = origin(|_| Reply::ok("fine").header("Cache-Control", "max-age=60"));
    let settings = [
        "server.request_timeout=1s".to_string(),
        "server.keepalive_timeout=5s".into(),
        "server.client_timeout=5s".into(),
    ];
    let edge = Edge::start(&[o.addr()], &settings);
    // Blank lines, then a real request: served.
    let mut c = connect(edge.addr);
    send(&mut c, "\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(read(&mut c, false).status, 200);
    let mut s = TcpStream::connect(edge.addr).expect("connect");
    assert!(
        closed_while_trickling(&mut s, b"\r\n"),
        "blank lines do not keep a connection"
    );
    let host = [("Host", "x")];
    assert_eq!(edge.request("GET", "/x", &host).header("x-cache"), Some("HIT"));
    let mut s = TcpStream::connect(edge.addr).expect("connect");
    s.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        .expect("head");
    assert!(
        closed_while_trickling(&mut s, b"a"),
        "an unread body is drained no longer than a head"
    );
}

#[test]
fn a_request_pipelined_behind_a_miss_is_answered_in_order() {
    let (o, _) =
        origin(|req| Reply::ok(format!("body of {}", req.path)).header("Cache-Control", "max-age=60"));
    let edge = Edge::start(&[o.addr()], &[]);
    let host = [("Host", "x")];
    edge.request("GET", "/hit", &host);
    assert_eq!(edge.request("GET", "/hit", &host).header("x-cache"), Some("HIT"));
    let mut c = connect(edge.addr);
    send(
        &mut c,
        "GET /miss HTTP/1.1\r\nHost: x\r\n\r\nGET /hit HTTP/1.1\r\nHost: x\r\n\r\nGET /miss2 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    for (path, cache) in [("/miss", "MISS"), ("/hit", "HIT"), ("/miss2", "MISS")] {
        let r = read(&mut c, false);
        assert_eq!(
            (
                r.status,
                r.header("x-cache"),
                String::from_utf8_lossy(&r.body).to_string()
            ),
            (200, Some(cache), format!("body of {path}")),
        );
    }
}

#[test]
fn a_request_id_is_echoed_to_its_own_client_and_never_cached() {
    let (o, _) = origin(|req| {
        let mut r = Reply::ok("img").header("Cache-Control", "max-age=60");
        if let Some(id) = req.header("x-request-id") {
            r = r.header("X-Request-Id", id);
        }
        r
    });
    let edge = Edge::start(&[o.addr()], &[]);
    let r = edge.request("GET", "/i", &[("X-Request-Id", "client-a")]);
    assert_eq!(
        (r.header("x-cache"), r.header("x-request-id")),
        (Some("MISS"), Some("client-a"))
    );
    // Fast path and pingora path (a range) alike.
    let r = edge.request("GET", "/i", &[]);
    assert_eq!(
        (r.header("x-cache"), r.header("x-request-id")),
        (Some("HIT"), None)
    );
    let r = edge.request("GET", "/i", &[("X-Request-Id", "client-b")]);
    assert_eq!(r.header("x-request-id"), Some("client-b"));
    let r = edge.request(
        "GET",
        "/i",
        &[("Range", "bytes=0-1"), ("X-Amzn-Trace-Id", "trace-c")],
    );
    assert_eq!((r.status, r.header("x-request-id")), (206, Some("trace-c")));
    let r = edge.request("GET", "/i", &[("Range", "bytes=0-1")]);
    assert_eq!(r.header("x-request-id"), None);
}
