//! A put's files: the body streamed into its temporary file, each run of chunks that are ready
//! at once written by one blocking call (no copy into a buffer of tokio's), and the sidecar
//! recorded on it or written beside it. A body held whole in memory (an upload's spool, a
//! rendered variant) is created, written and described by one blocking call ([`whole`]): each
//! trip to the blocking pool is a hand-off between threads, and a put made three.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
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

/// Creates the temporary file `path` in `tmp_dir`, and `tmp_dir` first if it was removed.
pub async fn create(tmp_dir: PathBuf, path: PathBuf) -> io::Result<File> {
    blocking(move || create_in(&tmp_dir, &path)).await
}

/// Creates the temporary file `path` in `tmp_dir` (the bucket's `.tmp`), and `tmp_dir` first if
/// it was removed; a bucket directory that is gone (an unmounted disk) is never made again, and
/// is the error. No other call is made when all is in place: a put checks its bucket this way
/// rather than with a call of its own.
fn create_in(tmp_dir: &Path, path: &Path) -> io::Result<File> {
    match File::create(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match std::fs::create_dir(tmp_dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(super::missing_bucket(tmp_dir.parent().unwrap_or(tmp_dir)));
                }
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
            File::create(path)
        }
        created => created,
    }
}

fn write_chunks(file: &mut File, chunks: &[Bytes]) -> io::Result<()> {
    chunks.iter().try_for_each(|chunk| file.write_all(chunk))
}

/// Most bytes taken from a body that are all ready at once ([`ready`]); the rest is streamed. A
/// body in memory is held already, but a stream that makes its chunks when polled (a generator, a
/// fast reader) would be buffered up to this much: above any image an upload or a render holds,
/// far below what a put of a large object would hold whole.
const READY_MAX: usize = 8 << 20;

/// The chunks of `body` that are ready now, passed through `digest`, and whether the body ended
/// with them: a body held in memory (an upload's spool, a rendered variant) is all ready, and
/// [`whole`] writes it with one blocking call.
pub fn ready(body: &mut BodyStream, digest: &mut DigestingWriter) -> Result<(Vec<Bytes>, bool), StoreError> {
    let mut run = Vec::new();
    let ended = gather(body, digest, &mut run, READY_MAX)?;
    Ok((run, ended))
}

/// Adds to `run` the chunks of `body` that are ready now, through `digest`, until `run` holds
/// `max` bytes; whether the body ended (it must not be polled again then).
fn gather(
    body: &mut BodyStream,
    digest: &mut DigestingWriter,
    run: &mut Vec<Bytes>,
    max: usize,
) -> Result<bool, StoreError> {
    let mut bytes: usize = run.iter().map(Bytes::len).sum();
    while bytes < max {
        match body.next().now_or_never() {
            Some(Some(chunk)) => {
                let chunk = chunk.map_err(StoreError::Body)?;
                digest.update(&chunk)?;
                bytes += chunk.len();
                run.push(chunk);
            }
            Some(None) => return Ok(true),
            // The next chunk is not here yet.
            None => break,
        }
    }
    Ok(false)
}

/// Streams `body` into `file` through `digest` (which enforces the size limit), after `first`
/// (chunks taken already, through `digest` too); the file back, all written. `io` turns a write
/// failure into the store's error. `body` has not ended yet.
pub async fn stream_into(
    mut file: File,
    first: Vec<Bytes>,
    body: &mut BodyStream,
    digest: &mut DigestingWriter,
    io: impl Fn(io::Error) -> StoreError,
) -> Result<File, StoreError> {
    let mut run = first;
    // A stream is not polled again once it has ended (some panic if it is).
    let mut ended = false;
    loop {
        if run.is_empty() {
            if ended {
                break;
            }
            let Some(chunk) = body.next().await else { break };
            let chunk = chunk.map_err(StoreError::Body)?;
            digest.update(&chunk)?;
            run.push(chunk);
        }
        if !ended {
            // Whatever else is here already goes in the same write.
            ended = gather(body, digest, &mut run, WRITE_RUN)?;
        }
        file = blocking(move || {
            write_chunks(&mut file, &run)?;
            Ok(file)
        })
        .await
        .map_err(&io)?;
        run = Vec::new();
    }
    Ok(file)
}

/// A sidecar to record on a body's file ([`super::xattr`]), the sidecar files of earlier puts of
/// its key to remove first, and for a cache put, the rename that places it (no sync).
pub struct Describe {
    pub json: Vec<u8>,
    pub stale: [PathBuf; 2],
    pub place: Option<(PathBuf, PathBuf)>,
}

impl Describe {
    /// Records the sidecar on `file` once the stale sidecar files are removed, and if the
    /// attribute was taken, makes the rename; whether it was taken.
    fn apply(self, file: &File) -> io::Result<bool> {
        for path in &self.stale {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let taken = super::xattr::set(file, &self.json).is_ok();
        if let (true, Some((tmp, dest))) = (taken, self.place) {
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(tmp, dest)?;
        }
        Ok(taken)
    }
}

/// Records a sidecar on `file` ([`Describe`]); the file back, and whether the attribute was
/// taken (if not, the caller writes a sidecar file).
pub async fn attribute(file: File, describe: Describe) -> io::Result<(File, bool)> {
    blocking(move || {
        let taken = describe.apply(&file)?;
        Ok((file, taken))
    })
    .await
}

/// Whether the key is held already, asked first in [`whole`]'s call (`PutOptions::if_absent`).
pub type Present = Box<dyn FnOnce() -> io::Result<bool> + Send>;

/// A body held whole in memory: unless `present` says the key is held already (then `None`),
/// creates the temporary file `path` ([`create_in`]), writes `chunks` to it (around the page
/// cache if `durable`: it is synced before the put returns anyway, [`super::direct`]) and
/// applies `describe` (if any), in one blocking call instead of the three the streaming path
/// makes. The file back, and whether the attribute was taken.
pub async fn whole(
    tmp_dir: PathBuf,
    path: PathBuf,
    chunks: Vec<Bytes>,
    durable: bool,
    describe: Option<Describe>,
    present: Option<Present>,
) -> io::Result<Option<(File, bool)>> {
    blocking(move || {
        if let Some(present) = present {
            if present()? {
                return Ok(None);
            }
        }
        let mut file = create_in(&tmp_dir, &path)?;
        if durable {
            super::direct::write(&file, &path, &chunks)?;
        } else {
            write_chunks(&mut file, &chunks)?;
        }
        let taken = match describe {
            Some(d) => d.apply(&file)?,
            None => false,
        };
        Ok(Some((file, taken)))
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
        let file = stream_into(file, Vec::new(), &mut body, &mut digest, StoreError::Body)
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

    /// What is ready is taken at once (all of a body in memory, with its end); the rest of a
    /// body still arriving is streamed after it, in order.
    #[tokio::test]
    async fn ready_chunks_are_taken_then_the_rest_is_streamed_after_them() {
        let whole = || -> BodyStream {
            Box::pin(futures::stream::iter(
                [&b"ab"[..], b"cd"].map(|c| Ok(Bytes::from_static(c))),
            ))
        };
        let mut digest = DigestingWriter::new(None);
        let (run, ended) = ready(&mut whole(), &mut digest).unwrap();
        assert_eq!((run.len(), ended), (2, true));
        assert_eq!(digest.finish(), crate::Digests::of(b"abcd"));

        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
        tx.send(Bytes::from_static(b"first ")).await.unwrap();
        let mut body: BodyStream = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|b| (Ok(b), rx))
        }));
        let mut digest = DigestingWriter::new(None);
        let (run, ended) = ready(&mut body, &mut digest).unwrap();
        assert_eq!((run.len(), ended), (1, false), "the rest has not come yet");
        let feeder = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            tx.send(Bytes::from_static(b"then the rest")).await.unwrap();
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = create(dir.path().join("tmp"), path.clone()).await.unwrap();
        let file = stream_into(file, run, &mut body, &mut digest, StoreError::Body)
            .await
            .unwrap();
        drop(file);
        feeder.await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first then the rest");
        assert_eq!(digest.finish(), crate::Digests::of(b"first then the rest"));
    }
}
