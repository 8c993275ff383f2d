//! `configs/monitoring/`: the alert rules pass `promtool check rules` and their unit tests
//! (`promtool test rules`), the example Prometheus config passes `promtool check config`, and
//! every metric and label the rules and the Grafana dashboard name is one the services export.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(root().join("configs/monitoring"))
        .output()
        .expect("promtool (Debian package prometheus; scripts/test installs it)");
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_check_and_their_unit_tests_pass() {
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts.test.yml"]);
    promtool(&["check", "config", "prometheus.yml"]);
}

/// Every metric the three services declare, with its label names, read from their `metrics.rs`
/// (`"name", "help", &["label", …]`).
fn declared() -> BTreeMap<String, BTreeSet<String>> {
    let mut found = BTreeMap::new();
    for crate_dir in ["edge", "imagehost", "blobsync"] {
        let text =
            std::fs::read_to_string(root().join(crate_dir).join("src/metrics.rs")).expect("metrics.rs");
        let prefix = format!("\"{crate_dir}_");
        let mut rest = text.as_str();
        while let Some(at) = rest.find(&prefix) {
            rest = &rest[at + 1..];
            let name: String = rest
                .chars()
                .take_while(|c| *c == '_' || c.is_ascii_alphanumeric())
                .collect();
            // Past the help text (which may hold parentheses), the labels when the registration
            // gives them before its closing parenthesis.
            let after_name = &rest[name.len() + 1..];
            let help_end = after_name
                .find('"')
                .and_then(|open| after_name[open + 1..].find('"').map(|close| open + close + 2))
                .unwrap_or(0);
            let after_help = &after_name[help_end..];
            let call = &after_help[..after_help.find(')').unwrap_or(after_help.len())];
            let labels = call
                .find("&[")
                .map(|i| {
                    let list = &call[i + 2..];
                    list[..list.find(']').unwrap_or(list.len())]
                        .split(',')
                        .map(|l| l.trim().trim_matches('"').to_string())
                        .filter(|l| !l.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            found.insert(name, labels);
        }
    }
    found
}

/// The metric names of our services an expression uses, each with the label names written next
/// to it (`name{label=…}`) or grouped by (`by (label, …)`), in PromQL text.
fn used(expr: &str) -> Vec<(String, BTreeSet<String>)> {
    let mut out = Vec::new();
    let by: BTreeSet<String> = expr
        .match_indices("by (")
        .flat_map(|(i, _)| {
            let list = &expr[i + 4..];
            list[..list.find(')').unwrap_or(0)]
                .split(',')
                .map(|l| l.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|l| !["instance", "job", "le"].contains(&l.as_str()))
        .collect();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < expr.len() {
        let starts = ["edge_", "imagehost_", "blobsync_"]
            .iter()
            .any(|p| expr[i..].starts_with(p))
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if !starts {
            i += 1;
            continue;
        }
        let name: String = expr[i..]
            .chars()
            .take_while(|c| *c == '_' || c.is_ascii_alphanumeric())
            .collect();
        i += name.len();
        let mut labels = BTreeSet::new();
        if expr[i..].starts_with('{') {
            let inner = &expr[i + 1..i + expr[i..].find('}').unwrap_or(1)];
            for part in inner.split(',') {
                let label = part.split(['=', '!', '~']).next().unwrap_or("").trim();
                if !label.is_empty() && !["instance", "job", "le"].contains(&label) {
                    labels.insert(label.to_string());
                }
            }
        }
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name)
            .to_string();
        out.push((base, labels));
    }
    // Names given inside a `__name__=~"a|b"` selector.
    const NAMES: &str = "__name__=~\"";
    for (i, _) in expr.match_indices(NAMES) {
        let list = &expr[i + NAMES.len()..];
        for name in list[..list.find('"').unwrap_or(0)].split('|') {
            out.push((name.to_string(), BTreeSet::new()));
        }
    }
    // `by (…)` labels belong to some metric in the expression: checked against all of them.
    if !by.is_empty() {
        out.push(("*by*".into(), by));
    }
    out
}

fn check(what: &str, expr: &str, metrics: &BTreeMap<String, BTreeSet<String>>) {
    let uses = used(expr);
    let all_labels: BTreeSet<&String> = uses
        .iter()
        .filter_map(|(n, _)| metrics.get(n))
        .flatten()
        .collect();
    for (name, labels) in &uses {
        if name == "*by*" {
            for l in labels {
                assert!(
                    all_labels.contains(l),
                    "{what}: `by ({l})` names no label of its metrics: {expr}"
                );
            }
            continue;
        }
        let known = metrics
            .get(name)
            .unwrap_or_else(|| panic!("{what}: {name} is not a metric any service exports: {expr}"));
        for l in labels {
            assert!(known.contains(l), "{what}: {name} has no label {l}: {expr}");
        }
    }
}

#[test]
fn every_metric_and_label_in_the_rules_and_the_dashboard_exists() {
    let metrics = declared();
    assert!(metrics.len() > 40, "{metrics:?}");
    assert!(metrics["edge_cache_requests_total"].contains("result"));

    let rules = std::fs::read_to_string(root().join("configs/monitoring/alerts.yml")).expect("alerts.yml");
    let mut exprs = 0;
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let mut expr = rest.trim().trim_start_matches('|').to_string();
        while lines
            .peek()
            .is_some_and(|l| l.starts_with("          ") && !l.trim_start().starts_with("for:"))
        {
            expr.push(' ');
            expr.push_str(lines.next().unwrap_or_default().trim());
        }
        check("alerts.yml", &expr, &metrics);
        exprs += 1;
    }
    assert_eq!(exprs, 12, "every rule's expression was read");

    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("configs/monitoring/dashboard.json")).expect("dashboard.json"),
    )
    .expect("dashboard.json is JSON");
    let mut targets = 0;
    for panel in dash["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("expr");
            check(panel["title"].as_str().unwrap_or("panel"), expr, &metrics);
            targets += 1;
        }
    }
    assert!(targets >= 30, "{targets} queries");
}

#[test]
fn a_misspelt_metric_or_label_is_caught() {
    let metrics = declared();
    for bad in [
        "rate(edge_cache_request_total[5m])",
        "edge_backend_up{node=\"x\"}",
        "sum by (reason) (rate(blobsync_failures_total[5m]))",
    ] {
        let caught = std::panic::catch_unwind(|| check("test", bad, &metrics)).is_err();
        assert!(caught, "{bad} passed");
    }
    check(
        "test",
        "sum by (cause) (rate(blobsync_failures_total[5m]))",
        &metrics,
    );
}
