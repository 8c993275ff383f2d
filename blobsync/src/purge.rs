//! A takedown also clears every edge: a ban by tag (`BAN /` with `X-Ban-Tag: <key>`) removes every
//! cached answer derived from the key, whatever its URL: each filename and spelling of
//! `/<key>/…`, and every `/p/`, legacy and avatar/cover rendering of it (imagehost tags each answer
//! with the keys it came from). Sent to each configured edge in parallel.

use crate::config::TakedownConfig;
use crate::fanout::{self, Outcomes};
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
        Ok(Self {
            client: fanout::client("edge purge")?,
            config: config.clone(),
        })
    }

    /// Bans everything tagged `key` on every edge; each edge's answer status, or why it failed.
    pub async fn ban(&self, key: &str) -> Outcomes {
        let requests = self.config.purge_edges.iter().map(|edge| {
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
            (edge.clone(), rb)
        });
        fanout::send_all(requests.collect(), &EDGE_PURGES, "edge ban", key).await
    }
}
