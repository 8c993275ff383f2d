//! edge as a process in front of real HTTP origins on loopback: caching, coalescing, stale
//! serving, the hit fast path, purge and bans across two edges, balancing and failover, limits,
//! TLS, upgrades.

#[path = "edge/support.rs"]
mod support;

#[path = "edge/balance.rs"]
mod balance;
#[path = "edge/cache.rs"]
mod cache;
#[path = "edge/deadlines.rs"]
mod deadlines;
#[path = "edge/disk.rs"]
mod disk;
#[path = "edge/hits.rs"]
mod hits;
#[path = "edge/limits.rs"]
mod limits;
#[path = "edge/noise.rs"]
mod noise;
#[path = "edge/ops.rs"]
mod ops;
#[path = "edge/purge.rs"]
mod purge;
#[path = "edge/tls.rs"]
mod tls;
#[path = "edge/warm.rs"]
mod warm;
