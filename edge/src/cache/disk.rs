//! The disk tier: every cached object also written to a file, so a restart or a zero-downtime
//! upgrade keeps the hot set. Bounded in bytes, indexed compactly in memory ([`index`]: 28
//! bytes an object in tables of 1,024 shards), and serving from the moment it opens: the index
//! is loaded from the files' headers by a thread ([`load`]) while hits, misses and writes go on;
//! until it is through, a lookup of an object not indexed yet looks for its file.
//!
//! A full tier admits a new object only if it was asked for more often lately than the object
//! it would push out (TinyLFU, [`service::admission`]), so the long tail asked for once cannot
//! flush the hot set; eviction removes the least recent of a sample ([`index`]).
//!
//! Files ([`file`]) are written to a temporary name and renamed, so a crash leaves either the
//! old file, the new one, or a stray temporary that the next start removes; a file whose
//! length disagrees with its header is torn, and removed when found. Files of the earlier
//! layouts are removed by the load, once: they hold no key, and a short id alone could answer for
//! another object.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pingora::cache::key::HashBinary;
use service::admission::Frequency;

mod file;
pub mod index;
mod load;
mod table;
#[cfg(test)]
mod tests;

pub use file::{Head, Record};
use index::Index;
pub use index::{Id, SHARDS};

/// Which stored object: the primary key hash and the variance slot (`None` = primary slot).
pub type Slot = (HashBinary, Option<HashBinary>);

/// What a write did.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    Stored,
    /// Not stored: the tier is full and what it would push out is asked for more often.
    Refused,
    /// Not stored: larger than the whole tier.
    TooLarge,
}

pub struct Disk {
    dir: PathBuf,
    /// `disk_max_bytes`, lowered to what the disk really holds the first time it is found full.
    max_bytes: AtomicU64,
    index: Index,
    /// True until the load at start has been through every file.
    loading: AtomicBool,
    /// The disk was found full while loading (when what is indexed says nothing of what the
    /// disk holds): the limit is lowered once the load is through.
    full_while_loading: AtomicBool,
}

impl Disk {
    /// Opens (creating) `dir` and removes stray temporaries. Nothing is indexed yet: call
    /// [`Disk::start_load`] (or [`Disk::load`]); until the load is through, reads look on disk.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Disk> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        // Nothing writes yet: every temporary is a write a crash or kill cut short.
        for f in std::fs::read_dir(dir.join("tmp"))? {
            let _ = std::fs::remove_file(f?.path());
        }
        Ok(Disk {
            dir: dir.to_path_buf(),
            max_bytes: AtomicU64::new(max_bytes),
            index: Index::default(),
            loading: AtomicBool::new(true),
            full_while_loading: AtomicBool::new(false),
        })
    }

    /// Whether the load at start is still under way.
    pub fn loading(&self) -> bool {
        self.loading.load(Ordering::Acquire)
    }

    fn path(&self, id: Id) -> PathBuf {
        let name = id.name();
        self.dir.join(&name[..2]).join(name)
    }

    /// Whether `slot` may be on disk: indexed, or not known yet while the load runs.
    pub fn contains(&self, slot: &Slot) -> bool {
        self.index.get(Id::of(slot)).is_some() || self.loading()
    }

    /// Objects and bytes indexed.
    pub fn usage(&self) -> (usize, u64) {
        self.index.usage()
    }

    /// Bytes of memory the index holds.
    pub fn index_bytes(&self) -> usize {
        self.index.heap_bytes()
    }

    /// Reads an object, marking it recently used. `None` if it is not there or unreadable (or
    /// its file holds another object whose id is the same).
    pub fn read(&self, slot: &Slot) -> Option<Record> {
        let id = Id::of(slot);
        let seen = self.index.touch(id);
        if seen.is_none() && !self.loading() {
            return None;
        }
        let path = self.path(id);
        match file::read_record(&path) {
            Ok((rec, key)) if key == *slot => {
                if seen.is_none() {
                    self.index.insert_found(id, rec.size() as u32, rec.checked, None);
                }
                Some(rec)
            }
            Ok(_) => None,
            // Removed since (an eviction, a purge): forget it, unless it was written again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(m) = seen {
                    self.index.remove_written(id, m.written);
                }
                None
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                ) =>
            {
                tracing::warn!(error = %e, "disk cache: torn object dropped");
                // Only the write that was read: a newer one of the same id stays. A file not
                // indexed yet is the load's to remove.
                if seen.is_some_and(|m| self.index.remove_written(id, m.written)) {
                    let _ = std::fs::remove_file(&path);
                }
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "disk cache: object not read");
                None
            }
        }
    }

    /// Writes an object (replacing any previous one of its slot) and removes the least recently
    /// used objects beyond the byte limit. A full tier takes it only if `frequency` says it is
    /// asked for more often than what it would push out.
    pub fn write(&self, slot: &Slot, rec: &Record, frequency: &Frequency) -> io::Result<Written> {
        let size = rec.size();
        let max = self.max_bytes.load(Ordering::Relaxed);
        if size > max || size > u32::MAX as u64 {
            return Ok(Written::TooLarge);
        }
        let id = Id::of(slot);
        if self.index.usage().1.saturating_add(size) > max && self.index.get(id).is_none() {
            if let Some((victim, _)) = self.index.least_recent() {
                if !frequency.admits(&id, &victim) {
                    return Ok(Written::Refused);
                }
            }
        }
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{}.{}", id.name(), rand::random::<u32>()));
        let path = self.path(id);
        let written = (|| {
            std::fs::write(&tmp, file::encode_head(slot, rec))?;
            let mut f = std::fs::OpenOptions::new().append(true).open(&tmp)?;
            io::Write::write_all(&mut f, &rec.body)?;
            drop(f);
            std::fs::create_dir_all(path.parent().unwrap_or(&self.dir))?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            // Nothing half-written stays behind; on a full disk, the least recently used
            // objects make room (twice this one's size) so that later writes can land.
            let _ = std::fs::remove_file(&tmp);
            if e.kind() == io::ErrorKind::StorageFull {
                let evict = self.index.evict(size * 2);
                self.remove_files(&evict);
                // The disk holds less than configured: from now on the limit is what it held,
                // so writes evict before they write instead of failing. While loading, the
                // index does not know yet what the disk holds: that waits for the load's end.
                if self.loading() {
                    self.full_while_loading.store(true, Ordering::Release);
                } else {
                    self.max_bytes.fetch_min(self.index.usage().1, Ordering::Relaxed);
                }
            }
            return Err(e);
        }
        self.index.insert(id, size as u32, rec.checked);
        self.evict_over_limit();
        Ok(Written::Stored)
    }

    /// Removes least recent objects until the tier fits its limit.
    fn evict_over_limit(&self) {
        let (held, max) = (self.index.usage().1, self.max_bytes.load(Ordering::Relaxed));
        if held > max {
            let evict = self.index.evict(held - max);
            self.remove_files(&evict);
        }
    }

    fn remove_files(&self, ids: &[Id]) {
        for id in ids {
            let _ = std::fs::remove_file(self.path(*id));
        }
    }

    /// Removes one object; true if it was there. While loading, also a file not indexed yet.
    pub fn remove(&self, slot: &Slot) -> bool {
        let id = Id::of(slot);
        self.remove_id(id) || (self.loading() && std::fs::remove_file(self.path(id)).is_ok())
    }

    pub fn remove_id(&self, id: Id) -> bool {
        let removed = self.index.remove(id).is_some();
        if removed {
            self.remove_files(&[id]);
        }
        removed
    }

    /// Removes every variant of `primary`; how many there were. While the load runs, files it
    /// has not reached are found by name in their directory.
    pub fn remove_primary(&self, primary: &HashBinary) -> usize {
        let p = Id::of(&(*primary, None)).primary;
        let mut n = 0;
        for id in self.index.of_primary(p) {
            n += self.remove_id(id) as usize;
        }
        if self.loading() {
            let prefix = hex::encode(&primary[..8]);
            if let Ok(files) = std::fs::read_dir(self.dir.join(&prefix[..2])) {
                for f in files.flatten() {
                    if f.file_name().to_string_lossy().starts_with(&prefix)
                        && std::fs::remove_file(f.path()).is_ok()
                    {
                        n += 1;
                    }
                }
            }
        }
        n
    }

    /// Objects of index shard `shard` (of [`SHARDS`]) last checked below `below`.
    pub fn unchecked(&self, shard: usize, below: u64) -> Vec<Id> {
        self.index.unchecked(shard, below)
    }

    /// The URL, tags and check number of an object, from its file (no body read).
    pub fn head(&self, id: Id) -> io::Result<Head> {
        file::read_head(&self.path(id)).map(|(h, _)| h)
    }

    /// Notes that an object passed the bans up to `seq`, if the slot still holds the write
    /// `written` that was tested (see [`Disk::check_state`]).
    pub fn mark_checked(&self, id: Id, seq: u64, written: u16) {
        self.index.mark_checked(id, seq, written);
    }

    /// An object's check number as the index holds it, and which write of its id it is.
    pub fn check_state(&self, id: Id) -> Option<(u64, u16)> {
        self.index.get(id).map(|m| (m.checked as u64, m.written))
    }

    /// The check number the index holds for an object (the file's may be older).
    pub fn checked(&self, slot: &Slot) -> Option<u64> {
        self.index.get(Id::of(slot)).map(|m| m.checked as u64)
    }
}
