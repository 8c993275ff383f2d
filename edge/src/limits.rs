//! Request limits: uploads per client IP per second (a fixed window per IP, memory bounded by
//! pruning idle IPs), and the connection cap that wraps the proxy application.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tokio::sync::Semaphore;

use crate::metrics;

const SHARDS: usize = 16;
/// Past this many tracked IPs in one shard, windows that ended are pruned.
const PRUNE_AT: usize = 4096;

/// Counts events per IP in one-second windows.
pub struct RateLimiter {
    per_second: u32,
    shards: Vec<Mutex<HashMap<IpAddr, (Instant, u32)>>>,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Records one event for `ip` at `now`; false when it is over the limit.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        if self.per_second == 0 {
            return true;
        }
        let shard = &self.shards[shard_of(ip)];
        let mut m = shard.lock();
        if m.len() > PRUNE_AT {
            m.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(1));
        }
        let slot = m.entry(ip).or_insert((now, 0));
        if now.duration_since(slot.0) >= Duration::from_secs(1) {
            *slot = (now, 0);
        }
        slot.1 += 1;
        slot.1 <= self.per_second
    }
}

fn shard_of(ip: IpAddr) -> usize {
    let last = match ip {
        IpAddr::V4(v) => v.octets()[3],
        IpAddr::V6(v) => v.octets()[15],
    };
    last as usize % SHARDS
}

/// Wraps a pingora application so at most `max` client connections are served at once; a
/// connection over the cap is closed at accept, before it costs any buffers.
pub struct ConnectionCap<A> {
    inner: Arc<A>,
    permits: Arc<Semaphore>,
}

impl<A> ConnectionCap<A> {
    pub fn new(inner: A, max: usize) -> Self {
        Self {
            inner: Arc::new(inner),
            permits: Arc::new(Semaphore::new(max)),
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ConnectionCap<A> {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let Ok(_permit) = self.permits.clone().try_acquire_owned() else {
            metrics::CONNECTIONS_REFUSED.inc();
            return None;
        };
        metrics::CONNECTIONS.inc();
        let out = self.inner.process_new(stream, shutdown).await;
        metrics::CONNECTIONS.dec();
        out
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_windows() {
        let r = RateLimiter::new(3);
        let a: IpAddr = "1.1.1.1".parse().unwrap();
        let b: IpAddr = "2.2.2.2".parse().unwrap();
        let t0 = Instant::now();
        let got: Vec<bool> = (0..5).map(|_| r.allow(a, t0)).collect();
        assert_eq!(got, [true, true, true, false, false]);
        assert!(r.allow(b, t0), "another IP has its own window");
        assert!(r.allow(a, t0 + Duration::from_millis(1000)), "a new window");
        assert!(RateLimiter::new(0).allow(a, t0));
    }
}
