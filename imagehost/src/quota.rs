//! Per-account upload rate limit (§2.5, D8): exactly `max` uploads per sliding window.
//!
//! With Redis (shared by every imagehost node) it uses OH-master's format: a sorted set
//! `limit:<account>` of microsecond timestamps; each check drops entries older than the window,
//! counts, records this attempt, trims to `max`, and sets the expiry. The request is allowed while
//! the count before recording is below `max`. Rejected attempts are recorded too, as in OH. Redis
//! errors fail open. Without Redis the same algorithm runs in process memory (per node).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::metrics::QUOTA_CHECKS;

pub enum Quota {
    Redis(redis::aio::ConnectionManager),
    Local(Mutex<HashMap<String, VecDeque<u64>>>),
}

pub struct Limits {
    pub window: Duration,
    pub max: u64,
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

impl Quota {
    pub async fn connect(url: Option<&str>) -> Result<Self, String> {
        let Some(url) = url else {
            return Ok(Quota::Local(Mutex::new(HashMap::new())));
        };
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2))
            .set_number_of_retries(1);
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            client.get_connection_manager_with_config(cfg),
        )
        .await
        .map_err(|_| "timed out connecting".to_string())?
        .map_err(|e| e.to_string())?;
        Ok(Quota::Redis(conn))
    }

    /// Records an upload attempt by `account` and says whether it is within the limit.
    pub async fn allow(&self, account: &str, limits: &Limits) -> bool {
        let now = now_micros();
        let window = limits.window.as_micros() as u64;
        let allowed = match self {
            Quota::Local(map) => {
                let Ok(mut map) = map.lock() else { return true };
                let log = map.entry(account.to_string()).or_default();
                while log.front().is_some_and(|t| *t <= now.saturating_sub(window)) {
                    log.pop_front();
                }
                let count = log.len() as u64;
                log.push_back(now);
                while log.len() as u64 > limits.max {
                    log.pop_front();
                }
                count < limits.max
            }
            Quota::Redis(conn) => {
                let key = format!("limit:{account}");
                let mut conn = conn.clone();
                let result: redis::RedisResult<(u64,)> = redis::pipe()
                    .atomic()
                    .zrembyscore(&key, 0, now.saturating_sub(window))
                    .ignore()
                    .zcard(&key)
                    .zadd(&key, now, now)
                    .ignore()
                    .zremrangebyrank(&key, 0, -(limits.max as isize) - 1)
                    .ignore()
                    .pexpire(&key, limits.window.as_millis() as i64)
                    .ignore()
                    .query_async(&mut conn)
                    .await;
                match result {
                    Ok((count,)) => count < limits.max,
                    Err(e) => {
                        tracing::warn!(error = %e, "quota check failed; allowing the upload (fail open)");
                        QUOTA_CHECKS.with_label_values(&["error"]).inc();
                        return true;
                    }
                }
            }
        };
        QUOTA_CHECKS
            .with_label_values(&[if allowed { "allowed" } else { "exceeded" }])
            .inc();
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_window_allows_exactly_max() {
        let q = Quota::connect(None).await.unwrap();
        let limits = Limits {
            window: Duration::from_secs(3600),
            max: 3,
        };
        let got: Vec<bool> = futures::future::join_all((0..5).map(|_| q.allow("alice", &limits))).await;
        assert_eq!(got, [true, true, true, false, false]);
        assert!(q.allow("bob", &limits).await, "accounts are independent");
        let short = Limits {
            window: Duration::from_millis(30),
            max: 1,
        };
        assert!(q.allow("carol", &short).await);
        assert!(!q.allow("carol", &short).await);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(q.allow("carol", &short).await, "the window slides");
    }
}
