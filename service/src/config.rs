//! Layered configuration: built-in defaults → TOML file → `SERVICE__SECTION__KEY` env → `--set` CLI.
//!
//! Layers are merged as TOML trees, then deserialised once into the service's config struct, whose
//! types use `#[serde(deny_unknown_fields)]`: a typo anywhere is an error naming the key and the layer
//! it came from. Secrets can be given as `<name>_file = "/path"` for the key names a service declares
//! with [`ConfigLoader::secrets`]; the file's contents (without the trailing newline) become `<name>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use toml::{Table, Value};

/// Why a configuration could not be loaded. The message is meant for an operator's terminal.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid TOML: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("bad override `{given}`: expected KEY=VALUE, e.g. server.listen=127.0.0.1:8800")]
    BadOverride { given: String },
    #[error("`{key}` from {origin}: cannot set a key inside `{parent}`, which is not a table")]
    NotATable {
        key: String,
        parent: String,
        origin: String,
    },
    #[error("cannot read secret file {path} (for `{key}`): {source}")]
    ReadSecret {
        key: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("set either `{key}` or `{key}_file`, not both")]
    SecretTwice { key: String },
    #[error("invalid configuration at `{path}`: {message}{origin}")]
    Invalid {
        path: String,
        message: String,
        origin: String,
    },
    #[error("invalid configuration: {0}")]
    Rule(String),
}

/// Builds one service's configuration from its layers. See the module docs for the order.
pub struct ConfigLoader {
    service: String,
    file: Option<PathBuf>,
    env: Vec<(String, String)>,
    overrides: Vec<String>,
    secret_keys: Vec<String>,
    text: Option<(String, String)>,
}

impl ConfigLoader {
    /// `service` names the environment prefix: `imagehost` reads `IMAGEHOST__…` variables.
    pub fn new(service: &str) -> Self {
        Self {
            service: service.to_string(),
            file: None,
            env: Vec::new(),
            overrides: Vec::new(),
            secret_keys: Vec::new(),
            text: None,
        }
    }

    pub fn file(mut self, file: Option<PathBuf>) -> Self {
        self.file = file;
        self
    }

    /// The environment to read (pass `std::env::vars()`; tests pass their own pairs).
    pub fn env_vars(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env = vars.into_iter().collect();
        self
    }

    /// `KEY=VALUE` overrides, applied last, in order.
    pub fn overrides(mut self, overrides: Vec<String>) -> Self {
        self.overrides = overrides;
        self
    }

    /// Key names (at any depth) that may instead be read from a file named by `<key>_file`.
    pub fn secrets(mut self, keys: &[&str]) -> Self {
        self.secret_keys = keys.iter().map(|k| k.to_string()).collect();
        self
    }

    pub fn load<T: Serialize + DeserializeOwned + Default>(self) -> Result<T, ConfigError> {
        let mut tree = Value::try_from(T::default())
            .map_err(|e| ConfigError::Rule(format!("built-in defaults do not serialise: {e}")))?;
        let mut origins = BTreeMap::new();

        let file = match (&self.file, &self.text) {
            (Some(path), _) => Some((
                path.clone(),
                std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
                    path: path.clone(),
                    source,
                })?,
            )),
            (None, Some((origin, text))) => Some((PathBuf::from(origin), text.clone())),
            (None, None) => None,
        };
        if let Some((path, text)) = file {
            let table: Table = toml::from_str(&text).map_err(|e| ConfigError::ParseFile {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let origin = format!("file {}", path.display());
            merge_table(&mut tree, table, "", &origin, &mut origins);
        }

        let prefix = format!("{}__", self.service.to_ascii_uppercase());
        let mut env: Vec<_> = self.env.iter().filter(|(k, _)| k.starts_with(&prefix)).collect();
        env.sort();
        for (name, value) in env {
            let path: Vec<String> = name[prefix.len()..]
                .split("__")
                .map(|s| s.to_ascii_lowercase())
                .collect();
            if path.iter().any(|p| p.is_empty()) {
                continue;
            }
            set_path(
                &mut tree,
                &path,
                value,
                &format!("environment variable {name}"),
                &mut origins,
            )?;
        }

        for given in &self.overrides {
            let (key, value) = given
                .split_once('=')
                .ok_or_else(|| ConfigError::BadOverride { given: given.clone() })?;
            let path: Vec<String> = key.trim().split('.').map(|s| s.trim().to_string()).collect();
            if path.iter().any(|p| p.is_empty()) {
                return Err(ConfigError::BadOverride { given: given.clone() });
            }
            set_path(&mut tree, &path, value, &format!("--set {key}"), &mut origins)?;
        }

        resolve_secret_files(&mut tree, &self.secret_keys)?;

        let de = tree.clone();
        serde_path_to_error::deserialize::<_, T>(de).map_err(|err| {
            let path = err.path().to_string();
            let origin = origin_for(&origins, &path, &err.inner().to_string());
            ConfigError::Invalid {
                path,
                message: err.into_inner().to_string(),
                origin,
            }
        })
    }

    /// A TOML document given as text instead of a file (config-validation tests, embedded examples).
    /// `origin` names it in error messages.
    pub fn toml_text(mut self, origin: &str, text: &str) -> Self {
        self.text = Some((origin.to_string(), text.to_string()));
        self
    }
}

/// Merges `src` into `dst`; tables merge key by key, anything else replaces. Records where leaves came from.
fn merge_table(dst: &mut Value, src: Table, at: &str, origin: &str, origins: &mut BTreeMap<String, String>) {
    let Value::Table(dst) = dst else { return };
    for (k, v) in src {
        let path = if at.is_empty() {
            k.clone()
        } else {
            format!("{at}.{k}")
        };
        match (dst.get_mut(&k), v) {
            (Some(existing @ Value::Table(_)), Value::Table(t)) => {
                merge_table(existing, t, &path, origin, origins)
            }
            (_, v) => {
                origins.insert(path, origin.to_string());
                dst.insert(k, v);
            }
        }
    }
}

/// Sets one leaf from a string. The type follows the value already there (a string stays a string);
/// for new keys the text is read as a TOML value when it parses (numbers, booleans, arrays, inline
/// tables) and as a plain string otherwise.
fn set_path(
    tree: &mut Value,
    path: &[String],
    raw: &str,
    origin: &str,
    origins: &mut BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    let raw = raw.trim();
    let mut node = tree;
    for (i, seg) in path[..path.len() - 1].iter().enumerate() {
        let Value::Table(t) = node else {
            return Err(ConfigError::NotATable {
                key: path.join("."),
                parent: path[..i].join("."),
                origin: origin.to_string(),
            });
        };
        node = t.entry(seg.clone()).or_insert_with(|| Value::Table(Table::new()));
    }
    let Value::Table(t) = node else {
        return Err(ConfigError::NotATable {
            key: path.join("."),
            parent: path[..path.len() - 1].join("."),
            origin: origin.to_string(),
        });
    };
    let leaf = &path[path.len() - 1];
    let value = match t.get(leaf) {
        // A string key takes the text as it is, unless it was written as a TOML string
        // (`"/var/cache"`): then the quotes are syntax, not part of the value.
        Some(Value::String(_)) => match parse_scalar(raw) {
            Value::String(s) => Value::String(s),
            _ => Value::String(raw.to_string()),
        },
        _ => parse_scalar(raw),
    };
    t.insert(leaf.clone(), value);
    origins.insert(path.join("."), origin.to_string());
    Ok(())
}

fn parse_scalar(raw: &str) -> Value {
    match toml::from_str::<Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| Value::String(raw.to_string())),
        Err(_) => Value::String(raw.to_string()),
    }
}

fn resolve_secret_files(tree: &mut Value, keys: &[String]) -> Result<(), ConfigError> {
    match tree {
        Value::Table(t) => {
            for key in keys {
                let file_key = format!("{key}_file");
                if let Some(v) = t.remove(&file_key) {
                    let Value::String(path) = v else {
                        return Err(ConfigError::Rule(format!("`{file_key}` must be a file path")));
                    };
                    // An empty value is a default placeholder, not a second setting.
                    if t.get(key)
                        .is_some_and(|v| !matches!(v, Value::String(s) if s.is_empty()))
                    {
                        return Err(ConfigError::SecretTwice { key: key.clone() });
                    }
                    let text = read_secret(key, Path::new(&path))?;
                    t.insert(key.clone(), Value::String(text));
                }
            }
            for (_, v) in t.iter_mut() {
                resolve_secret_files(v, keys)?;
            }
        }
        Value::Array(items) => {
            for v in items {
                resolve_secret_files(v, keys)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn read_secret(key: &str, path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadSecret {
        key: key.to_string(),
        path: path.to_path_buf(),
        source,
    })?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// Names the layer that set the offending key, so "unknown field" points at the env var or file.
fn origin_for(origins: &BTreeMap<String, String>, path: &str, message: &str) -> String {
    // Unknown-field errors report the parent path; the field name is in the message.
    let field = message.split('`').nth(1).unwrap_or("");
    let candidates = [
        if path == "." || path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        },
        path.to_string(),
    ];
    candidates
        .iter()
        .find_map(|c| origins.get(c))
        .map(|o| format!(" (set by {o})"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::time::Duration;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Server {
        listen: String,
        workers: u32,
        #[serde(with = "humantime_serde")]
        drain: Duration,
    }
    impl Default for Server {
        fn default() -> Self {
            Self {
                listen: "127.0.0.1:8800".into(),
                workers: 2,
                drain: Duration::from_secs(10),
            }
        }
    }

    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct S3 {
        access_key_id: String,
        secret_access_key: crate::Secret,
    }

    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Conf {
        server: Server,
        s3: S3,
        name: String,
        tags: Vec<String>,
    }

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn defaults_alone() {
        let c: Conf = ConfigLoader::new("svc").load().unwrap();
        assert_eq!(c, Conf::default());
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            &dir,
            "c.toml",
            "name = \"file\"\n[server]\nlisten = \"0.0.0.0:1\"\nworkers = 4\n",
        );
        // (environment, --set overrides) → expected (listen, workers, name)
        type Case<'a> = (Vec<(String, String)>, Vec<String>, (&'a str, u32, &'a str));
        let cases: Vec<Case> = vec![
            (vec![], vec![], ("0.0.0.0:1", 4, "file")),
            (
                env(&[("SVC__SERVER__WORKERS", "8")]),
                vec![],
                ("0.0.0.0:1", 8, "file"),
            ),
            (
                env(&[("SVC__SERVER__WORKERS", "8")]),
                vec!["server.workers=9".into()],
                ("0.0.0.0:1", 9, "file"),
            ),
            (env(&[("SVC__NAME", "env")]), vec![], ("0.0.0.0:1", 4, "env")),
            (
                env(&[("OTHER__NAME", "x")]),
                vec!["name=cli".into()],
                ("0.0.0.0:1", 4, "cli"),
            ),
            // A string-typed key keeps a numeric-looking value as a string.
            (env(&[("SVC__NAME", "123")]), vec![], ("0.0.0.0:1", 4, "123")),
            // Quotes around a string are TOML's, not the value's.
            (
                vec![],
                vec!["name=\"/var/cache\"".into()],
                ("0.0.0.0:1", 4, "/var/cache"),
            ),
            (env(&[("SVC__NAME", "/a b")]), vec![], ("0.0.0.0:1", 4, "/a b")),
        ];
        for (e, o, (listen, workers, name)) in cases {
            let c: Conf = ConfigLoader::new("svc")
                .file(Some(f.clone()))
                .env_vars(e.clone())
                .overrides(o)
                .load()
                .unwrap();
            assert_eq!(
                (c.server.listen.as_str(), c.server.workers, c.name.as_str()),
                (listen, workers, name),
                "env {e:?}"
            );
        }
    }

    #[test]
    fn durations_and_arrays_parse_from_env() {
        let c: Conf = ConfigLoader::new("svc")
            .env_vars(env(&[
                ("SVC__SERVER__DRAIN", "1m 30s"),
                ("SVC__TAGS", "[\"a\", \"b\"]"),
            ]))
            .load()
            .unwrap();
        assert_eq!(c.server.drain, Duration::from_secs(90));
        assert_eq!(c.tags, vec!["a", "b"]);
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_origin() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(&dir, "c.toml", "[server]\nlisten = \"x\"\nlisen = \"y\"\n");
        let err = ConfigLoader::new("svc")
            .file(Some(f.clone()))
            .load::<Conf>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `lisen`"), "{err}");
        assert!(err.contains("server"), "{err}");
        assert!(err.contains(&f.display().to_string()), "{err}");

        let err = ConfigLoader::new("svc")
            .env_vars(env(&[("SVC__SERVER__WROKERS", "3")]))
            .load::<Conf>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `wrokers`"), "{err}");
        assert!(err.contains("SVC__SERVER__WROKERS"), "{err}");
    }

    #[test]
    fn wrong_types_name_the_key() {
        let err = ConfigLoader::new("svc")
            .overrides(vec!["server.workers=many".into()])
            .load::<Conf>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.workers"), "{err}");
        assert!(err.contains("--set server.workers"), "{err}");
    }

    #[test]
    fn bad_toml_and_bad_overrides_are_readable() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(&dir, "c.toml", "[server\n");
        let err = ConfigLoader::new("svc")
            .file(Some(f))
            .load::<Conf>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("not valid TOML"), "{err}");
        let err = ConfigLoader::new("svc")
            .overrides(vec!["noequals".into()])
            .load::<Conf>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("KEY=VALUE"), "{err}");
        let missing = ConfigLoader::new("svc")
            .file(Some(PathBuf::from("/nonexistent/c.toml")))
            .load::<Conf>()
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("cannot read config file /nonexistent/c.toml"),
            "{missing}"
        );
    }

    #[test]
    fn secrets_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let secret = write(&dir, "s3.key", "s3cr3t\n");
        let f = write(
            &dir,
            "c.toml",
            &format!("[s3]\nsecret_access_key_file = \"{}\"\n", secret.display()),
        );
        let c: Conf = ConfigLoader::new("svc")
            .file(Some(f))
            .secrets(&["secret_access_key"])
            .load()
            .unwrap();
        assert_eq!(c.s3.secret_access_key.expose(), "s3cr3t");
        assert_eq!(format!("{:?}", c.s3.secret_access_key), "<redacted>");

        // Via the environment too.
        let c: Conf = ConfigLoader::new("svc")
            .env_vars(env(&[(
                "SVC__S3__SECRET_ACCESS_KEY_FILE",
                secret.to_str().unwrap(),
            )]))
            .secrets(&["secret_access_key"])
            .load()
            .unwrap();
        assert_eq!(c.s3.secret_access_key.expose(), "s3cr3t");

        // Both at once is ambiguous.
        let both = write(
            &dir,
            "b.toml",
            &format!(
                "[s3]\nsecret_access_key = \"x\"\nsecret_access_key_file = \"{}\"\n",
                secret.display()
            ),
        );
        let err = ConfigLoader::new("svc")
            .file(Some(both))
            .secrets(&["secret_access_key"])
            .load::<Conf>()
            .unwrap_err();
        assert!(matches!(err, ConfigError::SecretTwice { .. }), "{err}");

        // A missing file names the key and the path.
        let err = ConfigLoader::new("svc")
            .overrides(vec!["s3.secret_access_key_file=/nonexistent/key".into()])
            .secrets(&["secret_access_key"])
            .load::<Conf>()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/nonexistent/key") && err.contains("secret_access_key"),
            "{err}"
        );

        // Without the declaration, `*_file` is just an unknown key.
        let f = write(
            &dir,
            "u.toml",
            &format!("[s3]\nsecret_access_key_file = \"{}\"\n", secret.display()),
        );
        assert!(ConfigLoader::new("svc").file(Some(f)).load::<Conf>().is_err());
    }
}
