//! edge's configuration: listener, upstream imagehost nodes, timeouts, shutdown grace.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service::admin::AdminConfig;
use service::LogConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub upstreams: UpstreamsConfig,
    pub log: LogConfig,
    pub admin: AdminConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Worker threads for the proxy service (pingora's default of 1 is far too low).
    pub threads: usize,
    /// After SIGTERM, how long listeners stay open for in-flight work (pingora's default is 5 min).
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
    /// Then how long runtimes get to finish before the process exits.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamsConfig {
    /// `host:port` of each imagehost node.
    pub nodes: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub health_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Pooled upstream connections kept alive (shared by all nodes).
    pub keepalive_pool: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            upstreams: UpstreamsConfig::default(),
            log: LogConfig::default(),
            admin: AdminConfig::with_listen("127.0.0.1:9080"),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            grace_period: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

impl Default for UpstreamsConfig {
    fn default() -> Self {
        Self {
            nodes: vec!["127.0.0.1:8800".into(), "127.0.0.1:8801".into()],
            health_interval: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            keepalive_pool: 256,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        self.log.validate()?;
        if self.upstreams.nodes.is_empty() {
            return Err("upstreams.nodes: at least one imagehost node is needed".into());
        }
        for n in &self.upstreams.nodes {
            if n.parse::<SocketAddr>().is_err() {
                return Err(format!("upstreams.nodes: `{n}` is not an ip:port address"));
            }
        }
        if self.server.threads == 0 {
            return Err("server.threads must be at least 1".into());
        }
        if self.upstreams.health_interval.is_zero() {
            return Err("upstreams.health_interval must be more than 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use service::ConfigLoader;

    #[test]
    fn rules_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("", None),
            ("[upstreams]\nnodes = []\n", Some("at least one imagehost")),
            (
                "[upstreams]\nnodes = [\"imagehost:80\"]\n",
                Some("not an ip:port"),
            ),
            ("[server]\nthreads = 0\n", Some("server.threads")),
            (
                "[server]\ngrace_period = \"5 fortnights\"\n",
                Some("server.grace_period"),
            ),
            ("[cache]\nsize = 1\n", Some("unknown field `cache`")),
        ];
        for (text, want) in cases {
            let got = ConfigLoader::new("edge")
                .toml_text("t.toml", text)
                .load::<Config>()
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate().map(|_| c));
            match (got, want) {
                (Ok(_), None) => {}
                (Err(e), Some(w)) => assert!(e.contains(w), "{text:?}: {e}"),
                (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
