//! What a user sees: an upload through the edge is served (MISS then HIT), lands on both
//! fileservers, resizes through `/p/`, and legacy and avatar redirects lead a real client to images.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::setup::{dimensions, png, Cluster, Uploaded};

fn get(edge: SocketAddr, path: &str) -> harness::http::Response {
    harness::http::get(edge, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// curl following redirects: (status, number of redirects, content type, body).
fn curl_follow(url: &str) -> (u16, u32, String, Vec<u8>) {
    let dir = harness::tempdir();
    let out_file = dir.path().join("body");
    let out = Command::new("curl")
        .args([
            "-sS",
            "-L",
            "--max-redirs",
            "5",
            "--max-time",
            "20",
            "--noproxy",
            "*",
            "-o",
        ])
        .arg(&out_file)
        .args(["-w", "%{http_code} %{num_redirects} %{content_type}", url])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut parts = text.splitn(3, ' ');
    let code = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let redirects = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let ty = parts.next().unwrap_or("").to_string();
    (code, redirects, ty, std::fs::read(&out_file).unwrap_or_default())
}

fn b58(s: &str) -> String {
    bs58::encode(s.as_bytes()).into_string()
}

#[test]
fn an_upload_is_served_replicated_resized_and_redirected_through_the_edge() {
    let c = Cluster::start(1);
    let edge = c.edge();
    let image = png(640, 480, 1);
    let Uploaded { url, path, key } = c.upload_ok(&image, "photo.png");
    assert!(key.starts_with("DQm"), "{key}");

    let first = get(edge, &path);
    assert_eq!((first.status, first.header("x-cache")), (200, Some("MISS")));
    let second = get(edge, &path);
    assert_eq!((second.status, second.header("x-cache")), (200, Some("HIT")));
    assert_eq!(first.body, image);
    assert_eq!(second.body, image);

    let both = harness::wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        let on = |i| c.stored(i, &key).is_some_and(|b| b == image);
        (on(0) && on(1)).then_some(())
    });
    assert!(both.is_some(), "the upload is on both fileservers within seconds");

    // Our own upload resized through /p/ (read from the upload store in place).
    let r = get(edge, &format!("/p/{}?width=100", b58(&url)));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(dimensions(&r.body), (100, 75));
    assert_eq!(
        get(edge, &format!("/p/{}?width=100", b58(&url))).header("x-cache"),
        Some("HIT")
    );
    // An image from elsewhere (a loopback origin, allowed in this setup), as WebP.
    let remote = format!("http://{}/remote.png", c.origin.addr());
    let r = get(edge, &format!("/p/{}?width=200&format=webp", b58(&remote)));
    assert_eq!(
        (r.status, r.header("content-type")),
        (200, Some("image/webp")),
        "{}",
        r.text()
    );
    assert_eq!(dimensions(&r.body), (200, 150));
    // format=auto: the edge keeps one answer per Accept class, read as imagehost reads it, so a
    // client refusing WebP with q=0 is never sent the WebP another client's request cached.
    let auto = format!("/p/{}?width=160&format=auto", b58(&remote));
    for (accept, want, cache) in [
        ("image/avif,image/webp,*/*", "image/avif", "MISS"),
        ("image/webp,*/*", "image/webp", "MISS"),
        ("image/webp,image/avif", "image/avif", "HIT"),
        ("image/webp;q=0, */*", "image/png", "MISS"),
        ("IMAGE/WEBP", "image/webp", "HIT"),
        ("image/png", "image/png", "HIT"),
    ] {
        let r = harness::http::request(edge, "GET", &auto, &[("Accept", accept)], &[]).expect("auto");
        assert_eq!(
            (r.status, r.header("content-type"), r.header("x-cache")),
            (200, Some(want), Some(cache)),
            "Accept: {accept}"
        );
    }

    // Legacy size URLs and avatars redirect; a real client follows them to images.
    let (code, redirects, ty, body) = curl_follow(&format!("http://{edge}/120x0/{remote}"));
    assert_eq!((code, redirects), (200, 1), "{ty}");
    assert!(ty.starts_with("image/"), "{ty}");
    assert_eq!(dimensions(&body).0, 120);
    let (code, redirects, ty, body) =
        curl_follow(&format!("http://{edge}/u/{}/avatar/small", crate::setup::USER));
    assert_eq!((code, redirects), (200, 1), "{ty}");
    assert!(ty.starts_with("image/"), "{ty}");
    assert_eq!(dimensions(&body), (64, 64));
    let (code, _, ty, _) = curl_follow(&format!("http://{edge}/u/{}/cover", crate::setup::USER));
    assert_eq!(code, 200, "{ty}");
}
