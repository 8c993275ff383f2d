//! What the proxy bucket saves by writing without fsyncs: `PROXY_WRITES` (2,000) variant-sized
//! objects (30 KB) put into a directory fileserver as cache objects (`PutOptions::cache`, no
//! fsync), and the same as durable objects (body and sidecar synced, renamed and their
//! directories synced, through the group commit uploads go through), 8 at a time, on this
//! machine's disk, interleaved three times. The reference is the durable put, in the same run.
//!
//!   target/release/proxy_writes

use std::sync::Arc;
use std::time::Instant;

use bench::{print_table, Row};
use blobstore::{body_from_bytes, BlobStore, DirStore, Key, Layout, PutOptions};
use futures::StreamExt;

async fn puts(store: &Arc<dyn BlobStore>, n: usize, cache: bool, round: usize) -> f64 {
    let body: Vec<u8> = (0..30_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let (store, body) = (store.clone(), body.clone());
            async move {
                let key = Key::new(format!("U{round}x{cache}x{i}_Cover_WEBP_320").as_str()).expect("key");
                let opts = PutOptions {
                    content_type: Some("image/webp".into()),
                    cache,
                    ..PutOptions::default()
                };
                store.put(&key, body_from_bytes(body), &opts).await.expect("put");
            }
        })
        .buffer_unordered(8)
        .collect::<()>()
        .await;
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let n: usize = std::env::var("PROXY_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let dir = tempfile::tempdir_in(".").expect("a temp dir on this disk");
    let store: Arc<dyn BlobStore> =
        Arc::new(DirStore::open("fs", dir.path(), "proxy", Layout::Partitioned, true).expect("store"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (mut cache, mut durable) = (Vec::new(), Vec::new());
    for round in 0..3 {
        cache.push(rt.block_on(puts(&store, n, true, round)));
        durable.push(rt.block_on(puts(&store, n, false, round)));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("cache puts/s {cache:.0?}, durable puts/s {durable:.0?}");
    print_table(
        &format!("proxy-bucket writes, {n} × 30 KB into a directory fileserver, 8 at a time (median of 3)"),
        "no fsync",
        "fsynced",
        &[Row {
            what: "puts/s".into(),
            ours: median(&mut cache),
            reference: Some(median(&mut durable)),
            unit: "/s",
            target: "> fsynced",
        }],
    );
}
