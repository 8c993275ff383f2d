//! The configured fileservers, each opened for the uploads and proxy buckets.

use std::sync::Arc;

use blobstore::{open_bucket, BlobStore};

use crate::{Config, Error};

/// One fileserver's two buckets.
#[derive(Debug, Clone)]
pub struct Fileserver {
    pub name: String,
    pub uploads: Arc<dyn BlobStore>,
    pub proxy: Arc<dyn BlobStore>,
}

/// All fileservers, in read-preference order.
#[derive(Debug, Clone)]
pub struct Stores {
    pub servers: Vec<Fileserver>,
}

impl Stores {
    pub fn open(config: &Config) -> Result<Self, Error> {
        let servers = config
            .fileservers
            .iter()
            .map(|fs| {
                Ok(Fileserver {
                    name: fs.name.clone(),
                    uploads: open_bucket(fs, &config.buckets.uploads)?,
                    proxy: open_bucket(fs, &config.buckets.proxy)?,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(Self { servers })
    }
}
