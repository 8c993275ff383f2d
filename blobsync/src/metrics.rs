//! Every blobsync metric, declared once, prefixed `blobsync_`.

use std::sync::LazyLock;

use prometheus::{
    register_histogram, register_int_counter, register_int_counter_vec, register_int_gauge,
    register_int_gauge_vec, Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
};

pub static BACKLOG: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "blobsync_backlog_objects",
        "Objects waiting in the replication queue (exact)"
    )
    .expect("register blobsync_backlog_objects")
});

pub static OLDEST_PENDING: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "blobsync_oldest_pending_seconds",
        "Age of the oldest pending queue item"
    )
    .expect("register blobsync_oldest_pending_seconds")
});

pub static TOMBSTONES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("blobsync_tombstones", "Takedowns remembered").expect("register blobsync_tombstones")
});

pub static LAG: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "blobsync_replication_lag_seconds",
        "From the request to copy until every fileserver holds the object",
        vec![0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 15.0, 60.0, 300.0, 3600.0]
    )
    .expect("register blobsync_replication_lag_seconds")
});

pub static COPIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "blobsync_copies_total",
        "Verified copies written, by target fileserver",
        &["server"]
    )
    .expect("register blobsync_copies_total")
});

pub static COPY_BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "blobsync_copy_bytes_total",
        "Bytes read from source replicas for copies"
    )
    .expect("register blobsync_copy_bytes_total")
});

pub static DELETES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "blobsync_takedowns_applied_total",
        "Takedowns applied on every fileserver"
    )
    .expect("register blobsync_takedowns_applied_total")
});

pub static FILESERVER_UP: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "blobsync_fileserver_up",
        "Whether a fileserver's bucket store answered a listing within 2 s (probed every 10 s)",
        &["store"]
    )
    .expect("register blobsync_fileserver_up")
});

pub static FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "blobsync_failures_total",
        "Failed attempts by cause (all are retried)",
        &["cause"]
    )
    .expect("register blobsync_failures_total")
});

pub static EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "blobsync_events_total",
        "Change events received, by outcome",
        &["outcome"]
    )
    .expect("register blobsync_events_total")
});

pub static AE_FINDINGS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "blobsync_antientropy_findings_total",
        "Objects anti-entropy queued",
        &["bucket", "kind"]
    )
    .expect("register blobsync_antientropy_findings_total")
});

pub static AE_PASSES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "blobsync_antientropy_passes_total",
        "Anti-entropy passes by outcome",
        &["outcome"]
    )
    .expect("register blobsync_antientropy_passes_total")
});

pub static SCRUB_CHECKED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "blobsync_scrub_checked_total",
        "Stored copies re-read and re-hashed"
    )
    .expect("register blobsync_scrub_checked_total")
});

pub static SCRUB_CORRUPT: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "blobsync_scrub_corrupt_total",
        "Copies found corrupt or unreadable"
    )
    .expect("register blobsync_scrub_corrupt_total")
});

pub static SCRUB_REPAIRED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "blobsync_scrub_repaired_total",
        "Corrupt copies replaced from a verified one"
    )
    .expect("register blobsync_scrub_repaired_total")
});

pub static EDGE_PURGES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "blobsync_edge_purges_total",
        "Edge bans sent for takedowns, by outcome (ok, failed)",
        &["outcome"]
    )
    .expect("register blobsync_edge_purges_total")
});

pub static IMAGEHOST_NOTICES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "blobsync_imagehost_notices_total",
        "Takedowns announced to imagehosts, by outcome (ok, failed)",
        &["outcome"]
    )
    .expect("register blobsync_imagehost_notices_total")
});

pub static VARIANTS_DELETED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "blobsync_takedown_variants_deleted_total",
        "Derived objects (resized variants) deleted with their taken-down source"
    )
    .expect("register blobsync_takedown_variants_deleted_total")
});

pub static SCRUB_LAST_COMPLETE: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "blobsync_scrub_last_complete_timestamp_seconds",
        "When the last full scrub pass finished (0: never)"
    )
    .expect("register blobsync_scrub_last_complete_timestamp_seconds")
});

pub static SCRUB_UNREACHABLE: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "blobsync_scrub_unreachable_servers",
        "Fileservers the last scrub pass could not read and so did not check"
    )
    .expect("register blobsync_scrub_unreachable_servers")
});

pub static TAKEDOWNS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("blobsync_takedowns", "Source keys on the permanent takedown list")
        .expect("register blobsync_takedowns")
});

/// 1 while the queue's disk has less than `queue.min_free_bytes` free (new events refused).
pub static QUEUE_DISK_LOW: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "blobsync_queue_disk_low",
        "1 while the queue's disk has less than queue.min_free_bytes free: change events are refused with 503"
    )
    .expect("register blobsync_queue_disk_low")
});
