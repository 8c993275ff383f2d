//! A bounded spool for one upload: memory up to a threshold, then a temporary file. The body is
//! kept until every fileserver write has read it, each through its own stream. In memory it is
//! the chunks as they were received, shared, never copied into one buffer; small chunks (a client
//! trickling bytes) are gathered into larger ones, so the list stays short.

use std::io;
use std::path::Path;
use std::sync::Arc;

use blobstore::BodyStream;
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;

/// Chunks under this size are copied together rather than each kept.
const SMALL: usize = 8 << 10;
/// Gathered small chunks become one chunk at this size.
const GATHERED: usize = 64 << 10;
use tokio_util::io::ReaderStream;

enum Store {
    /// Whole chunks, and small ones being gathered after them.
    Memory(Vec<Bytes>, BytesMut),
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
    dir: Arc<Path>,
}

/// A finished spool, readable any number of times.
pub enum Spooled {
    /// The received chunks, in order.
    Memory(Arc<[Bytes]>),
    File {
        temp: tempfile::TempPath,
        len: u64,
    },
}

impl Spool {
    pub fn new(memory_limit: usize, dir: Arc<Path>) -> Self {
        Self {
            store: Store::Memory(Vec::with_capacity(64), BytesMut::new()),
            len: 0,
            memory_limit,
            dir,
        }
    }

    pub async fn write(&mut self, chunk: Bytes) -> io::Result<()> {
        self.len += chunk.len() as u64;
        if let Store::Memory(chunks, small) = &mut self.store {
            if self.len <= self.memory_limit as u64 {
                if chunk.len() >= SMALL {
                    if !small.is_empty() {
                        chunks.push(small.split().freeze());
                    }
                    chunks.push(chunk);
                } else {
                    small.extend_from_slice(&chunk);
                    if small.len() >= GATHERED {
                        chunks.push(small.split().freeze());
                    }
                }
                return Ok(());
            }
            let temp = tempfile::Builder::new()
                .prefix("upload-")
                .tempfile_in(&self.dir)?
                .into_temp_path();
            let mut file = tokio::fs::OpenOptions::new().write(true).open(&temp).await?;
            for c in chunks.iter() {
                file.write_all(c).await?;
            }
            file.write_all(small).await?;
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
            Store::Memory(mut chunks, small) => {
                if !small.is_empty() {
                    chunks.push(small.freeze());
                }
                Ok(Spooled::Memory(chunks.into()))
            }
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
            Spooled::Memory(chunks) => chunks.iter().map(|c| c.len() as u64).sum(),
            Spooled::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A fresh stream over the whole body.
    pub async fn stream(&self) -> io::Result<BodyStream> {
        match self {
            Spooled::Memory(chunks) => {
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
            Spooled::Memory(chunks) => {
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
            let mut s = Spool::new(limit, Arc::from(dir.path()));
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
            if let Spooled::Memory(chunks) = &done {
                assert_eq!(chunks.len(), 1, "100-byte chunks gathered into one");
            }
            assert_eq!(done.head(250).await.unwrap(), &data[..250], "across chunks");
            assert_eq!(done.len(), data.len() as u64);
        }
    }

    /// Large chunks are kept as they came, small ones between them gathered: the order holds,
    /// and trickled bytes make a few chunks, not one per byte.
    #[tokio::test]
    async fn large_chunks_are_kept_and_small_ones_gathered_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::new(1 << 20, Arc::from(dir.path()));
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
        let Spooled::Memory(chunks) = &done else {
            panic!("in memory")
        };
        assert!(chunks.len() <= 8, "{} chunks", chunks.len());
        let back: Vec<Bytes> = done.stream().await.unwrap().try_collect().await.unwrap();
        assert_eq!(back.concat(), data);
        assert_eq!(done.head(20_010).await.unwrap(), &data[..20_010], "across chunks");
        assert_eq!(done.len(), data.len() as u64);
    }
}
