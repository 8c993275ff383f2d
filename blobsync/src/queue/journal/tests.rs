//! The intake journal: what an accepted event writes, what settling removes, what a crash leaves
//! and its replay, and the fallback to a flush of sled.

use super::*;

fn record(key: &str) -> Record {
    Record {
        bucket: "uploads".into(),
        key: key.into(),
        lane: 1,
    }
}

fn journal_files(dir: &Path) -> Vec<PathBuf> {
    files(dir).unwrap().into_iter().map(|(_, p)| p).collect()
}

fn lines(dir: &Path) -> Vec<Record> {
    leftover(dir).unwrap().records
}

/// An accepted event is in the queue at once, and in the journal once made durable; settling
/// empties the journal into sled and removes its file, the queue keeping the items.
#[tokio::test]
async fn accepted_events_are_journaled_then_settled_into_sled() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let mut pending = Durability::default();
    for key in ["D1", "D2"] {
        q.accept("uploads", key, 1, &mut pending).unwrap();
    }
    assert!(
        q.item("uploads", "D1").unwrap().is_some(),
        "queued before it is durable"
    );
    q.make_durable(pending).await.unwrap();
    assert_eq!(lines(dir.path()), [record("D1"), record("D2")]);
    let mut again = Durability::default();
    q.accept("uploads", "D3", 1, &mut again).unwrap();
    q.make_durable(again).await.unwrap();
    assert_eq!(lines(dir.path()).len(), 3, "appended to the same file");

    let first = journal_files(dir.path());
    q.journal.as_ref().unwrap().shared.settle(false);
    let after = journal_files(dir.path());
    assert_eq!(after.len(), 1, "a new file: {after:?}");
    assert_ne!(after, first, "the old file is removed once sled is flushed");
    assert!(lines(dir.path()).is_empty());
    assert_eq!(q.backlog(), 3, "the queue keeps every item");

    q.journal.as_ref().unwrap().shared.settle(false);
    assert_eq!(
        journal_files(dir.path()),
        after,
        "nothing appended: nothing to do"
    );
    drop(q);
    assert!(
        journal_files(dir.path()).is_empty(),
        "a closed queue leaves no journal"
    );
}

/// What a crash left in the journal is queued again at the opening, a torn line skipped, and the
/// files removed; files that are not the journal's are left alone.
#[test]
fn a_crash_leaves_events_that_are_queued_again() {
    let dir = tempfile::tempdir().unwrap();
    // A queue made and closed, so the directory holds a database without these items.
    drop(Queue::open(dir.path()).unwrap());
    let text = |r: &Record| format!("{}\n", serde_json::to_string(r).unwrap());
    std::fs::write(
        path_of(dir.path(), 7),
        text(&record("D1")) + &text(&record("D2")) + "{\"bucket\":\"uplo",
    )
    .unwrap();
    std::fs::write(path_of(dir.path(), 9), text(&record("D3"))).unwrap();
    std::fs::write(dir.path().join("intake-notes.log"), "not the journal's").unwrap();
    assert_eq!(leftover(dir.path()).unwrap().torn, 1, "one torn line");

    let q = crate::queue::tests::reopen(dir.path());
    for key in ["D1", "D2", "D3"] {
        let item = q.item("uploads", key).unwrap().expect("queued again");
        assert_eq!((item.action, item.lane), (Action::Copy, 1));
    }
    assert_eq!(q.backlog(), 3);
    let left = files(dir.path()).unwrap();
    assert_eq!(
        left.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [10],
        "the replayed files are gone; the next is numbered after them"
    );
    assert!(dir.path().join("intake-notes.log").is_file());
}

/// A file the journal could not write to is not written to again: its groups, and the next, are
/// made durable by a flush of sled until a new file is started.
#[tokio::test]
async fn a_failed_write_falls_back_to_flushing_sled() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path()).unwrap();
    let shared = &q.journal.as_ref().unwrap().shared;
    shared.lock().broken = true;
    let before = JOURNAL_FALLBACKS.get();
    let mut pending = Durability::default();
    q.accept("uploads", "D1", 1, &mut pending).unwrap();
    q.make_durable(pending).await.unwrap();
    assert_eq!(JOURNAL_FALLBACKS.get() - before, 1);
    assert!(lines(dir.path()).is_empty(), "nothing written to the broken file");

    shared.settle(false);
    assert!(!shared.lock().broken, "a new file is written to again");
    let mut pending = Durability::default();
    q.accept("uploads", "D2", 1, &mut pending).unwrap();
    q.make_durable(pending).await.unwrap();
    assert_eq!(lines(dir.path()), [record("D2")]);
}

/// A temporary queue has no journal: an accepted event is made durable by a flush, and one that
/// enqueued nothing waits for nothing.
#[tokio::test]
async fn a_queue_without_a_journal_flushes() {
    let q = Queue::temporary().unwrap();
    let mut pending = Durability::default();
    q.accept("uploads", "D1", 1, &mut pending).unwrap();
    assert!(pending.flush);
    q.make_durable(pending).await.unwrap();
    q.make_durable(Durability::default()).await.unwrap();
    assert_eq!(q.backlog(), 1);
}
