//! `blobsync migrate`: moves an existing store (the reference imagehoster's flat or partitioned
//! directory, or an S3 bucket) into one bucket of every fileserver of the cluster.
//!
//! The source is listed a page at a time, in its own order, and each object is copied (a few at
//! a time) to the fileservers that lack it. An upload (`D…` key) must hash to its key while it
//! streams, or no fileserver commits it and it is reported corrupt; other keys (`U…` originals,
//! variants) are not content hashes, and are copied as they are (reported unverifiable) or
//! skipped. Keys on the takedown list are never brought back. After each page a checkpoint (how
//! far the listing got, and the counts so far) replaces the state file, so a run killed at any
//! point resumes with at most one page done again; memory is one page whatever the store's size.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use blobstore::{BlobStore, FileserverConfig, Key, ListRequest};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use service::Shutdown;

use crate::copy::{expected_digest, Imported, Replicator, Server};
use crate::error::{Error, SyncError};
use crate::queue::{now_ms, source_of};
use crate::report::{eta, fraction, Reporter};
use crate::Config;

/// Names of corrupt and failed objects kept in the state file and the report (the counts stay
/// exact past it).
const NAMES_KEPT: usize = 1000;

/// Objects listed per page (and at most one page is redone after a kill).
const PAGE: usize = 1000;

/// What to migrate, from where, into which bucket.
#[derive(Debug, Clone)]
pub struct Options {
    /// The store to read: a directory (opened without creating anything) or an S3 server.
    pub source: FileserverConfig,
    /// The bucket (or the directory's last component) to read.
    pub source_bucket: String,
    /// The cluster's bucket to fill (one of `buckets`).
    pub bucket: String,
    /// Copy keys that are not content hashes as they are; otherwise skip them.
    pub copy_unverifiable: bool,
    /// The checkpoint file.
    pub state: PathBuf,
    /// Objects copied at once.
    pub concurrency: usize,
}

/// What a migration found, object by object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub listed: u64,
    /// Uploads copied, each verified against its key.
    pub copied: u64,
    /// Already on every fileserver.
    pub present: u64,
    /// Uploads whose bytes do not hash to their key: written nowhere.
    pub corrupt: u64,
    /// Copied as they are (not content hashes: nothing to verify them against).
    pub unverifiable: u64,
    /// Not content hashes, and `--unverifiable skip`.
    pub skipped: u64,
    /// On the takedown list (or derived from a key on it): never brought back.
    pub taken_down: u64,
    /// Refused for a reason retrying does not fix (over `copy.max_object_size`, …).
    pub failed: u64,
    /// Listed, then gone before it was read.
    pub gone: u64,
}

/// The state file: which migration, how far it got, and what it found so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub source: String,
    pub bucket: String,
    /// Objects in the source, counted before the first page (for the progress and ETA).
    pub total: Option<u64>,
    /// The last stored name of the last finished page.
    pub after: Option<String>,
    pub counts: Counts,
    pub corrupt: Vec<String>,
    pub failed: Vec<String>,
    pub started_ms: u64,
    pub finished: bool,
}

/// What to do with one listed key, before any I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// An upload: copied only if it hashes to its key.
    Verify,
    /// Not a content hash: copied as it is.
    AsIs,
    Skip,
    TakenDown,
}

/// The rule: the takedown list first, then content keys verified, then the flag.
pub fn plan(key: &str, copy_unverifiable: bool, taken_down: &HashSet<String>) -> Plan {
    if taken_down.contains(source_of(key)) {
        Plan::TakenDown
    } else if expected_digest(key).is_some() {
        Plan::Verify
    } else if copy_unverifiable {
        Plan::AsIs
    } else {
        Plan::Skip
    }
}

/// One object's end.
#[derive(Debug)]
enum Done {
    Imported(Plan, Imported),
    Skipped(Plan),
}

impl Checkpoint {
    /// Adds one object's end; a permanent failure is counted and named.
    fn add(&mut self, key: &Key, done: Result<Done, SyncError>) {
        let c = &mut self.counts;
        c.listed += 1;
        let keep = |names: &mut Vec<String>| {
            if names.len() < NAMES_KEPT {
                names.push(key.to_string());
            }
        };
        match done {
            Ok(Done::Skipped(Plan::TakenDown)) => c.taken_down += 1,
            Ok(Done::Skipped(_)) => c.skipped += 1,
            Ok(Done::Imported(_, Imported::Present)) => c.present += 1,
            Ok(Done::Imported(_, Imported::Gone)) => c.gone += 1,
            Ok(Done::Imported(Plan::Verify, Imported::Copied(_))) => c.copied += 1,
            Ok(Done::Imported(_, Imported::Copied(_))) => c.unverifiable += 1,
            Ok(Done::Imported(_, Imported::Corrupt)) => {
                c.corrupt += 1;
                keep(&mut self.corrupt);
            }
            Err(e) => {
                tracing::warn!(%key, error = %e, "not migrated");
                c.failed += 1;
                keep(&mut self.failed);
            }
        }
    }

    fn load(path: &Path) -> Result<Option<Checkpoint>, Error> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Daemon(format!("state file {}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io(e)),
        }
    }

    /// Replaces the state file (written aside, synced, renamed), so a kill leaves the old one or
    /// the new one, never a torn one.
    fn save(&self, path: &Path) -> Result<(), Error> {
        use std::io::Write;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(Error::Io)?;
        f.write_all(&serde_json::to_vec_pretty(self).unwrap_or_default())
            .and_then(|()| f.sync_all())
            .map_err(Error::Io)?;
        std::fs::rename(&tmp, path).map_err(Error::Io)
    }
}

/// Opens the cluster's fileservers and the takedown list, then [`run`]s.
pub async fn migrate(config: &Config, opts: &Options, shutdown: &Shutdown) -> Result<Checkpoint, Error> {
    let taken_down = takedown_list(config).await?;
    let replicator = crate::engine::replicator(config)?;
    run(config, &replicator, &taken_down, opts, shutdown).await
}

/// Every key on the takedown list: from the running daemon, or from its queue when none runs.
/// Not knowing is not "none": a queue that cannot be read stops the migration.
async fn takedown_list(config: &Config) -> Result<HashSet<String>, Error> {
    if let Some(daemon) = crate::remote::Daemon::find(config).await {
        return Ok(daemon
            .takedown_keys()
            .await
            .map_err(Error::Daemon)?
            .into_iter()
            .collect());
    }
    let path = &config.queue.path;
    if !path.exists() {
        tracing::warn!(queue = %path.display(), "no queue yet: no takedown list to honour");
        return Ok(HashSet::new());
    }
    let queue = crate::queue::Queue::open(path).map_err(|e| Error::Queue {
        path: path.display().to_string(),
        source: e,
    })?;
    let list = queue.takedowns_since(0, usize::MAX).map_err(|e| Error::Queue {
        path: path.display().to_string(),
        source: e,
    })?;
    Ok(list.into_iter().map(|t| t.key).collect())
}

/// Migrates until the source is done, a fileserver stops answering (the run ends with an error
/// and resumes from its checkpoint next time), or `shutdown`. The final checkpoint is the report.
pub async fn run(
    config: &Config,
    replicator: &Replicator,
    taken_down: &HashSet<String>,
    opts: &Options,
    shutdown: &Shutdown,
) -> Result<Checkpoint, Error> {
    if !config.buckets.contains(&opts.bucket) {
        return Err(Error::Config(format!(
            "--bucket {}: not one of this config's buckets {:?}",
            opts.bucket, config.buckets
        )));
    }
    let store = blobstore::open_bucket(&opts.source, &opts.source_bucket)?;
    let source = Server {
        name: opts.source.name.clone(),
        buckets: [(opts.bucket.clone(), store.clone())].into(),
    };
    let mut cp = resume_or_start(store.as_ref(), opts)?;
    let mut reporter = Reporter::default();
    if cp.total.is_none() {
        cp.total = Some(count(store.as_ref(), &mut reporter, shutdown).await?);
        cp.save(&opts.state)?;
    }
    let started = (Instant::now(), cp.counts.listed);
    while !cp.finished {
        if shutdown.is_triggered() {
            reporter.finish(&line(&cp, started));
            return Err(Error::Daemon(format!(
                "interrupted; run the same command again to resume (state in {})",
                opts.state.display()
            )));
        }
        let req = ListRequest {
            prefix: String::new(),
            start_after: cp.after.clone(),
            max_keys: PAGE,
        };
        let page = store
            .list(&req)
            .await
            .map_err(|e| SyncError::store(&opts.source.name, e))?;
        let ends: Vec<(Key, Result<Done, SyncError>)> = futures::stream::iter(&page.entries)
            .map(|e| async {
                (
                    e.key.clone(),
                    one(replicator, &source, opts, taken_down, &e.key).await,
                )
            })
            .buffer_unordered(opts.concurrency.max(1))
            .collect()
            .await;
        // Retrying may fix it (a fileserver down): stop here, before the checkpoint.
        if let Some((key, Err(e))) = ends
            .iter()
            .find(|(_, r)| r.as_ref().is_err_and(SyncError::is_retriable))
        {
            reporter.finish(&line(&cp, started));
            return Err(Error::Daemon(format!(
                "{key}: {e}; nothing after {} was checkpointed: run the same command again once it answers",
                cp.after.as_deref().unwrap_or("the start")
            )));
        }
        for (key, done) in ends {
            cp.add(&key, done);
        }
        match (page.next, page.entries.last()) {
            (Some(_), Some(last)) => cp.after = Some(last.stored_name.clone()),
            _ => cp.finished = true,
        }
        cp.save(&opts.state)?;
        reporter.progress(
            cp.total
                .and_then(|t| fraction(cp.counts.listed, t.saturating_sub(cp.counts.listed))),
            &line(&cp, started),
        );
    }
    reporter.finish(&line(&cp, started));
    Ok(cp)
}

/// The saved checkpoint of this same migration, or a new one (a finished one starts over: what
/// it copied is found present).
fn resume_or_start(store: &dyn BlobStore, opts: &Options) -> Result<Checkpoint, Error> {
    let fresh = Checkpoint {
        source: store.describe().to_string(),
        bucket: opts.bucket.clone(),
        started_ms: now_ms(),
        ..Checkpoint::default()
    };
    match Checkpoint::load(&opts.state)? {
        Some(cp) if cp.source != fresh.source || cp.bucket != fresh.bucket => Err(Error::Config(format!(
            "state file {} belongs to the migration of {} into {}; give this one its own --state",
            opts.state.display(),
            cp.source,
            cp.bucket
        ))),
        Some(cp) if !cp.finished => {
            tracing::info!(after = ?cp.after, listed = cp.counts.listed, "resuming the migration");
            Ok(cp)
        }
        _ => Ok(fresh),
    }
}

/// Counts the source's objects (listing only; one page in memory).
async fn count(store: &dyn BlobStore, reporter: &mut Reporter, shutdown: &Shutdown) -> Result<u64, Error> {
    let mut req = ListRequest {
        prefix: String::new(),
        start_after: None,
        max_keys: PAGE,
    };
    let mut n = 0u64;
    loop {
        if shutdown.is_triggered() {
            return Err(Error::Daemon("interrupted while counting the source".into()));
        }
        let page = store
            .list(&req)
            .await
            .map_err(|e| SyncError::store(store.describe(), e))?;
        n += page.entries.len() as u64;
        reporter.update(&format!("counting the source: {n} objects"));
        match page.next {
            Some(next) => req.start_after = Some(next),
            None => return Ok(n),
        }
    }
}

async fn one(
    replicator: &Replicator,
    source: &Server,
    opts: &Options,
    taken_down: &HashSet<String>,
    key: &Key,
) -> Result<Done, SyncError> {
    match plan(key.as_str(), opts.copy_unverifiable, taken_down) {
        p @ (Plan::Skip | Plan::TakenDown) => Ok(Done::Skipped(p)),
        p => Ok(Done::Imported(
            p,
            replicator.import(source, &opts.bucket, key).await?,
        )),
    }
}

/// `4200/10000 · copied 4100 · present 60 · corrupt 2 · 310/s · ETA 19s`.
fn line(cp: &Checkpoint, (since, listed_then): (Instant, u64)) -> String {
    let c = &cp.counts;
    let rate = c.listed.saturating_sub(listed_then) as f64 / since.elapsed().as_secs_f64().max(1e-3);
    let total = cp.total.map_or("?".into(), |t| t.to_string());
    let left = cp.total.unwrap_or(0).saturating_sub(c.listed);
    format!(
        "{}/{total} · copied {} · present {} · corrupt {} · unverifiable {} · {rate:.0}/s · ETA {}",
        c.listed,
        c.copied,
        c.present,
        c.corrupt,
        c.unverifiable,
        eta(left, rate)
    )
}

/// The closing report, for people.
pub fn summary(cp: &Checkpoint) -> String {
    let c = &cp.counts;
    let mut out = format!(
        "migrated {} of {} into `{}`: {} copied and verified, {} already present, {} corrupt (written nowhere), \
         {} unverifiable (copied as they are), {} skipped, {} taken down (not copied), {} failed, {} gone",
        cp.source,
        c.listed,
        cp.bucket,
        c.copied,
        c.present,
        c.corrupt,
        c.unverifiable,
        c.skipped,
        c.taken_down,
        c.failed,
        c.gone
    );
    for (what, names, n) in [
        ("corrupt", &cp.corrupt, c.corrupt),
        ("failed", &cp.failed, c.failed),
    ] {
        if n > 0 {
            let more = n.saturating_sub(names.len() as u64);
            out.push_str(&format!("\n{what}: {}", names.join(" ")));
            if more > 0 {
                out.push_str(&format!(" (and {more} more)"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_table() {
        let upload = "DQmbvHsfahN2rUoqV5TnXKdT7EPU2SD1ZiKJE6oWpnE8wgX";
        let gone = "DQmZi174Xz96UrRVBMNRHb6A2FfU3z1HRPwPPQCgSMgdiUT";
        let taken: HashSet<String> = [gone.to_string()].into();
        let cases = [
            (upload, true, Plan::Verify),
            (upload, false, Plan::Verify),
            (gone, true, Plan::TakenDown),
            (
                "DQmZi174Xz96UrRVBMNRHb6A2FfU3z1HRPwPPQCgSMgdiUT_Cover_WEBP_320",
                true,
                Plan::TakenDown,
            ),
            ("U5dtZPvjpfzc3fgGtsoNQq7WLNv8sLT", true, Plan::AsIs),
            ("U5dtZPvjpfzc3fgGtsoNQq7WLNv8sLT", false, Plan::Skip),
            (
                "DQmbvHsfahN2rUoqV5TnXKdT7EPU2SD1ZiKJE6oWpnE8wgX_Fit_JPEG_64",
                true,
                Plan::AsIs,
            ),
            ("DQmShort", false, Plan::Skip),
        ];
        for (key, copy, want) in cases {
            assert_eq!(plan(key, copy, &taken), want, "{key} copy={copy}");
        }
    }

    #[test]
    fn every_end_is_counted_once_and_names_are_bounded() {
        let mut cp = Checkpoint::default();
        let key = Key::new("DQmbvHsfahN2rUoqV5TnXKdT7EPU2SD1ZiKJE6oWpnE8wgX").unwrap();
        cp.add(&key, Ok(Done::Imported(Plan::Verify, Imported::Copied(2))));
        cp.add(&key, Ok(Done::Imported(Plan::AsIs, Imported::Copied(2))));
        cp.add(&key, Ok(Done::Imported(Plan::Verify, Imported::Present)));
        cp.add(&key, Ok(Done::Skipped(Plan::Skip)));
        cp.add(&key, Ok(Done::Skipped(Plan::TakenDown)));
        for _ in 0..NAMES_KEPT + 5 {
            cp.add(&key, Ok(Done::Imported(Plan::Verify, Imported::Corrupt)));
        }
        cp.add(
            &key,
            Err(SyncError::TooLarge {
                key: key.to_string(),
                size: 9,
            }),
        );
        let c = &cp.counts;
        assert_eq!(
            (
                c.listed,
                c.copied,
                c.unverifiable,
                c.present,
                c.skipped,
                c.taken_down,
                c.corrupt,
                c.failed
            ),
            (6 + NAMES_KEPT as u64 + 5, 1, 1, 1, 1, 1, NAMES_KEPT as u64 + 5, 1)
        );
        assert_eq!(cp.corrupt.len(), NAMES_KEPT);
        assert!(summary(&cp).contains("(and 5 more)"));
    }

    #[test]
    fn the_state_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(Checkpoint::load(&path).unwrap(), None);
        let cp = Checkpoint {
            source: "old/uploads".into(),
            after: Some("DQm".into()),
            ..Checkpoint::default()
        };
        cp.save(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), Some(cp));
        assert!(!path.with_extension("tmp").exists());
        std::fs::write(&path, b"{not json").unwrap();
        assert!(Checkpoint::load(&path).is_err());
    }
}
