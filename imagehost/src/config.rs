//! imagehost's configuration: one struct, unknown keys rejected, layered by `service::ConfigLoader`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use blobstore::FileserverConfig;
use serde::{Deserialize, Serialize};
use service::admin::AdminConfig;
use service::{LogConfig, Secret};

pub mod imaging;
mod reads;
pub use imaging::{CacheConfig, PipelineConfig, ProfilesConfig, ProxyConfig};
pub use reads::ReadsConfig;

/// Secret keys that may be given as `<key>_file` paths.
pub const SECRET_KEYS: &[&str] = &["secret_access_key", "redis_url", "token"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub buckets: Buckets,
    /// The fileservers, in read-preference order. Uploads are written to all of them.
    pub fileservers: Vec<FileserverConfig>,
    /// How reads use the fileservers: hedging and the per-fileserver breaker.
    pub reads: ReadsConfig,
    pub upload: UploadConfig,
    pub upload_limits: UploadLimits,
    /// `POST /hs/:token` (D6): which apps' tokens are accepted, and for how long.
    pub hivesigner: HivesignerConfig,
    pub accounts: AccountsConfig,
    pub blacklist: BlacklistConfig,
    pub takedowns: TakedownsConfig,
    /// `redis://…` shared by every imagehost node for upload quotas; unset = per-node memory.
    /// May be given as `redis_url_file` (it can carry a password).
    pub redis_url: Option<Secret>,
    pub replication: ReplicationConfig,
    pub proxy: ProxyConfig,
    pub pipeline: PipelineConfig,
    pub cache: CacheConfig,
    pub profiles: ProfilesConfig,
    pub log: LogConfig,
    pub admin: AdminConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadConfig {
    /// Largest upload request and file, in bytes (OH `max_image_size`), enforced while streaming.
    pub max_image_size: u64,
    /// Accept any bytes, as OH does; by default only sniffed jpeg/png/gif/webp/avif (D7).
    pub accept_any_type: bool,
    /// Fileservers that must hold an upload before it is acknowledged.
    pub write_quorum: usize,
    /// Bytes of an upload kept in memory before it spills to a temporary file.
    pub spool_memory: usize,
    /// Bytes of all uploads held in memory at once; an upload that finds no room left spills to
    /// a temporary file.
    pub spool_memory_total: u64,
    /// Where spilled uploads go (default: the system temporary directory).
    pub spool_dir: Option<PathBuf>,
}

/// HiveSigner-style upload tokens (`POST /hs/:token`, D6), verified against the chain's keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HivesignerConfig {
    /// `signed_message.app` values accepted; empty turns the route off (every token refused).
    pub apps: Vec<String>,
    /// How long after its timestamp a token is accepted (HiveSigner's own tokens live 7 days).
    #[serde(with = "humantime_serde")]
    pub lifetime: Duration,
    /// How far in the future a token's timestamp may be (the signer's clock running ahead).
    #[serde(with = "humantime_serde")]
    pub max_skew: Duration,
}

impl Default for HivesignerConfig {
    fn default() -> Self {
        Self {
            apps: vec!["ecency.app".into(), "hive.blog".into()],
            lifetime: Duration::from_secs(7 * 24 * 3600),
            max_skew: Duration::from_secs(300),
        }
    }
}

/// OH `[upload_limits]`: exactly `max` uploads per account per sliding `duration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadLimits {
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    pub max: u64,
    /// Minimum reputation score (condenser's repLog10) to upload.
    pub reputation: i64,
}

/// Where account authorities come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// Hive API nodes, tried in turn (`condenser_api.get_accounts`).
    pub rpc_nodes: Vec<String>,
    /// A JSON array of accounts in `get_accounts` format; when set, no RPC node is called.
    pub static_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How long an account's authorities are reused before being fetched again.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
}

/// Where to report uploads a fileserver missed (blobsync's intake).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationConfig {
    /// e.g. `http://127.0.0.1:8900/events`; unset: misses are only logged and counted.
    pub events_url: Option<String>,
    /// blobsync's `server.token`, if it has one (`token_file`).
    pub token: Option<Secret>,
}

/// Hot-reloaded blacklist files (§5): a JSON array, or `{"urls": [...], "patterns": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlacklistConfig {
    pub images_file: Option<PathBuf>,
    pub accounts_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            max_image_size: 15_000_000,
            accept_any_type: false,
            write_quorum: 1,
            // Every upload of the default 15 MB limit in memory, while there is room: a spooled
            // one is written to a file and read back by each fileserver (3-4x the CPU).
            spool_memory: 16 << 20,
            spool_memory_total: 256 << 20,
            spool_dir: None,
        }
    }
}

impl Default for UploadLimits {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(7 * 24 * 3600),
            max: 300,
            reputation: 10,
        }
    }
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            rpc_nodes: vec!["https://api.hive.blog".into()],
            static_file: None,
            timeout: Duration::from_secs(2),
            cache_ttl: Duration::from_secs(30),
        }
    }
}

/// The cluster-wide takedown list (blobsync's): pulled from `url`, pushed by blobsync to the
/// admin listener (`POST /takedowns`), kept in `state_file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TakedownsConfig {
    /// blobsync's list, e.g. `http://10.0.4.11:8900/takedowns`; unset: only what is pushed.
    pub url: Option<String>,
    /// blobsync's `server.token` (`token_file`): sent when pulling, required of pushes. Without
    /// it, pushes are taken from loopback addresses only.
    pub token: Option<Secret>,
    /// Where the list is kept across restarts.
    pub state_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for TakedownsConfig {
    fn default() -> Self {
        Self {
            url: None,
            token: None,
            state_file: Some(PathBuf::from("./data/takedowns.json")),
            poll_interval: Duration::from_secs(30),
        }
    }
}

impl Default for BlacklistConfig {
    fn default() -> Self {
        Self {
            images_file: None,
            accounts_file: None,
            reload_interval: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The public base URL written into upload responses (OH `service_url`).
    pub service_url: String,
    /// The whole request head, and the idle time before it on a kept-alive connection (HAProxy's
    /// `timeout http-request`; keep it above the edge's `upstreams.idle_timeout`).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest stall writing an answer or reading an upload (HAProxy's `timeout client`).
    #[serde(with = "humantime_serde")]
    pub client_timeout: Duration,
    /// Bytes per second an upload must average once `request_timeout` has passed (408 if not).
    pub min_body_rate: u64,
    /// Networks whose `X-Forwarded-For` is believed (the edges): the client is the right-most
    /// entry that is not itself trusted. Default: loopback and private networks.
    pub trusted_proxies: Vec<String>,
}

impl ServerConfig {
    /// `trusted_proxies` parsed; an entry that is not a network is a config error naming it.
    pub fn trusted(&self) -> Result<Vec<service::net::Cidr>, String> {
        self.trusted_proxies
            .iter()
            .map(|s| {
                s.parse()
                    .map_err(|e| format!("server.trusted_proxies: `{s}`: {e}"))
            })
            .collect()
    }

    pub fn timeouts(&self) -> service::http::Timeouts {
        service::http::Timeouts {
            request: self.request_timeout,
            client: self.client_timeout,
            min_body_rate: self.min_body_rate,
        }
    }
}

/// The two buckets every fileserver holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Buckets {
    /// `D…` uploads: immutable and precious.
    pub uploads: String,
    /// `U…` proxied originals and resized variants: a rebuildable cache.
    pub proxy: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            buckets: Buckets::default(),
            fileservers: vec![FileserverConfig::directory("local", "./data/fileserver")],
            reads: ReadsConfig::default(),
            upload: UploadConfig::default(),
            upload_limits: UploadLimits::default(),
            hivesigner: HivesignerConfig::default(),
            accounts: AccountsConfig::default(),
            blacklist: BlacklistConfig::default(),
            takedowns: TakedownsConfig::default(),
            redis_url: None,
            replication: ReplicationConfig::default(),
            proxy: ProxyConfig::default(),
            pipeline: PipelineConfig::default(),
            cache: CacheConfig::default(),
            profiles: ProfilesConfig::default(),
            log: LogConfig::default(),
            admin: AdminConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8800)),
            service_url: "http://localhost:8800".into(),
            request_timeout: Duration::from_secs(10),
            client_timeout: Duration::from_secs(30),
            min_body_rate: 8 * 1024,
            trusted_proxies: [
                "127.0.0.0/8",
                "::1/128",
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "fc00::/7",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

impl Default for Buckets {
    fn default() -> Self {
        Self {
            uploads: "uploads".into(),
            proxy: "proxy".into(),
        }
    }
}

impl Config {
    /// Rules serde cannot express. Each message names the key at fault.
    pub fn validate(&self) -> Result<(), String> {
        self.log.validate()?;
        self.reads.validate()?;
        self.server.trusted()?;
        self.server.timeouts().validate("server")?;
        if let Some(u) = &self.takedowns.url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(format!("takedowns.url `{u}` must be an http(s) URL"));
            }
        }
        if self.takedowns.poll_interval.is_zero() {
            return Err("takedowns.poll_interval must be more than 0".into());
        }
        if !(self.server.service_url.starts_with("http://")
            || self.server.service_url.starts_with("https://"))
        {
            return Err(format!(
                "server.service_url `{}` must be an http(s) URL",
                self.server.service_url
            ));
        }
        if self.fileservers.is_empty() {
            return Err("fileservers: at least one fileserver is needed".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for fs in &self.fileservers {
            fs.validate()?;
            if !names.insert(fs.name.as_str()) {
                return Err(format!("fileservers: the name `{}` is used twice", fs.name));
            }
        }
        for (what, b) in [
            ("buckets.uploads", &self.buckets.uploads),
            ("buckets.proxy", &self.buckets.proxy),
        ] {
            if blobstore::Key::new(b.as_str()).is_err() || b.contains('/') {
                return Err(format!("{what} `{b}` is not a valid bucket name"));
            }
        }
        if self.buckets.uploads == self.buckets.proxy {
            return Err("buckets.uploads and buckets.proxy must differ".into());
        }
        if self.upload.max_image_size == 0 {
            return Err("upload.max_image_size must be more than 0".into());
        }
        if (self.upload.spool_memory as u64) > self.upload.spool_memory_total {
            return Err(format!(
                "upload.spool_memory ({}) must not be more than upload.spool_memory_total ({})",
                self.upload.spool_memory, self.upload.spool_memory_total
            ));
        }
        if self.upload.write_quorum == 0 || self.upload.write_quorum > self.fileservers.len() {
            return Err(format!(
                "upload.write_quorum {} must be between 1 and the number of fileservers ({})",
                self.upload.write_quorum,
                self.fileservers.len()
            ));
        }
        if self.upload_limits.max == 0 {
            return Err("upload_limits.max must be at least 1".into());
        }
        if self.accounts.static_file.is_none() {
            if self.accounts.rpc_nodes.is_empty() {
                return Err("accounts: set rpc_nodes or static_file".into());
            }
            for n in &self.accounts.rpc_nodes {
                if !(n.starts_with("http://") || n.starts_with("https://")) {
                    return Err(format!("accounts.rpc_nodes: `{n}` must be an http(s) URL"));
                }
            }
        }
        if let Some(url) = &self.redis_url {
            if !(url.expose().starts_with("redis://") || url.expose().starts_with("rediss://")) {
                return Err("redis_url must start with redis:// or rediss://".into());
            }
        }
        imaging::validate(&self.proxy, &self.pipeline, &self.cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use service::ConfigLoader;

    fn load(text: &str) -> Result<Config, String> {
        let c: Config = ConfigLoader::new("imagehost")
            .toml_text("test.toml", text)
            .secrets(SECRET_KEYS)
            .load()
            .map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn config_rules_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("", None),
            ("[server]\nservice_url = \"https://images.hive.blog\"\n", None),
            ("[server]\nservice_url = \"images.hive.blog\"\n", Some("server.service_url")),
            ("[server]\nport = 1\n", Some("unknown field `port`")),
            ("fileservers = []\n", Some("at least one fileserver")),
            (
                "[[fileservers]]\nname = \"a\"\ndirectory = { path = \"/tmp/a\" }\n[[fileservers]]\nname = \"a\"\ndirectory = { path = \"/tmp/b\" }\n",
                Some("used twice"),
            ),
            ("[[fileservers]]\nname = \"a\"\n", Some("needs an `s3` or a `directory`")),
            ("[buckets]\nuploads = \"x\"\nproxy = \"x\"\n", Some("must differ")),
            ("[buckets]\nuploads = \"../x\"\n", Some("buckets.uploads")),
            ("[log]\nformat = \"xml\"\n", Some("log.format")),
            ("[upload]\nwrite_quorum = 2\n", Some("upload.write_quorum")),
            ("[upload]\nmax_image_size = 0\n", Some("upload.max_image_size")),
            (
                "[upload]\nspool_memory = 2000\nspool_memory_total = 1000\n",
                Some("upload.spool_memory_total"),
            ),
            ("[accounts]\nrpc_nodes = []\n", Some("set rpc_nodes or static_file")),
            ("[accounts]\nrpc_nodes = [\"api.hive.blog\"]\n", Some("accounts.rpc_nodes")),
            ("redis_url = \"localhost:6379\"\n", Some("redis_url")),
            ("[upload_limits]\nduration = \"7d\"\nmax = 300\nreputation = 10\n", None),
            ("[pipeline]\nwebp_method = 6\n", Some("pipeline.webp_method")),
            ("[proxy]\nmax_image_width = 0\n", Some("proxy.max_image_width")),
            ("[proxy]\nallow_loopback = true\nread_timeout = \"10s\"\n", None),
            ("[cache]\nmax_bytes = 10\n", Some("cache.max_bytes")),
        ];
        for (text, want) in cases {
            match (load(text), want) {
                (Ok(_), None) => {}
                (Err(e), Some(w)) => assert!(e.contains(w), "{text:?}: `{e}` should mention `{w}`"),
                (got, want) => panic!("{text:?}: got {got:?}, want error {want:?}"),
            }
        }
    }
}
