//! edge's configuration: listeners and TLS, upstream imagehost nodes and health checks, the cache,
//! purge access, request limits. Validation turns every mistake into a readable message.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service::admin::AdminConfig;
use service::{LogConfig, Secret};

use service::net::Cidr;

pub use crate::tls::CertConfig;

mod warm;
pub use warm::{WarmConfig, MAX_HOT_KEYS};

/// Keys that may instead be given as `<key>_file` (read from a file, e.g. an ansible-vault secret).
pub const SECRET_KEYS: &[&str] = &["token"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub upstreams: UpstreamsConfig,
    pub cache: CacheConfig,
    pub purge: PurgeConfig,
    pub takedowns: TakedownsConfig,
    pub limits: LimitsConfig,
    /// The hot list kept for peers, and preloading a peer's hot set at start.
    pub warm: WarmConfig,
    pub log: LogConfig,
    pub admin: AdminConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Plain-HTTP listener.
    pub listen: SocketAddr,
    /// Worker threads for the proxy service (pingora's default of 1 is far too low).
    pub threads: usize,
    /// After SIGTERM, how long listeners stay open for in-flight work (pingora's default is 5 min).
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
    /// Then how long runtimes get to finish before the process exits.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Client connections open at once; past it new connections are closed at accept.
    pub max_connections: usize,
    /// Requests served on one keep-alive connection before it is closed (frees its buffers).
    pub keepalive_requests: u32,
    /// How long an idle keep-alive client connection is kept before its next request's first
    /// byte (HAProxy's `timeout http-keep-alive`).
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// Time for a whole request head: from the accept for a connection's first request (a
    /// silent connection is closed then), from the first byte for later ones; a partial head
    /// past it gets 408 (HAProxy's `timeout http-request`).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest wait for progress while reading a request body or writing an answer (HAProxy's
    /// `timeout client`).
    #[serde(with = "humantime_serde")]
    pub client_timeout: Duration,
    /// Bytes per second a request body must average once `request_timeout` has passed (a
    /// trickled upload is cut off with 408).
    pub min_body_rate: u64,
    /// Largest request head accepted (431 past it).
    pub max_request_head_bytes: usize,
    /// Idle HTTP/2 connections are closed after this.
    #[serde(with = "humantime_serde")]
    pub h2_idle_timeout: Duration,
    /// Bytes of read buffer per client connection (pingora's default, 64 KiB, is a lot per idle client).
    pub read_buffer_bytes: usize,
    /// Bytes of write buffer per client connection (pingora's 1460 measured best for 50 KB hits).
    pub write_buffer_bytes: usize,
    /// The Unix socket through which a new process (`--upgrade`) takes over the listeners.
    pub upgrade_sock: PathBuf,
    pub pid_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// HTTPS listener (HTTP/2 and HTTP/1.1 by ALPN); none = no TLS.
    pub listen: Option<SocketAddr>,
    /// Certificates chosen by SNI; the first one is also the default for clients without SNI.
    pub certs: Vec<CertConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamsConfig {
    /// `ip:port` of each imagehost node; requests are spread by consistent hashing on the cache key.
    pub nodes: Vec<String>,
    /// Health probe: `GET <health_path>` must answer 200.
    pub health_path: String,
    #[serde(with = "humantime_serde")]
    pub health_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub health_timeout: Duration,
    /// Consecutive successes before a down node is used again.
    pub rise: usize,
    /// Consecutive failures before a node is marked down.
    pub fall: usize,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// The per-read timeout for reads of uploads (`GET /D…`), which imagehost answers from its
    /// stores (hedged across fileservers) without rendering: a node stalled on one is left for
    /// the next after this, not after `read_timeout`.
    #[serde(with = "humantime_serde")]
    pub serve_timeout: Duration,
    /// How long a pooled connection to a node may stay idle; keep it below imagehost's
    /// `server.request_timeout`, after which imagehost closes an idle connection.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Pooled upstream connections kept alive (shared by all nodes).
    pub keepalive_pool: usize,
    /// Further nodes tried for one request after the first fails (connect error, or 502/503 on GET/HEAD).
    pub retries: usize,
    /// Failures in a row (connect errors, 502/503, and for reads of uploads also errors or
    /// timeouts mid-request and answers slower than `slow_after`) that eject a node; it is skipped like a down one for
    /// `eject_time`, doubling up to `max_eject_time` while its first request back fails. Never
    /// more than half the nodes at once.
    pub eject_after: u32,
    #[serde(with = "humantime_serde")]
    pub eject_time: Duration,
    #[serde(with = "humantime_serde")]
    pub max_eject_time: Duration,
    /// Response headers later than this count as a failure (well above a cold render's time).
    #[serde(with = "humantime_serde")]
    pub slow_after: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub enabled: bool,
    /// Bytes of bodies and headers kept in memory (least recently used evicted past it).
    pub memory_bytes: u64,
    /// Larger responses are passed through, not cached.
    pub max_object_bytes: u64,
    /// The disk tier: kept across restarts and upgrades. None = memory only.
    pub disk_dir: Option<PathBuf>,
    pub disk_max_bytes: u64,
    /// How long one request may hold the fill lock of a cold object before others compete again.
    #[serde(with = "humantime_serde")]
    pub lock_age: Duration,
    /// How long a request waits for another's fill before fetching on its own (uncached).
    #[serde(with = "humantime_serde")]
    pub lock_wait: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PurgeConfig {
    /// Networks allowed to PURGE/BAN without a token.
    pub allow: Vec<String>,
    /// A token (`Authorization: Bearer <token>`) that allows PURGE/BAN from anywhere; use `token_file`.
    pub token: Option<Secret>,
    /// Other edges (`ip:port`) a purge or ban is forwarded to, so a takedown clears everywhere.
    pub peers: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub peer_timeout: Duration,
}

/// The cluster-wide takedown list (blobsync's), pulled so that an edge that was away bans what
/// it missed, and reads its disk tier only once it has the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TakedownsConfig {
    /// blobsync's list, e.g. `http://10.0.4.11:8900/takedowns`; unset: only bans pushed to it.
    pub url: Option<String>,
    /// blobsync's `server.token` (`token_file`).
    pub token: Option<Secret>,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for TakedownsConfig {
    fn default() -> Self {
        Self {
            url: None,
            token: None,
            poll_interval: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Request bodies (uploads) larger than this get 413 before the body is read.
    pub max_body_bytes: u64,
    /// Uploads (POST/PUT) per client IP per second; 0 = unlimited.
    pub uploads_per_second: u32,
    /// Proxies whose `X-Forwarded-For` is believed (the client is the last untrusted hop).
    pub trusted_proxies: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            tls: TlsConfig::default(),
            upstreams: UpstreamsConfig::default(),
            cache: CacheConfig::default(),
            purge: PurgeConfig::default(),
            takedowns: TakedownsConfig::default(),
            limits: LimitsConfig::default(),
            warm: WarmConfig::default(),
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
            max_connections: 20_000,
            keepalive_requests: 1000,
            keepalive_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            client_timeout: Duration::from_secs(30),
            min_body_rate: 8 * 1024,
            max_request_head_bytes: 32 * 1024,
            h2_idle_timeout: Duration::from_secs(60),
            read_buffer_bytes: 8 * 1024,
            write_buffer_bytes: 1460,
            upgrade_sock: PathBuf::from("/tmp/hive-edge-upgrade.sock"),
            pid_file: PathBuf::from("/tmp/hive-edge.pid"),
        }
    }
}

impl Default for UpstreamsConfig {
    fn default() -> Self {
        Self {
            nodes: vec!["127.0.0.1:8800".into(), "127.0.0.1:8801".into()],
            health_path: "/healthcheck".into(),
            health_interval: Duration::from_secs(2),
            health_timeout: Duration::from_secs(1),
            rise: 2,
            fall: 2,
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(30),
            serve_timeout: Duration::from_secs(5),
            // Below imagehost's server.request_timeout (10 s), which closes idle connections.
            idle_timeout: Duration::from_secs(5),
            keepalive_pool: 256,
            retries: 2,
            eject_after: 5,
            eject_time: Duration::from_secs(10),
            max_eject_time: Duration::from_secs(300),
            slow_after: Duration::from_secs(5),
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            memory_bytes: 256 << 20,
            max_object_bytes: 32 << 20,
            disk_dir: None,
            disk_max_bytes: 4 << 30,
            lock_age: Duration::from_secs(10),
            lock_wait: Duration::from_secs(5),
        }
    }
}

impl Default for PurgeConfig {
    fn default() -> Self {
        Self {
            allow: vec!["127.0.0.0/8".into(), "::1/128".into()],
            token: None,
            peers: Vec::new(),
            peer_timeout: Duration::from_secs(2),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 << 20,
            uploads_per_second: 10,
            trusted_proxies: Vec::new(),
        }
    }
}

fn addr(what: &str, s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("{what}: `{s}` is not an ip:port address"))
}

fn cidrs(what: &str, list: &[String]) -> Result<Vec<Cidr>, String> {
    list.iter()
        .map(|s| s.parse::<Cidr>().map_err(|e| format!("{what}: `{s}`: {e}")))
        .collect()
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        self.log.validate()?;
        let up = &self.upstreams;
        if up.nodes.is_empty() {
            return Err("upstreams.nodes: at least one imagehost node is needed".into());
        }
        for n in &up.nodes {
            addr("upstreams.nodes", n)?;
        }
        for n in &self.purge.peers {
            addr("purge.peers", n)?;
        }
        cidrs("purge.allow", &self.purge.allow)?;
        cidrs("limits.trusted_proxies", &self.limits.trusted_proxies)?;
        if !up.health_path.starts_with('/') {
            return Err(format!(
                "upstreams.health_path: `{}` must start with /",
                up.health_path
            ));
        }
        if self.server.threads == 0 {
            return Err("server.threads must be at least 1".into());
        }
        if self.server.max_connections == 0 {
            return Err("server.max_connections must be at least 1".into());
        }
        for (what, d) in [
            ("server.request_timeout", self.server.request_timeout),
            ("server.client_timeout", self.server.client_timeout),
            ("server.keepalive_timeout", self.server.keepalive_timeout),
        ] {
            if d.is_zero() {
                return Err(format!(
                    "{what} must be more than 0 (every connection needs a deadline)"
                ));
            }
        }
        if let Some(u) = &self.takedowns.url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(format!("takedowns.url `{u}` must be an http(s) URL"));
            }
        }
        self.warm.validate()?;
        if self.takedowns.poll_interval.is_zero() {
            return Err("takedowns.poll_interval must be more than 0".into());
        }
        if self.server.max_request_head_bytes < 1024 {
            return Err("server.max_request_head_bytes must be at least 1024".into());
        }
        if up.health_interval.is_zero() {
            return Err("upstreams.health_interval must be more than 0".into());
        }
        if up.rise == 0 || up.fall == 0 {
            return Err("upstreams.rise and upstreams.fall must be at least 1".into());
        }
        if up.serve_timeout.is_zero() {
            return Err("upstreams.serve_timeout must be more than 0".into());
        }
        if up.eject_after == 0 || up.eject_time.is_zero() || up.slow_after.is_zero() {
            return Err("upstreams.eject_after, eject_time and slow_after must be more than 0".into());
        }
        if up.max_eject_time < up.eject_time {
            return Err("upstreams.max_eject_time must be at least upstreams.eject_time".into());
        }
        // The other services drain for [admin] drain_timeout; pingora has its own two phases.
        if self.admin.drain_timeout != AdminConfig::default().drain_timeout {
            return Err(
                "admin.drain_timeout is not used by the edge: after SIGTERM it drains for \
                 server.grace_period, then gives its tasks server.shutdown_timeout"
                    .into(),
            );
        }
        let c = &self.cache;
        if c.enabled && c.max_object_bytes > c.memory_bytes {
            return Err(format!(
                "cache.max_object_bytes ({}) is larger than cache.memory_bytes ({})",
                c.max_object_bytes, c.memory_bytes
            ));
        }
        if self.tls.listen.is_some() && self.tls.certs.is_empty() {
            return Err("tls.listen is set but tls.certs is empty".into());
        }
        for (i, cert) in self.tls.certs.iter().enumerate() {
            for (what, p) in [("cert_file", &cert.cert_file), ("key_file", &cert.key_file)] {
                if !p.is_file() {
                    return Err(format!(
                        "tls.certs[{i}].{what}: {} is not a readable file",
                        p.display()
                    ));
                }
            }
        }
        crate::tls::check_certs(&self.tls.certs)?;
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
            ("[purge]\npeers = [\"edge2\"]\n", Some("purge.peers")),
            ("[purge]\nallow = [\"10.0.0.0/33\"]\n", Some("purge.allow")),
            (
                "[limits]\ntrusted_proxies = [\"nope\"]\n",
                Some("limits.trusted_proxies"),
            ),
            ("[server]\nthreads = 0\n", Some("server.threads")),
            (
                "[server]\ngrace_period = \"5 fortnights\"\n",
                Some("server.grace_period"),
            ),
            ("[upstreams]\nrise = 0\n", Some("rise")),
            ("[admin]\ndrain_timeout = \"30s\"\n", Some("server.grace_period")),
            (
                "[upstreams]\nhealth_path = \"healthcheck\"\n",
                Some("must start with /"),
            ),
            ("[cache]\nmemory_bytes = 10\n", Some("max_object_bytes")),
            ("[cache]\nsize = 1\n", Some("unknown field `size`")),
            ("[tls]\nlisten = \"127.0.0.1:8443\"\n", Some("tls.certs is empty")),
            (
                "[[tls.certs]]\ncert_file = \"/nonexistent.pem\"\nkey_file = \"/nonexistent.key\"\n",
                Some("not a readable file"),
            ),
        ];
        for (text, want) in cases {
            let got = ConfigLoader::new("edge")
                .toml_text("t.toml", text)
                .secrets(SECRET_KEYS)
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
