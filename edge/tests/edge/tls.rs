//! TLS termination with certificates chosen by SNI, HTTP/2 by ALPN, checked with curl.

use std::path::Path;
use std::process::Command;

use harness::origin::Reply;

use crate::support::{origin, Edge};

/// A self-signed certificate for `name`, as `<name>.pem` and `<name>.key`.
fn self_signed(dir: &Path, name: &str) {
    harness::tls::self_signed(dir, name);
}

/// curl trusting only `ca`, resolving `name` to the edge: the version and body, or the error.
fn curl(dir: &Path, ca: &str, name: &str, port: u16, http2: bool) -> Result<(String, String), String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--noproxy", "*"])
        .arg("--cacert")
        .arg(dir.join(format!("{ca}.pem")))
        .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
        .arg(if http2 { "--http2" } else { "--http1.1" })
        .args([
            "-w",
            "\n%{http_version}",
            &format!("https://{name}:{port}/DQmTls/a.jpg"),
        ])
        .output()
        .expect("run curl");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, version) = text.rsplit_once('\n').ok_or("no version line")?;
    Ok((version.to_string(), body.to_string()))
}

#[test]
fn https_with_sni_certificates_and_http2() {
    let dir = harness::tempdir();
    for name in ["images.example.test", "cdn.example.test"] {
        self_signed(dir.path(), name);
    }
    let (o, _) = origin(|_| Reply::ok("over tls").header("Cache-Control", "max-age=60"));
    let port = harness::free_port();
    let cert = |n: &str| {
        format!(
            "{{ cert_file = \"{}\", key_file = \"{}\" }}",
            dir.path().join(format!("{n}.pem")).display(),
            dir.path().join(format!("{n}.key")).display()
        )
    };
    let edge = Edge::start(
        &[o.addr()],
        &[
            format!("tls.listen=127.0.0.1:{port}"),
            format!(
                "tls.certs=[{}, {}]",
                cert("images.example.test"),
                cert("cdn.example.test")
            ),
        ],
    );
    for name in ["images.example.test", "cdn.example.test"] {
        // curl trusts only this name's certificate: the handshake succeeds only if SNI chose it.
        let (version, body) = curl(dir.path(), name, name, port, true)
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", edge.log()));
        assert_eq!((version.as_str(), body.as_str()), ("2", "over tls"), "{name}");
        let (version, _) = curl(dir.path(), name, name, port, false).expect("http/1.1");
        assert_eq!(version, "1.1");
    }
    let wrong = curl(dir.path(), "cdn.example.test", "images.example.test", port, true);
    assert!(
        wrong.is_err(),
        "the other certificate is not accepted for this name"
    );
    assert_eq!(
        edge.get("/DQmTls/a.jpg").text(),
        "over tls",
        "plain HTTP still served"
    );
}

#[test]
fn a_bad_certificate_is_a_config_error_not_a_panic() {
    let dir = harness::tempdir();
    std::fs::write(
        dir.path().join("bad.pem"),
        "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("bad.key"), "not a key").unwrap();
    let out = Command::new(crate::support::BIN)
        .arg("--check-config")
        .args(["--set", "tls.listen=127.0.0.1:1"])
        .args([
            "--set",
            &format!(
                "tls.certs=[{{ cert_file = \"{0}/bad.pem\", key_file = \"{0}/bad.key\" }}]",
                dir.path().display()
            ),
        ])
        .output()
        .expect("run edge");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tls cert"), "{err}");
}
