//! The permanent takedown list: every source key ever taken down, numbered in the order it was
//! taken down, so that imagehosts and edges that were away catch up from the last number they saw
//! (`GET /takedowns?since=N`), and so that copies of anything derived from a taken-down key (the
//! `DQm…_Cover_WEBP_320` variants in the proxy bucket) are refused and deleted wherever found.
//!
//! Unlike a tombstone, an entry is never garbage-collected: a takedown is a legal fact, and a
//! re-upload of the same bytes months later must still be refused.

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::{decode, encode, now_ms, Queue, QueueError};

/// One entry of the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakenDown {
    /// Increasing with every new takedown (not contiguous).
    pub seq: u64,
    /// The source key: `DQm…` for an upload, `U…` for a proxied original.
    pub key: String,
    pub at_ms: u64,
}

/// The key whose takedown covers `key`: its source, everything before the first `_`.
pub fn source_of(key: &str) -> &str {
    key.split('_').next().unwrap_or(key)
}

impl Queue {
    /// Records that `key` (and everything derived from it) is taken down; idempotent: a key taken
    /// down twice keeps its first number. Durable after [`Queue::flush`].
    pub fn add_takedown(&self, key: &str) -> Result<TakenDown, QueueError> {
        let key = source_of(key);
        let _one_at_a_time = self.adding_takedown.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = self.takedown(key)? {
            return Ok(t);
        }
        // sled's ids only grow, across restarts too; 0 is kept for "nothing seen yet".
        let entry = TakenDown {
            seq: self.db.generate_id()? + 1,
            key: key.to_string(),
            at_ms: now_ms(),
        };
        let (seq, value) = (entry.seq.to_be_bytes(), encode(&entry));
        // Both trees or neither: a key indexed without its list entry would never be pulled.
        (&self.takedown_keys, &self.takedowns)
            .transaction(|(keys, list)| {
                keys.insert(key.as_bytes(), &seq[..])?;
                list.insert(&seq[..], value.as_slice())?;
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => e,
                TransactionError::Abort(()) => sled::Error::Unsupported("takedown write aborted".into()),
            })?;
        Ok(entry)
    }

    /// The takedown covering `key` (by its source), if any.
    pub fn takedown(&self, key: &str) -> Result<Option<TakenDown>, QueueError> {
        let Some(seq) = self.takedown_keys.get(source_of(key).as_bytes())? else {
            return Ok(None);
        };
        Ok(self.takedowns.get(seq)?.as_deref().and_then(decode))
    }

    /// Whether `key` or its source was taken down.
    pub fn is_taken_down(&self, key: &str) -> Result<bool, QueueError> {
        Ok(self.takedown_keys.contains_key(source_of(key).as_bytes())?)
    }

    /// The list's identity, made the first time it is asked for in this database. A queue lost
    /// and started empty numbers its takedowns from the start again; nodes that kept the number
    /// they had reached in the old list see a new identity and pull the new one from the start,
    /// instead of skipping every entry numbered below what they saw.
    pub fn takedown_epoch(&self) -> Result<String, QueueError> {
        const NAME: &str = "takedown_epoch";
        if let Some(e) = self.meta(NAME)? {
            return Ok(e);
        }
        let made = format!("{:x}-{:x}", now_ms(), self.db.generate_id()?);
        // Two first callers at once: the first write wins, both answer with it.
        let _ = self
            .meta
            .compare_and_swap(NAME, None as Option<&[u8]>, Some(made.as_bytes()))?;
        Ok(self.meta(NAME)?.unwrap_or(made))
    }

    /// Entries numbered after `since`, oldest first, at most `limit`.
    pub fn takedowns_since(&self, since: u64, limit: usize) -> Result<Vec<TakenDown>, QueueError> {
        let start = since.saturating_add(1).to_be_bytes();
        self.takedowns
            .range(start..)
            .take(limit)
            .map(|e| e.map(|(_, v)| decode::<TakenDown>(&v)))
            .filter_map(Result::transpose)
            .collect::<Result<_, _>>()
            .map_err(QueueError::from)
    }

    pub fn takedown_count(&self) -> usize {
        self.takedowns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_once_listed_in_order_and_covering_variants() {
        let q = Queue::temporary().unwrap();
        let a = q.add_takedown("DQmA").unwrap();
        let b = q.add_takedown("Ub_100x0").unwrap();
        assert!(b.seq > a.seq && a.seq > 0);
        assert_eq!(b.key, "Ub", "a variant takes its source down");
        assert_eq!(q.add_takedown("DQmA").unwrap(), a, "idempotent");
        assert_eq!(q.takedown_count(), 2);
        for (key, want) in [
            ("DQmA", true),
            ("DQmA_Cover_WEBP_320", true),
            ("Ub", true),
            ("Ub_Fit_PNG_5", true),
            ("DQmB", false),
            ("DQmAx", false),
        ] {
            assert_eq!(q.is_taken_down(key).unwrap(), want, "{key}");
        }
        let all = q.takedowns_since(0, 10).unwrap();
        assert_eq!(
            all.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(),
            ["DQmA", "Ub"]
        );
        assert_eq!(q.takedowns_since(a.seq, 10).unwrap(), vec![b.clone()]);
        assert!(q.takedowns_since(b.seq, 10).unwrap().is_empty());
        let epoch = q.takedown_epoch().unwrap();
        assert_eq!(q.takedown_epoch().unwrap(), epoch, "stable");
        assert_ne!(
            Queue::temporary().unwrap().takedown_epoch().unwrap(),
            epoch,
            "a new list, a new identity"
        );
        assert_eq!(q.takedowns_since(0, 1).unwrap().len(), 1);
    }
}
