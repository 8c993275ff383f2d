//! A put's files: the body streamed into its temporary file, each run of chunks that are ready
//! at once written by one blocking call (an upload held in memory is one call, not one per
//! chunk, and no copy into a buffer of tokio's), and the sidecar recorded on it or written
//! beside it.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;

use futures::{FutureExt, StreamExt};

use crate::{BodyStream, DigestingWriter, StoreError};

/// The most bytes one blocking write call takes.
const WRITE_RUN: usize = 1 << 20;

/// Runs `f` on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(io::Error::other)?
}

/// Creates `tmp_dir` if it was removed, then the temporary file `path`.
pub async fn create(tmp_dir: PathBuf, path: PathBuf) -> io::Result<File> {
    blocking(move || {
        std::fs::create_dir_all(&tmp_dir)?;
        File::create(&path)
    })
    .await
}

/// Streams `body` into `file` through `digest` (which enforces the size limit); the file back,
/// all written. `io` turns a write failure into the store's error.
pub async fn stream_into(
    mut file: File,
    body: &mut BodyStream,
    digest: &mut DigestingWriter,
    io: impl Fn(io::Error) -> StoreError,
) -> Result<File, StoreError> {
    // A stream is not polled again once it has ended (some panic if it is).
    let mut ended = false;
    while !ended {
        let Some(first) = body.next().await else { break };
        let mut run = vec![first.map_err(StoreError::Body)?];
        let mut bytes = run[0].len();
        digest.update(&run[0])?;
        while bytes < WRITE_RUN {
            match body.next().now_or_never() {
                Some(Some(chunk)) => {
                    let chunk = chunk.map_err(StoreError::Body)?;
                    digest.update(&chunk)?;
                    bytes += chunk.len();
                    run.push(chunk);
                }
                Some(None) => {
                    ended = true;
                    break;
                }
                // The next chunk is not here yet: write what is.
                None => break,
            }
        }
        file = blocking(move || {
            for chunk in &run {
                file.write_all(chunk)?;
            }
            Ok(file)
        })
        .await
        .map_err(&io)?;
    }
    Ok(file)
}

/// Records the sidecar `json` on `file` ([`super::xattr`]) once the sidecar files `stale` are
/// removed, and if it was taken, renames `place`'s temporary file to its destination (no sync:
/// a cache put); the file back, and whether the attribute was taken.
pub async fn attribute(
    file: File,
    json: Vec<u8>,
    stale: [PathBuf; 2],
    place: Option<(PathBuf, PathBuf)>,
) -> io::Result<(File, bool)> {
    blocking(move || {
        for path in &stale {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let taken = super::xattr::set(&file, &json).is_ok();
        if let (true, Some((tmp, dest))) = (taken, place) {
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(tmp, dest)?;
        }
        Ok((file, taken))
    })
    .await
}

/// Writes the sidecar `json` to the temporary file `path`, and removes `other` (the sidecar of
/// the other kind of put, so a reader never checks the new body against it).
pub async fn sidecar(path: PathBuf, json: Vec<u8>, other: PathBuf) -> io::Result<File> {
    blocking(move || {
        let mut f = File::create(&path)?;
        f.write_all(&json)?;
        match std::fs::remove_file(&other) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(f),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks that arrive at once and chunks that arrive later are all written, in order, and the
    /// stream is never polled after its end (an `unfold` stream panics if it is).
    #[tokio::test]
    async fn every_chunk_is_written_and_an_ended_stream_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(8);
        let mut body: BodyStream = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|b| (Ok(b), rx))
        }));
        let feeder = tokio::spawn(async move {
            for (i, n) in [3usize, 70_000, 1, 5].into_iter().enumerate() {
                tx.send(bytes::Bytes::from(vec![i as u8; n])).await.unwrap();
                if i == 1 {
                    // The rest comes later: a run is written, then the stream waited on.
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        });
        let path = dir.path().join("f");
        let file = create(dir.path().join("tmp"), path.clone()).await.unwrap();
        let mut digest = DigestingWriter::new(None);
        let file = stream_into(file, &mut body, &mut digest, StoreError::Body)
            .await
            .unwrap();
        drop(file);
        feeder.await.unwrap();
        let want: Vec<u8> = [3usize, 70_000, 1, 5]
            .into_iter()
            .enumerate()
            .flat_map(|(i, n)| vec![i as u8; n])
            .collect();
        assert_eq!(std::fs::read(&path).unwrap(), want);
        assert_eq!(digest.finish(), crate::Digests::of(&want));
    }
}
