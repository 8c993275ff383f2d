//! The Hive API stand-in as a process, for tests that run imagehost somewhere an in-process
//! server cannot reach (the deploy test's network namespaces): answers `get_accounts` for the
//! accounts in a JSON file (`hive-sign keygen` writes one) until it is killed.
//!   hive-rpc LISTEN_ADDR ACCOUNTS_JSON

use std::net::SocketAddr;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, file] = args.as_slice() else {
        eprintln!("usage: hive-rpc LISTEN_ADDR ACCOUNTS_JSON");
        std::process::exit(2);
    };
    let addr: SocketAddr = addr.parse().unwrap_or_else(|e| {
        eprintln!("hive-rpc: bad address {addr}: {e}");
        std::process::exit(2)
    });
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| {
        eprintln!("hive-rpc: cannot read {file}: {e}");
        std::process::exit(2)
    });
    let accounts: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_else(|e| {
        eprintln!("hive-rpc: {file} is not a JSON list of accounts: {e}");
        std::process::exit(2)
    });
    let node = harness::hive::HiveNode::start_at(addr, accounts);
    println!("hive-rpc: answering get_accounts on {}", node.url());
    loop {
        std::thread::park();
    }
}
