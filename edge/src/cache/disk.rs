//! The disk tier: every cached object also written to a file, so a restart or a zero-downtime
//! upgrade keeps the hot set. Bounded in bytes (least recently used files removed first) and
//! indexed in memory at start from the files' headers.
//!
//! File layout (`HIVEEDG2`): `MAGIC | u32 url_len | u32 tags_len | u32 meta0_len | u32 meta1_len |
//! u64 body_len | u64 checked | url | tags | meta0 | meta1 | body`, written to a temporary name
//! and renamed, so a crash leaves either the old file, the new one, or a stray temporary that the
//! next start removes. `checked` is the ban sequence number the object was last checked at;
//! files of the first layout (`HIVEEDG1`, no tags, no number) are still read, as checked at 0.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use pingora::cache::key::HashBinary;

const MAGIC_V1: &[u8; 8] = b"HIVEEDG1";
const MAGIC: &[u8; 8] = b"HIVEEDG2";
const HEADER_V1: usize = 8 + 4 + 4 + 4 + 8;
const HEADER: usize = 8 + 4 + 4 + 4 + 4 + 8 + 8;

/// Which stored object: the primary key hash and the variance slot (`None` = primary slot).
pub type Slot = (HashBinary, Option<HashBinary>);

/// One object as stored on disk.
pub struct Record {
    pub url: Bytes,
    /// Surrogate keys, space separated.
    pub tags: Bytes,
    pub meta: (Vec<u8>, Vec<u8>),
    pub body: Bytes,
    /// The ban sequence number it was last checked at.
    pub checked: u64,
}

/// What the lurker needs of an object on disk: read without its body.
pub struct Head {
    pub url: Box<[u8]>,
    pub tags: String,
    pub checked: u64,
}

/// What the index keeps per object: what eviction and bans need (URLs and tags stay in the
/// files, read by the lurker when a ban needs them).
struct Indexed {
    size: u64,
    tick: u64,
    checked: u64,
    /// Which write of the slot this is (the tick it was written or indexed at): a check made
    /// from an older file is not recorded for a newer one.
    written: u64,
}

#[derive(Default)]
struct Index {
    /// Ordered, so every variant of one URL is one range, and the lurker can walk in batches.
    entries: BTreeMap<Slot, Indexed>,
    lru: BTreeMap<u64, Slot>,
    bytes: u64,
}

pub struct Disk {
    dir: PathBuf,
    /// `disk_max_bytes`, lowered to what the disk really holds the first time it is found full.
    max_bytes: AtomicU64,
    index: Mutex<Index>,
    tick: AtomicU64,
}

impl Disk {
    /// Opens (creating) `dir`, indexes the objects already there and removes torn or foreign files.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Disk> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        for f in std::fs::read_dir(dir.join("tmp"))? {
            let _ = std::fs::remove_file(f?.path());
        }
        let disk = Disk {
            dir: dir.to_path_buf(),
            max_bytes: AtomicU64::new(max_bytes),
            index: Mutex::new(Index::default()),
            tick: AtomicU64::new(1),
        };
        let mut found: Vec<(std::time::SystemTime, Slot, u64, Head)> = Vec::new();
        for shard in std::fs::read_dir(dir)? {
            let shard = shard?;
            if shard.file_name() == "tmp" || !shard.file_type()?.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(shard.path())? {
                let f = f?;
                let path = f.path();
                let parsed = slot_from_name(&f.file_name().to_string_lossy())
                    .and_then(|slot| read_head(&path).ok().map(|(head, size)| (slot, head, size)));
                match parsed {
                    Some((slot, head, size)) => {
                        let mtime = f.metadata()?.modified()?;
                        found.push((mtime, slot, size, head));
                    }
                    None => {
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
        }
        // Oldest first, so the recency order survives the restart.
        found.sort_by_key(|(t, ..)| *t);
        {
            let mut idx = disk.index.lock();
            for (_, slot, size, head) in found {
                let tick = disk.tick.fetch_add(1, Ordering::Relaxed);
                idx.bytes += size;
                idx.lru.insert(tick, slot);
                idx.entries.insert(
                    slot,
                    Indexed {
                        size,
                        tick,
                        checked: head.checked,
                        written: tick,
                    },
                );
            }
        }
        let evict = disk.over_limit();
        disk.remove_files(&evict);
        Ok(disk)
    }

    fn path(&self, slot: &Slot) -> PathBuf {
        let name = name_of(slot);
        self.dir.join(&name[..2]).join(name)
    }

    pub fn contains(&self, slot: &Slot) -> bool {
        self.index.lock().entries.contains_key(slot)
    }

    /// Objects and bytes indexed.
    pub fn usage(&self) -> (usize, u64) {
        let idx = self.index.lock();
        (idx.entries.len(), idx.bytes)
    }

    /// Reads an object, marking it recently used. `None` if it is not there or unreadable.
    pub fn read(&self, slot: &Slot) -> Option<Record> {
        if !self.touch(slot) {
            return None;
        }
        match read_record(&self.path(slot)) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "disk cache: unreadable object dropped");
                self.remove(slot);
                None
            }
        }
    }

    fn touch(&self, slot: &Slot) -> bool {
        let tick = self.tick.fetch_add(1, Ordering::Relaxed);
        let mut idx = self.index.lock();
        let Some(old) = idx
            .entries
            .get_mut(slot)
            .map(|e| std::mem::replace(&mut e.tick, tick))
        else {
            return false;
        };
        idx.lru.remove(&old);
        idx.lru.insert(tick, *slot);
        true
    }

    /// Writes an object (replacing any previous one) and removes the least recently used
    /// objects beyond the byte limit. Objects larger than the whole tier are not written.
    pub fn write(&self, slot: &Slot, rec: &Record) -> io::Result<()> {
        let size =
            (HEADER + rec.url.len() + rec.tags.len() + rec.meta.0.len() + rec.meta.1.len() + rec.body.len())
                as u64;
        if size > self.max_bytes.load(Ordering::Relaxed) {
            return Ok(());
        }
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{}.{}", name_of(slot), rand::random::<u32>()));
        let mut buf = Vec::with_capacity(size as usize - rec.body.len());
        buf.extend_from_slice(MAGIC);
        for len in [rec.url.len(), rec.tags.len(), rec.meta.0.len(), rec.meta.1.len()] {
            buf.extend_from_slice(&(len as u32).to_le_bytes());
        }
        buf.extend_from_slice(&(rec.body.len() as u64).to_le_bytes());
        buf.extend_from_slice(&rec.checked.to_le_bytes());
        buf.extend_from_slice(&rec.url);
        buf.extend_from_slice(&rec.tags);
        buf.extend_from_slice(&rec.meta.0);
        buf.extend_from_slice(&rec.meta.1);
        let path = self.path(slot);
        let written = (|| {
            std::fs::write(&tmp, &buf)?;
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
                let evict = self.least_recent(size * 2);
                self.remove_files(&evict);
                // The disk holds less than configured: from now on the limit is what it held,
                // so writes evict before they write instead of failing.
                let held = self.index.lock().bytes;
                self.max_bytes.fetch_min(held, Ordering::Relaxed);
            }
            return Err(e);
        }
        let tick = self.tick.fetch_add(1, Ordering::Relaxed);
        {
            let mut idx = self.index.lock();
            if let Some(old) = idx.entries.remove(slot) {
                idx.bytes -= old.size;
                idx.lru.remove(&old.tick);
            }
            idx.bytes += size;
            idx.lru.insert(tick, *slot);
            idx.entries.insert(
                *slot,
                Indexed {
                    size,
                    tick,
                    checked: rec.checked,
                    written: tick,
                },
            );
        }
        let evict = self.over_limit();
        self.remove_files(&evict);
        Ok(())
    }

    /// Takes the least recently used entries out of the index until it fits the limit.
    fn over_limit(&self) -> Vec<Slot> {
        let mut idx = self.index.lock();
        let mut out = Vec::new();
        let max = self.max_bytes.load(Ordering::Relaxed);
        while idx.bytes > max {
            let Some((_, slot)) = idx.lru.pop_first() else {
                break;
            };
            if let Some(e) = idx.entries.remove(&slot) {
                idx.bytes -= e.size;
            }
            out.push(slot);
        }
        out
    }

    /// Takes least recently used entries totalling at least `bytes` out of the index.
    fn least_recent(&self, bytes: u64) -> Vec<Slot> {
        let mut idx = self.index.lock();
        let (mut freed, mut out) = (0, Vec::new());
        while freed < bytes {
            let Some((_, slot)) = idx.lru.pop_first() else {
                break;
            };
            if let Some(e) = idx.entries.remove(&slot) {
                idx.bytes -= e.size;
                freed += e.size;
            }
            out.push(slot);
        }
        out
    }

    fn remove_files(&self, slots: &[Slot]) {
        for s in slots {
            let _ = std::fs::remove_file(self.path(s));
        }
    }

    /// Removes one object; true if it was there.
    pub fn remove(&self, slot: &Slot) -> bool {
        let removed = {
            let mut idx = self.index.lock();
            match idx.entries.remove(slot) {
                Some(e) => {
                    idx.bytes -= e.size;
                    idx.lru.remove(&e.tick);
                    true
                }
                None => false,
            }
        };
        if removed {
            self.remove_files(&[*slot]);
        }
        removed
    }

    /// Removes every variant of `primary`; how many there were.
    pub fn remove_primary(&self, primary: &HashBinary) -> usize {
        let slots: Vec<Slot> = {
            let idx = self.index.lock();
            idx.entries
                .range((*primary, None)..=(*primary, Some([u8::MAX; 16])))
                .map(|(s, _)| *s)
                .collect()
        };
        slots.iter().filter(|s| self.remove(s)).count()
    }

    /// Up to `n` objects after `after` (in slot order) last checked below `below`, and where the
    /// next batch starts (`None`: the walk is over). Scans a bounded stretch of the index per
    /// call, so the lock is held briefly whatever the tier's size.
    pub fn unchecked(&self, after: Option<Slot>, below: u64, n: usize) -> (Vec<Slot>, Option<Slot>) {
        let idx = self.index.lock();
        let mut out = Vec::new();
        let mut last = None;
        let range = match after {
            Some(a) => idx
                .entries
                .range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => idx.entries.range(..),
        };
        for (scanned, (slot, e)) in range.enumerate() {
            if scanned >= n * 8 || out.len() >= n {
                return (out, last);
            }
            last = Some(*slot);
            if e.checked < below {
                out.push(*slot);
            }
        }
        (out, None)
    }

    /// The URL, tags and check number of an object, from its file (no body read).
    pub fn head(&self, slot: &Slot) -> io::Result<Head> {
        read_head(&self.path(slot)).map(|(h, _)| h)
    }

    /// Notes that an object passed the bans up to `seq`, if the slot still holds the write
    /// `written` that was tested (see [`Disk::check_state`]).
    pub fn mark_checked(&self, slot: &Slot, seq: u64, written: u64) {
        if let Some(e) = self.index.lock().entries.get_mut(slot) {
            if e.written == written {
                e.checked = e.checked.max(seq);
            }
        }
    }

    /// An object's check number as the index holds it, and which write of its slot it is.
    pub fn check_state(&self, slot: &Slot) -> Option<(u64, u64)> {
        self.index
            .lock()
            .entries
            .get(slot)
            .map(|e| (e.checked, e.written))
    }

    /// The highest check number of any object (a floor for the ban counter, should the ban
    /// file be lost).
    pub fn max_checked(&self) -> u64 {
        self.index
            .lock()
            .entries
            .values()
            .map(|e| e.checked)
            .max()
            .unwrap_or(0)
    }

    /// The check number the index holds for an object (the file's may be older).
    pub fn checked(&self, slot: &Slot) -> Option<u64> {
        self.index.lock().entries.get(slot).map(|e| e.checked)
    }
}

fn name_of((primary, variance): &Slot) -> String {
    match variance {
        Some(v) => format!("{}-{}", hex::encode(primary), hex::encode(v)),
        None => hex::encode(primary),
    }
}

fn slot_from_name(name: &str) -> Option<Slot> {
    let parse = |h: &str| -> Option<HashBinary> { hex::decode(h).ok()?.try_into().ok() };
    match name.split_once('-') {
        Some((p, v)) => Some((parse(p)?, Some(parse(v)?))),
        None => Some((parse(name)?, None)),
    }
}

/// Field lengths and the check number, from either layout's fixed header.
struct Layout {
    header: usize,
    url: usize,
    tags: usize,
    meta0: usize,
    meta1: usize,
    body: u64,
    checked: u64,
}

impl Layout {
    /// The file length the header promises (saturating: a garbage header never matches a file).
    fn total(&self) -> u64 {
        ((self.header + self.url + self.tags + self.meta0 + self.meta1) as u64).saturating_add(self.body)
    }
}

fn layout(head: &[u8]) -> io::Result<Layout> {
    let u32_at = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]) as usize;
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&head[i..i + 8]);
        u64::from_le_bytes(b)
    };
    // A file shorter than any header (a torn write, an empty file after a power loss) is not
    // an object: refused, never indexed.
    match head.get(..8).unwrap_or_default() {
        m if m == MAGIC && head.len() >= HEADER => Ok(Layout {
            header: HEADER,
            url: u32_at(8),
            tags: u32_at(12),
            meta0: u32_at(16),
            meta1: u32_at(20),
            body: u64_at(24),
            checked: u64_at(32),
        }),
        m if m == MAGIC_V1 && head.len() >= HEADER_V1 => Ok(Layout {
            header: HEADER_V1,
            url: u32_at(8),
            tags: 0,
            meta0: u32_at(12),
            meta1: u32_at(16),
            body: u64_at(20),
            checked: 0,
        }),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "not a cache object")),
    }
}

/// An object's head (URL, tags, check number) and total size, checking that the file's length
/// matches its header.
fn read_head(path: &Path) -> io::Result<(Head, u64)> {
    let mut f = std::fs::File::open(path)?;
    let total = f.metadata()?.len();
    let mut head = [0u8; HEADER];
    let n = f.read(&mut head)?;
    let l = layout(&head[..n])?;
    if l.total() != total || l.url > 64 * 1024 || l.tags > 4096 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "torn cache object"));
    }
    let mut rest = vec![0u8; l.url + l.tags];
    let at = l.header as u64;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(at))?;
    f.read_exact(&mut rest)?;
    let tags = String::from_utf8_lossy(&rest[l.url..]).into_owned();
    rest.truncate(l.url);
    Ok((
        Head {
            url: rest.into(),
            tags,
            checked: l.checked,
        },
        total,
    ))
}

fn read_record(path: &Path) -> io::Result<Record> {
    let data = Bytes::from(std::fs::read(path)?);
    let l = layout(&data[..data.len().min(HEADER)])?;
    if data.len() as u64 != l.total() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "torn cache object"));
    }
    let mut at = l.header;
    let mut take = |n: usize| {
        let s = data.slice(at..at + n);
        at += n;
        s
    };
    let url = take(l.url);
    let tags = take(l.tags);
    let meta = (take(l.meta0).to_vec(), take(l.meta1).to_vec());
    let body = take(l.body as usize);
    Ok(Record {
        url,
        tags,
        meta,
        body,
        checked: l.checked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(url: &str, body: &[u8]) -> Record {
        Record {
            url: Bytes::copy_from_slice(url.as_bytes()),
            tags: Bytes::from_static(b"DQmA Ub"),
            meta: (b"m0".to_vec(), b"meta-one".to_vec()),
            body: Bytes::copy_from_slice(body),
            checked: 7,
        }
    }

    #[test]
    fn objects_survive_reopen_and_torn_files_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let a: Slot = ([1; 16], None);
        let b: Slot = ([2; 16], Some([3; 16]));
        {
            let d = Disk::open(dir.path(), 1 << 20).unwrap();
            d.write(&a, &rec("/a", b"alpha")).unwrap();
            d.write(&b, &rec("/b?x=1", b"beta")).unwrap();
        }
        // A torn copy of a third object.
        let torn = dir.path().join("04").join(hex::encode([4u8; 16]));
        std::fs::create_dir_all(torn.parent().unwrap()).unwrap();
        std::fs::write(&torn, b"HIVEEDG2short").unwrap();
        // Shorter than any header, and empty (a rename that beat its data to disk).
        let stubs: Vec<_> = [(5u8, &b"HIVE"[..]), (6, &b""[..])]
            .iter()
            .map(|(i, bytes)| {
                let p = dir.path().join(format!("{i:02x}")).join(hex::encode([*i; 16]));
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, bytes).unwrap();
                p
            })
            .collect();
        let d = Disk::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(d.usage().0, 2);
        assert!(!torn.exists() && stubs.iter().all(|p| !p.exists()));
        let r = d.read(&b).unwrap();
        assert_eq!(
            (&r.url[..], &r.body[..], &r.meta.1[..], &r.tags[..], r.checked),
            (&b"/b?x=1"[..], &b"beta"[..], &b"meta-one"[..], &b"DQmA Ub"[..], 7)
        );
        let h = d.head(&a).unwrap();
        assert_eq!(
            (&h.url[..], h.tags.as_str(), h.checked),
            (&b"/a"[..], "DQmA Ub", 7)
        );
        assert_eq!(d.remove_primary(&[2; 16]), 1);
        assert!(d.remove(&a));
        assert_eq!(d.usage(), (0, 0));
    }

    #[test]
    fn first_layout_files_are_read_as_unchecked_and_untagged() {
        let dir = tempfile::tempdir().unwrap();
        let slot: Slot = ([9; 16], None);
        let path = dir.path().join("09").join(hex::encode([9u8; 16]));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut f = MAGIC_V1.to_vec();
        for len in [2u32, 2, 3] {
            f.extend(len.to_le_bytes());
        }
        f.extend(4u64.to_le_bytes());
        f.extend(b"/vm0m11body");
        std::fs::write(&path, &f).unwrap();
        let d = Disk::open(dir.path(), 1 << 20).unwrap();
        let r = d.read(&slot).expect("read");
        assert_eq!(
            (&r.url[..], &r.tags[..], &r.body[..], r.checked),
            (&b"/v"[..], &b""[..], &b"body"[..], 0)
        );
    }

    #[test]
    fn least_recently_used_objects_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let body = vec![7u8; 1000];
        let one = (HEADER + 2 + 7 + 2 + 8 + body.len()) as u64;
        let d = Disk::open(dir.path(), one * 3).unwrap();
        let slots: Vec<Slot> = (0..4u8).map(|i| ([i; 16], None)).collect();
        for s in &slots[..3] {
            d.write(s, &rec("/x", &body)).unwrap();
        }
        assert!(d.read(&slots[0]).is_some()); // 0 is now the most recent
        d.write(&slots[3], &rec("/x", &body)).unwrap();
        assert!(d.contains(&slots[0]) && !d.contains(&slots[1]));
        assert!(d.contains(&slots[2]) && d.contains(&slots[3]));
        assert_eq!(d.usage(), (3, one * 3));
    }

    #[test]
    fn the_walk_finds_every_unchecked_object_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let d = Disk::open(dir.path(), 1 << 24).unwrap();
        for i in 0..50u8 {
            d.write(&([i; 16], None), &rec("/x", b"b")).unwrap();
        }
        for i in (0..50u8).step_by(2) {
            let slot = ([i; 16], None);
            let (_, written) = d.check_state(&slot).unwrap();
            d.mark_checked(&slot, 9, written);
        }
        // A check made of an earlier write of a slot is not recorded for the one there now.
        let slot = ([1u8; 16], None);
        let (_, before) = d.check_state(&slot).unwrap();
        d.write(&slot, &rec("/x", b"rewritten")).unwrap();
        d.mark_checked(&slot, 9, before);
        assert_eq!(d.check_state(&slot).unwrap().0, 7, "still as written");
        assert_eq!(d.max_checked(), 9);
        let mut found = Vec::new();
        let mut at = None;
        loop {
            let (batch, next) = d.unchecked(at, 9, 4);
            found.extend(batch);
            match next {
                Some(n) => at = Some(n),
                None => break,
            }
        }
        assert_eq!(found.len(), 25);
        assert!(found.iter().all(|(p, _)| p[0] % 2 == 1));
        found.dedup();
        assert_eq!(found.len(), 25, "each once");
    }
}
