//! A takedown tells every imagehost first (`POST /takedowns` on each one's admin listener), so
//! that no imagehost renders or serves the image again from its hot cache or a fileserver that
//! missed the delete, before the edges drop their copies: an edge refilling after its ban then
//! only ever gets the 451.

use service::Secret;

use crate::fanout::{self, Outcomes};
use crate::metrics::IMAGEHOST_NOTICES;

pub struct ImagehostNotifier {
    client: reqwest::Client,
    imagehosts: Vec<String>,
    token: Option<Secret>,
}

impl ImagehostNotifier {
    /// `token` is blobsync's own `server.token`: imagehosts pull the list with it too.
    pub fn new(imagehosts: &[String], token: Option<Secret>) -> Result<Self, String> {
        Ok(Self {
            client: fanout::client("imagehost notice")?,
            imagehosts: imagehosts.to_vec(),
            token,
        })
    }

    /// Sends the taken-down source key to every imagehost; each one's answer status, or why not.
    pub async fn announce(&self, key: &str) -> Outcomes {
        let body = serde_json::json!({ "keys": [key] });
        let requests = self.imagehosts.iter().map(|host| {
            let mut rb = self.client.post(format!("http://{host}/takedowns")).json(&body);
            if let Some(t) = &self.token {
                rb = rb.bearer_auth(t.expose());
            }
            (host.clone(), rb)
        });
        fanout::send_all(requests.collect(), &IMAGEHOST_NOTICES, "imagehost notice", key).await
    }
}
