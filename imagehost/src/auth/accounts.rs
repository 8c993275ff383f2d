//! A Hive account as `condenser_api.get_accounts` returns it, and the upload rules on it.

use serde::Deserialize;

/// The parts of a `get_accounts` entry the service uses. Unknown fields are ignored: this is
/// another system's wire format, not our config.
#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    pub name: String,
    #[serde(default)]
    pub owner: Authority,
    #[serde(default)]
    pub active: Authority,
    #[serde(default)]
    pub posting: Authority,
    /// A number or a numeric string, depending on the node.
    #[serde(default)]
    pub reputation: serde_json::Value,
    #[serde(default)]
    pub json_metadata: String,
    #[serde(default)]
    pub posting_json_metadata: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Authority {
    #[serde(default)]
    pub weight_threshold: u32,
    #[serde(default)]
    pub account_auths: Vec<(String, u32)>,
    #[serde(default)]
    pub key_auths: Vec<(String, u32)>,
}

impl Authority {
    /// One key whose weight alone meets the threshold (multisig is not combined).
    fn single_key_suffices(&self, key: &str) -> bool {
        self.key_auths
            .iter()
            .any(|(k, w)| k == key && *w >= self.weight_threshold)
    }
}

impl Account {
    /// §2.1 step 10: a posting or active key that meets its authority's threshold by itself.
    /// Owner keys and `account_auths` never count.
    pub fn key_may_upload(&self, key: &str) -> bool {
        self.posting.single_key_suffices(key) || self.active.single_key_suffices(key)
    }

    /// D6: a key that meets this account's posting threshold by itself (a HiveSigner token
    /// signed by the author).
    pub fn posting_key_suffices(&self, key: &str) -> bool {
        self.posting.single_key_suffices(key)
    }

    /// D6: the accounts (apps) this account's posting authority lists with a weight that meets
    /// its threshold alone; a token signed by one of their posting keys speaks for this account.
    pub fn posting_delegates(&self) -> impl Iterator<Item = &str> {
        self.posting
            .account_auths
            .iter()
            .filter(|(_, w)| *w >= self.posting.weight_threshold)
            .map(|(a, _)| a.as_str())
    }

    /// The reputation score frontends show (condenser's `repLog10`), truncated to an integer.
    pub fn reputation_score(&self) -> i64 {
        let raw = match &self.reputation {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => "0".into(),
        };
        rep_log10(&raw)
    }
}

/// condenser's `repLog10`: magnitude of the raw reputation, 9 points per decade above 1e9,
/// centred at 25. A raw value that does not parse counts as 0 (score 25).
pub fn rep_log10(raw: &str) -> i64 {
    let (neg, digits) = match raw.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    let lead: String = digits
        .chars()
        .take(4)
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let mut out = match lead.parse::<f64>() {
        Ok(lead) if lead > 0.0 => {
            let log = lead.ln() / std::f64::consts::LN_10 + 0.000_000_01;
            (digits.len() as f64 - 1.0) + (log - log.trunc())
        }
        _ => 0.0,
    };
    out = (out - 9.0).max(0.0);
    if neg {
        out = -out;
    }
    (out * 9.0 + 25.0).trunc() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(json: serde_json::Value) -> Account {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn reputation_table() {
        let cases = [
            ("0", 25),
            ("", 25),
            ("garbage", 25),
            ("-10525900772718", -11),
            ("95832978796820", 69),
            ("1000000000", 25),
            ("10000000000", 34),
            ("-1000000000000", -2),
        ];
        for (raw, want) in cases {
            assert_eq!(rep_log10(raw), want, "{raw}");
        }
        assert_eq!(
            account(serde_json::json!({"name": "a", "reputation": 95832978796820i64})).reputation_score(),
            69
        );
        assert_eq!(
            account(serde_json::json!({"name": "a", "reputation": "0"})).reputation_score(),
            25
        );
    }

    #[test]
    fn authority_table() {
        let a = account(serde_json::json!({
            "name": "alice",
            "owner": {"weight_threshold": 1, "account_auths": [], "key_auths": [["STMowner", 1]]},
            "active": {"weight_threshold": 1, "account_auths": [], "key_auths": [["STMactive", 1]]},
            "posting": {"weight_threshold": 2, "account_auths": [["hive.blog", 2]],
                        "key_auths": [["STMposting", 2], ["STMweak", 1]]},
        }));
        let cases = [
            ("STMposting", true),
            ("STMactive", true),
            ("STMowner", false),
            ("STMweak", false),
            ("hive.blog", false),
            ("STMnobody", false),
        ];
        for (key, want) in cases {
            assert_eq!(a.key_may_upload(key), want, "{key}");
        }
    }
}
