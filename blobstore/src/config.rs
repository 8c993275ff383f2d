//! Fileserver configuration, shared by imagehost and blobsync.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service::Secret;

use crate::Layout;

/// One fileserver: a name, a key layout, and exactly one backend (`s3` or `directory`).
///
/// ```toml
/// [[fileservers]]
/// name = "fs1"
/// s3 = { endpoint = "http://10.0.0.5:3900", access_key_id = "GK…", secret_access_key_file = "/run/secrets/fs1" }
///
/// [[fileservers]]
/// name = "local"
/// layout = "partitioned"
/// directory = { path = "/var/lib/hive/fs-local" }
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileserverConfig {
    pub name: String,
    #[serde(default)]
    pub layout: Layout,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Config>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<DirConfig>,
}

impl FileserverConfig {
    pub fn directory(name: &str, path: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            directory: Some(DirConfig {
                path: path.into(),
                create: true,
            }),
            ..Self::default()
        }
    }

    /// An S3 fileserver with static credentials and default timeouts.
    pub fn s3(name: &str, endpoint: &str, access_key_id: &str, secret_access_key: &str) -> Self {
        Self {
            name: name.into(),
            s3: Some(S3Config {
                endpoint: endpoint.into(),
                access_key_id: Some(access_key_id.into()),
                secret_access_key: Some(Secret::new(secret_access_key)),
                ..S3Config::default()
            }),
            ..Self::default()
        }
    }

    /// Checks the entry names a backend and is self-consistent.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "fileserver name `{}` must be non-empty [A-Za-z0-9_-]",
                self.name
            ));
        }
        match (&self.s3, &self.directory) {
            (Some(s3), None) => s3
                .validate()
                .map_err(|e| format!("fileserver `{}`: {e}", self.name)),
            (None, Some(d)) if d.path.as_os_str().is_empty() => {
                Err(format!("fileserver `{}`: directory.path is empty", self.name))
            }
            (None, Some(_)) => Ok(()),
            (Some(_), Some(_)) => Err(format!(
                "fileserver `{}` sets both `s3` and `directory`; pick one",
                self.name
            )),
            (None, None) => Err(format!(
                "fileserver `{}` needs an `s3` or a `directory` table",
                self.name
            )),
        }
    }
}

/// A directory-backed fileserver: each bucket is a subdirectory of `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirConfig {
    pub path: PathBuf,
    /// Create missing bucket directories at start-up. Turn off on production mounts so an
    /// unmounted disk is reported as unavailable instead of silently filling the root disk.
    #[serde(default = "yes")]
    pub create: bool,
}

fn yes() -> bool {
    true
}

/// An S3-compatible fileserver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// `http(s)://host:port` of the S3 API.
    pub endpoint: String,
    pub region: String,
    /// Falls back to `AWS_ACCESS_KEY_ID` when unset.
    pub access_key_id: Option<String>,
    /// Falls back to `AWS_SECRET_ACCESS_KEY`; may be given as `secret_access_key_file`.
    pub secret_access_key: Option<Secret>,
    /// Path-style addressing (`endpoint/bucket/key`), what MinIO and Garage expect.
    pub path_style: bool,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait for response headers, and for each chunk of a body.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Longest one attempt of one request (one part of a multipart upload) may take.
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Duration,
    /// Attempts per request, including the first; only retriable failures are retried.
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Bodies up to this size go in one PutObject; larger ones as multipart parts of this size.
    pub part_size: u64,
    /// Reuse connections between requests. Unset: reuse for `https://` endpoints (a handshake is
    /// costly) and not for plain `http://` ones. Servers that leave Nagle's algorithm on (Garage)
    /// make every GET on a reused connection stall for the client's delayed ACK (~40 ms on Linux,
    /// measured: 45 ms against 4.4 ms per small GET), while a fresh LAN connection costs well under
    /// a millisecond.
    pub keep_alive: Option<bool>,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            path_style: true,
            connect_timeout: Duration::from_secs(3),
            read_timeout: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(120),
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            part_size: 8 << 20,
            keep_alive: None,
        }
    }
}

impl S3Config {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(format!(
                "s3.endpoint `{}` must start with http:// or https://",
                self.endpoint
            ));
        }
        if self.region.is_empty() {
            return Err("s3.region is empty (Garage and MinIO use `us-east-1`)".into());
        }
        if !(5 << 20..=5 << 30).contains(&self.part_size) {
            return Err(format!(
                "s3.part_size {} must be between 5 MiB and 5 GiB",
                self.part_size
            ));
        }
        if self.max_attempts == 0 {
            return Err("s3.max_attempts must be at least 1".into());
        }
        self.credentials().map(|_| ())
    }

    /// Whether connections are reused (see `keep_alive`).
    pub fn reuses_connections(&self) -> bool {
        self.keep_alive.unwrap_or(self.endpoint.starts_with("https://"))
    }

    /// The access key pair from config, else from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    pub fn credentials(&self) -> Result<(String, String), String> {
        let access = self
            .access_key_id
            .clone()
            .or_else(|| std::env::var("AWS_ACCESS_KEY_ID").ok());
        let secret = self
            .secret_access_key
            .as_ref()
            .map(|s| s.expose().to_string())
            .or_else(|| std::env::var("AWS_SECRET_ACCESS_KEY").ok());
        match (access, secret) {
            (Some(a), Some(s)) if !a.is_empty() && !s.is_empty() => Ok((a, s)),
            _ => Err("no S3 credentials: set access_key_id and secret_access_key(_file), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_table() {
        let s3 = |endpoint: &str| S3Config {
            endpoint: endpoint.into(),
            access_key_id: Some("GK1".into()),
            secret_access_key: Some(Secret::new("s")),
            ..S3Config::default()
        };
        let cases: Vec<(FileserverConfig, Option<&str>)> = vec![
            (FileserverConfig::directory("a", "/tmp/x"), None),
            (
                FileserverConfig {
                    name: "b".into(),
                    s3: Some(s3("http://127.0.0.1:3900")),
                    ..Default::default()
                },
                None,
            ),
            (
                FileserverConfig {
                    name: "c".into(),
                    s3: Some(s3("127.0.0.1:3900")),
                    ..Default::default()
                },
                Some("must start with http"),
            ),
            (
                FileserverConfig {
                    name: "d".into(),
                    ..Default::default()
                },
                Some("needs an `s3` or a `directory`"),
            ),
            (
                FileserverConfig {
                    s3: Some(s3("http://x")),
                    ..FileserverConfig::directory("e", "/tmp")
                },
                Some("pick one"),
            ),
            (
                FileserverConfig::directory("bad name", "/tmp"),
                Some("must be non-empty"),
            ),
            (
                FileserverConfig {
                    name: "f".into(),
                    s3: Some(S3Config {
                        part_size: 1024,
                        ..s3("http://x")
                    }),
                    ..Default::default()
                },
                Some("part_size"),
            ),
        ];
        for (cfg, want) in cases {
            match (cfg.validate(), want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) => assert!(e.contains(w), "{e} should contain {w}"),
                (got, want) => panic!("{}: got {got:?}, want {want:?}", cfg.name),
            }
        }
    }
}
