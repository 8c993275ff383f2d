//! Where account authorities come from: Hive RPC nodes (with failover and a short cache), or a
//! static JSON file in the same format for private deployments and the local cluster.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::auth::Account;
use crate::metrics::RPC_SECONDS;

/// Account lookups failed for a reason other than "no such account".
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("no RPC node answered get_accounts: {0}")]
    Unavailable(String),
    #[error("cannot read the accounts file {path}: {reason}")]
    File { path: String, reason: String },
}

/// Entries kept at most; the cache is cleared when full (cheap, and lookups are rare per account).
const CACHE_CAP: usize = 10_000;

pub enum AccountSource {
    Rpc(RpcAccounts),
    Static(HashMap<String, Arc<Account>>),
}

impl AccountSource {
    /// Reads a static accounts file: a JSON array of `get_accounts` entries.
    pub fn from_file(path: &Path) -> Result<Self, AccountsError> {
        let err = |reason: String| AccountsError::File {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let list: Vec<Account> = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        Ok(Self::Static(
            list.into_iter().map(|a| (a.name.clone(), Arc::new(a))).collect(),
        ))
    }

    /// The account named exactly `name` (not lower-cased, as OH), or `None` if it does not exist.
    pub async fn get(&self, name: &str) -> Result<Option<Arc<Account>>, AccountsError> {
        match self {
            AccountSource::Static(map) => Ok(map.get(name).cloned()),
            AccountSource::Rpc(rpc) => rpc.get(name).await,
        }
    }
}

/// `condenser_api.get_accounts` over JSON-RPC, trying each node in turn.
pub struct RpcAccounts {
    client: reqwest::Client,
    nodes: Vec<String>,
    /// Index of the node to try first: advances past a node that failed.
    preferred: AtomicUsize,
    ttl: Duration,
    cache: Mutex<HashMap<String, CacheEntry>>,
}

/// When an account was fetched, and what came back (`None`: no such account).
type CacheEntry = (Instant, Option<Arc<Account>>);

impl RpcAccounts {
    pub fn new(nodes: Vec<String>, timeout: Duration, ttl: Duration) -> Result<Self, AccountsError> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("hive-imagehost/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AccountsError::Unavailable(e.to_string()))?;
        Ok(Self {
            client,
            nodes,
            preferred: AtomicUsize::new(0),
            ttl,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub async fn get(&self, name: &str) -> Result<Option<Arc<Account>>, AccountsError> {
        if let Some(hit) = self.cached(name) {
            return Ok(hit);
        }
        let body = json!({
            "jsonrpc": "2.0", "id": "0", "method": "call",
            "params": ["condenser_api", "get_accounts", [[name]]],
        });
        let start = self.preferred.load(Ordering::Relaxed);
        let mut errors = Vec::new();
        for i in 0..self.nodes.len() {
            let idx = (start + i) % self.nodes.len();
            let node = &self.nodes[idx];
            let timer = Instant::now();
            let outcome = self.call(node, &body).await;
            RPC_SECONDS
                .with_label_values(&[if outcome.is_ok() { "ok" } else { "error" }])
                .observe(timer.elapsed().as_secs_f64());
            match outcome {
                Ok(accounts) => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    let account = accounts.into_iter().find(|a| a.name == name).map(Arc::new);
                    self.remember(name, account.clone());
                    return Ok(account);
                }
                Err(e) => {
                    tracing::warn!(node = %node, error = %e, "get_accounts failed; trying the next node");
                    errors.push(format!("{node}: {e}"));
                }
            }
        }
        self.preferred
            .store((start + 1) % self.nodes.len().max(1), Ordering::Relaxed);
        Err(AccountsError::Unavailable(errors.join("; ")))
    }

    async fn call(&self, node: &str, body: &serde_json::Value) -> Result<Vec<Account>, String> {
        let resp = self
            .client
            .post(node)
            .json(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        // Bound what a misbehaving node can make us hold: one account is a few KiB.
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        if bytes.len() > 4 << 20 {
            return Err("response over 4 MiB".into());
        }
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| format!("bad JSON: {e}"))?;
        if let Some(err) = v.get("error") {
            return Err(format!("RPC error: {err}"));
        }
        let result = v.get("result").cloned().ok_or("no result in the response")?;
        serde_json::from_value(result).map_err(|e| format!("unexpected result shape: {e}"))
    }

    fn cached(&self, name: &str) -> Option<Option<Arc<Account>>> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(name)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, a)| a.clone())
    }

    fn remember(&self, name: &str, account: Option<Arc<Account>>) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_CAP {
                cache.clear();
            }
            cache.insert(name.to_string(), (Instant::now(), account));
        }
    }
}
