//! Every blobsync metric, declared once, prefixed `blobsync_`.

use prometheus::{
    register_histogram, register_int_counter, register_int_counter_vec, register_int_gauge,
    register_int_gauge_vec, Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
};

service::metric!(
    BACKLOG: IntGauge = register_int_gauge!(
        "blobsync_backlog_objects",
        "Objects waiting in the replication queue (exact)"
    )
);

service::metric!(
    OLDEST_PENDING: IntGauge = register_int_gauge!(
        "blobsync_oldest_pending_seconds",
        "Age of the oldest pending queue item"
    )
);

service::metric!(
    TOMBSTONES: IntGauge = register_int_gauge!("blobsync_tombstones", "Takedowns remembered")
);

service::metric!(
    LAG: Histogram = register_histogram!(
        "blobsync_replication_lag_seconds",
        "From the request to copy until every fileserver holds the object",
        vec![0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 15.0, 60.0, 300.0, 3600.0]
    )
);

service::metric!(
    COPIES: IntCounterVec = register_int_counter_vec!(
        "blobsync_copies_total",
        "Verified copies written, by target fileserver",
        &["server"]
    )
);

service::metric!(
    COPY_BYTES: IntCounter = register_int_counter!(
        "blobsync_copy_bytes_total",
        "Bytes read from source replicas for copies"
    )
);

service::metric!(
    DELETES: IntCounter = register_int_counter!(
        "blobsync_takedowns_applied_total",
        "Takedowns applied on every fileserver"
    )
);

service::metric!(
    FILESERVER_UP: IntGaugeVec = register_int_gauge_vec!(
        "blobsync_fileserver_up",
        "Whether a fileserver's bucket store answered a listing within 2 s (probed every 10 s)",
        &["store"]
    )
);

service::metric!(
    FAILURES: IntCounterVec = register_int_counter_vec!(
        "blobsync_failures_total",
        "Failed attempts by cause (all are retried)",
        &["cause"]
    )
);

service::metric!(
    EVENTS: IntCounterVec = register_int_counter_vec!(
        "blobsync_events_total",
        "Change events received, by outcome",
        &["outcome"]
    )
);

service::metric!(
    AE_FINDINGS: IntCounterVec = register_int_counter_vec!(
        "blobsync_antientropy_findings_total",
        "Objects anti-entropy queued",
        &["bucket", "kind"]
    )
);

service::metric!(
    AE_PASSES: IntCounterVec = register_int_counter_vec!(
        "blobsync_antientropy_passes_total",
        "Anti-entropy passes by outcome",
        &["outcome"]
    )
);

service::metric!(
    SCRUB_CHECKED: IntCounter = register_int_counter!(
        "blobsync_scrub_checked_total",
        "Stored copies re-read and re-hashed"
    )
);

service::metric!(
    SCRUB_CORRUPT: IntCounter = register_int_counter!(
        "blobsync_scrub_corrupt_total",
        "Copies found corrupt or unreadable"
    )
);

service::metric!(
    SCRUB_REPAIRED: IntCounter = register_int_counter!(
        "blobsync_scrub_repaired_total",
        "Corrupt copies replaced from a verified one"
    )
);

service::metric!(
    EDGE_PURGES: IntCounterVec = register_int_counter_vec!(
        "blobsync_edge_purges_total",
        "Edge bans sent for takedowns, by outcome (ok, failed)",
        &["outcome"]
    )
);

service::metric!(
    IMAGEHOST_NOTICES: IntCounterVec = register_int_counter_vec!(
        "blobsync_imagehost_notices_total",
        "Takedowns announced to imagehosts, by outcome (ok, failed)",
        &["outcome"]
    )
);

service::metric!(
    VARIANTS_DELETED: IntCounter = register_int_counter!(
        "blobsync_takedown_variants_deleted_total",
        "Derived objects (resized variants) deleted with their taken-down source"
    )
);

service::metric!(
    SCRUB_LAST_COMPLETE: IntGauge = register_int_gauge!(
        "blobsync_scrub_last_complete_timestamp_seconds",
        "When the last full scrub pass finished (0: never)"
    )
);

service::metric!(
    SCRUB_UNREACHABLE: IntGauge = register_int_gauge!(
        "blobsync_scrub_unreachable_servers",
        "Fileservers the last scrub pass could not read and so did not check"
    )
);

service::metric!(
    TAKEDOWNS: IntGauge = register_int_gauge!("blobsync_takedowns", "Source keys on the permanent takedown list")
);

service::metric!(
    /// 1 while the queue's disk has less than `queue.min_free_bytes` free (new events refused).
    QUEUE_DISK_LOW: IntGauge = register_int_gauge!(
        "blobsync_queue_disk_low",
        "1 while the queue's disk has less than queue.min_free_bytes free: change events are refused with 503"
    )
);

service::metric!(
    JOURNAL_FALLBACKS: IntCounter = register_int_counter!(
        "blobsync_intake_journal_fallbacks_total",
        "Groups of change events made durable by a flush of the queue because the intake journal could not be written"
    )
);
