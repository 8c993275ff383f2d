//! The backends under test: a directory store, or a pair of Garage instances.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use blobstore::{BlobStore, DirStore, Layout, S3Config, S3Store};
use harness::Garage;
use service::Secret;

pub const BUCKET: &str = "uploads";
/// Small parts, so the 50 MB case exercises multipart and shows memory stays near one part.
pub const PART_SIZE: u64 = 5 << 20;

pub enum Kind {
    Directory { root: tempfile::TempDir },
    Garage { servers: Vec<Garage> },
}

pub struct Backend {
    pub kind: Kind,
    /// One store per fileserver instance (one directory, or two Garage instances).
    pub stores: Vec<Arc<dyn BlobStore>>,
}

impl Backend {
    pub fn directory() -> Self {
        let root = harness::tempdir();
        let store = DirStore::open("dir", root.path(), BUCKET, Layout::Flat, true).expect("open dir store");
        Self {
            stores: vec![Arc::new(store)],
            kind: Kind::Directory { root },
        }
    }

    pub fn garage() -> Self {
        let servers = Garage::start_many(2, &[BUCKET]);
        let stores = servers
            .iter()
            .map(|g| Arc::new(s3_store(g, Layout::Flat)) as Arc<dyn BlobStore>)
            .collect();
        Self {
            stores,
            kind: Kind::Garage { servers },
        }
    }

    /// A second store on the same fileserver `i` with another layout.
    pub fn with_layout(&self, i: usize, layout: Layout) -> Arc<dyn BlobStore> {
        match &self.kind {
            Kind::Directory { root } => {
                Arc::new(DirStore::open("dir", root.path(), BUCKET, layout, true).expect("open dir store"))
            }
            Kind::Garage { servers } => Arc::new(s3_store(&servers[i], layout)),
        }
    }

    /// Makes fileserver `i` unreachable: kills the Garage process, or takes the directory away
    /// (as an unmounted disk would).
    pub fn stop(&mut self, i: usize) {
        match &mut self.kind {
            Kind::Directory { root } => {
                std::fs::rename(root.path().join(BUCKET), parked(root)).expect("park the bucket directory")
            }
            Kind::Garage { servers } => servers[i].stop(),
        }
    }

    pub fn restart(&mut self, i: usize) {
        match &mut self.kind {
            Kind::Directory { root } => {
                std::fs::rename(parked(root), root.path().join(BUCKET)).expect("restore the bucket directory")
            }
            Kind::Garage { servers } => servers[i].restart(),
        }
    }

    /// The directory root, for the directory backend.
    pub fn dir_root(&self) -> Option<PathBuf> {
        match &self.kind {
            Kind::Directory { root } => Some(root.path().to_path_buf()),
            Kind::Garage { .. } => None,
        }
    }
}

fn parked(root: &tempfile::TempDir) -> PathBuf {
    root.path().join("parked-bucket")
}

fn s3_store(g: &Garage, layout: Layout) -> S3Store {
    let a = g.access();
    let cfg = S3Config {
        endpoint: a.endpoint.clone(),
        region: a.region.clone(),
        access_key_id: Some(a.access_key.clone()),
        secret_access_key: Some(Secret::new(a.secret_key.clone())),
        connect_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(10),
        attempt_timeout: Duration::from_secs(60),
        max_attempts: 2,
        initial_backoff: Duration::from_millis(50),
        part_size: PART_SIZE,
        ..S3Config::default()
    };
    S3Store::new(g.name(), &cfg, BUCKET, layout).expect("S3 store")
}
