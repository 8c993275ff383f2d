//! Every HTTP/1 client connection is driven from here, one request at a time: the request head is
//! read under deadlines (HAProxy's `timeout http-request` for the whole head, counted from the
//! accept for the first request and from its first byte for later ones, and `timeout
//! http-keep-alive` for the idle time before a later request), then a fresh hit in memory is
//! answered by the fast path below, and anything else is handed to pingora with the bytes of that
//! one request put back ([`conn::Conn`]); pingora answers it and hands the connection back for the
//! next one. So a silent or slow client is closed by the deadline (a partial head gets a 408),
//! an oversized head gets a 431, and requests pipelined behind a miss are answered in order.
//! HTTP/2 connections are pingora's own (`server.h2_idle_timeout`).
//!
//! Fast-path answers are the ones pingora gives for the same hit: the stored headers, `Age`,
//! `X-Cache: HIT`, the edge's CORS answer (`Access-Control-Allow-Origin` echoed, `Vary:
//! Origin`), the client's own request id echoed, and keep-alive within `server.keepalive_timeout`
//! and `server.keepalive_requests`, the status line and headers made once per object and one
//! `writev` per response. TLS connections get the deadlines; their hits go through pingora.

pub mod conn;
pub mod request;

use std::fmt::Write as _;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use pingora::time::fast_timeout::fast_timeout;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cache::key;
use crate::hot::HotKey;
use crate::metrics;
use crate::state::State;
use conn::Conn;
use request::{Candidate, Parsed};

/// Read buffer reserved per read while waiting for a request.
const READ_CHUNK: usize = 4096;

pub struct HitPath<A> {
    inner: Arc<A>,
    state: Arc<State>,
}

impl<A> HitPath<A> {
    pub fn new(inner: A, state: Arc<State>) -> Self {
        Self {
            inner: Arc::new(inner),
            state,
        }
    }
}

/// How waiting for a request head ended.
enum Head {
    /// A complete head of this many bytes is at the start of the buffer.
    Ready(usize),
    /// The client closed, or stayed idle past the keep-alive limit: close quietly.
    Gone,
    /// The deadline passed with part of a head read (408), or before a first byte (close).
    TimedOut { partial: bool },
    /// More than `server.max_request_head_bytes` without the end of a head (431).
    TooLarge,
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for HitPath<A> {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return self.inner.process_new(stream, shutdown).await;
        }
        self.serve(Box::new(Conn::new(stream)), shutdown).await;
        None
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await
    }
}

impl<A: HttpServerApp + Send + Sync + 'static> HitPath<A> {
    async fn serve(&self, mut conn: Box<Conn>, shutdown: &ShutdownWatch) {
        let server = &self.state.config.server;
        let fast = self.state.cache.is_some() && !conn.is_tls();
        let accepted = Instant::now();
        let mut buf = BytesMut::new();
        let mut served: u32 = 0;
        loop {
            let len = match self.read_head(&mut conn, &mut buf, served == 0, accepted).await {
                Head::Ready(len) => len,
                Head::Gone => return,
                Head::TimedOut { partial: false } => {
                    metrics::CLIENT_TIMEOUTS.with_label_values(&["first_byte"]).inc();
                    return;
                }
                Head::TimedOut { partial: true } => {
                    metrics::CLIENT_TIMEOUTS
                        .with_label_values(&["request_head"])
                        .inc();
                    return refuse(
                        &mut conn,
                        408,
                        "request_timeout",
                        "request head not received in time",
                    )
                    .await;
                }
                Head::TooLarge => {
                    metrics::LIMITED.with_label_values(&["head_size"]).inc();
                    return refuse(
                        &mut conn,
                        431,
                        "request_header_fields_too_large",
                        "request head too large",
                    )
                    .await;
                }
            };
            let hit = match fast.then(|| request::parse(&buf[..len])) {
                Some(Parsed::Candidate(c)) => self.lookup(&c).map(|h| (h, c.close)),
                _ => None,
            };
            if let Some((response, close)) = hit {
                let done = close || served + 1 >= server.keepalive_requests || *shutdown.borrow();
                // Counted before the write so that a client that has read the answer always sees
                // it in the metrics (a write that then fails is a client gone mid-answer).
                metrics::response(200);
                metrics::cache_result("hit");
                metrics::FAST_HITS.inc();
                metrics::SENT_BYTES.inc_by(response.body.as_ref().map_or(0, |b| b.len() as u64));
                match write(&mut conn, &response, done, server.client_timeout).await {
                    Ok(()) => {}
                    Err(e) => {
                        if e.kind() == std::io::ErrorKind::TimedOut {
                            metrics::CLIENT_TIMEOUTS.with_label_values(&["write"]).inc();
                        }
                        return;
                    }
                }
                buf.advance(len);
                served += 1;
                if done {
                    let _ = conn.shutdown().await;
                    return;
                }
                continue;
            }
            // pingora takes this one request: its head, and what was read of its body (a body
            // it then reads past into a pipelined request makes it close after answering).
            let handed = if request::has_body(&buf[..len]) {
                buf.split().freeze()
            } else {
                buf.split_to(len).freeze()
            };
            conn.rewind(handed);
            let mut session = ServerSession::new_http1(conn);
            session.set_keepalive(Some(server.keepalive_timeout.as_secs()));
            // pingora's own per-read and per-write limits are `timeout client`; a body it
            // drains unread (a hit for a request that sent one) gets no longer than a head.
            session.set_read_timeout(Some(server.client_timeout));
            session.set_write_timeout(Some(server.client_timeout));
            session.set_total_drain_timeout(Some(server.request_timeout));
            session
                .set_keepalive_reuses_remaining(Some(server.keepalive_requests.saturating_sub(served + 1)));
            let Some(reused) = self.inner.process_new_http(session, shutdown).await else {
                return;
            };
            let (stream, _) = reused.consume();
            conn = match stream.into_any().downcast::<Conn>() {
                Ok(c) => c,
                Err(_) => return,
            };
            served += 1;
            if served >= server.keepalive_requests {
                return;
            }
        }
    }

    /// Reads until `buf` starts with a complete request head, under the deadlines.
    async fn read_head(&self, conn: &mut Conn, buf: &mut BytesMut, first: bool, accepted: Instant) -> Head {
        let server = &self.state.config.server;
        // The whole head: from the accept for a first request, from its first byte for a later
        // one (before that, the keep-alive idle limit applies).
        let mut deadline = first.then(|| accepted + server.request_timeout);
        // How much of `buf` is known to hold no head end (a trickled head is not rescanned).
        let mut scanned: usize = 0;
        loop {
            // Empty lines before a request line are ignored (RFC 9112 §2.2), but they count as
            // the head having begun: they cannot keep an idle connection alive.
            let blank = buf.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
            if blank > 0 {
                buf.advance(blank);
                scanned = scanned.saturating_sub(blank);
                deadline.get_or_insert_with(|| Instant::now() + server.request_timeout);
            }
            if !buf.is_empty() {
                if let Some(len) = request::head_end(buf, scanned) {
                    return Head::Ready(len);
                }
                scanned = buf.len();
                if buf.len() > server.max_request_head_bytes {
                    return Head::TooLarge;
                }
                deadline.get_or_insert_with(|| Instant::now() + server.request_timeout);
            }
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => server.keepalive_timeout,
            };
            buf.reserve(READ_CHUNK);
            // pingora's coarse timer: registered only if the read has to wait, and far cheaper
            // per request than a tokio timer.
            match fast_timeout(wait, conn.read_buf(buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return Head::Gone,
                Err(_) if deadline.is_none() => return Head::Gone,
                Err(_) => {
                    return Head::TimedOut {
                        partial: !buf.is_empty(),
                    }
                }
            }
        }
    }

    /// The response for `c` if it is a fresh memory hit the fast path serves.
    fn lookup(&self, c: &Candidate<'_>) -> Option<Response> {
        let cache = self.state.cache?;
        let key = key::cache_key(c.host, c.path, c.query);
        let hit = cache.store.memory_hit(&key, SystemTime::now())?;
        // Fast-path objects have no variants: the `Accept` class does not matter for them.
        self.state.hot.record(|| HotKey {
            host: key::normalise_host(c.host),
            url: key::url_part(c.path, c.query),
            accept: String::new(),
        });
        let mut head = BytesMut::with_capacity(hit.head.len() + 160);
        head.put_slice(&hit.head);
        // Formatted straight into the head (BytesMut has room reserved), no String per hit.
        let _ = write!(head, "Age: {}\r\n", hit.age_secs);
        if let Some(origin) = c.origin {
            head.put_slice(b"Access-Control-Allow-Origin: ");
            head.put_slice(origin);
            head.put_slice(b"\r\n");
        }
        if let Some(id) = c.request_id {
            head.put_slice(b"X-Request-Id: ");
            head.put_slice(id);
            head.put_slice(b"\r\n");
        }
        head.put_slice(b"Accept-Ranges: bytes\r\nVary: Origin\r\nX-Cache: HIT\r\n");
        Some(Response {
            head,
            body: (!c.head_only).then_some(hit.body),
        })
    }
}

struct Response {
    /// Everything but the `Connection` line and the blank line that ends the head.
    head: BytesMut,
    body: Option<Bytes>,
}

/// Writes the head and body with as few system calls as the socket allows (one `writev`).
/// Writes the answer; a client that takes nothing for `stall` is cut off (a slow one that keeps
/// reading gets the whole answer, however long it is).
async fn write(conn: &mut Conn, r: &Response, close: bool, stall: Duration) -> std::io::Result<()> {
    let timed_out = || std::io::Error::from(std::io::ErrorKind::TimedOut);
    let tail: &[u8] = if close {
        b"Connection: close\r\n\r\n"
    } else {
        b"Connection: keep-alive\r\n\r\n"
    };
    let body: &[u8] = r.body.as_deref().unwrap_or_default();
    let mut parts = [IoSlice::new(&r.head), IoSlice::new(tail), IoSlice::new(body)];
    let mut slices: &mut [IoSlice<'_>] = &mut parts;
    while !slices.is_empty() {
        let n = fast_timeout(stall, conn.write_vectored(slices))
            .await
            .map_err(|_| timed_out())??;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    fast_timeout(stall, conn.flush()).await.map_err(|_| timed_out())?
}

/// Answers with an error and closes (a bounded write: the client may not be reading).
async fn refuse(conn: &mut Conn, status: u16, error: &str, message: &str) {
    metrics::response(status);
    let body = serde_json::json!({ "error": error, "message": message }).to_string();
    let reason = match status {
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let send = async {
        conn.write_all(head.as_bytes()).await?;
        conn.write_all(body.as_bytes()).await?;
        conn.flush().await
    };
    let _ = fast_timeout(Duration::from_secs(1), send).await;
    let _ = fast_timeout(Duration::from_secs(1), conn.shutdown()).await;
}
