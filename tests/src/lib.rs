//! The shared test harness: real servers on loopback, started and stopped by the tests themselves.
//!
//! - [`content`]: deterministic test bytes and the upload keys that name them.
//! - [`faults`]: a TCP proxy between services that adds latency, stalls, cuts, caps bandwidth or
//!   blackholes, switched while a test runs.
//! - [`garage`]: installs Garage 2.5.0 when missing, starts independent single-node instances, each
//!   with its own buckets and key, stops and restarts them by PID; they die with the test process.
//! - [`hive`]: a Hive API node stand-in speaking the real JSON-RPC wire format.
//! - [`hostile`]: a generated corpus of hostile images for `/p/`, with what each must get.
//! - [`redis`]: a real `redis-server` on loopback.
//! - [`ports`]: free loopback ports below the kernel's ephemeral range.
//! - [`wait`]: bounded readiness polling.
//! - [`http`]: a small blocking HTTP/1.1 client for functional tests.
//! - [`origin`]: a real HTTP origin on loopback that counts its requests.
//! - [`tls`]: self-signed certificates made with openssl.
//! - [`tempdir`]: temporary directories removed when the test ends.
//!
//! Everything here is synchronous and should be called from the test's own thread, so that child
//! processes (tied to that thread's lifetime) live exactly as long as the test.

pub mod content;
pub mod faults;
pub mod garage;
pub mod hive;
pub mod hostile;
pub mod http;
pub mod origin;
pub mod ports;
pub mod process;
pub mod redis;
pub mod tls;
pub mod wait;

pub use garage::{Garage, S3Access};
pub use ports::free_port;
pub use wait::{http_status, listening, wait_until};

/// A temporary directory removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hive-test-")
        .tempdir()
        .expect("create a temporary directory")
}
