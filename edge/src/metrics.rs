//! Every edge metric, declared once, prefixed `edge_`. Cache sizes and backend health are gauges
//! refreshed by the admin listener when `/metrics` is scraped.

use std::sync::LazyLock;

use prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge,
    register_int_gauge_vec, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
};

service::metric!(RESPONSES: IntCounterVec = register_int_counter_vec!(
    "edge_responses_total", "Responses sent to clients by status", &["status"]));
service::metric!(CACHE: IntCounterVec = register_int_counter_vec!(
    "edge_cache_requests_total",
    "Requests by cache result: hit, miss, stale, stale_error, revalidated, expired, bypass, uncacheable",
    &["result"]));
service::metric!(FAST_HITS: IntCounter = register_int_counter!(
    "edge_cache_fast_hits_total", "Hits answered by the fast path (also counted as hits above)"));
service::metric!(SENT_BYTES: IntCounter = register_int_counter!(
    "edge_sent_bytes_total", "Body bytes sent to clients (hits, misses and passes)"));
service::metric!(COALESCED: IntCounter = register_int_counter!(
    "edge_cache_coalesced_waits_total", "Requests that waited for another request's fill of the same object"));
service::metric!(CACHE_DISK_READS: IntCounter = register_int_counter!(
    "edge_cache_disk_reads_total", "Objects read back from the disk tier into memory"));
service::metric!(CACHE_BYTES: IntGauge = register_int_gauge!(
    "edge_cache_memory_bytes", "Bytes of cached objects held in memory"));
service::metric!(CACHE_OBJECTS: IntGauge = register_int_gauge!(
    "edge_cache_objects", "Objects tracked by the memory LRU"));
service::metric!(CACHE_DISK_BYTES: IntGauge = register_int_gauge!(
    "edge_cache_disk_bytes", "Bytes of cached objects in the disk tier"));
service::metric!(CACHE_EVICTED: IntCounter = register_int_counter!(
    "edge_cache_evictions_total", "Objects evicted from the memory tier to make room"));
service::metric!(PURGES: IntCounterVec = register_int_counter_vec!(
    "edge_purges_total", "PURGE and BAN requests by kind and outcome", &["kind", "outcome"]));
service::metric!(BANNED: IntCounterVec = register_int_counter_vec!(
    "edge_banned_objects_total",
    "Objects removed by bans, by where (memory, disk) and how (lookup: found when it would be served; lurker: in the background)",
    &["where", "how"]));
service::metric!(BANS_ACTIVE: IntGauge = register_int_gauge!(
    "edge_bans_active", "Bans not yet tested against every older object"));
service::metric!(UPSTREAM_SECONDS: HistogramVec = register_histogram_vec!(
    "edge_upstream_seconds", "Time to the upstream's response header, by backend", &["backend"],
    vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]));
service::metric!(UPSTREAM_ERRORS: IntCounterVec = register_int_counter_vec!(
    "edge_upstream_errors_total", "Upstream failures by backend and kind (connect, status, proxy)",
    &["backend", "kind"]));
service::metric!(CACHE_DISK_WRITE_ERRORS: IntCounterVec = register_int_counter_vec!(
    "edge_cache_disk_write_errors_total",
    "Disk-tier writes that failed (full: no space left; io: any other error); the object stays in memory",
    &["reason"]));
service::metric!(CACHE_DISK_REFUSED: IntCounter = register_int_counter!(
    "edge_cache_disk_refused_total",
    "Objects the full disk tier did not take: what they would have pushed out is asked for more often (admission)"));
service::metric!(CACHE_MEMORY_REFUSED: IntCounter = register_int_counter!(
    "edge_cache_memory_refused_total",
    "Objects the full memory tier did not take: what they would have pushed out is asked for more often (admission)"));
service::metric!(CACHE_DISK_INDEX_BYTES: IntGauge = register_int_gauge!(
    "edge_cache_disk_index_bytes", "Memory held by the disk tier's index"));
service::metric!(CACHE_DISK_LOADING: IntGauge = register_int_gauge!(
    "edge_cache_disk_loading", "1 while the disk tier's index is still being loaded at start (lookups look on disk meanwhile)"));
service::metric!(CACHE_DISK_FULL: IntGauge = register_int_gauge!(
    "edge_cache_disk_full", "1 while the disk tier's last write found no space left"));
service::metric!(UPSTREAM_EJECTIONS: IntCounterVec = register_int_counter_vec!(
    "edge_upstream_ejections_total",
    "Times a backend was ejected for failing or answering slowly several times in a row",
    &["backend"]));
service::metric!(UPSTREAM_EJECTED: IntGaugeVec = register_int_gauge_vec!(
    "edge_upstream_ejected", "1 while a backend is ejected (skipped like a down one)", &["backend"]));
service::metric!(BACKEND_UP: IntGaugeVec = register_int_gauge_vec!(
    "edge_backend_up", "1 when the health checks consider the backend up", &["backend"]));
service::metric!(LIMITED: IntCounterVec = register_int_counter_vec!(
    "edge_limited_total", "Requests refused by a limit (body_size, rate)", &["limit"]));
service::metric!(CONNECTIONS: IntGauge = register_int_gauge!(
    "edge_client_connections", "Client connections being served"));
service::metric!(CLIENT_TIMEOUTS: IntCounterVec = register_int_counter_vec!(
    "edge_client_timeouts_total",
    "Client connections closed by a deadline, by phase (first_byte, request_head, body, write)",
    &["phase"]));
service::metric!(CONNECTIONS_REFUSED: IntCounter = register_int_counter!(
    "edge_client_connections_refused_total", "Connections closed at accept by server.max_connections"));

/// The counters of the common statuses and cache results, resolved once (a label lookup per
/// request shows in the hit path's profile).
struct Hot {
    statuses: Vec<(u16, IntCounter)>,
    results: Vec<(&'static str, IntCounter)>,
}

static HOT: LazyLock<Hot> = LazyLock::new(|| Hot {
    statuses: [200, 206, 304, 404, 502]
        .iter()
        .map(|s| (*s, RESPONSES.with_label_values(&[&s.to_string()])))
        .collect(),
    results: ["hit", "miss", "stale"]
        .iter()
        .map(|r| (*r, CACHE.with_label_values(&[r])))
        .collect(),
});

pub fn response(status: u16) {
    match HOT.statuses.iter().find(|(s, _)| *s == status) {
        Some((_, c)) => c.inc(),
        None => RESPONSES.with_label_values(&[&status.to_string()]).inc(),
    }
}

pub fn cache_result(result: &'static str) {
    match HOT.results.iter().find(|(r, _)| *r == result) {
        Some((_, c)) => c.inc(),
        None => CACHE.with_label_values(&[result]).inc(),
    }
}

/// Every error counted against one backend (connect, status and mid-request ones).
pub fn upstream_errors(backend: &str) -> u64 {
    ["connect", "status", "proxy"]
        .iter()
        .map(|kind| UPSTREAM_ERRORS.with_label_values(&[backend, kind]).get())
        .sum()
}

service::metric!(WARM_REQUESTS: IntCounterVec = register_int_counter_vec!(
    "edge_warm_requests_total", "Warm-boot preload requests by outcome (fetched, failed)", &["outcome"]));
