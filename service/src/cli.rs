//! Command-line flags every daemon accepts, flattened into each service's own clap parser.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::ConfigLoader;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonArgs {
    /// TOML configuration file (layered over the built-in defaults, under the environment and CLI).
    #[arg(short = 'c', long = "config", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Override one setting, e.g. `--set server.listen=127.0.0.1:8800` (repeatable; wins over all).
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    pub set: Vec<String>,

    /// Load and validate the configuration, print a summary, and exit (0 = valid, 2 = invalid).
    #[arg(long, global = true)]
    pub check_config: bool,

    /// Log format: `text` or `json` (shorthand for `--set log.format=...`).
    #[arg(long, value_name = "FORMAT", global = true)]
    pub log_format: Option<String>,

    /// Log filter, e.g. `info` or `imagehost=debug,info` (shorthand for `--set log.level=...`).
    #[arg(long, value_name = "FILTER", global = true)]
    pub log_level: Option<String>,

    /// Read each `*_file` secret (and TLS `cert_file`/`key_file`) from DIR by its file name
    /// instead of from the directory the config names (`/run/secrets/fs1-secret-key` →
    /// `DIR/fs1-secret-key`): checks a config on a machine without its secrets, e.g.
    /// `--check-config --secrets-dir configs/stand-in-secrets`.
    #[arg(long, value_name = "DIR", global = true)]
    pub secrets_dir: Option<PathBuf>,
}

impl CommonArgs {
    /// A loader for `service` with this invocation's file and overrides, reading the real environment.
    pub fn loader(&self, service: &str) -> ConfigLoader {
        let mut loader = ConfigLoader::new(service)
            .file(self.config.clone())
            .env_vars(std::env::vars())
            .overrides(self.set.clone())
            .secrets_dir(self.secrets_dir.clone());
        if let Some(f) = &self.log_format {
            loader = loader.flag("--log-format", "log.format", f);
        }
        if let Some(l) = &self.log_level {
            loader = loader.flag("--log-level", "log.level", l);
        }
        loader
    }
}

impl CommonArgs {
    /// Loads and validates `service`'s configuration, or prints why not and exits with status 2.
    /// With `--check-config`, prints `configuration OK (<summary>)` and exits with status 0.
    pub fn load_or_exit<T: Serialize + DeserializeOwned + Default>(
        &self,
        service: &str,
        secrets: &[&str],
        validate: impl Fn(&T) -> Result<(), String>,
        summary: impl Fn(&T) -> String,
    ) -> T {
        let config: T = match self.loader(service).secrets(secrets).load() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{service}: {e}");
                std::process::exit(2);
            }
        };
        if let Err(e) = validate(&config) {
            eprintln!("{service}: invalid configuration: {e}");
            std::process::exit(2);
        }
        if self.check_config {
            println!("{service}: configuration OK ({})", summary(&config));
            std::process::exit(0);
        }
        config
    }
}
