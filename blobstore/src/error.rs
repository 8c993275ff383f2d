//! Store errors typed by what a caller can do about them: retry, fall back, refuse, or report.

/// What went wrong with a store operation. [`StoreError::is_retriable`] tells whether trying again
/// (or another fileserver) may help; `NotFound` is only ever returned when the server answered.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The server answered and the object is not there.
    #[error("not found: {key}")]
    NotFound { key: String },
    /// The server could not be reached or failed transiently (refused, timeout, 5xx, throttled).
    #[error("{store} unavailable: {reason}")]
    Unavailable { store: String, reason: String },
    /// The key is not one we accept (traversal, odd characters, too long).
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    /// The body crossed the size limit; nothing was stored.
    #[error("object larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// The requested byte range does not overlap the object.
    #[error("range not satisfiable for an object of {size} bytes")]
    InvalidRange { size: u64 },
    /// The caller's body stream failed (client went away, truncated upload); nothing was stored.
    #[error("body stream failed: {0}")]
    Body(#[source] std::io::Error),
    /// The server refused the request for a reason retrying will not fix (credentials, bucket).
    #[error("{store} refused the request: {reason}")]
    Backend { store: String, reason: String },
}

impl StoreError {
    pub fn is_retriable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    /// A stable short name for metrics labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::NotFound { .. } => "not_found",
            StoreError::Unavailable { .. } => "unavailable",
            StoreError::InvalidKey { .. } => "invalid_key",
            StoreError::TooLarge { .. } => "too_large",
            StoreError::InvalidRange { .. } => "invalid_range",
            StoreError::Body(_) => "body",
            StoreError::Backend { .. } => "backend",
        }
    }
}
