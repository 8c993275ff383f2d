//! The write path: one upload to every fileserver in parallel, acknowledged at the write quorum.
//!
//! Each fileserver first answers whether it already holds the key (re-uploads are cheap and
//! idempotent: keys are content hashes), in the put itself for a body held in memory
//! (`PutOptions::if_absent`); otherwise the body streams to it from the spool and the digest it
//! computed is checked against ours. The response goes out once `quorum` servers hold
//! the object whole; the other writes finish in the background. A server that failed is logged,
//! counted and recorded for repair.

use std::sync::Arc;

use blobstore::{Key, PutOptions, StoreError};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::{WRITES, WRITE_REPAIRS};
use crate::replication::Replication;
use crate::stores::Fileserver;
use crate::upload::spool::Spooled;

/// How one fileserver's write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Written,
    AlreadyPresent,
    Failed(String),
}

/// What the caller needs to answer the client.
#[derive(Debug)]
pub struct Acknowledged {
    pub holders: usize,
}

/// Writes `body` under `key` to every server, each put checked to return `sha256` (the digest
/// `opts` asks for); returns once `quorum` hold it, or an error naming
/// every failure once that can no longer happen. The writes still running go on in the
/// background; when all are done, servers that missed the object are reported to replication.
pub async fn write_all(
    servers: &[Fileserver],
    key: &Key,
    body: Arc<Spooled>,
    sha256: [u8; 32],
    opts: PutOptions,
    quorum: usize,
    replication: Option<Arc<Replication>>,
) -> Result<Acknowledged, String> {
    let (tx, mut rx) = mpsc::channel(servers.len().max(1));
    for fs in servers {
        let (fs, key, body, opts, tx) = (fs.clone(), key.clone(), body.clone(), opts.clone(), tx.clone());
        tokio::spawn(async move {
            let outcome = write_one(&fs, &key, &body, sha256, &opts).await;
            match &outcome {
                Outcome::Written => WRITES.with_label_values(&[fs.name.as_str(), "written"]).inc(),
                Outcome::AlreadyPresent => WRITES.with_label_values(&[fs.name.as_str(), "present"]).inc(),
                Outcome::Failed(reason) => {
                    WRITES.with_label_values(&[fs.name.as_str(), "failed"]).inc();
                    WRITE_REPAIRS.with_label_values(&[fs.name.as_str()]).inc();
                    tracing::warn!(
                        fileserver = %fs.name, key = %key, reason = %reason,
                        "upload write failed; the object needs repair on this fileserver"
                    );
                }
            }
            let _ = tx.send(outcome).await;
        });
    }
    drop(tx);
    let total = servers.len();
    let (ack_tx, ack_rx) = oneshot::channel();
    let key = key.clone();
    tokio::spawn(async move {
        let (mut ok, mut failures) = (0, Vec::new());
        let mut ack = Some(ack_tx);
        while let Some(outcome) = rx.recv().await {
            match outcome {
                Outcome::Written | Outcome::AlreadyPresent => {
                    ok += 1;
                    if ok >= quorum {
                        if let Some(a) = ack.take() {
                            let _ = a.send(Ok(Acknowledged { holders: ok }));
                        }
                    }
                }
                Outcome::Failed(reason) => failures.push(reason),
            }
        }
        if let Some(a) = ack.take() {
            let _ = a.send(Err(format!(
                "{ok} of {total} fileservers hold the upload, {quorum} needed: {}",
                failures.join("; ")
            )));
        }
        // Some fileserver missed it, but at least one holds it: replication copies it over.
        if !failures.is_empty() && ok > 0 {
            if let Some(r) = replication {
                r.object_changed(key.as_str()).await;
            }
        }
    });
    ack_rx
        .await
        .unwrap_or_else(|_| Err("write task ended early".into()))
}

async fn write_one(
    fs: &Fileserver,
    key: &Key,
    body: &Spooled,
    sha256: [u8; 32],
    opts: &PutOptions,
) -> Outcome {
    // A re-upload is not written again. For a body in memory the store itself looks, in the
    // call that would write (a directory store then makes one trip to its disk, not two).
    let looks = opts.known.is_some();
    if !looks {
        match fs.uploads.head(key).await {
            Ok(meta) if meta.size == body.len() => return Outcome::AlreadyPresent,
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Outcome::Failed(format!("{}: {e}", fs.name)),
        }
    }
    let stream = match body.stream().await {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(format!("{}: reading the spool: {e}", fs.name)),
    };
    let opts = PutOptions {
        if_absent: looks,
        ..opts.clone()
    };
    match fs.uploads.put(key, stream, &opts).await {
        Ok(put) if put.present => Outcome::AlreadyPresent,
        Ok(put) if put.digests.sha256 == sha256 => Outcome::Written,
        Ok(_) => {
            // Cannot happen unless the spool was damaged; never leave a wrong object behind.
            let _ = fs.uploads.delete(key).await;
            Outcome::Failed(format!(
                "{}: stored bytes did not hash to the upload's digest",
                fs.name
            ))
        }
        Err(e) => Outcome::Failed(format!("{}: {e}", fs.name)),
    }
}
