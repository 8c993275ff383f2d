//! AVIF sources through `/p/` against a real origin on loopback, files made here by `avifenc`:
//! decoded (dav1d) at every bit depth, subsampling and range, alpha, crop and orientation kept,
//! colours right through both matrices; passed through with `match` as OH-develop does; and what
//! `format=auto` gives each kind of client.

use std::collections::HashMap;
use std::sync::Arc;

use harness::origin::{Origin, Reply};

use super::fixture::{Backend, Fixture};
use super::images::{self, decode, Decoded};
use super::proxy::p;

fn origin() -> Origin {
    let files: HashMap<&str, Vec<u8>> = HashMap::from([
        // A JPEG beside them, for what format=auto does with a source that is not AVIF.
        ("/photo.jpg", images::jpeg(800, 500)),
        // Real AVIFs: 8-bit 4:2:0 limited range, 10-bit 4:4:4 full range, 12-bit 4:2:2, gray
        // (4:0:0), with alpha, and flat colours lossless (identity matrix) and lossy.
        (
            "/photo.avif",
            images::avif(800, 500, &["-y", "420", "-r", "limited"]),
        ),
        (
            "/deep.avif",
            images::avif(200, 125, &["-d", "10", "-y", "444", "-r", "full"]),
        ),
        ("/twelve.avif", images::avif(160, 100, &["-d", "12", "-y", "422"])),
        ("/gray.avif", images::avif(160, 100, &["-y", "400"])),
        ("/alpha.avif", images::avif_alpha(300, 200)),
        (
            "/rotated.avif",
            images::avif_of(&images::quadrants(80, 40), &["-l", "--irot", "1"]),
        ),
        (
            "/rotated-mirrored.avif",
            images::avif_of(&images::quadrants(80, 40), &["-l", "--irot", "3", "--imir", "0"]),
        ),
        ("/flags.avif", images::avif_of(&images::red_over_blue(), &["-l"])),
        (
            "/cropped.avif",
            images::avif_of(&images::quadrants(80, 40), &["-l", "--crop", "40,0,40,40"]),
        ),
        (
            "/cropped-rotated.avif",
            images::avif_of(
                &images::quadrants(80, 40),
                &["-l", "--crop", "40,0,40,40", "--irot", "1"],
            ),
        ),
        (
            "/flags-lossy.avif",
            images::avif_of(
                &images::red_over_blue(),
                &["-y", "420", "-r", "limited", "--min", "0", "--max", "10"],
            ),
        ),
    ]);
    let files = Arc::new(files);
    Origin::start(move |req| match files.get(req.path.as_str()) {
        Some(b) => Reply::ok(b.clone()).header("Content-Type", "application/octet-stream"),
        None => Reply::status(404),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avif_sources_decode_pass_through_and_negotiate() {
    let o = origin();
    let f = Fixture::start(Backend::Directory, |c, _, _| c.proxy.allow_loopback = true).await;
    let u = |path: &str| format!("http://{}{path}", o.addr());
    let d = |format: &'static str, width, height, frames| Decoded {
        format,
        width,
        height,
        frames,
    };
    // (file, query, Accept, expected output)
    let cases: Vec<(&str, &str, Option<&str>, Decoded)> = vec![
        // AVIF input decodes (dav1d) whenever a format is asked for.
        (
            "/photo.avif",
            "width=300&format=jpeg",
            None,
            d("jpeg", 300, 188, 1),
        ),
        (
            "/photo.avif",
            "width=100&height=100&format=webp",
            None,
            d("webp", 100, 100, 1),
        ),
        ("/deep.avif", "format=png&width=50", None, d("png", 50, 31, 1)),
        (
            "/twelve.avif",
            "format=jpeg&height=50&mode=fit",
            None,
            d("jpeg", 80, 50, 1),
        ),
        ("/gray.avif", "format=jpeg&width=40", None, d("jpeg", 40, 25, 1)),
        ("/alpha.avif", "width=150&format=png", None, d("png", 150, 100, 1)),
        // clap keeps its rectangle: the right 40×40 of 80×40.
        ("/cropped.avif", "format=png", None, d("png", 40, 40, 1)),
        // irot and imir are applied like EXIF orientation: 80×40 stored, 40×80 shown.
        ("/rotated.avif", "format=png", None, d("png", 40, 80, 1)),
        (
            "/rotated-mirrored.avif",
            "format=png&width=20",
            None,
            d("png", 20, 40, 1),
        ),
        (
            "/photo.avif",
            "width=120&format=auto",
            Some("image/webp,*/*"),
            d("webp", 120, 75, 1),
        ),
    ];
    for (file, query, accept, want) in &cases {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("Accept", *a)).collect();
        let r = f.request("GET", &p(&u(file), query), &headers, b"").await;
        assert_eq!(r.status, 200, "{file}?{query}: {:?}", r.text());
        assert_eq!(&decode(&r.body), want, "{file}?{query}");
        assert_eq!(
            r.header("content-type"),
            Some(format!("image/{}", want.format).as_str()),
            "{file}?{query}"
        );
    }
    // AVIF alpha is kept, and colours come out right through both matrices.
    let png = f.get(&p(&u("/alpha.avif"), "width=150&format=png")).await;
    assert!(
        images::pixel(&png.body, 0, 0)[3] < 10,
        "transparent AVIF corner kept"
    );
    assert!(
        images::pixel(&png.body, 149, 99)[3] > 200,
        "opaque AVIF corner kept"
    );
    for file in ["/flags.avif", "/flags-lossy.avif"] {
        let png = f.get(&p(&u(file), "format=png&width=64")).await;
        assert_eq!(png.status, 200, "{file}");
        for (y, want) in [(8, [255, 0, 0]), (56, [0, 0, 255])] {
            let got = images::pixel(&png.body, 32, y);
            let off = (0..3).map(|i| (got[i] as i32 - want[i]).abs()).max();
            assert!(off <= Some(6), "{file} at y={y}: {got:?}, want {want:?}");
        }
    }
    // A quarter turn anti-clockwise brings the top-right (green) to the top-left; a quarter turn
    // clockwise then a top-bottom flip puts white there.
    const R: [u8; 3] = [255, 0, 0];
    const G: [u8; 3] = [0, 255, 0];
    const B: [u8; 3] = [0, 0, 255];
    const W: [u8; 3] = [255, 255, 255];
    // The clean aperture (the right half here) is cut first, then rotated.
    for (file, want) in [
        ("/rotated.avif", [G, W, R, B]),
        ("/rotated-mirrored.avif", [W, G, B, R]),
        ("/cropped.avif", [G, G, W, W]),
        ("/cropped-rotated.avif", [G, W, G, W]),
    ] {
        let png = f.get(&p(&u(file), "format=png")).await;
        assert_eq!(images::quadrant_colours(&png.body), want, "{file}");
    }
    // A real AVIF with match is passed through as it is (OH-develop), like the fake one.
    let r = f.get(&p(&u("/photo.avif"), "width=10")).await;
    assert_eq!((r.status, r.header("content-type")), (200, Some("image/avif")));
    let addr = o.addr();
    let original = tokio::task::spawn_blocking(move || harness::http::get(addr, "/photo.avif"))
        .await
        .expect("join")
        .expect("origin");
    assert_eq!(r.body, original.body);
    // format=auto: a client that takes AVIF and asks for no size gets an AVIF source as it is,
    // tagged apart from the variant; with a size it gets an AVIF encoded at that size
    // (`negotiate_avif`, on by default); one that takes only WebP gets WebP; a JPEG source is
    // AVIF or WebP likewise.
    let accept = |a: &'static str| vec![("Accept", a)];
    let r = f
        .request(
            "GET",
            &p(&u("/photo.avif"), "format=auto"),
            &accept("image/avif,image/webp,*/*"),
            b"",
        )
        .await;
    assert_eq!((r.status, r.header("content-type")), (200, Some("image/avif")));
    assert_eq!(r.body, original.body, "passed through");
    assert!(
        r.header("etag").is_some_and(|t| t.ends_with("|avif\"")),
        "{:?}",
        r.header("etag")
    );
    assert!(r.header("vary").is_some_and(|v| v.contains("Accept")));
    let auto = p(&u("/photo.avif"), "width=130&format=auto");
    for (client, want) in [
        ("image/avif,image/webp,*/*", "avif"),
        ("image/avif", "avif"),
        ("image/webp", "webp"),
    ] {
        let r = f.request("GET", &auto, &accept(client), b"").await;
        assert_eq!(decode(&r.body), d(want, 130, 81, 1), "{client}");
        assert_ne!(r.body, original.body, "{client}: encoded at its size");
        assert!(
            r.header("etag")
                .is_some_and(|t| t.ends_with(&format!("|{want}\""))),
            "{client}"
        );
    }
    for (client, want) in [("image/avif,image/webp", "avif"), ("image/webp", "webp")] {
        let r = f
            .request(
                "GET",
                &p(&u("/photo.jpg"), "width=130&format=auto"),
                &accept(client),
                b"",
            )
            .await;
        assert_eq!(decode(&r.body), d(want, 130, 81, 1), "{client}");
    }
    // A client that takes neither gets JPEG (PNG when there is alpha), which is not stored as
    // the variant: a plain `match` afterwards still gets the AVIF as it is.
    let r = f
        .request(
            "GET",
            &p(&u("/photo.avif"), "width=140&format=auto"),
            &accept("image/jpeg,*/*"),
            b"",
        )
        .await;
    assert_eq!(decode(&r.body), d("jpeg", 140, 88, 1));
    assert!(r.header("etag").is_some_and(|t| t.ends_with("|jpeg\"")));
    let r = f
        .request(
            "GET",
            &p(&u("/alpha.avif"), "width=150&format=auto"),
            &accept("*/*"),
            b"",
        )
        .await;
    assert_eq!(decode(&r.body), d("png", 150, 100, 1));
    assert!(images::pixel(&r.body, 0, 0)[3] < 10, "alpha kept");
    let r = f.get(&p(&u("/photo.avif"), "width=140")).await;
    assert_eq!(
        (r.header("content-type"), &r.body),
        (Some("image/avif"), &original.body)
    );
    f.stop().await;
}
