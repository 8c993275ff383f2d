//! blobsync's configuration: the fileservers to mirror, the buckets, the queue location.

use std::net::SocketAddr;
use std::path::PathBuf;

use blobstore::FileserverConfig;
use serde::{Deserialize, Serialize};
use service::admin::AdminConfig;
use service::LogConfig;

/// Secret keys that may be given as `<key>_file` paths.
pub const SECRET_KEYS: &[&str] = &["secret_access_key"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    /// Buckets to mirror, in priority order (uploads before the proxy cache).
    pub buckets: Vec<String>,
    /// The fileservers kept identical (two or more).
    pub fileservers: Vec<FileserverConfig>,
    pub queue: QueueConfig,
    pub log: LogConfig,
    pub admin: AdminConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The intake and status API.
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// The sled database holding the queue and tombstones.
    pub path: PathBuf,
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
            log: LogConfig::default(),
            admin: AdminConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8900)),
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("./data/blobsync-queue"),
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        self.log.validate()?;
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
