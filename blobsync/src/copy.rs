//! Carrying out one queue item: copy an object to every fileserver that lacks it (or holds a bad
//! copy), or delete it everywhere.
//!
//! Each fileserver is asked whether it holds the object; a local one (a directory) is asked by a
//! get, one blocking call as a head is (a small object is read whole by it), and the copy reads
//! from what the source's get opened. A copy
//! reads the object once from a replica. One of up to [`WHOLE_MAX`] bytes (most images) is
//! read whole and hashed first, then handed to every target at once as one body, so a target
//! writes it in one call and an upload key's bytes (`D…`, a hash of the content) are checked
//! before any target starts. A larger one is streamed to all targets at the same time, hashed as
//! it goes: the stream ends with an explicit end marker only if its bytes hash to the key; a bad
//! source, a read error or a cancelled task ends it with an error instead, so a target never
//! stores a partial or wrong object.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use blobstore::{BlobStore, BodyStream, Digests, GetObject, Key, PutOptions, PutResult, StoreError};
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::error::SyncError;
use crate::limit::RateLimiter;
use crate::metrics::{COPIES, COPY_BYTES, FAILURES};

const PREFIX_TEXT: &str = "ImageSigningChallenge";
/// Objects up to this size are read whole before they are written (at most one per copy worker
/// in memory at a time, besides what the source's own get read whole, up to 256 KiB from a
/// directory); larger ones are streamed.
pub const WHOLE_MAX: u64 = 1 << 20;
const PREFIX: &[u8] = PREFIX_TEXT.as_bytes();

/// What a copy's digest covers before the body (`PutOptions::digest_prefix`): an upload's is
/// its key's own digest, so its bytes are hashed once, both to check them against the key and
/// to check each target's copy against them.
fn digest_prefix(key: &str) -> &'static str {
    if expected_digest(key).is_some() {
        PREFIX_TEXT
    } else {
        ""
    }
}

/// One fileserver, opened for each mirrored bucket.
#[derive(Debug, Clone)]
pub struct Server {
    pub name: String,
    pub buckets: HashMap<String, Arc<dyn BlobStore>>,
}

/// What a copy found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyOutcome {
    /// Every server already holds a good copy.
    Converged,
    /// Copied to these servers.
    Copied(Vec<String>),
    /// No reachable server holds the object (nothing to copy from).
    NowhereToCopyFrom,
}

/// What [`Replicator::import`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    /// Every server already holds it.
    Present,
    /// Copied to this many servers.
    Copied(usize),
    /// An upload whose bytes do not hash to its key: written nowhere.
    Corrupt,
    /// Listed by the source, gone when read.
    Gone,
}

/// For an upload key, the digest its content must have: `D` + base58(0x12 0x20 ‖ sha256(prefix ‖ data)).
pub fn expected_digest(key: &str) -> Option<[u8; 32]> {
    if key.len() != 47 || !key.starts_with("DQm") {
        return None;
    }
    let raw = bs58::decode(&key[1..]).into_vec().ok()?;
    (raw.len() == 34 && raw[..2] == [0x12, 0x20])
        .then(|| raw[2..].try_into().ok())
        .flatten()
}

/// Hashes content the way upload keys are derived.
#[derive(Clone)]
pub struct KeyHasher(Sha256);

impl Default for KeyHasher {
    fn default() -> Self {
        let mut h = Sha256::new();
        h.update(PREFIX);
        Self(h)
    }
}

impl KeyHasher {
    pub fn update(&mut self, chunk: &[u8]) {
        self.0.update(chunk);
    }

    pub fn matches(self, want: &[u8; 32]) -> bool {
        let got: [u8; 32] = self.0.finalize().into();
        &got == want
    }
}

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

pub struct Replicator {
    pub servers: Vec<Server>,
    pub limiter: Option<Arc<RateLimiter>>,
    pub max_object_size: u64,
}

enum State {
    /// Its size, and the object itself when it was read rather than headed.
    Present(u64, Option<GetObject>),
    Missing,
    Unavailable(SyncError),
}

impl Replicator {
    fn store(&self, server: &Server, bucket: &str) -> Result<Arc<dyn BlobStore>, SyncError> {
        server
            .buckets
            .get(bucket)
            .cloned()
            .ok_or_else(|| SyncError::NotMirrored {
                server: server.name.clone(),
                bucket: bucket.to_string(),
            })
    }

    /// Makes every server hold a verified copy. `bad` names servers whose copy must be replaced.
    /// `Err` means "try again later" (a server is unreachable, or no good source yet).
    ///
    /// Sources are tried good copies first. A content key's copy is verified on the way, so a
    /// copy marked bad (by size, or by a scrub) is still tried last: if it hashes to its key it
    /// was the good one, and one that does not hash is replaced like any bad copy.
    pub async fn copy(&self, bucket: &str, key: &Key, bad: &[String]) -> Result<CopyOutcome, SyncError> {
        let heads = futures::future::join_all(self.servers.iter().map(|s| async move {
            let store = match self.store(s, bucket) {
                Ok(st) => st,
                Err(e) => return (s, State::Unavailable(e)),
            };
            // Where a get costs what a head does, the copy reads from what it got. A get that
            // fails otherwise than by finding nothing (an unreadable file) asks again by a head:
            // a copy that cannot be read is then passed over as a source, as it always was,
            // rather than its server counted out.
            let looked = match store.local() {
                true => match store.get(key, None).await {
                    Ok(got) => Ok(State::Present(got.meta.size, Some(got))),
                    Err(e) if e.is_not_found() => Err(e),
                    Err(_) => store.head(key).await.map(|meta| State::Present(meta.size, None)),
                },
                false => store.head(key).await.map(|meta| State::Present(meta.size, None)),
            };
            let state = match looked {
                Ok(present) => present,
                Err(StoreError::NotFound { .. }) => State::Missing,
                Err(e) => State::Unavailable(SyncError::store(&s.name, e)),
            };
            (s, state)
        }))
        .await;
        let verified = expected_digest(key.as_str()).is_some();
        let mut sources = Vec::new();
        let mut last_resort = Vec::new();
        let mut targets = Vec::new();
        let mut waiting = Vec::new();
        for (s, state) in heads {
            match state {
                State::Present(size, got) if bad.contains(&s.name) => {
                    targets.push(s);
                    if verified {
                        last_resort.push((s, size, got));
                    }
                }
                State::Present(size, got) => sources.push((s, size, got)),
                State::Missing => targets.push(s),
                State::Unavailable(e) => waiting.push(e),
            }
        }
        if targets.is_empty() {
            return SyncError::all(waiting).map(|()| CopyOutcome::Converged);
        }
        if sources.is_empty() && last_resort.is_empty() {
            return SyncError::all(waiting)
                .map(|()| CopyOutcome::NowhereToCopyFrom)
                .map_err(|e| SyncError::NoReachableReplica(Box::new(e)));
        }
        // Unreachable servers still need the copy; failed sources do not, once one succeeded.
        let unreachable = waiting.len();
        let mut errors = waiting;
        sources.extend(last_resort);
        // Only the first source's read is kept; the others are read again if they are needed.
        for (_, _, got) in sources.iter_mut().skip(1) {
            *got = None;
        }
        for (source, size, got) in sources {
            if size > self.max_object_size {
                return Err(SyncError::TooLarge {
                    key: key.to_string(),
                    size,
                });
            }
            let to: Vec<&Server> = targets
                .iter()
                .copied()
                .filter(|t| t.name != source.name)
                .collect();
            match self.stream_copy(bucket, key, source, &to, got).await {
                Ok(failed) if failed.is_empty() && unreachable == 0 => {
                    return Ok(CopyOutcome::Copied(to.iter().map(|t| t.name.clone()).collect()))
                }
                Ok(failed) => {
                    errors.extend(failed);
                    return SyncError::all(errors).map(|()| CopyOutcome::Converged);
                }
                Err(SourceProblem::Corrupt) => {
                    FAILURES.with_label_values(&["corrupt_source"]).inc();
                    tracing::warn!(server = %source.name, %key, "replica does not match its key; trying another");
                    errors.push(SyncError::CorruptSource {
                        server: source.name.clone(),
                    });
                    // Whichever copy turns out good replaces this one too.
                    if !targets.iter().any(|t| t.name == source.name) {
                        targets.push(source);
                    }
                }
                Err(SourceProblem::Read(e)) => {
                    FAILURES.with_label_values(&["source_read"]).inc();
                    errors.push(e);
                }
            }
        }
        SyncError::all(errors).map(|()| CopyOutcome::Converged)
    }

    /// Copies `key` from `source`, a store outside the cluster (a migration), to every server
    /// that lacks it. An upload key's bytes must hash to it before any target commits them.
    pub async fn import(&self, source: &Server, bucket: &str, key: &Key) -> Result<Imported, SyncError> {
        let heads = futures::future::join_all(self.servers.iter().map(|s| async move {
            let head = match self.store(s, bucket) {
                Ok(store) => store.head(key).await.map_err(|e| SyncError::store(&s.name, e)),
                Err(e) => Err(e),
            };
            (s, head)
        }))
        .await;
        let mut targets = Vec::new();
        let mut errors = Vec::new();
        for (s, head) in heads {
            match head {
                Ok(_) => {}
                Err(SyncError::Store { source, .. }) if source.is_not_found() => targets.push(s),
                Err(e) => errors.push(e),
            }
        }
        SyncError::all(errors)?;
        if targets.is_empty() {
            return Ok(Imported::Present);
        }
        let meta = self.store(source, bucket)?.head(key).await;
        match meta {
            Ok(m) if m.size > self.max_object_size => {
                return Err(SyncError::TooLarge {
                    key: key.to_string(),
                    size: m.size,
                })
            }
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Ok(Imported::Gone),
            Err(e) => return Err(SyncError::store(&source.name, e)),
        }
        match self.stream_copy(bucket, key, source, &targets, None).await {
            Ok(failed) => SyncError::all(failed).map(|()| Imported::Copied(targets.len())),
            Err(SourceProblem::Corrupt) => Ok(Imported::Corrupt),
            Err(SourceProblem::Read(e)) => Err(e),
        }
    }

    /// Copies from `source` to every target, read whole or streamed (see the module doc), from
    /// what was already `got` from it if anything; returns the targets that failed.
    async fn stream_copy(
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

impl Replicator {
    /// Deletes the object on every server; `Err` while any server is unreachable.
    pub async fn delete(&self, bucket: &str, key: &Key) -> Result<(), SyncError> {
        let results = futures::future::join_all(self.servers.iter().map(|s| async move {
            match self.store(s, bucket) {
                Ok(st) => st.delete(key).await.map_err(|e| SyncError::store(&s.name, e)),
                Err(e) => Err(e),
            }
        }))
        .await;
        let errors: Vec<SyncError> = results.into_iter().filter_map(Result::err).collect();
        if !errors.is_empty() {
            FAILURES.with_label_values(&["delete_unavailable"]).inc();
        }
        SyncError::all(errors)
    }
}

enum SourceProblem {
    Corrupt,
    Read(SyncError),
}

/// Exponential backoff: `initial · 2^(attempts)`, capped.
pub fn backoff(initial: Duration, max: Duration, attempts: u32) -> Duration {
    initial.saturating_mul(1u32 << attempts.min(20)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_keys_name_their_content() {
        let gif = hex::decode(
            "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b",
        )
        .unwrap();
        let want = expected_digest("DQmbvHsfahN2rUoqV5TnXKdT7EPU2SD1ZiKJE6oWpnE8wgX").expect("an upload key");
        let mut h = KeyHasher::default();
        h.update(&gif);
        assert!(h.matches(&want));
        let mut h = KeyHasher::default();
        h.update(b"other");
        assert!(!h.matches(&want));
        for not_upload in [
            "U5dtZPvjpfzc3fgGtsoNQq7WLNv8sLT",
            "DQmShort",
            "DQmbvHsfahN2rUoqV5TnXKdT7EPU2SD1ZiKJE6oWpnE8wg0",
        ] {
            assert_eq!(expected_digest(not_upload), None, "{not_upload}");
        }
    }

    #[test]
    fn backoff_table() {
        let (i, m) = (Duration::from_secs(1), Duration::from_secs(300));
        let cases = [(0, 1), (1, 2), (2, 4), (8, 256), (9, 300), (40, 300)];
        for (attempts, secs) in cases {
            assert_eq!(backoff(i, m, attempts), Duration::from_secs(secs), "{attempts}");
        }
    }

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
