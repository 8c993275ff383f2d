//! blobsync's error type at its boundary.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot open the queue database at {path}: {source}")]
    Queue { path: String, source: sled::Error },
    #[error("cannot open fileserver bucket: {0}")]
    Store(#[from] blobstore::StoreError),
    #[error("I/O error: {0}")]
    Io(std::io::Error),
    #[error("{0}")]
    Daemon(String),
}
