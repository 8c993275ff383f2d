//! Deadlines on imagehost's connections: a connection that sends nothing, or only part of a
//! request head, is closed by `server.request_timeout`; an upload whose body stalls or trickles
//! gets `408 request_timeout` and nothing is stored; HTTP/1.0 closes unless it asked to stay.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::fixture::{multipart, signature, Backend, Fixture, BOUNDARY};

/// Reads until the server closes (bounded); what it sent.
fn until_closed(s: &mut TcpStream) -> Option<String> {
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut out = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(n) => out.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(String::from_utf8_lossy(&out).into_owned())
            }
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_partial_and_slow_requests_are_cut_off_and_store_nothing() {
    let f = Fixture::start(Backend::Directory, |c, _, _| {
        c.server.request_timeout = Duration::from_secs(1);
        c.server.client_timeout = Duration::from_secs(1);
        c.server.min_body_rate = 50_000;
    })
    .await;
    let addr = f.addr;
    let data = super::fixture::png(32, 32);
    let sig = signature(&f.keys.posting, &data, false);
    let outcome = tokio::task::spawn_blocking(move || {
        // Silent, then a partial head: both closed.
        let mut silent = TcpStream::connect(addr).expect("connect");
        let silent = until_closed(&mut silent);
        let mut partial = TcpStream::connect(addr).expect("connect");
        partial.write_all(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n").expect("head");
        let partial = until_closed(&mut partial);
        // An upload whose body stops half way.
        let body = multipart("file", Some("a.png"), &data);
        let mut stalled = TcpStream::connect(addr).expect("connect");
        let head = format!(
            "POST /alice/{sig} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stalled.write_all(head.as_bytes()).expect("head");
        stalled.write_all(&body[..body.len() / 2]).expect("half the body");
        let stalled = until_closed(&mut stalled);
        // HTTP/1.0 without keep-alive: answered and closed.
        let mut old = TcpStream::connect(addr).expect("connect");
        old.write_all(b"GET /healthcheck HTTP/1.0\r\n\r\n").expect("request");
        let old = until_closed(&mut old);
        (silent, partial, stalled, old)
    })
    .await
    .expect("join");
    let (silent, partial, stalled, old) = outcome;
    assert_eq!(
        silent.as_deref(),
        Some(""),
        "a silent connection is closed without an answer"
    );
    let partial = partial.expect("closed");
    assert!(
        partial.is_empty() || partial.starts_with("HTTP/1.1 408"),
        "{partial}"
    );
    let stalled = stalled.expect("closed");
    assert!(
        stalled.starts_with("HTTP/1.1 408") && stalled.contains("request_timeout"),
        "{stalled}"
    );
    let old = old.expect("closed after its answer");
    assert!(
        old.starts_with("HTTP/1.0 200") || old.starts_with("HTTP/1.1 200"),
        "{old}"
    );
    assert!(f.keys_on(0).await.is_empty(), "nothing was stored");
    f.stop().await;
}
