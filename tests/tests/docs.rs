//! The documents the code leans on: every `§x.y` and `Dn` that a comment in the code cites names
//! an anchor that exists in `docs/contract.md` (`<a id="sx.y">`, `<a id="Dn">`), and every link
//! between the pages of `docs/` lands on a page and an anchor that exist.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        if p.is_dir() {
            if name != "target" && !name.to_string_lossy().starts_with('.') {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Anchors in a Markdown page: `<a id="…">`.
fn anchors(page: &str) -> BTreeSet<String> {
    page.split("<a id=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

/// The contract anchors one line of code cites: `§1.4` → `s1.4` (RFC sections excluded), and in
/// comments `D1`…`D15` → `D1`.
fn citations(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    if !line.contains("RFC") {
        for part in line.split('§').skip(1) {
            let num: String = part
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let num = num.trim_end_matches('.');
            if !num.is_empty() {
                out.push(format!("s{num}"));
            }
        }
    }
    let trimmed = line.trim_start();
    let comment = trimmed.starts_with("//");
    if comment {
        let b = line.as_bytes();
        for (i, _) in line.match_indices('D') {
            let before_ok = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
            let digits: String = line[i + 1..].chars().take_while(char::is_ascii_digit).collect();
            let after = line[i + 1 + digits.len()..].chars().next();
            let after_ok = after.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
            if before_ok && after_ok && (1..=2).contains(&digits.len()) {
                if let Ok(n) = digits.parse::<u32>() {
                    if (1..=15).contains(&n) {
                        out.push(format!("D{n}"));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn citations_are_found_in_lines() {
    let cases: &[(&str, &[&str])] = &[
        ("//! `GET /p/:url` (§1.4): decode", &["s1.4"]),
        ("// §2.1 then §5.", &["s2.1", "s5"]),
        ("/// D1 and D10, not ID1 or D1x", &["D1", "D10"]),
        ("let k = \"D1\"; // no", &[]),
        ("// RFC 3986 §6.2.2", &[]),
        ("// D16 is no decision", &[]),
    ];
    for (line, want) in cases {
        assert_eq!(citations(line), *want, "{line}");
    }
}

#[test]
fn every_contract_citation_in_the_code_has_its_anchor() {
    let root = root();
    let contract = std::fs::read_to_string(root.join("docs/contract.md")).expect("docs/contract.md");
    let have = anchors(&contract);
    let mut files = Vec::new();
    for dir in [
        "edge",
        "imagehost",
        "blobsync",
        "blobstore",
        "service",
        "tests",
        "bench",
    ] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "found the sources: {}", files.len());
    let mut missing = Vec::new();
    let mut cited = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            for c in citations(line) {
                cited += 1;
                if !have.contains(&c) {
                    missing.push(format!(
                        "{}:{}: {c}",
                        f.strip_prefix(&root).unwrap_or(f).display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(cited > 30, "the code cites the contract: {cited}");
    assert!(
        missing.is_empty(),
        "citations with no anchor in docs/contract.md:\n{}",
        missing.join("\n")
    );
    for d in 1..=15 {
        assert!(have.contains(&format!("D{d}")), "decision D{d} has its anchor");
    }
}

#[test]
fn links_between_the_docs_land_on_pages_and_anchors_that_exist() {
    let docs = root().join("docs");
    let pages: Vec<(String, String)> = std::fs::read_dir(&docs)
        .expect("docs/")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "md"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    assert!(pages.len() >= 3, "contract, architecture and runbook");
    let mut broken = Vec::new();
    for (name, text) in &pages {
        for link in text.split("](").skip(1).filter_map(|rest| rest.split(')').next()) {
            if link.starts_with("http") || link.starts_with("mailto:") {
                continue;
            }
            let (page, anchor) = link.split_once('#').unwrap_or((link, ""));
            let target = if page.is_empty() {
                Some(text)
            } else if page.ends_with(".md") && !page.contains('/') {
                pages.iter().find(|(n, _)| n == page).map(|(_, t)| t)
            } else {
                // A path into the repository (source files, configs): it must exist.
                if !docs.join(page).exists() {
                    broken.push(format!("{name}: {link}"));
                }
                continue;
            };
            match target {
                None => broken.push(format!("{name}: {link} (no such page)")),
                Some(t)
                    if !anchor.is_empty()
                        && !anchors(t).contains(anchor)
                        && !headings(t).contains(anchor) =>
                {
                    broken.push(format!("{name}: {link} (no such anchor)"))
                }
                _ => {}
            }
        }
    }
    assert!(broken.is_empty(), "broken links in docs/:\n{}", broken.join("\n"));
}

/// GitHub's anchors for a page's headings: lower case, spaces to `-`, punctuation dropped.
fn headings(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

/// The README's "where is what" table: every file it names exists and holds every function or
/// type named after it (`name` as `fn name` or `struct name`; `Type::method` as both), so the
/// map cannot point at code that moved.
#[test]
fn the_readme_route_map_names_code_that_exists() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let table: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("### Where is what"))
        .skip_while(|l| !l.starts_with("| request"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(table.len() >= 15, "the table has {} rows", table.len());
    let mut checked = 0;
    for row in table {
        let handled_by = row.rsplit('|').nth(1).expect("two columns");
        let mut file: Option<(String, String)> = None;
        for code in handled_by.split('`').skip(1).step_by(2) {
            if code.ends_with(".rs") {
                let text = std::fs::read_to_string(root().join(code))
                    .unwrap_or_else(|e| panic!("{row}\n{code}: {e}"));
                file = Some((code.to_string(), text));
                continue;
            }
            let (path, text) = file
                .as_ref()
                .unwrap_or_else(|| panic!("{row}: `{code}` before any file"));
            let (ty, name) = code.split_once("::").map_or((None, code), |(t, n)| (Some(t), n));
            let defined = |what: &str| {
                text.contains(&format!("fn {what}("))
                    || text.contains(&format!("fn {what}<"))
                    || text.contains(&format!("struct {what} "))
                    || text.contains(&format!("struct {what}<"))
            };
            assert!(defined(name), "{row}\n{path} has no fn or struct `{name}`");
            if let Some(ty) = ty {
                assert!(
                    text.contains(&format!("impl {ty}")),
                    "{row}\n{path} has no impl {ty}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 25, "{checked} names checked");
}
