//! What an operator types from the README and the configs' own headers works as written on a
//! fresh clone: every `--check-config` and `--help` command (a `cargo run -p … --bin X --` line
//! runs the already built `X`, so the test does not rebuild), and the local cluster with its
//! upload walk-through, through `scripts/cluster` itself.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The README's fenced shell blocks, each as its lines.
fn readme_shell_blocks() -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let mut blocks = Vec::new();
    // Outside any fence: None; inside one: whether it is a shell block, and its lines.
    let mut fence: Option<(bool, Vec<String>)> = None;
    for line in text.lines() {
        if let Some(lang) = line.strip_prefix("```") {
            fence = match fence.take() {
                Some((true, lines)) => {
                    blocks.push(lines);
                    None
                }
                Some((false, _)) => None,
                None => Some((lang.trim() == "sh", Vec::new())),
            };
            continue;
        }
        if let Some((true, lines)) = fence.as_mut() {
            lines.push(line.to_string());
        }
    }
    blocks
}

fn readme_shell_lines() -> Vec<String> {
    readme_shell_blocks().into_iter().flatten().collect()
}

/// The comment lines at the top of each shipped config.
fn config_header_lines() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    for dir in ["configs", "configs/production"] {
        for e in std::fs::read_dir(root().join(dir)).expect("configs") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "toml") {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut lines = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("config");
        for l in text.lines().take_while(|l| l.starts_with('#')) {
            lines.push((f.clone(), l.trim_start_matches('#').trim().to_string()));
        }
    }
    lines
}

/// The program and arguments of one documented command line, if it runs one of our binaries:
/// `cargo run -p P --bin X -- ARGS`, or `X ARGS` after any prose ("Check it anywhere: X …").
fn command_in(line: &str) -> Option<(String, Vec<String>)> {
    let line = line.split(" # ").next().unwrap_or(line);
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let ours = ["imagehost", "edge", "blobsync", "hive-sign"];
    if let Some(c) = tokens.iter().position(|t| *t == "cargo") {
        let rest = &tokens[c..];
        let bin = rest.iter().position(|t| *t == "--bin").map(|i| rest[i + 1])?;
        let args = rest.iter().position(|t| *t == "--").map(|i| &rest[i + 1..])?;
        return Some((bin.to_string(), args.iter().map(|a| a.to_string()).collect()));
    }
    let first_flag = tokens.iter().position(|t| t.starts_with("--"))?;
    let program = *tokens.get(first_flag.checked_sub(1)?)?;
    ours.contains(&program).then(|| {
        let args = tokens[first_flag..].iter().map(|a| a.to_string()).collect();
        (program.to_string(), args)
    })
}

#[test]
fn command_lines_are_read_as_a_shell_would() {
    type Case<'a> = (&'a str, Option<(&'a str, &'a [&'a str])>);
    let cases: [Case; 5] = [
        (
            "cargo run -p imagehost --bin imagehost -- --help",
            Some(("imagehost", &["--help"])),
        ),
        (
            "cargo run -p imagehost --bin imagehost -- --config c.toml --check-config   # validate",
            Some(("imagehost", &["--config", "c.toml", "--check-config"])),
        ),
        (
            "Check it anywhere: edge --config e.toml --check-config --secrets-dir s",
            Some((
                "edge",
                &["--config", "e.toml", "--check-config", "--secrets-dir", "s"],
            )),
        ),
        ("curl -X PURGE http://127.0.0.1:8080/x", None),
        ("Validated by tests/tests/configs.rs.", None),
    ];
    for (line, want) in cases {
        let got = command_in(line);
        let want = want.map(|(p, a)| (p.to_string(), a.iter().map(|s| s.to_string()).collect()));
        assert_eq!(got, want, "{line}");
    }
}

#[test]
fn every_documented_check_config_and_help_command_works_as_written() {
    let mut commands: Vec<(String, String)> = readme_shell_lines()
        .into_iter()
        .map(|l| ("README.md".to_string(), l))
        .chain(
            config_header_lines()
                .into_iter()
                .map(|(f, l)| (f.display().to_string(), l)),
        )
        .filter(|(_, l)| l.contains("--check-config") || l.trim_end().ends_with("--help"))
        .collect();
    commands.dedup();
    let checks = commands
        .iter()
        .filter(|(_, l)| l.contains("--check-config"))
        .count();
    // The README's, and one per shipped config (3 examples, 5 production ones).
    assert!(checks >= 9, "found only {checks}: {commands:#?}");
    for (from, line) in &commands {
        let (program, args) = command_in(line).unwrap_or_else(|| panic!("{from}: not a command: {line}"));
        let out = Command::new(harness::process::workspace_bin(&program))
            .args(&args)
            .current_dir(root())
            .env_remove("RUST_LOG")
            .output()
            .expect("run");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{from}: `{line}` exited {:?}:\n{stdout}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        if line.contains("--check-config") {
            assert!(stdout.contains("configuration OK"), "{from}: `{line}`: {stdout}");
        } else {
            assert!(stdout.contains("Usage:"), "{from}: `{line}`: {stdout}");
        }
    }
}

/// `scripts/cluster` running in its own process group, stopped (SIGINT, as Ctrl-C) on drop with
/// everything it started.
struct Script {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Script {
    fn start(data: &Path) -> Script {
        let bin_dir = harness::process::workspace_bin("edge")
            .parent()
            .expect("bin dir")
            .to_path_buf();
        let mut child = Command::new("bash")
            .arg(root().join("scripts/cluster"))
            .env("CLUSTER_DATA", data)
            .env("CLUSTER_BIN", &bin_dir)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("bash scripts/cluster");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        for stream in [Box::new(out) as Box<dyn Read + Send>, Box::new(err)] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Script { child, lines }
    }

    /// Every line printed until one contains `needle` (panics with them after `within`).
    fn until(&self, needle: &str, within: Duration) -> Vec<String> {
        let mut seen = Vec::new();
        let end = std::time::Instant::now() + within;
        while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let found = l.contains(needle);
                    seen.push(l);
                    if found {
                        return seen;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no line with {needle:?} within {within:?}:\n{}", seen.join("\n"));
    }

    #[allow(unsafe_code)]
    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the process group this test created.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), sig);
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        self.signal(libc::SIGINT);
        if harness::process::wait_exit(&mut self.child, Duration::from_secs(15)).is_none() {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Runs one documented shell snippet as written, in `cwd`, with the README's paths pointed at
/// this run's data directory; its stdout.
fn sh(cwd: &Path, data: &Path, bin_dir: &Path, snippet: &str) -> String {
    let snippet = snippet
        .replace("target/debug/", &format!("{}/", bin_dir.display()))
        .replace(".cluster/", &format!("{}/", data.display()));
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &snippet])
        .current_dir(cwd)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "`{snippet}` failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn photo() -> Vec<u8> {
    let img = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x / 3) as u8, (y / 2) as u8, ((x * y) % 251) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).expect("jpeg");
    out.into_inner()
}

#[test]
fn the_readme_walkthrough_runs_on_the_local_cluster_and_a_dead_service_is_named() {
    let dir = harness::tempdir();
    let data = dir.path().join("cluster");
    let cwd = dir.path().join("work");
    std::fs::create_dir_all(&cwd).expect("cwd");
    std::fs::write(cwd.join("photo.jpg"), photo()).expect("photo");
    let bin_dir = harness::process::workspace_bin("edge")
        .parent()
        .expect("bin dir")
        .to_path_buf();

    let script = Script::start(&data);
    script.until("Ctrl-C stops everything", Duration::from_secs(120));

    // The README's upload block, line by line as written.
    let block = readme_shell_blocks()
        .into_iter()
        .find(|b| b.iter().any(|l| l.contains("hive-sign sign")))
        .expect("the README's upload block");
    assert!(block.len() >= 4, "{block:?}");
    let upload = sh(&cwd, &data, &bin_dir, &format!("{}\n{}", block[0], block[1]));
    let answer: serde_json::Value = serde_json::from_str(upload.trim()).expect("upload answer");
    let url = answer["url"].as_str().expect("url").to_string();
    let key = url
        .split('/')
        .find(|s| s.starts_with("DQm"))
        .expect("key in url")
        .to_string();
    for line in block.iter().skip(2).filter(|l| !l.trim_start().starts_with('#')) {
        sh(&cwd, &data, &bin_dir, &line.replace("DQm…", &key));
    }
    let thumb = std::fs::read(cwd.join("thumb.webp")).expect("thumb.webp");
    assert!(
        thumb.starts_with(b"RIFF") && &thumb[8..12] == b"WEBP",
        "thumb.webp is a WebP"
    );
    let small = std::fs::read(cwd.join("small.jpg")).expect("small.jpg");
    assert!(small.starts_with(&[0xFF, 0xD8]), "small.jpg is a JPEG");
    // "served through the edge (X-Cache: MISS, then HIT)", and on both fileservers.
    let edge: std::net::SocketAddr = "127.0.0.1:8080".parse().expect("addr");
    let path = url.trim_start_matches("http://127.0.0.1:8080");
    let cached = harness::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let r = harness::http::get(edge, path).ok()?;
        (r.header("x-cache") == Some("HIT")).then_some(())
    });
    assert!(cached.is_some(), "never a HIT: {path}");
    let both = harness::wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        ["fs1", "fs2"]
            .iter()
            .all(|fs| data.join(fs).join("uploads").join(&key).exists())
            .then_some(())
    });
    assert!(both.is_some(), "{key} not on both fileservers");

    // Logs written to files are plain text, each run under its own banner.
    for name in ["edge", "imagehost-0", "imagehost-1", "blobsync"] {
        let log = std::fs::read_to_string(data.join("logs").join(format!("{name}.log"))).expect("log");
        assert!(!log.contains('\u{1b}'), "{name}.log has ANSI codes");
        assert!(
            log.contains(&format!("=== {name} started")),
            "{name}.log has no banner"
        );
    }

    // One service dies: the script says which, and stops the rest.
    let pattern = format!("/edge --config {}/edge.toml", data.display());
    let killed = Command::new("pkill")
        .args(["-KILL", "-f", &pattern])
        .status()
        .expect("pkill");
    assert!(killed.success(), "no process matched {pattern}");
    let said = script.until("exited", Duration::from_secs(15));
    let line = said.last().expect("a line");
    assert!(line.contains("edge exited"), "{line}");
    let stopped = harness::wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        std::net::TcpStream::connect("127.0.0.1:8800")
            .is_err()
            .then_some(())
    });
    assert!(
        stopped.is_some(),
        "imagehost-0 still listening after the edge died"
    );
}
