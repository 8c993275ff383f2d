//! Serving an axum app with a deadline on every connection, as HAProxy sets them: the whole
//! request head (and the idle time before it on a kept-alive connection) within `request`
//! (`timeout http-request`), no stall of more than `client` while writing an answer or reading a
//! body (`timeout client`), and a body that averages `min_body_rate` once `request` has passed.
//! Bodies that fail a deadline end in an `io::Error` of kind `TimedOut`, which handlers turn into
//! a 408 ([`is_timeout`]). On shutdown the listener closes and connections drain for `drain`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::Router;
use bytes::Bytes;
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::Sleep;
use tower::ServiceExt;

use crate::Shutdown;

/// The deadlines of every connection of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// The whole request head, and the idle time before it on a kept-alive connection.
    #[serde(with = "humantime_serde")]
    pub request: Duration,
    /// Longest stall writing an answer or reading a request body.
    #[serde(with = "humantime_serde")]
    pub client: Duration,
    /// Bytes per second a request body must average once `request` has passed.
    pub min_body_rate: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            request: Duration::from_secs(10),
            client: Duration::from_secs(30),
            min_body_rate: 8 * 1024,
        }
    }
}

impl Timeouts {
    pub fn validate(&self, what: &str) -> Result<(), String> {
        if self.request.is_zero() || self.client.is_zero() {
            return Err(format!(
                "{what}.request_timeout and {what}.client_timeout must be more than 0 (every connection needs a deadline)"
            ));
        }
        Ok(())
    }
}

/// Whether `e` (or an error it wraps) is a deadline this module enforced.
pub fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::TimedOut)
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Serves `app` on `listener` until `shutdown`, then lets connections finish for at most `drain`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: Shutdown,
    drain: Duration,
    timeouts: Timeouts,
) -> io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(timeouts.request)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let token = shutdown.token();
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = token.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(remote));
            let req = req.map(|b| Body::new(Paced::new(b, timeouts)));
            app.clone().oneshot(req)
        });
        let io = TokioIo::new(WriteDeadline::new(stream, timeouts.client));
        let conn = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(drain) => {
            tracing::warn!(?drain, "drain deadline passed; closing the connections left");
        }
    }
    Ok(())
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}

/// A connection whose writes may not stall longer than `limit` (a client that stops reading).
pub struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// `Ready` passes through (and ends a stall); `Pending` starts or checks the stall's clock.
    fn watch<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(timed_out("client stopped reading the answer"))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, polled)
    }
}

/// A request body that must keep coming: no stall longer than `client`, and on average
/// `min_body_rate` bytes a second once `request` has passed.
pub struct Paced<B> {
    inner: B,
    timeouts: Timeouts,
    started: Instant,
    bytes: u64,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<B> Paced<B> {
    pub fn new(inner: B, timeouts: Timeouts) -> Self {
        Self {
            inner,
            timeouts,
            started: Instant::now(),
            bytes: 0,
            stalled: None,
        }
    }
}

impl<B> http_body::Body for Paced<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.stalled = None;
                self.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
                let elapsed = self.started.elapsed();
                let t = self.timeouts;
                if elapsed > t.request && (self.bytes as f64) < t.min_body_rate as f64 * elapsed.as_secs_f64()
                {
                    return Poll::Ready(Some(Err(
                        timed_out("request body slower than the minimum rate").into()
                    )));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let limit = self.timeouts.client;
                let sleep = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                ready!(sleep.as_mut().poll(cx));
                Poll::Ready(Some(Err(timed_out("request body stalled").into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Where a listener's remote peer is, for handlers (`ConnectInfo<SocketAddr>`).
pub type Peer = ConnectInfo<SocketAddr>;

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn start(t: Timeouts) -> (SocketAddr, Shutdown) {
        let app = Router::new().route("/", get(|| async { "ok" })).route(
            "/upload",
            post(|body: Body| async move {
                match axum::body::to_bytes(body, 1 << 20).await {
                    Ok(b) => format!("got {}", b.len()),
                    Err(e) if is_timeout(&e) => "timed out".into(),
                    Err(e) => format!("error {e}"),
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        tokio::spawn(serve(listener, app, shutdown.clone(), Duration::from_secs(1), t));
        (addr, shutdown)
    }

    async fn read_all(s: &mut TcpStream) -> String {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn silent_and_partial_heads_are_closed_and_bodies_must_keep_coming() {
        let t = Timeouts {
            request: Duration::from_millis(300),
            client: Duration::from_millis(300),
            min_body_rate: 1000,
        };
        let (addr, shutdown) = start(t).await;
        // Silent.
        let mut s = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        let _ = read_all(&mut s).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "closed by the head deadline"
        );
        // Partial head.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let answer = read_all(&mut s).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
        // A stalled body.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            .await
            .unwrap();
        let answer = read_all(&mut s).await;
        assert!(answer.contains("timed out"), "{answer}");
        // A whole request is answered.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert!(read_all(&mut s).await.ends_with("ok"));
        shutdown.trigger();
    }
}
