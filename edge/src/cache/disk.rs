//! The disk tier: every cached object also written to a file, so a restart or a zero-downtime
//! upgrade keeps the hot set. Bounded in bytes (least recently used files removed first) and
//! indexed in memory at start from the files' headers.
//!
//! File layout: `MAGIC | u32 url_len | u32 meta0_len | u32 meta1_len | u64 body_len | url |
//! meta0 | meta1 | body`, written to a temporary name and renamed, so a crash leaves either the
//! old file, the new one, or a stray temporary that the next start removes.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use pingora::cache::key::HashBinary;

const MAGIC: &[u8; 8] = b"HIVEEDG1";
const HEADER: usize = 8 + 4 + 4 + 4 + 8;

/// Which stored object: the primary key hash and the variance slot (`None` = primary slot).
pub type Slot = (HashBinary, Option<HashBinary>);

/// One object as stored on disk.
pub struct Record {
    pub url: Bytes,
    pub meta: (Vec<u8>, Vec<u8>),
    pub body: Bytes,
}

struct Indexed {
    size: u64,
    url: Box<[u8]>,
    tick: u64,
}

#[derive(Default)]
struct Index {
    entries: HashMap<Slot, Indexed>,
    lru: BTreeMap<u64, Slot>,
    bytes: u64,
}

pub struct Disk {
    dir: PathBuf,
    max_bytes: u64,
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
            max_bytes,
            index: Mutex::new(Index::default()),
            tick: AtomicU64::new(1),
        };
        let mut found: Vec<(std::time::SystemTime, Slot, u64, Box<[u8]>)> = Vec::new();
        for shard in std::fs::read_dir(dir)? {
            let shard = shard?;
            if shard.file_name() == "tmp" || !shard.file_type()?.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(shard.path())? {
                let f = f?;
                let path = f.path();
                let parsed = slot_from_name(&f.file_name().to_string_lossy())
                    .and_then(|slot| read_header(&path).ok().map(|(url, size)| (slot, url, size)));
                match parsed {
                    Some((slot, url, size)) => {
                        let mtime = f.metadata()?.modified()?;
                        found.push((mtime, slot, size, url));
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
            for (_, slot, size, url) in found {
                let tick = disk.tick.fetch_add(1, Ordering::Relaxed);
                idx.bytes += size;
                idx.lru.insert(tick, slot);
                idx.entries.insert(slot, Indexed { size, url, tick });
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
        let size = (HEADER + rec.url.len() + rec.meta.0.len() + rec.meta.1.len() + rec.body.len()) as u64;
        if size > self.max_bytes {
            return Ok(());
        }
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{}.{}", name_of(slot), rand::random::<u32>()));
        let mut buf = Vec::with_capacity(size as usize);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&(rec.url.len() as u32).to_le_bytes());
        buf.extend_from_slice(&(rec.meta.0.len() as u32).to_le_bytes());
        buf.extend_from_slice(&(rec.meta.1.len() as u32).to_le_bytes());
        buf.extend_from_slice(&(rec.body.len() as u64).to_le_bytes());
        buf.extend_from_slice(&rec.url);
        buf.extend_from_slice(&rec.meta.0);
        buf.extend_from_slice(&rec.meta.1);
        std::fs::write(&tmp, &buf)?;
        let mut f = std::fs::OpenOptions::new().append(true).open(&tmp)?;
        io::Write::write_all(&mut f, &rec.body)?;
        drop(f);
        let path = self.path(slot);
        std::fs::create_dir_all(path.parent().unwrap_or(&self.dir))?;
        std::fs::rename(&tmp, &path)?;
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
                    url: rec.url.to_vec().into(),
                    tick,
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
        while idx.bytes > self.max_bytes {
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
                .keys()
                .filter(|(p, _)| p == primary)
                .copied()
                .collect()
        };
        slots.iter().filter(|s| self.remove(s)).count()
    }

    /// Removes every object whose URL matches; how many.
    pub fn remove_matching(&self, matches: &dyn Fn(&[u8]) -> bool) -> usize {
        let slots: Vec<Slot> = {
            let idx = self.index.lock();
            idx.entries
                .iter()
                .filter(|(_, e)| matches(&e.url))
                .map(|(s, _)| *s)
                .collect()
        };
        slots.iter().filter(|s| self.remove(s)).count()
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

fn lengths(head: &[u8; HEADER]) -> io::Result<(usize, usize, usize, u64)> {
    if &head[..8] != MAGIC {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a cache object"));
    }
    let u32_at = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]) as usize;
    let mut body = [0u8; 8];
    body.copy_from_slice(&head[20..28]);
    Ok((u32_at(8), u32_at(12), u32_at(16), u64::from_le_bytes(body)))
}

/// The URL and total size of an object file, checking that its length matches its header.
fn read_header(path: &Path) -> io::Result<(Box<[u8]>, u64)> {
    let mut f = std::fs::File::open(path)?;
    let total = f.metadata()?.len();
    let mut head = [0u8; HEADER];
    f.read_exact(&mut head)?;
    let (url, m0, m1, body) = lengths(&head)?;
    let want = HEADER as u64 + url as u64 + m0 as u64 + m1 as u64 + body;
    if want != total || url > 64 * 1024 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "torn cache object"));
    }
    let mut u = vec![0u8; url];
    f.read_exact(&mut u)?;
    Ok((u.into(), total))
}

fn read_record(path: &Path) -> io::Result<Record> {
    let data = Bytes::from(std::fs::read(path)?);
    if data.len() < HEADER {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "short cache object"));
    }
    let mut head = [0u8; HEADER];
    head.copy_from_slice(&data[..HEADER]);
    let (url, m0, m1, body) = lengths(&head)?;
    let body = body as usize;
    if data.len() != HEADER + url + m0 + m1 + body {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "torn cache object"));
    }
    let mut at = HEADER;
    let mut take = |n: usize| {
        let s = data.slice(at..at + n);
        at += n;
        s
    };
    let url = take(url);
    let meta = (take(m0).to_vec(), take(m1).to_vec());
    let body = take(body);
    Ok(Record { url, meta, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(url: &str, body: &[u8]) -> Record {
        Record {
            url: Bytes::copy_from_slice(url.as_bytes()),
            meta: (b"m0".to_vec(), b"meta-one".to_vec()),
            body: Bytes::copy_from_slice(body),
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
        std::fs::write(&torn, b"HIVEEDG1short").unwrap();
        let d = Disk::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(d.usage().0, 2);
        assert!(!torn.exists());
        let r = d.read(&b).unwrap();
        assert_eq!(
            (&r.url[..], &r.body[..], &r.meta.1[..]),
            (&b"/b?x=1"[..], &b"beta"[..], &b"meta-one"[..])
        );
        assert_eq!(d.remove_matching(&|u| u.starts_with(b"/a")), 1);
        assert!(d.read(&a).is_none());
        assert_eq!(d.remove_primary(&[2; 16]), 1);
        assert_eq!(d.usage(), (0, 0));
    }

    #[test]
    fn least_recently_used_objects_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let body = vec![7u8; 1000];
        let one = (HEADER + 2 + 2 + 8 + body.len()) as u64;
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
}
