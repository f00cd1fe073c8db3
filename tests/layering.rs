//! The layering `src/lib.rs` states, checked from the source: every `crate::<module>` a
//! top-level module names (outside comments and its `#[cfg(test)]` code) is a module of a lower
//! layer, so nothing imports upward and the import graph has no circle. The simulator
//! (`sim/src`) is checked for circles too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// callrec's layers, lowest first (as `src/lib.rs` lists them). A module may name modules of
/// lower layers only.
const LAYERS: &[&[&str]] = &[
    &["values", "telemetry", "esl", "event", "media"],
    &["settings"],
    &["net", "store", "callflow", "connection"],
    &["rules", "hooks", "inbound"],
    &["recorder"],
    &["uploader"],
    &["outbound"],
    &["supervisor"],
    &["admin", "tools", "config"],
    &["cli", "app"],
];

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comment lines and without its `#[cfg(test)]` module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `crate::<name>` paths in `code`.
fn named(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `crate::{a, b}` groups.
        if after.starts_with('{') {
            let group = &after[1..after.find('}').unwrap_or(after.len())];
            for part in group.split(',') {
                let n: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !n.is_empty() {
                    out.insert(n);
                }
            }
        } else if !name.is_empty() {
            out.insert(name);
        }
        rest = after;
    }
    out
}

/// Top-level module → the top-level modules its code names.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rs_files(src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let entry = g.entry(module.clone()).or_default();
        for n in named(&code(&text)) {
            if n != module {
                entry.insert(n);
            }
        }
    }
    g
}

/// A circle in `g`, if any (depth-first search).
fn circle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        n: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if g.contains_key(m) {
                if let Some(c) = visit(g, m, path, done) {
                    return Some(c);
                }
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in g.keys() {
        if let Some(c) = visit(g, n, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn no_module_imports_upward_and_the_graph_has_no_circle() {
    let g = graph(&repo().join("src"));
    let rank = |m: &str| LAYERS.iter().position(|l| l.contains(&m));
    let mut upward = Vec::new();
    for (m, uses) in &g {
        let Some(r) = rank(m) else {
            panic!("module {m} is in no layer of this test (and of src/lib.rs's note): place it");
        };
        for u in uses {
            match rank(u) {
                Some(ru) if ru < r => {}
                Some(_) => upward.push(format!("{m} -> {u}")),
                None => panic!("{m} names crate::{u}, which is in no layer"),
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that run up or sideways: {upward:?}"
    );
    assert_eq!(circle(&g), None);
}

#[test]
fn the_simulator_has_no_circle() {
    let g = graph(&repo().join("sim/src"));
    assert!(g.contains_key("call") && g.contains_key("switch"), "{g:?}");
    assert_eq!(circle(&g), None);
}

#[test]
fn the_checker_sees_an_upward_import_and_a_circle() {
    let uses = named(&code(
        "use crate::{store, values::X};\n// crate::admin in a comment\nfn f() { crate::rules::plan(); }\n#[cfg(test)]\nmod tests { use crate::app; }",
    ));
    assert_eq!(
        uses.into_iter().collect::<Vec<_>>(),
        ["rules", "store", "values"]
    );
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    g.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(
        circle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
