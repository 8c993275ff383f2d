//! The disk tier's load at start: a thread reads every file's fixed header (no URL, no body),
//! indexes it ranked by its modification time (below everything used since the start), removes
//! torn and foreign files, renames files of the earlier layout's names to the current ones, and
//! raises the ban counter past the check numbers it finds. Serving goes on meanwhile.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Instant, UNIX_EPOCH};

use super::{file, Disk, Id, Slot};

/// Files indexed between two reports of the highest check number.
const BATCH: usize = 1024;

/// What a load found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    pub objects: u64,
    pub bytes: u64,
    /// Torn or foreign files removed.
    pub removed: u64,
    /// Files of the earlier layout's names renamed.
    pub renamed: u64,
}

impl Disk {
    /// Starts the load on its own thread; `checked` is told the highest check number found so
    /// far, batch by batch (the ban counter must stay above it).
    pub fn start_load(&'static self, checked: impl Fn(u64) + Send + Sync + 'static) {
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
    pub fn load(&self, checked: &dyn Fn(u64)) -> Loaded {
        let t = Instant::now();
        let mut found = Loaded::default();
        let (mut max_checked, mut batch) = (0u64, 0usize);
        let shards = std::fs::read_dir(&self.dir).into_iter().flatten().flatten();
        for shard in shards {
            if shard.file_name() == "tmp" || !shard.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(files) = std::fs::read_dir(shard.path()) else {
                continue;
            };
            for f in files.flatten() {
                match self.load_one(&f.path(), &f.file_name().to_string_lossy(), &mut found) {
                    Some(c) => max_checked = max_checked.max(c),
                    None => {
                        found.removed += 1;
                        let _ = std::fs::remove_file(f.path());
                    }
                }
                batch += 1;
                if batch % BATCH == 0 {
                    checked(max_checked);
                }
            }
        }
        checked(max_checked);
        self.loading.store(false, Ordering::Release);
        self.evict_over_limit();
        let (objects, bytes) = self.usage();
        tracing::info!(
            objects,
            bytes,
            found = found.objects,
            removed = found.removed,
            renamed = found.renamed,
            index_bytes = self.index_bytes(),
            took_ms = t.elapsed().as_millis() as u64,
            "disk cache tier indexed"
        );
        found
    }

    /// Indexes one file; its check number, or `None` if it is to be removed (torn, foreign).
    fn load_one(&self, path: &Path, name: &str, found: &mut Loaded) -> Option<u64> {
        let (id, legacy) = match Id::parse(name) {
            Some(id) => (id, false),
            None => (Id::of(&legacy_slot(name)?), true),
        };
        let mut f = match std::fs::File::open(path) {
            Ok(f) => f,
            // Removed since the listing (a purge, an eviction): nothing to do.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(0),
            Err(_) => return None,
        };
        // A file (or directory) is indexed only if it is a whole object of this tier.
        let layout = file::read_layout(&mut f).ok()?;
        let size = u32::try_from(layout.total()).ok()?;
        if layout.slot.is_some_and(|s| Id::of(&s) != id) {
            return None;
        }
        let mtime = f.metadata().and_then(|m| m.modified()).ok();
        drop(f);
        if legacy {
            // Never over a file written since the start (a link does not replace).
            let linked = std::fs::hard_link(path, self.path(id));
            let _ = std::fs::remove_file(path);
            linked.ok()?;
            found.renamed += 1;
        }
        let secs = mtime
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        if self.index.insert_found(id, size, layout.checked, Some(secs)) {
            found.objects += 1;
            found.bytes += size as u64;
        }
        Some(layout.checked)
    }
}

/// The key of a file named by the earlier layout (its whole key in hex).
fn legacy_slot(name: &str) -> Option<Slot> {
    let parse = |h: &str| -> Option<[u8; 16]> { hex::decode(h).ok()?.try_into().ok() };
    match name.split_once('-') {
        Some((p, v)) => Some((parse(p)?, Some(parse(v)?))),
        None => Some((parse(name)?, None)),
    }
}
