//! A full disk under the upload spool, on the imagehost binary (its spool directory a 1 MiB disk
//! of its own, `harness::faults::on_small_disk`): an upload that does not fit gets a clear
//! `507 insufficient_storage` with Retry-After and no-store, nothing half-written stays in the
//! spool or reaches a fileserver, what was stored before is still served, and an upload that
//! fits goes through afterwards.

use std::net::SocketAddr;
use std::time::Duration;

use harness::process::{spawn_tied, terminate, wait_exit, Killed};
use imagehost::auth::signature::{public_key_string, random_signing_key, sign};
use imagehost::keys::UploadDigests;

const BIN: &str = env!("CARGO_BIN_EXE_imagehost");

/// A JPEG of at least `bytes`: a real image, tagged, padded with comment segments.
fn jpeg_of(bytes: usize, tag: &str) -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).expect("encode");
    let mut jpeg = out.into_inner();
    let com = |payload: &[u8]| {
        let mut seg = vec![0xFF, 0xFE];
        seg.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        seg.extend_from_slice(payload);
        seg
    };
    jpeg.splice(2..2, com(tag.as_bytes()));
    while jpeg.len() < bytes {
        let n = (bytes - jpeg.len()).min(60_000);
        jpeg.splice(2..2, com(&vec![b'p'; n]));
    }
    jpeg
}

#[test]
fn a_full_spool_disk_is_a_clear_507_and_loses_nothing() {
    let dir = harness::tempdir();
    let d = dir.path();
    let spool = d.join("spool");
    std::fs::create_dir_all(&spool).expect("spool dir");
    let key = random_signing_key();
    harness::hive::static_account_files(d, "alice", &public_key_string(key.verifying_key()));
    let port = harness::free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut cmd = std::process::Command::new(BIN);
    for s in [
        format!("server.listen={addr}"),
        format!("server.service_url=http://{addr}"),
        format!(
            "fileservers=[{{ name = \"a\", directory = {{ path = \"{}/fs\" }} }}]",
            d.display()
        ),
        format!("accounts.static_file={}/accounts.json", d.display()),
        format!("blacklist.images_file={}/bl-images.json", d.display()),
        format!("blacklist.accounts_file={}/bl-accounts.json", d.display()),
        format!("upload.spool_dir={}", spool.display()),
        "upload.spool_memory=65536".into(),
        "upload_limits.max=1000".into(),
    ] {
        cmd.args(["--set", &s]);
    }
    let log = std::fs::File::create(d.join("imagehost.log")).expect("log");
    let mut wrapped = harness::faults::on_small_disk(&cmd, &spool, 1 << 20);
    let mut child =
        Killed(spawn_tied(wrapped.stdout(std::process::Stdio::null()).stderr(log)).expect("spawn"));
    harness::wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        (harness::http_status(addr, "/healthcheck") == Some(200)).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "imagehost up: {}",
            std::fs::read_to_string(d.join("imagehost.log")).unwrap_or_default()
        )
    });
    let upload = |data: &[u8]| {
        let sig = sign(&key, &UploadDigests::of(data).image_hash);
        let (ty, body) = harness::http::multipart_file(data, "a.jpg");
        harness::http::request(
            addr,
            "POST",
            &format!("/alice/{sig}"),
            &[("Content-Type", &ty)],
            &body,
        )
        .expect("answer")
    };

    let small = jpeg_of(30_000, "small");
    let r = upload(&small);
    assert_eq!(r.status, 200, "{}", r.text());
    let small_key = UploadDigests::of(&small).upload_key();

    let big = jpeg_of(2_000_000, "big");
    let r = upload(&big);
    assert_eq!(r.status, 507, "{}", r.text());
    assert_eq!(r.text(), r#"{"error":{"name":"insufficient_storage"}}"#);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(r.header("retry-after").is_some());
    let left = std::fs::read_dir(format!("/proc/{}/root{}", child.0.id(), spool.display()))
        .expect("the spool as imagehost sees it")
        .count();
    assert_eq!(left, 0, "nothing half-written in the spool");
    let big_key = UploadDigests::of(&big).upload_key();
    assert_eq!(
        harness::http_status(addr, &format!("/{big_key}/a.jpg")),
        Some(404),
        "nothing reached a fileserver"
    );
    let r = harness::http::get(addr, &format!("/{small_key}/a.jpg")).expect("get");
    assert_eq!((r.status, &r.body), (200, &small), "what was stored is served");

    let fits = jpeg_of(600_000, "fits");
    let r = upload(&fits);
    assert_eq!(
        r.status,
        200,
        "an upload that fits goes through after: {}",
        r.text()
    );
    terminate(&child.0);
    wait_exit(&mut child.0, Duration::from_secs(10));
}
