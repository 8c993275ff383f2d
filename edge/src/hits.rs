//! The hit fast path: on plain HTTP/1.1 connections, requests for fresh objects in the memory
//! cache are answered here, before pingora's per-request machinery, with the status line and
//! headers made once per object and one `writev` per response. The first request that is not
//! such a hit (a miss, a range, a purge, a partial or malformed head, anything) hands the
//! connection to pingora with every byte read so far put back, and pingora serves it from then
//! on. TLS connections always go to pingora.
//!
//! Answers are the ones pingora gives for the same hit: the stored headers, `Age`, `X-Cache:
//! HIT`, the edge's CORS answer (`Access-Control-Allow-Origin` echoed, `Vary: Origin`), and
//! keep-alive within `server.keepalive_timeout` and `server.keepalive_requests`.

pub mod request;

use std::fmt::Write as _;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Buf, BufMut, BytesMut};
use pingora::apps::ServerApp;
use pingora::protocols::l4::stream::Stream as TcpStream;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use pingora::time::fast_timeout::fast_timeout;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cache::key;
use crate::{metrics, State};
use request::{Candidate, Parsed};

/// Read buffer reserved while waiting for a request. A head that does not arrive complete in one
/// read goes to pingora, so the buffer never grows past what one read returns.
const READ_CHUNK: usize = 1024;

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

enum Next {
    /// The connection is finished (closed by either side, idle too long, or shutting down).
    Close,
    /// Hand the connection and these unread bytes to pingora.
    Pingora(Box<TcpStream>, BytesMut),
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for HitPath<A> {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        if self.state.cache.is_none() || !stream.as_any().is::<TcpStream>() {
            return self.inner.process_new(stream, shutdown).await;
        }
        let Ok(tcp) = stream.into_any().downcast::<TcpStream>() else {
            return None; // cannot happen: checked just above
        };
        match self.serve(tcp, shutdown).await {
            Next::Close => None,
            Next::Pingora(mut tcp, unread) => {
                tcp.rewind(&unread);
                self.inner.process_new(tcp, shutdown).await
            }
        }
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

impl<A> HitPath<A> {
    async fn serve(&self, mut tcp: Box<TcpStream>, shutdown: &ShutdownWatch) -> Next {
        let server = &self.state.config.server;
        let mut buf = BytesMut::new();
        let mut served: u32 = 0;
        loop {
            if buf.is_empty() {
                // Between requests the idle keep-alive limit applies (before the first one the
                // client gets as long as pingora gives it). A shutdown does not close an idle
                // connection, as in pingora: a request may be on its way, and would be lost; the
                // next answer says `Connection: close` instead.
                buf.reserve(READ_CHUNK);
                let read = tcp.read_buf(&mut buf);
                // pingora's coarse timer: registered only if the read has to wait, and far
                // cheaper per request than a tokio timer.
                let got = if served > 0 {
                    match fast_timeout(server.keepalive_timeout, read).await {
                        Ok(r) => r,
                        Err(_) => return Next::Close,
                    }
                } else {
                    read.await
                };
                if !matches!(got, Ok(n) if n > 0) {
                    return Next::Close;
                }
            }
            // A partial head (a slow client, or the rest of a pipelined request still on its way)
            // goes to pingora as well, which bounds the wait for the rest by its own rules.
            let hit = match request::parse(&buf) {
                Parsed::Candidate(c) => self.lookup(&c).map(|h| (h, c.len, c.close)),
                Parsed::Partial | Parsed::Other => None,
            };
            let Some((response, len, close)) = hit else {
                return Next::Pingora(tcp, buf);
            };
            let done = close || served + 1 >= server.keepalive_requests || *shutdown.borrow();
            // Counted before the write so that a client that has read the answer always sees
            // it in the metrics (a write that then fails is a client gone mid-answer).
            metrics::response(200);
            metrics::cache_result("hit");
            metrics::FAST_HITS.inc();
            if write(&mut tcp, &response, done).await.is_err() {
                return Next::Close;
            }
            buf.advance(len);
            served += 1;
            if done {
                let _ = tcp.shutdown().await;
                return Next::Close;
            }
        }
    }

    /// The response for `c` if it is a fresh memory hit the fast path serves.
    fn lookup(&self, c: &Candidate<'_>) -> Option<Response> {
        let cache = self.state.cache?;
        let key = key::cache_key(c.host, c.path, c.query);
        let hit = cache.store.memory_hit(&key, SystemTime::now())?;
        let mut head = BytesMut::with_capacity(hit.head.len() + 128);
        head.put_slice(&hit.head);
        // Formatted straight into the head (BytesMut has room reserved), no String per hit.
        let _ = write!(head, "Age: {}\r\n", hit.age_secs);
        if let Some(origin) = c.origin {
            head.put_slice(b"Access-Control-Allow-Origin: ");
            head.put_slice(origin);
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
    body: Option<bytes::Bytes>,
}

/// Writes the head and body with as few system calls as the socket allows (one `writev`).
async fn write(tcp: &mut TcpStream, r: &Response, close: bool) -> std::io::Result<()> {
    let tail: &[u8] = if close {
        b"Connection: close\r\n\r\n"
    } else {
        b"Connection: keep-alive\r\n\r\n"
    };
    let body: &[u8] = r.body.as_deref().unwrap_or_default();
    let mut parts = [IoSlice::new(&r.head), IoSlice::new(tail), IoSlice::new(body)];
    let mut slices: &mut [IoSlice<'_>] = &mut parts;
    while !slices.is_empty() {
        let n = tcp.write_vectored(slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    tcp.flush().await
}
