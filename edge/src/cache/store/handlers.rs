//! The handlers pingora reads and writes cached bodies through: a hit hands out slices of the
//! stored `Bytes` (seekable, for ranges); a miss collects the body and, when pingora finishes
//! it, stores the object in memory and writes it through to the disk tier.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::cache::key::HashBinary;
use pingora::cache::storage::{HandleHit, HandleMiss, HitHandler, MissFinishType};
use pingora::cache::trace::SpanHandle;
use pingora::cache::{CacheKey, CacheMeta, Storage};
use pingora::{Error, ErrorType, Result};

use super::{Entry, Store};

/// A hit through pingora, with the object's meta parsed again (`None`: it could not be).
pub(super) fn hit(entry: Arc<Entry>) -> Option<(CacheMeta, HitHandler)> {
    let meta = entry.meta()?;
    let end = entry.body.len();
    Some((
        meta,
        Box::new(Hit {
            entry,
            start: 0,
            end,
            done: false,
        }),
    ))
}

/// A hit on a complete object: the body is handed out as a slice of the stored `Bytes`.
struct Hit {
    entry: Arc<Entry>,
    start: usize,
    end: usize,
    done: bool,
}

#[async_trait]
impl HandleHit for Hit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        Ok(Some(self.entry.body.slice(self.start..self.end)))
    }

    async fn finish(
        self: Box<Self>,
        _s: &'static (dyn Storage + Sync),
        _k: &CacheKey,
        _t: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let len = self.entry.body.len();
        if start >= len {
            return Error::e_explain(
                ErrorType::InternalError,
                format!("seek start {start} >= length {len}"),
            );
        }
        self.start = start;
        self.end = end.map_or(len, |e| e.min(len));
        self.done = false;
        Ok(())
    }

    fn get_eviction_weight(&self) -> usize {
        self.entry.weight()
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

/// Collects a body from upstream; the object becomes visible only when it is complete.
pub(super) struct Miss {
    pub(super) store: &'static Store,
    pub(super) primary: HashBinary,
    /// The object as its answer's header describes it; its body is added when it is complete.
    pub(super) entry: Entry,
    /// Its meta as pingora serializes it, for the disk tier (`None`: there is none).
    pub(super) meta_bin: Option<(Vec<u8>, Vec<u8>)>,
    pub(super) body: BytesMut,
    /// Registered as under way until stored (or dropped unfinished).
    pub(super) _fetch: super::fetching::Fetch,
}

#[async_trait]
impl HandleMiss for Miss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        if self.body.len() + data.len() > self.store.max_object {
            return Error::e_explain(ErrorType::InternalError, "object larger than cache.max_object");
        }
        self.body.extend_from_slice(&data);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<MissFinishType> {
        let Miss {
            store,
            primary,
            mut entry,
            meta_bin,
            body,
            _fetch: fetch,
        } = *self;
        // Without a length the buffer grew by doubling: keep an exact copy instead of the slack
        // (what the charge counts is the allocation a body of its length gets).
        entry.body = if body.capacity() > super::weight::allocated(body.len()) {
            Bytes::copy_from_slice(&body)
        } else {
            body.freeze()
        };
        let variance = entry.variance;
        let entry = Arc::new(entry);
        let weight = entry.weight();
        store.insert(primary, entry.clone());
        if let Some(meta) = meta_bin {
            store.save_to_disk((primary, variance), &entry, meta).await;
        }
        // Stored in memory and on disk: from here the lurker's passes see it.
        drop(fetch);
        Ok(MissFinishType::Created(weight))
    }
}
