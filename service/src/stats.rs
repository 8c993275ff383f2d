//! The live stats page every service serves on its admin listener (`/stats`, `/stats.json`): a
//! ring of recent samples taken every few seconds (rates, ratios and percentiles over each
//! interval), drawn as graphs by one self-contained page, beside the service's tables of
//! current state. Pure parts (the ring, deltas, percentiles) are here; each service says what
//! it samples and which tables it shows.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{json, Value};

/// The page: HTML, CSS and script in one file, no external assets. It reads `stats.json`
/// (relative to itself) every 2 s and draws what its `page` object holds.
pub const PAGE: &str = include_str!("stats/page.html");

/// How often services sample, and how many samples they keep (10 minutes).
pub const EVERY: Duration = Duration::from_secs(2);
pub const KEEP: usize = 300;

/// One chart: a title, a unit, and the series it draws, by name.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    pub title: &'static str,
    pub unit: &'static str,
    pub series: Vec<&'static str>,
}

/// A table of current state; a row's class (`up`, `down`, `warn`) colours it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Table {
    pub title: String,
    pub head: Vec<String>,
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub cells: Vec<String>,
    pub class: Option<&'static str>,
}

impl Table {
    pub fn new(title: impl Into<String>, head: &[&str]) -> Self {
        Self {
            title: title.into(),
            head: head.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(mut self, class: Option<&'static str>, cells: Vec<String>) -> Self {
        self.rows.push(Row { cells, class });
        self
    }

    /// A two-column table of names and values.
    pub fn pairs(title: impl Into<String>, pairs: Vec<(&str, String)>) -> Self {
        let mut t = Self::new(title, &["", "now"]);
        for (k, v) in pairs {
            t = t.row(None, vec![k.to_string(), v]);
        }
        t
    }
}

/// The last [`KEEP`] samples of a fixed set of series.
pub struct History {
    names: Vec<&'static str>,
    keep: usize,
    ring: Mutex<VecDeque<(u64, Vec<Option<f64>>)>>,
}

impl History {
    pub fn new(names: Vec<&'static str>, keep: usize) -> Self {
        Self {
            names,
            keep: keep.max(1),
            ring: Mutex::new(VecDeque::new()),
        }
    }

    /// Adds one sample (a value per series, `None` where there is none, e.g. a percentile of
    /// an interval without requests); the oldest goes when the ring is full.
    pub fn push(&self, t_ms: u64, values: Vec<Option<f64>>) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() == self.keep {
            ring.pop_front();
        }
        ring.push_back((t_ms, values));
    }

    /// `{"t": [ms, …], "series": {name: [value or null, …]}}`.
    pub fn to_json(&self) -> Value {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let t: Vec<u64> = ring.iter().map(|(t, _)| *t).collect();
        let series: serde_json::Map<String, Value> = self
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let values: Vec<Option<f64>> = ring
                    .iter()
                    .map(|(_, v)| v.get(i).copied().flatten().filter(|x| x.is_finite()))
                    .collect();
                (n.to_string(), json!(values))
            })
            .collect();
        json!({ "t": t, "series": series })
    }
}

/// Per-second rates of cumulative counters between two readings.
#[derive(Default)]
pub struct Rates {
    last: Option<(Instant, Vec<f64>)>,
}

impl Rates {
    /// The rate of each counter since the previous reading (`None` the first time); a counter
    /// that went down (a restart) counts from zero.
    pub fn next(&mut self, now: Instant, counters: Vec<f64>) -> Vec<Option<f64>> {
        let out = match &self.last {
            Some((then, before)) if now > *then => {
                let secs = (now - *then).as_secs_f64();
                counters
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let b = before.get(i).copied().unwrap_or(0.0);
                        Some(if *c >= b { (c - b) / secs } else { c / secs })
                    })
                    .collect()
            }
            _ => vec![None; counters.len()],
        };
        self.last = Some((now, counters));
        out
    }
}

/// A histogram's cumulative bucket counts (`(upper bound, count)`, the last bound infinite),
/// summed over every label set of the family.
pub fn buckets(families: &[prometheus::proto::MetricFamily]) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for f in families {
        for m in f.get_metric() {
            let h = m.get_histogram();
            for (i, b) in h.get_bucket().iter().enumerate() {
                match out.get_mut(i) {
                    Some(slot) => slot.1 += b.cumulative_count() as f64,
                    None => out.push((b.upper_bound(), b.cumulative_count() as f64)),
                }
            }
            let n = h.get_bucket().len();
            match out.get_mut(n) {
                Some(slot) => slot.1 += h.get_sample_count() as f64,
                None => out.push((f64::INFINITY, h.get_sample_count() as f64)),
            }
        }
    }
    out
}

/// Quantile `q` of the observations between two bucket readings, interpolated within its
/// bucket as Prometheus' `histogram_quantile` does; `None` without observations. A quantile
/// in the infinite bucket is reported as the largest finite bound.
pub fn quantile(before: &[(f64, f64)], now: &[(f64, f64)], q: f64) -> Option<f64> {
    let delta: Vec<(f64, f64)> = now
        .iter()
        .enumerate()
        .map(|(i, (le, c))| (*le, c - before.get(i).map_or(0.0, |b| b.1)))
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for (le, c) in &delta {
        if *c >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let within = c - prev.1;
            let frac = if within > 0.0 {
                (rank - prev.1) / within
            } else {
                1.0
            };
            return Some(prev.0 + (le - prev.0) * frac);
        }
        prev = (*le, *c);
    }
    Some(prev.0)
}

/// A counter's value for a table cell: a whole number (a sum of nothing is `-0.0` in floats).
pub fn count(v: f64) -> String {
    format!("{}", v.max(0.0).round() as u64)
}

/// How long ago, in the largest unit that keeps a useful figure: `45 s`, `12 min`, `5 h`, `3 d`.
pub fn ago(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s} s"),
        120..=7_199 => format!("{} min", s / 60),
        7_200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// The sum of a counter family's values over the label sets whose `label` the `keep` test
/// accepts (every set when `label` is empty).
pub fn counter_sum(
    family: &impl prometheus::core::Collector,
    label: &str,
    keep: impl Fn(&str) -> bool,
) -> f64 {
    family
        .collect()
        .iter()
        .flat_map(|f| f.get_metric())
        .filter(|m| label.is_empty() || m.get_label().iter().any(|l| l.name() == label && keep(l.value())))
        .map(|m| m.get_counter().get_value())
        .sum()
}

/// A service's ring of samples and its start, from which [`page`] objects are made.
pub struct Recorder {
    pub history: std::sync::Arc<History>,
    started: Instant,
}

impl Recorder {
    pub fn new(series: &[&'static str]) -> Self {
        Self {
            history: std::sync::Arc::new(History::new(series.to_vec(), KEEP)),
            started: Instant::now(),
        }
    }

    /// The `page` object for this service now.
    pub fn page(&self, service: &str, version: &str, charts: &[Chart], tables: &[Table]) -> Value {
        page(service, version, self.started, charts, tables, &self.history)
    }

    pub fn started(&self) -> Instant {
        self.started
    }
}

/// `/stats`: the page itself, never cached.
pub fn html() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        axum::response::Html(PAGE),
    )
}

/// This machine's name, for the page's header.
pub fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The `page` object the page draws.
pub fn page(
    service: &str,
    version: &str,
    started: Instant,
    charts: &[Chart],
    tables: &[Table],
    history: &History,
) -> Value {
    json!({
        "service": service,
        "node": node_name(),
        "version": version,
        "uptime_seconds": started.elapsed().as_secs(),
        "now_ms": now_ms(),
        "charts": charts,
        "tables": tables,
        "history": history.to_json(),
    })
}

/// Samples every [`EVERY`] into `history` until `stop` completes.
pub async fn sample_forever(
    history: std::sync::Arc<History>,
    stop: impl std::future::Future<Output = ()>,
    mut sample: impl FnMut() -> Vec<Option<f64>> + Send,
) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => history.push(now_ms(), sample()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_and_names_its_series() {
        let h = History::new(vec!["a", "b"], 3);
        for i in 0..5 {
            h.push(i, vec![Some(i as f64), None]);
        }
        let j = h.to_json();
        assert_eq!(j["t"], json!([2, 3, 4]));
        assert_eq!(j["series"]["a"], json!([2.0, 3.0, 4.0]));
        assert_eq!(j["series"]["b"], json!([null, null, null]));
    }

    #[test]
    fn rates_table() {
        let t0 = Instant::now();
        let mut r = Rates::default();
        assert_eq!(r.next(t0, vec![10.0, 5.0]), vec![None, None]);
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(r.next(t1, vec![30.0, 5.0]), vec![Some(10.0), Some(0.0)]);
        // A counter that restarted counts from zero.
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(r.next(t2, vec![4.0, 5.0]), vec![Some(2.0), Some(0.0)]);
    }

    #[test]
    fn quantiles_table() {
        let before = [(0.1, 0.0), (0.5, 0.0), (1.0, 0.0), (f64::INFINITY, 0.0)];
        // 50 under 0.1 s, 40 more under 0.5 s, 10 under 1 s.
        let now = [(0.1, 50.0), (0.5, 90.0), (1.0, 100.0), (f64::INFINITY, 100.0)];
        let cases = [(0.5, 0.1), (0.25, 0.05), (0.9, 0.5), (0.99, 0.95), (1.0, 1.0)];
        for (q, want) in cases {
            let got = quantile(&before, &now, q).expect("observations");
            assert!((got - want).abs() < 1e-9, "q{q}: {got} want {want}");
        }
        assert_eq!(quantile(&now, &now, 0.5), None, "no observations in the interval");
        let slow = [(0.1, 50.0), (0.5, 90.0), (1.0, 100.0), (f64::INFINITY, 110.0)];
        assert_eq!(quantile(&before, &slow, 0.99), Some(1.0), "past the last bound");
    }

    #[test]
    fn counts_and_ages_table() {
        assert_eq!(count(-0.0), "0");
        assert_eq!(count(12.0), "12");
        for (secs, want) in [
            (0, "0 s"),
            (119, "119 s"),
            (120, "2 min"),
            (7_200, "2 h"),
            (172_800, "2 d"),
        ] {
            assert_eq!(ago(Duration::from_secs(secs)), want);
        }
    }

    #[test]
    fn the_page_is_self_contained() {
        assert!(PAGE.contains("stats.json"));
        for external in ["http://", "https://", "src=\"", "<link"] {
            let hits: Vec<&str> = PAGE
                .lines()
                .filter(|l| l.contains(external) && !l.contains("www.w3.org/2000/svg"))
                .collect();
            assert!(hits.is_empty(), "{external}: {hits:?}");
        }
    }
}
