//! Plumbing shared by edge, imagehost and blobsync: config layering, logs, admin listener, the
//! live stats page, shutdown, the one reading of `Accept` the edge and imagehost must agree on,
//! client addresses behind trusted proxies, and the client of blobsync's takedown list they both
//! pull.
//!
//! Every daemon follows the same shape: `main.rs` parses [`CommonArgs`], loads its config with
//! [`ConfigLoader`], calls [`telemetry::init`], then hands a listener and a [`Shutdown`] to its
//! library's `run`. Tests call `run` in-process on `127.0.0.1:0`.

pub mod accept;
pub mod admin;
pub mod admission;
pub mod cli;
pub mod config;
pub mod http;
pub mod metrics;
pub mod net;
pub mod secret;
pub mod shutdown;
pub mod stats;
pub mod takedown_feed;
pub mod telemetry;

pub use cli::CommonArgs;
pub use config::{ConfigError, ConfigLoader};
pub use secret::Secret;
pub use shutdown::Shutdown;
pub use telemetry::{LogConfig, LogFormat};
