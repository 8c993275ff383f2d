//! List pages of a directory bucket: a depth-first walk in byte order of full stored names.
//!
//! A page starts after a name (`start_after`), and a directory must be read whole and sorted to
//! find where: in a flat bucket of a million objects, that was a million names read and sorted
//! for every page of a thousand, a pass of the whole bucket growing with the square of its size.
//! So the sorted names of a large directory ([`SNAPSHOT_FROM`] entries or more) are kept as a
//! snapshot, taken when a listing starts from the beginning and reused by the pages that follow
//! for up to [`SNAPSHOT_AGE`]: a pass reads each large directory once. Names added after the
//! snapshot are listed by the next pass (as a listing of an S3 bucket may miss objects written
//! while it runs); names removed since are skipped, never listed with a made-up size. One
//! snapshot is kept per store. A directory of more than [`sorted::RUN`] names is sorted on disk
//! ([`sorted`]), so a listing's memory does not grow with the directory: a flat bucket of a
//! million objects or of forty million is listed in the same few megabytes.

mod sorted;

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use std::sync::Mutex;

use crate::{Layout, ListEntry, ListRequest};
use sorted::SortedNames;

/// Directories with fewer entries are read afresh for each page (cheap).
pub const SNAPSHOT_FROM: usize = 4096;
/// How long a snapshot serves the pages of one listing.
pub const SNAPSHOT_AGE: Duration = Duration::from_secs(300);

/// One entry of a directory: its full stored name (a directory's ends in `/`).
#[derive(Clone)]
struct Child {
    full: String,
    is_dir: bool,
}

impl Child {
    fn of(full: String) -> Self {
        Self {
            is_dir: full.ends_with('/'),
            full,
        }
    }
}

/// The sorted entries of one directory: in memory, or on disk when there are many.
#[derive(Clone)]
enum Sorted {
    Memory(Arc<Vec<Child>>),
    Disk(Arc<SortedNames>),
}

type Entries = Box<dyn Iterator<Item = std::io::Result<Child>>>;

impl Sorted {
    fn len_at_least(&self, n: usize) -> bool {
        match self {
            Self::Memory(c) => c.len() >= n,
            Self::Disk(_) => true,
        }
    }

    /// The entries from the first at or past `after` (all without it), and the entry before it.
    fn from(&self, after: Option<&str>) -> std::io::Result<(Option<Child>, Entries)> {
        match self {
            Self::Memory(children) => {
                let from = after.map_or(0, |a| children.partition_point(|c| c.full.as_str() < a));
                let before = from.checked_sub(1).map(|i| children[i].clone());
                let children = children.clone();
                Ok((
                    before,
                    Box::new((from..children.len()).map(move |i| Ok(children[i].clone()))),
                ))
            }
            Self::Disk(names) => {
                let (before, rest) = names.from(after)?;
                Ok((before.map(Child::of), Box::new(rest.map(|n| n.map(Child::of)))))
            }
        }
    }
}

struct Snapshot {
    dir: PathBuf,
    taken: Instant,
    children: Sorted,
}

pub struct Listings {
    /// Where large directories are sorted (the bucket's temporary directory).
    scratch: PathBuf,
    /// Directories of more names than this are sorted on disk, this many at once.
    run: usize,
    last: Mutex<Option<Snapshot>>,
}

impl std::fmt::Debug for Listings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Listings")
    }
}

impl Listings {
    pub fn new(scratch: PathBuf) -> Self {
        Self {
            scratch,
            run: sorted::RUN,
            last: Mutex::new(None),
        }
    }

    /// The sorted entries of `dir` (named under `rel`): the snapshot when the listing is resuming
    /// (`resume`) and one of this directory is recent enough, else read now.
    fn children(&self, dir: &Path, rel: &str, resume: bool) -> std::io::Result<Sorted> {
        if resume {
            if let Some(s) = self.last.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
                if s.dir == dir && s.taken.elapsed() < SNAPSHOT_AGE {
                    return Ok(s.children.clone());
                }
            }
        }
        // Full names of the entries: hidden ones skipped, a directory's ending in `/`.
        let mut names = std::fs::read_dir(dir)?.filter_map(|entry| {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => return Some(Err(e)),
            };
            let name = entry.file_name().into_string().ok()?;
            if name.starts_with('.') {
                return None;
            }
            match entry.file_type() {
                Ok(ft) if ft.is_dir() => Some(Ok(format!("{rel}{name}/"))),
                Ok(ft) if ft.is_file() => Some(Ok(format!("{rel}{name}"))),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            }
        });
        let first: Vec<String> = names.by_ref().take(self.run).collect::<std::io::Result<_>>()?;
        let in_memory = |names: Vec<String>| {
            let mut children: Vec<Child> = names.into_iter().map(Child::of).collect();
            children.sort_unstable_by(|a, b| a.full.cmp(&b.full));
            Sorted::Memory(Arc::new(children))
        };
        let children = if first.len() < self.run {
            in_memory(first)
        } else if let Err(e) = writable(&self.scratch) {
            // A store served read-only (an old imagehoster's disk mounted for `migrate`): sorted
            // in memory, as before there was a disk sort.
            tracing::warn!(
                dir = %dir.display(), scratch = %self.scratch.display(), error = %e,
                "cannot sort a large directory on disk here; sorting it in memory"
            );
            let mut all = first;
            for name in names {
                all.push(name?);
            }
            in_memory(all)
        } else {
            Sorted::Disk(Arc::new(SortedNames::build(
                &self.scratch,
                first,
                names,
                self.run,
            )?))
        };
        if children.len_at_least(SNAPSHOT_FROM) {
            *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(Snapshot {
                dir: dir.to_path_buf(),
                taken: Instant::now(),
                children: children.clone(),
            });
        }
        Ok(children)
    }

    /// Appends to `out` the entries of `dir` (named under `rel`) that `req` asks for, in order;
    /// `true` once `limit` are found.
    pub fn walk(
        &self,
        dir: &Path,
        rel: &str,
        req: &ListRequest,
        layout: Layout,
        limit: usize,
        out: &mut Vec<ListEntry>,
    ) -> std::io::Result<bool> {
        let after = req.start_after.as_deref();
        let children = self.children(dir, rel, after.is_some())?;
        // Straight to where the page starts: the first name at or past `start_after`, or the
        // directory holding it.
        let (before, rest) = children.from(after)?;
        let holding = before.filter(|b| b.is_dir && after.is_some_and(|a| a.starts_with(&b.full)));
        for child in holding.map(Ok).into_iter().chain(rest) {
            let child = child?;
            let full = &child.full;
            // Nothing under or at `full` can match the prefix, or everything there precedes
            // start_after.
            if !(full.starts_with(&req.prefix) || req.prefix.starts_with(full.as_str())) {
                if full.as_str() > req.prefix.as_str() {
                    return Ok(false);
                }
                continue;
            }
            let path = dir.join(full[rel.len()..].trim_end_matches('/'));
            if child.is_dir {
                if after.is_some_and(|a| a > full.as_str() && !a.starts_with(full.as_str())) {
                    continue;
                }
                if self.walk(&path, full, req, layout, limit, out)? {
                    return Ok(true);
                }
                continue;
            }
            if after.is_some_and(|a| a >= full.as_str()) || !full.starts_with(&req.prefix) {
                continue;
            }
            let Some(key) = layout.key_of(full) else {
                tracing::debug!(name = %full, "skipping a file that is not a key of this layout");
                continue;
            };
            // Removed since the directory was read: not there any more, so not listed.
            let size = match std::fs::metadata(&path) {
                Ok(m) => m.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            out.push(ListEntry {
                key,
                stored_name: full.clone(),
                size,
                etag: None,
            });
            if out.len() >= limit {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Whether files can be made in `dir` (made if missing): one is tried.
fn writable(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!("list-probe-{:016x}", rand::random::<u64>()));
    std::fs::File::create(&probe)?;
    std::fs::remove_file(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BlobStore;

    fn key(i: usize) -> String {
        format!("DQmList{i:07}")
    }

    /// Pages over a flat bucket larger than a snapshot's threshold list every key once, in
    /// order; a key removed between pages is skipped, one added shows up in the next listing.
    #[tokio::test]
    async fn pages_of_a_large_directory_list_every_key_once_from_one_read() {
        pages_of_a_large_directory(None).await
    }

    /// The same, the directory's names sorted on disk in runs (as a bucket of more than
    /// [`sorted::RUN`] objects is), and the sorted file removed with the snapshot.
    #[tokio::test]
    async fn pages_of_a_directory_sorted_on_disk_list_every_key_once() {
        pages_of_a_large_directory(Some(1000)).await
    }

    /// The same where nothing can be written (a store mounted read-only): sorted in memory.
    #[tokio::test]
    async fn a_large_directory_that_cannot_be_written_to_is_sorted_in_memory() {
        pages_of_a_large_directory(Some(0)).await
    }

    /// `run`: sort on disk that many names at once (`Some(0)`: 1,000, where nothing can be
    /// written).
    async fn pages_of_a_large_directory(run: Option<usize>) {
        let root = tempfile::tempdir().unwrap();
        let mut store = crate::dir::DirStore::open("fs", root.path(), "b", Layout::Flat, true).unwrap();
        let mut scratch = root.path().join("b").join(".tmp");
        if run == Some(0) {
            // A file where the scratch directory would be: nothing can be made under it.
            scratch = root.path().join("not-a-directory");
            std::fs::write(&scratch, b"").unwrap();
        }
        if let Some(run) = run {
            let run = if run == 0 { 1000 } else { run };
            store.listings = Arc::new(Listings {
                scratch: scratch.clone(),
                run,
                last: Mutex::new(None),
            });
        }
        let n = SNAPSHOT_FROM + 500;
        let bucket = root.path().join("b");
        for i in 0..n {
            std::fs::write(bucket.join(key(i)), b"x").unwrap();
        }
        let mut names = Vec::new();
        let mut req = ListRequest {
            max_keys: 1000,
            ..Default::default()
        };
        let (gone, added) = (key(n - 1), key(n));
        loop {
            let page = store.list(&req).await.unwrap();
            if names.is_empty() {
                std::fs::remove_file(bucket.join(&gone)).unwrap();
                std::fs::write(bucket.join(&added), b"x").unwrap();
            }
            assert!(
                page.entries.iter().all(|e| e.size == 1),
                "every listed file is whole"
            );
            names.extend(page.entries.into_iter().map(|e| e.stored_name));
            match page.next {
                Some(next) => req.start_after = Some(next),
                None => break,
            }
        }
        let mut want: Vec<String> = (0..n - 1).map(key).collect();
        want.sort();
        assert_eq!(names, want, "every key once, in order, the removed one skipped");
        let fresh = store
            .list(&ListRequest {
                prefix: added.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(
            fresh.entries.iter().any(|e| e.stored_name == added),
            "a new listing sees it"
        );
        let sorted_files = || {
            let Ok(dir) = std::fs::read_dir(&scratch) else {
                return 0;
            };
            dir.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("list-")
            })
            .count()
        };
        assert_eq!(
            sorted_files(),
            usize::from(run.is_some_and(|r| r > 0)),
            "one sorted file, no runs left"
        );
        *store.listings.last.lock().unwrap() = None;
        assert_eq!(sorted_files(), 0, "the sorted file goes with its snapshot");
    }
}
