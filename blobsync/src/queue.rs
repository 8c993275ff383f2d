//! The persistent work queue, tombstones and checkpoints, in one sled database.
//!
//! Trees:
//! - `items`: `bucket \0 key` → [`Item`]. An item leaves only when its work is done; a failure
//!   reschedules it with backoff. Nothing is ever dropped: a growing backlog is reported instead.
//! - `due`: `lane ‖ due_ms ‖ bucket \0 key` → ``: the schedule, lanes first (takedowns, then
//!   uploads, then the proxy cache), then due time. An index: stale entries are skipped.
//! - `tombstones`: `bucket \0 key` → [`Tombstone`]: takedowns, which win over every copy.
//! - `meta`: anti-entropy and scrub checkpoints and pass times.
//! - `takedowns` (seq → entry) and `takedown_keys` (key → seq): the permanent takedown list
//!   ([`takedowns`]).
//!
//! Callers make an enqueue durable with [`Queue::flush`] before acknowledging it; change events,
//! which come a few at a time and often, use [`Queue::accept`] and [`Queue::make_durable`], made
//! durable by the intake [`journal`] instead. After a crash,
//! [`Queue::recover`] reschedules items that were in flight; nothing is lost and nothing rescanned.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub mod journal;
pub mod room;
mod takedowns;
mod tombstones;
pub use takedowns::{source_of, TakenDown};
pub use tombstones::Tombstone;

/// The queue's database failed (I/O, a full disk, corruption). Callers see only this type, so the
/// storage engine can change inside this module alone; every such failure is worth retrying
/// once the disk is fixed, and nothing queued before it is lost.
#[derive(Debug, thiserror::Error)]
#[error("queue database: {0}")]
pub struct QueueError(#[source] sled::Error);

impl From<sled::Error> for QueueError {
    fn from(e: sled::Error) -> Self {
        Self(e)
    }
}

/// What a config's queue is called in `/status`, so a one-shot command knows the daemon it
/// reached is the one holding its queue: the queue directory's absolute path.
pub fn identity(path: &std::path::Path) -> String {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Make every fileserver hold a verified copy.
    Copy,
    /// Remove from every fileserver (a takedown).
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub bucket: String,
    pub key: String,
    pub action: Action,
    pub lane: u8,
    pub attempts: u32,
    pub due_ms: u64,
    /// When the oldest still-pending request for this object arrived (for lag and age).
    pub enqueued_ms: u64,
    pub last_error: Option<String>,
    /// Fileservers whose copy is known bad (found by scrub): overwritten from a good replica.
    #[serde(default)]
    pub bad: Vec<String>,
    /// Bumped by every enqueue, so completing an older version never erases newer work.
    pub version: u64,
}

/// Counts of what the queue holds ([`Queue::summary`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub backlog: u64,
    pub copies: u64,
    /// Pending items never attempted.
    pub untried: u64,
    /// When the oldest pending request arrived (ms since the epoch).
    pub oldest_enqueued_ms: Option<u64>,
    pub tombstones: u64,
    pub takedowns: u64,
}

pub struct Queue {
    db: sled::Db,
    items: sled::Tree,
    due: sled::Tree,
    tombstones: sled::Tree,
    meta: sled::Tree,
    takedowns: sled::Tree,
    takedown_keys: sled::Tree,
    /// One takedown numbered and written at a time, so the list is written in number order and
    /// a puller that has seen number N has seen every number below it.
    adding_takedown: Mutex<()>,
    in_flight: Mutex<HashSet<Vec<u8>>>,
    /// Highest lane ever scheduled, so `take_due` visits only lanes that exist.
    max_lane: std::sync::atomic::AtomicU8,
    /// Items claimed by workers since opening ([`Queue::taken`]).
    taken: std::sync::atomic::AtomicU64,
    /// Group commit: a ticket per caller of [`Queue::flush`], and (under the lock) the highest
    /// ticket a finished flush covered.
    flush_tickets: std::sync::atomic::AtomicU64,
    flushed: tokio::sync::Mutex<u64>,
    /// sled's file (`None` for a temporary queue), for [`Queue::flush_to_device`].
    file: Option<std::path::PathBuf>,
    /// The intake journal of change events (`None` for a temporary queue).
    journal: Option<journal::Journal>,
}

fn id(bucket: &str, key: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(bucket.len() + key.len() + 1);
    v.extend_from_slice(bucket.as_bytes());
    v.push(0);
    v.extend_from_slice(key.as_bytes());
    v
}

fn due_key(lane: u8, due_ms: u64, id: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + id.len());
    v.push(lane);
    v.extend_from_slice(&due_ms.to_be_bytes());
    v.extend_from_slice(id);
    v
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn decode<T: for<'a> Deserialize<'a>>(b: &[u8]) -> Option<T> {
    serde_json::from_slice(b).ok()
}

/// sled's page cache. Its default (1 GiB) keeps every page a backfill ever wrote in memory; the
/// queue's working set is its head (the due schedule and the items being taken), so a small
/// cache costs reads only of what has waited a long time.
const CACHE_BYTES: u64 = 16 << 20;

/// Lanes in priority order: takedowns first.
pub const DELETE_LANE: u8 = 0;

impl Queue {
    pub fn open(path: &std::path::Path) -> Result<Self, QueueError> {
        let mut q = Self::from_db(
            sled::Config::new()
                .path(path)
                .cache_capacity(CACHE_BYTES)
                .open()?,
        )?;
        // sled 0.34 keeps its log in one file, `db`, in its directory.
        q.file = Some(path.join("db"));
        let next = journal::replay(&q, path)?;
        q.journal = Some(journal::Journal::start(path, q.db.clone(), next).map_err(sled::Error::Io)?);
        Ok(q)
    }

    pub fn temporary() -> Result<Self, QueueError> {
        Ok(Self::from_db(
            sled::Config::new()
                .temporary(true)
                .cache_capacity(CACHE_BYTES)
                .open()?,
        )?)
    }

    fn from_db(db: sled::Db) -> Result<Self, sled::Error> {
        Ok(Self {
            items: db.open_tree("items")?,
            due: db.open_tree("due")?,
            tombstones: db.open_tree("tombstones")?,
            meta: db.open_tree("meta")?,
            takedowns: db.open_tree("takedowns")?,
            takedown_keys: db.open_tree("takedown_keys")?,
            db,
            adding_takedown: Mutex::new(()),
            in_flight: Mutex::new(HashSet::new()),
            max_lane: std::sync::atomic::AtomicU8::new(u8::MAX),
            taken: std::sync::atomic::AtomicU64::new(0),
            flush_tickets: std::sync::atomic::AtomicU64::new(0),
            flushed: tokio::sync::Mutex::new(0),
            file: None,
            journal: None,
        })
    }

    /// Makes everything this caller wrote durable against a crash of the process: sled's flush.
    /// Call before acknowledging an enqueue. Against a power cut, sled's flush leaves the file's
    /// new size and the device's write cache to its background `fsync`, up to 500 ms later; what
    /// must not wait for that uses [`Queue::flush_to_device`].
    ///
    /// Group commit: callers that arrive while a flush runs wait for it to end, and one flush
    /// then covers all of them. A caller's ticket is taken after its writes; a flush covers
    /// every ticket taken before it started, since sled's flush makes durable all written
    /// before it.
    pub async fn flush(&self) -> Result<(), QueueError> {
        use std::sync::atomic::Ordering::SeqCst;
        let ticket = self.flush_tickets.fetch_add(1, SeqCst) + 1;
        let mut flushed = self.flushed.lock().await;
        if *flushed >= ticket {
            return Ok(());
        }
        let covers = self.flush_tickets.load(SeqCst);
        self.db.flush_async().await?;
        *flushed = covers;
        Ok(())
    }

    /// [`Queue::flush`], then an `fsync` of sled's file: durable against a power cut too. For a
    /// takedown, which once acknowledged must not come back. Change events do without: a sync
    /// per group of them was measured to slow their intake by three quarters (`docs/
    /// architecture.md`, the event flow), and one lost to a power cut only waits for anti-entropy.
    pub async fn flush_to_device(&self) -> Result<(), QueueError> {
        self.flush().await?;
        let Some(file) = self.file.clone() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || std::fs::File::open(file)?.sync_all())
            .await
            .map_err(std::io::Error::other)
            .and_then(|synced| synced)
            .map_err(|e| QueueError(sled::Error::Io(e)))
    }

    /// Adds work for one object, merging with work already pending: a delete wins over a copy,
    /// the earlier due time and enqueue time are kept, bad-copy lists are united. Returns true
    /// when the object had no work pending (a new item), false when merged into pending work.
    pub fn enqueue(
        &self,
        bucket: &str,
        key: &str,
        action: Action,
        lane: u8,
        bad: &[String],
    ) -> Result<bool, QueueError> {
        self.add(bucket, key, action, lane, bad).map(|(new, _)| new)
    }

    /// [`Self::enqueue`], answering also the item as this enqueue left it: which life in the
    /// queue it is (`enqueued_ms`) and which enqueue of that life (`version`).
    pub fn add(
        &self,
        bucket: &str,
        key: &str,
        action: Action,
        lane: u8,
        bad: &[String],
    ) -> Result<(bool, Option<Item>), QueueError> {
        let now = now_ms();
        let lane = if action == Action::Delete {
            DELETE_LANE
        } else {
            lane
        };
        let item_id = id(bucket, key);
        let mut new = false;
        let merged = self.items.update_and_fetch(&item_id, |old| {
            let old = old.and_then(decode::<Item>);
            new = old.is_none();
            let next = match old {
                Some(mut it) => {
                    if action == Action::Delete {
                        it.action = Action::Delete;
                        it.lane = DELETE_LANE;
                    }
                    it.due_ms = it.due_ms.min(now);
                    for b in bad {
                        if !it.bad.contains(b) {
                            it.bad.push(b.clone());
                        }
                    }
                    it.version += 1;
                    it
                }
                None => Item {
                    bucket: bucket.into(),
                    key: key.into(),
                    action,
                    lane,
                    attempts: 0,
                    due_ms: now,
                    enqueued_ms: now,
                    last_error: None,
                    bad: bad.to_vec(),
                    version: 1,
                },
            };
            Some(encode(&next))
        })?;
        let item = merged.as_deref().and_then(decode::<Item>);
        if let Some(it) = &item {
            self.due.insert(due_key(it.lane, it.due_ms, &item_id), &[])?;
        }
        Ok((new, item))
    }

    /// How many items workers have claimed since the queue was opened ([`Queue::take_due`] and
    /// [`Queue::claim`]): a producer compares it with what it added to know how far ahead of
    /// the workers it is.
    pub fn taken(&self) -> u64 {
        self.taken.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Tells the scheduler how many lanes exist (0 = takedowns, then one per bucket).
    pub fn set_lanes(&self, highest: u8) {
        self.max_lane.store(highest, std::sync::atomic::Ordering::Relaxed);
    }

    /// Claims the most urgent item due by `now` (lanes first), or `None`. Only entries due by
    /// `now` are visited, so a large backlog waiting on backoff costs nothing here.
    pub fn take_due(&self, now: u64) -> Result<Option<Item>, QueueError> {
        let lanes = self.max_lane.load(std::sync::atomic::Ordering::Relaxed);
        for lane in 0..=lanes {
            let start = due_key(lane, 0, &[]);
            let end = due_key(lane, now.saturating_add(1), &[]);
            for entry in self.due.range(start..end) {
                let (k, _) = entry?;
                let due = u64::from_be_bytes(k[1..9].try_into().unwrap_or_default());
                let item_id = k[9..].to_vec();
                let item = self.items.get(&item_id)?.as_deref().and_then(decode::<Item>);
                let Some(item) = item.filter(|it| it.due_ms == due && it.lane == lane) else {
                    self.due.remove(&k)?; // stale index entry
                    continue;
                };
                if !self.mark_in_flight(&item_id) {
                    continue; // a worker has it; its outcome reschedules it if needed
                }
                self.due.remove(&k)?;
                self.taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok(Some(item));
            }
        }
        Ok(None)
    }

    /// Claims one object's pending item for the caller, as `take_due` does for a worker, whatever
    /// its due time: `None` if nothing is pending or a worker has it already.
    pub fn claim(&self, bucket: &str, key: &str) -> Result<Option<Item>, QueueError> {
        let item_id = id(bucket, key);
        let Some(item) = self.items.get(&item_id)?.as_deref().and_then(decode::<Item>) else {
            return Ok(None);
        };
        if !self.mark_in_flight(&item_id) {
            return Ok(None);
        }
        self.due.remove(due_key(item.lane, item.due_ms, &item_id))?;
        self.taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Some(item))
    }

    /// The work pending for one object, if any (whether or not a worker has it in hand).
    pub fn item(&self, bucket: &str, key: &str) -> Result<Option<Item>, QueueError> {
        Ok(self
            .items
            .get(id(bucket, key))?
            .as_deref()
            .and_then(decode::<Item>))
    }

    /// Marks an item as being worked on; false if someone already is.
    fn mark_in_flight(&self, item_id: &[u8]) -> bool {
        self.in_flight
            .lock()
            .is_ok_and(|mut flight| flight.insert(item_id.to_vec()))
    }

    fn release(&self, item: &Item) {
        if let Ok(mut f) = self.in_flight.lock() {
            f.remove(&id(&item.bucket, &item.key));
        }
    }

    /// The work in `item` is done. Work enqueued meanwhile (a newer version) stays pending.
    pub fn complete(&self, item: &Item) -> Result<(), QueueError> {
        let item_id = id(&item.bucket, &item.key);
        let current = self.items.get(&item_id)?;
        let same = current
            .as_deref()
            .and_then(decode::<Item>)
            .is_some_and(|c| c.version == item.version);
        if same {
            // Compare-and-swap: an enqueue racing us wins.
            let _ = self.items.compare_and_swap(&item_id, current, None::<&[u8]>)?;
        }
        self.reschedule_if_pending(&item_id)?;
        self.release(item);
        Ok(())
    }

    /// The work failed: try again after `backoff`, never give up.
    pub fn retry(&self, item: &Item, error: &str, backoff: Duration) -> Result<(), QueueError> {
        let item_id = id(&item.bucket, &item.key);
        let due = now_ms() + backoff.as_millis() as u64;
        let updated = self.items.update_and_fetch(&item_id, |old| {
            old.and_then(decode::<Item>).map(|mut it| {
                it.attempts += 1;
                it.last_error = Some(error.chars().take(500).collect());
                if it.version == item.version {
                    it.due_ms = due;
                }
                encode(&it)
            })
        })?;
        if let Some(it) = updated.as_deref().and_then(decode::<Item>) {
            self.due.insert(due_key(it.lane, it.due_ms, &item_id), &[])?;
        }
        self.release(item);
        Ok(())
    }

    fn reschedule_if_pending(&self, item_id: &[u8]) -> Result<(), sled::Error> {
        if let Some(it) = self.items.get(item_id)?.as_deref().and_then(decode::<Item>) {
            self.due.insert(due_key(it.lane, it.due_ms, item_id), &[])?;
        }
        Ok(())
    }

    /// After a restart: every pending item gets a schedule entry again (those in flight at the
    /// crash had none). Returns how many items are pending.
    pub fn recover(&self) -> Result<usize, QueueError> {
        let mut n = 0;
        for entry in self.items.iter() {
            let (k, v) = entry?;
            if let Some(it) = decode::<Item>(&v) {
                self.due.insert(due_key(it.lane, it.due_ms, &k), &[])?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Objects waiting, exactly.
    pub fn backlog(&self) -> usize {
        self.items.len()
    }

    /// Every pending item (tests: it holds the whole backlog in memory; see [`Queue::summary`]).
    #[cfg(test)]
    pub fn pending(&self) -> Vec<Item> {
        self.items
            .iter()
            .filter_map(|e| e.ok())
            .filter_map(|(_, v)| decode::<Item>(&v))
            .collect()
    }

    /// Whether any pending item has not been attempted yet (stops at the first one found).
    pub fn has_untried(&self) -> bool {
        self.items
            .iter()
            .filter_map(|e| e.ok())
            .any(|(_, v)| decode::<Item>(&v).is_some_and(|i| i.attempts == 0))
    }

    /// What the queue holds, counted in one pass over it: memory O(1), time O(items). Callers
    /// that may be called often cache it ([`crate::engine::Engine::summary`]).
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for (_, v) in self.items.iter().filter_map(Result::ok) {
            let Some(i) = decode::<Item>(&v) else { continue };
            s.backlog += 1;
            s.copies += u64::from(i.action == Action::Copy);
            s.untried += u64::from(i.attempts == 0);
            s.oldest_enqueued_ms = Some(
                s.oldest_enqueued_ms
                    .map_or(i.enqueued_ms, |o| o.min(i.enqueued_ms)),
            );
        }
        s.tombstones = self.tombstone_count() as u64;
        s.takedowns = self.takedown_count() as u64;
        s
    }
}

#[cfg(test)]
mod tests;
