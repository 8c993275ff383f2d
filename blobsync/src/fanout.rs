//! One takedown message sent to several nodes at once (the notice to every imagehost, the ban to
//! every edge): each node's answer status or why not, counted by outcome, failures logged.

use std::time::Duration;

use prometheus::IntCounterVec;

/// Each node's answer status (a 2xx), or why it was not told.
pub type Outcomes = Vec<(String, Result<u16, String>)>;

/// The client for one kind of message: a 5 s deadline, never through a proxy.
pub fn client(what: &str) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .map_err(|e| format!("{what} client: {e}"))
}

/// Sends every `(node, request)` in parallel; `what` names the message in logs.
pub async fn send_all(
    requests: Vec<(String, reqwest::RequestBuilder)>,
    counter: &IntCounterVec,
    what: &str,
    key: &str,
) -> Outcomes {
    let sends = requests.into_iter().map(|(node, rb)| async move {
        let r = match rb.send().await {
            Ok(resp) if resp.status().is_success() => Ok(resp.status().as_u16()),
            Ok(resp) => Err(format!("status {}", resp.status())),
            Err(e) => Err(e.to_string()),
        };
        counter
            .with_label_values(&[if r.is_ok() { "ok" } else { "failed" }])
            .inc();
        if let Err(e) = &r {
            tracing::warn!(%node, %key, error = %e, "takedown: {what} failed");
        }
        (node, r)
    });
    futures::future::join_all(sends).await
}
