//! The intake journal: change events made durable against a crash of the process by one append
//! to a file per group of events, rather than by a flush of sled per group.
//!
//! Why: sled's flush hands its work to sled's I/O pool twice, and each hand-off wakes every
//! thread of the pool (seven) to run one job, on the cores the copies need. Measured with
//! `blobsync_scale` (400 events, 8 runs a build, alternating): the journal accepts them in 41 ms
//! rather than 70, the daemon's CPU for the burst falls from 112 to 98 ms, and the burst from
//! 145 to 136 ms beside a floor of 121 ms (`docs/architecture.md`, the event flow).
//!
//! The journal only holds what sled may not have written yet. An event is put in sled first, then
//! appended here, then acknowledged once its line is written ([`Queue::make_durable`]: callers
//! that arrive during a write are covered by the next one, which takes every line appended
//! meanwhile). Every [`SETTLE_EVERY`] a thread starts a new file, flushes sled (which covers
//! every event appended to the old file, since each was in sled before it was appended), then
//! removes the old file. At the queue's opening, files a crash left are read back into the queue
//! ([`replay`]: a line that does not parse is skipped, and counted), sled is flushed, and they
//! are removed. An event replayed whose copy was already made costs one look at each fileserver.
//!
//! Like sled's flush, a write here is durable against a crash of the process, not a power cut:
//! change events never were (a lost one waits for anti-entropy, `docs/architecture.md`).
//!
//! A write that fails (a full disk) falls back to sled's flush, for that group and every group
//! after it until the next file is started: a line torn by the failure must not swallow the next.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Action, Queue, QueueError};
use crate::metrics::JOURNAL_FALLBACKS;

/// How often the journal is emptied into sled (one flush of sled each time events came).
pub const SETTLE_EVERY: Duration = Duration::from_millis(500);
const PREFIX: &str = "intake-";
const SUFFIX: &str = ".log";

/// One accepted change event: a copy to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub bucket: String,
    pub key: String,
    pub lane: u8,
}

/// What [`Queue::make_durable`] waits for after one or more [`Queue::accept`]s.
#[derive(Debug, Default)]
pub struct Durability {
    /// The last line this caller appended (0: none).
    ticket: u64,
    /// Something was enqueued without a journal: a flush of sled makes it durable.
    flush: bool,
}

/// The journal of one queue, and the thread that empties it.
pub struct Journal {
    shared: Arc<Shared>,
    /// Dropped with the journal: the thread then settles a last time and ends.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    dir: PathBuf,
    db: sled::Db,
    pending: Mutex<Pending>,
    /// The last ticket written (or covered by a flush of sled): one writer at a time.
    written: tokio::sync::Mutex<u64>,
}

struct Pending {
    /// Lines appended and not yet written.
    lines: Vec<u8>,
    /// The last ticket handed out.
    last: u64,
    file: Arc<File>,
    seq: u64,
    /// Lines were appended since the file was started.
    dirty: bool,
    /// A write to this file failed: sled is flushed instead until the next file.
    broken: bool,
}

fn path_of(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{seq:020}{SUFFIX}"))
}

fn open_file(dir: &Path, seq: u64) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path_of(dir, seq))
}

/// The journal files in `dir`, by number, oldest first.
fn files(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let seq = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|n| n.parse().ok());
        if let Some(seq) = seq {
            found.push((seq, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// What the journal files of a queue hold.
struct Leftover {
    records: Vec<Record>,
    /// Lines that did not parse.
    torn: usize,
    /// The files, by number (removed once the records are safe elsewhere).
    found: Vec<(u64, PathBuf)>,
}

/// Reads back what the journal files in `dir` hold.
fn leftover(dir: &Path) -> io::Result<Leftover> {
    let found = files(dir)?;
    let (mut records, mut torn) = (Vec::new(), 0);
    for (_, path) in &found {
        for line in io::BufReader::new(File::open(path)?).split(b'\n') {
            match serde_json::from_slice::<Record>(&line?) {
                Ok(r) => records.push(r),
                Err(_) => torn += 1,
            }
        }
    }
    Ok(Leftover { records, torn, found })
}

/// Puts the events a crash left in the journal of `dir` back in `queue`, makes them durable in
/// sled, and removes the files; the next file's number.
pub fn replay(queue: &Queue, dir: &Path) -> Result<u64, QueueError> {
    let Leftover { records, torn, found } = leftover(dir).map_err(sled::Error::Io)?;
    for r in &records {
        queue.enqueue(&r.bucket, &r.key, Action::Copy, r.lane, &[])?;
    }
    if found.is_empty() {
        return Ok(0);
    }
    queue.db.flush()?;
    if !records.is_empty() {
        tracing::info!(
            events = records.len(),
            files = found.len(),
            "change events a crash left in the intake journal are queued again"
        );
    }
    if torn > 0 {
        tracing::warn!(
            torn,
            "lines of the intake journal did not parse (torn by a power cut?); their events \
             wait for anti-entropy"
        );
    }
    for (_, path) in &found {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a replayed journal file");
        }
    }
    Ok(found.last().map_or(0, |(seq, _)| seq + 1))
}

impl Journal {
    /// Starts the journal of the queue in `dir` (after [`replay`]), its files numbered from `seq`.
    pub fn start(dir: &Path, db: sled::Db, seq: u64) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            db,
            pending: Mutex::new(Pending {
                lines: Vec::new(),
                last: 0,
                file: Arc::new(open_file(dir, seq)?),
                seq,
                dirty: false,
                broken: false,
            }),
            written: tokio::sync::Mutex::new(0),
        });
        let (stop, stopped) = mpsc::channel::<()>();
        let settler = shared.clone();
        let thread = std::thread::Builder::new()
            .name("blobsync-journal".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(SETTLE_EVERY) {
                    settler.settle(false);
                }
                settler.settle(true);
            })?;
        Ok(Self {
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Appends `record`; its ticket, for [`Journal::written`].
    fn append(&self, record: &Record) -> u64 {
        let mut p = self.shared.lock();
        // A record of strings and a number always serialises.
        let _ = serde_json::to_writer(&mut p.lines, record);
        p.lines.push(b'\n');
        p.last += 1;
        p.dirty = true;
        p.last
    }

    /// Returns once the line of `ticket` is written, or covered by a flush of sled.
    async fn written(&self, ticket: u64) -> Result<(), QueueError> {
        let shared = &self.shared;
        let mut written = shared.written.lock().await;
        if *written >= ticket {
            return Ok(());
        }
        let (lines, last, file, broken) = {
            let mut p = shared.lock();
            (std::mem::take(&mut p.lines), p.last, p.file.clone(), p.broken)
        };
        let wrote = match broken {
            true => Err(io::Error::other("an earlier write to this file failed")),
            false => tokio::task::spawn_blocking(move || (&*file).write_all(&lines))
                .await
                .unwrap_or_else(|e| Err(io::Error::other(e))),
        };
        if let Err(e) = wrote {
            if !broken {
                tracing::warn!(error = %e, "cannot write the intake journal; flushing the queue instead");
                shared.lock().broken = true;
            }
            JOURNAL_FALLBACKS.inc();
            shared.db.flush_async().await?;
        }
        *written = last;
        Ok(())
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Empties the journal into sled: a new file is started, sled flushed, and every older file
    /// removed. `last`: at the journal's end, when nothing more comes, the current file goes too.
    fn settle(&self, last: bool) {
        let seq = {
            let p = self.lock();
            if !p.dirty && !last {
                return;
            }
            p.seq
        };
        // The next file is made outside the lock, which appenders take on async threads. Only
        // this thread changes files.
        let seq = match last {
            true => seq,
            false => match open_file(&self.dir, seq + 1) {
                Ok(f) => {
                    let mut p = self.lock();
                    p.file = Arc::new(f);
                    p.seq = seq + 1;
                    (p.dirty, p.broken) = (false, false);
                    p.seq
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start a new intake journal file");
                    return;
                }
            },
        };
        if let Err(e) = self.db.flush() {
            tracing::warn!(error = %e, "cannot flush the queue; the intake journal is kept");
            return;
        }
        let Ok(found) = files(&self.dir) else { return };
        for (_, path) in found.iter().filter(|(s, _)| *s < seq || last) {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove an intake journal file");
            }
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Queue {
    /// Enqueues the copy an accepted change event asks for, and appends it to the journal;
    /// `pending` then says what [`Queue::make_durable`] waits for before the event is
    /// acknowledged.
    pub fn accept(
        &self,
        bucket: &str,
        key: &str,
        lane: u8,
        pending: &mut Durability,
    ) -> Result<(), QueueError> {
        self.enqueue(bucket, key, Action::Copy, lane, &[])?;
        match &self.journal {
            Some(j) => {
                let record = Record {
                    bucket: bucket.into(),
                    key: key.into(),
                    lane,
                };
                pending.ticket = j.append(&record);
            }
            None => pending.flush = true,
        }
        Ok(())
    }

    /// Makes what [`Queue::accept`] enqueued durable against a crash of the process: by the
    /// journal, or by a flush of sled for a queue without one (a temporary queue).
    pub async fn make_durable(&self, pending: Durability) -> Result<(), QueueError> {
        match &self.journal {
            _ if pending.flush => self.flush().await,
            Some(j) if pending.ticket > 0 => j.written(pending.ticket).await,
            // Nothing was enqueued.
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
