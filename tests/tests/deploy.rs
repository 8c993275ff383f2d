//! The ansible roles applied for real (`ansible/tests/deploy-chroot`): `site.yml` into two
//! debootstrapped Debian 12 roots through ansible's chroot connection, with this build's binaries
//! and the test Garage. Applied twice (the second must change nothing); a broken configuration is
//! refused by the role's validation and the installed one is left as it was; then both roots boot
//! under systemd-nspawn, each in its own network namespace, and are applied again against live
//! systemd: every service runs, Garage is bootstrapped, an upload through the edge lands on both
//! fileservers and is served back (MISS, then HIT), a config change reloads the edge by upgrade,
//! and a last apply changes nothing.

use std::path::Path;
use std::process::Command;

#[test]
fn site_yml_deploys_to_a_debian_root_then_to_it_booted_under_systemd() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ansible/tests/deploy-chroot");
    let bins = harness::process::workspace_bin("edge");
    let bin_dir = bins.parent().expect("bin dir");
    let out = Command::new("bash")
        .arg(&script)
        .arg(bin_dir)
        .env("GARAGE_BIN", harness::garage::ensure_installed())
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
    assert!(text.contains("stored on both fileservers"), "{text}");
    assert!(text.contains("MISS then HIT, identical bytes"), "{text}");
    assert!(text.contains("edge reloaded by upgrade"), "{text}");
    assert!(text.contains("apply again: changed=0"), "{text}");
}
