//! The client side of blobsync's takedown list (`GET <url>?since=N`, answered a page at a time as
//! `{"takedowns":[{"key":…},…],"last":N,"epoch":"…"}`), pulled by imagehost and the edge at start
//! and every poll interval; what each does with the keys is its own. `epoch` names the list: when
//! it changes (blobsync's queue was lost and the list started again), a node's position in the
//! old list means nothing and it pulls the new one from the start ([`start_from`]).

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
    #[serde(default)]
    epoch: Option<String>,
}

/// One page of the list: its keys (none: up to date), the number of its last entry, and the
/// list's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    pub keys: Vec<String>,
    pub last: u64,
    pub epoch: Option<String>,
}

/// Where a node starts pulling from: its position, unless the list it reached that position in
/// is not the list blobsync has now (then from the start).
pub fn start_from(last: u64, saved_epoch: Option<&str>, epoch: Option<&str>) -> u64 {
    match (saved_epoch, epoch) {
        (Some(saved), Some(now)) if saved != now => 0,
        _ => last,
    }
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

    /// The page of entries after list number `since`.
    pub async fn page(&self, since: u64) -> Result<Pulled, String> {
        let mut req = self.client.get(&self.url).query(&[("since", since)]);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()));
        }
        let page: Page = resp.json().await.map_err(|e| e.to_string())?;
        let last = if page.takedowns.is_empty() {
            since
        } else {
            page.last
        };
        Ok(Pulled {
            keys: page.takedowns.into_iter().map(|e| e.key).collect(),
            last,
            epoch: page.epoch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_list_is_pulled_from_the_start() {
        assert_eq!(start_from(42, Some("a"), Some("a")), 42);
        assert_eq!(start_from(42, Some("a"), Some("b")), 0, "the list was made again");
        assert_eq!(
            start_from(42, None, Some("b")),
            42,
            "a position kept before epochs existed"
        );
        assert_eq!(
            start_from(42, Some("a"), None),
            42,
            "an older blobsync without epochs"
        );
    }

    #[test]
    fn the_first_pull_is_retried_sooner() {
        let minute = Duration::from_secs(60);
        assert_eq!(next_wait(false, minute), FIRST_PULL_RETRY);
        assert_eq!(next_wait(true, minute), minute);
        assert_eq!(next_wait(false, Duration::from_secs(1)), Duration::from_secs(1));
    }
}
