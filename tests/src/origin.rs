//! A real HTTP/1.1 origin server on loopback for proxy and cache tests: a handler decides each
//! response, and every request is counted. One thread per connection; `Connection: close`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What the origin received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::http::find_header(&self.headers, name)
    }
}

/// What the origin answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync + 'static;

/// A running origin; stopped when dropped.
pub struct Origin {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Origin {
    /// Starts on a free loopback port.
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Origin {
        let listener = TcpListener::bind(("127.0.0.1", crate::free_port()))
            .or_else(|_| TcpListener::bind("127.0.0.1:0"))
            .expect("bind the origin");
        Self::serve_on(listener, handler)
    }

    /// Starts on `addr`, e.g. to bring back an origin that a test stopped (retries for 5 s while
    /// the old socket is released).
    pub fn start_at(addr: SocketAddr, handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Origin {
        let listener = crate::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            TcpListener::bind(addr).ok()
        })
        .expect("bind the origin again");
        Self::serve_on(listener, handler)
    }

    /// Like [`Origin::start`], but keeping each connection open for more requests (HTTP/1.1
    /// keep-alive, as imagehost does) instead of closing it after one answer: for benches, where
    /// a new connection per request would cost the proxies in front more than the real origin
    /// does.
    pub fn start_keep_alive(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Origin {
        let listener = TcpListener::bind(("127.0.0.1", crate::free_port()))
            .or_else(|_| TcpListener::bind("127.0.0.1:0"))
            .expect("bind the origin");
        Self::serve_with(listener, handler, true)
    }

    fn serve_on(
        listener: TcpListener,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> Origin {
        Self::serve_with(listener, handler, false)
    }

    fn serve_with(
        listener: TcpListener,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
        keep_alive: bool,
    ) -> Origin {
        let addr = listener.local_addr().expect("origin address");
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (h, s) = (hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (handler, hits) = (handler.clone(), h.clone());
                std::thread::spawn(move || serve(conn, &*handler, &hits, keep_alive));
            }
        });
        Origin {
            addr,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, handler: &Handler, hits: &AtomicUsize, keep_alive: bool) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    if keep_alive {
        let _ = conn.set_nodelay(true);
    }
    let Ok(write_half) = conn.try_clone() else { return };
    let mut r = BufReader::new(conn);
    while serve_one(&mut r, &write_half, handler, hits, keep_alive) {}
}

/// Reads one request and answers it; whether the connection stays open for another.
fn serve_one(
    r: &mut BufReader<TcpStream>,
    write_half: &TcpStream,
    handler: &Handler,
    hits: &AtomicUsize,
    keep_alive: bool,
) -> bool {
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return false;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return false;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if r.read_exact(&mut body).is_err() {
        return false;
    }
    let again = keep_alive
        && !headers
            .iter()
            .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
    hits.fetch_add(1, Ordering::SeqCst);
    let reply = handler(&Request {
        method: method.clone(),
        path,
        headers,
        body,
    });
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: {}\r\n",
        reply.status,
        reply.body.len(),
        if again { "keep-alive" } else { "close" }
    );
    for (k, v) in &reply.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut w = write_half;
    if again {
        // One write per answer: a kept connection must not wait on Nagle and delayed ACKs.
        let mut all = out.into_bytes();
        if method != "HEAD" {
            all.extend_from_slice(&reply.body);
        }
        return w.write_all(&all).is_ok();
    }
    let _ = w.write_all(out.as_bytes());
    if method != "HEAD" {
        let _ = w.write_all(&reply.body);
    }
    let _ = w.flush();
    false
}
