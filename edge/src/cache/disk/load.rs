//! The disk tier's load at start: [`READERS`] threads read every file's fixed header (no URL, no
//! body), shard directory by shard directory, index it ranked by its modification time (below
//! everything used since the start), remove torn and foreign files and those of the earlier
//! layouts (they hold no key), and raise the ban counter past the check numbers they find.
//! Serving goes on meanwhile. A file that cannot be read for another reason (out of file
//! descriptors, an I/O error) is left alone.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, UNIX_EPOCH};

use super::{file, Disk, Id};

/// Files indexed between two reports of the highest check number.
const BATCH: usize = 1024;

/// Threads reading headers at once. A tier larger than the page cache is read from the disk, one
/// small random read per file, and a disk serves several such reads at once far faster than one
/// after another (as the scrub's readers found); the reads are cheap in CPU.
pub const READERS: usize = 4;

/// What a load found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    pub objects: u64,
    pub bytes: u64,
    /// Torn, foreign or earlier-layout files removed.
    pub removed: u64,
    /// Files left alone because they could not be read (and not indexed).
    pub unread: u64,
}

/// What to do with one file found.
enum Found {
    /// Indexed (or already known); its check number.
    Kept(u64),
    /// Not an object of this tier's current layout: removed.
    Foreign,
    /// Not readable now: left alone.
    Unread,
}

impl Disk {
    /// Starts the load on its own thread; `checked` is told the highest check number found so
    /// far, batch by batch (the ban counter must stay above it), and `true` with the last.
    pub fn start_load(&'static self, checked: impl Fn(u64, bool) + Send + Sync + 'static) {
        let checked = std::sync::Arc::new(checked);
        let on_thread = checked.clone();
        let started = std::thread::Builder::new()
            .name("edge-disk-load".into())
            .spawn(move || {
                self.load(&*on_thread);
            });
        if let Err(e) = started {
            tracing::error!(error = %e, "disk tier load not started: loading inline");
            self.load(&*checked);
        }
    }

    /// Indexes every file under the tier's directory (see the module's doc); the tier is marked
    /// loaded however the scan ends.
    pub fn load(&self, checked: &(dyn Fn(u64, bool) + Sync)) -> Loaded {
        let t = Instant::now();
        let shards: Vec<_> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|s| s.file_name() != "tmp" && s.file_type().is_ok_and(|t| t.is_dir()))
            .map(|s| s.path())
            .collect();
        let next = AtomicUsize::new(0);
        let (found, max_checked) = std::thread::scope(|scope| {
            // A reader the system cannot start is done without: the others share its shards, and
            // with none at all this thread reads them.
            let readers: Vec<_> = (0..READERS.min(shards.len()).max(1))
                .filter_map(|_| {
                    std::thread::Builder::new()
                        .name("edge-disk-load".into())
                        .spawn_scoped(scope, || self.load_shards(&shards, &next, checked))
                        .ok()
                })
                .collect();
            let (mut found, mut max_checked) = if readers.is_empty() {
                tracing::error!("disk tier readers not started: loading on one thread");
                self.load_shards(&shards, &next, checked)
            } else {
                (Loaded::default(), 0)
            };
            for r in readers {
                // A reader's panic is a bug, raised here as it would be with one reader: its
                // highest check number is lost, and the ban counter must not end below it.
                let (f, c) = r.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
                found.objects += f.objects;
                found.bytes += f.bytes;
                found.removed += f.removed;
                found.unread += f.unread;
                max_checked = max_checked.max(c);
            }
            (found, max_checked)
        });
        checked(max_checked, true);
        self.loading.store(false, Ordering::Release);
        if self.full_while_loading.load(Ordering::Acquire) {
            self.max_bytes.fetch_min(self.usage().1, Ordering::Relaxed);
        }
        self.evict_over_limit();
        let (objects, bytes) = self.usage();
        tracing::info!(
            objects,
            bytes,
            found = found.objects,
            removed = found.removed,
            unread = found.unread,
            index_bytes = self.index_bytes(),
            took_ms = t.elapsed().as_millis() as u64,
            "disk cache tier indexed"
        );
        found
    }

    /// One reader: takes shard directories from `shards` until none is left; what it found and
    /// the highest check number it saw (also reported to `checked` every [`BATCH`] files).
    fn load_shards(
        &self,
        shards: &[std::path::PathBuf],
        next: &AtomicUsize,
        checked: &(dyn Fn(u64, bool) + Sync),
    ) -> (Loaded, u64) {
        let mut found = Loaded::default();
        let (mut max_checked, mut batch) = (0u64, 0usize);
        while let Some(shard) = shards.get(next.fetch_add(1, Ordering::Relaxed)) {
            let Ok(files) = std::fs::read_dir(shard) else {
                continue;
            };
            for f in files.flatten() {
                match self.load_one(&f.path(), &f.file_name().to_string_lossy(), &mut found) {
                    Found::Kept(c) => max_checked = max_checked.max(c),
                    Found::Foreign => {
                        found.removed += 1;
                        let _ = std::fs::remove_file(f.path());
                    }
                    Found::Unread => found.unread += 1,
                }
                batch += 1;
                if batch % BATCH == 0 {
                    checked(max_checked, false);
                }
            }
        }
        (found, max_checked)
    }

    /// Indexes one file (see [`Found`]).
    fn load_one(&self, path: &Path, name: &str, found: &mut Loaded) -> Found {
        let Some(id) = Id::parse(name) else {
            return Found::Foreign;
        };
        let mut f = match std::fs::File::open(path) {
            Ok(f) => f,
            // Removed since the listing (a purge, an eviction): nothing to do.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Found::Kept(0),
            Err(_) => return Found::Unread,
        };
        let layout = match file::read_layout(&mut f) {
            Ok(l) => l,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                return Found::Foreign
            }
            Err(_) => return Found::Unread,
        };
        // Only whole objects, under their own id.
        let Ok(size) = u32::try_from(layout.total()) else {
            return Found::Foreign;
        };
        if Id::of(&layout.slot) != id {
            return Found::Foreign;
        }
        let secs = f
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        if self.index.insert_found(id, size, layout.checked, Some(secs)) {
            found.objects += 1;
            found.bytes += size as u64;
        }
        Found::Kept(layout.checked)
    }
}
