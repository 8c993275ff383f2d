//! A takedown pushed to imagehost's admin listener (as blobsync does): every route that could
//! yield the image answers 451 from then on — `/<key>`, `/<key>/<any name>`, `/p/` of its URL at
//! any size and format, an upload of the same bytes — and its hot-cache files (original and
//! variants) are gone; a push needs the token. Also: a 304 only for an object that exists, and a
//! filename that is not UTF-8 still serves the image.

use super::fixture::{json, key_of, png, signature, Backend, Fixture};
use super::proxy::p;

/// Pushes the takedown of `key` to imagehost's admin listener on `admin`, as blobsync does.
async fn push(admin: u16, key: &str, auth: Option<&'static str>) -> harness::http::Response {
    let body = serde_json::json!({ "keys": [key] }).to_string();
    tokio::task::spawn_blocking(move || {
        let headers: Vec<(&str, &str)> = auth.map(|a| vec![("Authorization", a)]).unwrap_or_default();
        harness::http::request(
            std::net::SocketAddr::from(([127, 0, 0, 1], admin)),
            "POST",
            "/takedowns",
            &headers,
            body.as_bytes(),
        )
        .expect("push")
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_takedown_refuses_every_route_and_clears_the_hot_cache() {
    let admin = harness::free_port();
    let cache_dir = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen = cache_dir.clone();
    let f = Fixture::start(Backend::Directory, |c, dir, _| {
        c.admin.listen = Some(format!("127.0.0.1:{admin}").parse().expect("addr"));
        c.takedowns.token = Some(service::Secret::new("cluster-secret"));
        *seen.lock().expect("lock") = c.cache.dir.clone();
        let _ = dir;
    })
    .await;
    let data = png(120, 80);
    let key = key_of(&data);
    let sig = signature(&f.keys.posting, &data, false);
    let r = f.upload(&format!("/alice/{sig}"), "photo.png", &data).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let own = format!("http://images.test/{key}/photo.png");
    for path in [
        format!("/{key}/photo.png"),
        format!("/{key}"),
        p(&own, "width=50"),
        p(&own, "width=60&format=webp"),
    ] {
        assert_eq!(f.get(&path).await.status, 200, "{path} before");
    }
    let cached = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&key))
                    .collect()
            })
            .unwrap_or_default()
    };
    let dir = cache_dir.lock().expect("lock").clone().expect("cache dir");
    assert!(
        !cached(&dir).is_empty(),
        "the original and variants are in the hot cache"
    );

    assert_eq!(
        push(admin, &key, None).await.status,
        403,
        "a push needs the token"
    );
    assert_eq!(push(admin, &key, Some("Bearer wrong")).await.status, 403);
    let r = push(admin, &key, Some("Bearer cluster-secret")).await;
    assert_eq!(r.status, 200, "{}", r.text());

    for path in [
        format!("/{key}/photo.png"),
        format!("/{key}/another-name.jpg"),
        format!("/{key}"),
        format!("/%44{}/photo.png", &key[1..]),
        p(&own, "width=50"),
        p(&own, "width=61"),
        p(&own, "width=60&format=webp"),
        p(
            &format!("http://images.test/p/{}", imagehost::proxy::target::encode(&own)),
            "",
        ),
    ] {
        let r = f.get(&path).await;
        assert_eq!(r.status, 451, "{path}: {}", r.text());
    }
    let r = f.upload(&format!("/alice/{sig}"), "again.png", &data).await;
    assert_eq!(
        (r.status, json(&r)["error"]["name"].as_str()),
        (451, Some("blacklisted")),
        "re-upload"
    );
    assert!(cached(&dir).is_empty(), "hot cache cleared: {:?}", cached(&dir));
    f.stop().await;
}

/// Copies of a taken-down upload under other names: our host under another scheme or port reads
/// the upload itself (so its variants are the upload's and go with it), and a byte-identical
/// copy on someone else's host answers to the upload's takedown too, its rendered answers
/// tagged with the upload's key for the edges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takedown_reaches_aliases_of_our_host_and_byte_identical_copies_elsewhere() {
    let admin = harness::free_port();
    let data = png(90, 60);
    let key = key_of(&data);
    let served = data.clone();
    let origin = harness::origin::Origin::start(move |req| match req.path.as_str() {
        "/rehosted.png" => harness::origin::Reply::ok(served.clone()),
        _ => harness::origin::Reply::status(404),
    });
    let f = Fixture::start(Backend::Directory, |c, _, _| {
        c.admin.listen = Some(format!("127.0.0.1:{admin}").parse().expect("addr"));
        c.takedowns.token = Some(service::Secret::new("cluster-secret"));
        c.proxy.allow_loopback = true;
    })
    .await;
    let sig = signature(&f.keys.posting, &data, false);
    let r = f.upload(&format!("/alice/{sig}"), "photo.png", &data).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let aliases = [
        format!("https://images.test/{key}/photo.png"),
        format!("HTTP://IMAGES.TEST:80/{key}"),
    ];
    let copy = format!("http://{}/rehosted.png", origin.addr());
    for url in aliases.iter().chain([&copy]) {
        let r = f.get(&p(url, "width=40")).await;
        assert_eq!(r.status, 200, "{url} before: {}", r.text());
        let tags = r.header("surrogate-key").unwrap_or_default();
        assert!(
            tags.split(' ').any(|t| t == key),
            "{url} tagged with the upload: {tags}"
        );
    }
    assert_eq!(origin.hits(), 1, "only the copy elsewhere is fetched");
    // Another size of the copy renders from the hot cache, which kept the bytes' content digest
    // with them: still tagged with the upload it is, though not hashed again.
    let r = f.get(&p(&copy, "width=39")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let tags = r.header("surrogate-key").unwrap_or_default();
    assert!(tags.split(' ').any(|t| t == key), "from the hot cache: {tags}");
    assert_eq!(origin.hits(), 1, "read from the hot cache, not fetched");

    let r = push(admin, &key, Some("Bearer cluster-secret")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    for url in aliases.iter() {
        for q in ["width=40", "width=41", ""] {
            let r = f.get(&p(url, q)).await;
            assert_eq!(r.status, 451, "{url} ?{q}: {}", r.text());
        }
    }
    // The copy elsewhere: a new size is refused once its bytes are seen to be the upload's.
    for q in ["width=41", "width=42&format=webp"] {
        let r = f.get(&p(&copy, q)).await;
        assert_eq!(r.status, 451, "{copy} ?{q}: {}", r.text());
    }
    f.stop().await;
}

/// Without a hot cache, further sizes of a fetched original are rendered from the proxy store,
/// which keeps the original's content digest with its bytes: they still answer to the upload
/// those bytes are, though the original is neither fetched nor (for its key) hashed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetched_originals_content_digest_is_kept_in_the_proxy_store() {
    let data = png(70, 50);
    let key = key_of(&data);
    let served = data.clone();
    let origin = harness::origin::Origin::start(move |req| match req.path.as_str() {
        "/copy.png" => harness::origin::Reply::ok(served.clone()),
        _ => harness::origin::Reply::status(404),
    });
    let f = Fixture::start(Backend::Directory, |c, _, _| {
        c.cache.dir = None;
        c.proxy.allow_loopback = true;
    })
    .await;
    let copy = format!("http://{}/copy.png", origin.addr());
    let r = f.get(&p(&copy, "width=40")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let stored = blobstore::Key::new(imagehost::proxy::target::original_key(&copy)).unwrap();
    let digest = hex::encode(&bs58::decode(&key[1..]).into_vec().unwrap()[2..]);
    for i in 0..f.stores.len() {
        // Written in the background after the render.
        let mut head = None;
        for _ in 0..200 {
            if let Ok(h) = f.proxy_store(i).head(&stored).await {
                head = Some(h);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        let head = head.expect("the original reaches the proxy store");
        assert_eq!(
            head.metadata.get("content-digest"),
            Some(&digest),
            "fileserver {i}"
        );
    }
    for q in ["width=39", "width=38&format=webp"] {
        let r = f.get(&p(&copy, q)).await;
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        let tags = r.header("surrogate-key").unwrap_or_default();
        assert!(
            tags.split(' ').any(|t| t == key),
            "{q}: tagged with the upload: {tags}"
        );
    }
    assert_eq!(origin.hits(), 1, "read from the proxy store, not fetched again");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_304_only_for_what_exists_and_any_filename_bytes_serve_the_image() {
    let f = Fixture::start(Backend::Directory, |_, _, _| {}).await;
    let data = png(40, 30);
    let key = key_of(&data);
    let missing = key_of(b"never uploaded");
    let etag = |k: &str| format!("\"{k}\"");
    let r = f
        .request(
            "GET",
            &format!("/{missing}/x.png"),
            &[("If-None-Match", &etag(&missing))],
            &[],
        )
        .await;
    assert_eq!(r.status, 404, "no 304 for an object that does not exist");
    let sig = signature(&f.keys.posting, &data, false);
    assert_eq!(
        f.upload(&format!("/alice/{sig}"), "x.png", &data).await.status,
        200
    );
    let r = f
        .request(
            "GET",
            &format!("/{key}/x.png"),
            &[("If-None-Match", &etag(&key))],
            &[],
        )
        .await;
    assert_eq!(r.status, 304);
    // The filename is not read: bytes that are not UTF-8 there serve the image, as OH does.
    let r = f.get(&format!("/{key}/%FF%FEbad.png")).await;
    assert_eq!((r.status, r.body.len()), (200, data.len()));
    let r = f.head(&format!("/{key}/caf%C3%A9%E9.png")).await;
    assert_eq!(r.status, 200, "half a UTF-8 sequence");
    f.stop().await;
}

/// blobsync's queue lost and made again: its takedown list starts over with a new identity and
/// numbers from the start. A node that had reached a higher number in the old list pulls the new
/// one from the start instead of waiting past numbers it already saw, and keeps the old keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takedown_list_made_again_is_pulled_from_the_start() {
    let old = png(30, 20);
    let new = png(31, 20);
    let (old_key, new_key) = (key_of(&old), key_of(&new));
    let list = std::sync::Arc::new(std::sync::Mutex::new(serde_json::json!({
        "epoch": "first",
        "entries": [[41, old_key.clone()]]
    })));
    let l = list.clone();
    let feed = harness::origin::Origin::start(move |req| {
        let since: u64 = req
            .path
            .split("since=")
            .nth(1)
            .and_then(|v| v.split('&').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let state = l.lock().expect("lock").clone();
        let page: Vec<(u64, String)> = serde_json::from_value::<Vec<(u64, String)>>(state["entries"].clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|(seq, _)| *seq > since)
            .collect();
        let last = page.last().map_or(since, |(seq, _)| *seq);
        let body = serde_json::json!({
            "takedowns": page.iter().map(|(seq, key)| serde_json::json!({"seq": seq, "key": key, "at_ms": 0})).collect::<Vec<_>>(),
            "last": last,
            "epoch": state["epoch"],
        });
        harness::origin::Reply::ok(body.to_string()).header("Content-Type", "application/json")
    });
    let url = format!("http://{}/takedowns", feed.addr());
    let f = Fixture::start(Backend::Directory, move |c, _, _| {
        c.takedowns.url = Some(url);
        c.takedowns.poll_interval = std::time::Duration::from_millis(100);
    })
    .await;
    for data in [&old, &new] {
        let sig = signature(&f.keys.posting, data, false);
        let r = f.upload(&format!("/alice/{sig}"), "a.png", data).await;
        assert!(r.status == 200 || r.status == 451, "{}", r.text());
    }
    let status = |key: String| {
        let f = &f;
        async move { f.get(&format!("/{key}/a.png")).await.status }
    };
    for _ in 0..100 {
        if status(old_key.clone()).await == 451 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status(old_key.clone()).await, 451, "the first list is pulled");
    assert_eq!(status(new_key.clone()).await, 200);

    *list.lock().expect("lock") = serde_json::json!({ "epoch": "second", "entries": [[3, new_key.clone()]] });
    for _ in 0..100 {
        if status(new_key.clone()).await == 451 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        status(new_key).await,
        451,
        "numbered 3 in the new list, below the 41 reached in the old"
    );
    assert_eq!(
        status(old_key).await,
        451,
        "what the old list took down stays down"
    );
    f.stop().await;
}

/// A JPEG's decoded pixels, kept so that its next sizes skip the decode, answer to its takedown
/// like its files: forgotten when it lands, and no size is served from them after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takedown_forgets_the_kept_pixels_of_its_image() {
    use super::fixture::metric;
    let admin = harness::free_port();
    let f = Fixture::start(Backend::Directory, |c, _, _| {
        c.admin.listen = Some(format!("127.0.0.1:{admin}").parse().expect("addr"));
        c.takedowns.token = Some(service::Secret::new("cluster-secret"));
    })
    .await;
    let data = super::images::jpeg(600, 400);
    let key = key_of(&data);
    let sig = signature(&f.keys.posting, &data, false);
    let r = f.upload(&format!("/alice/{sig}"), "photo.jpg", &data).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let own = format!("http://images.test/{key}/photo.jpg");
    // Both sizes decode at full size: the second resizes from the first's pixels.
    for q in ["width=350", "width=320&format=webp"] {
        let r = f.get(&p(&own, q)).await;
        assert_eq!(r.status, 200, "?{q}: {}", r.text());
    }
    assert_eq!(metric("imagehost_kept_rasters_total{outcome=\"kept\"}"), 1.0);
    assert_eq!(metric("imagehost_kept_rasters_total{outcome=\"hit\"}"), 1.0);
    assert_eq!(metric("imagehost_kept_pixels_bytes"), (600 * 400 * 3) as f64);

    let r = push(admin, &key, Some("Bearer cluster-secret")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(metric("imagehost_kept_pixels_bytes"), 0.0, "forgotten");
    for q in ["width=330", "width=350"] {
        let r = f.get(&p(&own, q)).await;
        assert_eq!(r.status, 451, "?{q}: {}", r.text());
    }
    assert_eq!(
        metric("imagehost_kept_rasters_total{outcome=\"hit\"}"),
        1.0,
        "nothing rendered since"
    );
    f.stop().await;
}
