//! The client side of blobsync's takedown list (`GET <url>?since=N`, answered a page at a time as
//! `{"takedowns":[{"key":…},…],"last":N}`), pulled by imagehost and the edge at start and every
//! poll interval; what each does with the keys is its own.

use std::time::Duration;

use serde::Deserialize;

use crate::Secret;

/// How soon a failed first pull is tried again: a node is not fully up until one succeeds.
pub const FIRST_PULL_RETRY: Duration = Duration::from_secs(2);

/// The wait before the next pull: `interval`, or [`FIRST_PULL_RETRY`] until a pull has succeeded.
pub fn next_wait(pulled: bool, interval: Duration) -> Duration {
    if pulled {
        interval
    } else {
        interval.min(FIRST_PULL_RETRY)
    }
}

#[derive(Deserialize)]
struct Page {
    takedowns: Vec<Entry>,
    last: u64,
}

#[derive(Deserialize)]
struct Entry {
    key: String,
}

/// Where the list is and how to ask for it.
pub struct Feed {
    client: reqwest::Client,
    url: String,
    token: Option<Secret>,
}

impl Feed {
    pub fn new(url: &str, token: Option<Secret>) -> Result<Feed, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .map_err(|e| format!("takedown list client: {e}"))?;
        Ok(Feed {
            client,
            url: url.to_string(),
            token,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The page of entries after list number `since`: its keys and its last number, or `None`
    /// when there is nothing newer. Callers keep a page's keys before asking for the next one.
    pub async fn page(&self, since: u64) -> Result<Option<(Vec<String>, u64)>, String> {
        let mut req = self.client.get(&self.url).query(&[("since", since)]);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()));
        }
        let page: Page = resp.json().await.map_err(|e| e.to_string())?;
        if page.takedowns.is_empty() {
            return Ok(None);
        }
        Ok(Some((
            page.takedowns.into_iter().map(|e| e.key).collect(),
            page.last,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_pull_is_retried_sooner() {
        let minute = Duration::from_secs(60);
        assert_eq!(next_wait(false, minute), FIRST_PULL_RETRY);
        assert_eq!(next_wait(true, minute), minute);
        assert_eq!(next_wait(false, Duration::from_secs(1)), Duration::from_secs(1));
    }
}
