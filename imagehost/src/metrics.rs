//! Every imagehost metric, declared once, prefixed `imagehost_`.

use std::sync::LazyLock;

use prometheus::{
    register_histogram, register_histogram_vec, register_int_counter, register_int_counter_vec,
    register_int_gauge, register_int_gauge_vec, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec,
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

/// Cold renders refused because a client's or a source host's share was spent.
pub static RENDER_LIMITED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "imagehost_render_limited_total",
        "Cold /p/ renders refused with 429 because the client's or the source host's share was spent",
        &["by"]
    )
    .expect("register imagehost_render_limited_total")
});

/// Reads sent to a second fileserver because the first had not answered within the hedge delay.
pub static READ_HEDGES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "imagehost_read_hedges_total",
        "Reads also sent to this fileserver because the one before it had not answered within the hedge delay",
        &["server"]
    )
    .expect("register imagehost_read_hedges_total")
});

/// 1 while a fileserver's read breaker is open (it is tried last).
pub static READ_BREAKER_OPEN: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "imagehost_read_breaker_open",
        "1 while reads try this fileserver last after consecutive failures or stalls",
        &["server"]
    )
    .expect("register imagehost_read_breaker_open")
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

/// Image pipeline stage times (`decode`, `resize`, `encode`).
pub static PIPELINE_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "imagehost_pipeline_seconds",
        "Image pipeline stage time",
        &["stage"],
        vec![0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
    )
    .expect("register imagehost_pipeline_seconds")
});

/// JPEG decodes by decoder: `shrink` (thumbnails of baseline files, pipeline/shrink.rs) or
/// `libjpeg-turbo` (everything else).
pub static JPEG_DECODES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "imagehost_jpeg_decodes_total",
        "JPEG decodes by decoder",
        &["decoder"]
    )
    .expect("register imagehost_jpeg_decodes_total")
});

/// Pipeline jobs by outcome (`ok`, `passthrough`, or the error kind).
pub static RENDERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "imagehost_renders_total",
        "Image pipeline jobs by outcome",
        &["outcome"]
    )
    .expect("register imagehost_renders_total")
});

/// Hot cache events: `hit`, `miss`, `eviction`, `write`, `error`.
pub static HOTCACHE_EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "imagehost_hotcache_events_total",
        "Local hot cache events",
        &["event"]
    )
    .expect("register imagehost_hotcache_events_total")
});

/// Bytes held by the hot cache.
pub static HOTCACHE_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("imagehost_hotcache_bytes", "Bytes held by the local hot cache")
        .expect("register imagehost_hotcache_bytes")
});

/// Upstream fetches for /p/ by outcome (`ok`, `blocked`, `timeout`, `too_large`, `status`, `error`, …).
pub static FETCHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "imagehost_fetches_total",
        "Upstream image fetches by outcome",
        &["outcome"]
    )
    .expect("register imagehost_fetches_total")
});

/// Jobs waiting for a CPU slot or for memory.
pub static POOL_QUEUED: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "imagehost_pool_queued",
        "Image jobs waiting for a CPU slot or memory"
    )
    .expect("register imagehost_pool_queued")
});

/// Jobs running on the CPU pool.
pub static POOL_RUNNING: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("imagehost_pool_running", "Image jobs running")
        .expect("register imagehost_pool_running")
});

/// Bytes of originals held in memory (fetching, read, or waiting for the pool).
pub static INPUT_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "imagehost_input_memory_bytes",
        "Bytes of originals held in memory: being fetched, read from a fileserver, or waiting for the image pool (at most pipeline.input_budget)"
    )
    .expect("register imagehost_input_memory_bytes")
});

/// Bytes the running jobs hold by their estimates.
pub static POOL_MEMORY: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "imagehost_pool_memory_bytes",
        "Bytes the running image jobs hold, by their estimates (at most pipeline.memory_budget)"
    )
    .expect("register imagehost_pool_memory_bytes")
});

/// Jobs refused with 503 because the queue was full.
pub static POOL_REJECTED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "imagehost_pool_rejected_total",
        "Image jobs refused because the queue was full"
    )
    .expect("register imagehost_pool_rejected_total")
});

/// Requests that waited on another request's fetch or render instead of doing their own.
pub static COALESCED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "imagehost_coalesced_total",
        "Requests served by another request's in-flight fetch or render"
    )
    .expect("register imagehost_coalesced_total")
});

/// /p/, legacy, avatar and cover responses by route and status.
pub static PROXY_RESPONSES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "imagehost_proxy_responses_total",
        "Proxy, legacy, avatar and cover responses by route and status",
        &["route", "status"]
    )
    .expect("register imagehost_proxy_responses_total")
});

/// Source keys on the takedown list this node holds.
pub static TAKEDOWNS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "imagehost_takedowns",
        "Source keys on the takedown list this node refuses"
    )
    .expect("register imagehost_takedowns")
});
