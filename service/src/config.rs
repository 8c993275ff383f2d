//! Layered configuration: built-in defaults → TOML file → `SERVICE__SECTION__KEY` env → `--set` CLI.
//!
//! Layers are merged as TOML trees, then deserialised once into the service's config struct, whose
//! types use `#[serde(deny_unknown_fields)]`: a typo anywhere is an error naming the key and the layer
//! it came from. Secrets can be given as `<name>_file = "/path"` for the key names a service declares
//! with [`ConfigLoader::secrets`]; the file's contents (without the trailing newline) become `<name>`.

use std::collections::BTreeMap;
use std::path::PathBuf;

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
    #[error("cannot read secret file {path} (for `{key}`{origin}): {source}")]
    ReadSecret {
        /// The full path of the `*_file` key, e.g. `fileservers[1].secret_access_key_file`.
        key: String,
        path: PathBuf,
        /// Which layer named the file: ` (set by file /etc/…)`, or empty.
        origin: String,
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
    /// `KEY=VALUE` texts, each with the flag that gave it when that was not `--set`.
    overrides: Vec<(String, Option<String>)>,
    secret_keys: Vec<String>,
    secrets_dir: Option<PathBuf>,
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
            secrets_dir: None,
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
        self.overrides.extend(overrides.into_iter().map(|o| (o, None)));
        self
    }

    /// One override given by a shorthand flag (`--log-format json` sets `log.format`): applied
    /// in order with the `--set` ones, and named by its flag in error messages.
    pub fn flag(mut self, flag: &str, key: &str, value: &str) -> Self {
        self.overrides
            .push((format!("{key}={value}"), Some(flag.to_string())));
        self
    }

    /// Key names (at any depth) that may instead be read from a file named by `<key>_file`.
    pub fn secrets(mut self, keys: &[&str]) -> Self {
        self.secret_keys = keys.iter().map(|k| k.to_string()).collect();
        self
    }

    /// Reads every `<key>_file` from `dir` by its file name instead of from its own directory
    /// (`/run/secrets/fs1-secret-key` → `<dir>/fs1-secret-key`), and points TLS `cert_file` and
    /// `key_file` paths there too: a production config checked on a machine that does not hold
    /// its secrets, with stand-ins.
    pub fn secrets_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.secrets_dir = dir;
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

        for (given, flag) in &self.overrides {
            let (key, value) = given
                .split_once('=')
                .ok_or_else(|| ConfigError::BadOverride { given: given.clone() })?;
            let path: Vec<String> = key.trim().split('.').map(|s| s.trim().to_string()).collect();
            if path.iter().any(|p| p.is_empty()) {
                return Err(ConfigError::BadOverride { given: given.clone() });
            }
            let origin = match flag {
                Some(flag) => flag.clone(),
                None => format!("--set {key}"),
            };
            set_path(&mut tree, &path, value, &origin, &mut origins)?;
        }

        let secrets = Secrets {
            keys: &self.secret_keys,
            dir: self.secrets_dir.as_deref(),
            origins: &origins,
        };
        secrets.resolve(&mut tree, "")?;

        let de = tree.clone();
        serde_path_to_error::deserialize::<_, T>(de).map_err(|err| {
            let path = err.path().to_string();
            // The message alone: the error's own text adds an "in `section`" line that repeats
            // (less precisely) the path this error already names.
            let message = err.inner().message().trim().to_string();
            let origin = origin_for(&origins, &path, &message);
            ConfigError::Invalid {
                path,
                message,
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

/// Keys (at any depth) naming TLS certificate and key files, which a stand-in secrets
/// directory replaces as it replaces `<key>_file` secrets.
const TLS_FILE_KEYS: [&str; 2] = ["cert_file", "key_file"];

/// Where `<key>_file` settings are resolved: which keys, from which directory, set by whom.
struct Secrets<'a> {
    keys: &'a [String],
    dir: Option<&'a std::path::Path>,
    origins: &'a BTreeMap<String, String>,
}

impl Secrets<'_> {
    /// Replaces every declared `<key>_file` (at `at`, a path such as `fileservers[1]`, and
    /// below) with `<key>` holding the file's contents.
    fn resolve(&self, tree: &mut Value, at: &str) -> Result<(), ConfigError> {
        let child = |k: &str| {
            if at.is_empty() {
                k.to_string()
            } else {
                format!("{at}.{k}")
            }
        };
        match tree {
            Value::Table(t) => {
                // TLS material the service reads itself: with stand-ins, from their directory.
                if let Some(dir) = self.dir {
                    for key in TLS_FILE_KEYS {
                        if let Some(Value::String(path)) = t.get_mut(key) {
                            if let Some(name) = std::path::Path::new(path.as_str()).file_name() {
                                *path = dir.join(name).display().to_string();
                            }
                        }
                    }
                }
                for key in self.keys {
                    let file_key = format!("{key}_file");
                    if let Some(v) = t.remove(&file_key) {
                        let full = child(&file_key);
                        let Value::String(path) = v else {
                            return Err(ConfigError::Rule(format!("`{full}` must be a file path")));
                        };
                        // An empty value is a default placeholder, not a second setting.
                        if t.get(key)
                            .is_some_and(|v| !matches!(v, Value::String(s) if s.is_empty()))
                        {
                            return Err(ConfigError::SecretTwice { key: child(key) });
                        }
                        let text = self.read(&path, full)?;
                        t.insert(key.clone(), Value::String(text));
                    }
                }
                for (k, v) in t.iter_mut() {
                    self.resolve(v, &child(k))?;
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter_mut().enumerate() {
                    self.resolve(v, &format!("{at}[{i}]"))?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The secret in `path` (or its stand-in in `dir`), without the trailing newline.
    fn read(&self, path: &str, key: String) -> Result<String, ConfigError> {
        let path = match (self.dir, std::path::Path::new(path).file_name()) {
            (Some(dir), Some(name)) => dir.join(name),
            _ => PathBuf::from(path),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text.trim_end_matches(['\n', '\r']).to_string()),
            Err(source) => Err(ConfigError::ReadSecret {
                origin: layer_of(self.origins, &key),
                key,
                path,
                source,
            }),
        }
    }
}

/// Names the layer that set the offending key, so "unknown field" points at the env var or file.
fn origin_for(origins: &BTreeMap<String, String>, path: &str, message: &str) -> String {
    // Unknown-field errors report the parent path; the field name is in the message.
    let field = message.split('`').nth(1).unwrap_or("");
    let path = if path == "." { "" } else { path };
    if !field.is_empty() {
        let with_field = if path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        };
        if let Some(o) = origins.get(&with_field) {
            return format!(" (set by {o})");
        }
    }
    layer_of(origins, path)
}

/// ` (set by …)` for the layer that set `path` or, for a key inside an array of tables such as
/// `fileservers[1].endpoint` (recorded whole, as `fileservers`), the nearest enclosing key.
fn layer_of(origins: &BTreeMap<String, String>, path: &str) -> String {
    let mut at = path;
    loop {
        if let Some(o) = origins.get(at) {
            return format!(" (set by {o})");
        }
        match at.rfind(['.', '[']) {
            Some(i) if i > 0 => at = &at[..i],
            _ => return String::new(),
        }
    }
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
    #[serde(deny_unknown_fields)]
    struct Item {
        name: String,
        #[serde(default)]
        secret_access_key: crate::Secret,
    }

    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Conf {
        server: Server,
        s3: S3,
        name: String,
        tags: Vec<String>,
        items: Vec<Item>,
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

    #[test]
    fn errors_name_the_layer_inside_arrays_of_tables_and_carry_no_section_tail() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            &dir,
            "c.toml",
            "[[items]]\nname = \"a\"\n[[items]]\nname = \"b\"\nendpiont = \"x\"\n",
        );
        let err = ConfigLoader::new("svc")
            .file(Some(f.clone()))
            .load::<Conf>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("`items[1].endpiont`"), "{err}");
        assert!(err.contains("unknown field `endpiont`"), "{err}");
        assert!(err.contains(&format!("(set by file {})", f.display())), "{err}");
        assert!(!err.contains('\n'), "one line: {err:?}");

        let err = ConfigLoader::new("svc")
            .overrides(vec!["server.workers=many".into()])
            .load::<Conf>()
            .unwrap_err()
            .to_string();
        assert!(!err.contains('\n') && !err.contains("in `server`"), "{err:?}");
    }

    #[test]
    fn a_shorthand_flag_is_named_as_given() {
        let err = ConfigLoader::new("svc")
            .flag("--log-format", "server.workers", "yaml")
            .load::<Conf>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("(set by --log-format)"), "{err}");
        assert!(!err.contains("--set"), "{err}");
    }

    #[test]
    fn a_missing_secret_file_names_its_entry_and_layer() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            &dir,
            "c.toml",
            "[[items]]\nname = \"a\"\n[[items]]\nname = \"b\"\nsecret_access_key_file = \"/nonexistent/b.key\"\n",
        );
        let err = ConfigLoader::new("svc")
            .file(Some(f.clone()))
            .secrets(&["secret_access_key"])
            .load::<Conf>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/b.key"), "{err}");
        assert!(err.contains("`items[1].secret_access_key_file`"), "{err}");
        assert!(err.contains(&format!("set by file {}", f.display())), "{err}");
    }

    #[test]
    fn a_secrets_dir_stands_in_for_secret_and_tls_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.key"), "stand-in\n").unwrap();
        let f = write(
            &dir,
            "c.toml",
            "[[items]]\nname = \"b\"\nsecret_access_key_file = \"/run/secrets/b.key\"\n",
        );
        let c: Conf = ConfigLoader::new("svc")
            .file(Some(f.clone()))
            .secrets(&["secret_access_key"])
            .secrets_dir(Some(dir.path().to_path_buf()))
            .load()
            .unwrap();
        assert_eq!(c.items[0].secret_access_key.expose(), "stand-in");
        // Without it, the real path is read (and here missing).
        assert!(ConfigLoader::new("svc")
            .file(Some(f))
            .secrets(&["secret_access_key"])
            .load::<Conf>()
            .is_err());

        let mut tree: Value = toml::from_str(
            "[tls]\ncerts = [{ cert_file = \"/etc/tls/a.pem\", key_file = \"/etc/tls/a.key\" }]\n",
        )
        .unwrap();
        let origins = BTreeMap::new();
        let secrets = Secrets {
            keys: &[],
            dir: Some(std::path::Path::new("/stand-ins")),
            origins: &origins,
        };
        secrets.resolve(&mut tree, "").unwrap();
        assert_eq!(
            tree["tls"]["certs"][0]["cert_file"].as_str(),
            Some("/stand-ins/a.pem")
        );
        assert_eq!(
            tree["tls"]["certs"][0]["key_file"].as_str(),
            Some("/stand-ins/a.key")
        );
    }
}
