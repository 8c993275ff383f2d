//! Moving one object's bytes from a source to its targets. One of up to [`WHOLE_MAX`] bytes
//! (most images) is read whole and hashed first, then handed to every target at once as one
//! body, so a target writes it in one call and an upload key's bytes (`D…`, a hash of the
//! content) are checked before any target starts. A larger one is streamed to all targets at
//! the same time, hashed as it goes: the stream ends with an explicit end marker only if its
//! bytes hash to the key; a bad source, a read error or a cancelled task ends it with an error
//! instead, so a target never stores a partial or wrong object.

use std::io;

use blobstore::{BodyStream, Digests, GetObject, Key, PutOptions, PutResult, StoreError};
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{digest_prefix, expected_digest, Replicator, Server, SourceProblem, WHOLE_MAX};
use crate::error::SyncError;
use crate::metrics::{COPIES, COPY_BYTES, FAILURES};

enum Frame {
    Data(Bytes),
    End,
}

/// The receiving side of a fan-out: ends cleanly only after an explicit `End`. A sender dropped
/// without it (source error, corrupt source, cancelled copy) makes the stream end in an error.
fn frames_to_body(rx: mpsc::Receiver<Frame>) -> BodyStream {
    Box::pin(futures::stream::unfold(Some(rx), |state| async move {
        let mut rx = state?;
        match rx.recv().await {
            Some(Frame::Data(b)) => Some((Ok(b), Some(rx))),
            Some(Frame::End) => None,
            None => Some((
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "copy source ended early",
                )),
                None,
            )),
        }
    }))
}

impl Replicator {
    /// Copies from `source` to every target, read whole or streamed (see the module doc), from
    /// what was already `got` from it if anything; returns the targets that failed.
    pub(super) async fn stream_copy(
        &self,
        bucket: &str,
        key: &Key,
        source: &Server,
        targets: &[&Server],
        got: Option<GetObject>,
    ) -> Result<Vec<SyncError>, SourceProblem> {
        let got = match got {
            Some(got) => got,
            None => self
                .store(source, bucket)
                .map_err(SourceProblem::Read)?
                .get(key, None)
                .await
                .map_err(|e| SourceProblem::Read(SyncError::store(&source.name, e)))?,
        };
        let mut opts = PutOptions {
            max_size: Some(self.max_object_size),
            content_type: got.meta.content_type.clone(),
            metadata: got.meta.metadata.clone(),
            // Copies are as durable as the uploads they carry, whatever the bucket.
            cache: false,
            // Streamed: hashed by each fileserver as it writes, and what it holds checked
            // against what was sent. Read whole: the digests of the very bytes it is given.
            known: None,
            digest_prefix: digest_prefix(key.as_str()),
            // The plan copies to the fileservers that lack the object or hold it wrong.
            if_absent: false,
        };
        let stores = targets
            .iter()
            .map(|t| Ok((t.name.clone(), self.store(t, bucket)?)))
            .collect::<Result<Vec<_>, SyncError>>()
            .map_err(SourceProblem::Read)?;
        if got.meta.size <= WHOLE_MAX {
            let (chunks, digests) = self.read_whole(key, source, got.body).await?;
            // What each target writes is exactly what was hashed here.
            opts.known = Some(digests);
            let puts = stores.into_iter().map(|(name, store)| {
                let body: BodyStream = Box::pin(futures::stream::iter(chunks.clone().into_iter().map(Ok)));
                let opts = &opts;
                async move {
                    store
                        .put(key, body, opts)
                        .await
                        .map(|r| (name.clone(), r))
                        .map_err(|e| (name, e))
                }
            });
            let results = futures::future::join_all(puts).await;
            return Ok(landed(results, digests.sha256, digests.size));
        }
        let mut feeds = Vec::new();
        let mut puts = Vec::new();
        for (name, store) in stores {
            let (tx, rx) = mpsc::channel::<Frame>(4);
            feeds.push(tx);
            let (key, opts) = (key.clone(), opts.clone());
            puts.push(tokio::spawn(async move {
                store
                    .put(&key, frames_to_body(rx), &opts)
                    .await
                    .map(|r| (name.clone(), r))
                    .map_err(|e| (name, e))
            }));
        }
        let (sha, bytes) = self.pump(key, source, got.body, &feeds).await?;
        drop(feeds);
        let mut results = Vec::new();
        let mut lost = Vec::new();
        for p in puts {
            match p.await {
                Ok(r) => results.push(r),
                Err(e) => lost.push(SyncError::Task(e.to_string())),
            }
        }
        let mut failed = landed(results, sha, bytes);
        failed.extend(lost);
        Ok(failed)
    }

    /// The next chunk of a source's body, once the bandwidth limit lets it through.
    async fn pull(&self, source: &Server, body: &mut BodyStream) -> Result<Option<Bytes>, SourceProblem> {
        let Some(chunk) = body.next().await else {
            return Ok(None);
        };
        let chunk =
            chunk.map_err(|e| SourceProblem::Read(SyncError::store(&source.name, StoreError::Body(e))))?;
        if let Some(l) = &self.limiter {
            l.acquire(chunk.len() as u64).await;
        }
        Ok(Some(chunk))
    }

    /// Reads a body of at most [`WHOLE_MAX`] bytes whole, hashing it: its chunks and digests,
    /// unless an upload key's bytes do not hash to it.
    async fn read_whole(
        &self,
        key: &Key,
        source: &Server,
        mut body: BodyStream,
    ) -> Result<(Vec<Bytes>, Digests), SourceProblem> {
        let mut sha = Sha256::new();
        sha.update(digest_prefix(key.as_str()).as_bytes());
        let mut chunks = Vec::new();
        let mut size = 0u64;
        while let Some(chunk) = self.pull(source, &mut body).await? {
            size += chunk.len() as u64;
            if size > WHOLE_MAX {
                // Longer than the size it was listed at: read again later.
                let e = io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the body is longer than its stated size",
                );
                return Err(SourceProblem::Read(SyncError::store(
                    &source.name,
                    StoreError::Body(e),
                )));
            }
            sha.update(&chunk);
            chunks.push(chunk);
        }
        let sha: [u8; 32] = sha.finalize().into();
        if expected_digest(key.as_str()).is_some_and(|want| want != sha) {
            return Err(SourceProblem::Corrupt);
        }
        Ok((chunks, Digests { size, sha256: sha }))
    }

    /// Sends the source's body to every feed, hashing it; ends every feed with `End` only if the
    /// bytes hash to a content key's digest. The SHA-256 (after [`digest_prefix`]) and size of
    /// what was sent.
    async fn pump(
        &self,
        key: &Key,
        source: &Server,
        mut body: BodyStream,
        feeds: &[mpsc::Sender<Frame>],
    ) -> Result<([u8; 32], u64), SourceProblem> {
        let mut sha = Sha256::new();
        sha.update(digest_prefix(key.as_str()).as_bytes());
        let mut bytes = 0u64;
        // On error, the feeds are dropped without `End`: every target's put fails.
        while let Some(chunk) = self.pull(source, &mut body).await? {
            bytes += chunk.len() as u64;
            sha.update(&chunk);
            for tx in feeds {
                let _ = tx.send(Frame::Data(chunk.clone())).await;
            }
        }
        let sha: [u8; 32] = sha.finalize().into();
        if expected_digest(key.as_str()).is_some_and(|want| want != sha) {
            return Err(SourceProblem::Corrupt);
        }
        for tx in feeds {
            let _ = tx.send(Frame::End).await;
        }
        Ok((sha, bytes))
    }
}

/// The targets whose copy did not land whole, from each target's put (`sha` is what was sent).
fn landed(puts: Vec<PutDone>, sha: [u8; 32], bytes: u64) -> Vec<SyncError> {
    let mut failed = Vec::new();
    for p in puts {
        match p {
            Ok((name, r)) if r.digests.sha256 == sha => {
                COPIES.with_label_values(&[name.as_str()]).inc();
                COPY_BYTES.inc_by(bytes);
            }
            Ok((name, _)) => failed.push(SyncError::DigestDiffers { server: name }),
            Err((name, e)) => {
                let cause = if e.is_retriable() {
                    "target_unavailable"
                } else {
                    "target_refused"
                };
                FAILURES.with_label_values(&[cause]).inc();
                failed.push(SyncError::store(&name, e));
            }
        }
    }
    failed
}

/// One target's put: its server's name with what it stored or why not.
type PutDone = Result<(String, PutResult), (String, StoreError)>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_feed_without_end_is_an_error_not_eof() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Frame::Data(Bytes::from_static(b"partial")))
            .await
            .unwrap();
        drop(tx);
        let items: Vec<io::Result<Bytes>> = frames_to_body(rx).collect().await;
        assert!(
            items[0].is_ok() && items.last().unwrap().is_err(),
            "truncation must surface"
        );
        let (tx, rx) = mpsc::channel(4);
        tx.send(Frame::Data(Bytes::from_static(b"whole"))).await.unwrap();
        tx.send(Frame::End).await.unwrap();
        let items: Vec<io::Result<Bytes>> = frames_to_body(rx).collect().await;
        assert_eq!(items.len(), 1);
    }
}
