//! Every edge metric, declared once, prefixed `edge_`.

use std::sync::LazyLock;

use prometheus::{register_int_counter_vec, IntCounterVec};

/// Responses sent to clients, by status.
pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "edge_responses_total",
        "Responses sent to clients by status",
        &["status"]
    )
    .expect("register edge_responses_total")
});
