//! Tombstones (takedowns applied to every fileserver, kept past their retention until each has
//! applied them) and the checkpoints of anti-entropy and scrub, in the queue's `tombstones` and
//! `meta` trees.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{decode, encode, id, now_ms, Queue, QueueError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub created_ms: u64,
    /// Kept at least until then, and until every fileserver has applied it.
    pub keep_until_ms: u64,
    pub applied_everywhere: bool,
}

impl Queue {
    pub fn add_tombstone(
        &self,
        bucket: &str,
        key: &str,
        retention: Duration,
    ) -> Result<Tombstone, QueueError> {
        let now = now_ms();
        let t = Tombstone {
            created_ms: now,
            keep_until_ms: now + retention.as_millis() as u64,
            applied_everywhere: false,
        };
        self.tombstones.insert(id(bucket, key), encode(&t))?;
        Ok(t)
    }

    pub fn tombstone(&self, bucket: &str, key: &str) -> Result<Option<Tombstone>, QueueError> {
        Ok(self.tombstones.get(id(bucket, key))?.as_deref().and_then(decode))
    }

    pub fn mark_applied(&self, bucket: &str, key: &str) -> Result<(), QueueError> {
        self.tombstones.update_and_fetch(id(bucket, key), |old| {
            old.and_then(decode::<Tombstone>).map(|mut t| {
                t.applied_everywhere = true;
                encode(&t)
            })
        })?;
        Ok(())
    }

    /// Forgets tombstones past retention that every fileserver applied. Returns how many.
    pub fn gc_tombstones(&self, now: u64) -> Result<usize, QueueError> {
        let mut n = 0;
        for entry in self.tombstones.iter() {
            let (k, v) = entry?;
            if decode::<Tombstone>(&v).is_some_and(|t| t.applied_everywhere && t.keep_until_ms <= now) {
                self.tombstones.remove(k)?;
                n += 1;
            }
        }
        Ok(n)
    }

    pub fn tombstone_count(&self) -> usize {
        self.tombstones.len()
    }

    pub fn meta(&self, name: &str) -> Result<Option<String>, QueueError> {
        Ok(self
            .meta
            .get(name)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn set_meta(&self, name: &str, value: Option<&str>) -> Result<(), QueueError> {
        match value {
            Some(v) => self.meta.insert(name, v.as_bytes())?,
            None => self.meta.remove(name)?,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstones_are_kept_until_applied_and_expired() {
        let q = Queue::temporary().unwrap();
        let t = q.add_tombstone("uploads", "D1", Duration::from_secs(10)).unwrap();
        assert_eq!(
            q.gc_tombstones(t.keep_until_ms + 1).unwrap(),
            0,
            "not applied everywhere yet"
        );
        q.mark_applied("uploads", "D1").unwrap();
        assert_eq!(
            q.gc_tombstones(t.keep_until_ms - 1).unwrap(),
            0,
            "still within retention"
        );
        assert_eq!(q.gc_tombstones(t.keep_until_ms).unwrap(), 1);
        assert!(q.tombstone("uploads", "D1").unwrap().is_none());
    }
}
