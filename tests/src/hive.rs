//! A stand-in for Hive API nodes, the one thing tests cannot run for real: it answers
//! `condenser_api.get_accounts` in the real JSON-RPC wire format (both the `call` form the
//! imagehoster sends and the direct method form), over a real HTTP server on loopback.

use serde_json::{json, Value};

use crate::origin::{Origin, Reply, Request};

/// One authority: a weight threshold and its keys with weights.
#[derive(Debug, Clone)]
pub struct Authority {
    pub threshold: u32,
    pub keys: Vec<(String, u32)>,
}

impl Authority {
    pub fn single(key: &str) -> Self {
        Self {
            threshold: 1,
            keys: vec![(key.to_string(), 1)],
        }
    }

    pub fn none() -> Self {
        Self {
            threshold: 1,
            keys: Vec::new(),
        }
    }

    fn json(&self) -> Value {
        json!({
            "weight_threshold": self.threshold,
            "account_auths": [],
            "key_auths": self.keys.iter().map(|(k, w)| json!([k, w])).collect::<Vec<_>>(),
        })
    }
}

/// A `get_accounts` entry as hived returns it (the fields the imagehoster reads, and some others).
pub fn account(
    name: &str,
    owner: &Authority,
    active: &Authority,
    posting: &Authority,
    reputation: i64,
) -> Value {
    json!({
        "id": 1, "name": name,
        "owner": owner.json(), "active": active.json(), "posting": posting.json(),
        "memo_key": "STM1111111111111111111111111111111114T1Anm",
        "json_metadata": "", "posting_json_metadata": "",
        "reputation": reputation.to_string(),
        "balance": "0.000 HIVE", "created": "2020-01-01T00:00:00",
    })
}

/// The files of imagehost's static account source (`accounts.static_file`) in `dir`:
/// `accounts.json` holding `name`, whose every authority is `public_key` alone, and empty
/// blacklists beside it (`bl-images.json`, `bl-accounts.json`).
pub fn static_account_files(dir: &std::path::Path, name: &str, public_key: &str) {
    let only = Authority::single(public_key);
    let accounts = json!([account(name, &only, &only, &only, 1_000_000_000_000)]);
    std::fs::write(dir.join("accounts.json"), accounts.to_string()).expect("accounts file");
    for f in ["bl-images.json", "bl-accounts.json"] {
        std::fs::write(dir.join(f), "[]").expect("blacklist file");
    }
}

/// A running node; `calls()` counts get_accounts requests.
pub struct HiveNode {
    origin: Origin,
}

impl HiveNode {
    pub fn start(accounts: Vec<Value>) -> HiveNode {
        HiveNode {
            origin: Origin::start(move |req| answer(req, &accounts)),
        }
    }

    /// Starts on a given address (e.g. inside a network namespace a deploy test made).
    pub fn start_at(addr: std::net::SocketAddr, accounts: Vec<Value>) -> HiveNode {
        HiveNode {
            origin: Origin::start_at(addr, move |req| answer(req, &accounts)),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.origin.addr())
    }

    pub fn calls(&self) -> usize {
        self.origin.hits()
    }
}

fn answer(req: &Request, accounts: &[Value]) -> Reply {
    let reply = |v: Value| Reply::ok(v.to_string()).header("Content-Type", "application/json");
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return reply(
            json!({"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null}),
        );
    };
    let id = body.get("id").cloned().unwrap_or(Value::Null);
    let method = body.get("method").and_then(Value::as_str).unwrap_or_default();
    let params = body.get("params").cloned().unwrap_or(Value::Null);
    let names = match (method, &params) {
        ("call", Value::Array(p)) if p.len() == 3 && p[0] == "condenser_api" && p[1] == "get_accounts" => {
            p[2][0].clone()
        }
        ("condenser_api.get_accounts", Value::Array(p)) => p[0].clone(),
        _ => {
            return reply(
                json!({"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": id}),
            )
        }
    };
    let names: Vec<String> = serde_json::from_value(names).unwrap_or_default();
    let found: Vec<Value> = names
        .iter()
        .filter_map(|n| accounts.iter().find(|a| a["name"] == *n).cloned())
        .collect();
    reply(json!({"jsonrpc": "2.0", "result": found, "id": id}))
}
