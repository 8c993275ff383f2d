//! The assertions every backend must pass. Each runs on every store of the backend.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use blobstore::{
    body_from_bytes, collect_body, BlobStore, BodyStream, ByteRange, DigestingWriter, Digests, Key, Layout,
    ListRequest, PutOptions, StoreError,
};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::backend::Backend;

fn key(s: &str) -> Key {
    Key::new(s).expect("valid test key")
}

/// Deterministic pseudo-random bytes, so large bodies need not be kept in memory.
use harness::content::bytes as pattern;

/// A body of `total` bytes generated chunk by chunk; never more than one chunk in memory.
fn generated_body(seed: u64, total: usize, chunk: usize) -> BodyStream {
    let chunks = total.div_ceil(chunk);
    Box::pin(futures::stream::iter(0..chunks).map(move |i| {
        let len = chunk.min(total - i * chunk);
        Ok(Bytes::from(pattern(seed + i as u64, len)))
    }))
}

fn generated_digests(seed: u64, total: usize, chunk: usize) -> Digests {
    let mut w = DigestingWriter::new(None);
    for i in 0..total.div_ceil(chunk) {
        let len = chunk.min(total - i * chunk);
        w.update(&pattern(seed + i as u64, len)).expect("no limit");
    }
    w.finish()
}

async fn read_all(store: &dyn BlobStore, k: &Key) -> Result<Bytes, StoreError> {
    collect_body(store.get(k, None).await?.body, 64 << 20).await
}

async fn put_bytes(store: &dyn BlobStore, k: &Key, data: &[u8]) -> Result<(), StoreError> {
    store
        .put(k, body_from_bytes(data.to_vec()), &PutOptions::default())
        .await
        .map(|_| ())
}

/// `(current RSS, peak RSS)` of this test process in bytes, from /proc/self/status.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .expect("memory field")
    };
    (field("VmRSS:"), field("VmHWM:"))
}

pub async fn round_trip_with_metadata(b: Backend) {
    for store in &b.stores {
        let k = key("DQmbvHsfahN2rUoqV5TnXKdT7EPU2SD1ZiKJE6oWpnE8wgX");
        let data = pattern(1, 70_001);
        let metadata: BTreeMap<_, _> = [
            ("sha256".to_string(), "abc".to_string()),
            ("origin".into(), "test".into()),
        ]
        .into();
        let opts = PutOptions {
            content_type: Some("image/png".into()),
            metadata: metadata.clone(),
            max_size: None,
            cache: false,
            known: None,
            digest_prefix: "",
            if_absent: false,
        };
        let put = store
            .put(&k, body_from_bytes(data.clone()), &opts)
            .await
            .expect("put");
        let expected = Digests::of(&data);
        assert_eq!(put.digests, expected, "digests computed in the same pass");
        // With a digest prefix, the digest covers it before the body (an upload's key digest).
        let salted = key("DsaltedCopy");
        let prefixed = PutOptions {
            digest_prefix: "ImageSigningChallenge",
            ..PutOptions::default()
        };
        let put_salted = store
            .put(&salted, body_from_bytes(data.clone()), &prefixed)
            .await
            .expect("put with a prefix");
        let mut challenge = b"ImageSigningChallenge".to_vec();
        challenge.extend_from_slice(&data);
        assert_eq!(
            (put_salted.digests.size, put_salted.digests.sha256),
            (data.len() as u64, Digests::of(&challenge).sha256)
        );
        store.delete(&salted).await.expect("delete");
        // A strong validator of the content: S3 servers give the MD5 of a single-part object,
        // a directory fileserver the SHA-256 it computed while writing (no MD5 pass).
        let md5 = hex::encode(<md5::Md5 as md5::Digest>::digest(&data));
        let etag = put.etag.clone().expect("an ETag");
        assert!(
            etag == md5 || etag == expected.sha256_hex(),
            "the ETag {etag} is neither the MD5 nor the SHA-256 of the body"
        );

        let head = store.head(&k).await.expect("head");
        assert_eq!(head.size, data.len() as u64);
        assert_eq!(head.content_type.as_deref(), Some("image/png"));
        assert_eq!(head.metadata, metadata);
        assert_eq!(head.etag, Some(etag), "HEAD gives the put's ETag");
        assert!(head.last_modified.is_some());

        let got = store.get(&k, None).await.expect("get");
        assert_eq!(got.meta.content_type.as_deref(), Some("image/png"));
        assert_eq!(got.range, None);
        assert_eq!(collect_body(got.body, 1 << 20).await.expect("body"), data);
        assert!(store.exists(&k).await.expect("exists"));

        // Overwrite with other bytes: the new object replaces the old one whole.
        put_bytes(store.as_ref(), &k, b"second").await.expect("overwrite");
        assert_eq!(read_all(store.as_ref(), &k).await.expect("read"), &b"second"[..]);

        store.delete(&k).await.expect("delete");
        assert!(!store.exists(&k).await.expect("exists after delete"));
        store.delete(&k).await.expect("deleting again is fine");
    }
}

/// A put of bytes held in memory, with their digests, that stores nothing if the key is held.
fn if_absent(data: &[u8]) -> PutOptions {
    PutOptions {
        known: Some(Digests::of(data)),
        if_absent: true,
        ..PutOptions::default()
    }
}

/// `if_absent` writes a key that is missing, leaves one held at the body's size untouched (and
/// says so), and replaces one of another size.
pub async fn put_if_absent_writes_only_a_missing_key(b: Backend) {
    for store in &b.stores {
        let k = key("DQmWrittenOnceIfAbsent");
        let data = pattern(11, 70_001);
        let put = store
            .put(&k, body_from_bytes(data.clone()), &if_absent(&data))
            .await
            .expect("put if absent");
        assert!(!put.present, "{}: a missing key is written", store.describe());
        assert_eq!(put.digests, Digests::of(&data));
        assert_eq!(read_all(store.as_ref(), &k).await.expect("read"), data);

        // Other bytes of the same size: a content-addressed key held already is not written.
        let other = pattern(12, 70_001);
        let put = store
            .put(&k, body_from_bytes(other.clone()), &if_absent(&other))
            .await
            .expect("put if absent, held");
        assert!(
            put.present,
            "{}: a held key is reported present",
            store.describe()
        );
        assert_eq!(put.digests, Digests::of(&other), "the body's digests, as given");
        assert_eq!(
            read_all(store.as_ref(), &k).await.expect("read"),
            data,
            "nothing written"
        );

        // Another size is another object: written.
        let longer = pattern(13, 80_000);
        let put = store
            .put(&k, body_from_bytes(longer.clone()), &if_absent(&longer))
            .await
            .expect("put if absent, other size");
        assert!(!put.present);
        assert_eq!(read_all(store.as_ref(), &k).await.expect("read"), longer);
        store.delete(&k).await.expect("delete");
    }
}

pub async fn instances_are_independent(b: Backend) {
    let k = key("Uindependent");
    put_bytes(b.stores[0].as_ref(), &k, b"only here")
        .await
        .expect("put");
    for (i, store) in b.stores.iter().enumerate().skip(1) {
        assert!(
            !store.exists(&k).await.expect("exists"),
            "instance {i} must not see instance 0's object"
        );
    }
    assert!(b.stores[0].exists(&k).await.expect("exists"));
}

pub async fn large_object_streams_with_bounded_memory(b: Backend) {
    const SIZE: usize = 50_000_000;
    const CHUNK: usize = 64 * 1024;
    // Anything near the object's size would mean it was buffered whole somewhere.
    const BUDGET: u64 = 32 << 20;
    let expected = generated_digests(7, SIZE, CHUNK);
    for store in &b.stores {
        let k = key("DQmLargeObjectFiftyMegabytes");
        let (base, _) = rss();
        let put = store
            .put(&k, generated_body(7, SIZE, CHUNK), &PutOptions::default())
            .await
            .expect("put 50 MB");
        assert_eq!(put.digests, expected);

        let got = store.get(&k, None).await.expect("get 50 MB");
        assert_eq!(got.meta.size, SIZE as u64);
        let mut w = DigestingWriter::new(None);
        let mut body = got.body;
        while let Some(chunk) = body.next().await {
            w.update(&chunk.expect("chunk")).expect("no limit");
        }
        assert_eq!(w.finish(), expected, "bytes out equal bytes in");

        let (_, peak) = rss();
        let grew = peak.saturating_sub(base);
        eprintln!(
            "{}: peak RSS grew by {} KiB for a {SIZE}-byte object",
            store.describe(),
            grew / 1024
        );
        assert!(
            grew < BUDGET,
            "{}: RSS grew by {grew} bytes, over the {BUDGET}-byte budget",
            store.describe()
        );
        store.delete(&k).await.expect("delete");
    }
}

pub async fn ranged_reads(b: Backend) {
    let data = pattern(3, 1000);
    let f = |start, end| ByteRange::From { start, end };
    let cases: &[(ByteRange, Option<(u64, u64)>)] = &[
        (f(0, Some(0)), Some((0, 0))),
        (f(10, Some(19)), Some((10, 19))),
        (f(990, None), Some((990, 999))),
        (f(995, Some(5000)), Some((995, 999))),
        (ByteRange::Suffix(5), Some((995, 999))),
        (ByteRange::Suffix(5000), Some((0, 999))),
        (f(1000, None), None),
    ];
    for store in &b.stores {
        let k = key("Uranged");
        put_bytes(store.as_ref(), &k, &data).await.expect("put");
        for (range, want) in cases {
            match (store.get(&k, Some(*range)).await, want) {
                (Ok(got), Some((first, last))) => {
                    assert_eq!(got.range, Some((*first, *last)), "{range:?}");
                    assert_eq!(got.meta.size, 1000, "{range:?}: size is the whole object's");
                    let body = collect_body(got.body, 1 << 20).await.expect("body");
                    assert_eq!(&body[..], &data[*first as usize..=*last as usize], "{range:?}");
                }
                (Err(StoreError::InvalidRange { size }), None) => assert_eq!(size, 1000),
                (got, want) => panic!("{}: {range:?}: got {got:?}, want {want:?}", store.describe()),
            }
        }
    }
}

/// Keys that sort differently from their creation order, including characters around `/`
/// (0x2F) to catch directory-walk ordering mistakes.
fn listing_keys(n: usize) -> Vec<Key> {
    const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz-._";
    let mut keys: Vec<Key> = (0..n)
        .map(|i| {
            let p = pattern(i as u64 + 100, 12);
            let tail: String = p
                .iter()
                .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
                .collect();
            key(&format!("U{tail}{i}"))
        })
        .collect();
    for extra in ["a", "a-b", "a.b", "a0", "a_b", "aB"] {
        keys.push(key(extra));
    }
    keys
}

async fn put_many(store: &Arc<dyn BlobStore>, keys: &[Key]) {
    futures::stream::iter(keys.iter().cloned())
        .map(|k| {
            let store = store.clone();
            async move {
                put_bytes(store.as_ref(), &k, k.as_str().as_bytes())
                    .await
                    .map(|_| k)
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await
        .expect("put all keys");
}

async fn list_all(store: &dyn BlobStore, prefix: &str, page: usize) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    let mut pages = 0;
    let mut req = ListRequest {
        prefix: prefix.into(),
        start_after: None,
        max_keys: page,
    };
    loop {
        let p = store.list(&req).await.expect("list page");
        pages += 1;
        assert!(p.entries.len() <= page, "a page holds at most max_keys");
        for e in &p.entries {
            assert_eq!(
                e.stored_name,
                e.key.as_str(),
                "flat layout: stored name is the key"
            );
            assert_eq!(e.size, e.key.as_str().len() as u64, "listed size");
        }
        names.extend(p.entries.into_iter().map(|e| e.stored_name));
        match p.next {
            Some(next) => req.start_after = Some(next),
            None => return (names, pages),
        }
        assert!(pages < 100_000, "listing does not end");
    }
}

pub async fn listing_10000_keys_sorted_across_pages(b: Backend) {
    let keys = listing_keys(10_000);
    let mut want: Vec<String> = keys.iter().map(|k| k.as_str().to_string()).collect();
    want.sort();
    for store in &b.stores {
        put_many(store, &keys).await;
        let (got, pages) = list_all(store.as_ref(), "", 1000).await;
        assert_eq!(
            got.len(),
            want.len(),
            "{}: every key listed once",
            store.describe()
        );
        assert!(
            got == want,
            "{}: listing is complete and byte-sorted",
            store.describe()
        );
        assert!(
            pages >= 10,
            "{}: 10,006 keys span at least 10 pages of 1000, got {pages}",
            store.describe()
        );
    }
}

pub async fn listing_with_prefix_and_start_after(b: Backend) {
    let mut keys = listing_keys(300);
    keys.extend(["dir/x", "dir/y", "dir-z", "dir.w"].map(key));
    for store in &b.stores {
        put_many(store, &keys).await;
        let all: BTreeSet<String> = keys.iter().map(|k| k.as_str().to_string()).collect();
        for prefix in ["U1", "U", "a", "dir", "dir/", "zzz"] {
            let want: Vec<_> = all.iter().filter(|k| k.starts_with(prefix)).cloned().collect();
            let (got, _) = list_all(store.as_ref(), prefix, 7).await;
            assert_eq!(got, want, "{}: prefix {prefix:?}", store.describe());
        }
        let after = "U5".to_string();
        let want: Vec<_> = all
            .iter()
            .filter(|k| k.as_str() > after.as_str())
            .take(5)
            .cloned()
            .collect();
        let page = store
            .list(&ListRequest {
                prefix: String::new(),
                start_after: Some(after),
                max_keys: 5,
            })
            .await
            .expect("list");
        let got: Vec<_> = page.entries.into_iter().map(|e| e.stored_name).collect();
        assert_eq!(
            got,
            want,
            "{}: start_after is exclusive and ordered",
            store.describe()
        );
    }
}

pub async fn missing_key_is_not_found(b: Backend) {
    for store in &b.stores {
        let k = key("DQmNotThere");
        assert!(matches!(
            store.get(&k, None).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(store.head(&k).await, Err(StoreError::NotFound { .. })));
        assert!(!store.exists(&k).await.expect("exists answers"));
        store.delete(&k).await.expect("deleting a missing key is fine");
        let page = store
            .list(&ListRequest {
                prefix: "DQmNot".into(),
                ..ListRequest::default()
            })
            .await
            .expect("list");
        assert!(page.entries.is_empty() && page.next.is_none());
    }
}

pub async fn concurrent_writers_leave_one_whole_object(b: Backend) {
    const WRITERS: u64 = 8;
    const SIZE: usize = 3_000_000;
    const CHUNK: usize = 128 * 1024;
    let candidates: BTreeSet<[u8; 32]> = (0..WRITERS)
        .map(|w| generated_digests(1000 + w, SIZE, CHUNK).sha256)
        .collect();
    for store in &b.stores {
        let k = key("Ucontended");
        let writers = (0..WRITERS).map(|w| {
            let store = store.clone();
            let k = k.clone();
            async move {
                // Yield between chunks so the writers interleave.
                let body: BodyStream = Box::pin(generated_body(1000 + w, SIZE, CHUNK).then(|c| async {
                    tokio::task::yield_now().await;
                    c
                }));
                store
                    .put(&k, body, &PutOptions::default())
                    .await
                    .expect("concurrent put")
            }
        });
        // A reader during the race must only ever see nothing yet, or one writer's object whole.
        let reader = async {
            let mut seen = 0;
            for _ in 0..20 {
                if let Ok(data) = read_all(store.as_ref(), &k).await {
                    assert!(
                        candidates.contains(&Digests::of(&data).sha256),
                        "a reader saw a mixed or partial object"
                    );
                    seen += 1;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen
        };
        let (_, _) = futures::join!(futures::future::join_all(writers), reader);
        let data = read_all(store.as_ref(), &k).await.expect("read the winner");
        assert_eq!(data.len(), SIZE, "{}: whole object", store.describe());
        assert!(
            candidates.contains(&Digests::of(&data).sha256),
            "{}: exactly one writer's bytes",
            store.describe()
        );
    }
}

pub async fn stopped_server_is_unavailable_not_not_found(mut b: Backend) {
    let k = key("DQmSurvivesAnOutage");
    let missing = key("DQmNeverWritten");
    let data = pattern(9, 10_000);
    for i in 0..b.stores.len() {
        let store = b.stores[i].clone();
        put_bytes(store.as_ref(), &k, &data)
            .await
            .expect("put before the outage");
        store.probe().await.expect("a running server answers its probe");
        b.stop(i);
        let checks: Vec<(&str, Result<(), StoreError>)> = vec![
            ("get", store.get(&k, None).await.map(|_| ())),
            ("get missing", store.get(&missing, None).await.map(|_| ())),
            ("head", store.head(&k).await.map(|_| ())),
            ("head missing", store.head(&missing).await.map(|_| ())),
            ("exists", store.exists(&missing).await.map(|_| ())),
            ("put", put_bytes(store.as_ref(), &missing, b"x").await),
            (
                "put if absent",
                store
                    .put(&missing, body_from_bytes(b"x".to_vec()), &if_absent(b"x"))
                    .await
                    .map(|_| ()),
            ),
            ("delete", store.delete(&k).await),
            ("list", store.list(&ListRequest::default()).await.map(|_| ())),
            ("probe", store.probe().await),
        ];
        for (op, got) in checks {
            match got {
                Err(e @ StoreError::Unavailable { .. }) => assert!(e.is_retriable()),
                other => panic!(
                    "{}: {op} on a stopped server gave {other:?}, want Unavailable",
                    store.describe()
                ),
            }
        }
        b.restart(i);
        assert_eq!(
            read_all(store.as_ref(), &k).await.expect("read after restart"),
            data,
            "nothing lost"
        );
        assert!(
            !store.exists(&missing).await.expect("exists"),
            "the refused put left nothing"
        );
    }
}

pub async fn malformed_and_traversal_keys_are_refused(b: Backend) {
    for bad in [
        "../escape",
        "a/../../escape",
        "/etc/passwd",
        ".meta/x",
        "a b",
        "a\0b",
        "a\\b",
        "",
        "x//y",
    ] {
        assert!(
            matches!(Key::new(bad), Err(StoreError::InvalidKey { .. })),
            "{bad:?} must be refused"
        );
    }
    if let Some(root) = b.dir_root() {
        // A file beside the bucket stays unreachable, and nothing was created outside the bucket.
        std::fs::write(root.join("secret"), b"outside").expect("plant");
        let before: BTreeSet<_> = std::fs::read_dir(&root)
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(Key::new("../secret").is_err());
        let after: BTreeSet<_> = std::fs::read_dir(&root)
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(before, after);
    }
    // The partitioned layout additionally refuses keys it cannot place.
    let partitioned = b.with_layout(0, Layout::Partitioned);
    let nested = key("sub/key");
    assert!(matches!(
        put_bytes(partitioned.as_ref(), &nested, b"x").await,
        Err(StoreError::InvalidKey { .. })
    ));
}

pub async fn oversize_put_is_refused_and_stores_nothing(b: Backend) {
    for store in &b.stores {
        // Single-part and multipart-sized bodies, each one byte over the limit.
        for (name, size, limit) in [
            ("Usmall", 1_000_001, 1_000_000u64),
            ("Ubig", 12_000_001, 12_000_000),
        ] {
            let k = key(name);
            let opts = PutOptions {
                max_size: Some(limit),
                ..PutOptions::default()
            };
            match store.put(&k, generated_body(5, size, 64 * 1024), &opts).await {
                Err(StoreError::TooLarge { limit: l }) => assert_eq!(l, limit),
                other => panic!("{}: {name}: got {other:?}, want TooLarge", store.describe()),
            }
            assert!(
                !store.exists(&k).await.expect("exists"),
                "{}: {name}: nothing stored",
                store.describe()
            );
            // Exactly at the limit is fine.
            let put = store
                .put(&k, generated_body(5, limit as usize, 64 * 1024), &opts)
                .await
                .expect("at limit");
            assert_eq!(put.digests.size, limit);
        }
    }
}

pub async fn failed_put_keeps_the_previous_object(b: Backend) {
    for store in &b.stores {
        let k = key("DQmKeepMe");
        put_bytes(store.as_ref(), &k, b"the original").await.expect("put");
        // A client that disconnects midway, both before and after one part's worth of data.
        for cut_after in [100_000usize, 6_000_000] {
            let good = generated_body(11, cut_after, 64 * 1024);
            let broken: BodyStream = Box::pin(good.chain(futures::stream::once(async {
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, "client went away"))
            })));
            match store.put(&k, broken, &PutOptions::default()).await {
                Err(StoreError::Body(_)) => {}
                other => panic!("{}: got {other:?}, want a Body error", store.describe()),
            }
            assert_eq!(
                read_all(store.as_ref(), &k).await.expect("read"),
                &b"the original"[..],
                "{}: a failed overwrite must not change the stored object",
                store.describe()
            );
        }
    }
}

pub async fn partitioned_layout_round_trip(b: Backend) {
    for i in 0..b.stores.len() {
        let store = b.with_layout(i, Layout::Partitioned);
        let k = key("DQmbUdyDj5ht9ifdRtncntsETZQv23ZwbpgFKLQhUMH4rsj");
        let variant = key("U5dtZPvjpfzc3fgGtsoNQq7WLNv8sLT_Cover_Match_100_100");
        put_bytes(store.as_ref(), &k, b"upload").await.expect("put");
        put_bytes(store.as_ref(), &variant, b"variant")
            .await
            .expect("put variant");
        assert_eq!(read_all(store.as_ref(), &k).await.expect("get"), &b"upload"[..]);
        let page = store.list(&ListRequest::default()).await.expect("list");
        let names: Vec<_> = page
            .entries
            .iter()
            .map(|e| (e.stored_name.clone(), e.key.clone()))
            .collect();
        assert_eq!(
            names,
            vec![
                (
                    "LT/U5dtZPvjpfzc3fgGtsoNQq7WLNv8sLT_Cover_Match_100_100".to_string(),
                    variant.clone()
                ),
                (
                    "sj/DQmbUdyDj5ht9ifdRtncntsETZQv23ZwbpgFKLQhUMH4rsj".to_string(),
                    k.clone()
                ),
            ]
        );
        // The flat view of the same bucket sees the partitioned names, not the keys.
        assert!(!b.stores[i].exists(&k).await.expect("exists"));
    }
}
