//! The ansible roles applied for real: `site.yml` into a debootstrapped Debian 12 root through
//! ansible's chroot connection, with this build's binaries (`ansible/tests/deploy-chroot`).
//! Applied twice (the second must change nothing); then a broken configuration is refused by the
//! role's validation and the installed one is left as it was.

use std::path::Path;
use std::process::Command;

#[test]
fn site_yml_applies_to_a_debian_root_idempotently_and_refuses_a_broken_config() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ansible/tests/deploy-chroot");
    let bins = harness::process::workspace_bin("edge");
    let bin_dir = bins.parent().expect("bin dir");
    let out = Command::new("bash")
        .arg(&script)
        .arg(bin_dir)
        .output()
        .expect("run deploy-chroot");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "deploy failed:\n{text}");
    assert!(text.contains("second apply: changed=0"), "{text}");
    assert!(text.contains("broken config: refused"), "{text}");
}
