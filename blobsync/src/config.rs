//! blobsync's configuration: the fileservers to mirror, the buckets, the queue location.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use blobstore::FileserverConfig;
use serde::{Deserialize, Serialize};
use service::admin::AdminConfig;
use service::{LogConfig, Secret};

/// Secret keys that may be given as `<key>_file` paths.
pub const SECRET_KEYS: &[&str] = &["secret_access_key", "token", "purge_token"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    /// Buckets to mirror, in priority order (uploads before the proxy cache).
    pub buckets: Vec<String>,
    /// The fileservers kept identical (two or more).
    pub fileservers: Vec<FileserverConfig>,
    pub queue: QueueConfig,
    pub copy: CopyConfig,
    pub anti_entropy: AntiEntropyConfig,
    pub scrub: ScrubConfig,
    pub tombstones: TombstoneConfig,
    pub takedown: TakedownConfig,
    pub log: LogConfig,
    pub admin: AdminConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CopyConfig {
    /// Copies in flight at once.
    pub workers: usize,
    /// Bytes per second read from source replicas, all copies together (0 = unlimited).
    pub bandwidth_limit: u64,
    /// First retry delay after a failure; doubles per attempt up to `max_backoff`. Never dropped.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Largest object copied (a bound on what one copy may stream).
    pub max_object_size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AntiEntropyConfig {
    /// Time between full passes over every fileserver's listing (0 = only `sync --once`).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Keys listed per page and server.
    pub page_size: usize,
    /// Objects a pass may queue ahead of the copy workers. Past it the pass waits for them,
    /// so a backfill of millions of objects holds this many in the queue, not millions (the
    /// queue's memory and disk stay flat); its checkpoint keeps its place meanwhile.
    pub max_ahead: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrubConfig {
    /// Time between scrub passes (0 = off).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Bytes per second re-read by the scrub (0 = unlimited).
    pub bandwidth_limit: u64,
    /// Copies read and hashed at once. One at a time, a scrub waits out every read's latency
    /// (a disk seek, an S3 request) and reaches a fraction of what the fileserver can give.
    pub parallel: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TombstoneConfig {
    /// How long a takedown is remembered (and enforced) after every server applied it.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for CopyConfig {
    fn default() -> Self {
        Self {
            workers: 8,
            bandwidth_limit: 0,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            max_object_size: 1 << 30,
        }
    }
}

impl Default for AntiEntropyConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(3600),
            page_size: 1000,
            max_ahead: 10_000,
        }
    }
}

impl Default for ScrubConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(7 * 24 * 3600),
            bandwidth_limit: 20 << 20,
            parallel: 8,
        }
    }
}

/// What else a takedown clears: the imagehosts' hot caches and the edges' caches, so the image
/// stops being served at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TakedownConfig {
    /// Every imagehost's admin listener (`ip:port`): each is told first (`POST /takedowns`, with
    /// `server.token`), so it refuses the key before the edges drop their copies.
    pub imagehosts: Vec<String>,
    /// Every edge (`ip:port`): each is sent a ban of everything tagged with the key.
    pub purge_edges: Vec<String>,
    /// The edges' purge token (`purge_token_file`), when they do not allow this host's network.
    pub purge_token: Option<Secret>,
}

impl Default for TombstoneConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The intake, takedown and status API.
    pub listen: SocketAddr,
    /// When set, events, takedowns and sync need `Authorization: Bearer <token>` (`token_file`).
    pub token: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// The sled database holding the queue and tombstones.
    pub path: PathBuf,
    /// Below this many bytes free on the queue's disk, change events are refused with 503 (the
    /// sender retries) and anti-entropy stops enqueueing; takedowns may use the reserve.
    pub min_free_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            buckets: vec!["uploads".into(), "proxy".into()],
            fileservers: vec![
                FileserverConfig::directory("fs-a", "./data/fs-a"),
                FileserverConfig::directory("fs-b", "./data/fs-b"),
            ],
            queue: QueueConfig::default(),
            copy: CopyConfig::default(),
            anti_entropy: AntiEntropyConfig::default(),
            scrub: ScrubConfig::default(),
            tombstones: TombstoneConfig::default(),
            takedown: TakedownConfig::default(),
            log: LogConfig::default(),
            admin: AdminConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8900)),
            token: None,
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("./data/blobsync-queue"),
            min_free_bytes: 256 << 20,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        self.log.validate()?;
        for (what, list) in [
            ("takedown.purge_edges", &self.takedown.purge_edges),
            ("takedown.imagehosts", &self.takedown.imagehosts),
        ] {
            if let Some(e) = list.iter().find(|e| e.parse::<SocketAddr>().is_err()) {
                return Err(format!("{what}: `{e}` is not an ip:port address"));
            }
        }
        if self.server.token.as_ref().is_some_and(|t| t.is_empty()) {
            return Err("server.token is empty (an empty token_file?): set a real secret".into());
        }
        // Imagehosts take takedown pushes from another host only with this token.
        if self.server.token.is_none() {
            let far = |h: &&String| h.parse::<SocketAddr>().is_ok_and(|a| !a.ip().is_loopback());
            if let Some(host) = self.takedown.imagehosts.iter().find(far) {
                return Err(format!(
                    "server.token (or server.token_file) is required to tell takedown.imagehosts \
                     `{host}`: an imagehost refuses takedowns from another host without it"
                ));
            }
        }
        if self.server.token.is_none() && !self.server.listen.ip().is_loopback() {
            return Err(format!(
                "server.token (or server.token_file) is required when server.listen ({}) is not a \
                 loopback address: without it anyone who reaches the port can delete any image \
                 everywhere",
                self.server.listen
            ));
        }
        if self.fileservers.len() < 2 {
            return Err(format!(
                "fileservers: replication needs at least two, {} configured",
                self.fileservers.len()
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for fs in &self.fileservers {
            fs.validate()?;
            if !names.insert(fs.name.as_str()) {
                return Err(format!("fileservers: the name `{}` is used twice", fs.name));
            }
        }
        if self.fileservers.windows(2).any(|w| w[0].layout != w[1].layout) {
            return Err("fileservers: all mirrored fileservers must use the same layout".into());
        }
        if self.buckets.is_empty() {
            return Err("buckets: name at least one bucket to mirror".into());
        }
        if self.queue.path.as_os_str().is_empty() {
            return Err("queue.path is empty".into());
        }
        if self.copy.workers == 0 {
            return Err("copy.workers must be at least 1".into());
        }
        if self.copy.initial_backoff.is_zero() || self.copy.max_backoff < self.copy.initial_backoff {
            return Err("copy.initial_backoff must be > 0 and <= copy.max_backoff".into());
        }
        if !(1..=1000).contains(&self.anti_entropy.page_size) {
            return Err("anti_entropy.page_size must be between 1 and 1000".into());
        }
        if !(1..=256).contains(&self.scrub.parallel) {
            return Err("scrub.parallel must be between 1 and 256".into());
        }
        if self.anti_entropy.max_ahead < self.copy.workers {
            return Err(
                "anti_entropy.max_ahead must be at least copy.workers (else workers sit idle)".into(),
            );
        }
        if self.tombstones.retention < Duration::from_secs(24 * 3600) {
            return Err(
                "tombstones.retention must be at least 1 day (outages last longer than you think)".into(),
            );
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
            ("buckets = []\n", Some("at least one bucket")),
            (
                "fileservers = [{ name = \"a\", directory = { path = \"/tmp/a\" } }]\n",
                Some("at least two"),
            ),
            ("[queue]\npath = \"\"\n", Some("queue.path")),
            ("[queue]\nfile = \"x\"\n", Some("unknown field `file`")),
            ("[copy]\nworkers = 0\n", Some("copy.workers")),
            (
                "[copy]\ninitial_backoff = \"10m\"\nmax_backoff = \"1m\"\n",
                Some("copy.initial_backoff"),
            ),
            ("[tombstones]\nretention = \"1h\"\n", Some("tombstones.retention")),
            (
                "[server]\nlisten = \"0.0.0.0:8900\"\n",
                Some("server.token (or server.token_file) is required"),
            ),
            ("[server]\nlisten = \"10.0.0.5:8900\"\ntoken = \"t\"\n", None),
            ("[server]\nlisten = \"[::1]:8900\"\n", None),
            ("[server]\ntoken = \"\"\n", Some("server.token is empty")),
            (
                "[takedown]\nimagehosts = [\"10.0.0.31:9800\"]\n",
                Some("required to tell takedown.imagehosts `10.0.0.31:9800`"),
            ),
            ("[takedown]\nimagehosts = [\"127.0.0.1:9800\"]\n", None),
            (
                "[server]\ntoken = \"t\"\n[takedown]\nimagehosts = [\"10.0.0.31:9800\"]\n",
                None,
            ),
            (
                "[takedown]\nimagehosts = [\"imagehost-1\"]\n",
                Some("takedown.imagehosts"),
            ),
            (
                "[anti_entropy]\npage_size = 5000\n",
                Some("anti_entropy.page_size"),
            ),
            (
                "[anti_entropy]\nmax_ahead = 4\n",
                Some("anti_entropy.max_ahead must be at least copy.workers"),
            ),
            ("[anti_entropy]\nmax_ahead = 8\n", None),
            ("[scrub]\nparallel = 0\n", Some("scrub.parallel")),
        ];
        for (text, want) in cases {
            let got = ConfigLoader::new("blobsync")
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
