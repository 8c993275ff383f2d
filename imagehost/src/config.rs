//! imagehost's configuration: one struct, unknown keys rejected, layered by `service::ConfigLoader`.

use std::net::SocketAddr;

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
    pub buckets: Buckets,
    /// The fileservers, in read-preference order. Uploads are written to all of them.
    pub fileservers: Vec<FileserverConfig>,
    pub log: LogConfig,
    pub admin: AdminConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The public base URL written into upload responses (OH `service_url`).
    pub service_url: String,
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
        Ok(())
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
