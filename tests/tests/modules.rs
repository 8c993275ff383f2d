//! No import circles: within each crate, no top-level module uses (directly or through others) a
//! module that uses it back, so each can be read, tested and changed from the bottom up. Items
//! defined in `lib.rs` count as the crate root, which declares every module; what `lib.rs`
//! re-exports (`pub use config::Config`) counts as the module it comes from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: &[&str] = &["service", "blobstore", "imagehost", "edge", "blobsync", "bench"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("a source directory").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without `//` comments (doc links name modules without using them).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first name of every path after `crate::`: `crate::a::b` → `a`, `crate::{a, b::c}` → `a`, `b`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `$crate::` or an identifier ending in `crate`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut item, mut end) = (0, String::new(), group.len());
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        end = j;
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        names.push(first_ident(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(c);
                }
            }
            names.push(first_ident(&item));
            rest = &group[end..];
        } else {
            names.push(first_ident(rest));
        }
    }
    names.retain(|n| !n.is_empty() && n != "self");
    names
}

fn first_ident(s: &str) -> String {
    s.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// `pub use a::B;` and `pub use a::{B, C};` in `lib.rs`: each re-exported name → its module.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stmt in code(lib).split(';') {
        let Some(path) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, names)) = path.split_once("::") else {
            continue;
        };
        let names = names.trim().trim_start_matches('{').trim_end_matches('}');
        for n in names.split(',') {
            let n = n.rsplit("::").next().unwrap_or(n);
            let n = n.split(" as ").last().unwrap_or(n).trim();
            if !n.is_empty() {
                out.insert(n.to_string(), module.trim().to_string());
            }
        }
    }
    out
}

/// Each top-level module of `src` and the top-level modules it uses (`lib` for the crate root).
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let top = |p: &Path| -> String {
        let rel = p.strip_prefix(src).expect("under src");
        let first = rel.components().next().expect("a component");
        first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string()
    };
    let modules: BTreeSet<String> = files.iter().map(|p| top(p)).collect();
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap_or_default();
    let aliases = reexports(&lib);
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let declared = modules
        .iter()
        .filter(|m| !matches!(m.as_str(), "lib" | "main" | "bin"));
    deps.insert("lib".into(), declared.cloned().collect());
    for f in &files {
        let me = top(f);
        if matches!(me.as_str(), "lib" | "main" | "bin") {
            continue;
        }
        let text = std::fs::read_to_string(f).expect("readable source");
        for name in crate_paths(&code(&text)) {
            let target = if modules.contains(&name) {
                name
            } else {
                match aliases.get(&name) {
                    Some(m) if modules.contains(m) => m.clone(),
                    Some(_) => continue, // re-exported from another crate
                    None => "lib".into(),
                }
            };
            if target != me {
                deps.entry(me.clone()).or_default().insert(target);
            }
        }
    }
    deps
}

/// A cycle in `deps`, if any, as the modules along it.
fn find_cycle(deps: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        deps: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let at = path.iter().position(|p| p == n).unwrap_or(0);
                let mut cycle = path[at..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for d in deps.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, deps, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    deps.keys()
        .find_map(|n| visit(n, deps, &mut state, &mut Vec::new()))
}

#[test]
fn no_crate_has_an_import_circle() {
    let mut found = Vec::new();
    for krate in CRATES {
        let src = root().join(krate).join("src");
        if let Some(cycle) = find_cycle(&graph(&src)) {
            found.push(format!("{krate}: {}", cycle.join(" → ")));
        }
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn the_reader_sees_what_the_code_uses() {
    assert_eq!(
        crate_paths("use crate::a::b;\nuse crate::{c, d::{e, f}, self};\nx = $crate::g; crate::h(1)"),
        ["a", "c", "d", "h"]
    );
    let lib = "pub use config::Config;\npub use error::{ApiError, Error as E};\npub use service::net;";
    let r = reexports(lib);
    assert_eq!(r["Config"], "config");
    assert_eq!(r["ApiError"], "error");
    assert_eq!(r["E"], "error");
    assert_eq!(r["net"], "service");
    let mut deps = BTreeMap::new();
    deps.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    deps.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(find_cycle(&deps), Some(vec!["a".into(), "b".into(), "a".into()]));
    deps.remove("b");
    assert_eq!(find_cycle(&deps), None);
}
