//! Fetching `/p/` originals (§1.4 step 9, D9): the SSRF guard enforced in the resolver (the only
//! addresses the client connects to are the ones checked), redirects followed by hand with every
//! hop re-checked, 5 s connect / 5 s to headers / 60 s read, the size cap enforced while the body
//! streams, and the type sniffed from the first bytes (the upstream Content-Type is ignored).

pub mod guard;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio::time::Instant;
use url::Url;

use crate::inputs::{Held, Inputs};
use crate::metrics::FETCHES;
use crate::sniff::{accepted_image, SNIFF_LEN};
use crate::ApiError;
pub use guard::Blocked;

pub const USER_AGENT: &str = "HiveProxy/1.0 (+https://gitlab.syncad.com/hive/imagehoster)";

#[derive(Debug, Clone)]
pub struct FetchConfig {
    pub allow_loopback: bool,
    pub max_bytes: u64,
    pub connect_timeout: Duration,
    pub header_timeout: Duration,
    pub read_timeout: Duration,
    pub max_redirects: usize,
    pub resolve: BTreeMap<String, Vec<IpAddr>>,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("blocked: {0}")]
    Blocked(Blocked),
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    #[error("upstream timed out ({0})")]
    Timeout(&'static str),
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    #[error("upstream answered {0}")]
    Status(u16),
    #[error("upstream body larger than {0} bytes")]
    TooLarge(u64),
    #[error("upstream body is not an accepted image")]
    NotImage,
    #[error("no room for the original: {0}")]
    Busy(crate::inputs::Full),
}

impl FetchError {
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::Blocked(_) => "blocked",
            FetchError::Unreachable(_) => "unreachable",
            FetchError::Timeout(_) => "timeout",
            FetchError::TooManyRedirects(_) => "redirects",
            FetchError::Status(_) => "status",
            FetchError::TooLarge(_) => "too_large",
            FetchError::NotImage => "not_image",
            FetchError::Busy(_) => "busy",
        }
    }

    /// OH's answers: a thrown fetch is 400 upstream_error, a non-2xx or non-image 400
    /// invalid_image, an oversize body 413.
    pub fn to_api(&self) -> ApiError {
        match self {
            FetchError::Blocked(_)
            | FetchError::Unreachable(_)
            | FetchError::Timeout(_)
            | FetchError::TooManyRedirects(_) => ApiError::UpstreamError,
            FetchError::Status(_) | FetchError::NotImage => ApiError::InvalidImage,
            FetchError::TooLarge(_) => ApiError::PayloadTooLarge,
            FetchError::Busy(_) => ApiError::Unavailable("originals in memory at their budget".into()),
        }
    }
}

/// A fetched original and its sniffed type.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Bytes,
    pub mime: &'static str,
}

pub struct Fetcher {
    client: reqwest::Client,
    config: FetchConfig,
}

/// Resolves, then refuses the whole name if any address is not public.
struct GuardedResolver {
    allow_loopback: bool,
    fixed: BTreeMap<String, Vec<IpAddr>>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow_loopback;
        let fixed = self.fixed.get(name.as_str()).cloned();
        Box::pin(async move {
            let host = name.as_str().to_string();
            guard::check_name(&host, allow)?;
            let addrs: Vec<SocketAddr> = match fixed {
                Some(ips) => ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect(),
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            for a in &addrs {
                guard::check_addr(a.ip(), allow)?;
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

fn blocked_in(e: &(dyn std::error::Error + 'static)) -> Option<Blocked> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(b) = err.downcast_ref::<Blocked>() {
            return Some(b.clone());
        }
        cur = err.source();
    }
    None
}

impl Fetcher {
    pub fn new(config: FetchConfig) -> Result<Fetcher, String> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                allow_loopback: config.allow_loopback,
                fixed: config.resolve.clone(),
            }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(config.connect_timeout)
            .user_agent(USER_AGENT)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("proxy HTTP client: {e}"))?;
        Ok(Fetcher { client, config })
    }

    /// Fetches `url`, holding room in `inputs` for the body as it grows (all of it at once when
    /// the length is announced) in `held`, which the caller keeps as long as the bytes live.
    pub async fn fetch(&self, url: &Url, inputs: &Inputs, held: &Held) -> Result<Fetched, FetchError> {
        let result = self.fetch_inner(url, inputs, held).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        FETCHES.with_label_values(&[outcome]).inc();
        if let Err(e) = &result {
            tracing::info!(url = %url, error = %e, "proxy fetch failed");
        }
        result
    }

    async fn fetch_inner(&self, url: &Url, inputs: &Inputs, held: &Held) -> Result<Fetched, FetchError> {
        let c = &self.config;
        let mut url = url.clone();
        let mut hops = 0;
        let resp = loop {
            guard::check_url(&url, c.allow_loopback).map_err(FetchError::Blocked)?;
            let sent = tokio::time::timeout(c.header_timeout, self.client.get(url.clone()).send()).await;
            let resp = match sent {
                Err(_) => return Err(FetchError::Timeout("headers")),
                Ok(Err(e)) => {
                    if let Some(b) = blocked_in(&e) {
                        return Err(FetchError::Blocked(b));
                    }
                    if e.is_timeout() {
                        return Err(FetchError::Timeout("connect"));
                    }
                    return Err(FetchError::Unreachable(e.to_string()));
                }
                Ok(Ok(r)) => r,
            };
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            match (status, location) {
                (301..=308, Some(loc)) if status != 304 && status != 305 && status != 306 => {
                    hops += 1;
                    if hops > c.max_redirects {
                        return Err(FetchError::TooManyRedirects(c.max_redirects));
                    }
                    url = url
                        .join(&loc)
                        .map_err(|e| FetchError::Unreachable(format!("bad redirect `{loc}`: {e}")))?;
                }
                _ => break resp,
            }
        };
        if !resp.status().is_success() {
            return Err(FetchError::Status(resp.status().as_u16()));
        }
        if resp.content_length().is_some_and(|n| n > c.max_bytes) {
            return Err(FetchError::TooLarge(c.max_bytes));
        }
        let deadline = Instant::now() + c.read_timeout;
        if let Some(n) = resp.content_length() {
            inputs.hold(held, n).await.map_err(FetchError::Busy)?;
        }
        let mut resp = resp;
        let mut body = BytesMut::new();
        let mut sniffed = None;
        loop {
            let chunk = match tokio::time::timeout_at(deadline, resp.chunk()).await {
                Err(_) => return Err(FetchError::Timeout("body")),
                Ok(Err(e)) => return Err(FetchError::Unreachable(e.to_string())),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(c))) => c,
            };
            let len = body.len() as u64 + chunk.len() as u64;
            if len > c.max_bytes {
                return Err(FetchError::TooLarge(c.max_bytes));
            }
            if len > held.bytes() {
                let room = (len + crate::inputs::STEP).min(c.max_bytes);
                tokio::time::timeout_at(deadline, inputs.hold(held, room))
                    .await
                    .map_err(|_| FetchError::Timeout("body"))?
                    .map_err(FetchError::Busy)?;
            }
            body.extend_from_slice(&chunk);
            if sniffed.is_none() && body.len() >= SNIFF_LEN {
                sniffed = Some(accepted(&body)?);
            }
        }
        let mime = match sniffed {
            Some(m) => m,
            None => accepted(&body)?,
        };
        Ok(Fetched {
            bytes: body.freeze(),
            mime,
        })
    }
}

/// The sniffed type if it is one the proxy accepts (SVG and everything else are refused).
fn accepted(head: &[u8]) -> Result<&'static str, FetchError> {
    accepted_image(head).ok_or(FetchError::NotImage)
}
