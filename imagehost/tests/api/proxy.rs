//! The `/p/` proxy, legacy redirects, avatars and covers (§1.4–1.8, §4) against a real HTTP
//! origin on loopback: OH's measured outputs, headers and errors, the upload shortcut, stored
//! variants, single-flight and the hot cache across a restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use blobstore::Key;
use harness::origin::{Origin, Reply};
use imagehost::proxy::target::{encode, original_key};

use super::fixture::{json, metric, Backend, Fixture};
use super::images::{self, decode, Decoded};

/// The origin's files; `/slow…` paths answer after 300 ms, `/redirect/N` redirects N times.
pub fn origin() -> Origin {
    let files: HashMap<&str, Vec<u8>> = HashMap::from([
        ("/photo.jpg", images::jpeg(1600, 1000)),
        ("/slow.jpg", images::jpeg(1600, 1000)),
        ("/alpha.png", images::png_alpha(300, 200)),
        ("/anim.gif", images::gif(200, 100, 3)),
        ("/rotated.jpg", images::jpeg_oriented(400, 200, 6)),
        ("/pic.webp", images::webp(300, 200)),
        ("/pic.avif", images::fake_avif()),
        (
            "/icon.svg",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"/>".to_vec(),
        ),
        ("/big.jpg", {
            let mut v = images::jpeg(64, 64);
            v.resize(3_000_000, 0);
            v
        }),
    ]);
    let files = Arc::new(files);
    Origin::start(move |req| {
        let path = req.path.split('?').next().unwrap_or("");
        if path.starts_with("/slow") {
            std::thread::sleep(Duration::from_millis(300));
        }
        if let Some(n) = path.strip_prefix("/redirect/") {
            let n: u32 = n.parse().unwrap_or(0);
            let next = if n <= 1 {
                "/photo.jpg".to_string()
            } else {
                format!("/redirect/{}", n - 1)
            };
            return Reply::status(302).header("Location", &next);
        }
        match files.get(path) {
            // The upstream type is never trusted.
            Some(b) => Reply::ok(b.clone()).header("Content-Type", "application/octet-stream"),
            None => Reply::status(404),
        }
    })
}

pub fn p(url: &str, query: &str) -> String {
    if query.is_empty() {
        format!("/p/{}", encode(url))
    } else {
        format!("/p/{}?{query}", encode(url))
    }
}

async fn proxy_fixture(max_image_size: u64) -> Fixture {
    Fixture::start(Backend::Directory, |c, _, _| {
        c.proxy.allow_loopback = true;
        c.proxy.max_image_size = max_image_size;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_outputs_match_the_reference() {
    let o = origin();
    let f = proxy_fixture(2_000_000).await;
    let u = |path: &str| format!("http://{}{path}", o.addr());
    let d = |format: &'static str, width, height, frames| Decoded {
        format,
        width,
        height,
        frames,
    };
    // (file, query, Accept, expected output)
    let cases: Vec<(&str, &str, Option<&str>, Decoded)> = vec![
        // §1.4's measured table for a 1600×1000 JPEG.
        ("/photo.jpg", "", None, d("jpeg", 1280, 800, 1)),
        ("/photo.jpg", "width=300", None, d("jpeg", 300, 188, 1)),
        ("/photo.jpg", "height=100&mode=fit", None, d("jpeg", 160, 100, 1)),
        (
            "/photo.jpg",
            "width=100&height=100&format=webp",
            None,
            d("webp", 100, 100, 1),
        ),
        (
            "/photo.jpg",
            "width=2000&mode=fit",
            None,
            d("jpeg", 1600, 1000, 1),
        ),
        ("/photo.jpg", "format=png&width=50", None, d("png", 50, 31, 1)),
        (
            "/photo.jpg",
            "width=100.7&format=jpg",
            None,
            d("jpeg", 100, 63, 1),
        ),
        // Redirects are followed (by hand, re-checked) up to 5 hops.
        ("/redirect/5", "width=64", None, d("jpeg", 64, 40, 1)),
        // EXIF orientation 6 is applied: 400×200 stored, 200×400 shown.
        ("/rotated.jpg", "", None, d("jpeg", 200, 400, 1)),
        ("/rotated.jpg", "width=100", None, d("jpeg", 100, 200, 1)),
        // … also when it is decoded at 1/2 by the shrink decoder.
        ("/rotated.jpg", "width=50", None, d("jpeg", 50, 100, 1)),
        // PNG keeps PNG (and alpha) with match; formats can be forced.
        ("/alpha.png", "width=150", None, d("png", 150, 100, 1)),
        (
            "/alpha.png",
            "width=150&format=jpeg",
            None,
            d("jpeg", 150, 100, 1),
        ),
        ("/pic.webp", "width=30&height=30", None, d("webp", 30, 30, 1)),
        // GIF: fit + match + no size is the original, animation and all; resizes keep the
        // animation too (D10), where OH kept only the first frame.
        ("/anim.gif", "mode=fit", None, d("gif", 200, 100, 3)),
        ("/anim.gif", "mode=fit&width=100", None, d("gif", 100, 50, 3)),
        ("/anim.gif", "", None, d("gif", 200, 100, 3)),
        (
            "/anim.gif",
            "width=50&height=50&format=png",
            None,
            d("png", 50, 50, 1),
        ),
        ("/anim.gif", "width=50&format=webp", None, d("webp", 50, 25, 1)),
        // format=auto negotiates from Accept (D11).
        (
            "/photo.jpg",
            "width=120&format=auto",
            Some("image/avif,image/webp,*/*"),
            d("avif", 120, 75, 1),
        ),
        (
            "/photo.jpg",
            "width=120&format=auto",
            Some("image/avif;q=0,image/webp,*/*"),
            d("webp", 120, 75, 1),
        ),
        (
            "/photo.jpg",
            "width=120&format=auto",
            Some("image/jpeg"),
            d("jpeg", 120, 75, 1),
        ),
        // Read as the edge buckets it: q=0 refuses WebP, case does not matter.
        (
            "/photo.jpg",
            "width=120&format=auto",
            Some("image/webp;q=0, image/jpeg"),
            d("jpeg", 120, 75, 1),
        ),
        (
            "/photo.jpg",
            "width=120&format=auto",
            Some("IMAGE/WEBP"),
            d("webp", 120, 75, 1),
        ),
    ];
    for (file, query, accept, want) in &cases {
        let path = p(&u(file), query);
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("Accept", *a)).collect();
        let r = f.request("GET", &path, &headers, b"").await;
        assert_eq!(r.status, 200, "{file}?{query}: {:?}", r.text());
        let got = decode(&r.body);
        assert_eq!(&got, want, "{file}?{query}");
        assert_eq!(
            r.header("content-type"),
            Some(format!("image/{}", want.format).as_str()),
            "{file}?{query}"
        );
        assert_eq!(
            r.header("cache-control"),
            Some("public,max-age=29030400,immutable")
        );
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        let vary = r.header("vary").unwrap_or("");
        assert_eq!(
            vary.contains("Accept"),
            query.contains("auto"),
            "{file}?{query}: vary {vary}"
        );
    }
    // Alpha survives a PNG variant; a forced JPEG is flattened on black as libvips does.
    let png = f.get(&p(&u("/alpha.png"), "width=150")).await;
    assert!(images::pixel(&png.body, 0, 0)[3] < 10, "transparent corner kept");
    // The fake AVIF is passed through byte for byte with match.
    let r = f.get(&p(&u("/pic.avif"), "width=10")).await;
    assert_eq!((r.status, r.header("content-type")), (200, Some("image/avif")));
    assert_eq!(r.body, images::fake_avif());
    // The GIF passthrough is the origin's bytes.
    let r = f.get(&p(&u("/anim.gif"), "mode=fit")).await;
    assert_eq!(r.body, images::gif(200, 100, 3));

    // Variants and originals land in every fileserver's proxy bucket, under OH's keys.
    let orig = original_key(&u("/photo.jpg"));
    for want in [
        orig.clone(),
        format!("{orig}_Cover_Match_300"),
        format!("{orig}_0x100"),
        format!("{orig}_Cover_WEBP_100_100"),
    ] {
        for i in 0..2 {
            assert!(appears(&f, i, &want).await, "{want} on fileserver {i}");
        }
    }
    // The original was fetched once for all its variants (hot cache and proxy store).
    let fetched = metric("imagehost_fetches_total{outcome=\"ok\"}");
    assert_eq!(fetched as usize, 7, "one fetch per distinct original URL");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_errors_match_the_reference() {
    let o = origin();
    let f = proxy_fixture(2_000_000).await;
    let u = |path: &str| format!("http://{}{path}", o.addr());
    // (path, status, body, Cache-Control)
    let cases: Vec<(String, u16, &str, Option<&str>)> = vec![
        (
            "/p/0OIl".into(),
            400,
            r#"{"error":{"name":"invalid_proxy_url"}}"#,
            None,
        ),
        (
            format!("/p/{}", encode("not a url")),
            400,
            r#"{"error":{"name":"invalid_proxy_url"}}"#,
            None,
        ),
        (
            p(&u("/photo.jpg"), "mode=crop"),
            400,
            r#"{"error":{"info":{"param":"mode"},"name":"invalid_param"}}"#,
            None,
        ),
        (
            p(&u("/photo.jpg"), "format=gif"),
            400,
            r#"{"error":{"info":{"param":"format"},"name":"invalid_param"}}"#,
            None,
        ),
        (
            p(&u("/photo.jpg"), "width=-5"),
            400,
            r#"{"error":{"info":{"param":"width"},"name":"invalid_param"}}"#,
            None,
        ),
        (
            p(&u("/missing.jpg"), ""),
            400,
            r#"{"error":{"name":"invalid_image"}}"#,
            Some("public,max-age=600"),
        ),
        (
            p(&u("/icon.svg"), ""),
            400,
            r#"{"error":{"name":"invalid_image"}}"#,
            Some("public,max-age=600"),
        ),
        (
            p(&u("/big.jpg"), ""),
            413,
            r#"{"error":{"name":"payload_too_large"}}"#,
            Some("public,max-age=600"),
        ),
        (
            p(&u("/redirect/6"), ""),
            400,
            r#"{"error":{"name":"upstream_error"}}"#,
            Some("no-store"),
        ),
        (
            p("http://127.0.0.1:1/nothing.jpg", ""),
            400,
            r#"{"error":{"name":"upstream_error"}}"#,
            Some("no-store"),
        ),
        (
            p(
                "http://images.test/DQmNotThere1111111111111111111111111111111111/x.png",
                "",
            ),
            400,
            r#"{"error":{"info":{"msg":"Upload not found"},"name":"bad_request"}}"#,
            Some("public,max-age=600"),
        ),
        (
            p(&u("/photo.jpg"), "").replace("/p/", "/p/x/"),
            404,
            r#"{"error":{"name":"not_found"}}"#,
            None,
        ),
        (
            format!("{}/extra", p(&u("/photo.jpg"), "")),
            404,
            r#"{"error":{"name":"not_found"}}"#,
            None,
        ),
    ];
    for (path, status, body, cc) in &cases {
        let r = f.get(path).await;
        assert_eq!((r.status, r.text().as_str()), (*status, *body), "{path}");
        assert_eq!(r.header("cache-control"), *cc, "{path}");
    }
    // PUT is not routed: 404, never 405.
    let r = f.request("PUT", &p(&u("/photo.jpg"), ""), &[], b"").await;
    assert_eq!(r.status, 404);
    // A failed fetch is not stored: the next request tries again.
    let before = o.hits();
    let _ = f.get(&p(&u("/missing.jpg"), "")).await;
    assert_eq!(o.hits(), before + 1);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_proxied_in_place_and_double_proxies_unwrap() {
    let o = origin();
    let f = proxy_fixture(15_000_000).await;
    let png = images::png_alpha(120, 80);
    let key = super::fixture::key_of(&png);
    let sig = super::fixture::signature(&f.keys.posting, &png, false);
    let r = f.upload(&format!("/alice/{sig}"), "a.png", &png).await;
    assert_eq!(r.status, 200, "{:?}", r.text());
    let own = format!("http://images.test/{key}/a.png");
    let r = f.get(&p(&own, "width=60")).await;
    assert_eq!(r.status, 200, "{:?}", r.text());
    assert_eq!(
        decode(&r.body),
        Decoded {
            format: "png",
            width: 60,
            height: 40,
            frames: 1
        }
    );
    // Read in place: the original is never copied into the proxy bucket, only the variant.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let store = f.proxy_store(0);
    assert!(!store.exists(&Key::new(key.as_str()).unwrap()).await.unwrap());
    assert!(store
        .exists(&Key::new(format!("{key}_Cover_Match_60").as_str()).unwrap())
        .await
        .unwrap());
    assert_eq!(metric("imagehost_fetches_total{outcome=\"ok\"}"), 0.0);

    // Our own /p/ wrapping another URL is unwrapped; the inner query is ignored.
    let inner = format!(
        "http://images.test{}",
        p(&format!("http://{}/photo.jpg", o.addr()), "width=10")
    );
    let r = f.get(&p(&inner, "width=40")).await;
    assert_eq!(r.status, 200, "{:?}", r.text());
    assert_eq!(decode(&r.body).width, 40);
    assert_eq!(o.hits(), 1);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_avatar_and_cover_redirects() {
    let o = origin();
    let painter_profile = format!("http://{}/photo.jpg", o.addr());
    let painter = serde_json::json!({
        "name": "painter",
        "posting_json_metadata": serde_json::json!({"profile": {"version": 2, "profile_image": painter_profile, "cover_image": painter_profile}}).to_string(),
        "json_metadata": "{}",
    });
    let f = Fixture::start_with(Backend::Directory, vec![painter], |c, _, _| {
        c.proxy.allow_loopback = true;
        c.profiles.default_avatar = "https://images.test/DQmDefault".into();
    })
    .await;
    let target = format!("http://{}/photo.jpg", o.addr());

    // Legacy: exact relative Location, parameter order, Cache-Control, Koa's body.
    let r = f.get(&format!("/100x0/{target}")).await;
    let want = format!("/p/{}?format=match&mode=fit&width=100", encode(&target));
    assert_eq!((r.status, r.header("location")), (301, Some(want.as_str())));
    assert_eq!(
        r.header("cache-control"),
        Some("public,max-age=29030400,immutable")
    );
    assert_eq!(
        r.text(),
        format!(
            "Redirecting to <a href=\"{0}\">{0}</a>.",
            want.replace('&', "&amp;")
        )
    );
    let r = f
        .request(
            "GET",
            &format!("/0x0/{target}"),
            &[("Accept", "application/json")],
            b"",
        )
        .await;
    assert_eq!(
        r.text(),
        format!("Redirecting to /p/{}?format=match&mode=fit.", encode(&target))
    );
    let followed = f.get(&want).await;
    assert_eq!(
        decode(&followed.body),
        Decoded {
            format: "jpeg",
            width: 100,
            height: 63,
            frames: 1
        }
    );
    let r = f.get("/0x0/").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (
            400,
            r#"{"error":{"info":{"param":"url"},"name":"missing_param"}}"#
        )
    );
    let r = f.get("/10x10").await;
    assert_eq!(r.status, 400, "not legacy: a 6-character hash");

    // Avatars: named sizes, else 128; 302 to a relative /p/ URL; a day of caching.
    for (path, size) in [
        ("/u/painter/avatar/small", 64),
        ("/u/painter/avatar", 128),
        ("/u/painter/avatar/64", 128),
        ("/u/painter/avatar/large", 512),
    ] {
        let r = f.get(path).await;
        let want = format!("/p/{}?width={size}&height={size}", encode(&painter_profile));
        assert_eq!(
            (r.status, r.header("location")),
            (302, Some(want.as_str())),
            "{path}"
        );
        assert_eq!(r.header("cache-control"), Some("public,max-age=86400"));
        assert!(r
            .header("server-timing")
            .is_some_and(|v| v.contains("get_accounts")));
        let img = f.get(&want).await;
        assert_eq!(
            decode(&img.body),
            Decoded {
                format: "jpeg",
                width: size,
                height: size,
                frames: 1
            },
            "{path}"
        );
    }
    let r = f.get("/u/alice/avatar/small").await;
    let want = format!(
        "/p/{}?width=64&height=64",
        encode("https://images.test/DQmDefault")
    );
    assert_eq!(
        r.header("location"),
        Some(want.as_str()),
        "no profile image: the default"
    );
    let r = f.get("/u/nobody/avatar").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (404, r#"{"error":{"name":"no_such_account"}}"#)
    );
    // Covers: 1344×240, ten minutes.
    let r = f.get("/u/painter/cover").await;
    let want = format!("/p/{}?width=1344&height=240", encode(&painter_profile));
    assert_eq!((r.status, r.header("location")), (302, Some(want.as_str())));
    assert_eq!(r.header("cache-control"), Some("public,max-age=600"));
    let img = f.get(&want).await;
    assert_eq!(
        decode(&img.body),
        Decoded {
            format: "jpeg",
            width: 1344,
            height: 240,
            frames: 1
        }
    );
    // Account metadata is cached (D12): repeated avatar hits do not each call the RPC node.
    let calls = f.hive.calls();
    for _ in 0..5 {
        f.get("/u/painter/avatar/small").await;
    }
    assert_eq!(f.hive.calls(), calls);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_requests_for_one_cold_variant_cost_one_fetch_and_one_render() {
    let o = origin();
    let f = proxy_fixture(15_000_000).await;
    let path = p(&format!("http://{}/slow.jpg", o.addr()), "width=320");
    let addr = f.addr;
    let clients: Vec<_> = (0..100)
        .map(|_| {
            let path = path.clone();
            tokio::task::spawn_blocking(move || harness::http::get(addr, &path).expect("request"))
        })
        .collect();
    let mut bodies = Vec::new();
    for c in clients {
        let r = c.await.expect("join");
        assert_eq!(r.status, 200);
        bodies.push(r.body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every client got the same bytes"
    );
    assert_eq!(o.hits(), 1, "one origin fetch");
    assert_eq!(
        metric("imagehost_renders_total{outcome=\"ok\"}"),
        1.0,
        "one resize"
    );
    assert_eq!(
        metric("imagehost_jpeg_decodes_total{decoder=\"shrink\"}"),
        1.0,
        "1600 px to 320 px: decoded at 1/2 by the shrink decoder"
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hot_cache_serves_after_a_restart_without_the_origin_or_fileservers() {
    let cache = harness::tempdir();
    let dir = cache.path().to_path_buf();
    let o = origin();
    let path = p(&format!("http://{}/photo.jpg", o.addr()), "width=200");
    let f = Fixture::start(Backend::Directory, |c, _, _| {
        c.proxy.allow_loopback = true;
        c.cache.dir = Some(dir.clone());
    })
    .await;
    let first = f.get(&path).await;
    assert_eq!(first.status, 200);
    f.stop().await;
    drop(o); // the origin is gone, and the next fixture has empty fileservers

    let dir = cache.path().to_path_buf();
    let f = Fixture::start(Backend::Directory, |c, _, _| {
        c.proxy.allow_loopback = true;
        c.cache.dir = Some(dir.clone());
    })
    .await;
    let again = f.get(&path).await;
    assert_eq!((again.status, &again.body), (200, &first.body));
    assert_eq!(metric("imagehost_hotcache_events_total{event=\"hit\"}"), 1.0);
    let _ = json;
    f.stop().await;
}

/// Whether `key` appears in fileserver `i`'s proxy bucket within two seconds (background writes).
async fn appears(f: &Fixture, i: usize, key: &str) -> bool {
    let (store, key) = (f.proxy_store(i), Key::new(key).unwrap());
    for _ in 0..100 {
        if store.exists(&key).await.unwrap_or(false) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Whether `file` comes to hold exactly `want` within two seconds (background writes).
async fn holds(file: &std::path::Path, want: &[u8]) -> bool {
    for _ in 0..100 {
        if std::fs::read(file).is_ok_and(|b| b == want) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Variants go to the proxy bucket without fsyncs (a cache). What a crash can leave of such a
/// write (a body cut short on one fileserver, zeroed on the other) is never served: the read finds
/// it torn, the variant is rendered again, served whole, and stored whole again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variant_torn_by_a_crash_is_rendered_again_not_served() {
    let f = Fixture::start(Backend::Directory, |c, _, _| {
        c.cache.dir = None; // every read goes to the fileservers
    })
    .await;
    let png = images::png_alpha(120, 80);
    let key = super::fixture::key_of(&png);
    let sig = super::fixture::signature(&f.keys.posting, &png, false);
    assert_eq!(
        f.upload(&format!("/alice/{sig}"), "a.png", &png).await.status,
        200
    );
    let url = p(&format!("http://images.test/{key}/a.png"), "width=60");
    let first = f.get(&url).await;
    assert_eq!((first.status, decode(&first.body).width), (200, 60));
    let variant = Key::new(format!("{key}_Cover_Match_60").as_str()).unwrap();
    let files: Vec<std::path::PathBuf> = (0..2)
        .map(|i| {
            let root = &f.config.fileservers[i]
                .directory
                .as_ref()
                .expect("directory")
                .path;
            root.join(&f.config.buckets.proxy).join(variant.as_str())
        })
        .collect();
    for (i, file) in files.iter().enumerate() {
        assert!(
            holds(file, &first.body).await,
            "the variant is stored whole on fileserver {i}"
        );
    }
    std::fs::write(&files[0], &first.body[..first.body.len() / 3]).unwrap();
    std::fs::write(&files[1], vec![0u8; first.body.len()]).unwrap();
    let renders = metric("imagehost_renders_total{outcome=\"ok\"}");

    let again = f.get(&url).await;
    assert_eq!(again.status, 200, "{:?}", again.text());
    assert_eq!(again.body, first.body, "rendered again, the same bytes");
    assert_eq!(metric("imagehost_renders_total{outcome=\"ok\"}"), renders + 1.0);
    for (i, file) in files.iter().enumerate() {
        assert!(
            holds(file, &first.body).await,
            "stored whole again on fileserver {i}"
        );
    }
    f.stop().await;
}

/// AVIF output: asked for (`format=avif`), or negotiated under `format=auto` for a client whose
/// `Accept` takes AVIF (`negotiate_avif`, on by default; else WebP, else the source's format),
/// each its own variant with `Vary: Accept`; an animation stays animated (WebP), alpha is kept;
/// with `negotiate_avif` off, WebP again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avif_is_encoded_when_asked_for_or_negotiated() {
    let o = origin();
    let f = proxy_fixture(2_000_000).await;
    let u = |path: &str| format!("http://{}{path}", o.addr());
    let get = |path: String, accept: Option<&'static str>| {
        let f = &f;
        async move {
            let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
            f.request("GET", &path, &headers, b"").await
        }
    };
    let r = get(p(&u("/photo.jpg"), "width=300&format=avif"), None).await;
    assert_eq!(
        (r.status, r.header("content-type")),
        (200, Some("image/avif")),
        "{:?}",
        r.text()
    );
    assert_eq!(
        decode(&r.body),
        Decoded {
            format: "avif",
            width: 300,
            height: 188,
            frames: 1
        }
    );

    let browser = Some("image/avif,image/webp,image/apng,*/*;q=0.8");
    let cases = [
        (browser, "image/avif"),
        (Some("image/webp,*/*"), "image/webp"),
        (None, "image/jpeg"),
    ];
    for (accept, want) in cases {
        let r = get(p(&u("/photo.jpg"), "width=200&format=auto"), accept).await;
        assert_eq!(
            (r.status, r.header("content-type")),
            (200, Some(want)),
            "{accept:?}"
        );
        assert!(
            r.header("vary").is_some_and(|v| v.contains("Accept")),
            "{accept:?}"
        );
        assert_eq!(decode(&r.body).width, 200, "{accept:?}");
    }
    // Alpha survives; an animation asked for as AVIF stays an animation, as WebP.
    let r = get(p(&u("/alpha.png"), "width=150&format=avif"), None).await;
    let px = images::avif_pixels(&r.body);
    assert_eq!((px.width, px.channels), (150, 4));
    assert!(px.data[3] < 10, "transparent corner kept");
    let r = get(p(&u("/anim.gif"), "width=100&format=avif"), None).await;
    assert_eq!(r.header("content-type"), Some("image/webp"));
    assert_eq!(decode(&r.body).frames, 1, "decoded by image's still decoder");
    // Each is its own variant in the proxy bucket.
    let orig = original_key(&u("/photo.jpg"));
    for want in [format!("{orig}_Cover_AVIF_300"), format!("{orig}_Cover_AVIF_200")] {
        assert!(appears(&f, 0, &want).await, "{want}");
    }
    f.stop().await;

    // With negotiation off: a client taking AVIF is answered WebP under `format=auto`; asked, AVIF.
    let f = Fixture::start(Backend::Directory, |c, _, _| {
        c.proxy.allow_loopback = true;
        c.proxy.negotiate_avif = false;
    })
    .await;
    let r = f
        .request(
            "GET",
            &p(&u("/photo.jpg"), "width=120&format=auto"),
            &[("Accept", "image/avif,image/webp,*/*")],
            b"",
        )
        .await;
    assert_eq!(r.header("content-type"), Some("image/webp"));
    let r = f.get(&p(&u("/photo.jpg"), "width=120&format=avif")).await;
    assert_eq!(r.header("content-type"), Some("image/avif"));
    f.stop().await;
}
