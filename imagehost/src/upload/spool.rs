//! A bounded spool for one upload: memory up to a threshold, then a temporary file. The body is
//! kept until every fileserver write has read it, each through its own stream. In memory it is
//! the chunks as they were received, shared, never copied into one buffer.

use std::io;
use std::path::Path;
use std::sync::Arc;

use blobstore::BodyStream;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

enum Store {
    Memory(Vec<Bytes>),
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
            store: Store::Memory(Vec::with_capacity(64)),
            len: 0,
            memory_limit,
            dir,
        }
    }

    pub async fn write(&mut self, chunk: Bytes) -> io::Result<()> {
        let held = self.len;
        self.len += chunk.len() as u64;
        if let Store::Memory(chunks) = &mut self.store {
            if self.len <= self.memory_limit as u64 {
                chunks.push(chunk);
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
            debug_assert_eq!(held, chunks.iter().map(|c| c.len() as u64).sum::<u64>());
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
            Store::Memory(chunks) => Ok(Spooled::Memory(chunks.into())),
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
            assert_eq!(done.head(250).await.unwrap(), &data[..250], "across chunks");
            assert_eq!(done.len(), data.len() as u64);
        }
    }
}
