//! imagehost's error type at its boundary.

/// Why imagehost could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot open fileserver bucket: {0}")]
    Store(#[from] blobstore::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("I/O error: {0}")]
    Io(std::io::Error),
}
