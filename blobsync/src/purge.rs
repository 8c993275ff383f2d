//! A takedown also clears every edge: a ban by tag (`BAN /` with `X-Ban-Tag: <key>`) removes every
//! cached answer derived from the key, whatever its URL: each filename and spelling of
//! `/<key>/…`, and every `/p/`, legacy and avatar/cover rendering of it (imagehost tags each answer
//! with the keys it came from). Sent to each configured edge in parallel.

use std::time::Duration;

use crate::config::TakedownConfig;
use crate::metrics::EDGE_PURGES;

/// Marks the ban as already fanned out, so an edge does not forward it to its peers again.
const FORWARDED: &str = "x-edge-purge-forwarded";
/// The edge's ban-by-tag header.
const TAG: &str = "x-ban-tag";

pub struct EdgePurger {
    client: reqwest::Client,
    config: TakedownConfig,
}

impl EdgePurger {
    pub fn new(config: &TakedownConfig) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .map_err(|e| format!("edge purge client: {e}"))?;
        Ok(Self {
            client,
            config: config.clone(),
        })
    }

    /// Bans everything tagged `key` on every edge; each edge's answer status, or why it failed.
    pub async fn ban(&self, key: &str) -> Vec<(String, Result<u16, String>)> {
        let sends = self.config.purge_edges.iter().map(|edge| {
            let mut rb = self
                .client
                .request(
                    reqwest::Method::from_bytes(b"BAN").expect("BAN is a valid method"),
                    format!("http://{edge}/"),
                )
                .header(TAG, key)
                .header(FORWARDED, "1");
            if let Some(t) = &self.config.purge_token {
                rb = rb.bearer_auth(t.expose());
            }
            async move {
                let r = match rb.send().await {
                    Ok(resp) if resp.status().is_success() => Ok(resp.status().as_u16()),
                    Ok(resp) => Err(format!("status {}", resp.status())),
                    Err(e) => Err(e.to_string()),
                };
                let outcome = if r.is_ok() { "ok" } else { "failed" };
                EDGE_PURGES.with_label_values(&[outcome]).inc();
                if let Err(e) = &r {
                    tracing::warn!(%edge, %key, error = %e, "takedown: edge purge failed");
                }
                (edge.clone(), r)
            }
        });
        futures::future::join_all(sends).await
    }
}
