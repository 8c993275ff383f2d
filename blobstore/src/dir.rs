//! The directory backend: a bucket is a directory, an object a file, written atomically.
//!
//! Layout of one bucket directory:
//! - `<stored name>`: the object's bytes, exactly as the imagehoster's fs store keeps them, so an
//!   existing store is served in place;
//! - its sidecar (content type, user metadata and digests; absent for old objects): in an
//!   extended attribute of the body file ([`xattr`]), or where the filesystem takes none, in
//!   `.meta/<stored name>.json`;
//! - `.tmp/`: bodies being written. A put streams into a temp file and records its sidecar on it
//!   (or writes the sidecar file beside it); all is synced, renamed into place (a sidecar file
//!   first) and the directories synced, in a group commit with the other puts waiting at the time
//!   ([`commit`]): readers see all or nothing, and a put is acknowledged only once all of it is
//!   on disk.
//! - cache puts (`PutOptions::cache`) skip the fsyncs and mark their sidecar as a cache one (in
//!   the attribute, or where there is none in `.meta/<stored name>.cache.json`): reads check
//!   the body against it ([`cache`]).
//!
//! A missing bucket directory (an unmounted disk) makes every call `Unavailable`, never `NotFound`.

use std::collections::BTreeMap;
use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use crate::store::page_size;
use crate::{
    BlobStore, BodyStream, ByteRange, DigestingWriter, GetObject, Key, Layout, ListPage, ListRequest,
    ObjectMeta, PutOptions, PutResult, StoreError,
};

mod cache;
mod commit;
mod direct;
mod listing;
mod read;
mod write;
mod xattr;

pub use commit::CommitStats;

const META_DIR: &str = ".meta";
const TMP_DIR: &str = ".tmp";
const READ_CHUNK: usize = 64 * 1024;
/// A temporary file untouched for this long belongs to no write in progress (every write streams
/// into its file as it goes): it is left by a crashed process, and removed when a store opens.
pub const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// What [`sidecar_of`] found, as an object's metadata (of a body of `size` bytes, modified at
/// `modified`); `None` for a torn cache object, which is no object.
fn resolve(found: Found, size: u64, modified: Option<SystemTime>) -> Option<ObjectMeta> {
    match found {
        Found::Durable(Some(s)) | Found::Cache(s) => Some(meta_of(s, modified)),
        // An object of an earlier store, without a sidecar: its size and date.
        Found::Durable(None) => Some(ObjectMeta {
            size,
            last_modified: modified,
            ..ObjectMeta::default()
        }),
        Found::Torn => None,
    }
}

/// The error of a bucket directory that is gone (an unmounted disk): `Unavailable` to callers,
/// never `NotFound`.
fn missing_bucket(bucket: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("bucket directory {} is missing", bucket.display()),
    )
}

/// What a head found, in one blocking call: the body's size and date and its sidecar, or why
/// there is none.
enum Looked {
    Found(u64, Option<SystemTime>, Found),
    Missing,
    /// The bucket directory itself is gone (an unmounted disk): not a missing object.
    NoBucket,
}

/// Looks `paths` ([`DirStore::object_paths`]) up in `bucket`.
fn look_up(paths: &[PathBuf; 3], bucket: &Path) -> io::Result<Looked> {
    match std::fs::metadata(&paths[0]) {
        Ok(m) if m.is_file() => Ok(Looked::Found(
            m.len(),
            m.modified().ok(),
            sidecar_of(paths, m.len())?,
        )),
        Ok(_) => Ok(Looked::Missing),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(if bucket.is_dir() {
            Looked::Missing
        } else {
            Looked::NoBucket
        }),
        Err(e) => Err(e),
    }
}

/// Whether `paths` ([`DirStore::object_paths`]) hold an object of `size` bytes whole, as a head
/// would find it: a missing bucket is an error, not absence.
fn held_at(paths: &[PathBuf; 3], bucket: &Path, size: u64) -> io::Result<bool> {
    match look_up(paths, bucket)? {
        Looked::Found(found_size, _, found) => {
            Ok(resolve(found, found_size, None).is_some_and(|meta| meta.size == size))
        }
        Looked::Missing => Ok(false),
        Looked::NoBucket => Err(missing_bucket(bucket)),
    }
}

/// One bucket in a directory.
#[derive(Debug)]
pub struct DirStore {
    name: String,
    bucket: PathBuf,
    layout: Layout,
    committer: commit::Committer,
    /// Sorted names of the last large directory listed, for the pages that follow.
    listings: std::sync::Arc<listing::Listings>,
    /// Whether durable puts record their sidecar in an attribute of the body file.
    xattrs: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Sidecar {
    size: u64,
    /// sha256(`sha256_prefix` ‖ body), hex; also the object's ETag.
    sha256: String,
    /// What the digest covers before the body (`PutOptions::digest_prefix`); usually empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    sha256_prefix: String,
    /// Written empty, read never: versions before the SHA-256 ETag require the field (they took
    /// it for the ETag), so a rollback still reads these sidecars. Theirs held an MD5.
    #[serde(default)]
    md5: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    metadata: BTreeMap<String, String>,
    /// Written by a cache put (no fsyncs): a read checks the body against it ([`cache`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    cache: bool,
}

/// The metadata a sidecar records.
fn meta_of(s: Sidecar, modified: Option<SystemTime>) -> ObjectMeta {
    ObjectMeta {
        size: s.size,
        etag: Some(s.sha256),
        content_type: s.content_type,
        last_modified: modified,
        metadata: s.metadata,
    }
}

/// What [`sidecar_of`] found.
enum Found {
    /// A durable object's sidecar, if it has one of this body's size.
    Durable(Option<Sidecar>),
    /// A cache object's sidecar, of this body's size (its hash is checked when read whole).
    Cache(Sidecar),
    /// A cache object whose sidecar does not fit its body.
    Torn,
}

/// An object's sidecar, for a body of `size` bytes, looked for in order: the attribute of its
/// body file (where attributes work), its cache sidecar file, its sidecar file. `paths`: the
/// body, the cache sidecar and the sidecar file. A durable sidecar of another size is from
/// another write (a lost race) and is not trusted; a cache one lives and dies with its body's
/// inode, so a body of another size is that write torn.
fn sidecar_of(paths: &[PathBuf; 3], size: u64) -> io::Result<Found> {
    let fits = |bytes: &[u8]| {
        serde_json::from_slice::<Sidecar>(bytes)
            .ok()
            .filter(|s| s.size == size)
    };
    let attribute = xattr::get(&paths[0])
        .ok()
        .flatten()
        .and_then(|v| serde_json::from_slice::<Sidecar>(&v).ok());
    match attribute {
        Some(s) if s.cache && s.size == size => return Ok(Found::Cache(s)),
        Some(s) if s.cache => return Ok(Found::Torn),
        Some(s) if s.size == size => return Ok(Found::Durable(Some(s))),
        _ => {}
    }
    match std::fs::read(&paths[1]) {
        Ok(bytes) => {
            return Ok(match cache::check(Some(&bytes), size) {
                cache::Check::Sized(s) => Found::Cache(s),
                cache::Check::NotCache | cache::Check::Torn => Found::Torn,
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(Found::Durable(
        std::fs::read(&paths[2]).ok().and_then(|b| fits(&b)),
    ))
}

impl DirStore {
    /// Opens `root/bucket`. With `create`, missing directories are made (local and test setups);
    /// without it, a missing directory is reported, so a typo or an unmounted disk is noticed.
    pub fn open(
        name: &str,
        root: &Path,
        bucket: &str,
        layout: Layout,
        create: bool,
    ) -> Result<Self, StoreError> {
        let bucket_key = Key::new(bucket)?;
        if bucket_key.as_str().contains('/') {
            return Err(StoreError::InvalidKey {
                key: bucket.into(),
                reason: "bucket name with `/`",
            });
        }
        let dir = root.join(bucket_key.as_str());
        let mut store = Self {
            name: format!("{name}/{bucket}"),
            bucket: dir.clone(),
            layout,
            committer: commit::Committer::new(dir.clone()),
            listings: std::sync::Arc::new(listing::Listings::new(dir.join(TMP_DIR))),
            xattrs: false,
        };
        if create {
            std::fs::create_dir_all(store.bucket.join(TMP_DIR)).map_err(|e| store.unavailable(e))?;
            std::fs::create_dir_all(store.bucket.join(META_DIR)).map_err(|e| store.unavailable(e))?;
        } else if !store.bucket.is_dir() {
            return Err(StoreError::Unavailable {
                store: store.name.clone(),
                reason: format!("bucket directory {} does not exist", store.bucket.display()),
            });
        }
        let tmp = store.bucket.join(TMP_DIR);
        let probed = std::fs::create_dir_all(&tmp)
            .ok()
            .and_then(|()| xattr::probe(&tmp));
        store.xattrs = probed.is_some();
        if !store.xattrs {
            tracing::info!(store = %store.name, "no user attributes here: sidecars are kept as files");
        } else if let Some(bytes) = probed.filter(|b| *b > 0) {
            // Measured: 8,210 against 4,112 bytes of disk per 1 KiB object (docs/runbook.md).
            tracing::warn!(
                store = %store.name,
                bytes_per_object = bytes,
                "each object's metadata attribute takes a block of its own here, beside its body: \
                 ext4 formatted with 512-byte inodes (mkfs.ext4 -I 512) keeps it in the inode"
            );
        }
        let removed = store.remove_stale_temps(STALE_TEMP);
        if removed > 0 {
            tracing::info!(store = %store.name, removed, "removed temporary files left by a crash");
        }
        Ok(store)
    }

    /// Removes temporary files not written to for `age` (another process sharing the directory
    /// may be writing the recent ones); how many.
    pub fn remove_stale_temps(&self, age: std::time::Duration) -> usize {
        let Ok(entries) = std::fs::read_dir(self.bucket.join(TMP_DIR)) else {
            return 0;
        };
        let stale = |e: &std::fs::DirEntry| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|a| a >= age))
        };
        entries
            .flatten()
            .filter(|e| stale(e) && std::fs::remove_file(e.path()).is_ok())
            .count()
    }

    /// What the group commits of this bucket's durable puts have done so far.
    pub fn commit_stats(&self) -> CommitStats {
        self.committer.stats()
    }

    /// Where `key`'s bytes live (for tests that tamper with a copy behind the store's back).
    pub fn path_of(&self, key: &Key) -> Result<PathBuf, StoreError> {
        Ok(self.bucket.join(self.layout.stored_name(key)?))
    }

    fn meta_path(&self, stored: &str) -> PathBuf {
        self.bucket.join(META_DIR).join(format!("{stored}.json"))
    }

    fn cache_meta_path(&self, stored: &str) -> PathBuf {
        self.bucket.join(META_DIR).join(format!("{stored}.cache.json"))
    }

    /// Removes a torn cache object (a crash cut its unsynced write short): the next miss
    /// rebuilds it, anti-entropy copies it back from a replica.
    async fn drop_torn(&self, stored: &str, key: &Key) -> StoreError {
        tracing::warn!(store = %self.name, %key, "torn cache object (a crash during its unsynced write) removed");
        for path in [self.bucket.join(stored), self.cache_meta_path(stored)] {
            let _ = tokio::fs::remove_file(path).await;
        }
        StoreError::NotFound { key: key.to_string() }
    }

    fn unavailable(&self, e: io::Error) -> StoreError {
        StoreError::Unavailable {
            store: self.name.clone(),
            reason: e.to_string(),
        }
    }

    async fn ensure_bucket(&self) -> Result<(), StoreError> {
        match tokio::fs::metadata(&self.bucket).await {
            Ok(m) if m.is_dir() => Ok(()),
            _ => Err(self.bucket_missing()),
        }
    }

    fn bucket_missing(&self) -> StoreError {
        self.unavailable(missing_bucket(&self.bucket))
    }

    /// The body, its cache sidecar file and its sidecar file ([`sidecar_of`]).
    fn object_paths(&self, stored: &str) -> [PathBuf; 3] {
        [
            self.bucket.join(stored),
            self.cache_meta_path(stored),
            self.meta_path(stored),
        ]
    }

    /// Renames `tmp` to `dest` with no sync (cache puts; durable ones go through the committer).
    async fn write_atomically(&self, tmp: &Path, dest: &Path) -> io::Result<()> {
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::rename(tmp, dest).await
    }

    /// Syncs `files` and makes `renames` in the bucket's group commit; the temporary files
    /// `temps` are the commit thread's from here on (it removes them if it fails).
    async fn commit<const N: usize>(
        &self,
        files: Vec<std::fs::File>,
        renames: Vec<(PathBuf, PathBuf)>,
        temps: [TempFile; N],
    ) -> Result<(), StoreError> {
        temps.into_iter().for_each(TempFile::keep);
        self.committer
            .commit(commit::Job { files, renames })
            .await
            .map_err(|e| self.unavailable(e))
    }

    /// The sidecar of a put of `digests`, as it is stored.
    fn sidecar(&self, digests: &crate::Digests, opts: &PutOptions) -> Result<Vec<u8>, StoreError> {
        let sidecar = Sidecar {
            size: digests.size,
            sha256: digests.sha256_hex(),
            sha256_prefix: opts.digest_prefix.to_string(),
            md5: String::new(),
            content_type: opts.content_type.clone(),
            metadata: opts.metadata.clone(),
            cache: opts.cache,
        };
        serde_json::to_vec(&sidecar).map_err(|e| self.unavailable(io::Error::other(e)))
    }

    fn temp_path(&self) -> PathBuf {
        self.bucket
            .join(TMP_DIR)
            .join(format!("{:032x}", rand::random::<u128>()))
    }
}

/// Removes a temp file unless the put completed.
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn new(path: PathBuf) -> Self {
        Self(Some(path))
    }

    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    /// The file was renamed into place: nothing to clean up.
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[async_trait]
impl BlobStore for DirStore {
    fn describe(&self) -> &str {
        &self.name
    }

    fn layout(&self) -> Layout {
        self.layout
    }

    fn local(&self) -> bool {
        true
    }

    async fn put(&self, key: &Key, mut body: BodyStream, opts: &PutOptions) -> Result<PutResult, StoreError> {
        let stored = self.layout.stored_name(key)?;
        // The bucket is checked by the temporary file's creation (a missing one is Unavailable).
        let tmp = TempFile::new(self.temp_path());
        let mut digest = DigestingWriter::trusting(opts.max_size, opts.known, opts.digest_prefix);
        let durable = !opts.cache;
        let body_path = self.bucket.join(&stored);
        // Where attributes work, the sidecar goes on the body file: one file to create and rename
        // (and for a durable put, to sync). Sidecar files of earlier puts of this key go first (the
        // attribute would win on read anyway). A cache put is renamed into place by the same call.
        let describe = |json: &[u8]| {
            self.xattrs.then(|| write::Describe {
                json: json.to_vec(),
                stale: [self.meta_path(&stored), self.cache_meta_path(&stored)],
                place: (!durable).then(|| (tmp.path().to_path_buf(), body_path.clone())),
            })
        };
        let (ready, ended) = write::ready(&mut body, &mut digest)?;
        let held = |digests: crate::Digests| PutResult {
            etag: Some(digests.sha256_hex()),
            digests,
            present: true,
        };
        let (file, digests, json, described) = if ended {
            // All of it in memory: its sidecar is known before its file is made.
            let digests = digest.finish_checked()?;
            let json = self.sidecar(&digests, opts)?;
            // Whether it is held already is asked in the same call (`if_absent`).
            let present = opts.if_absent.then(|| {
                let (paths, bucket, size) = (self.object_paths(&stored), self.bucket.clone(), digests.size);
                Box::new(move || held_at(&paths, &bucket, size)) as write::Present
            });
            let Some((file, taken)) = write::whole(
                self.bucket.join(TMP_DIR),
                tmp.path().to_path_buf(),
                ready,
                durable,
                describe(&json),
                present,
            )
            .await
            .map_err(|e| self.unavailable(e))?
            else {
                return Ok(held(digests));
            };
            (file, digests, json, taken)
        } else {
            if let (true, Some(known)) = (opts.if_absent, opts.known) {
                match self.head(key).await {
                    Ok(meta) if meta.size == known.size => return Ok(held(known)),
                    Ok(_) | Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            let file = write::create(self.bucket.join(TMP_DIR), tmp.path().to_path_buf())
                .await
                .map_err(|e| self.unavailable(e))?;
            let file =
                write::stream_into(file, ready, &mut body, &mut digest, |e| self.unavailable(e)).await?;
            let digests = digest.finish_checked()?;
            let json = self.sidecar(&digests, opts)?;
            let (file, taken) = match describe(&json) {
                Some(d) => write::attribute(file, d).await.map_err(|e| self.unavailable(e))?,
                None => (file, false),
            };
            (file, digests, json, taken)
        };
        if described {
            if durable {
                let renames = vec![(tmp.path().to_path_buf(), body_path)];
                self.commit(vec![file], renames, [tmp]).await?;
            } else {
                // Renamed into place already.
                tmp.keep();
            }
            return Ok(PutResult {
                etag: Some(digests.sha256_hex()),
                digests,
                present: false,
            });
        }
        // Not described: no user attributes here, or this one not taken (too large, or the
        // filesystem changed under us): a sidecar file. Each kind of put removes the other kind's
        // sidecar. The sidecar goes into place before the body.
        let (meta, other) = if durable {
            (self.meta_path(&stored), self.cache_meta_path(&stored))
        } else {
            (self.cache_meta_path(&stored), self.meta_path(&stored))
        };
        let meta_tmp = TempFile::new(self.temp_path());
        let mf = write::sidecar(meta_tmp.path().to_path_buf(), json, other)
            .await
            .map_err(|e| self.unavailable(e))?;
        if durable {
            let renames = vec![
                (meta_tmp.path().to_path_buf(), meta),
                (tmp.path().to_path_buf(), body_path),
            ];
            self.commit(vec![file, mf], renames, [meta_tmp, tmp]).await?;
        } else {
            drop((file, mf));
            self.write_atomically(meta_tmp.path(), &meta)
                .await
                .map_err(|e| self.unavailable(e))?;
            self.write_atomically(tmp.path(), &body_path)
                .await
                .map_err(|e| self.unavailable(e))?;
            meta_tmp.keep();
            tmp.keep();
        }
        Ok(PutResult {
            etag: Some(digests.sha256_hex()),
            digests,
            present: false,
        })
    }

    async fn get(&self, key: &Key, range: Option<ByteRange>) -> Result<GetObject, StoreError> {
        let stored = self.layout.stored_name(key)?;
        let paths = [
            self.bucket.join(&stored),
            self.cache_meta_path(&stored),
            self.meta_path(&stored),
        ];
        let bucket = self.bucket.clone();
        let opened = tokio::task::spawn_blocking(move || read::open(paths, &bucket, range.is_none()))
            .await
            .map_err(|e| self.unavailable(io::Error::other(e)))?;
        let (file, size, modified, found, whole) = match opened {
            Ok(read::Opened::File {
                file,
                size,
                modified,
                found,
                whole,
            }) => (file, size, modified, found, whole),
            Ok(read::Opened::NotFile) => return Err(StoreError::NotFound { key: key.to_string() }),
            Err(read::Failed::NoBucket) => return Err(self.bucket_missing()),
            Err(read::Failed::Open(e)) => return Err(self.unavailable(e)),
            Err(read::Failed::Later(e)) => return Err(self.unavailable(e)),
        };
        let meta = match &found {
            Found::Durable(Some(s)) => meta_of(s.clone(), modified),
            // An object of an earlier store, without a sidecar: its size and date.
            Found::Durable(None) => ObjectMeta {
                size,
                last_modified: modified,
                ..ObjectMeta::default()
            },
            Found::Cache(s) => meta_of(s.clone(), modified),
            Found::Torn => return Err(self.drop_torn(&stored, key).await),
        };
        if let Some(whole) = whole {
            // A cache object is hashed whole before any byte is served.
            if let Found::Cache(sidecar) = &found {
                if !cache::intact(sidecar, &whole) {
                    return Err(self.drop_torn(&stored, key).await);
                }
            }
            let whole = bytes::Bytes::from(whole);
            let (range, body) = match range {
                Some(r) => {
                    let (first, last) = r.resolve(size)?;
                    (Some((first, last)), whole.slice(first as usize..=last as usize))
                }
                None => (None, whole),
            };
            return Ok(GetObject {
                meta,
                range,
                body: crate::body_from_bytes(body),
            });
        }
        let mut file = tokio::fs::File::from_std(file);
        let (range, len) = match range {
            Some(r) => {
                let (first, last) = r.resolve(size)?;
                file.seek(SeekFrom::Start(first))
                    .await
                    .map_err(|e| self.unavailable(e))?;
                (Some((first, last)), last - first + 1)
            }
            None => (None, size),
        };
        let body = ReaderStream::with_capacity(file.take(len), READ_CHUNK);
        Ok(GetObject {
            meta,
            range,
            body: Box::pin(body),
        })
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta, StoreError> {
        let stored = self.layout.stored_name(key)?;
        let (paths, bucket) = (self.object_paths(&stored), self.bucket.clone());
        // One trip to the blocking pool: a head is asked before every upload's write.
        let looked = write::blocking(move || look_up(&paths, &bucket))
            .await
            .map_err(|e| self.unavailable(e))?;
        let missing = || StoreError::NotFound { key: key.to_string() };
        match looked {
            Looked::Found(size, modified, found) => resolve(found, size, modified).ok_or_else(missing),
            Looked::Missing => Err(missing()),
            Looked::NoBucket => Err(self.bucket_missing()),
        }
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        let stored = self.layout.stored_name(key)?;
        self.ensure_bucket().await?;
        for path in [self.bucket.join(&stored), self.meta_path(&stored)] {
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.unavailable(e)),
            }
        }
        Ok(())
    }

    /// The bucket directory is there and can be read: one entry read, not the whole directory
    /// (a one-key listing has to read and sort all of it to find the first name).
    async fn probe(&self) -> Result<(), StoreError> {
        self.ensure_bucket().await?;
        let bucket = self.bucket.clone();
        let read =
            tokio::task::spawn_blocking(move || std::fs::read_dir(&bucket)?.next().transpose().map(|_| ()))
                .await
                .map_err(|e| self.unavailable(io::Error::other(e)))?;
        read.map_err(|e| self.unavailable(e))
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage, StoreError> {
        self.ensure_bucket().await?;
        let bucket = self.bucket.clone();
        let layout = self.layout;
        let req = req.clone();
        let limit = page_size(&req);
        let listings = self.listings.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(limit + 1);
            listings
                .walk(&bucket, "", &req, layout, limit + 1, &mut out)
                .map(|_| out)
        })
        .await
        .map_err(|e| self.unavailable(io::Error::other(e)))?;
        let mut entries = result.map_err(|e| self.unavailable(e))?;
        let next = if entries.len() > limit {
            entries.truncate(limit);
            entries.last().map(|e| e.stored_name.clone())
        } else {
            None
        };
        Ok(ListPage { entries, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_left_by_a_crash_are_removed_at_open_and_fresh_ones_kept() {
        let root = tempfile::tempdir().unwrap();
        let store = DirStore::open("fs", root.path(), "uploads", Layout::Flat, true).unwrap();
        let tmp = root.path().join("uploads").join(TMP_DIR);
        let (old, fresh) = (tmp.join("0ld"), tmp.join("fresh"));
        std::fs::write(&old, b"").unwrap();
        std::fs::write(&fresh, b"partial").unwrap();
        let hour_ago = SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
        drop(store);
        DirStore::open("fs", root.path(), "uploads", Layout::Flat, false).unwrap();
        assert!(!old.exists(), "a crash's leftover is removed");
        assert!(fresh.exists(), "a write in progress elsewhere is kept");
    }

    /// Digests a caller already holds are recorded as they are; a body of another size than
    /// theirs is refused and nothing is stored.
    #[tokio::test]
    async fn known_digests_are_recorded_and_a_body_of_another_size_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let store = DirStore::open("fs", root.path(), "uploads", Layout::Flat, true).unwrap();
        let key = Key::new("DQmKnown").unwrap();
        let body = bytes::Bytes::from(vec![3u8; 4000]);
        let known = crate::Digests::of(&body);
        let opts = PutOptions {
            known: Some(known),
            ..PutOptions::default()
        };
        let short = body.slice(..3999);
        let refused = store.put(&key, crate::body_from_bytes(short), &opts).await;
        assert!(matches!(refused, Err(StoreError::Body(_))), "{refused:?}");
        assert!(matches!(store.head(&key).await, Err(StoreError::NotFound { .. })));
        let put = store
            .put(&key, crate::body_from_bytes(body), &opts)
            .await
            .unwrap();
        assert_eq!(put.digests, known);
        let head = store.head(&key).await.unwrap();
        assert_eq!((head.size, head.etag), (4000, Some(known.sha256_hex())));
    }

    /// With a digest prefix, what is hashed, recorded and returned is sha256(prefix ‖ body), and
    /// a cache object so recorded is still found whole (and torn when it is not).
    #[tokio::test]
    async fn a_digest_prefix_is_recorded_with_the_digest() {
        let root = tempfile::tempdir().unwrap();
        let body = bytes::Bytes::from(vec![5u8; 3000]);
        let mut salted = b"ImageSigningChallenge".to_vec();
        salted.extend_from_slice(&body);
        let want = crate::Digests::of(&salted).sha256;
        for cache in [false, true] {
            let store = DirStore::open("fs", root.path(), "b", Layout::Flat, true).unwrap();
            let key = Key::new("DQmSalted").unwrap();
            let opts = PutOptions {
                cache,
                digest_prefix: "ImageSigningChallenge",
                ..PutOptions::default()
            };
            let put = store
                .put(&key, crate::body_from_bytes(body.clone()), &opts)
                .await
                .unwrap();
            assert_eq!((put.digests.size, put.digests.sha256), (3000, want));
            assert_eq!(store.head(&key).await.unwrap().etag, Some(hex::encode(want)));
            let got = store.get(&key, None).await.unwrap();
            let read = crate::collect_body(got.body, u64::MAX).await.unwrap();
            assert_eq!(read, body, "cache: {cache}");
            if cache {
                std::fs::write(root.path().join("b").join(key.as_str()), vec![6u8; 3000]).unwrap();
                let torn = store.get(&key, None).await;
                assert!(matches!(torn, Err(StoreError::NotFound { .. })), "{torn:?}");
            }
        }
    }

    /// Where the filesystem takes user attributes, a durable put's sidecar is one, and no
    /// sidecar file is made; a put over an object whose sidecar is a file (a cache object, or
    /// one written without attributes) removes that file; either form is read.
    #[tokio::test]
    async fn durable_sidecars_are_attributes_where_the_filesystem_takes_them() {
        let root = tempfile::tempdir().unwrap();
        let mut store = DirStore::open("fs", root.path(), "uploads", Layout::Flat, true).unwrap();
        if !store.xattrs {
            eprintln!(
                "no user attributes under {}: nothing to test",
                root.path().display()
            );
            return;
        }
        let put = |content_type: &str, cache: bool| PutOptions {
            content_type: Some(content_type.into()),
            metadata: [("uploader".to_string(), "alice".to_string())].into(),
            cache,
            ..PutOptions::default()
        };
        let body = || crate::body_from_bytes(vec![4u8; 700]);
        let files =
            |store: &DirStore, k: &str| (store.meta_path(k).exists(), store.cache_meta_path(k).exists());
        let (a, b, c) = (
            Key::new("DQmA").unwrap(),
            Key::new("DQmB").unwrap(),
            Key::new("DQmC").unwrap(),
        );
        store.put(&a, body(), &put("image/png", false)).await.unwrap();
        assert_eq!(files(&store, "DQmA"), (false, false), "no sidecar file");
        let head = store.head(&a).await.unwrap();
        assert_eq!(head.content_type.as_deref(), Some("image/png"));
        assert_eq!(head.etag, Some(crate::Digests::of(&[4u8; 700]).sha256_hex()));
        assert_eq!(head.metadata.get("uploader").map(String::as_str), Some("alice"));

        store.xattrs = false;
        store.put(&b, body(), &put("image/gif", false)).await.unwrap();
        store.put(&c, body(), &put("image/webp", true)).await.unwrap();
        assert_eq!(files(&store, "DQmB"), (true, false));
        assert_eq!(files(&store, "DQmC"), (false, true));
        store.xattrs = true;
        for k in [&b, &c] {
            assert!(
                store.head(k).await.unwrap().content_type.is_some(),
                "{k}: a sidecar file is read"
            );
            store.put(k, body(), &put("image/jpeg", false)).await.unwrap();
            assert_eq!(
                files(&store, k.as_str()),
                (false, false),
                "{k}: its sidecar file removed"
            );
            let got = store.get(k, None).await.unwrap();
            assert_eq!(got.meta.content_type.as_deref(), Some("image/jpeg"));
            assert_eq!(crate::collect_body(got.body, u64::MAX).await.unwrap().len(), 700);
        }
        // A cache put over an object with the attribute replaces its file, attribute and all,
        // and its own sidecar is an attribute too, marked as a cache one.
        store.put(&a, body(), &put("image/avif", true)).await.unwrap();
        assert_eq!(files(&store, "DQmA"), (false, false), "no sidecar file");
        assert_eq!(
            store.head(&a).await.unwrap().content_type.as_deref(),
            Some("image/avif")
        );
        let attribute = xattr::get(&store.bucket.join("DQmA")).unwrap().unwrap();
        assert!(serde_json::from_slice::<Sidecar>(&attribute).unwrap().cache);
        store.delete(&b).await.unwrap();
        assert!(matches!(store.head(&b).await, Err(StoreError::NotFound { .. })));
    }

    /// A body that arrives over time (a copy streamed from another store) takes the streaming
    /// path, a body in memory the one-call path: both end the same, durable or cache, with their
    /// sidecar an attribute where the filesystem takes one and a file where it does not.
    #[tokio::test]
    async fn streamed_and_whole_bodies_are_stored_alike() {
        let root = tempfile::tempdir().unwrap();
        let mut store = DirStore::open("fs", root.path(), "b", Layout::Flat, true).unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let streamed = |data: Vec<u8>| -> BodyStream {
            let chunks: Vec<bytes::Bytes> = data.chunks(70_000).map(bytes::Bytes::copy_from_slice).collect();
            Box::pin(futures::stream::unfold(chunks.into_iter(), |mut it| async move {
                // Each chunk comes after a pause: never all ready at once.
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                it.next().map(|c| (Ok(c), it))
            }))
        };
        let modes = if store.xattrs {
            vec![true, false]
        } else {
            vec![false]
        };
        for xattrs in modes {
            store.xattrs = xattrs;
            for (i, cache) in [false, true].into_iter().enumerate() {
                let opts = PutOptions {
                    content_type: Some("image/png".into()),
                    cache,
                    ..PutOptions::default()
                };
                for (j, how) in ["streamed", "whole"].into_iter().enumerate() {
                    let key = Key::new(format!("DQm{xattrs}{i}{j}").as_str()).unwrap();
                    let body = match how {
                        "streamed" => streamed(data.clone()),
                        _ => crate::body_from_bytes(data.clone()),
                    };
                    let put = store.put(&key, body, &opts).await.unwrap();
                    assert_eq!(put.digests, crate::Digests::of(&data), "{how}");
                    let got = store.get(&key, None).await.unwrap();
                    assert_eq!(got.meta.content_type.as_deref(), Some("image/png"), "{how}");
                    assert_eq!(got.meta.etag, Some(put.digests.sha256_hex()), "{how}");
                    assert_eq!(
                        crate::collect_body(got.body, u64::MAX).await.unwrap(),
                        data,
                        "{how}"
                    );
                    let files = (
                        store.meta_path(key.as_str()).exists(),
                        store.cache_meta_path(key.as_str()).exists(),
                    );
                    let want = match (xattrs, cache) {
                        (true, _) => (false, false),
                        (false, false) => (true, false),
                        (false, true) => (false, true),
                    };
                    assert_eq!(files, want, "{how}, xattrs {xattrs}, cache {cache}");
                }
            }
        }
        let leftovers = std::fs::read_dir(root.path().join("b").join(TMP_DIR))
            .unwrap()
            .count();
        assert_eq!(leftovers, 0, "no temporary file left");
    }

    /// A store written by an earlier version (sidecars with an MD5 beside the SHA-256) is read
    /// as it is, its objects' ETag now their SHA-256.
    #[tokio::test]
    async fn sidecars_of_earlier_versions_are_read() {
        let root = tempfile::tempdir().unwrap();
        let store = DirStore::open("fs", root.path(), "uploads", Layout::Flat, true).unwrap();
        let body = b"an upload of an earlier version";
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body));
        std::fs::create_dir_all(root.path().join("uploads").join(META_DIR)).unwrap();
        std::fs::write(root.path().join("uploads").join("DQmOld"), body).unwrap();
        let old = format!(
            r#"{{"size":{},"md5":"0f6e2b4d3c1a5e7f9b8d6c4a2e0f1b3d","sha256":"{sha}","content_type":"image/png"}}"#,
            body.len()
        );
        std::fs::write(store.meta_path("DQmOld"), old).unwrap();
        let head = store.head(&Key::new("DQmOld").unwrap()).await.unwrap();
        assert_eq!(head.etag, Some(sha));
        assert_eq!(head.content_type.as_deref(), Some("image/png"));
        assert_eq!(head.size, body.len() as u64);
    }

    /// What a crash can leave of an unsynced cache put, each found torn and removed by a read,
    /// while a whole one is served and a durable put over it is trusted as before: with the
    /// sidecar in the body's attribute, and in a sidecar file.
    #[tokio::test]
    async fn a_torn_cache_object_is_never_served() {
        let root = tempfile::tempdir().unwrap();
        let mut store = DirStore::open("fs", root.path(), "proxy", Layout::Flat, true).unwrap();
        if store.xattrs {
            torn_cache_objects_are_never_served(&store, root.path(), true).await;
        } else {
            eprintln!("no user attributes under {}", root.path().display());
        }
        store.xattrs = false;
        torn_cache_objects_are_never_served(&store, root.path(), false).await;
    }

    async fn torn_cache_objects_are_never_served(store: &DirStore, root: &Path, attribute: bool) {
        let key = Key::new("U5dtZPvjpfzc3fgGtsoNQq7WLNv8sLT_Fit_WEBP_64").unwrap();
        let body = vec![7u8; 5000];
        let cache = PutOptions {
            content_type: Some("image/webp".into()),
            cache: true,
            ..PutOptions::default()
        };
        let bucket = root.join("proxy");
        let (file, sidecar) = (
            bucket.join(key.as_str()),
            bucket.join(META_DIR).join(format!("{key}.cache.json")),
        );
        let read = |range: Option<ByteRange>| {
            let key = key.clone();
            async move {
                let got = store.get(&key, range).await?;
                crate::collect_body(got.body, u64::MAX).await
            }
        };
        // Each tear rewrites the body's file in place, so an attribute stays with it.
        type Tear = fn(&Path, &Path);
        let tears: [(&str, Tear); 4] = [
            ("body cut short", |f, _| {
                std::fs::write(f, vec![7u8; 100]).unwrap()
            }),
            ("body never written", |f, _| std::fs::write(f, b"").unwrap()),
            ("zeroed blocks", |f, _| {
                std::fs::write(f, vec![0u8; 5000]).unwrap()
            }),
            ("sidecar never written", |_, m| std::fs::write(m, b"").unwrap()),
        ];
        // An attribute is set whole or not at all: no attribute-side tear.
        let tears = &tears[..if attribute { 3 } else { 4 }];
        for (what, tear) in tears {
            store
                .put(&key, crate::body_from_bytes(body.clone()), &cache)
                .await
                .unwrap();
            assert_eq!(sidecar.exists(), !attribute, "{what}: a cache sidecar file");
            assert!(!bucket.join(META_DIR).join(format!("{key}.json")).exists());
            assert_eq!(&read(None).await.unwrap()[..], &body[..], "{what}: whole before");
            assert_eq!(
                store.head(&key).await.unwrap().content_type.as_deref(),
                Some("image/webp")
            );
            tear(&file, &sidecar);
            let got = read(Some(ByteRange::From { start: 10, end: None })).await;
            assert!(matches!(got, Err(StoreError::NotFound { .. })), "{what}: {got:?}");
            assert!(!file.exists() && !sidecar.exists(), "{what}: removed");
        }
        // A durable put of the same key drops the cache sidecar: its body is trusted as before.
        store
            .put(&key, crate::body_from_bytes(body.clone()), &cache)
            .await
            .unwrap();
        store
            .put(
                &key,
                crate::body_from_bytes(vec![1u8; 10]),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        assert!(!sidecar.exists());
        assert_eq!(&read(None).await.unwrap()[..], &[1u8; 10][..]);
    }
}
