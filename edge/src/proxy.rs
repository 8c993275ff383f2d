//! The `ProxyHttp` phases: limits and purge first, then the cache (key, variance, cacheability,
//! stale serving), then the upstream choice with failover, then the headers clients see.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::cache::key::HashBinary;
use pingora::cache::{CacheKey, CacheMeta, CacheOptionOverrides, CachePhase, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};

use crate::cache::{key, policy};
use crate::hot::HotKey;
use crate::metrics;
use crate::purge;
use crate::state::State;

/// Per-request state.
pub struct Ctx {
    client: IpAddr,
    /// Nodes already tried for this request, in order.
    tried: Vec<SocketAddr>,
    /// The node of the current attempt.
    backend: Option<SocketAddr>,
    attempt_start: Option<Instant>,
    /// Set when the upstream answered 502/503 and the request will be retried on another node.
    retry_on_status: bool,
    body_bytes: u64,
    /// When the request head was read (the body's minimum rate is measured from it).
    started: Instant,
}

pub struct Edge {
    state: Arc<State>,
}

impl Edge {
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }

    fn host(req: &RequestHeader) -> &str {
        req.headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()))
            .unwrap_or("")
    }

    /// The balancing key: host and normalised URL, so one URL always lands on one node.
    fn balance_key(req: &RequestHeader) -> Vec<u8> {
        key::primary(Self::host(req), req.uri.path(), req.uri.query())
    }

    async fn refuse(
        session: &mut Session,
        status: u16,
        error: &str,
        message: &str,
        retry_after: Option<&str>,
    ) -> Result<bool> {
        let body = serde_json::json!({ "error": error, "message": message }).to_string();
        let mut h = ResponseHeader::build(status, Some(4))?;
        h.insert_header("Content-Type", "application/json")?;
        h.insert_header("Content-Length", body.len().to_string())?;
        if let Some(r) = retry_after {
            h.insert_header("Retry-After", r)?;
        }
        // The body was not read: the connection cannot be reused.
        session.set_keepalive(None);
        session.write_response_header(Box::new(h), false).await?;
        session.write_response_body(Some(Bytes::from(body)), true).await?;
        Ok(true)
    }

    fn cache_label(phase: CachePhase) -> &'static str {
        match phase {
            CachePhase::Hit => "HIT",
            CachePhase::Miss => "MISS",
            CachePhase::Stale | CachePhase::StaleUpdating => "STALE",
            CachePhase::Expired => "EXPIRED",
            CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => "REVALIDATED",
            _ => "PASS",
        }
    }
}

fn idempotent(req: &RequestHeader) -> bool {
    req.method == http::Method::GET || req.method == http::Method::HEAD
}

/// A read that imagehost answers from its stores without rendering or fetching: its node gets
/// `upstreams.serve_timeout`, so a node that stalls cannot hold it for the long `read_timeout`
/// renders need (the request then goes to the next node).
fn quick_read(req: &RequestHeader) -> bool {
    let path = req.uri.path();
    idempotent(req) && !path.starts_with("/p/") && !path.starts_with("/u/") && path.starts_with("/D")
}

#[async_trait]
impl ProxyHttp for Edge {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            client: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            tried: Vec::new(),
            backend: None,
            attempt_start: None,
            retry_on_status: false,
            body_bytes: 0,
            started: Instant::now(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
            .unwrap_or(ctx.client);
        // Deadlines for the rest of the request: no progress reading its body or writing the
        // answer for `client_timeout` closes the connection (the head was read under
        // `request_timeout` by the hit path).
        let server = &self.state.config.server;
        session.set_read_timeout(Some(server.client_timeout));
        session.set_write_timeout(Some(server.client_timeout));
        ctx.started = Instant::now();
        let req = session.req_header();
        let xff = req.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        ctx.client = service::net::client_ip(peer, xff, &self.state.trusted_proxies);
        if purge::is_purge_method(req.method.as_str()) {
            self.state.purger.handle(session, peer).await?;
            return Ok(true);
        }

        if !idempotent(req) {
            let limits = &self.state.config.limits;
            let length = req
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if length.is_some_and(|l| l > limits.max_body_bytes) {
                metrics::LIMITED.with_label_values(&["body_size"]).inc();
                let msg = format!("request body is larger than {} bytes", limits.max_body_bytes);
                return Self::refuse(session, 413, "payload_too_large", &msg, None).await;
            }
            if !self.state.upload_rate.allow(ctx.client, Instant::now()) {
                metrics::LIMITED.with_label_values(&["rate"]).inc();
                let msg = format!(
                    "more than {} uploads per second from {}",
                    limits.uploads_per_second, ctx.client
                );
                return Self::refuse(session, 429, "too_many_requests", &msg, Some("1")).await;
            }
        }
        Ok(false)
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // imagehost's quotas and logs are per client: tell it who the client is.
        upstream.insert_header("X-Forwarded-For", ctx.client.to_string())?;
        // The origin is asked for exactly what the cache key names (path and query normalised),
        // so no spelling of a URL can store an answer under another spelling's key.
        let normal = crate::cache::key::url_part(upstream.uri.path(), upstream.uri.query());
        if upstream.uri.path_and_query().map(|p| p.as_str()) != Some(normal.as_str()) {
            match normal.parse::<http::Uri>() {
                Ok(uri) => upstream.set_uri(uri),
                Err(_) => return Error::e_explain(ErrorType::HTTPStatus(400), "malformed URL"),
            }
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _eos: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // Chunked uploads have no Content-Length to refuse up front: count as they stream.
        ctx.body_bytes += body.as_ref().map_or(0, |b| b.len() as u64);
        if ctx.body_bytes > self.state.config.limits.max_body_bytes {
            metrics::LIMITED.with_label_values(&["body_size"]).inc();
            return Error::e_explain(
                ErrorType::HTTPStatus(413),
                "request body over limits.max_body_bytes",
            );
        }
        // A trickle holds a connection and an upstream slot: past the head's own deadline the
        // body must average `min_body_rate` (a body that stops altogether meets client_timeout).
        let server = &self.state.config.server;
        let elapsed = ctx.started.elapsed();
        if elapsed > server.request_timeout
            && (ctx.body_bytes as f64) < server.min_body_rate as f64 * elapsed.as_secs_f64()
        {
            metrics::CLIENT_TIMEOUTS.with_label_values(&["body"]).inc();
            return Error::e_explain(
                ErrorType::HTTPStatus(408),
                "request body slower than server.min_body_rate",
            );
        }
        Ok(())
    }

    fn request_cache_filter(&self, session: &mut Session, _ctx: &mut Ctx) -> Result<()> {
        let Some(cache) = self.state.cache else {
            return Ok(());
        };
        let req = session.req_header();
        if !policy::request_cacheable(req) {
            return Ok(());
        }
        self.state.hot.record(|| HotKey {
            host: key::normalise_host(Self::host(req)),
            url: key::url_part(req.uri.path(), req.uri.query()),
            accept: policy::accept_bucket(&req.headers).into(),
        });
        let mut ov = CacheOptionOverrides::default();
        ov.wait_timeout = Some(cache.lock_wait());
        session.cache.enable(
            cache.store,
            Some(cache.eviction),
            Some(cache.predictor),
            Some(cache.lock),
            Some(ov),
        );
        session
            .cache
            .set_max_file_size_bytes(cache.config.max_object_bytes as usize);
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, _ctx: &mut Ctx) -> Result<CacheKey> {
        let req = session.req_header();
        Ok(key::cache_key(Self::host(req), req.uri.path(), req.uri.query()))
    }

    fn cache_vary_filter(&self, meta: &CacheMeta, _ctx: &mut Ctx, req: &RequestHeader) -> Option<HashBinary> {
        policy::variance(meta.response_header(), &req.headers)
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        _ctx: &mut Ctx,
    ) -> Result<RespCacheable> {
        Ok(policy::response_cacheable(resp, session.req_header()))
    }

    fn should_serve_stale(&self, _session: &mut Session, _ctx: &mut Ctx, error: Option<&Error>) -> bool {
        policy::serve_stale(error)
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let key = Self::balance_key(session.req_header());
        let addr = self
            .state
            .upstreams
            .pick(&key, &ctx.tried)
            .ok_or_else(|| Error::explain(ErrorType::ConnectNoRoute, "no imagehost node left to try"))?;
        ctx.tried.push(addr);
        ctx.backend = Some(addr);
        ctx.attempt_start = Some(Instant::now());
        ctx.retry_on_status = false;
        let quick = quick_read(session.req_header());
        Ok(Box::new(self.state.upstreams.peer(addr, quick)))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let backend = ctx.backend.map(|b| b.to_string()).unwrap_or_default();
        metrics::UPSTREAM_ERRORS
            .with_label_values(&[&backend, "connect"])
            .inc();
        if let Some(addr) = ctx.backend {
            self.state.upstreams.record(addr, None);
        }
        // Nothing reached the node: safe to retry any method on the next one.
        if ctx.tried.len() <= self.state.upstreams.retries()
            && ctx.tried.len() < self.state.upstreams.node_count()
        {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // A `100 Continue` on the way to the real answer: that answer is the one to judge.
        if resp.status.is_informational() {
            return Ok(());
        }
        let backend = ctx.backend.map(|b| b.to_string()).unwrap_or_default();
        policy::take_over_cors(resp)?;
        // imagehost echoes the client's request id; cached, one client's id would be served to
        // everyone. The edge echoes each client's own instead (response_filter).
        policy::drop_echoed_request_id(resp);
        let latency = ctx.attempt_start.take().map(|t| t.elapsed());
        if let Some(l) = latency {
            metrics::UPSTREAM_SECONDS
                .with_label_values(&[&backend])
                .observe(l.as_secs_f64());
        }
        let status = resp.status.as_u16();
        if let Some(addr) = ctx.backend {
            // 502/503 are failures. Other answers are judged by how long their headers took only
            // for reads imagehost answers from its own stores: a render's time is the remote
            // origin's and the image's, which a client chooses, and must not eject a node.
            let failed = matches!(status, 502 | 503);
            let outcome = match (failed, quick_read(session.req_header())) {
                (true, _) => None,
                (false, true) => Some(latency.unwrap_or_default()),
                (false, false) => Some(Duration::ZERO),
            };
            self.state.upstreams.record(addr, outcome);
        }
        if matches!(status, 502 | 503) {
            metrics::UPSTREAM_ERRORS
                .with_label_values(&[&backend, "status"])
                .inc();
            let more = ctx.tried.len() <= self.state.upstreams.retries()
                && ctx.tried.len() < self.state.upstreams.node_count();
            if more && idempotent(session.req_header()) {
                ctx.retry_on_status = true;
                return Error::e_explain(
                    ErrorType::HTTPStatus(status),
                    "upstream overloaded or failing: next node",
                );
            }
        }
        Ok(())
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if ctx.retry_on_status {
            e.set_retry(true);
            return e;
        }
        let backend = ctx.backend.map(|b| b.to_string()).unwrap_or_default();
        metrics::UPSTREAM_ERRORS
            .with_label_values(&[&backend, "proxy"])
            .inc();
        // A node that errs or times out mid-request counts against it, for reads from its
        // stores; a client that went away does not, nor a render (a slow remote origin, which a
        // client picks, would time it out).
        if let (Some(addr), pingora::ErrorSource::Upstream) = (ctx.backend, e.esource()) {
            if quick_read(session.req_header()) {
                self.state.upstreams.record(addr, None);
            }
        }
        let more = ctx.tried.len() <= self.state.upstreams.retries()
            && ctx.tried.len() < self.state.upstreams.node_count();
        if !idempotent(session.req_header()) || session.as_ref().retry_buffer_truncated() || !more {
            e.set_retry(false);
        } else if session.response_written().is_none() {
            // A GET or HEAD that failed before anything reached the client (a node dying
            // mid-request): the next node can answer it.
            e.set_retry(true);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        _ctx: &mut Ctx,
    ) -> Result<()> {
        // `100 Continue` is an interim line, not the answer: no cache label, CORS or Vary on it.
        if resp.status.is_informational() {
            return Ok(());
        }
        let label = if session.cache.enabled() || matches!(session.cache.phase(), CachePhase::Bypass) {
            Self::cache_label(session.cache.phase())
        } else {
            "PASS"
        };
        resp.insert_header("X-Cache", label)?;
        resp.remove_header("Server");
        // Kept with the cached object (tag bans match it), never shown to clients.
        resp.remove_header(crate::cache::tags::HEADER);
        policy::answer_cors(session.req_header(), resp)?;
        policy::echo_request_id(session.req_header(), resp)?;
        // Kept alive only when the request allows it (HTTP/1.0 asks with `Connection:
        // keep-alive`; pingora has read that already), for the configured idle time.
        if session.get_keepalive().is_some() {
            session.set_keepalive(Some(self.state.config.server.keepalive_timeout.as_secs()));
        }
        Ok(())
    }

    /// A client that hangs up once its answer is on the way (a refused upload gets its 400
    /// while the rest of its body is still coming, and then closes) is not the proxy failing:
    /// that is logged at debug, not as pingora's ERROR.
    fn suppress_error_log(&self, session: &Session, _ctx: &Ctx, error: &Error) -> bool {
        let client_left = session.response_written().is_some()
            && matches!(error.esource(), pingora::ErrorSource::Downstream);
        if client_left {
            tracing::debug!(%error, "client closed the connection after its answer began");
        }
        client_left
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, _ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        metrics::response(status);
        metrics::SENT_BYTES.inc_by(session.body_bytes_sent() as u64);
        if !session.cache.enabled() && !matches!(session.cache.phase(), CachePhase::Bypass) {
            return;
        }
        let result = match session.cache.phase() {
            CachePhase::Hit => "hit",
            CachePhase::Miss => "miss",
            CachePhase::Stale | CachePhase::StaleUpdating => "stale",
            CachePhase::Expired => "expired",
            CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => "revalidated",
            CachePhase::Bypass => "bypass",
            _ => "uncacheable",
        };
        metrics::cache_result(result);
        if session.cache.lock_duration().is_some_and(|d| d > Duration::ZERO) {
            metrics::COALESCED.inc();
        }
    }
}
