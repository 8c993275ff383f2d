//! Every imagehost metric, declared once, prefixed `imagehost_`.

use prometheus::{
    register_histogram, register_histogram_vec, register_int_counter, register_int_counter_vec,
    register_int_gauge, register_int_gauge_vec, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec,
};

service::metric!(
    /// HTTP responses of the health and fallback routes.
    RESPONSES: IntCounterVec = register_int_counter_vec!(
        "imagehost_responses_total",
        "Health and fallback responses by route and status",
        &["route", "status"]
    )
);

service::metric!(
    /// Fileserver readiness probes by server and outcome.
    FILESERVER_PROBES: IntCounterVec = register_int_counter_vec!(
        "imagehost_fileserver_probes_total",
        "Fileserver readiness probes by server and outcome",
        &["server", "outcome"]
    )
);

service::metric!(
    /// Uploads by outcome: `stored` or the error name sent to the client.
    UPLOADS: IntCounterVec = register_int_counter_vec!(
        "imagehost_uploads_total",
        "Upload requests by outcome",
        &["outcome"]
    )
);

service::metric!(
    /// Bytes of uploads stored.
    UPLOAD_BYTES: IntCounter = register_int_counter!("imagehost_upload_bytes_total", "Bytes of uploads stored")
);

service::metric!(
    /// Uploads spooled to a file rather than held in memory, by why: `size` (past
    /// `upload.spool_memory`) or `budget` (`upload.spool_memory_total` taken by other uploads).
    UPLOAD_SPILLS: IntCounterVec = register_int_counter_vec!(
        "imagehost_upload_spills_total",
        "Uploads spooled to a temporary file, by reason",
        &["reason"]
    )
);

service::metric!(
    /// Bytes of uploads held in memory now (at most `upload.spool_memory_total`).
    UPLOAD_SPOOL_BYTES: IntGauge =
        register_int_gauge!("imagehost_upload_spool_bytes", "Bytes of uploads held in memory")
);

service::metric!(
    /// Time to recover a signature's key and check it against the account.
    SIGNATURE_SECONDS: Histogram = register_histogram!(
        "imagehost_signature_seconds",
        "Signature recovery and authority check time",
        vec![0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03]
    )
);

service::metric!(
    /// Hive RPC `get_accounts` calls by outcome.
    RPC_SECONDS: HistogramVec = register_histogram_vec!(
        "imagehost_rpc_seconds",
        "Hive RPC get_accounts latency by outcome",
        &["outcome"],
        vec![0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
    )
);

service::metric!(
    /// Upload writes by fileserver and outcome (`written`, `present`, `failed`).
    WRITES: IntCounterVec = register_int_counter_vec!(
        "imagehost_fileserver_writes_total",
        "Upload writes by fileserver and outcome",
        &["server", "outcome"]
    )
);

service::metric!(
    /// Objects a fileserver missed and that replication must repair.
    WRITE_REPAIRS: IntCounterVec = register_int_counter_vec!(
        "imagehost_repairs_recorded_total",
        "Uploads a fileserver missed, recorded for repair",
        &["server"]
    )
);

service::metric!(
    /// Reads that moved on to the next fileserver, by server and reason.
    READ_FALLBACKS: IntCounterVec = register_int_counter_vec!(
        "imagehost_read_fallbacks_total",
        "Reads that fell through to the next fileserver, by server and reason",
        &["server", "reason"]
    )
);

service::metric!(
    /// Cold renders refused because a client's or a source host's share was spent.
    RENDER_LIMITED: IntCounterVec = register_int_counter_vec!(
        "imagehost_render_limited_total",
        "Cold /p/ renders refused with 429 because the client's or the source host's share was spent",
        &["by"]
    )
);

service::metric!(
    /// Reads sent to a second fileserver because the first had not answered within the hedge delay.
    READ_HEDGES: IntCounterVec = register_int_counter_vec!(
        "imagehost_read_hedges_total",
        "Reads also sent to this fileserver because the one before it had not answered within the hedge delay",
        &["server"]
    )
);

service::metric!(
    /// 1 while a fileserver's read breaker is open (it is tried last).
    READ_BREAKER_OPEN: IntGaugeVec = register_int_gauge_vec!(
        "imagehost_read_breaker_open",
        "1 while reads try this fileserver last after consecutive failures or stalls",
        &["server"]
    )
);

service::metric!(
    /// Upload serving responses by status.
    SERVED: IntCounterVec = register_int_counter_vec!(
        "imagehost_served_total",
        "Upload serving responses by status",
        &["status"]
    )
);

service::metric!(
    /// Quota checks by result.
    QUOTA_CHECKS: IntCounterVec = register_int_counter_vec!(
        "imagehost_quota_checks_total",
        "Upload quota checks by result",
        &["result"]
    )
);

service::metric!(
    /// Change events sent to blobsync, by outcome (`sent`, `lost`).
    REPLICATION_EVENTS: IntCounterVec = register_int_counter_vec!(
        "imagehost_replication_events_total",
        "Change events sent to blobsync",
        &["outcome"]
    )
);

service::metric!(
    /// Image pipeline stage times (`decode`, `resize`, `encode`).
    PIPELINE_SECONDS: HistogramVec = register_histogram_vec!(
        "imagehost_pipeline_seconds",
        "Image pipeline stage time",
        &["stage"],
        vec![0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
    )
);

service::metric!(
    /// JPEG decodes by decoder: `shrink` (thumbnails of baseline files, pipeline/shrink.rs) or
    /// `libjpeg-turbo` (everything else).
    JPEG_DECODES: IntCounterVec = register_int_counter_vec!(
        "imagehost_jpeg_decodes_total",
        "JPEG decodes by decoder",
        &["decoder"]
    )
);

service::metric!(
    /// Renders of a JPEG, WebP or AVIF still by what its decode did (pipeline/kept.rs): `hit`
    /// (resized from pixels kept from an earlier size), `kept` (decoded and kept for the sizes
    /// that follow), `not_kept` (decoded; too small or too large to keep, or keeping is off).
    KEPT_RASTERS: IntCounterVec = register_int_counter_vec!(
        "imagehost_kept_rasters_total",
        "JPEG, WebP and AVIF renders by whether their decode was kept pixels, kept or not kept",
        &["outcome"]
    )
);

service::metric!(
    /// Bytes of decoded originals kept for the next sizes (`pipeline.kept_pixels_bytes` at most).
    KEPT_PIXELS_BYTES: IntGauge =
        register_int_gauge!("imagehost_kept_pixels_bytes", "Bytes of decoded originals kept for further sizes")
);

service::metric!(
    /// Pipeline jobs by outcome (`ok`, `passthrough`, or the error kind).
    RENDERS: IntCounterVec = register_int_counter_vec!(
        "imagehost_renders_total",
        "Image pipeline jobs by outcome",
        &["outcome"]
    )
);

service::metric!(
    /// Hot cache events: `hit`, `miss`, `eviction`, `write`, `error`.
    HOTCACHE_EVENTS: IntCounterVec = register_int_counter_vec!(
        "imagehost_hotcache_events_total",
        "Local hot cache events",
        &["event"]
    )
);

service::metric!(
    /// Bytes held by the hot cache.
    HOTCACHE_BYTES: IntGauge = register_int_gauge!("imagehost_hotcache_bytes", "Bytes held by the local hot cache")
);

service::metric!(
    /// Upstream fetches for /p/ by outcome (`ok`, `blocked`, `timeout`, `too_large`, `status`, `error`, …).
    FETCHES: IntCounterVec = register_int_counter_vec!(
        "imagehost_fetches_total",
        "Upstream image fetches by outcome",
        &["outcome"]
    )
);

service::metric!(
    /// Jobs waiting for a CPU slot or for memory.
    POOL_QUEUED: IntGauge = register_int_gauge!(
        "imagehost_pool_queued",
        "Image jobs waiting for a CPU slot or memory"
    )
);

service::metric!(
    /// Jobs running on the CPU pool.
    POOL_RUNNING: IntGauge = register_int_gauge!("imagehost_pool_running", "Image jobs running")
);

service::metric!(
    /// Bytes of originals held in memory (fetching, read, or waiting for the pool).
    INPUT_BYTES: IntGauge = register_int_gauge!(
        "imagehost_input_memory_bytes",
        "Bytes of originals held in memory: being fetched, read from a fileserver, or waiting for the image pool (at most pipeline.input_budget)"
    )
);

service::metric!(
    /// Bytes the running jobs hold by their estimates.
    POOL_MEMORY: IntGauge = register_int_gauge!(
        "imagehost_pool_memory_bytes",
        "Bytes the running image jobs hold, by their estimates (at most pipeline.memory_budget)"
    )
);

service::metric!(
    /// Jobs refused with 503 because the queue was full.
    POOL_REJECTED: IntCounter = register_int_counter!(
        "imagehost_pool_rejected_total",
        "Image jobs refused because the queue was full"
    )
);

service::metric!(
    /// Requests that waited on another request's fetch or render instead of doing their own.
    COALESCED: IntCounter = register_int_counter!(
        "imagehost_coalesced_total",
        "Requests served by another request's in-flight fetch or render"
    )
);

service::metric!(
    /// /p/, legacy, avatar and cover responses by route and status.
    PROXY_RESPONSES: IntCounterVec = register_int_counter_vec!(
        "imagehost_proxy_responses_total",
        "Proxy, legacy, avatar and cover responses by route and status",
        &["route", "status"]
    )
);

service::metric!(
    /// Source keys on the takedown list this node holds.
    TAKEDOWNS: IntGauge = register_int_gauge!(
        "imagehost_takedowns",
        "Source keys on the takedown list this node refuses"
    )
);
