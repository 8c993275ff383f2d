//! The three stats pages as an operator opens them: rendered by a real headless Chromium (its
//! script fetching `stats.json` and drawing), every chart and table of `/stats.json` on the page
//! with the same numbers, no script error, and a screenshot of each kept in
//! `target/test-artefacts/stats-<service>.png`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::setup::{png, Cluster};

fn artefacts() -> PathBuf {
    let dir = harness::process::workspace_bin("edge")
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("test-artefacts");
    std::fs::create_dir_all(&dir).expect("artefacts dir");
    dir
}

/// Chromium, headless, with time for the page's first fetch and drawing; `extra` picks the
/// output (`--dump-dom` or `--screenshot=…`). Returns stdout and stderr.
fn chromium(url: &str, extra: &str) -> (String, String) {
    let profile = harness::tempdir();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1280,1500",
            "--virtual-time-budget=5000",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(extra)
        .arg(url)
        .output()
        .expect("chromium (Debian package chromium; scripts/test installs it)");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn stats(addr: SocketAddr) -> serde_json::Value {
    let r = harness::http::get(addr, "/stats.json").expect("stats.json");
    assert_eq!(r.status, 200);
    serde_json::from_slice(&r.body).expect("stats.json is JSON")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Checks one page against `/stats.json` read just before and just after it rendered (a sample
/// may land in between): every chart and legend value, and every table cell.
fn check_page(service: &str, addr: SocketAddr) {
    let url = format!("http://{addr}/stats");
    let before = stats(addr);
    let (dom, log) = chromium(&url, "--dump-dom");
    let after = stats(addr);
    assert!(
        dom.contains("data-renders=\""),
        "{service}: the page never drew:\n{dom}\n{log}"
    );
    assert!(
        dom.contains("<pre id=\"errors\"></pre>"),
        "{service}: script errors:\n{dom}"
    );
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(console.is_empty(), "{service}: console says {console:#?}");
    for page in [&before["page"], &after["page"]] {
        assert_eq!(page["service"], service);
        assert!(
            dom.contains(&format!("id=\"title\">{service}<")),
            "{service}: title"
        );
        assert!(
            dom.contains(&escape(page["node"].as_str().expect("node"))),
            "{service}: node"
        );
        assert!(
            dom.contains(&escape(page["version"].as_str().expect("version"))),
            "{service}: version"
        );
    }
    let page = &after["page"];
    for chart in page["charts"].as_array().expect("charts") {
        let title = chart["title"].as_str().expect("title");
        assert!(
            dom.contains(&format!("data-chart=\"{}\"", escape(title))),
            "{service}: chart {title}"
        );
        for s in chart["series"].as_array().expect("series") {
            let name = s.as_str().expect("name");
            let last = |p: &serde_json::Value| -> String {
                p["page"]["history"]["series"][name]
                    .as_array()
                    .and_then(|v| v.last())
                    .and_then(|v| v.as_f64())
                    .map_or(String::new(), |v| {
                        // As JavaScript prints a number.
                        if v.fract() == 0.0 {
                            format!("{}", v as i64)
                        } else {
                            format!("{v}")
                        }
                    })
            };
            let shown: Vec<String> = [last(&before), last(&after)]
                .iter()
                .map(|v| format!("data-series=\"{}\" data-value=\"{v}\"", escape(name)))
                .collect();
            assert!(
                shown.iter().any(|s| dom.contains(s.as_str())),
                "{service}: legend {name}: none of {shown:?} on the page"
            );
        }
    }
    for (i, table) in page["tables"].as_array().expect("tables").iter().enumerate() {
        let title = table["title"].as_str().expect("title");
        assert!(
            dom.contains(&format!("data-table=\"{}\"", escape(title))),
            "{service}: table {title}"
        );
        let head: Vec<&str> = table["head"]
            .as_array()
            .expect("head")
            .iter()
            .filter_map(|h| h.as_str())
            .collect();
        let rows = table["rows"].as_array().expect("rows");
        assert!(!rows.is_empty(), "{service}: table {title} is empty");
        for (r, row) in rows.iter().enumerate() {
            for (c, cell) in row["cells"].as_array().expect("cells").iter().enumerate() {
                if head[c] == "for" || cell.as_str().is_some_and(|v| v.ends_with(" ago")) {
                    continue; // time since something: moves while the page renders
                }
                let earlier = before["page"]["tables"][i]["rows"][r]["cells"][c]
                    .as_str()
                    .unwrap_or_default();
                let shown = [earlier, cell.as_str().unwrap_or_default()]
                    .map(|v| format!("data-col=\"{}\">{}</td>", escape(head[c]), escape(v)));
                assert!(
                    shown.iter().any(|s| dom.contains(s.as_str())),
                    "{service}: table {title} row {r}: none of {shown:?} on the page"
                );
            }
        }
    }
    let shot = artefacts().join(format!("stats-{service}.png"));
    let _ = std::fs::remove_file(&shot);
    chromium(&url, &format!("--screenshot={}", shot.display()));
    let png_bytes = std::fs::read(&shot).unwrap_or_else(|e| panic!("{service}: no screenshot: {e}"));
    assert!(
        png_bytes.starts_with(b"\x89PNG") && png_bytes.len() > 10_000,
        "{service}: screenshot"
    );
    eprintln!("{service}: screenshot {}", shot.display());
}

#[test]
fn the_three_stats_pages_render_in_chromium_with_the_numbers_of_stats_json() {
    let c = Cluster::start(1);
    // Some traffic, so the graphs and tables have something to show.
    let up = c.upload_ok(&png(320, 240, 3), "page.png");
    for _ in 0..3 {
        assert_eq!(harness::http::get(c.edge(), &up.path).expect("get").status, 200);
    }
    // Two samples at least, so the rates exist.
    std::thread::sleep(service::stats::EVERY * 2 + std::time::Duration::from_millis(500));
    check_page("edge", c.edge_admins[0]);
    check_page("imagehost", c.imagehost_admins[0]);
    check_page("blobsync", c.blobsync.addr);
}
