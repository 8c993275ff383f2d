//! Listing a flat directory bucket page by page (what blobsync's anti-entropy pass and `migrate`
//! do) at 10,000, 100,000 and `DIR_LIST_MAX` (1,000,000) objects: the time of a whole pass of
//! 1,000-key pages and the process's RSS growth, against the earlier listing, which read and
//! sorted the whole directory for every page (measured here on 5 pages of a store with no
//! snapshot, and multiplied by the pages of a pass).
//!
//!   target/release/dir_list

use std::time::Instant;

use bench::{print_table, Row};
use blobstore::{BlobStore, DirStore, Layout, ListRequest};

fn main() {
    let max: usize = std::env::var("DIR_LIST_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let root = tempfile::tempdir_in(".").expect("a temp dir on this disk");
    let bucket = root.path().join("uploads");
    let mut rows = Vec::new();
    let mut have = 0;
    for n in [10_000, 100_000, max].into_iter().filter(|n| *n <= max) {
        std::fs::create_dir_all(&bucket).expect("bucket");
        let t = Instant::now();
        while have < n {
            std::fs::write(bucket.join(format!("DQmList{have:09}")), b"x").expect("object");
            have += 1;
        }
        eprintln!("{n} objects in place ({:.1} s)", t.elapsed().as_secs_f64());
        let page = |store: &DirStore, after: Option<String>| {
            let req = ListRequest {
                start_after: after,
                max_keys: 1000,
                ..Default::default()
            };
            rt.block_on(store.list(&req)).expect("list")
        };
        let store = DirStore::open("fs", root.path(), "uploads", Layout::Flat, false).expect("open");
        let before = bench::self_rss_kib();
        let t = Instant::now();
        let (mut listed, mut after) = (0, None);
        loop {
            let p = page(&store, after);
            listed += p.entries.len();
            match p.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let pass = t.elapsed().as_secs_f64();
        let grew = (bench::self_rss_kib().saturating_sub(before) * 1024) as f64 / 1048576.0;
        assert_eq!(listed, n, "every object listed once");
        // The earlier listing: every page read and sorted the whole directory.
        let t = Instant::now();
        for k in 0..5 {
            let fresh = DirStore::open("fs", root.path(), "uploads", Layout::Flat, false).expect("open");
            let at = format!("DQmList{:09}", n / 5 * k);
            page(&fresh, Some(at));
        }
        let per_page = t.elapsed().as_secs_f64() / 5.0;
        let earlier = per_page * n.div_ceil(1000) as f64;
        rows.push(Row {
            what: format!("pass over {n} objects, 1,000-key pages (RSS +{grew:.0} MiB)"),
            ours: pass,
            reference: Some(earlier),
            unit: "s",
            target: "grows ~N",
        });
    }
    print_table(
        "listing a flat directory bucket page by page",
        "snapshot",
        "whole dir per page",
        &rows,
    );
}
