//! The configured fileservers, each opened for the uploads and proxy buckets, and how reads use
//! them: hedged across them ([`hedge`]) by what reads have seen of each ([`health`]).

pub mod health;
pub mod hedge;

use std::sync::Arc;

use blobstore::{open_bucket, BlobStore};

use crate::{Config, Error};
pub use health::Health;
pub use hedge::{race, Raced};

/// One fileserver's two buckets.
#[derive(Debug, Clone)]
pub struct Fileserver {
    pub name: String,
    pub uploads: Arc<dyn BlobStore>,
    pub proxy: Arc<dyn BlobStore>,
}

/// All fileservers, in configured order (reads go by [`Health::order`]).
#[derive(Debug, Clone)]
pub struct Stores {
    pub servers: Vec<Fileserver>,
    pub health: Arc<Health>,
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
            .collect::<Result<Vec<_>, Error>>()?;
        let health = Arc::new(Health::new(config.reads.clone(), servers.len()));
        Ok(Self { servers, health })
    }
}
