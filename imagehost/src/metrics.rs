//! Every imagehost metric, declared once, prefixed `imagehost_`.

use std::sync::LazyLock;

use prometheus::{
    register_histogram, register_histogram_vec, register_int_counter, register_int_counter_vec, Histogram,
    HistogramVec, IntCounter, IntCounterVec,
};

/// HTTP responses of the health and fallback routes.
pub static RESPONSES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "imagehost_responses_total",
        "Health and fallback responses by route and status",
        &["route", "status"]
    )
    .expect("register imagehost_responses_total")
});

/// Fileserver readiness probes by server and outcome.
pub static FILESERVER_PROBES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "imagehost_fileserver_probes_total",
        "Fileserver readiness probes by server and outcome",
        &["server", "outcome"]
    )
    .expect("register imagehost_fileserver_probes_total")
});

/// Uploads by outcome: `stored` or the error name sent to the client.
pub static UPLOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "imagehost_uploads_total",
        "Upload requests by outcome",
        &["outcome"]
    )
    .expect("register imagehost_uploads_total")
});

/// Bytes of uploads stored.
pub static UPLOAD_BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("imagehost_upload_bytes_total", "Bytes of uploads stored")
        .expect("register imagehost_upload_bytes_total")
});

/// Time to recover a signature's key and check it against the account.
pub static SIGNATURE_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "imagehost_signature_seconds",
        "Signature recovery and authority check time",
        vec![0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03]
    )
    .expect("register imagehost_signature_seconds")
});

/// Hive RPC `get_accounts` calls by outcome.
pub static RPC_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "imagehost_rpc_seconds",
        "Hive RPC get_accounts latency by outcome",
        &["outcome"],
        vec![0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
    )
    .expect("register imagehost_rpc_seconds")
});

/// Upload writes by fileserver and outcome (`written`, `present`, `failed`).
pub static WRITES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "imagehost_fileserver_writes_total",
        "Upload writes by fileserver and outcome",
        &["server", "outcome"]
    )
    .expect("register imagehost_fileserver_writes_total")
});

/// Objects a fileserver missed and that replication must repair.
pub static WRITE_REPAIRS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "imagehost_repairs_recorded_total",
        "Uploads a fileserver missed, recorded for repair",
        &["server"]
    )
    .expect("register imagehost_repairs_recorded_total")
});

/// Reads that moved on to the next fileserver, by server and reason.
pub static READ_FALLBACKS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "imagehost_read_fallbacks_total",
        "Reads that fell through to the next fileserver, by server and reason",
        &["server", "reason"]
    )
    .expect("register imagehost_read_fallbacks_total")
});

/// Upload serving responses by status.
pub static SERVED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "imagehost_served_total",
        "Upload serving responses by status",
        &["status"]
    )
    .expect("register imagehost_served_total")
});

/// Quota checks by result.
pub static QUOTA_CHECKS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "imagehost_quota_checks_total",
        "Upload quota checks by result",
        &["result"]
    )
    .expect("register imagehost_quota_checks_total")
});

/// Change events sent to blobsync, by outcome (`sent`, `lost`).
pub static REPLICATION_EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "imagehost_replication_events_total",
        "Change events sent to blobsync",
        &["outcome"]
    )
    .expect("register imagehost_replication_events_total")
});
