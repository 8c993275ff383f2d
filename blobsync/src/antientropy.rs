//! Anti-entropy: one streaming pass over the sorted listings of every fileserver, merged, so
//! whatever is missing anywhere is queued for copying, a copy whose listed size differs from the
//! others is queued for replacement (a truncated or torn write), and tombstoned or taken-down keys
//! for deletion.
//!
//! Memory is one page per fileserver, whatever the number of objects, and the queue holds at
//! most `max_ahead` objects the pass found and the workers have not yet taken: past that the
//! pass waits for them, so a backfill of millions of objects never holds millions in the queue
//! (copies start as soon as the first are found). A checkpoint (the last
//! stored name handled) is saved as the pass goes, so a restart resumes where it stopped. A
//! listing that fails aborts the pass (and keeps the checkpoint): nothing is ever concluded from a
//! missing or empty listing except "copy to it", and nothing is ever deleted because of one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use blobstore::{BlobStore, ListEntry, ListRequest};

use crate::config::AntiEntropyConfig;
use crate::error::SyncError;
use crate::metrics::AE_FINDINGS;
use crate::queue::{now_ms, Action, Queue};

/// What to do about one stored name, given what each server lists for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Nothing,
    /// Copy to the servers that lack it, replacing the copies at these indices (listed smaller
    /// than the largest copy: truncated, so never a source).
    Copy {
        bad: Vec<usize>,
    },
    Delete,
}

/// The pure rule: tombstones win; otherwise a name some servers lack is copied, and copies of
/// different sizes are replaced by the largest (content keys are verified by hash on the way).
pub fn decide(sizes: &[Option<u64>], tombstoned: bool) -> Decision {
    let any = sizes.iter().any(Option::is_some);
    let all = sizes.iter().all(Option::is_some);
    if tombstoned {
        return if any { Decision::Delete } else { Decision::Nothing };
    }
    let largest = sizes.iter().flatten().max().copied();
    let bad: Vec<usize> = sizes
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!((s, largest), (Some(s), Some(l)) if *s < l))
        .map(|(i, _)| i)
        .collect();
    if any && (!all || !bad.is_empty()) {
        Decision::Copy { bad }
    } else {
        Decision::Nothing
    }
}

/// One server's listing, read a page at a time.
struct Lister {
    store: Arc<dyn BlobStore>,
    buf: VecDeque<ListEntry>,
    next: Option<String>,
    done: bool,
    page: usize,
}

impl Lister {
    async fn head(&mut self) -> Result<Option<&ListEntry>, SyncError> {
        if self.buf.is_empty() && !self.done {
            let req = ListRequest {
                prefix: String::new(),
                start_after: self.next.clone(),
                max_keys: self.page,
            };
            let p = self
                .store
                .list(&req)
                .await
                .map_err(|e| SyncError::store(self.store.describe(), e))?;
            self.buf.extend(p.entries);
            match p.next {
                Some(n) => self.next = Some(n),
                None => self.done = true,
            }
            if self.buf.is_empty() {
                self.done = true;
            }
        }
        Ok(self.buf.front())
    }
}

/// Progress of a pass, readable while it runs (for `sync --once` and status).
#[derive(Default)]
pub struct Progress {
    pub scanned: AtomicU64,
    pub queued: AtomicU64,
    /// When the current or last pass over every bucket started and finished (ms; 0 = never).
    pub started_ms: AtomicU64,
    pub finished_ms: AtomicU64,
}

/// Checkpoint name for a bucket.
pub fn checkpoint_name(bucket: &str) -> String {
    format!("ae:{bucket}")
}

/// Waits while more than `max_ahead` of the `added` new items this pass queued have not been
/// taken by a worker since the pass began (`taken_before`). Items taken and failed count as
/// taken, so a fileserver that is down never stalls the pass; so do items others queued, which
/// only loosens the bound.
async fn keep_within(queue: &Queue, added: u64, taken_before: u64, max_ahead: usize) {
    let mut wait = Duration::from_millis(1);
    let (mut taken, mut since) = (queue.taken(), std::time::Instant::now());
    while added.saturating_sub(queue.taken().saturating_sub(taken_before)) > max_ahead as u64 {
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(50));
        if queue.taken() != taken {
            (taken, since) = (queue.taken(), std::time::Instant::now());
        } else if since.elapsed() >= STALLED {
            // Every worker busy for minutes: a fileserver that hangs rather than fails.
            tracing::warn!(
                max_ahead,
                "anti-entropy pass waiting: the copy workers have taken nothing for a minute"
            );
            since = std::time::Instant::now();
        }
    }
}

/// How long the workers may take nothing while a pass waits on them before it is logged.
const STALLED: Duration = Duration::from_secs(60);

/// Runs one pass over `bucket` on `stores` (one per server, same order every time; `names` are
/// the servers' names, for the copies to replace). Workers must be taking from `queue`
/// meanwhile, or the pass stops `max_ahead` objects in.
pub async fn pass(
    stores: &[Arc<dyn BlobStore>],
    names: &[String],
    bucket: &str,
    lane: u8,
    queue: &Queue,
    limits: &AntiEntropyConfig,
    progress: &Progress,
) -> Result<(), SyncError> {
    let page = limits.page_size;
    let taken_before = queue.taken();
    let mut added = 0u64;
    let cp = checkpoint_name(bucket);
    let resume = queue.meta(&cp)?;
    if let Some(at) = &resume {
        tracing::info!(bucket, resume_after = %at, "anti-entropy resuming from its checkpoint");
    }
    let mut listers: Vec<Lister> = stores
        .iter()
        .map(|s| Lister {
            store: s.clone(),
            buf: VecDeque::new(),
            next: resume.clone(),
            done: false,
            page,
        })
        .collect();
    let mut since_checkpoint = 0;
    loop {
        let mut heads = Vec::with_capacity(listers.len());
        for l in listers.iter_mut() {
            heads.push(l.head().await?.map(|e| e.stored_name.clone()));
        }
        let Some(name) = heads.iter().flatten().min().cloned() else {
            break;
        };
        let mut key = None;
        let mut sizes = Vec::with_capacity(listers.len());
        for (l, h) in listers.iter_mut().zip(&heads) {
            if h.as_deref() == Some(name.as_str()) {
                let e = l.buf.pop_front();
                sizes.push(e.as_ref().map(|e| e.size));
                key = e.map(|e| e.key).or(key);
            } else {
                sizes.push(None);
            }
        }
        progress.scanned.fetch_add(1, Ordering::Relaxed);
        let Some(key) = key else { continue };
        let tombstoned =
            queue.tombstone(bucket, key.as_str())?.is_some() || queue.is_taken_down(key.as_str())?;
        match decide(&sizes, tombstoned) {
            Decision::Nothing => {}
            Decision::Copy { bad } => {
                let bad: Vec<String> = bad.iter().filter_map(|i| names.get(*i).cloned()).collect();
                added += u64::from(queue.enqueue(bucket, key.as_str(), Action::Copy, lane, &bad)?);
                progress.queued.fetch_add(1, Ordering::Relaxed);
                let kind = if bad.is_empty() { "missing" } else { "size_differs" };
                if !bad.is_empty() {
                    tracing::warn!(bucket, %key, ?bad, "copies differ in size; replacing the smaller");
                }
                AE_FINDINGS.with_label_values(&[bucket, kind]).inc();
            }
            Decision::Delete => {
                added += u64::from(queue.enqueue(bucket, key.as_str(), Action::Delete, lane, &[])?);
                progress.queued.fetch_add(1, Ordering::Relaxed);
                AE_FINDINGS.with_label_values(&[bucket, "tombstoned"]).inc();
            }
        }
        keep_within(queue, added, taken_before, limits.max_ahead).await;
        since_checkpoint += 1;
        if since_checkpoint >= page {
            // Queued work is written before the checkpoint that covers it (sled keeps order).
            queue.set_meta(&cp, Some(&name))?;
            since_checkpoint = 0;
        }
    }
    queue.set_meta(&cp, None)?;
    queue.set_meta(&format!("ae_done:{bucket}"), Some(&now_ms().to_string()))?;
    queue.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use blobstore::{body_from_bytes, DirStore, Key, Layout, PutOptions};

    #[test]
    fn decision_table() {
        let copy = |bad: &[usize]| Decision::Copy { bad: bad.to_vec() };
        let cases: &[(&[Option<u64>], bool, Decision)] = &[
            (&[Some(5), Some(5)], false, Decision::Nothing),
            (&[Some(5), None], false, copy(&[])),
            (&[None, Some(5), Some(5)], false, copy(&[])),
            (&[Some(5), Some(3)], false, copy(&[1])),
            (&[Some(0), Some(5), Some(5)], false, copy(&[0])),
            (&[Some(2), None, Some(5)], false, copy(&[0])),
            (&[Some(5), Some(5)], true, Decision::Delete),
            (&[None, Some(5)], true, Decision::Delete),
            (&[None, None], true, Decision::Nothing),
            (&[None, None], false, Decision::Nothing),
        ];
        for (sizes, tomb, want) in cases {
            assert_eq!(&decide(sizes, *tomb), want, "{sizes:?} tombstoned={tomb}");
        }
    }

    fn limits(page_size: usize, max_ahead: usize) -> AntiEntropyConfig {
        AntiEntropyConfig {
            page_size,
            max_ahead,
            ..AntiEntropyConfig::default()
        }
    }

    fn names() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    async fn store_with(dir: &std::path::Path, name: &str, keys: &[&str]) -> Arc<dyn BlobStore> {
        let s = DirStore::open(name, &dir.join(name), "uploads", Layout::Flat, true).unwrap();
        for k in keys {
            s.put(
                &Key::new(*k).unwrap(),
                body_from_bytes(k.as_bytes().to_vec()),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        }
        Arc::new(s)
    }

    #[tokio::test]
    async fn merge_finds_what_each_side_lacks_and_respects_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let a = store_with(dir.path(), "a", &["k1", "k2", "k4", "k5"]).await;
        let b = store_with(dir.path(), "b", &["k2", "k3", "k5"]).await;
        let q = Queue::temporary().unwrap();
        q.add_tombstone("uploads", "k5", std::time::Duration::from_secs(86400))
            .unwrap();
        let progress = Progress::default();
        pass(
            &[a, b],
            &names(),
            "uploads",
            1,
            &q,
            &limits(2, usize::MAX),
            &progress,
        )
        .await
        .unwrap();
        let mut got: Vec<(String, Action)> = q.pending().into_iter().map(|i| (i.key, i.action)).collect();
        got.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            got,
            vec![
                ("k1".into(), Action::Copy),
                ("k3".into(), Action::Copy),
                ("k4".into(), Action::Copy),
                ("k5".into(), Action::Delete),
            ]
        );
        assert_eq!(progress.scanned.load(Ordering::Relaxed), 5);
        assert_eq!(
            q.meta(&checkpoint_name("uploads")).unwrap(),
            None,
            "a finished pass clears its checkpoint"
        );
    }

    #[tokio::test]
    async fn a_failing_listing_aborts_and_keeps_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let a = store_with(dir.path(), "a", &["k1", "k2", "k3", "k4"]).await;
        let b = store_with(dir.path(), "b", &[]).await;
        let q = Queue::temporary().unwrap();
        q.set_meta(&checkpoint_name("uploads"), Some("k2")).unwrap();
        std::fs::rename(dir.path().join("b/uploads"), dir.path().join("b/gone")).unwrap();
        assert!(pass(
            &[a.clone(), b.clone()],
            &names(),
            "uploads",
            1,
            &q,
            &limits(1000, usize::MAX),
            &Progress::default()
        )
        .await
        .is_err());
        assert_eq!(q.backlog(), 0, "nothing concluded from a failed listing");
        assert_eq!(
            q.meta(&checkpoint_name("uploads")).unwrap().as_deref(),
            Some("k2")
        );
        std::fs::rename(dir.path().join("b/gone"), dir.path().join("b/uploads")).unwrap();
        pass(
            &[a, b],
            &names(),
            "uploads",
            1,
            &q,
            &limits(1000, usize::MAX),
            &Progress::default(),
        )
        .await
        .unwrap();
        let mut keys: Vec<String> = q.pending().into_iter().map(|i| i.key).collect();
        keys.sort();
        assert_eq!(keys, ["k3", "k4"], "resumed after the checkpoint");
    }

    /// A pass queues at most `max_ahead` objects the workers have not taken, whatever it finds,
    /// and a worker whose copies fail (a fileserver down) does not stall it: taken is taken.
    #[tokio::test]
    async fn the_pass_stays_within_max_ahead_of_the_workers() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<String> = (0..40).map(|i| format!("k{i:02}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let a = store_with(dir.path(), "a", &refs).await;
        let b = store_with(dir.path(), "b", &[]).await;
        let q = Arc::new(Queue::temporary().unwrap());
        let progress = Arc::new(Progress::default());
        let max_ahead = 3;
        let run = {
            let (q, progress) = (q.clone(), progress.clone());
            tokio::spawn(async move {
                pass(
                    &[a, b],
                    &names(),
                    "uploads",
                    1,
                    &q,
                    &limits(7, max_ahead),
                    &progress,
                )
                .await
            })
        };
        let (mut taken, mut failed, mut most) = (0, 0, 0);
        for _ in 0..20_000 {
            if taken == keys.len() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            // Pending and not yet taken: the backlog less what failed and waits its backoff.
            most = most.max(q.backlog() - failed);
            let Some(item) = q.take_due(now_ms()).unwrap() else {
                continue;
            };
            taken += 1;
            if taken % 2 == 0 {
                q.complete(&item).unwrap();
            } else {
                // A failed copy: back off for longer than the test runs.
                q.retry(&item, "down", std::time::Duration::from_secs(3600))
                    .unwrap();
                failed += 1;
            }
        }
        run.await.unwrap().unwrap();
        assert_eq!(progress.queued.load(Ordering::Relaxed), 40);
        assert!(
            most <= max_ahead + 1,
            "the untaken part of the queue stayed within max_ahead (most {most})"
        );
        assert!(most >= max_ahead, "the pass did run ahead of the workers");
        assert_eq!(q.backlog(), 20, "the failed half waits in the queue");
        assert_eq!(q.meta(&checkpoint_name("uploads")).unwrap(), None);
    }
}
