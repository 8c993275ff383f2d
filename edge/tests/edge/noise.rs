//! What an operator sees: no false alarms in the log and no cache headers on interim answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::support::{connect, read, send, Edge};

/// A node that answers `GET`s with 200, an upload that asks `Expect: 100-continue` with `100
/// Continue` then 200, and any other upload with 400 at once (reading the rest of its body
/// after, as a server that refuses a bad signature does).
fn refusing_node() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || serve(conn));
        }
    });
    addr
}

fn serve(conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut r = BufReader::new(conn);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => head.push(line.to_ascii_lowercase()),
        }
    }
    let length: usize = head
        .iter()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut w = r.get_ref().try_clone().expect("clone");
    let answer = |w: &mut TcpStream, status: &str, body: &str| {
        let _ = write!(
            w,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    if head[0].starts_with("get") {
        let _ = write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nCache-Control: max-age=60\r\nConnection: close\r\n\r\nok"
        );
    } else if head.iter().any(|l| l.starts_with("expect: 100-continue")) {
        let _ = w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        let mut body = vec![0; length];
        if r.read_exact(&mut body).is_ok() {
            answer(&mut w, "200 OK", "stored");
        }
    } else {
        answer(&mut w, "400 Bad Request", "{\"error\":\"invalid_signature\"}");
        let _ = std::io::copy(&mut r, &mut std::io::sink());
    }
}

#[test]
fn a_refused_upload_logs_no_error_and_100_continue_carries_no_cache_headers() {
    let node = refusing_node();
    let edge = Edge::start(&[node], &[]);

    // The client sends part of a large upload, reads its 400, and hangs up.
    let mut conn = connect(edge.addr);
    send(
        &mut conn,
        "POST /someone/sig HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1000000\r\n\r\n",
    );
    let _ = conn.get_mut().write_all(&vec![7u8; 64 * 1024]);
    let answer = read(&mut conn, false);
    assert_eq!(answer.status, 400);
    drop(conn);

    // An upload that asks first: the interim 100 is bare, the final answer is labelled.
    let mut conn = connect(edge.addr);
    send(
        &mut conn,
        "POST /someone/sig HTTP/1.1\r\nHost: x\r\nOrigin: https://hive.blog\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    let interim = read(&mut conn, true);
    assert_eq!(interim.status, 100);
    assert_eq!(interim.header("x-cache"), None, "{:?}", interim.headers);
    assert_eq!(interim.header("vary"), None, "{:?}", interim.headers);
    send(&mut conn, "hello");
    let done = read(&mut conn, false);
    assert_eq!(done.status, 200);
    assert_eq!(done.header("x-cache"), Some("PASS"));

    // A cacheable answer is stored (its header block serialised for the cache) and hit.
    assert_eq!(edge.get("/DQmNoise/a.jpg").header("x-cache"), Some("MISS"));
    let hit = harness::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        (edge.get("/DQmNoise/a.jpg").header("x-cache") == Some("HIT")).then_some(())
    });
    assert!(hit.is_some(), "never a hit");

    // Both answers have passed pingora's logging phase once their statuses are counted.
    let counted = harness::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let m = harness::http::get(edge.admin, "/metrics").ok()?.text();
        (m.contains("edge_responses_total{status=\"400\"} 1")
            && m.contains("edge_responses_total{status=\"200\"}"))
        .then_some(())
    });
    assert!(counted.is_some(), "answers never counted");
    std::thread::sleep(Duration::from_millis(300));
    let log = edge.log();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(!log.contains("compression dictionary"), "{log}");
}

#[test]
fn metrics_carry_the_process_family_and_evictions_count_up() {
    let node = refusing_node();
    let edge = Edge::start(&[node], &[]);
    let m = harness::http::get(edge.admin, "/metrics")
        .expect("metrics")
        .text();
    for family in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "# TYPE edge_cache_evictions_total counter",
    ] {
        assert!(m.contains(family), "{family} missing:\n{m}");
    }
    assert!(!m.contains("# TYPE edge_cache_evictions gauge"), "{m}");
}
