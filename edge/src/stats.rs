//! What the edge's stats page shows: samples every few seconds (answers, hits, misses, status
//! classes, upstream latency, bytes out) and tables of the backends (health, since when,
//! ejection, errors) and the cache tiers, built from the same metrics `/metrics` exports.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus::core::Collector;
use service::stats::{buckets, counter_sum, quantile, Chart, History, Rates, Recorder, Table};

use crate::metrics;
use crate::state::State;

const SERIES: [&str; 11] = [
    "answers/s",
    "hits/s",
    "misses/s",
    "hit %",
    "2xx",
    "3xx",
    "4xx",
    "5xx",
    "p50 ms",
    "p99 ms",
    "MB/s out",
];

/// The page's charts, by the series above.
fn charts() -> Vec<Chart> {
    vec![
        Chart {
            title: "Requests",
            unit: "/s",
            series: vec!["answers/s", "hits/s", "misses/s"],
        },
        Chart {
            title: "Hit ratio",
            unit: "%",
            series: vec!["hit %"],
        },
        Chart {
            title: "Answers by status",
            unit: "/s",
            series: vec!["2xx", "3xx", "4xx", "5xx"],
        },
        Chart {
            title: "Upstream latency",
            unit: "ms",
            series: vec!["p50 ms", "p99 ms"],
        },
        Chart {
            title: "Bytes to clients",
            unit: "MB/s",
            series: vec!["MB/s out"],
        },
    ]
}

/// The ring of samples, and since when each backend has been in its current state.
pub struct Stats {
    recorder: Recorder,
    since: Mutex<HashMap<String, (bool, Instant)>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            recorder: Recorder::new(&SERIES),
            since: Mutex::new(HashMap::new()),
        }
    }
}

/// Answers by status class (2xx…5xx), summed over every status label.
fn by_class() -> [f64; 4] {
    ['2', '3', '4', '5'].map(|c| counter_sum(&*metrics::RESPONSES, "status", |v| v.starts_with(c)))
}

fn hits_and_misses() -> (f64, f64) {
    let count = |r: &str| metrics::CACHE.with_label_values(&[r]).get() as f64;
    (count("hit") + count("stale"), count("miss") + count("expired"))
}

/// One sample of every series (called every [`service::stats::EVERY`]).
pub fn sampler() -> impl FnMut() -> Vec<Option<f64>> + Send {
    let mut rates = Rates::default();
    let mut before = Vec::new();
    move || {
        let classes = by_class();
        let (hits, misses) = hits_and_misses();
        let counters = vec![
            classes.iter().sum(),
            hits,
            misses,
            classes[0],
            classes[1],
            classes[2],
            classes[3],
            metrics::SENT_BYTES.get() as f64,
        ];
        let r = rates.next(Instant::now(), counters);
        let ratio = match (r[1], r[2]) {
            (Some(h), Some(m)) if h + m > 0.0 => Some(100.0 * h / (h + m)),
            _ => None,
        };
        let now = buckets(&metrics::UPSTREAM_SECONDS.collect());
        let p = |q| quantile(&before, &now, q).map(|s| s * 1000.0);
        let (p50, p99) = (p(0.5), p(0.99));
        before = now;
        vec![
            r[0],
            r[1],
            r[2],
            ratio,
            r[3],
            r[4],
            r[5],
            r[6],
            p50,
            p99,
            r[7].map(|b| b / 1e6),
        ]
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

impl Stats {
    /// The page object: charts from the ring, tables of the backends and the cache now.
    pub fn page(&self, state: &State) -> serde_json::Value {
        let now = Instant::now();
        let mut backends = Table::new(
            "Backends",
            &["node", "health", "for", "ejected", "errors", "p99 ms since start"],
        );
        {
            let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
            for (addr, up) in state.upstreams.health() {
                let entry = since.entry(addr.clone()).or_insert((up, self.recorder.started()));
                if entry.0 != up {
                    *entry = (up, now);
                }
                let errors = metrics::upstream_errors(&addr);
                let ejected = metrics::UPSTREAM_EJECTED
                    .with_label_values(&[addr.as_str()])
                    .get()
                    == 1;
                let b = buckets(
                    &metrics::UPSTREAM_SECONDS
                        .with_label_values(&[addr.as_str()])
                        .collect(),
                );
                let p99 = quantile(&[], &b, 0.99).map_or("–".into(), |s| format!("{:.1}", s * 1000.0));
                let class = match (up, ejected) {
                    (false, _) => "down",
                    (true, true) => "warn",
                    (true, false) => "up",
                };
                backends = backends.row(
                    Some(class),
                    vec![
                        addr.clone(),
                        if up { "UP" } else { "DOWN" }.into(),
                        service::stats::ago(now - entry.1),
                        if ejected { "yes" } else { "no" }.into(),
                        errors.to_string(),
                        p99,
                    ],
                );
            }
        }
        let (hits, misses) = hits_and_misses();
        let served = hits + misses;
        let mut cache = vec![(
            "hit ratio since start",
            if served > 0.0 {
                format!("{:.1} %", 100.0 * hits / served)
            } else {
                "–".into()
            },
        )];
        if let Some(c) = state.cache.map(|c| c.stats()) {
            cache.extend([
                (
                    "memory",
                    format!(
                        "{} of {} ({} objects)",
                        mib(c.memory_bytes),
                        mib(c.memory_limit),
                        c.objects
                    ),
                ),
                ("evicted from memory", c.evicted_items.to_string()),
                (
                    "disk tier",
                    format!(
                        "{} of {} ({} objects, index {}){}{}",
                        mib(c.disk_bytes),
                        mib(state.config.cache.disk_max_bytes),
                        c.disk_objects,
                        mib(c.disk_index_bytes as u64),
                        if c.disk_loading { ", LOADING" } else { "" },
                        if metrics::CACHE_DISK_FULL.get() == 1 {
                            ", DISK FULL"
                        } else {
                            ""
                        }
                    ),
                ),
            ]);
        }
        cache.extend([
            ("coalesced waits", metrics::COALESCED.get().to_string()),
            ("client connections", metrics::CONNECTIONS.get().to_string()),
        ]);
        self.recorder.page(
            "edge",
            env!("CARGO_PKG_VERSION"),
            &charts(),
            &[backends, Table::pairs("Cache", cache)],
        )
    }

    pub fn history(&self) -> Arc<History> {
        self.recorder.history.clone()
    }
}
