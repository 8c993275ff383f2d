//! Per-client shares of cold renders, the costliest work there is: a token bucket per client
//! (IPv6 clients by their /64, since one subscriber holds a whole /64) and one per source host,
//! spent only when a `/p/` answer must be rendered (hot-cache and proxy-bucket hits never
//! count). A client past its share gets 429 with the seconds until a token is back, so one
//! client asking for many distinct sizes cannot take the whole CPU pool. Which address is the
//! client is `service::net::client_ip`'s answer (the edges are trusted proxies).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use parking_lot::Mutex;
use service::net::{client_ip, Cidr};

use crate::metrics::RENDER_LIMITED;
use crate::ApiError;

/// Buckets kept at most per limiter; past it, full (idle) buckets are dropped first.
const MAX_BUCKETS: usize = 100_000;

/// Token buckets keyed by `K`: `burst` renders at once, refilled at `burst` per `interval`.
#[derive(Debug)]
pub struct Limiter<K> {
    burst: f64,
    per_sec: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// `burst == 0` turns the limiter off.
    pub fn new(burst: u32, interval: Duration) -> Self {
        Self {
            burst: burst as f64,
            per_sec: burst as f64 / interval.as_secs_f64().max(0.001),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`: `Ok`, or `Err(seconds until one is back)`.
    pub fn take(&self, key: &K, now: Instant) -> Result<(), u64> {
        if self.burst == 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            let (burst, rate) = (self.burst, self.per_sec);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
            if buckets.len() >= MAX_BUCKETS {
                // Every bucket is in use: refuse newcomers rather than grow without bound.
                return Err(1);
            }
        }
        let (tokens, at) = buckets.entry(key.clone()).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_sec).ceil().max(1.0) as u64)
        }
    }
}

/// The render shares of every client and source host.
#[derive(Debug)]
pub struct RenderLimits {
    clients: Limiter<u128>,
    hosts: Limiter<String>,
    trusted: Vec<Cidr>,
}

impl RenderLimits {
    pub fn new(config: &crate::Config) -> Result<Self, String> {
        let p = &config.proxy;
        Ok(Self {
            clients: Limiter::new(p.renders_per_client, p.render_interval),
            hosts: Limiter::new(p.renders_per_host, p.render_interval),
            trusted: config.server.trusted()?,
        })
    }

    /// The client behind `peer` (see `service::net::client_ip`).
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let xff = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        peer.map(|p| client_ip(p, xff, &self.trusted))
    }

    /// Spends one cold render of `client`'s share and `host`'s; a 429 naming the wait when
    /// either is spent. A request with no known client (in-process callers) is not limited.
    pub fn take(&self, client: Option<IpAddr>, host: Option<&str>) -> Result<(), ApiError> {
        let now = Instant::now();
        if let Some(ip) = client {
            if let Err(wait) = self.clients.take(&client_key(ip), now) {
                RENDER_LIMITED.with_label_values(&["client"]).inc();
                tracing::info!(client = %ip, wait, "cold renders past the client's share");
                return Err(ApiError::RenderLimit(wait));
            }
        }
        if let Some(host) = host {
            if let Err(wait) = self.hosts.take(&host.to_ascii_lowercase(), now) {
                RENDER_LIMITED.with_label_values(&["host"]).inc();
                tracing::info!(host, wait, "cold renders past the source host's share");
                return Err(ApiError::RenderLimit(wait));
            }
        }
        Ok(())
    }
}

/// The bucket key of a client address: IPv4 whole, IPv6 by its /64 (IPv4-mapped as IPv4).
pub fn client_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u32::from(v4) as u128,
            None => (u128::from(v6) >> 64 << 64) | (1 << 32),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_is_spent_then_refills() {
        let l: Limiter<u128> = Limiter::new(3, Duration::from_secs(60));
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.take(&1, t), Ok(()));
        }
        assert_eq!(l.take(&1, t), Err(20), "one token back every 20 s");
        assert_eq!(l.take(&2, t), Ok(()), "another client has its own share");
        assert_eq!(l.take(&1, t + Duration::from_secs(21)), Ok(()));
        assert_eq!(l.take(&1, t + Duration::from_secs(21)), Err(19));
        let off: Limiter<u128> = Limiter::new(0, Duration::from_secs(60));
        for _ in 0..100 {
            assert_eq!(off.take(&1, t), Ok(()));
        }
    }

    #[test]
    fn client_keys() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(client_key(ip("::ffff:192.0.2.1")), client_key(ip("192.0.2.1")));
        assert_ne!(client_key(ip("0.0.0.1")), client_key(ip("::1")));
    }
}
