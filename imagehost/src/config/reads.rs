//! `[reads]`: how reads use the fileservers (hedging and the per-fileserver breaker).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How reads use the fileservers (`[reads]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadsConfig {
    /// The hedge delay never goes below this (answers faster than it are not worth a second read).
    #[serde(with = "humantime_serde")]
    pub hedge_min: Duration,
    /// …nor above this: a read not answered by then goes to the next fileserver whatever the
    /// recent latencies were.
    #[serde(with = "humantime_serde")]
    pub hedge_max: Duration,
    /// Consecutive failures (errors, or reads left unanswered past the hedge delay) that trip a
    /// fileserver's breaker: it is then tried last until its cool-down ends.
    pub breaker_failures: u32,
    #[serde(with = "humantime_serde")]
    pub breaker_cooldown: Duration,
    /// The cool-down doubles while probes keep failing, up to this.
    #[serde(with = "humantime_serde")]
    pub breaker_max_cooldown: Duration,
}

impl Default for ReadsConfig {
    fn default() -> Self {
        Self {
            hedge_min: Duration::from_millis(20),
            hedge_max: Duration::from_millis(500),
            breaker_failures: 3,
            breaker_cooldown: Duration::from_secs(5),
            breaker_max_cooldown: Duration::from_secs(60),
        }
    }
}

impl ReadsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.hedge_min.is_zero() || self.hedge_min > self.hedge_max {
            return Err("reads.hedge_min must be more than 0 and at most reads.hedge_max".into());
        }
        if self.breaker_failures == 0 || self.breaker_cooldown.is_zero() {
            return Err("reads.breaker_failures and reads.breaker_cooldown must be more than 0".into());
        }
        if self.breaker_max_cooldown < self.breaker_cooldown {
            return Err("reads.breaker_max_cooldown must be at least reads.breaker_cooldown".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn config_rules() {
        assert!(ReadsConfig::default().validate().is_ok());
        for bad in [
            ReadsConfig {
                hedge_min: ms(0),
                ..ReadsConfig::default()
            },
            ReadsConfig {
                hedge_min: ms(600),
                ..ReadsConfig::default()
            },
            ReadsConfig {
                breaker_failures: 0,
                ..ReadsConfig::default()
            },
            ReadsConfig {
                breaker_max_cooldown: ms(1),
                ..ReadsConfig::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
