//! Every blobsync metric, declared once, prefixed `blobsync_`.

use std::sync::LazyLock;

use prometheus::{register_int_gauge, IntGauge};

/// Items waiting in the persistent queue.
pub static BACKLOG: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "blobsync_backlog_objects",
        "Objects waiting in the replication queue"
    )
    .expect("register blobsync_backlog_objects")
});
