//! blobsync's error types: [`Error`] at the crate's boundary (start-up and one-shot runs), and
//! [`SyncError`] for one object's copy, delete or check, typed so that what may succeed later (a
//! fileserver down) stays apart from what will not (an object over the size limit).

use blobstore::StoreError;

use crate::queue::QueueError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot open the queue database at {path}: {source}")]
    Queue { path: String, source: QueueError },
    #[error("cannot open fileserver bucket: {0}")]
    Store(#[from] StoreError),
    #[error("I/O error: {0}")]
    Io(std::io::Error),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error("{0}")]
    Daemon(String),
}

/// Why work on one object (or one pass) did not finish.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A fileserver failed or refused; its own error says which.
    #[error("{server}: {source}")]
    Store {
        server: String,
        #[source]
        source: StoreError,
    },
    /// A server holds no store for the bucket (a configuration mistake).
    #[error("{server}: bucket {bucket} is not mirrored")]
    NotMirrored { server: String, bucket: String },
    /// A replica's bytes do not hash to their content key.
    #[error("{server}: content does not hash to the key")]
    CorruptSource { server: String },
    /// A target stored bytes other than those sent (a torn write).
    #[error("{server}: stored digest differs")]
    DigestDiffers { server: String },
    /// Over `copy.max_object_size`: no copy is tried until the limit is raised.
    #[error("{key} is {size} bytes, over copy.max_object_size")]
    TooLarge { key: String, size: u64 },
    /// Copies exist, but none on a server that answers.
    #[error("no reachable replica yet: {0}")]
    NoReachableReplica(Box<SyncError>),
    /// An imagehost or edge did not acknowledge a takedown.
    #[error("{who}: {reason}")]
    NotAcknowledged { who: String, reason: String },
    #[error("copy task: {0}")]
    Task(String),
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Several of the above, one per server or step.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<SyncError>),
}

impl SyncError {
    /// Whether trying again later may succeed without anyone changing the configuration.
    pub fn is_retriable(&self) -> bool {
        match self {
            SyncError::Store { source, .. } => source.is_retriable(),
            SyncError::NotMirrored { .. } | SyncError::TooLarge { .. } => false,
            // Another replica may come up, a torn write is rewritten, the disk may be freed.
            SyncError::CorruptSource { .. }
            | SyncError::DigestDiffers { .. }
            | SyncError::NoReachableReplica(_)
            | SyncError::NotAcknowledged { .. }
            | SyncError::Task(_)
            | SyncError::Queue(_) => true,
            SyncError::Several(all) => all.iter().any(SyncError::is_retriable),
        }
    }

    /// One error for many: none is `Ok`, one is itself, more are [`SyncError::Several`].
    pub fn all(mut errors: Vec<SyncError>) -> Result<(), SyncError> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(SyncError::Several(errors)),
        }
    }

    pub fn store(server: &str, source: StoreError) -> Self {
        SyncError::Store {
            server: server.to_string(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> SyncError {
        SyncError::store(
            "fs1",
            StoreError::Unavailable {
                store: "s3".into(),
                reason: "timeout".into(),
            },
        )
    }

    fn refused() -> SyncError {
        SyncError::store(
            "fs0",
            StoreError::Backend {
                store: "s3".into(),
                reason: "403".into(),
            },
        )
    }

    #[test]
    fn retriable_table() {
        let too_large = || SyncError::TooLarge {
            key: "DQmx".into(),
            size: 9,
        };
        let cases: Vec<(SyncError, bool)> = vec![
            (down(), true),
            (refused(), false),
            (too_large(), false),
            (SyncError::CorruptSource { server: "fs0".into() }, true),
            (SyncError::Several(vec![refused(), too_large()]), false),
            (SyncError::Several(vec![refused(), down()]), true),
            (SyncError::NoReachableReplica(Box::new(down())), true),
        ];
        for (e, want) in cases {
            assert_eq!(e.is_retriable(), want, "{e}");
        }
    }

    #[test]
    fn several_read_as_one_line_per_server() {
        let e = SyncError::all(vec![down(), refused()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "fs1: s3 unavailable: timeout; fs0: s3 refused the request: 403"
        );
        assert!(SyncError::all(Vec::new()).is_ok());
        assert!(matches!(
            SyncError::all(vec![down()]),
            Err(SyncError::Store { .. })
        ));
    }
}
