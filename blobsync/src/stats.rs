//! blobsync's live stats page (`/stats`, `/stats.json`, no token needed, like `/status`):
//! samples every few seconds (backlog, oldest pending, copies and bytes, failures, change
//! events, replication lag) and tables of the fileservers (answering or not) and of the queue,
//! takedowns and scrub now.

use std::sync::Arc;
use std::time::Instant;

use axum::http::header;
use axum::routing::get;
use axum::{Json, Router};
use prometheus::core::Collector;
use prometheus::IntCounterVec;
use service::stats::{buckets, quantile, Chart, History, Rates, Recorder, Table};

use crate::metrics::{
    BACKLOG, COPIES, COPY_BYTES, EVENTS, FAILURES, FILESERVER_UP, LAG, OLDEST_PENDING, SCRUB_LAST_COMPLETE,
    TAKEDOWNS, TOMBSTONES,
};

const SERIES: [&str; 7] = [
    "backlog",
    "oldest pending s",
    "copies/s",
    "MB/s copied",
    "failures/s",
    "events/s",
    "lag p99 s",
];

fn charts() -> Vec<Chart> {
    vec![
        Chart {
            title: "Backlog",
            unit: "objects",
            series: vec!["backlog"],
        },
        Chart {
            title: "Oldest pending",
            unit: "s",
            series: vec!["oldest pending s"],
        },
        Chart {
            title: "Copies",
            unit: "/s",
            series: vec!["copies/s", "failures/s", "events/s"],
        },
        Chart {
            title: "Bytes copied",
            unit: "MB/s",
            series: vec!["MB/s copied"],
        },
        Chart {
            title: "Replication lag",
            unit: "s",
            series: vec!["lag p99 s"],
        },
    ]
}

fn sum(family: &IntCounterVec) -> f64 {
    service::stats::counter_sum(family, "", |_| true)
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
    let mut before = Vec::new();
    move || {
        let r = rates.next(
            Instant::now(),
            vec![
                sum(&COPIES),
                COPY_BYTES.get() as f64,
                sum(&FAILURES),
                sum(&EVENTS),
            ],
        );
        let now = buckets(&LAG.collect());
        let lag = quantile(&before, &now, 0.99);
        before = now;
        vec![
            Some(BACKLOG.get() as f64),
            Some(OLDEST_PENDING.get() as f64),
            r[0],
            r[1].map(|b| b / 1e6),
            r[2],
            r[3],
            lag,
        ]
    }
}

impl Stats {
    pub fn page(&self) -> serde_json::Value {
        let mut stores: Vec<(String, bool)> = FILESERVER_UP
            .collect()
            .iter()
            .flat_map(|f| f.get_metric())
            .map(|m| {
                let store = m.get_label().first().map_or("?", |l| l.value()).to_string();
                (store, m.get_gauge().get_value() >= 1.0)
            })
            .collect();
        stores.sort();
        let mut servers = Table::new("Fileservers", &["store", "state"]);
        for (store, up) in stores {
            servers = servers.row(
                Some(if up { "up" } else { "down" }),
                vec![store, if up { "answering" } else { "unavailable" }.into()],
            );
        }
        let scrub = match SCRUB_LAST_COMPLETE.get() {
            0 => "never".to_string(),
            t => format!(
                "{} ago",
                service::stats::ago(std::time::Duration::from_secs(
                    (service::stats::now_ms() / 1000).saturating_sub(t as u64)
                ))
            ),
        };
        let queue = Table::pairs(
            "Queue",
            vec![
                ("backlog", BACKLOG.get().to_string()),
                ("oldest pending", format!("{} s", OLDEST_PENDING.get())),
                ("copies written", service::stats::count(sum(&COPIES))),
                ("bytes copied", COPY_BYTES.get().to_string()),
                ("failed attempts (retried)", service::stats::count(sum(&FAILURES))),
                ("takedowns", TAKEDOWNS.get().to_string()),
                ("tombstones", TOMBSTONES.get().to_string()),
                ("last full scrub", scrub),
            ],
        );
        self.0.page(
            "blobsync",
            env!("CARGO_PKG_VERSION"),
            &charts(),
            &[servers, queue],
        )
    }
}

/// `/stats` (the page) and `/stats.json` (what it draws).
pub fn router(stats: Arc<Stats>) -> Router {
    Router::new()
        .route("/stats", get(|| async { service::stats::html() }))
        .route(
            "/stats.json",
            get(move || {
                let stats = stats.clone();
                async move {
                    (
                        [(header::CACHE_CONTROL, "no-store")],
                        Json(serde_json::json!({ "page": stats.page() })),
                    )
                }
            }),
        )
}
