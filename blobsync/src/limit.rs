//! A shared bandwidth limit: a token bucket that callers wait on before moving bytes.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub struct RateLimiter {
    bytes_per_sec: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// `None` for 0 (unlimited).
    pub fn new(bytes_per_sec: u64) -> Option<Self> {
        (bytes_per_sec > 0).then(|| Self {
            bytes_per_sec: bytes_per_sec as f64,
            // Start with one second's worth, so short bursts are not delayed.
            state: Mutex::new((bytes_per_sec as f64, Instant::now())),
        })
    }

    /// Waits until `n` bytes may move.
    pub async fn acquire(&self, n: u64) {
        let wait = {
            let Ok(mut s) = self.state.lock() else { return };
            let now = Instant::now();
            let refill = now.duration_since(s.1).as_secs_f64() * self.bytes_per_sec;
            s.0 = (s.0 + refill).min(self.bytes_per_sec);
            s.1 = now;
            s.0 -= n as f64;
            if s.0 >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-s.0 / self.bytes_per_sec)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn holds_the_rate() {
        let l = RateLimiter::new(1000).unwrap();
        let start = tokio::time::Instant::now();
        for _ in 0..30 {
            l.acquire(100).await;
        }
        // 3000 bytes at 1000 B/s with a 1000-byte initial burst: about 2 s.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(1900) && took <= Duration::from_millis(2200),
            "{took:?}"
        );
        assert!(RateLimiter::new(0).is_none());
    }
}
