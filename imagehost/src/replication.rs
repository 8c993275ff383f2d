//! Telling blobsync about objects a fileserver missed: an S3 event-notification record POSTed to
//! its intake (the same format MinIO's webhook sends). Best effort with a few retries: blobsync's
//! anti-entropy pass finds anything a lost event would have reported.

use std::time::Duration;

use service::Secret;

use crate::metrics::REPLICATION_EVENTS;

pub struct Replication {
    client: reqwest::Client,
    url: String,
    token: Option<Secret>,
    bucket: String,
}

impl Replication {
    pub fn new(events_url: &str, token: Option<Secret>, bucket: &str) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            url: events_url.to_string(),
            token,
            bucket: bucket.to_string(),
        })
    }

    /// Reports that `key` in the uploads bucket changed and may be missing somewhere.
    pub async fn object_changed(&self, key: &str) {
        let body = serde_json::json!({
            "EventName": "s3:ObjectCreated:Put",
            "Key": format!("{}/{key}", self.bucket),
            "Records": [{
                "eventVersion": "2.0",
                "eventSource": "hive:imagehost",
                "eventName": "s3:ObjectCreated:Put",
                "s3": {"bucket": {"name": self.bucket}, "object": {"key": key}},
            }],
        });
        for attempt in 0..3u32 {
            let mut req = self.client.post(&self.url).json(&body);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t.expose());
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => {
                    REPLICATION_EVENTS.with_label_values(&["sent"]).inc();
                    return;
                }
                Ok(r) => tracing::warn!(status = %r.status(), key, "blobsync refused the change event"),
                Err(e) => tracing::warn!(error = %e, key, "could not reach blobsync"),
            }
            tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
        }
        REPLICATION_EVENTS.with_label_values(&["lost"]).inc();
        tracing::error!(
            key,
            "change event not delivered; blobsync's anti-entropy pass will find the gap"
        );
    }
}
