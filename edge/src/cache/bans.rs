//! Bans, Varnish's way: a ban is recorded at once and answered, and checked lazily: an object is
//! tested only against the bans made since it was last checked, when it would be served (memory
//! or disk) or when the background lurker ([`super::lurker`]) reaches it. A ban is retired once
//! every object older than it has been checked. Nothing here holds a lock a hit needs while a
//! regex runs: a hit reads the list through an `Arc` snapshot.
//!
//! Every object carries the ban sequence number it was last checked at (new objects: the number
//! when their fetch was answered). With a disk tier the active bans and the counter are kept in
//! `<disk_dir>/bans.json`, written and fsynced before a ban is acknowledged, so a restart does not
//! bring a banned object back from disk.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use regex::bytes::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use super::tags;

/// Compiled size a ban regex may take (the `regex` crate's `size_limit`).
pub const REGEX_SIZE_LIMIT: usize = 64 << 10;
/// Lazy-DFA cache a ban regex may use per search thread (`dfa_size_limit`).
pub const REGEX_DFA_LIMIT: usize = 1 << 20;
/// Longest ban pattern accepted.
pub const PATTERN_LIMIT: usize = 1024;
/// Bans active at once: each is tested on the first hit of every older object, so a flood of
/// bans would make hits slow; past this, a ban is refused (503) until the lurker retires some.
pub const ACTIVE_LIMIT: usize = 1024;

/// What a ban matches, on an object's URL part (`/path?normalised-query`) or its tags.
#[derive(Debug, Clone)]
pub enum Condition {
    Prefix(Box<[u8]>),
    Regex(Regex),
    /// Any of these surrogate keys (a takedown catch-up may name hundreds).
    Tags(std::collections::HashSet<Box<str>>),
}

/// How a condition is written down (`bans.json`, logs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Spec {
    Prefix(String),
    Regex(String),
    Tags(Vec<String>),
}

impl Spec {
    pub fn kind(&self) -> &'static str {
        match self {
            Spec::Prefix(_) => "ban_prefix",
            Spec::Regex(_) => "ban_regex",
            Spec::Tags(_) => "ban_tag",
        }
    }

    /// The condition, or why it is refused (a message naming the limit, for a 400).
    pub fn compile(&self) -> Result<Condition, String> {
        Ok(match self {
            Spec::Prefix(p) => Condition::Prefix(p.as_bytes().into()),
            Spec::Regex(re) => {
                if re.len() > PATTERN_LIMIT {
                    return Err(format!(
                        "X-Ban-Regex: {} bytes, over the {PATTERN_LIMIT}-byte limit on patterns",
                        re.len()
                    ));
                }
                let compiled = RegexBuilder::new(re)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_DFA_LIMIT)
                    .build()
                    .map_err(|e| match e {
                        regex::Error::CompiledTooBig(_) => format!(
                            "X-Ban-Regex: compiles past the {REGEX_SIZE_LIMIT}-byte limit on ban regexes"
                        ),
                        other => format!("X-Ban-Regex: {other}"),
                    })?;
                Condition::Regex(compiled)
            }
            Spec::Tags(t) => {
                if t.is_empty() || t.iter().any(|t| t.is_empty() || t.len() > 256) {
                    return Err("X-Ban-Tag: one or more tags of 1 to 256 bytes".into());
                }
                Condition::Tags(t.iter().map(|s| s.as_str().into()).collect())
            }
        })
    }
}

impl Condition {
    pub fn matches(&self, url: &[u8], object_tags: &[Box<str>]) -> bool {
        match self {
            Condition::Prefix(p) => url.starts_with(p),
            Condition::Regex(re) => re.is_match(url),
            Condition::Tags(want) => {
                object_tags.iter().any(|t| want.contains(t))
                    || tags::first_segment(url).is_some_and(|s| want.contains(s))
            }
        }
    }
}

/// One active ban.
#[derive(Debug)]
pub struct Ban {
    pub seq: u64,
    pub spec: Spec,
    pub condition: Condition,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    /// The last sequence number handed out (never reused, across restarts too).
    seq: u64,
    bans: Vec<(u64, Spec)>,
}

pub struct Bans {
    /// The last sequence number handed out; an object checked at this number needs no check.
    seq: AtomicU64,
    /// Active bans, oldest first; replaced whole (copy on write), read without waiting.
    active: RwLock<Arc<Vec<Arc<Ban>>>>,
    /// Serialises changes (and the file written for them).
    changes: Mutex<()>,
    file: Option<PathBuf>,
    /// Set when the ban file was missing: until the disk tier's load has raised the counter past
    /// every check number its objects carry, a new ban could be numbered below one of them and
    /// pass it by, so bans are refused ([`AddError::Loading`]).
    floor_pending: std::sync::atomic::AtomicBool,
}

impl Bans {
    /// Bans kept in memory only (no disk tier: a restart empties the cache anyway).
    pub fn in_memory() -> Bans {
        Bans {
            seq: AtomicU64::new(0),
            active: RwLock::new(Arc::new(Vec::new())),
            changes: Mutex::new(()),
            file: None,
            floor_pending: Default::default(),
        }
    }

    /// Bans kept in `dir/bans.json` (the disk tier's directory), reloaded from it.
    pub fn open(dir: &Path) -> std::io::Result<Bans> {
        let file = dir.join("bans.json");
        let missing = !file.exists();
        let saved: Saved = match std::fs::read(&file) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", file.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(e) => return Err(e),
        };
        let mut active = Vec::new();
        for (seq, spec) in saved.bans {
            // A ban that compiled once compiles again; one that no longer does is dropped, but
            // said so (its objects stay until evicted).
            match spec.compile() {
                Ok(condition) => active.push(Arc::new(Ban { seq, spec, condition })),
                Err(e) => tracing::error!(seq, error = %e, "a saved ban no longer compiles; dropped"),
            }
        }
        Ok(Bans {
            seq: AtomicU64::new(saved.seq),
            active: RwLock::new(Arc::new(active)),
            changes: Mutex::new(()),
            file: Some(file),
            floor_pending: std::sync::atomic::AtomicBool::new(missing),
        })
    }

    /// Makes the counter at least `floor`: objects kept on disk may carry check numbers from
    /// a ban file that was lost, and a new ban numbered at or below them would pass them by.
    pub fn raise_floor(&self, floor: u64) {
        let _guard = self.changes.lock();
        if self.seq.load(Ordering::Acquire) < floor {
            tracing::warn!(
                floor,
                "ban counter behind the disk tier's objects (bans.json lost?); raised"
            );
            self.seq.store(floor, Ordering::Release);
        }
    }

    /// The disk tier's load is through: the counter is above every check number on disk.
    pub fn floor_known(&self) {
        self.floor_pending.store(false, Ordering::Release);
    }

    /// The sequence number of the newest ban (0: none ever).
    pub fn current(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    pub fn active(&self) -> Arc<Vec<Arc<Ban>>> {
        self.active.read().clone()
    }

    /// Records a ban (durably, with a disk tier); its sequence number. Refused past
    /// [`ACTIVE_LIMIT`] active bans.
    pub fn add(&self, spec: Spec, condition: Condition) -> Result<u64, AddError> {
        let _guard = self.changes.lock();
        if self.floor_pending.load(Ordering::Acquire) {
            return Err(AddError::Loading);
        }
        let mut list: Vec<Arc<Ban>> = self.active.read().as_ref().clone();
        if list.len() >= ACTIVE_LIMIT {
            return Err(AddError::TooMany);
        }
        let seq = self.seq.load(Ordering::Acquire) + 1;
        list.push(Arc::new(Ban { seq, spec, condition }));
        self.save(seq, &list).map_err(AddError::Io)?;
        *self.active.write() = Arc::new(list);
        // Published last: an object checked at `seq` has seen this ban in the list.
        self.seq.store(seq, Ordering::Release);
        Ok(seq)
    }

    /// Retires every ban up to `seq` (every object older than them has been checked).
    pub fn retire_through(&self, seq: u64) -> std::io::Result<usize> {
        let _guard = self.changes.lock();
        let list: Vec<Arc<Ban>> = self
            .active
            .read()
            .iter()
            .filter(|b| b.seq > seq)
            .cloned()
            .collect();
        let retired = self.active.read().len() - list.len();
        if retired > 0 {
            self.save(self.current(), &list)?;
            *self.active.write() = Arc::new(list);
        }
        Ok(retired)
    }

    /// The first active ban newer than `checked` that matches, if any.
    pub fn banned_since(&self, checked: u64, url: &[u8], tags: &[Box<str>]) -> Option<u64> {
        let list = self.active();
        list.iter()
            .filter(|b| b.seq > checked)
            .find(|b| b.condition.matches(url, tags))
            .map(|b| b.seq)
    }

    fn save(&self, seq: u64, list: &[Arc<Ban>]) -> std::io::Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        let saved = Saved {
            seq,
            bans: list.iter().map(|b| (b.seq, b.spec.clone())).collect(),
        };
        let tmp = file.with_extension("json.tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec(&saved).unwrap_or_default())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, file)?;
        if let Some(dir) = file.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[derive(Debug)]
pub enum AddError {
    TooMany,
    /// The ban file was missing and the disk tier is still loading (see `floor_pending`).
    Loading,
    Io(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(bans: &Bans, spec: Spec) -> u64 {
        let c = spec.compile().expect("compiles");
        bans.add(spec, c).expect("added")
    }

    #[test]
    fn objects_are_checked_only_against_newer_bans() {
        let bans = Bans::in_memory();
        assert_eq!(bans.current(), 0);
        let a = ban(&bans, Spec::Prefix("/DQmA".into()));
        let b = ban(&bans, Spec::Regex("^/p/.*width=1\\d\\d".into()));
        let c = ban(&bans, Spec::Tags(vec!["DQmTag".into()]));
        assert_eq!((a, b, c), (1, 2, 3));
        let none: &[Box<str>] = &[];
        assert_eq!(bans.banned_since(0, b"/DQmA/x.jpg", none), Some(1));
        assert_eq!(
            bans.banned_since(1, b"/DQmA/x.jpg", none),
            None,
            "checked after it"
        );
        assert_eq!(bans.banned_since(0, b"/p/abc?width=150", none), Some(2));
        assert_eq!(bans.banned_since(0, b"/p/abc?width=50", none), None);
        let tagged: &[Box<str>] = &["DQmTag".into()];
        assert_eq!(bans.banned_since(2, b"/p/zzz", tagged), Some(3));
        // The URL itself names a key: the tag matches it too.
        assert_eq!(bans.banned_since(2, b"/DQmTag/photo.jpg", none), Some(3));
        assert_eq!(bans.retire_through(2).unwrap(), 2);
        assert_eq!(bans.active().len(), 1);
        assert_eq!(bans.banned_since(0, b"/DQmA/x.jpg", none), None, "retired");
    }

    #[test]
    fn limits_are_named_in_the_refusal() {
        let long = "a".repeat(PATTERN_LIMIT + 1);
        assert!(Spec::Regex(long)
            .compile()
            .unwrap_err()
            .contains("1024-byte limit"));
        let huge = "^(\\w{100}){100}$".to_string();
        assert!(Spec::Regex(huge)
            .compile()
            .unwrap_err()
            .contains("65536-byte limit"));
        assert!(Spec::Regex("(".into())
            .compile()
            .unwrap_err()
            .contains("X-Ban-Regex"));
        assert!(Spec::Tags(vec![]).compile().is_err());
        let bans = Bans::in_memory();
        for _ in 0..ACTIVE_LIMIT {
            ban(&bans, Spec::Prefix("/x".into()));
        }
        let spec = Spec::Prefix("/y".into());
        let c = spec.compile().unwrap();
        assert!(matches!(bans.add(spec, c), Err(AddError::TooMany)));
    }

    #[test]
    fn bans_and_their_numbers_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let bans = Bans::open(dir.path()).unwrap();
            // No ban file yet: bans wait for the disk tier's load to give the counter's floor.
            let spec = Spec::Prefix("/a".into());
            let c = spec.compile().unwrap();
            assert!(matches!(bans.add(spec, c), Err(AddError::Loading)));
            bans.raise_floor(0);
            bans.floor_known();
            ban(&bans, Spec::Prefix("/a".into()));
            ban(&bans, Spec::Tags(vec!["DQmX".into()]));
            bans.retire_through(1).unwrap();
        }
        // With its file there, bans are taken at once.
        let bans = Bans::open(dir.path()).unwrap();
        assert_eq!(bans.current(), 2);
        assert_eq!(bans.active().len(), 1);
        assert_eq!(bans.banned_since(0, b"/DQmX/a.jpg", &[]), Some(2));
        assert_eq!(
            ban(&bans, Spec::Prefix("/b".into())),
            3,
            "numbers are never reused"
        );
    }
}
