//! A takedown pushed to imagehost's admin listener (as blobsync does): every route that could
//! yield the image answers 451 from then on — `/<key>`, `/<key>/<any name>`, `/p/` of its URL at
//! any size and format, an upload of the same bytes — and its hot-cache files (original and
//! variants) are gone; a push needs the token. Also: a 304 only for an object that exists, and a
//! filename that is not UTF-8 still serves the image.

use super::fixture::{json, key_of, png, signature, Backend, Fixture};
use super::proxy::p;

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

    let push = |auth: Option<&'static str>| {
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
    };
    assert_eq!(
        push(None).await.expect("join").status,
        403,
        "a push needs the token"
    );
    assert_eq!(push(Some("Bearer wrong")).await.expect("join").status, 403);
    let r = push(Some("Bearer cluster-secret")).await.expect("join");
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

    let body = serde_json::json!({ "keys": [key] }).to_string();
    let r = tokio::task::spawn_blocking(move || {
        harness::http::request(
            std::net::SocketAddr::from(([127, 0, 0, 1], admin)),
            "POST",
            "/takedowns",
            &[("Authorization", "Bearer cluster-secret")],
            body.as_bytes(),
        )
        .expect("push")
    })
    .await
    .expect("join");
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
