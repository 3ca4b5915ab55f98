//! The source layout, checked: every `use` between the files of `src/`
//! points down the layers listed in `src/lib.rs`, and no files import each
//! other in a circle. A file may always use its own folder's `mod.rs` (the
//! parent declares and re-exports its children).
//!
//! This reads the source text (no compiler help), so it knows the forms the
//! code uses: `crate::a::b`, `crate::{a, b::c}`, `super::x`, `super::{x, y}`
//! and, in a folder's `mod.rs`, `use child::…`. Comments and the trailing
//! `#[cfg(test)] mod tests` of a file are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layers, top to bottom: a file may import files of its own group, or of a
/// group ranked lower (a larger number). The pipeline's stage files are
/// below the shared state that holds their compiled tables; `handle()` in
/// `pipeline/mod.rs` is above it.
const LAYERS: &[(&str, u32)] = &[
    ("main.rs", 0),
    ("lib.rs", 0),
    ("cli/", 1),
    ("app/", 2),
    ("server/", 3),
    ("admin/", 4),
    ("pipeline/mod.rs", 5),
    ("state/", 6),
    ("pipeline/", 7),
    ("lookup/", 8),
    ("manage/", 8),
    ("diag.rs", 8),
    ("config/", 9),
    ("store/", 10),
    ("error.rs", 11),
    ("metrics.rs", 11),
    ("keys/", 12),
    ("http1/", 12),
    ("version.rs", 12),
];

fn layer(file: &str) -> (&'static str, u32) {
    LAYERS
        .iter()
        .find(|(prefix, _)| file == *prefix || (prefix.ends_with('/') && file.starts_with(prefix)))
        .map(|(p, r)| (*p, *r))
        .unwrap_or_else(|| panic!("src/{file} is in no layer: add it to LAYERS and lib.rs"))
}

/// The group a file belongs to for "same group" imports: its top folder.
fn group(file: &str) -> &str {
    file.split_once('/').map_or(file, |(top, _)| top)
}

fn sources(root: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The code of a file without comments and without its test module.
fn code(text: &str) -> String {
    let body = match text.find("#[cfg(test)]") {
        Some(at) if text[at..].contains("mod tests") => &text[..at],
        _ => text,
    };
    body.lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module path of a file: `pipeline/mod.rs` → `[pipeline]`.
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The deepest file a module path names.
fn resolve(files: &BTreeMap<String, String>, segs: &[String]) -> Option<String> {
    (1..=segs.len()).rev().find_map(|n| {
        let base = segs[..n].join("/");
        [format!("{base}.rs"), format!("{base}/mod.rs")]
            .into_iter()
            .find(|c| files.contains_key(c))
    })
}

fn ident_len(s: &str) -> usize {
    s.bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b':')
        .count()
}

/// Paths after `anchor::` in `code`, with one level of `{…}` groups expanded.
fn paths_after(code: &str, anchor: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let pat = format!("{anchor}::");
    let mut rest = code;
    while let Some(at) = rest.find(&pat) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + pat.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        // `super::super::x` is handled by the caller counting anchors.
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let item = item.trim().trim_start_matches('{');
                let n = ident_len(item);
                out.push(split(&item[..n]));
            }
        } else {
            let n = ident_len(rest);
            let p = rest[..n].trim_end_matches(':');
            if !p.is_empty() {
                out.push(split(p));
            }
        }
    }
    out
}

fn split(path: &str) -> Vec<String> {
    path.split("::")
        .filter(|s| !s.is_empty() && *s != "self")
        .map(str::to_owned)
        .collect()
}

fn imports(files: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges = BTreeMap::new();
    for (file, text) in files {
        let code = code(text);
        let me = module_of(file);
        let mut out = BTreeSet::new();
        for p in paths_after(&code, "crate") {
            out.extend(resolve(files, &p));
        }
        for p in paths_after(&code, "super") {
            // `super::super::x` shows up as a path starting with "super".
            let ups = 1 + p.iter().take_while(|s| *s == "super").count();
            let rest: Vec<String> = p.into_iter().skip_while(|s| s == "super").collect();
            let mut base: Vec<String> = me[..me.len().saturating_sub(ups)].to_vec();
            base.extend(rest);
            out.extend(resolve(files, &base));
        }
        if file.ends_with("mod.rs") || file == "lib.rs" {
            for line in code.lines() {
                let l = line.trim_start().trim_start_matches("pub ").trim_start();
                if let Some(rest) = l.strip_prefix("use ") {
                    let head = rest.split("::").next().unwrap_or("");
                    if !["crate", "super", "self", "std", "core"].contains(&head) {
                        let mut p = me.clone();
                        p.push(head.to_owned());
                        if let Some(r) = resolve(files, &p) {
                            if module_of(&r).len() > me.len() {
                                out.insert(r);
                            }
                        }
                    }
                }
            }
        }
        out.remove(file);
        // A file may use the `mod.rs` of any folder it sits in.
        out.retain(|to| {
            let to_mod = module_of(to);
            !(to.ends_with("mod.rs") && me.len() > to_mod.len() && me.starts_with(&to_mod))
        });
        edges.insert(file.clone(), out);
    }
    edges
}

fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        at: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(at.to_owned(), 1);
        stack.push(at.to_owned());
        for next in edges.get(at).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let from = stack.iter().position(|s| s == next).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(at.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for start in edges.keys() {
        if !state.contains_key(start) {
            if let Some(c) = visit(start, edges, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn src() -> BTreeMap<String, String> {
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

#[test]
fn imports_point_down_the_layers() {
    let edges = imports(&src());
    let mut wrong = Vec::new();
    for (from, tos) in &edges {
        let (_, rank_from) = layer(from);
        for to in tos {
            let (_, rank_to) = layer(to);
            if group(from) != group(to) && rank_to <= rank_from {
                wrong.push(format!("src/{from} imports src/{to}"));
            }
        }
    }
    // The check sees the imports it must see.
    assert!(edges["pipeline/mod.rs"].contains("state/mod.rs"));
    assert!(edges["server/mod.rs"].contains("pipeline/mod.rs"));
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let edges = imports(&src());
    if let Some(cycle) = find_cycle(&edges) {
        panic!("import circle: {}", cycle.join(" -> "));
    }
    // A circle is found when there is one.
    let mut with_circle = edges.clone();
    with_circle
        .entry("keys/scope.rs".into())
        .or_default()
        .insert("error.rs".into());
    assert!(find_cycle(&with_circle).is_some());
}

#[test]
fn only_the_reloader_applies_a_config() {
    for (file, text) in src() {
        if file.starts_with("app/") || file == "state.rs" {
            continue;
        }
        assert!(
            !code(&text).contains(".apply("),
            "src/{file} applies a config; only the reloader in app/ may"
        );
    }
}
