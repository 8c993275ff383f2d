//! A takedown tells every imagehost first (`POST /takedowns` on each one's admin listener), so
//! that no imagehost renders or serves the image again from its hot cache or a fileserver that
//! missed the delete, before the edges drop their copies: an edge refilling after its ban then
//! only ever gets the 451.

use std::time::Duration;

use service::Secret;

use crate::metrics::IMAGEHOST_NOTICES;

pub struct ImagehostNotifier {
    client: reqwest::Client,
    imagehosts: Vec<String>,
    token: Option<Secret>,
}

impl ImagehostNotifier {
    /// `token` is blobsync's own `server.token`: imagehosts pull the list with it too.
    pub fn new(imagehosts: &[String], token: Option<Secret>) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .map_err(|e| format!("imagehost notice client: {e}"))?;
        Ok(Self {
            client,
            imagehosts: imagehosts.to_vec(),
            token,
        })
    }

    /// Sends the taken-down source key to every imagehost; each one's answer status, or why not.
    pub async fn announce(&self, key: &str) -> Vec<(String, Result<u16, String>)> {
        let body = serde_json::json!({ "keys": [key] });
        let sends = self.imagehosts.iter().map(|host| {
            let mut rb = self.client.post(format!("http://{host}/takedowns")).json(&body);
            if let Some(t) = &self.token {
                rb = rb.bearer_auth(t.expose());
            }
            async move {
                let r = match rb.send().await {
                    Ok(resp) if resp.status().is_success() => Ok(resp.status().as_u16()),
                    Ok(resp) => Err(format!("status {}", resp.status())),
                    Err(e) => Err(e.to_string()),
                };
                let outcome = if r.is_ok() { "ok" } else { "failed" };
                IMAGEHOST_NOTICES.with_label_values(&[outcome]).inc();
                if let Err(e) = &r {
                    tracing::warn!(imagehost = %host, %key, error = %e, "takedown: imagehost not told");
                }
                (host.clone(), r)
            }
        });
        futures::future::join_all(sends).await
    }
}
