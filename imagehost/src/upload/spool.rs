//! A bounded spool for one upload: memory up to a threshold, then a temporary file. The body is
//! kept until every fileserver write has read it, each through its own stream. In memory it is
//! copied once as it arrives into block-aligned chunks ([`Blocks`]), shared by every fileserver
//! write: a directory fileserver writes them to disk straight from there, where it would copy
//! received chunks into an aligned buffer of its own, once per fileserver. A client trickling
//! bytes still makes few chunks. What all uploads hold in memory at once is bounded too
//! ([`Budget`]): past it, an upload spills to its file as one past its own limit does.

use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::metrics::UPLOAD_SPILLS;
use crate::spool_budget::{Budget, Room};
use blobstore::{Blocks, BodyStream};
use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

enum Store {
    Memory(Blocks),
    File {
        file: tokio::fs::File,
        temp: tempfile::TempPath,
    },
}

/// Where the upload is written while it arrives.
pub struct Spool {
    store: Store,
    len: u64,
    memory_limit: usize,
    /// The most room this upload's memory may take: its expected size, as [`Blocks`] allocates
    /// for it, within `memory_limit`.
    room_limit: u64,
    dir: Arc<Path>,
    budget: Budget,
    /// The budget's room this spool holds while in memory.
    room: Room,
}

/// A finished spool, readable any number of times.
pub enum Spooled {
    /// The received chunks, in order, and the budget's room they hold until dropped.
    Memory {
        chunks: Arc<[Bytes]>,
        room: Room,
    },
    File {
        temp: tempfile::TempPath,
        len: u64,
    },
}

impl Spool {
    /// A spool for a body of about `expected` bytes (its request's Content-Length), held in
    /// memory up to `memory_limit` while `budget` has room for it.
    pub fn new(memory_limit: usize, dir: Arc<Path>, expected: u64, budget: Budget) -> Self {
        let expected = expected.min(memory_limit as u64) as usize;
        Self {
            store: Store::Memory(Blocks::new(expected)),
            len: 0,
            memory_limit,
            room_limit: expected.next_multiple_of(blobstore::blocks::BLOCK) as u64,
            dir,
            budget,
            room: Room::default(),
        }
    }

    pub async fn write(&mut self, chunk: Bytes) -> io::Result<()> {
        self.len += chunk.len() as u64;
        if let Store::Memory(blocks) = &mut self.store {
            let fits = self.len <= self.memory_limit as u64;
            if fits && self.budget.cover(&mut self.room, self.len, self.room_limit) {
                blocks.extend(&chunk);
                return Ok(());
            }
            UPLOAD_SPILLS
                .with_label_values(&[if fits { "budget" } else { "size" }])
                .inc();
            let temp = tempfile::Builder::new()
                .prefix("upload-")
                .tempfile_in(&self.dir)?
                .into_temp_path();
            let mut file = tokio::fs::OpenOptions::new().write(true).open(&temp).await?;
            for c in std::mem::take(blocks).finish() {
                file.write_all(&c).await?;
            }
            // Those bytes are in the file now.
            self.room = Room::default();
            self.store = Store::File { file, temp };
        }
        if let Store::File { file, .. } = &mut self.store {
            file.write_all(&chunk).await?;
        }
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub async fn finish(self) -> io::Result<Spooled> {
        match self.store {
            Store::Memory(blocks) => Ok(Spooled::Memory {
                chunks: blocks.finish().into(),
                room: self.room,
            }),
            Store::File { mut file, temp } => {
                file.flush().await?;
                Ok(Spooled::File { temp, len: self.len })
            }
        }
    }
}

impl Spooled {
    pub fn len(&self) -> u64 {
        match self {
            Spooled::Memory { chunks, .. } => chunks.iter().map(|c| c.len() as u64).sum(),
            Spooled::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A fresh stream over the whole body.
    pub async fn stream(&self) -> io::Result<BodyStream> {
        match self {
            Spooled::Memory { chunks, .. } => {
                let chunks = chunks.clone();
                let each = (0..chunks.len()).map(move |i| Ok(chunks[i].clone()));
                Ok(Box::pin(futures::stream::iter(each)))
            }
            Spooled::File { temp, .. } => {
                let file = tokio::fs::File::open(temp).await?;
                Ok(Box::pin(ReaderStream::with_capacity(file, 64 * 1024)))
            }
        }
    }

    /// The first bytes, for content sniffing.
    pub async fn head(&self, n: usize) -> io::Result<Vec<u8>> {
        match self {
            Spooled::Memory { chunks, .. } => {
                let mut head = Vec::with_capacity(n);
                for c in chunks.iter() {
                    if head.len() == n {
                        break;
                    }
                    head.extend_from_slice(&c[..c.len().min(n - head.len())]);
                }
                Ok(head)
            }
            Spooled::File { temp, .. } => {
                use tokio::io::AsyncReadExt;
                let mut buf = vec![0; n];
                let mut file = tokio::fs::File::open(temp).await?;
                let mut got = 0;
                while got < n {
                    let r = file.read(&mut buf[got..]).await?;
                    if r == 0 {
                        break;
                    }
                    got += r;
                }
                buf.truncate(got);
                Ok(buf)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    #[tokio::test]
    async fn spills_to_disk_past_the_threshold_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        for (limit, parts) in [(1024usize, 3usize), (10, 300)] {
            let mut s = Spool::new(limit, Arc::from(dir.path()), 0, Budget::new(1 << 30));
            let data: Vec<u8> = (0..parts * 100).map(|i| i as u8).collect();
            for c in data.chunks(100) {
                s.write(Bytes::copy_from_slice(c)).await.unwrap();
            }
            let done = s.finish().await.unwrap();
            assert_eq!(matches!(done, Spooled::File { .. }), data.len() > limit);
            for _ in 0..2 {
                let chunks: Vec<Bytes> = done.stream().await.unwrap().try_collect().await.unwrap();
                assert_eq!(chunks.concat(), data);
            }
            assert_eq!(done.head(5).await.unwrap(), &data[..5]);
            if let Spooled::Memory { chunks, .. } = &done {
                assert_eq!(chunks.len(), 1, "100-byte chunks gathered into one");
            }
            assert_eq!(done.head(250).await.unwrap(), &data[..250], "across chunks");
            assert_eq!(done.len(), data.len() as u64);
        }
    }

    /// An upload that finds the shared budget taken spills to its file, as one past its own
    /// limit does, whole and in order; an upload in memory holds its room until it is dropped.
    #[tokio::test]
    async fn past_the_shared_budget_an_upload_spills_and_its_room_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let budget = Budget::new(512 << 10);
        let data: Vec<u8> = (0..300 << 10).map(|i| (i % 251) as u8).collect();
        let spool = || async {
            let mut s = Spool::new(1 << 20, Arc::from(dir.path()), data.len() as u64, budget.clone());
            for c in data.chunks(64 << 10) {
                s.write(Bytes::copy_from_slice(c)).await.unwrap();
            }
            s.finish().await.unwrap()
        };
        let first = spool().await;
        assert!(matches!(first, Spooled::Memory { .. }), "room for the first");
        let second = spool().await;
        assert!(
            matches!(second, Spooled::File { .. }),
            "the budget is the first's now"
        );
        let back: Vec<Bytes> = second.stream().await.unwrap().try_collect().await.unwrap();
        assert_eq!(back.concat(), data);
        drop(first);
        assert!(matches!(spool().await, Spooled::Memory { .. }), "room given back");
    }

    /// Pieces of any size are gathered in order into aligned chunks sized by the expected
    /// length: trickled bytes make one chunk here, not one per piece.
    #[tokio::test]
    async fn pieces_are_gathered_aligned_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::new(1 << 20, Arc::from(dir.path()), 1 << 20, Budget::new(1 << 30));
        let mut data = Vec::new();
        let mut pieces = Vec::new();
        for i in 0..200u32 {
            let n = if i % 50 == 0 { 20_000 } else { 1 + (i as usize % 7) };
            let piece: Vec<u8> = (0..n).map(|j| (i as usize * 31 + j) as u8).collect();
            data.extend_from_slice(&piece);
            pieces.push(piece);
        }
        for p in pieces {
            s.write(Bytes::from(p)).await.unwrap();
        }
        let done = s.finish().await.unwrap();
        let Spooled::Memory { chunks, .. } = &done else {
            panic!("in memory")
        };
        assert_eq!(chunks.len(), 1, "sized for the expected megabyte");
        assert!(chunks
            .iter()
            .all(|c| c.as_ptr().align_offset(blobstore::blocks::BLOCK) == 0));
        let back: Vec<Bytes> = done.stream().await.unwrap().try_collect().await.unwrap();
        assert_eq!(back.concat(), data);
        assert_eq!(done.head(20_010).await.unwrap(), &data[..20_010], "across chunks");
        assert_eq!(done.len(), data.len() as u64);
    }
}
