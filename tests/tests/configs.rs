//! Every example in `configs/` parses and validates, so an example can never rot.

use std::path::{Path, PathBuf};

use service::ConfigLoader;

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

/// The example's text with `/run/secrets/…` paths pointed at real files in `dir`.
fn with_secret_files(name: &str, dir: &Path) -> String {
    let text = std::fs::read_to_string(configs_dir().join(name)).expect("read example");
    for secret in ["fs1-secret-key", "fs2-secret-key", "blobsync-token"] {
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

/// `configs/production/` with secrets and certificates pointed at files made here.
fn production(name: &str, dir: &Path) -> String {
    let text = std::fs::read_to_string(configs_dir().join("production").join(name)).expect("read");
    for secret in [
        "fs1-secret-key",
        "fs2-secret-key",
        "blobsync-token",
        "edge-purge-token",
    ] {
        std::fs::write(dir.join(secret), "example-secret\n").expect("write secret");
    }
    std::fs::write(dir.join("redis-url"), "redis://:password@10.0.5.11:6379/\n").expect("write secret");
    if !dir.join("images.hive.blog.pem").exists() {
        harness::tls::self_signed(dir, "images.hive.blog");
    }
    let d = format!("{}/", dir.display());
    text.replace("/run/secrets/", &d).replace("/etc/hive/tls/", &d)
}

fn load<T: serde::de::DeserializeOwned + serde::Serialize + Default>(
    service: &str,
    name: &str,
    text: &str,
    secrets: &[&str],
) -> T {
    ConfigLoader::new(service)
        .toml_text(&format!("configs/production/{name}"), text)
        .secrets(secrets)
        .load()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn the_production_set_is_valid_and_wired_consistently() {
    let dir = harness::tempdir();
    let d = dir.path();
    let edges: Vec<edge::Config> = ["edge-1.toml", "edge-2.toml"]
        .iter()
        .map(|n| {
            let c: edge::Config = load("edge", n, &production(n, d), edge::config::SECRET_KEYS);
            c.validate().unwrap_or_else(|e| panic!("{n}: {e}"));
            c
        })
        .collect();
    let hosts: Vec<imagehost::Config> = ["imagehost-1.toml", "imagehost-2.toml"]
        .iter()
        .map(|n| {
            let c: imagehost::Config =
                load("imagehost", n, &production(n, d), imagehost::config::SECRET_KEYS);
            c.validate().unwrap_or_else(|e| panic!("{n}: {e}"));
            c
        })
        .collect();
    let sync: blobsync::Config = load(
        "blobsync",
        "blobsync.toml",
        &production("blobsync.toml", d),
        blobsync::config::SECRET_KEYS,
    );
    sync.validate().unwrap_or_else(|e| panic!("blobsync.toml: {e}"));

    // The wiring the playbook would derive from the inventory.
    let edge_addrs: Vec<String> = edges
        .iter()
        .map(|e| e.admin.listen.expect("admin").ip().to_string())
        .collect();
    for (i, e) in edges.iter().enumerate() {
        assert_eq!(
            e.upstreams.nodes,
            vec!["10.0.2.11:8800", "10.0.2.12:8800"],
            "edge {i} fronts both imagehosts"
        );
        assert_eq!(
            e.purge.peers,
            vec![format!("{}:80", edge_addrs[1 - i])],
            "edge {i} forwards purges to the other"
        );
        assert!(e.purge.token.is_some() && e.tls.listen.is_some());
    }
    let purge_edges: Vec<String> = edge_addrs.iter().map(|a| format!("{a}:80")).collect();
    assert_eq!(
        sync.takedown.purge_edges, purge_edges,
        "takedowns clear every edge"
    );
    for h in &hosts {
        assert_eq!(
            h.fileservers, sync.fileservers,
            "imagehost and blobsync name the same fileservers"
        );
        assert_eq!(
            h.replication.events_url.as_deref(),
            Some("http://10.0.4.11:8900/events")
        );
    }
}

#[test]
fn every_production_file_is_covered() {
    let mut names: Vec<String> = std::fs::read_dir(configs_dir().join("production"))
        .expect("configs/production/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "blobsync.toml",
            "edge-1.toml",
            "edge-2.toml",
            "imagehost-1.toml",
            "imagehost-2.toml"
        ]
    );
}
