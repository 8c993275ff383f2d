//! Opening one bucket of a configured fileserver with the backend it names.

use std::sync::Arc;

use crate::config::FileserverConfig;
use crate::{BlobStore, DirStore, S3Store, StoreError};

/// Opens `bucket` on `server` with the backend it configures.
pub fn open_bucket(server: &FileserverConfig, bucket: &str) -> Result<Arc<dyn BlobStore>, StoreError> {
    server.validate().map_err(|reason| StoreError::Backend {
        store: server.name.clone(),
        reason,
    })?;
    match (&server.s3, &server.directory) {
        (Some(s3), _) => Ok(Arc::new(S3Store::new(&server.name, s3, bucket, server.layout)?)),
        (_, Some(dir)) => Ok(Arc::new(DirStore::open(
            &server.name,
            &dir.path,
            bucket,
            server.layout,
            dir.create,
        )?)),
        _ => Err(StoreError::Backend {
            store: server.name.clone(),
            reason: "no backend configured".into(),
        }),
    }
}
