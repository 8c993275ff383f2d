//! The systemd units the ansible roles install (our three services, Garage and MinIO): each passes `systemd-analyze verify` against a
//! root holding systemd's unit tree and the real binaries, and scores at most 2.5 ("OK") on
//! `systemd-analyze security --offline`; a broken unit is rejected by the same check.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (role, binary): the unit of each is `hive-<binary>.service` in the role's files.
const UNITS: [(&str, &str); 5] = [
    ("imagehost", "imagehost"),
    ("blobsync", "blobsync"),
    ("edge", "edge"),
    ("fileserver", "garage"),
    ("fileserver", "minio"),
];
/// `systemd-analyze security`'s exposure scale is 0–10; `--threshold` takes it ×10.
const MAX_EXPOSURE_X10: u32 = 25;

fn roles() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ansible/roles")
}

/// A root with systemd's own units, our binaries in /usr/local/bin and our units installed.
fn root() -> tempfile::TempDir {
    let dir = harness::tempdir();
    let r = dir.path();
    let status = Command::new("cp")
        .args(["-r", "/usr/lib/systemd/system"])
        .arg(mkdir(r.join("usr/lib/systemd")))
        .status()
        .expect("cp");
    assert!(status.success(), "systemd's unit tree (install systemd)");
    let bin = mkdir(r.join("usr/local/bin"));
    let units = mkdir(r.join("etc/systemd/system"));
    for (role, name) in UNITS {
        match name {
            "garage" => {
                std::fs::copy(harness::garage::ensure_installed(), bin.join(name)).expect("garage");
            }
            // MinIO cannot be downloaded here: verify needs only an executable at the path.
            "minio" => {
                std::fs::write(bin.join(name), "#!/bin/sh\n").expect("minio stand-in");
                std::fs::set_permissions(
                    bin.join(name),
                    std::os::unix::fs::PermissionsExt::from_mode(0o755),
                )
                .expect("chmod");
            }
            _ => {
                std::fs::copy(harness::process::workspace_bin(name), bin.join(name)).expect("binary");
            }
        }
        let unit = format!("hive-{name}.service");
        std::fs::copy(roles().join(role).join("files").join(&unit), units.join(&unit)).expect("unit");
    }
    dir
}

fn mkdir(p: PathBuf) -> PathBuf {
    std::fs::create_dir_all(&p).expect("mkdir");
    p
}

fn verify(root: &Path, unit: &str) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", root.display()))
        .arg(format!("/etc/systemd/system/{unit}"))
        .output()
        .expect("systemd-analyze (install systemd)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_unit_verifies_and_is_hardened() {
    let root = root();
    for (_, name) in UNITS {
        let unit = format!("hive-{name}.service");
        let (ok, err) = verify(root.path(), &unit);
        assert!(ok, "{unit}: {err}");
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(format!("--root={}", root.path().display()))
            .arg(format!("--threshold={MAX_EXPOSURE_X10}"))
            .arg(&unit)
            .output()
            .expect("systemd-analyze security");
        let text = String::from_utf8_lossy(&out.stdout);
        let score = text
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or("")
            .trim()
            .to_string();
        eprintln!("{unit}: {score}");
        assert!(
            out.status.success(),
            "{unit} is more exposed than {}: {score}",
            MAX_EXPOSURE_X10 as f32 / 10.0
        );
        // Unprivileged: every service runs as its own user.
        let text = std::fs::read_to_string(root.path().join("etc/systemd/system").join(&unit)).expect("unit");
        assert!(
            text.contains(&format!("User=hive-{name}")),
            "{unit} runs as its own user"
        );
    }
}

#[test]
fn a_broken_unit_is_rejected() {
    let root = root();
    let units = root.path().join("etc/systemd/system");
    let good = std::fs::read_to_string(units.join("hive-imagehost.service")).expect("unit");
    std::fs::write(
        units.join("hive-broken.service"),
        good.replace("ExecStart=", "ExecStrat="),
    )
    .expect("write");
    let (ok, err) = verify(root.path(), "hive-broken.service");
    assert!(!ok, "a unit without ExecStart passes verify");
    assert!(err.contains("ExecStrat"), "{err}");
    let missing = good.replace("/usr/local/bin/imagehost", "/usr/local/bin/imagehostt");
    std::fs::write(units.join("hive-missing.service"), missing).expect("write");
    let (ok, err) = verify(root.path(), "hive-missing.service");
    assert!(!ok, "a unit whose binary is missing passes verify: {err}");
}
