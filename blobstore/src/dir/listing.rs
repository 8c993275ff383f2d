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
//! snapshot is kept per store, so memory is that of the largest directory's names (about 70 MB
//! for a flat bucket of a million objects; use the partitioned layout beyond that).

use std::path::Path;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use std::sync::Mutex;

use crate::{Layout, ListEntry, ListRequest};

/// Directories with fewer entries are read afresh for each page (cheap).
pub const SNAPSHOT_FROM: usize = 4096;
/// How long a snapshot serves the pages of one listing.
pub const SNAPSHOT_AGE: Duration = Duration::from_secs(300);

/// One entry of a directory: its full stored name (a directory's ends in `/`).
struct Child {
    full: String,
    is_dir: bool,
}

struct Snapshot {
    dir: std::path::PathBuf,
    taken: Instant,
    children: Arc<Vec<Child>>,
}

#[derive(Default)]
pub struct Listings {
    last: Mutex<Option<Snapshot>>,
}

impl std::fmt::Debug for Listings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Listings")
    }
}

impl Listings {
    /// The sorted entries of `dir` (named under `rel`): the snapshot when the listing is resuming
    /// (`resume`) and one of this directory is recent enough, else read now.
    fn children(&self, dir: &Path, rel: &str, resume: bool) -> std::io::Result<Arc<Vec<Child>>> {
        if resume {
            if let Some(s) = self.last.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
                if s.dir == dir && s.taken.elapsed() < SNAPSHOT_AGE {
                    return Ok(s.children.clone());
                }
            }
        }
        let mut children = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let ft = entry.file_type()?;
            if ft.is_dir() {
                children.push(Child {
                    full: format!("{rel}{name}/"),
                    is_dir: true,
                });
            } else if ft.is_file() {
                children.push(Child {
                    full: format!("{rel}{name}"),
                    is_dir: false,
                });
            }
        }
        children.sort_unstable_by(|a, b| a.full.cmp(&b.full));
        let children = Arc::new(children);
        if children.len() >= SNAPSHOT_FROM {
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
        let mut from = after.map_or(0, |a| children.partition_point(|c| c.full.as_str() < a));
        if let Some(a) = after {
            if from > 0 && children[from - 1].is_dir && a.starts_with(&children[from - 1].full) {
                from -= 1;
            }
        }
        for child in &children[from..] {
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
        let root = tempfile::tempdir().unwrap();
        let store = crate::dir::DirStore::open("fs", root.path(), "b", Layout::Flat, true).unwrap();
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
    }
}
