//! Carrying out one queue item: copy an object to every fileserver that lacks it (or holds a bad
//! copy), or delete it everywhere.
//!
//! Each fileserver is asked whether it holds the object; a local one (a directory) is asked by a
//! get, one blocking call as a head is (a small object is read whole by it), and the copy reads
//! from what the source's get opened. The bytes are moved by `transfer`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use blobstore::{BlobStore, GetObject, Key, StoreError};
use sha2::{Digest, Sha256};

use crate::error::SyncError;
use crate::limit::RateLimiter;
use crate::metrics::FAILURES;

mod transfer;

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
}

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
}
