//! Scrub (fixity): every stored copy re-read and re-hashed, rate-limited. Upload keys must hash
//! to their key; other objects must match their ETag where it is a digest: the MD5 an S3 server
//! gives a single-part object, the SHA-256 a directory fileserver records. A copy that
//! fails, or that its server cannot read while it still answers for the object, is queued to be
//! replaced from a verified replica.
//!
//! A pass saves where it is (bucket, fileserver, last key) after every page and when it finished,
//! in the queue's metadata: a restart resumes the pass, and the next one is due `scrub.interval`
//! after the last finished, whenever the daemon was restarted in between. A fileserver that does
//! not answer is skipped, not waited for: the pass goes on with the others and reports the ones it
//! could not check (`/status`, `blobsync_scrub_unreachable_servers`, `scrub --once`'s exit code).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use md5::Md5;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use blobstore::{BlobStore, ListRequest, StoreError};
use futures::StreamExt;

use crate::copy::{expected_digest, KeyHasher, Server};
use crate::error::SyncError;
use crate::limit::RateLimiter;
use crate::metrics::{SCRUB_CHECKED, SCRUB_CORRUPT, SCRUB_LAST_COMPLETE, SCRUB_UNREACHABLE};
use crate::queue::{now_ms, Action, Queue};

/// Metadata names: where an unfinished pass is, and when the last one finished (ms).
pub const CURSOR: &str = "scrub:cursor";
pub const DONE: &str = "scrub:done_ms";
/// The fileservers the last finished pass could not read (comma-separated; absent: none).
pub const UNREACHABLE: &str = "scrub:unreachable";

/// Where a pass is: the next page to read is `buckets[bucket]` on `servers[server]`, after `after`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub bucket: usize,
    pub server: usize,
    pub after: Option<String>,
    pub started_ms: u64,
    /// Fileservers this pass skipped because they did not answer.
    #[serde(default)]
    pub unreachable: Vec<String>,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassOutcome {
    pub checked: u64,
    pub corrupt: u64,
    /// Fileservers not checked: they did not answer.
    pub unreachable: Vec<String>,
}

/// A pass in progress, readable while it runs (status, `scrub --once`).
#[derive(Debug, Default)]
pub struct Progress {
    pub running: AtomicBool,
    pub checked: AtomicU64,
    pub corrupt: AtomicU64,
    pub bytes: AtomicU64,
}

/// The fileservers the last finished pass could not check.
pub fn last_unreachable(queue: &Queue) -> Vec<String> {
    let list = queue.meta(UNREACHABLE).ok().flatten().unwrap_or_default();
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// When the last pass finished (ms since the epoch), if one ever did.
pub fn last_done(queue: &Queue) -> Option<u64> {
    queue.meta(DONE).ok().flatten().and_then(|v| v.parse().ok())
}

/// How long until the next pass is due: now if one was cut short or never ran, else `interval`
/// after the last one finished.
pub fn due_in(queue: &Queue, interval: std::time::Duration, now: u64) -> std::time::Duration {
    if queue.meta(CURSOR).ok().flatten().is_some() {
        return std::time::Duration::ZERO;
    }
    match last_done(queue) {
        None => std::time::Duration::ZERO,
        Some(done) => {
            let due = done.saturating_add(interval.as_millis() as u64);
            std::time::Duration::from_millis(due.saturating_sub(now))
        }
    }
}

/// Chunks at least this large are hashed on the blocking pool (the hop costs less than the hash).
const HASH_ELSEWHERE: usize = 16 << 10;

enum Verdict {
    Good,
    Corrupt(String),
    Gone,
}

async fn verify(
    store: &dyn BlobStore,
    key: &blobstore::Key,
    limiter: Option<&RateLimiter>,
    progress: &Progress,
) -> Result<Verdict, StoreError> {
    let got = match store.get(key, None).await {
        Ok(g) => g,
        Err(StoreError::NotFound { .. }) => return Ok(Verdict::Gone),
        Err(e) => return unreadable(store, key, e.to_string()).await,
    };
    let mut check = Fixity::of(key.as_str(), got.meta.etag.as_deref());
    let mut body = got.body;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => return unreadable(store, key, e.to_string()).await,
        };
        if let Some(l) = limiter {
            l.acquire(chunk.len() as u64).await;
        }
        progress.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        check = if chunk.len() >= HASH_ELSEWHERE {
            // Off the async workers: the copies a pass reads at once are hashed on as many
            // cores, not all on the one thread that polls the pass.
            tokio::task::spawn_blocking(move || {
                check.update(&chunk);
                check
            })
            .await
            .unwrap_or_else(|e| match e.try_into_panic() {
                // A bug, not a fileserver that is down: not taken for one.
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(_) => Fixity::Cancelled,
            })
        } else {
            check.update(&chunk);
            check
        };
    }
    Ok(check.verdict())
}

/// What a copy's bytes are checked against, chosen before they are read so each is hashed once.
enum Fixity {
    /// An upload key: the content must hash to it.
    Key(KeyHasher, [u8; 32]),
    /// A 64-hex-digit ETag: a directory fileserver's SHA-256.
    Sha256(sha2::Sha256, String),
    /// A 32-hex-digit ETag: an S3 server's MD5 of a single-part object.
    Md5(Md5, String),
    /// Nothing to check against (a multipart ETag, or none): readable is all that is known.
    Readable,
    /// Hashing was cancelled (the runtime is shutting down): nothing is concluded.
    Cancelled,
}

impl Fixity {
    fn of(key: &str, etag: Option<&str>) -> Self {
        if let Some(want) = expected_digest(key) {
            return Self::Key(KeyHasher::default(), want);
        }
        let etag = etag.map(|e| e.trim_matches('"').to_ascii_lowercase());
        match etag {
            Some(e) if e.len() == 64 && e.bytes().all(|c| c.is_ascii_hexdigit()) => {
                Self::Sha256(sha2::Sha256::new(), e)
            }
            Some(e) if e.len() == 32 && e.bytes().all(|c| c.is_ascii_hexdigit()) => Self::Md5(Md5::new(), e),
            _ => Self::Readable,
        }
    }

    fn update(&mut self, chunk: &[u8]) {
        match self {
            Self::Key(h, _) => h.update(chunk),
            Self::Sha256(h, _) => h.update(chunk),
            Self::Md5(h, _) => h.update(chunk),
            Self::Readable | Self::Cancelled => {}
        }
    }

    fn verdict(self) -> Verdict {
        let (kind, got, want) = match self {
            Self::Key(h, want) => {
                return if h.matches(&want) {
                    Verdict::Good
                } else {
                    Verdict::Corrupt("content does not hash to the key".into())
                };
            }
            Self::Sha256(h, want) => ("SHA-256", hex::encode(h.finalize()), want),
            Self::Md5(h, want) => ("MD5", hex::encode(h.finalize()), want),
            Self::Readable | Self::Cancelled => return Verdict::Good,
        };
        if got == want {
            Verdict::Good
        } else {
            Verdict::Corrupt(format!("{kind} {got} differs from the ETag {want}"))
        }
    }
}

/// A read failed: if the server still answers for the object, the copy is unreadable (corrupt);
/// if it does not answer at all, the server is down and this pass skips it.
async fn unreadable(store: &dyn BlobStore, key: &blobstore::Key, why: String) -> Result<Verdict, StoreError> {
    match store.head(key).await {
        Ok(_) => Ok(Verdict::Corrupt(format!("unreadable: {why}"))),
        Err(StoreError::NotFound { .. }) => Ok(Verdict::Gone),
        Err(e) => Err(e),
    }
}

/// One full pass over every bucket of every server, resumed from a saved cursor if a pass was cut
/// short; a fileserver that does not answer is skipped and named in the outcome. Errs only when
/// the queue cannot be written.
pub async fn pass(
    servers: &[Server],
    buckets: &[String],
    queue: &Queue,
    limiter: Option<&RateLimiter>,
    parallel: usize,
    progress: &Progress,
) -> Result<PassOutcome, SyncError> {
    let saved: Option<Cursor> = queue.meta(CURSOR)?.and_then(|v| serde_json::from_str(&v).ok());
    let mut cursor = match saved {
        Some(c) => {
            tracing::info!(?c, "scrub resuming where it stopped");
            c
        }
        None => Cursor {
            started_ms: now_ms(),
            ..Cursor::default()
        },
    };
    let save = |c: &Cursor| queue.set_meta(CURSOR, Some(&serde_json::to_string(c).unwrap_or_default()));
    save(&cursor)?;
    let (mut checked, mut corrupt) = (0, 0);
    while cursor.bucket < buckets.len() {
        let bucket = &buckets[cursor.bucket];
        let store = servers
            .get(cursor.server)
            .and_then(|s| s.buckets.get(bucket).map(|st| (s, st)));
        let Some((server, store)) = store else {
            // Past the last server of this bucket (or a bucket a server does not mirror).
            cursor = next_stop(cursor, servers.len());
            save(&cursor)?;
            continue;
        };
        let req = ListRequest {
            max_keys: 1000,
            start_after: cursor.after.clone(),
            ..ListRequest::default()
        };
        let page = match store.list(&req).await {
            Ok(p) => p,
            Err(e) => {
                cursor = skip(cursor, &server.name, &e.to_string(), servers.len());
                save(&cursor)?;
                continue;
            }
        };
        let mut down = None;
        // `parallel` copies read at once; their verdicts are taken in key order, so the cursor
        // saved after the page passes only what was checked.
        let keys: Vec<blobstore::Key> = page.entries.iter().map(|e| e.key.clone()).collect();
        let store = store.as_ref();
        let mut verdicts = futures::stream::iter(keys)
            .map(|key| async move {
                let verdict = verify(store, &key, limiter, progress).await;
                (key, verdict)
            })
            .buffered(parallel.max(1));
        while let Some((key, verdict)) = verdicts.next().await {
            match verdict {
                Ok(Verdict::Good | Verdict::Gone) => {}
                Ok(Verdict::Corrupt(why)) => {
                    corrupt += 1;
                    progress.corrupt.fetch_add(1, Ordering::Relaxed);
                    SCRUB_CORRUPT.inc();
                    tracing::warn!(server = %server.name, bucket, %key, why, "scrub: bad copy; queued for repair");
                    queue.enqueue(
                        bucket,
                        key.as_str(),
                        Action::Copy,
                        cursor.bucket as u8 + 1,
                        std::slice::from_ref(&server.name),
                    )?;
                }
                Err(why) => {
                    down = Some(why);
                    break;
                }
            }
            checked += 1;
            progress.checked.fetch_add(1, Ordering::Relaxed);
            SCRUB_CHECKED.inc();
        }
        if let Some(why) = down {
            cursor = skip(cursor, &server.name, &why.to_string(), servers.len());
            save(&cursor)?;
            continue;
        }
        cursor = match page.next {
            Some(n) => Cursor {
                after: Some(n),
                ..cursor
            },
            None => next_stop(cursor, servers.len()),
        };
        // Repairs queued on this page are written before the cursor that passes them.
        save(&cursor)?;
    }
    let done = now_ms();
    let unreachable = cursor.unreachable;
    queue.set_meta(DONE, Some(&done.to_string()))?;
    let listed = unreachable.join(",");
    queue.set_meta(UNREACHABLE, (!listed.is_empty()).then_some(listed.as_str()))?;
    queue.set_meta(CURSOR, None)?;
    queue.flush().await?;
    SCRUB_LAST_COMPLETE.set((done / 1000) as i64);
    SCRUB_UNREACHABLE.set(unreachable.len() as i64);
    Ok(PassOutcome {
        checked,
        corrupt,
        unreachable,
    })
}

/// Past a fileserver that did not answer: on to the next stop, the server noted.
fn skip(mut c: Cursor, server: &str, why: &str, servers: usize) -> Cursor {
    tracing::warn!(
        server,
        error = why,
        "scrub: fileserver unreachable; skipped this pass"
    );
    if !c.unreachable.iter().any(|s| s == server) {
        c.unreachable.push(server.to_string());
    }
    next_stop(c, servers)
}

/// The cursor at the start of the next (server, bucket) after `c`'s.
fn next_stop(c: Cursor, servers: usize) -> Cursor {
    let (bucket, server) = if c.server + 1 < servers {
        (c.bucket, c.server + 1)
    } else {
        (c.bucket + 1, 0)
    };
    Cursor {
        bucket,
        server,
        after: None,
        started_ms: c.started_ms,
        unreachable: c.unreachable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Each ETag form is checked by its own digest, once; anything else only has to be readable.
    #[test]
    fn a_copy_is_checked_against_the_digest_its_etag_is() {
        let body = b"a variant";
        let sha = hex::encode(sha2::Sha256::digest(body));
        let md5 = hex::encode(Md5::digest(body));
        let verdict = |key: &str, etag: Option<&str>, bytes: &[u8]| {
            let mut f = Fixity::of(key, etag);
            f.update(bytes);
            matches!(f.verdict(), Verdict::Good)
        };
        let upper = md5.to_ascii_uppercase();
        let quoted = format!("\"{md5}\"");
        for etag in [sha.as_str(), md5.as_str(), upper.as_str(), quoted.as_str()] {
            assert!(verdict("Uvariant", Some(etag), body), "{etag}");
            assert!(!verdict("Uvariant", Some(etag), b"a varianT"), "{etag}");
        }
        for etag in [Some("abc-2"), Some(&sha[..40]), None] {
            assert!(verdict("Uvariant", etag, b"anything"), "{etag:?}");
        }
        assert!(matches!(Fixity::of("Uvariant", Some(&sha)), Fixity::Sha256(..)));
        assert!(matches!(Fixity::of("Uvariant", Some(&md5)), Fixity::Md5(..)));
    }

    #[test]
    fn stops_in_order() {
        let c = |bucket, server| Cursor {
            bucket,
            server,
            after: Some("k".into()),
            started_ms: 7,
            unreachable: Vec::new(),
        };
        assert_eq!(
            next_stop(c(0, 0), 2),
            Cursor {
                after: None,
                ..c(0, 1)
            }
        );
        assert_eq!(
            next_stop(c(0, 1), 2),
            Cursor {
                after: None,
                ..c(1, 0)
            }
        );
        assert_eq!(
            next_stop(c(1, 0), 1),
            Cursor {
                after: None,
                ..c(2, 0)
            }
        );
    }

    #[test]
    fn the_next_pass_is_due_from_the_last_finished_one() {
        let q = Queue::temporary().unwrap();
        let week = Duration::from_secs(7 * 86400);
        assert_eq!(due_in(&q, week, 1_000), Duration::ZERO, "never scrubbed: due now");
        q.set_meta(DONE, Some("1000")).unwrap();
        assert_eq!(
            due_in(&q, week, 1_000 + 86_400_000),
            week - Duration::from_secs(86400)
        );
        assert_eq!(
            due_in(&q, week, 1_000 + 8 * 86_400_000),
            Duration::ZERO,
            "overdue"
        );
        q.set_meta(CURSOR, Some("{}")).unwrap();
        assert_eq!(
            due_in(&q, week, 2_000),
            Duration::ZERO,
            "a pass cut short resumes at once"
        );
    }
}
