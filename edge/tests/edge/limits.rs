//! Limits: 413 before an oversize body is read, 429 past the per-IP upload rate, slow-loris
//! connections and huge streamed bodies that do not grow memory, and the connection cap.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use harness::origin::Reply;

use crate::support::{count, origin, Edge};

#[test]
fn an_oversize_upload_gets_413_before_its_body_is_sent() {
    let (o, hits) = origin(|_| Reply::ok("stored"));
    let edge = Edge::start(&[o.addr()], &["limits.max_body_bytes=1000000".into()]);
    let head = "POST /hive.user/sig HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 50000000\r\n\r\n";
    let started = Instant::now();
    let r = harness::http::raw(edge.addr, head.as_bytes(), false).expect("response without the body");
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("payload_too_large"));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(count(&hits), 0, "nothing reached imagehost");
    // A body within the limit goes through.
    let r = harness::http::request(edge.addr, "POST", "/hive.user/sig", &[], &[7u8; 1000]).expect("upload");
    assert_eq!((r.status, r.text().as_str()), (200, "stored"));
}

#[test]
fn uploads_past_the_per_ip_rate_get_429() {
    let (o, hits) = origin(|_| Reply::ok("stored"));
    let edge = Edge::start(&[o.addr()], &["limits.uploads_per_second=3".into()]);
    let statuses: Vec<u16> = (0..8)
        .map(|_| {
            harness::http::request(edge.addr, "POST", "/u/sig", &[], b"data")
                .expect("post")
                .status
        })
        .collect();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(limited >= 4, "{statuses:?}");
    assert!(count(&hits) <= 4 && count(&hits) >= 3, "{statuses:?}");
    let r = harness::http::request(edge.addr, "POST", "/u/sig", &[], b"data").expect("post");
    if r.status == 429 {
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    // Reads are never rate-limited.
    assert!((0..20).all(|i| edge.get(&format!("/r/{i}")).status == 200));
}

#[test]
fn slow_loris_connections_do_not_grow_memory_and_real_clients_are_served() {
    let (o, _) = origin(|_| Reply::ok("fine").header("Cache-Control", "max-age=60"));
    let edge = Edge::start(&[o.addr()], &[]);
    edge.get("/warm");
    let before = edge.rss_kib();
    let mut held = Vec::new();
    for i in 0..500 {
        let mut s = TcpStream::connect(edge.addr).expect("connect");
        s.write_all(format!("GET /slow/{i} HTTP/1.1\r\nHost: x\r\nX-A: ").as_bytes())
            .expect("partial header");
        held.push(s);
    }
    // Dribble a byte on each, as a slow-loris client does.
    for _ in 0..3 {
        for s in &mut held {
            let _ = s.write_all(b"a");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = edge.get("/warm");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "fine"),
        "a real client is served meanwhile"
    );
    let after = edge.rss_kib();
    let grown = after.saturating_sub(before);
    eprintln!("rss {before} KiB -> {after} KiB with 500 slow connections (+{grown} KiB)");
    assert!(
        grown < 48 * 1024,
        "500 slow-loris connections grew RSS by {grown} KiB"
    );
    drop(held);
}

#[test]
fn the_connection_cap_closes_excess_connections_at_accept() {
    let (o, _) = origin(|_| Reply::ok("fine"));
    let edge = Edge::start(&[o.addr()], &["server.max_connections=20".into()]);
    let mut held: Vec<TcpStream> = (0..40)
        .map(|_| {
            let s = TcpStream::connect(edge.addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let closed = held
        .iter_mut()
        .filter_map(|s| {
            let mut b = [0u8; 1];
            let closed = match s.read(&mut b) {
                Ok(0) => true,
                Ok(_) => false,
                // A timeout means still open; a reset means closed by the edge.
                Err(e) => !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            };
            closed.then_some(())
        })
        .count();
    assert!(closed >= 15, "{closed} of 40 connections closed with a cap of 20");
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(edge.get("/after").status, 200, "slots are given back");
}

#[test]
fn a_huge_streamed_upload_is_cut_and_memory_stays_flat() {
    let (o, _) = origin(|_| Reply::ok("stored"));
    let edge = Edge::start(
        &[o.addr()],
        &[
            "limits.max_body_bytes=1000000".into(),
            "limits.uploads_per_second=0".into(),
        ],
    );
    let before = edge.rss_kib();
    let mut s = TcpStream::connect(edge.addr).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"POST /u/sig HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .expect("head");
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0usize;
    for _ in 0..1024 {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if s.write_all(&framed).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let after = edge.rss_kib();
    eprintln!(
        "sent {} MiB of a chunked upload; rss {before} -> {after} KiB",
        sent >> 20
    );
    assert!(sent < 64 << 20, "the edge stopped reading the oversize body");
    assert!(
        after.saturating_sub(before) < 32 * 1024,
        "rss {before} -> {after} KiB"
    );
    assert_eq!(edge.get("/alive").status, 200);
}
