//! Image and account blacklists (§5, D13): built-in entries plus JSON files reloaded while running.
//!
//! A file is a flat array of exact strings, or `{"urls": [...], "patterns": ["<regex>", ...]}`.
//! A file that fails to parse keeps the previous list in force (and is logged), so a typo during
//! a takedown never empties the blacklist.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use regex::Regex;
use serde::Deserialize;

/// Accounts the imagehoster refuses uploads from, whatever the files say.
const BUILTIN_ACCOUNTS: &[&str] = &["mpspringer", "aplomb", "iamgod", "cpcensorshiptest"];

/// One list: exact entries and regular expressions.
#[derive(Debug, Default)]
pub struct List {
    exact: HashSet<String>,
    patterns: Vec<Regex>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum FileFormat {
    Flat(Vec<String>),
    Structured {
        #[serde(default)]
        urls: Vec<String>,
        #[serde(default)]
        patterns: Vec<String>,
    },
}

impl List {
    pub fn parse(json: &str) -> Result<Self, String> {
        let (urls, patterns) = match serde_json::from_str::<FileFormat>(json).map_err(|e| e.to_string())? {
            FileFormat::Flat(urls) => (urls, Vec::new()),
            FileFormat::Structured { urls, patterns } => (urls, patterns),
        };
        let patterns = patterns
            .iter()
            .map(|p| {
                regex::RegexBuilder::new(p)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| format!("pattern {p:?}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            exact: urls.into_iter().collect(),
            patterns,
        })
    }

    pub fn matches(&self, candidate: &str) -> bool {
        self.exact.contains(candidate) || self.patterns.iter().any(|p| p.is_match(candidate))
    }

    fn len(&self) -> usize {
        self.exact.len() + self.patterns.len()
    }
}

struct Watched {
    path: Option<PathBuf>,
    builtin: &'static [&'static str],
    stamp: Option<(SystemTime, u64)>,
    list: Arc<List>,
}

impl Watched {
    fn new(path: Option<PathBuf>, builtin: &'static [&'static str]) -> Result<Self, String> {
        let mut w = Self {
            path,
            builtin,
            stamp: None,
            list: Arc::new(List::default()),
        };
        w.reload(true)?;
        Ok(w)
    }

    /// Re-reads the file if it changed. At start-up a bad file is an error; later it is logged.
    fn reload(&mut self, strict: bool) -> Result<(), String> {
        let Some(path) = self.path.clone() else {
            self.list = Arc::new(with_builtin(List::default(), self.builtin));
            return Ok(());
        };
        let stamp = stamp(&path);
        if stamp.is_some() && stamp == self.stamp {
            return Ok(());
        }
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| List::parse(&t));
        match parsed {
            Ok(list) => {
                let list = with_builtin(list, self.builtin);
                tracing::info!(file = %path.display(), entries = list.len(), "blacklist loaded");
                self.list = Arc::new(list);
                self.stamp = stamp;
                Ok(())
            }
            Err(e) if strict => Err(format!("{}: {e}", path.display())),
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "blacklist file invalid; keeping the previous list");
                self.stamp = stamp;
                Ok(())
            }
        }
    }
}

fn with_builtin(mut list: List, builtin: &[&str]) -> List {
    list.exact.extend(builtin.iter().map(|s| s.to_string()));
    list
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Both lists, shared by every request.
pub struct Blacklist {
    images: RwLock<Watched>,
    accounts: RwLock<Watched>,
}

impl Blacklist {
    pub fn load(images: Option<PathBuf>, accounts: Option<PathBuf>) -> Result<Arc<Self>, String> {
        Ok(Arc::new(Self {
            images: RwLock::new(Watched::new(images, &[])?),
            accounts: RwLock::new(Watched::new(accounts, BUILTIN_ACCOUNTS)?),
        }))
    }

    fn images(&self) -> Arc<List> {
        self.images.read().map(|w| w.list.clone()).unwrap_or_default()
    }

    /// An upload's bare hash (`DQm…`) on the image list.
    pub fn has_image_hash(&self, hash: &str) -> bool {
        self.images().matches(hash)
    }

    pub fn has_account(&self, name: &str) -> bool {
        self.accounts
            .read()
            .map(|w| w.list.matches(name))
            .unwrap_or(false)
    }

    /// §5 proxy matching: the full href, origin + path, and every path segment of 30 or more
    /// alphanumeric characters (so `?x=1` or `#frag` cannot dodge an entry).
    pub fn has_url(&self, url: &url::Url) -> bool {
        let list = self.images();
        url_candidates(url).iter().any(|c| list.matches(c))
    }

    /// Re-reads changed files every `every` until the process ends.
    pub fn spawn_reloader(self: &Arc<Self>, every: Duration) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(me) = me.upgrade() else { return };
                for lock in [&me.images, &me.accounts] {
                    if let Ok(mut w) = lock.write() {
                        let _ = w.reload(false);
                    }
                }
            }
        });
    }
}

pub fn url_candidates(url: &url::Url) -> Vec<String> {
    let mut out = vec![
        url.as_str().to_string(),
        format!("{}{}", url.origin().ascii_serialization(), url.path()),
    ];
    out.extend(
        url.path()
            .split('/')
            .filter(|s| s.len() >= 30 && s.chars().all(|c| c.is_ascii_alphanumeric()))
            .map(str::to_string),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_formats_table() {
        let flat = List::parse(r#"["https://a.example/x.jpg", "DQmAbc"]"#).unwrap();
        assert!(flat.matches("DQmAbc") && !flat.matches("DQmAb"));
        let s = List::parse(r#"{"urls": ["u"], "patterns": ["^https?://bad\\.example/"]}"#).unwrap();
        assert!(
            s.matches("u")
                && s.matches("https://bad.example/anything")
                && !s.matches("https://good.example/")
        );
        assert!(List::parse(r#"{"patterns": ["("]}"#).is_err());
        assert!(List::parse("not json").is_err());
    }

    #[test]
    fn url_candidates_defeat_query_and_fragment_bypasses() {
        let list = List::parse(
            r#"["https://host.example/img/photo.jpg", "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"]"#,
        )
        .unwrap();
        let cases = [
            ("https://host.example/img/photo.jpg", true),
            ("https://host.example/img/photo.jpg?_=1", true),
            ("https://host.example/img/photo.jpg#frag", true),
            (
                "https://other.example/ipfs/QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG/x.png",
                true,
            ),
            ("https://host.example/img/other.jpg", false),
        ];
        for (u, want) in cases {
            let url = url::Url::parse(u).unwrap();
            assert_eq!(url_candidates(&url).iter().any(|c| list.matches(c)), want, "{u}");
        }
    }

    #[test]
    fn builtin_accounts_and_reload_keeps_last_good_list() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("accounts.json");
        std::fs::write(&file, r#"["spammer"]"#).unwrap();
        let mut w = Watched::new(Some(file.clone()), BUILTIN_ACCOUNTS).unwrap();
        assert!(w.list.matches("spammer") && w.list.matches("iamgod"));
        std::fs::write(&file, r#"["spammer", "another-one"]"#).unwrap();
        w.stamp = None; // mtime granularity: force the re-read
        w.reload(false).unwrap();
        assert!(w.list.matches("another-one"));
        std::fs::write(&file, "[broken").unwrap();
        w.stamp = None;
        w.reload(false).unwrap();
        assert!(
            w.list.matches("another-one"),
            "a broken file keeps the previous list"
        );
        assert!(
            Watched::new(Some(file), BUILTIN_ACCOUNTS).is_err(),
            "but is an error at start-up"
        );
    }
}
