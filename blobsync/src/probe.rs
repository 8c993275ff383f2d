//! Whether each fileserver answers: one cheap probe per bucket store (a one-key listing on S3,
//! one directory entry read on a directory), bounded in time, for
//! `/status` and the `blobsync_fileserver_up` gauge (refreshed by the housekeeping loop).

use std::time::Duration;

use crate::copy::Replicator;
use crate::metrics::FILESERVER_UP;

/// How long one probe may take before its store counts as unavailable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Each bucket store's name with whether it answered its probe in time; the gauge is
/// set from the same answers.
pub async fn fileservers(replicator: &Replicator) -> Vec<(String, bool)> {
    let probes = replicator
        .servers
        .iter()
        .flat_map(|s| s.buckets.values())
        .map(|st| async move {
            let up = matches!(tokio::time::timeout(PROBE_TIMEOUT, st.probe()).await, Ok(Ok(())));
            (st.describe().to_string(), up)
        });
    let found = futures::future::join_all(probes).await;
    for (name, up) in &found {
        FILESERVER_UP.with_label_values(&[name]).set(i64::from(*up));
    }
    found
}
