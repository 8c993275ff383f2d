//! The reference's route, status, header and error-body cases, replayed on directories and on a
//! Garage pair; and proof that no refused upload left an object anywhere.

use std::collections::BTreeSet;
use std::time::Duration;

use super::fixture::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_on_directories() {
    contract(Backend::Directory).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_on_garage() {
    contract(Backend::Garage).await
}

const JSON: &str = "application/json; charset=utf-8";

/// `(what, path, headers, body, status, exact response body)`.
type Refused<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);

async fn contract(backend: Backend) {
    let f = Fixture::start(backend, |_, _, _| {}).await;
    let accepted = uploads_that_succeed(&f).await;
    if backend == Backend::Directory {
        uploads_record_their_key_digest(&f, &accepted).await;
    }
    uploads_refused_store_nothing(&f, &accepted).await;
    serving(&f).await;
    headers_on_every_response(&f).await;
    f.stop().await;
}

/// Signed uploads the reference accepts: `(path, filename, bytes, the URL's file part)`; the keys stored.
async fn uploads_that_succeed(f: &Fixture) -> BTreeSet<String> {
    let k = &f.keys;
    let mut accepted = BTreeSet::new();
    let img = png(16, 8);
    let img2 = png(9, 9);
    let img3 = png(5, 7);
    let gif = hex::decode(VECTOR_GIF).expect("vector");
    let ok_cases: Vec<(String, &str, &[u8], &str)> = vec![
        (
            format!("/alice/{}", signature(&k.posting, &img, false)),
            "photo.png",
            &img,
            "photo.png",
        ),
        (
            format!("/alice/{}", signature(&k.active, &img2, false)),
            "active.png",
            &img2,
            "active.png",
        ),
        (
            format!("/cs/alice/{}", signature(&k.posting, &img3, true)),
            "cs.png",
            &img3,
            "cs.png",
        ),
        (
            format!("/imagehoster-test/{VECTOR_SIG}"),
            "vector.gif",
            &gif,
            "vector.gif",
        ),
        (
            format!("/cs/imagehoster-test/{VECTOR_CS_SIG}"),
            "again.gif",
            &gif,
            "again.gif",
        ),
        (
            format!("/alice/{}", signature(&k.posting, &img, false).to_uppercase()),
            "a b#c?.png",
            &img,
            "a%20b%23c%3F.png",
        ),
        (
            format!("/alice/{}", signature(&k.posting, &img, false)),
            "héllo wörld.png",
            &img,
            "h%C3%A9llo%20w%C3%B6rld.png",
        ),
    ];
    for (path, filename, data, url_name) in &ok_cases {
        let r = f.upload(path, filename, data).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let key = key_of(data);
        assert_eq!(
            json(&r),
            serde_json::json!({ "url": format!("http://images.test/{key}/{url_name}") }),
            "{path}"
        );
        accepted.insert(key);
    }
    assert!(
        accepted.contains(VECTOR_KEY),
        "the dhive vector stores under the contract's key"
    );

    accepted
}

/// Every upload was hashed once, for its key: a directory fileserver records that digest (the
/// key's own, sha256 of the challenge prefix and the bytes) as the object's ETag.
async fn uploads_record_their_key_digest(f: &Fixture, accepted: &BTreeSet<String>) {
    for store in &f.stores {
        for key in accepted {
            let head = store
                .head(&blobstore::Key::new(key.as_str()).unwrap())
                .await
                .unwrap();
            let multihash = bs58::decode(&key[1..]).into_vec().unwrap();
            assert_eq!(
                head.etag,
                Some(hex::encode(&multihash[2..])),
                "{key} on {}",
                store.describe()
            );
        }
    }
}

/// Uploads refused with the reference's status and error body; none of them stored anything.
async fn uploads_refused_store_nothing(f: &Fixture, accepted: &BTreeSet<String>) {
    let k = &f.keys;
    let img = png(16, 8);
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let other = png(3, 3);
    let mut header27 = hex::decode(signature(&k.posting, &other, false)).expect("hex");
    header27[0] -= 4;
    let refused: Vec<Refused> = vec![
        (
            "owner key",
            format!("/alice/{}", signature(&k.owner, &other, false)),
            vec![("Content-Type", &ct)],
            multipart("file", Some("x.png"), &other),
            400,
            r#"{"error":{"name":"invalid_signature"}}"#,
        ),
        (
            "below-threshold key",
            format!("/weakling/{}", signature(&k.weak, &other, false)),
            vec![("Content-Type", &ct)],
            multipart("file", Some("x.png"), &other),
            400,
            r#"{"error":{"name":"invalid_signature"}}"#,
        ),
        (
            "someone else's key",
            format!("/alice/{}", signature(&k.stranger, &other, false)),
            vec![("Content-Type", &ct)],
            multipart("file", Some("x.png"), &other),
            400,
            r#"{"error":{"name":"invalid_signature"}}"#,
        ),
        (
            "header byte 27-30",
            format!("/alice/{}", hex::encode(&header27)),
            vec![("Content-Type", &ct)],
            multipart("file", Some("x.png"), &other),
            400,
            r#"{"error":{"name":"invalid_signature"}}"#,
        ),
        (
            "signature over other bytes",
            format!("/alice/{}", signature(&k.posting, &img, false)),
            vec![("Content-Type", &ct)],
            multipart("file", Some("x.png"), &other),
            400,
            r#"{"error":{"name":"invalid_signature"}}"#,
        ),
        (
            "/cs/ signature on the main route",
            format!("/alice/{}", signature(&k.posting, &other, true)),
            vec![("Content-Type", &ct)],
            multipart("file", Some("x.png"), &other),
            400,
            r#"{"error":{"name":"invalid_signature"}}"#,
        ),
        (
            "malformed signature",
            "/alice/zz".to_string(),
            vec![("Content-Type", &ct)],
            multipart("file", Some("x.png"), &other),
            400,
            r#"{"error":{"name":"invalid_signature"}}"#,
        ),
        (
            "POST /p/…",
            "/p/anything".to_string(),
            vec![("Content-Type", &ct)],
            multipart("file", Some("x.png"), &other),
            400,
            r#"{"error":{"name":"invalid_signature"}}"#,
        ),
        (
            "unknown account",
            format!("/nobody-here/{}", signature(&k.posting, &other, false)),
            vec![("Content-Type", &ct)],
            multipart("file", Some("x.png"), &other),
            404,
            r#"{"error":{"name":"no_such_account"}}"#,
        ),
        (
            "built-in account blacklist",
            format!("/iamgod/{}", signature(&k.posting, &other, false)),
            vec![("Content-Type", &ct)],
            multipart("file", Some("x.png"), &other),
            451,
            r#"{"error":{"name":"blacklisted"}}"#,
        ),
        (
            "account blacklist file",
            format!("/spammer/{}", signature(&k.posting, &other, false)),
            vec![("Content-Type", &ct)],
            multipart("file", Some("x.png"), &other),
            451,
            r#"{"error":{"name":"blacklisted"}}"#,
        ),
        (
            "low reputation",
            format!("/lowrep/{}", signature(&k.posting, &other, false)),
            vec![("Content-Type", &ct)],
            multipart("file", Some("x.png"), &other),
            403,
            r#"{"error":{"name":"deplorable"}}"#,
        ),
        (
            "not multipart",
            format!("/alice/{}", signature(&k.posting, &other, false)),
            vec![("Content-Type", "application/json")],
            b"{}".to_vec(),
            400,
            r#"{"error":{"info":{"msg":"Request must be multipart/form-data"},"name":"bad_request"}}"#,
        ),
        (
            "no file part",
            format!("/alice/{}", signature(&k.posting, &other, false)),
            vec![("Content-Type", &ct)],
            multipart("file", None, &other),
            400,
            r#"{"error":{"name":"file_missing"}}"#,
        ),
        (
            "not an image",
            format!("/alice/{}", signature(&k.posting, b"just some text", false)),
            vec![("Content-Type", &ct)],
            multipart("file", Some("x.txt"), b"just some text"),
            400,
            r#"{"error":{"name":"invalid_image"}}"#,
        ),
        (
            "SVG",
            format!(
                "/alice/{}",
                signature(&k.posting, b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>", false)
            ),
            vec![("Content-Type", &ct)],
            multipart(
                "file",
                Some("x.svg"),
                b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
            ),
            400,
            r#"{"error":{"name":"invalid_image"}}"#,
        ),
    ];
    for (what, path, headers, body, status, want) in &refused {
        let r = f.request("POST", path, headers, body).await;
        assert_eq!((r.status, r.text().as_str()), (*status, *want), "{what}");
        assert_eq!(r.header("content-type"), Some(JSON), "{what}");
    }

    // Requests a browser would not send: over-long Content-Length (413 before any body byte is
    // read), chunked (411), and a body cut short (400).
    let sig = signature(&k.posting, &other, false);
    let body = multipart("file", Some("x.png"), &other);
    let head = |extra: &str| {
        format!(
            "POST /alice/{sig} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: {ct}\r\n{extra}\r\n"
        )
    };
    let r = f
        .raw(head("Content-Length: 15000001\r\n").into_bytes(), false)
        .await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (413, r#"{"error":{"name":"payload_too_large"}}"#)
    );
    let mut chunked = head("Transfer-Encoding: chunked\r\n").into_bytes();
    chunked.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
    chunked.extend_from_slice(&body);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let r = f.raw(chunked, false).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (411, r#"{"error":{"name":"length_required"}}"#)
    );
    let mut truncated = head(&format!("Content-Length: {}\r\n", body.len())).into_bytes();
    truncated.extend_from_slice(&body[..body.len() / 2]);
    let r = f.raw(truncated, true).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (
            400,
            r#"{"error":{"info":{"msg":"Upload body incomplete"},"name":"bad_request"}}"#
        )
    );
    f.expect_keys_everywhere(accepted).await;
}

/// Serving uploads: every URL form, types, caching headers, ranges, refusals.
async fn serving(f: &Fixture) {
    let (img, gif) = (png(16, 8), hex::decode(VECTOR_GIF).expect("vector"));
    let key = key_of(&img);
    for path in [
        format!("/{key}/photo.png"),
        format!("/{key}"),
        format!("/{key}/any-name.jpg"),
    ] {
        let r = f.get(&path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body, img, "{path}");
        assert_eq!(r.header("content-type"), Some("image/png"));
        assert_eq!(
            r.header("cache-control"),
            Some("public,max-age=29030400,immutable")
        );
        assert_eq!(r.header("etag"), Some(format!("\"{key}\"").as_str()));
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        assert_eq!(r.header("content-length"), Some(img.len().to_string().as_str()));
    }
    let r = f.get(&format!("/{VECTOR_KEY}/vector.gif")).await;
    assert_eq!(
        (r.status, r.header("content-type"), r.body.as_slice()),
        (200, Some("image/gif"), gif.as_slice())
    );

    let tag = format!("\"{key}\"");
    let r = f
        .request("GET", &format!("/{key}/p.png"), &[("If-None-Match", &tag)], b"")
        .await;
    assert_eq!(
        (r.status, r.body.len(), r.header("etag")),
        (304, 0, Some(tag.as_str()))
    );
    let r = f
        .request("GET", &format!("/{key}/p.png"), &[("Range", "bytes=0-9")], b"")
        .await;
    assert_eq!((r.status, &r.body[..]), (206, &img[..10]));
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-9/{}", img.len()).as_str())
    );
    assert_eq!(
        r.header("content-type"),
        Some("image/png"),
        "ranged responses are typed from the file's start"
    );
    let r = f
        .request("GET", &format!("/{key}/p.png"), &[("Range", "bytes=-4")], b"")
        .await;
    assert_eq!((r.status, &r.body[..]), (206, &img[img.len() - 4..]));
    let r = f
        .request(
            "GET",
            &format!("/{key}/p.png"),
            &[("Range", "bytes=999999-")],
            b"",
        )
        .await;
    assert_eq!(
        (r.status, r.header("content-range")),
        (416, Some(format!("bytes */{}", img.len()).as_str()))
    );
    let r = f.request("HEAD", &format!("/{key}/p.png"), &[], b"").await;
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert_eq!(r.header("content-length"), Some(img.len().to_string().as_str()));
    assert_eq!(r.header("content-type"), Some("image/png"));

    let missing = format!("DQm{}", "x".repeat(44));
    let unrouted = r#"{"error":{"name":"not_found"}}"#;
    let serve_cases: Vec<(&str, String, u16, &str)> = vec![
        ("GET", format!("/{missing}/gone.jpg"), 404, ""),
        (
            "GET",
            "/favicon.ico".into(),
            400,
            r#"{"error":{"info":{"param":"hash"},"name":"invalid_param"}}"#,
        ),
        (
            "GET",
            format!("/DQmTakenDown{}", "z".repeat(35)),
            451,
            r#"{"error":{"name":"blacklisted"}}"#,
        ),
        ("GET", "/a/b/c".into(), 404, unrouted),
        ("GET", "/cs/a/b".into(), 404, unrouted),
        ("PUT", "/p/x".into(), 404, unrouted),
        ("DELETE", format!("/{key}/p.png"), 404, unrouted),
    ];
    for (method, path, status, body) in &serve_cases {
        let r = f.request(method, path, &[], b"").await;
        assert_eq!((r.status, r.text().as_str()), (*status, *body), "{method} {path}");
    }
}

/// Request ids, `nosniff` and CORS on every response, and preflights.
async fn headers_on_every_response(f: &Fixture) {
    let key = key_of(&png(16, 8));
    let r = f
        .request(
            "GET",
            "/",
            &[("X-Amzn-Trace-Id", "Root=1-abc"), ("X-Request-Id", "mine")],
            b"",
        )
        .await;
    assert_eq!(r.header("x-request-id"), Some("Root=1-abc"));
    let r = f
        .request("GET", "/favicon.ico", &[("X-Request-Id", "mine")], b"")
        .await;
    assert_eq!(r.header("x-request-id"), Some("mine"));
    let r = f
        .request("GET", &format!("/{key}"), &[("Origin", "https://hive.blog")], b"")
        .await;
    let id = r.header("x-request-id").unwrap_or_default().to_string();
    assert!(
        id.starts_with("dev-") && id[4..].chars().all(|c| c.is_ascii_digit()),
        "{id}"
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("access-control-allow-origin"), Some("https://hive.blog"));
    assert!(r.header("vary").is_some_and(|v| v.contains("Origin")));
    let r = f
        .request(
            "OPTIONS",
            "/alice/sig",
            &[
                ("Origin", "https://peakd.com"),
                ("Access-Control-Request-Method", "POST"),
            ],
            b"",
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-methods"), Some("GET,POST,OPTIONS"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("Content-Type,Authorization")
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("https://peakd.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_an_existing_partitioned_store_in_place() {
    let f = Fixture::start(Backend::Directory, |c, _, _| {
        c.fileservers[0].layout = blobstore::Layout::Partitioned;
    })
    .await;
    // An object the old imagehoster stored with `storage_partitioning = true`.
    let data = png(4, 4);
    let key = key_of(&data);
    let (bucket, _) = layout_dir(&f.config, 0).expect("directory fileserver");
    let dir = bucket.join(&key[key.len() - 2..]);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join(&key), &data).expect("plant");
    let r = f.get(&format!("/{key}/old.png")).await;
    assert_eq!(
        (r.status, r.header("content-type"), r.body == data),
        (200, Some("image/png"), true)
    );
    // No stored type for the old object: HEAD and ranges sniff its first bytes.
    let r = f.request("HEAD", &format!("/{key}/old.png"), &[], b"").await;
    assert_eq!((r.status, r.header("content-type")), (200, Some("image/png")));
    let r = f
        .request(
            "GET",
            &format!("/{key}/old.png"),
            &[("Range", "bytes=10-19")],
            b"",
        )
        .await;
    assert_eq!(
        (r.status, r.header("content-type"), &r.body[..]),
        (206, Some("image/png"), &data[10..20])
    );

    // New uploads land in the same layout.
    let img = png(6, 6);
    let r = f
        .upload(
            &format!("/alice/{}", signature(&f.keys.posting, &img, false)),
            "n.png",
            &img,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let key = key_of(&img);
    // W=1: the response may come from fs1 before fs0's write lands.
    let stored = bucket.join(&key[key.len() - 2..]).join(&key);
    let landed = harness::wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        stored.is_file().then_some(())
    });
    assert!(landed.is_some(), "written under its partition directory");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blacklist_file_changes_apply_without_restart_and_any_field_name_is_accepted() {
    let f = Fixture::start(Backend::Directory, |c, _, _| {
        c.blacklist.reload_interval = std::time::Duration::from_millis(100);
    })
    .await;
    let img = png(8, 3);
    let key = key_of(&img);
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let path = format!("/alice/{}", signature(&f.keys.posting, &img, false));
    let r = f
        .request(
            "POST",
            &path,
            &[("Content-Type", &ct)],
            &multipart("image", Some("i.png"), &img),
        )
        .await;
    assert_eq!(
        r.status, 200,
        "OH takes the first part with a filename, whatever its field name"
    );
    assert_eq!(f.get(&format!("/{key}/i.png")).await.status, 200);

    // A takedown: the operator adds the hash to the blacklist file.
    let file = f.config.blacklist.images_file.clone().expect("images file");
    std::fs::write(&file, format!(r#"{{"urls": ["{key}"], "patterns": []}}"#)).expect("write");
    let mut status = 0;
    for _ in 0..100 {
        status = f.get(&format!("/{key}/i.png")).await.status;
        if status == 451 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, 451, "the new entry applies without a restart");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_any_type_restores_oh_behaviour() {
    let f = Fixture::start(Backend::Directory, |c, _, _| c.upload.accept_any_type = true).await;
    let text = b"not an image at all";
    let r = f
        .upload(
            &format!("/alice/{}", signature(&f.keys.posting, text, false)),
            "notes.txt",
            text,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = f.get(&format!("/{}/notes.txt", key_of(text))).await;
    assert_eq!(
        (r.status, r.header("content-type"), r.body.as_slice()),
        (200, Some("application/octet-stream"), &text[..])
    );
    f.stop().await;
}

/// A re-upload of bytes held already answers as the first did and writes nothing: each
/// directory fileserver's object file is the same file (the store looked in the call that
/// would have written). Other bytes are written as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_upload_writes_nothing() {
    use std::os::unix::fs::MetadataExt;
    let f = Fixture::start(Backend::Directory, |c, _, _| {
        c.upload.write_quorum = c.fileservers.len();
    })
    .await;
    let img = png(12, 7);
    let key = key_of(&img);
    let path = format!("/alice/{}", signature(&f.keys.posting, &img, false));
    let files: Vec<_> = (0..f.config.fileservers.len())
        .map(|i| {
            layout_dir(&f.config, i)
                .expect("directory fileserver")
                .0
                .join(&key)
        })
        .collect();
    let inodes = || -> Vec<u64> {
        files
            .iter()
            .map(|p| std::fs::metadata(p).expect("object file").ino())
            .collect()
    };
    let r = f.upload(&path, "first.png", &img).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let first = inodes();
    let r = f.upload(&path, "again.png", &img).await;
    assert_eq!(
        json(&r),
        serde_json::json!({ "url": format!("http://images.test/{key}/again.png") })
    );
    assert_eq!(inodes(), first, "no fileserver wrote the object again");
    let r = f.get(&format!("/{key}/x.png")).await;
    assert_eq!((r.status, r.body == img), (200, true));
    f.stop().await;
}
