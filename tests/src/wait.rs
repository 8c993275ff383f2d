//! Bounded readiness waits: poll a condition until it holds or a deadline passes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Polls `check` every `every` until it returns `Some`, for at most `timeout`.
pub fn wait_until<T>(timeout: Duration, every: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Whether `addr` accepts a TCP connection within `timeout` (polled every 20 ms).
pub fn listening(addr: SocketAddr, timeout: Duration) -> bool {
    wait_until(timeout, Duration::from_millis(20), || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()
    })
    .is_some()
}

/// The status code of `GET path` on `addr`, or `None` if nothing answered within a second.
pub fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
