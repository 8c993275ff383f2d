//! The imagehost binary: --help, --check-config on good and bad layers, graceful SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use harness::process::{spawn_tied, terminate, wait_exit};

const BIN: &str = env!("CARGO_BIN_EXE_imagehost");

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run imagehost");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_the_common_flags() {
    let (code, out, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    for flag in [
        "--config",
        "--set",
        "--check-config",
        "--log-format",
        "--log-level",
    ] {
        assert!(out.contains(flag), "{flag} missing from --help:\n{out}");
    }
}

/// `hive-sign` names itself, and its `sign` help describes every argument.
#[test]
fn hive_sign_names_itself_and_describes_its_arguments() {
    let sign = env!("CARGO_BIN_EXE_hive-sign");
    let out = Command::new(sign).arg("--version").output().expect("hive-sign");
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(version.starts_with("hive-sign "), "{version}");
    let out = Command::new(sign)
        .args(["sign", "--help"])
        .output()
        .expect("hive-sign");
    let help = String::from_utf8_lossy(&out.stdout);
    for (arg, says) in [("<FILE>", "image to upload"), ("--checksum", "checksum route")] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(arg))
            .unwrap_or_default();
        assert!(line.contains(says), "{arg} undescribed in:\n{help}");
    }
}

/// `(arguments, environment, what stderr must mention)`.
type BadCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a [&'a str]);

#[test]
fn check_config_accepts_defaults_and_names_bad_keys_and_their_layer() {
    let (code, out, err) = run(&["--check-config"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("configuration OK"), "{out}");

    let cases: &[BadCase] = &[
        (
            &["--check-config", "--set", "server.lisen=127.0.0.1:1"],
            &[],
            &["unknown field `lisen`", "--set server.lisen"],
        ),
        (
            &["--check-config"],
            &[("IMAGEHOST__SERVER__SERVICE_URL", "ftp://x")],
            &["server.service_url"],
        ),
        (
            &["--check-config"],
            &[("IMAGEHOST__SERVER__LISTEN", "nowhere")],
            &["server.listen", "IMAGEHOST__SERVER__LISTEN"],
        ),
        (
            &["--check-config", "--config", "/nonexistent.toml"],
            &[],
            &["cannot read config file /nonexistent.toml"],
        ),
        (&["--check-config", "--log-format", "xml"], &[], &["log.format"]),
    ];
    for (args, env, wants) in cases {
        let (code, _, err) = run(args, env);
        assert_eq!(code, 2, "{args:?} {env:?}: {err}");
        for w in *wants {
            assert!(err.contains(w), "{args:?} {env:?}: `{err}` should mention `{w}`");
        }
    }
}

#[test]
fn sigterm_drains_and_exits_cleanly() {
    let dir = harness::tempdir();
    let port = harness::free_port();
    let fileservers = format!(
        "fileservers=[{{ name = \"a\", directory = {{ path = \"{}\" }} }}]",
        dir.path().display()
    );
    let mut child = spawn_tied(
        Command::new(BIN)
            .args([
                "--set",
                &format!("server.listen=127.0.0.1:{port}"),
                "--set",
                &fileservers,
                "--set",
                &format!("cache.dir={}", dir.path().join("cache").display()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )
    .expect("spawn imagehost");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    harness::wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        (harness::http_status(addr, "/healthcheck") == Some(200)).then_some(())
    })
    .expect("imagehost became ready");

    terminate(&child);
    let status = wait_exit(&mut child, Duration::from_secs(15)).expect("exits within the drain timeout");
    assert!(status.success(), "exit status {status:?}");
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut log).expect("read log");
    assert!(
        log.contains("SIGTERM") && log.contains("imagehost stopped"),
        "{log}"
    );
}
