//! Group commit of a directory bucket's durable puts: the files, renames and directory syncs of
//! every put waiting at once are carried out together on one thread, so a burst of concurrent
//! uploads costs about one journal commit for their bytes and one fsync per directory, not four
//! fsyncs each.
//!
//! A batch is whatever is queued when the thread gets to it (at most [`MAX_BATCH`] jobs): while
//! one batch syncs, the next gathers. For each batch, in order:
//! 1. writeback of every job's files is started at once (`sync_file_range`), then each file is
//!    fsynced: the first fsync commits the filesystem's journal with every file's allocation in it,
//!    so the others only wait for their own data;
//! 2. each job's renames are made, in the job's order (its sidecar before its body);
//! 3. each directory a rename went into is fsynced once.
//!
//! A job's answer comes after step 3: a put is acknowledged only when its bytes and its name are
//! on disk. A directory a rename is the first into since the thread started (a new partition)
//! has its own entry synced too, up to the bucket. A failure in step 1 or 3 fails every job that
//! depended on it (nothing of theirs is acknowledged, whatever reached the disk); a failed rename
//! fails its own job only, and undoes the job's renames made before it (a new sidecar is never
//! left beside an older body).
//!
//! Once sent, a job belongs to the thread, which removes its temporary files if it fails: a put
//! whose caller goes away meanwhile cannot pull a file from under a batch.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The most jobs one batch takes, so one slow batch does not hold a whole queue's answers.
pub const MAX_BATCH: usize = 64;

/// One durable put's work: its written (not yet synced) files, then the renames that publish them.
pub struct Job {
    pub files: Vec<File>,
    /// `(temporary, final)` paths, made in this order once the files are on disk.
    pub renames: Vec<(PathBuf, PathBuf)>,
}

impl Job {
    /// Removes the job's temporary files (it will not be carried out).
    fn discard(&self) {
        for (from, _) in &self.renames {
            let _ = std::fs::remove_file(from);
        }
    }
}

/// What the batches so far have done (for tests and benches).
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    pub jobs: u64,
    pub batches: u64,
    pub file_syncs: u64,
    pub dir_syncs: u64,
}

#[derive(Default)]
struct Counters {
    jobs: AtomicU64,
    batches: AtomicU64,
    file_syncs: AtomicU64,
    dir_syncs: AtomicU64,
}

type Reply = oneshot::Sender<io::Result<()>>;

/// The committer of one bucket: a thread started at the first durable put, ended when the store is
/// dropped.
pub struct Committer {
    /// The bucket directory: new directories' entries are synced up to it.
    root: PathBuf,
    queue: Mutex<Option<Sender<(Job, Reply)>>>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer").field("stats", &self.stats()).finish()
    }
}

impl Committer {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            queue: Mutex::new(None),
            counters: Arc::default(),
        }
    }

    /// Makes `job` durable with whatever other jobs are waiting; `Ok` once its files, renames and
    /// their directories are synced.
    pub async fn commit(&self, job: Job) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        let mut item = (job, tx);
        // A thread that is gone (a panic in a batch) is replaced once.
        for _ in 0..2 {
            let sender = match self.sender() {
                Ok(s) => s,
                Err(e) => {
                    item.0.discard();
                    return Err(e);
                }
            };
            match sender.send(item) {
                Ok(()) => {
                    return rx
                        .await
                        .map_err(|_| io::Error::other("the commit thread stopped before answering"))?;
                }
                Err(mpsc::SendError(back)) => {
                    tracing::error!(
                        "the commit thread of a directory fileserver had stopped; starting another"
                    );
                    item = back;
                    *self.queue.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
            }
        }
        item.0.discard();
        Err(io::Error::other("the commit thread cannot be kept running"))
    }

    pub fn stats(&self) -> CommitStats {
        let c = &self.counters;
        CommitStats {
            jobs: c.jobs.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            file_syncs: c.file_syncs.load(Ordering::Relaxed),
            dir_syncs: c.dir_syncs.load(Ordering::Relaxed),
        }
    }

    fn sender(&self) -> io::Result<Sender<(Job, Reply)>> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = queue.as_ref() {
            return Ok(tx.clone());
        }
        let (tx, rx) = mpsc::channel();
        let (counters, root) = (self.counters.clone(), self.root.clone());
        std::thread::Builder::new()
            .name("blobstore-commit".into())
            .spawn(move || run(rx, &root, &counters))?;
        *queue = Some(tx.clone());
        Ok(tx)
    }
}

/// The thread: one batch at a time, until every sender (the store) is gone.
fn run(rx: Receiver<(Job, Reply)>, root: &Path, counters: &Counters) {
    // Directories whose own entries are known to be on disk.
    let mut settled = HashSet::new();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (jobs, replies): (Vec<Job>, Vec<Reply>) = batch.into_iter().unzip();
        let results = commit_batch(jobs, root, &mut settled, counters);
        for (reply, result) in replies.into_iter().zip(results) {
            // A put whose caller went away (a dropped request) needs no answer.
            let _ = reply.send(result);
        }
    }
}

/// Carries out one batch; each job's result, in order. `settled` holds the directories whose own
/// entries are known to be on disk (under `root`, the bucket).
fn commit_batch(
    jobs: Vec<Job>,
    root: &Path,
    settled: &mut HashSet<PathBuf>,
    counters: &Counters,
) -> Vec<io::Result<()>> {
    counters.batches.fetch_add(1, Ordering::Relaxed);
    counters.jobs.fetch_add(jobs.len() as u64, Ordering::Relaxed);
    let files: Vec<&File> = jobs.iter().flat_map(|j| &j.files).collect();
    for f in &files {
        start_writeback(f);
    }
    for f in &files {
        counters.file_syncs.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = f.sync_all() {
            jobs.iter().for_each(Job::discard);
            return failed_all(jobs.len(), &e);
        }
    }
    let mut results = Vec::with_capacity(jobs.len());
    let mut dirs = BTreeSet::new();
    let mut new_dirs = Vec::new();
    for job in &jobs {
        let mut done = 0;
        let renamed = job.renames.iter().try_for_each(|(from, to)| {
            let Some(parent) = to.parent() else {
                return std::fs::rename(from, to).map(|()| done += 1);
            };
            // A directory known on disk is not made again (a call per rename saved).
            if !settled.contains(parent) {
                made(parent, root, &mut dirs, &mut new_dirs)?;
            }
            dirs.insert(parent.to_path_buf());
            let renamed = match std::fs::rename(from, to) {
                // Removed since: made, and synced, as a new one.
                Err(e) if e.kind() == io::ErrorKind::NotFound && !parent.is_dir() => {
                    settled.remove(parent);
                    made(parent, root, &mut dirs, &mut new_dirs)?;
                    std::fs::rename(from, to)
                }
                other => other,
            };
            renamed.map(|()| done += 1)
        });
        if renamed.is_err() {
            // Undone: nothing of this job is left half-published, nor any temporary file.
            for (i, (from, to)) in job.renames.iter().enumerate() {
                let _ = std::fs::remove_file(if i < done { to } else { from });
            }
        }
        results.push(renamed);
    }
    for dir in &dirs {
        counters.dir_syncs.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
            return failed_all(jobs.len(), &e);
        }
    }
    settled.extend(new_dirs);
    results
}

/// Makes `parent` (and its missing parents up to the bucket `root`, which must be there: a
/// bucket gone with its disk is never made again on the disk beneath); its entry, and its
/// parents' up to `root`, are synced with the batch (`dirs`), and it is settled once they are
/// (`new_dirs`).
fn made(
    parent: &Path,
    root: &Path,
    dirs: &mut BTreeSet<PathBuf>,
    new_dirs: &mut Vec<PathBuf>,
) -> io::Result<()> {
    if !root.is_dir() {
        return Err(super::missing_bucket(root));
    }
    std::fs::create_dir_all(parent)?;
    dirs.extend(
        parent
            .ancestors()
            .skip(1)
            .take_while(|a| a.starts_with(root))
            .map(PathBuf::from),
    );
    new_dirs.push(parent.to_path_buf());
    Ok(())
}

fn failed_all(n: usize, e: &io::Error) -> Vec<io::Result<()>> {
    (0..n)
        .map(|_| Err(io::Error::new(e.kind(), e.to_string())))
        .collect()
}

/// Starts writing `file`'s dirty pages without waiting, so a batch's files are written together
/// and their allocations land in one journal transaction. Only a hint: the fsync that follows is
/// what makes the data durable, so a failure here is ignored.
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    #[allow(unsafe_code)]
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor belongs to `file`,
    // which is borrowed (open) for the whole call.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn written(dir: &std::path::Path, name: &str, bytes: &[u8]) -> File {
        let mut f = File::create(dir.join(name)).unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    /// Three puts into two directories: every file synced, every rename made in order, and one
    /// directory sync per directory, not per put.
    #[test]
    fn a_batch_syncs_each_directory_once() {
        let root = tempfile::tempdir().unwrap();
        let (tmp, meta, objects) = (
            root.path().join("tmp"),
            root.path().join("meta"),
            root.path().join("objects"),
        );
        for d in [&tmp, &meta, &objects] {
            std::fs::create_dir_all(d).unwrap();
        }
        let jobs = (0..3)
            .map(|i| Job {
                files: vec![
                    written(&tmp, &format!("body{i}"), format!("body {i}").as_bytes()),
                    written(&tmp, &format!("side{i}"), b"{}"),
                ],
                renames: vec![
                    (tmp.join(format!("side{i}")), meta.join(format!("o{i}.json"))),
                    (tmp.join(format!("body{i}")), objects.join(format!("o{i}"))),
                ],
            })
            .collect();
        let counters = Counters::default();
        let mut settled = [tmp.clone(), meta.clone(), objects.clone()].into_iter().collect();
        let results = commit_batch(jobs, root.path(), &mut settled, &counters);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        for i in 0..3 {
            let body = std::fs::read(objects.join(format!("o{i}"))).unwrap();
            assert_eq!(body, format!("body {i}").as_bytes());
            assert!(meta.join(format!("o{i}.json")).is_file());
        }
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        assert_eq!(
            (
                c(&counters.batches),
                c(&counters.jobs),
                c(&counters.file_syncs),
                c(&counters.dir_syncs)
            ),
            (1, 3, 6, 2)
        );
    }

    /// A directory settled by one batch is not made again by the next; one removed since is
    /// made again, and synced as new.
    #[test]
    fn a_settled_directory_removed_since_is_made_again() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path();
        let out = d.join("out");
        let (counters, mut settled) = (Counters::default(), HashSet::new());
        let job = |name: &str| Job {
            files: vec![written(d, &format!("{name}.tmp"), name.as_bytes())],
            renames: vec![(d.join(format!("{name}.tmp")), out.join(name))],
        };
        let syncs = |c: &Counters| c.dir_syncs.load(Ordering::Relaxed);
        assert!(commit_batch(vec![job("a")], d, &mut settled, &counters)[0].is_ok());
        assert!(settled.contains(&out));
        let first = syncs(&counters);
        assert!(commit_batch(vec![job("b")], d, &mut settled, &counters)[0].is_ok());
        assert_eq!(
            syncs(&counters) - first,
            1,
            "only out/ itself: its entry is settled"
        );
        std::fs::remove_dir_all(&out).unwrap();
        let before = syncs(&counters);
        assert!(commit_batch(vec![job("c")], d, &mut settled, &counters)[0].is_ok());
        assert_eq!(std::fs::read(out.join("c")).unwrap(), b"c");
        assert!(syncs(&counters) - before >= 2, "out/ and its parent synced again");
    }

    /// A bucket gone with its disk is not made again beneath it: the put fails.
    #[test]
    fn a_missing_bucket_is_never_made_again() {
        let disk = tempfile::tempdir().unwrap();
        let bucket = disk.path().join("uploads");
        std::fs::create_dir(&bucket).unwrap();
        let file = written(disk.path(), "a.tmp", b"a");
        std::fs::remove_dir(&bucket).unwrap();
        let job = Job {
            files: vec![file],
            renames: vec![(disk.path().join("a.tmp"), bucket.join("out").join("a"))],
        };
        let results = commit_batch(vec![job], &bucket, &mut HashSet::new(), &Counters::default());
        assert_eq!(results[0].as_ref().unwrap_err().kind(), io::ErrorKind::NotFound);
        assert!(!bucket.exists(), "the bucket was made again");
    }

    /// A rename that cannot be made fails its own put; the others of the batch land.
    #[test]
    fn a_failed_rename_fails_only_its_job() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path();
        let jobs = vec![
            Job {
                files: vec![written(d, "a.tmp", b"a")],
                renames: vec![(d.join("a.tmp"), d.join("out").join("a"))],
            },
            Job {
                files: vec![],
                renames: vec![(d.join("missing.tmp"), d.join("out").join("b"))],
            },
        ];
        let results = commit_batch(jobs, d, &mut HashSet::new(), &Counters::default());
        assert!(results[0].is_ok());
        assert_eq!(results[1].as_ref().unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(std::fs::read(d.join("out").join("a")).unwrap(), b"a");
    }

    /// Concurrent commits through the thread all land, in fewer batches when they queue up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commits_all_land() {
        let root = tempfile::tempdir().unwrap();
        let d = Arc::new(root.path().to_path_buf());
        let committer = Arc::new(Committer::new(root.path().to_path_buf()));
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let (d, committer) = (d.clone(), committer.clone());
                tokio::spawn(async move {
                    let f = written(&d, &format!("{i}.tmp"), &[i as u8; 1000]);
                    let job = Job {
                        files: vec![f],
                        renames: vec![(d.join(format!("{i}.tmp")), d.join("out").join(i.to_string()))],
                    };
                    committer.commit(job).await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        for i in 0..32u8 {
            assert_eq!(
                std::fs::read(d.join("out").join(i.to_string())).unwrap(),
                [i; 1000]
            );
        }
        let s = committer.stats();
        assert_eq!((s.jobs, s.file_syncs), (32, 32));
        // One directory per batch, and the first also syncs the new directory's parent.
        assert!(
            s.batches >= 1 && s.batches <= 32 && s.dir_syncs == s.batches + 1,
            "{s:?}"
        );
    }
}
