//! What imagehost's stats page shows: samples every few seconds (answers, renders, uploads,
//! 5xx, the CPU pool, the hot cache's hit ratio, pipeline stage times) and tables of the
//! fileservers (read breaker, hedges) and of the pool and caches now.

use std::sync::Arc;
use std::time::Instant;

use prometheus::core::Collector;
use prometheus::IntCounterVec;
use service::stats::{buckets, counter_sum, quantile, Chart, History, Rates, Recorder, Table};

use crate::metrics::{
    COALESCED, HOTCACHE_BYTES, HOTCACHE_EVENTS, INPUT_BYTES, PIPELINE_SECONDS, POOL_MEMORY, POOL_QUEUED,
    POOL_REJECTED, POOL_RUNNING, PROXY_RESPONSES, READ_BREAKER_OPEN, READ_FALLBACKS, READ_HEDGES, RENDERS,
    RENDER_LIMITED, SERVED, TAKEDOWNS, UPLOADS,
};

const SERIES: [&str; 13] = [
    "served/s",
    "/p/ answers/s",
    "uploads/s",
    "5xx/s",
    "renders/s",
    "failed/s",
    "refused 429/s",
    "running",
    "queued",
    "hot cache hit %",
    "decode p99 ms",
    "resize p99 ms",
    "encode p99 ms",
];

fn charts() -> Vec<Chart> {
    vec![
        Chart {
            title: "Requests",
            unit: "/s",
            series: vec!["served/s", "/p/ answers/s", "uploads/s"],
        },
        Chart {
            title: "Server errors",
            unit: "/s",
            series: vec!["5xx/s"],
        },
        Chart {
            title: "Renders",
            unit: "/s",
            series: vec!["renders/s", "failed/s", "refused 429/s"],
        },
        Chart {
            title: "CPU pool",
            unit: "jobs",
            series: vec!["running", "queued"],
        },
        Chart {
            title: "Hot cache hit ratio",
            unit: "%",
            series: vec!["hot cache hit %"],
        },
        Chart {
            title: "Pipeline stage time",
            unit: "ms",
            series: vec!["decode p99 ms", "resize p99 ms", "encode p99 ms"],
        },
    ]
}

/// The sum of a counter family, and the part whose `label` starts with `prefix`.
fn total(family: &IntCounterVec, label: &str, prefix: &str) -> (f64, f64) {
    let all = counter_sum(family, "", |_| true);
    (all, counter_sum(family, label, |v| v.starts_with(prefix)))
}

/// The part of a counter family whose `label` is exactly `value`.
fn exact(family: &IntCounterVec, label: &str, value: &str) -> f64 {
    counter_sum(family, label, |v| v == value)
}

/// The ring of samples behind the page.
pub struct Stats(Recorder);

impl Default for Stats {
    fn default() -> Self {
        Self(Recorder::new(&SERIES))
    }
}

impl Stats {
    pub fn history(&self) -> Arc<History> {
        self.0.history.clone()
    }
}

/// One sample of every series.
pub fn sampler() -> impl FnMut() -> Vec<Option<f64>> + Send {
    let mut rates = Rates::default();
    let mut before: Vec<Vec<(f64, f64)>> = vec![Vec::new(); 3];
    move || {
        let (served, served_5xx) = total(&SERVED, "status", "5");
        let (proxied, proxied_5xx) = total(&PROXY_RESPONSES, "status", "5");
        let (uploads, _) = total(&UPLOADS, "outcome", "");
        let renders = total(&RENDERS, "outcome", "").0;
        let ok = exact(&RENDERS, "outcome", "ok");
        let passthrough = exact(&RENDERS, "outcome", "passthrough");
        let (limited, _) = total(&RENDER_LIMITED, "by", "");
        let hot_hits = exact(&HOTCACHE_EVENTS, "event", "hit");
        let hot_misses = exact(&HOTCACHE_EVENTS, "event", "miss");
        let r = rates.next(
            Instant::now(),
            vec![
                served,
                proxied,
                uploads,
                served_5xx + proxied_5xx,
                ok + passthrough,
                renders - ok - passthrough,
                limited,
                hot_hits,
                hot_misses,
            ],
        );
        let hot = match (r[7], r[8]) {
            (Some(h), Some(m)) if h + m > 0.0 => Some(100.0 * h / (h + m)),
            _ => None,
        };
        let mut stages = Vec::new();
        for (i, stage) in ["decode", "resize", "encode"].iter().enumerate() {
            let now = buckets(&PIPELINE_SECONDS.with_label_values(&[stage]).collect());
            stages.push(quantile(&before[i], &now, 0.99).map(|s| s * 1000.0));
            before[i] = now;
        }
        let mut out = vec![r[0], r[1], r[2], r[3], r[4], r[5], r[6]];
        out.extend([
            Some(POOL_RUNNING.get() as f64),
            Some(POOL_QUEUED.get() as f64),
            hot,
        ]);
        out.extend(stages);
        out
    }
}

fn mib(b: i64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

impl Stats {
    pub fn page(&self, config: &crate::Config) -> serde_json::Value {
        let mut servers = Table::new(
            "Fileservers (read order follows latency)",
            &["name", "reads", "hedged to", "fell back from"],
        );
        for fs in &config.fileservers {
            let name = fs.name.as_str();
            let open = READ_BREAKER_OPEN.with_label_values(&[name]).get() == 1;
            let fallbacks = exact(&READ_FALLBACKS, "server", name);
            servers = servers.row(
                Some(if open { "down" } else { "up" }),
                vec![
                    name.to_string(),
                    if open { "tried last (breaker open)" } else { "ok" }.into(),
                    READ_HEDGES.with_label_values(&[name]).get().to_string(),
                    service::stats::count(fallbacks),
                ],
            );
        }
        let hot_limit = config.cache.max_bytes;
        let now = Table::pairs(
            "Pool and caches",
            vec![
                (
                    "CPU pool",
                    format!("{} running, {} queued", POOL_RUNNING.get(), POOL_QUEUED.get()),
                ),
                ("pool memory", mib(POOL_MEMORY.get())),
                ("originals in memory", mib(INPUT_BYTES.get())),
                ("jobs refused (busy)", POOL_REJECTED.get().to_string()),
                ("requests that shared a render", COALESCED.get().to_string()),
                (
                    "hot cache",
                    format!("{} of {}", mib(HOTCACHE_BYTES.get()), mib(hot_limit as i64)),
                ),
                ("takedowns held", TAKEDOWNS.get().to_string()),
            ],
        );
        self.0
            .page("imagehost", env!("CARGO_PKG_VERSION"), &charts(), &[servers, now])
    }
}
