//! Every imagehost metric, declared once, prefixed `imagehost_`.

use std::sync::LazyLock;

use prometheus::{register_int_counter_vec, IntCounterVec};

/// HTTP responses by route and status class.
pub static RESPONSES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "imagehost_responses_total",
        "HTTP responses by route and status",
        &["route", "status"]
    )
    .expect("register imagehost_responses_total")
});

/// Fileserver health probes by server and outcome.
pub static FILESERVER_PROBES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "imagehost_fileserver_probes_total",
        "Fileserver readiness probes by server and outcome",
        &["server", "outcome"]
    )
    .expect("register imagehost_fileserver_probes_total")
});
