//! Every example in `configs/` parses and validates, so an example can never rot.

use std::path::{Path, PathBuf};

use service::ConfigLoader;

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

/// The example's text with `/run/secrets/…` paths pointed at real files in `dir`.
fn with_secret_files(name: &str, dir: &Path) -> String {
    let text = std::fs::read_to_string(configs_dir().join(name)).expect("read example");
    for secret in ["fs1-secret-key", "fs2-secret-key"] {
        std::fs::write(dir.join(secret), "example-secret\n").expect("write secret");
    }
    std::fs::write(dir.join("redis-url"), "redis://:password@127.0.0.1:6379/\n").expect("write secret");
    text.replace("/run/secrets/", &format!("{}/", dir.display()))
}

#[test]
fn imagehost_example_is_valid() {
    let dir = harness::tempdir();
    let text = with_secret_files("imagehost.toml", dir.path());
    let c: imagehost::Config = ConfigLoader::new("imagehost")
        .toml_text("configs/imagehost.toml", &text)
        .secrets(imagehost::config::SECRET_KEYS)
        .load()
        .unwrap_or_else(|e| panic!("{e}"));
    c.validate().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.fileservers.len(), 2);
    let s3 = c.fileservers[0].s3.as_ref().expect("fs1 is S3");
    assert_eq!(
        s3.secret_access_key.as_ref().map(|s| s.expose()),
        Some("example-secret")
    );
}

#[test]
fn blobsync_example_is_valid() {
    let dir = harness::tempdir();
    let text = with_secret_files("blobsync.toml", dir.path());
    let c: blobsync::Config = ConfigLoader::new("blobsync")
        .toml_text("configs/blobsync.toml", &text)
        .secrets(blobsync::config::SECRET_KEYS)
        .load()
        .unwrap_or_else(|e| panic!("{e}"));
    c.validate().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.buckets, vec!["uploads", "proxy"]);
}

#[test]
fn edge_example_is_valid() {
    let text = std::fs::read_to_string(configs_dir().join("edge.toml")).expect("read example");
    let c: edge::Config = ConfigLoader::new("edge")
        .toml_text("configs/edge.toml", &text)
        .secrets(edge::config::SECRET_KEYS)
        .load()
        .unwrap_or_else(|e| panic!("{e}"));
    c.validate().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.upstreams.nodes.len(), 2);
}

#[test]
fn every_example_is_covered() {
    let mut names: Vec<String> = std::fs::read_dir(configs_dir())
        .expect("configs/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["blobsync.toml", "edge.toml", "imagehost.toml"],
        "add a test for each new example"
    );
}
