//! The queue's order, merging, back-off, recovery and durability, on temporary and reopened
//! databases.

use super::*;

#[test]
fn lanes_then_due_time_and_nothing_dropped() {
    let q = Queue::temporary().unwrap();
    q.enqueue("proxy", "U1", Action::Copy, 2, &[]).unwrap();
    q.enqueue("uploads", "D1", Action::Copy, 1, &[]).unwrap();
    q.enqueue("uploads", "D2", Action::Delete, 1, &[]).unwrap();
    let order: Vec<String> = (0..3)
        .map(|_| q.take_due(now_ms() + 1).unwrap().unwrap().key)
        .collect();
    assert_eq!(
        order,
        ["D2", "D1", "U1"],
        "takedowns, then uploads, then the proxy cache"
    );
    assert!(
        q.take_due(now_ms() + 1).unwrap().is_none(),
        "claimed items are not handed out twice"
    );
    assert_eq!(q.backlog(), 3, "claimed is not done");
}

/// Opens the queue at `path` once sled has let go of it: sled lets go of its file's lock when its
/// flusher thread ends, a moment after the last handle is dropped, so reopening at once may find
/// it still held.
pub(super) fn reopen(path: &std::path::Path) -> Queue {
    (0..500)
        .find_map(|_| {
            Queue::open(path).ok().or_else(|| {
                std::thread::sleep(std::time::Duration::from_millis(10));
                None
            })
        })
        .expect("the queue reopens once sled has let go of it")
}

/// A takedown's flush reaches the device: sled's file is where the queue expects it (an
/// `fsync` of a file that is not there would fail every takedown), and a temporary queue,
/// which has none, flushes as before.
#[tokio::test]
async fn a_flush_to_the_device_syncs_sleds_file() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    q.enqueue("uploads", "D1", Action::Delete, 1, &[]).unwrap();
    q.flush_to_device().await.unwrap();
    assert!(dir.path().join("db").is_file(), "sled's file");
    drop(q);
    let q = reopen(dir.path());
    assert_eq!(q.backlog(), 1, "kept");
    Queue::temporary().unwrap().flush_to_device().await.unwrap();
}

#[test]
fn failures_back_off_and_recover_after_a_crash() {
    let q = Queue::temporary().unwrap();
    q.enqueue("uploads", "D1", Action::Copy, 1, &[]).unwrap();
    let it = q.take_due(now_ms()).unwrap().unwrap();
    q.retry(&it, "fs1 unavailable", Duration::from_secs(60)).unwrap();
    assert!(
        q.take_due(now_ms()).unwrap().is_none(),
        "not due before its backoff"
    );
    let later = q.take_due(now_ms() + 61_000).unwrap().unwrap();
    assert_eq!(
        (later.attempts, later.last_error.as_deref()),
        (1, Some("fs1 unavailable"))
    );
    // A crash while `later` was in flight: a new process recovers it.
    let q2 = Queue {
        in_flight: Mutex::new(HashSet::new()),
        max_lane: std::sync::atomic::AtomicU8::new(u8::MAX),
        ..q
    };
    q2.due.clear().unwrap();
    assert_eq!(q2.recover().unwrap(), 1);
    assert!(q2.take_due(now_ms() + 61_000).unwrap().is_some());
}

#[test]
fn the_summary_counts_what_is_pending_and_how_old() {
    let q = Queue::temporary().unwrap();
    assert_eq!(q.summary(), Summary::default());
    assert!(q.enqueue("uploads", "D1", Action::Copy, 1, &[]).unwrap(), "new");
    assert!(
        !q.enqueue("uploads", "D1", Action::Copy, 1, &[]).unwrap(),
        "merged"
    );
    q.enqueue("uploads", "D2", Action::Copy, 1, &[]).unwrap();
    q.enqueue("uploads", "D3", Action::Delete, 1, &[]).unwrap();
    q.add_tombstone("uploads", "D3", Duration::from_secs(86400))
        .unwrap();
    let first = q.take_due(now_ms()).unwrap().unwrap();
    q.retry(&first, "down", Duration::from_secs(60)).unwrap();
    let s = q.summary();
    assert_eq!((s.backlog, s.copies, s.untried), (3, 2, 2));
    assert_eq!((s.tombstones, s.takedowns), (1, 0));
    let oldest = s.oldest_enqueued_ms.unwrap();
    assert!(oldest <= now_ms() && oldest + 60_000 > now_ms());
    assert_eq!(q.taken(), 1);
}

#[test]
fn completing_an_old_version_keeps_newer_work() {
    let q = Queue::temporary().unwrap();
    q.enqueue("uploads", "D1", Action::Copy, 1, &[]).unwrap();
    let copy = q.take_due(now_ms()).unwrap().unwrap();
    // A takedown arrives while the copy runs.
    q.enqueue("uploads", "D1", Action::Delete, 1, &[]).unwrap();
    q.complete(&copy).unwrap();
    assert_eq!(q.backlog(), 1);
    let next = q.take_due(now_ms() + 1).unwrap().unwrap();
    assert_eq!(
        next.action,
        Action::Delete,
        "the takedown survives the copy finishing"
    );
    q.complete(&next).unwrap();
    assert_eq!(q.backlog(), 0);
}

#[test]
fn merging_keeps_delete_and_unites_bad_copies() {
    let q = Queue::temporary().unwrap();
    q.enqueue("uploads", "D1", Action::Delete, 1, &[]).unwrap();
    q.enqueue("uploads", "D1", Action::Copy, 1, &["fs1".into()])
        .unwrap();
    q.enqueue("uploads", "D1", Action::Copy, 1, &["fs2".into(), "fs1".into()])
        .unwrap();
    let it = q.take_due(now_ms() + 1).unwrap().unwrap();
    assert_eq!(
        (it.action, it.bad.clone(), it.version),
        (Action::Delete, vec!["fs1".into(), "fs2".into()], 3)
    );
}
