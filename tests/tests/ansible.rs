//! The ansible tree: `ansible-lint` (production profile, offline) and a syntax check pass, and
//! every configuration the roles render from the production inventory is accepted by the
//! service's own `--check-config`; the MinIO bucket bootstrap works against a real S3 server.
//! (The roles applied for real: `deploy.rs`.)

use std::path::{Path, PathBuf};
use std::process::Command;

fn ansible_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ansible")
}

/// The tools `scripts/test` installs into `.local/ansible` (pinned versions).
fn tool(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.local/ansible/bin")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: `bash scripts/test` installs the ansible tools",
        p.display()
    );
    p
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .current_dir(ansible_dir())
        .env("ANSIBLE_NOCOLOR", "1")
        .output()
        .expect("run ansible");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn lint_and_syntax_pass() {
    let text = run(Command::new(tool("ansible-lint")).args([
        "--offline",
        "--nocolor",
        "--profile",
        "production",
        "site.yml",
        "roles",
        "tests",
    ]));
    assert!(
        text.contains("Profile 'production' was required, and it passed"),
        "{text}"
    );
    run(Command::new(tool("ansible-playbook")).args(["site.yml", "--syntax-check"]));
}

#[test]
fn every_rendered_configuration_passes_check_config() {
    let dir = harness::tempdir();
    let (rendered, secrets) = (dir.path().join("rendered"), dir.path().join("secrets"));
    std::fs::create_dir_all(&rendered).expect("dir");
    for service in ["imagehost", "blobsync", "edge"] {
        std::fs::create_dir_all(secrets.join(service)).expect("dir");
        for s in [
            "fs1-secret-key",
            "fs2-secret-key",
            "edge-purge-token",
            "blobsync-token",
        ] {
            std::fs::write(secrets.join(service).join(s), "from-the-vault\n").expect("secret");
        }
    }
    let extra = serde_json::json!({
        "render_dir": rendered, "hive_secrets": secrets,
        "vault_edge_purge_token": "t", "vault_blobsync_token": "t",
    });
    run(Command::new(tool("ansible-playbook"))
        .args([
            "-i",
            "inventory/production.yml",
            "-i",
            "tests/local.yml",
            "tests/render.yml",
            "-e",
        ])
        .arg(extra.to_string()));
    let cases = [
        ("edge-1", "edge"),
        ("edge-2", "edge"),
        ("imagehost-1", "imagehost"),
        ("imagehost-2", "imagehost"),
        ("blobsync-1", "blobsync"),
    ];
    for (host, service) in cases {
        let file = rendered.join(format!("{host}.toml"));
        let out = Command::new(harness::process::workspace_bin(service))
            .arg("--config")
            .arg(&file)
            .arg("--check-config")
            .output()
            .expect("check-config");
        assert!(
            out.status.success(),
            "{host}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&file).unwrap_or_default()
        );
    }
    // Each node's scrape target names its own metrics endpoint, as prometheus.yml reads them.
    for (host, target) in [
        ("edge-1", "10.0.1.11:9080"),
        ("imagehost-2", "10.0.2.12:9800"),
        ("blobsync-1", "10.0.4.11:8900"),
    ] {
        let file = rendered.join(format!("{host}.file_sd.json"));
        let sd: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).expect("file_sd")).expect("file_sd JSON");
        assert_eq!(sd[0]["targets"][0], target, "{host}: {sd}");
        assert_eq!(sd[0]["labels"]["node"], host, "{host}: {sd}");
    }
    let edge1 = std::fs::read_to_string(rendered.join("edge-1.toml")).expect("edge-1");
    assert!(
        edge1.contains(r#"peers = ["10.0.1.12:80"]"#),
        "each edge forwards purges to the other:\n{edge1}"
    );
    assert!(
        edge1.contains(r#"nodes = ["10.0.2.11:8800", "10.0.2.12:8800"]"#),
        "{edge1}"
    );
    // Prometheus and peer edges reach the admin listener on the private address; a new edge
    // preloads the other's hot set.
    assert!(edge1.contains(r#"listen = "10.0.1.11:9080""#), "{edge1}");
    assert!(edge1.contains(r#"peers = ["http://10.0.1.12:9080"]"#), "{edge1}");
}

/// The blobsync role refuses to deploy an API that deletes images everywhere without a token:
/// the play fails with a message that says which vault variable to set.
#[test]
fn the_blobsync_role_refuses_a_missing_token() {
    let preflight = |token: &str| {
        let extra = serde_json::json!({
            "vault_blobsync_token": token,
            "vault_fileserver_secret_keys": {"fs1": "k", "fs2": "k"},
        });
        Command::new(tool("ansible-playbook"))
            .args([
                "-i",
                "inventory/production.yml",
                "-i",
                "tests/local.yml",
                "tests/preflight.yml",
                "-e",
            ])
            .arg(extra.to_string())
            .current_dir(ansible_dir())
            .env("ANSIBLE_NOCOLOR", "1")
            .output()
            .expect("run ansible-playbook")
    };
    let out = preflight("");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("vault_blobsync_token is empty") && text.contains("must not run without a token"),
        "{text}"
    );
    let out = preflight("a-token");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// The fileserver role's MinIO bucket bootstrap makes only signed S3 calls (HEAD, then PUT for a
/// missing bucket). MinIO's binary cannot be had here, so a real Garage stands in for the S3
/// side; run twice, the second run changes nothing.
#[test]
fn minio_bootstrap_creates_missing_buckets_with_signed_s3_calls() {
    let mut g = harness::Garage::start("minio-standin", &["uploads"]);
    g.cli(&["key", "allow", "--create-bucket", "test"])
        .expect("let the key create buckets");
    let a = g.access().clone();
    let port = a.endpoint.rsplit(':').next().expect("port").to_string();
    let ready = format!("http://{}/health", g.admin_addr());
    let dir = harness::tempdir();
    let env = dir.path().join("minio.env");
    let script = ansible_dir().join("roles/fileserver/files/minio-bootstrap");
    // The role's env file with these credentials, then the script for `buckets`.
    let bootstrap = |secret: &str, buckets: &str| {
        std::fs::write(
            &env,
            format!(
                "MINIO_ROOT_USER=\"{}\"\nMINIO_ROOT_PASSWORD=\"{secret}\"\n",
                a.access_key
            ),
        )
        .expect("env file");
        Command::new("sh")
            .arg(&script)
            .arg(&env)
            .arg(&port)
            .arg(buckets)
            .env("READY_URL", &ready)
            .output()
            .expect("run minio-bootstrap")
    };
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let first = bootstrap(&a.secret_key, "uploads,proxy");
    assert!(first.status.success(), "{}", text(&first));
    assert_eq!(
        String::from_utf8_lossy(&first.stdout).trim(),
        "changed: bucket proxy created"
    );
    let second = bootstrap(&a.secret_key, "uploads,proxy");
    assert!(second.status.success(), "{}", text(&second));
    assert_eq!(
        String::from_utf8_lossy(&second.stdout).trim(),
        "",
        "nothing left to change"
    );
    let listed = g.cli(&["bucket", "list"]).expect("bucket list");
    assert!(listed.contains("proxy") && listed.contains("uploads"), "{listed}");

    // Wrong credentials: a clear failure (the role's task fails), no bucket made.
    let wrong = bootstrap("wrong-secret", "other");
    assert!(
        !wrong.status.success() && text(&wrong).contains("are the credentials right?"),
        "{}",
        text(&wrong)
    );
    assert!(!g.cli(&["bucket", "list"]).expect("list").contains("other"));
}
