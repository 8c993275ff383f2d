//! The fileserver client: "a bucket on a fileserver" behind one trait, [`BlobStore`].
//!
//! Two backends: [`S3Store`] (any S3-compatible server: MinIO, Garage, AWS) and [`DirStore`] (a plain
//! directory, the embedded default). Both take and return logical keys ([`Key`]); a fileserver's
//! [`Layout`] maps them to stored names (flat, or the imagehoster's two-character partitions).
//! Every put streams, enforces a size limit, and returns SHA-256 and MD5 computed in the same pass.

pub mod blocks;
mod config;
mod digest;
mod dir;
mod error;
mod key;
mod open;
mod s3;
mod store;

pub use blocks::Blocks;
pub use config::{DirConfig, FileserverConfig, S3Config};
pub use digest::{DigestingWriter, Digests};
pub use dir::DirStore;
pub use error::StoreError;
pub use key::{Key, Layout};
pub use open::open_bucket;
pub use s3::S3Store;
pub use store::{
    body_from_bytes, collect_body, BlobStore, BodyStream, ByteRange, GetObject, ListEntry, ListPage,
    ListRequest, ObjectMeta, PutOptions, PutResult,
};
