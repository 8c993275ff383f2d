//! The disk tier's file layout. Current (`HIVEEDG3`): `MAGIC | u32 url_len | u32 tags_len |
//! u32 meta0_len | u32 meta1_len | u64 body_len | u64 checked | primary[16] | u8 has_variance |
//! variance[16] | url | tags | meta0 | meta1 | body`. The full key lets a read tell its object
//! from another whose short id is the same. Files of the two earlier layouts (`HIVEEDG1`,
//! `HIVEEDG2`) hold no key: they are not objects of this layout, so the load removes them and a
//! read never serves them. A file whose length is not what its header promises is torn.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use bytes::Bytes;

use super::Slot;

const MAGIC: &[u8; 8] = b"HIVEEDG3";
/// Where the key starts: after the magic, four lengths, the body length and the check number.
const KEY_AT: usize = 8 + 4 + 4 + 4 + 4 + 8 + 8;
pub const HEADER: usize = KEY_AT + 16 + 1 + 16;

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

impl Record {
    /// The file's length.
    pub fn size(&self) -> u64 {
        (HEADER + self.url.len() + self.tags.len() + self.meta.0.len() + self.meta.1.len()) as u64
            + self.body.len() as u64
    }
}

/// What the lurker needs of an object on disk: read without its body.
pub struct Head {
    pub url: Box<[u8]>,
    pub tags: String,
    pub checked: u64,
}

/// Field lengths, check number and key, from the fixed header.
pub struct Layout {
    url: usize,
    tags: usize,
    meta0: usize,
    meta1: usize,
    body: u64,
    pub checked: u64,
    /// The full key.
    pub slot: Slot,
}

impl Layout {
    /// The file length the header promises (saturating: a garbage header never matches a file).
    pub fn total(&self) -> u64 {
        ((HEADER + self.url + self.tags + self.meta0 + self.meta1) as u64).saturating_add(self.body)
    }
}

fn layout(head: &[u8]) -> io::Result<Layout> {
    let u32_at = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]) as usize;
    let u64_at = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().unwrap_or_default());
    let key16 = |i: usize| -> [u8; 16] { head[i..i + 16].try_into().unwrap_or_default() };
    // A file shorter than any header (a torn write, an empty file after a power loss) is not
    // an object: refused, never indexed.
    if head.get(..8) != Some(&MAGIC[..]) || head.len() < HEADER {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a cache object"));
    }
    let variance = (head[KEY_AT + 16] == 1).then(|| key16(KEY_AT + 17));
    Ok(Layout {
        url: u32_at(8),
        tags: u32_at(12),
        meta0: u32_at(16),
        meta1: u32_at(20),
        body: u64_at(24),
        checked: u64_at(32),
        slot: (key16(KEY_AT), variance),
    })
}

fn torn() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "torn cache object")
}

/// A file's fixed header, checked against the file's length (what the index load reads).
pub fn read_layout(f: &mut std::fs::File) -> io::Result<Layout> {
    let total = f.metadata()?.len();
    let mut head = [0u8; HEADER];
    let mut n = 0;
    while n < HEADER {
        match f.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    let l = layout(&head[..n])?;
    if l.total() != total || l.url > 64 * 1024 || l.tags > 4096 {
        return Err(torn());
    }
    Ok(l)
}

/// An object's head (URL, tags, check number), with its layout.
pub fn read_head(path: &Path) -> io::Result<(Head, Layout)> {
    let mut f = std::fs::File::open(path)?;
    let l = read_layout(&mut f)?;
    let mut rest = vec![0u8; l.url + l.tags];
    f.seek(SeekFrom::Start(HEADER as u64))?;
    f.read_exact(&mut rest)?;
    let tags = String::from_utf8_lossy(&rest[l.url..]).into_owned();
    rest.truncate(l.url);
    let head = Head {
        url: rest.into(),
        tags,
        checked: l.checked,
    };
    Ok((head, l))
}

/// A whole object, and the key its file holds.
pub fn read_record(path: &Path) -> io::Result<(Record, Slot)> {
    let data = Bytes::from(std::fs::read(path)?);
    let l = layout(&data[..data.len().min(HEADER)])?;
    if data.len() as u64 != l.total() {
        return Err(torn());
    }
    let mut at = HEADER;
    let mut take = |n: usize| {
        let s = data.slice(at..at + n);
        at += n;
        s
    };
    let url = take(l.url);
    let tags = take(l.tags);
    let meta = (take(l.meta0).to_vec(), take(l.meta1).to_vec());
    let body = take(l.body as usize);
    let rec = Record {
        url,
        tags,
        meta,
        body,
        checked: l.checked,
    };
    Ok((rec, l.slot))
}

/// The header and everything but the body, for `slot`'s file.
pub fn encode_head(slot: &Slot, rec: &Record) -> Vec<u8> {
    let mut buf = Vec::with_capacity((rec.size() - rec.body.len() as u64) as usize);
    buf.extend_from_slice(MAGIC);
    for len in [rec.url.len(), rec.tags.len(), rec.meta.0.len(), rec.meta.1.len()] {
        buf.extend_from_slice(&(len as u32).to_le_bytes());
    }
    buf.extend_from_slice(&(rec.body.len() as u64).to_le_bytes());
    buf.extend_from_slice(&rec.checked.to_le_bytes());
    buf.extend_from_slice(&slot.0);
    buf.push(slot.1.is_some() as u8);
    buf.extend_from_slice(&slot.1.unwrap_or_default());
    buf.extend_from_slice(&rec.url);
    buf.extend_from_slice(&rec.tags);
    buf.extend_from_slice(&rec.meta.0);
    buf.extend_from_slice(&rec.meta.1);
    buf
}

/// Writes a file of the second, keyless layout (for tests of upgrades).
#[cfg(test)]
pub fn encode_v2(rec: &Record) -> Vec<u8> {
    let mut buf = b"HIVEEDG2".to_vec();
    for len in [rec.url.len(), rec.tags.len(), rec.meta.0.len(), rec.meta.1.len()] {
        buf.extend_from_slice(&(len as u32).to_le_bytes());
    }
    buf.extend_from_slice(&(rec.body.len() as u64).to_le_bytes());
    buf.extend_from_slice(&rec.checked.to_le_bytes());
    for part in [&rec.url, &rec.tags] {
        buf.extend_from_slice(part);
    }
    buf.extend_from_slice(&rec.meta.0);
    buf.extend_from_slice(&rec.meta.1);
    buf.extend_from_slice(&rec.body);
    buf
}
