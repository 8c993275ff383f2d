//! `[warm]`: the hot list this edge keeps for its peers, and preloading a peer's hot set at start.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarmConfig {
    /// Admin URLs (`http://10.0.1.12:9080`) of edges whose hot set this edge preloads when it
    /// starts; the first that answers is used. Empty: no preload.
    pub peers: Vec<String>,
    /// Objects preloaded at most (the peer's most requested first).
    pub keys: usize,
    /// Preload requests per second. They take the normal path (to the imagehosts on a miss), so
    /// this is the extra load a new edge puts on them.
    pub rate: u32,
    /// Preload requests at once.
    pub concurrency: usize,
    /// Longest wait for the peer's list.
    #[serde(with = "humantime_serde")]
    pub list_timeout: Duration,
    /// Objects this edge's own hot list keeps (what its peers preload from it).
    pub hot_keys: usize,
    /// One request in this many is counted in the hot list.
    pub sample_one_in: u64,
}

impl Default for WarmConfig {
    fn default() -> Self {
        Self {
            peers: Vec::new(),
            keys: 5_000,
            rate: 100,
            concurrency: 4,
            list_timeout: Duration::from_secs(10),
            hot_keys: 20_000,
            sample_one_in: 8,
        }
    }
}

/// The most objects a hot list keeps or a preload asks for.
pub const MAX_HOT_KEYS: usize = 1_000_000;

impl WarmConfig {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(p) = self
            .peers
            .iter()
            .find(|p| !(p.starts_with("http://") || p.starts_with("https://")))
        {
            return Err(format!(
                "warm.peers `{p}` must be an http(s) URL (a peer edge's admin listener)"
            ));
        }
        if self.keys == 0 || self.keys > MAX_HOT_KEYS || self.hot_keys == 0 || self.hot_keys > MAX_HOT_KEYS {
            return Err(format!(
                "warm.keys and warm.hot_keys must be between 1 and {MAX_HOT_KEYS}"
            ));
        }
        if self.rate == 0 || self.concurrency == 0 || self.concurrency > 64 {
            return Err("warm.rate must be more than 0 and warm.concurrency between 1 and 64".into());
        }
        if self.sample_one_in == 0 || self.list_timeout.is_zero() {
            return Err("warm.sample_one_in and warm.list_timeout must be more than 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_table() {
        let ok = WarmConfig::default();
        assert!(ok.validate().is_ok());
        let cases = [
            WarmConfig {
                peers: vec!["10.0.1.12:9080".into()],
                ..ok.clone()
            },
            WarmConfig {
                keys: 0,
                ..ok.clone()
            },
            WarmConfig {
                hot_keys: MAX_HOT_KEYS + 1,
                ..ok.clone()
            },
            WarmConfig {
                rate: 0,
                ..ok.clone()
            },
            WarmConfig {
                concurrency: 65,
                ..ok.clone()
            },
            WarmConfig {
                sample_one_in: 0,
                ..ok.clone()
            },
        ];
        for bad in cases {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
