//! The whole cluster end to end, every part a real process on loopback: two Garage fileservers,
//! blobsync, two imagehost nodes and an edge (two for takedowns), an image origin for `/p/`, and
//! real clients (curl, the harness client, headless Chromium for the stats pages). Uploads are
//! signed with `hive-sign` as a user would.

#[path = "cluster/setup.rs"]
mod setup;

#[path = "cluster/faults.rs"]
mod faults;
#[path = "cluster/flows.rs"]
mod flows;
#[path = "cluster/pages.rs"]
mod pages;
#[path = "cluster/takedown.rs"]
mod takedown;
