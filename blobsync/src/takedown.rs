//! Carrying out a takedown, in the order that leaves no window: every imagehost is told first (it
//! answers 451 from then on, hot cache or not), then the object and everything derived from it
//! (`<key>_…` variants) are deleted from every mirrored bucket on every fileserver, then every edge
//! drops whatever is tagged with the key. A variant found later (a fileserver that was down) is
//! deleted on its own, by the same queue.

use std::sync::Arc;

use blobstore::{Key, ListRequest};

use crate::copy::Replicator;
use crate::error::SyncError;
use crate::fanout::Outcomes;
use crate::imagehosts::ImagehostNotifier;
use crate::metrics::{DELETES, VARIANTS_DELETED};
use crate::purge::EdgePurger;
use crate::queue::{source_of, Queue};

/// Names asked for per page when listing a source's variants. A source has a handful (its sizes,
/// covers, avatars), and an S3 server may read as many entries as the page allows before it
/// looks at the prefix: Garage reads `max_keys + 1` entries from its table from the prefix on,
/// so a page of 1,000 cost 3.7 ms per listing at 200,000 objects, most of a takedown's S3 time,
/// for a prefix that matched nothing. More variants than this take more pages.
pub const VARIANTS_PAGE: usize = 32;

/// Everything a takedown touches: the fileservers (through the replicator), the queue's
/// tombstones, and the imagehosts and edges to tell.
pub struct Takedowns {
    /// Every mirrored bucket: a source key is deleted from all of them.
    pub buckets: Vec<String>,
    pub replicator: Arc<Replicator>,
    pub queue: Arc<Queue>,
    /// These imagehosts are told first...
    pub imagehosts: ImagehostNotifier,
    /// ...and these edges ban the key (by tag) last.
    pub edges: EdgePurger,
}

/// What one attempt at a takedown did.
#[derive(Debug)]
pub struct Takedown {
    pub deleted: Result<(), SyncError>,
    /// Derived objects deleted (or why listing or deleting them failed).
    pub variants: Result<usize, SyncError>,
    pub imagehosts: Outcomes,
    pub edges: Outcomes,
}

/// What a takedown attempt did, as the API answers it.
#[derive(Debug)]
pub struct Report {
    pub deleted_everywhere: bool,
    /// Derived objects deleted, or why not.
    pub variants: Result<usize, String>,
    pub imagehosts: Outcomes,
    pub edges: Outcomes,
}

impl Takedown {
    /// Done only when every fileserver deleted it and its variants, and every imagehost and edge
    /// acknowledged it; with the report of what was done.
    pub fn finish(self) -> (Result<(), SyncError>, Report) {
        let report = Report {
            deleted_everywhere: self.deleted.is_ok() && self.variants.is_ok(),
            variants: self.variants.as_ref().map(|n| *n).map_err(ToString::to_string),
            imagehosts: self.imagehosts,
            edges: self.edges,
        };
        let mut errors: Vec<SyncError> = self.deleted.err().into_iter().collect();
        errors.extend(self.variants.err());
        let told = |kind: &str, list: &Outcomes| -> Vec<SyncError> {
            list.iter()
                .filter_map(|(node, r)| {
                    r.as_ref().err().map(|reason| SyncError::NotAcknowledged {
                        who: format!("{kind} {node}"),
                        reason: reason.clone(),
                    })
                })
                .collect()
        };
        errors.extend(told("imagehost", &report.imagehosts));
        errors.extend(told("edge", &report.edges));
        (SyncError::all(errors), report)
    }
}

impl Takedowns {
    /// Takes `key` down in `bucket`. For a source key (the taken-down object itself) the whole
    /// cluster is told and every derived object deleted; for a derived key (a variant found on a
    /// fileserver after its source was taken down) only that object is deleted everywhere.
    ///
    /// Every retry redoes every step, so an edge that refilled from an imagehost or fileserver
    /// that was unreachable (or that was down itself and kept the image on disk) is cleared once
    /// the last copy is gone.
    pub async fn take_down(&self, bucket: &str, key: &Key) -> Takedown {
        let source = source_of(key.as_str()) == key.as_str();
        let imagehosts = if source {
            self.imagehosts.announce(key.as_str()).await
        } else {
            Vec::new()
        };
        // A source key is deleted from every mirrored bucket, whichever the request named: a
        // takedown sent to the wrong bucket must not leave the original behind.
        let deleted = if source {
            let mut errors = Vec::new();
            for b in &self.buckets {
                if let Err(e) = self.replicator.delete(b, key).await {
                    errors.push(e);
                }
            }
            SyncError::all(errors)
        } else {
            self.replicator.delete(bucket, key).await
        };
        let variants = if source {
            self.delete_derived(key.as_str()).await
        } else {
            Ok(0)
        };
        if deleted.is_ok() && variants.is_ok() {
            let _ = self.queue.mark_applied(bucket, key.as_str());
            DELETES.inc();
            tracing::info!(%bucket, %key, "takedown applied on every fileserver");
        }
        let edges = if source {
            self.edges.ban(key.as_str()).await
        } else {
            Vec::new()
        };
        Takedown {
            deleted,
            variants,
            imagehosts,
            edges,
        }
    }

    /// Deletes every `<source>_…` object in every mirrored bucket on every fileserver; how many
    /// were found.
    async fn delete_derived(&self, source: &str) -> Result<usize, SyncError> {
        let mut found = 0;
        let mut errors = Vec::new();
        for server in &self.replicator.servers {
            for (bucket, store) in &server.buckets {
                let mut req = ListRequest {
                    prefix: store.layout().variants_prefix(source),
                    start_after: None,
                    max_keys: VARIANTS_PAGE,
                };
                loop {
                    let page = match store.list(&req).await {
                        Ok(p) => p,
                        Err(e) => {
                            errors.push(SyncError::store(&format!("{}/{bucket}", server.name), e));
                            break;
                        }
                    };
                    for entry in &page.entries {
                        match store.delete(&entry.key).await {
                            Ok(()) => {
                                found += 1;
                                VARIANTS_DELETED.inc();
                            }
                            Err(e) => errors.push(SyncError::store(&format!("{}/{bucket}", server.name), e)),
                        }
                    }
                    match page.next {
                        Some(n) => req.start_after = Some(n),
                        None => break,
                    }
                }
            }
        }
        SyncError::all(errors).map(|()| found)
    }
}
