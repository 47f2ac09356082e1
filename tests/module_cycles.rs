//! The core's top-level modules import each other without cycles (architecture.md: core types
//! in a module of their own, configs owned by the modules they configure). `app/` is glue over
//! the core and is left out. Imports are read from the source text: `crate::a`, `crate::{a, b}`
//! and `super::` at a module's top level; a new cycle fails this test with its path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level module a file under src/ belongs to (`energy` for src/energy/gmm.rs).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    Some(first.trim_end_matches(".rs").to_string())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Top-level modules named after `crate::` in `text`, with `crate::{a, b::c}` groups split.
/// Items re-exported at the crate root (`crate::Error`, `crate::Result`) belong to `error`.
fn imports(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |name: &str| {
        let name = match name {
            "Error" | "Result" => "error",
            n => n,
        };
        if modules.contains(name) {
            out.insert(name.to_string());
        }
    };
    // Comments do not import: drop `//` tails (doc links name modules freely).
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                add(part.trim().split("::").next().unwrap_or("").trim());
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            add(&name);
        }
    }
    out
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    // Depth-first search with colours; the stack holds the current path.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        colour: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        colour.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            match colour.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|s| s == m).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, g, colour, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        colour.insert(n.to_string(), 2);
        None
    }
    let mut colour = BTreeMap::new();
    for n in graph.keys() {
        if colour.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, graph, &mut colour, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn core_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    // The library's modules (lib.rs's `pub mod`s), app/ left out; main.rs and the CLI's own
    // command files are the binary's, not the core's.
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let modules: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("pub mod ")
                .or_else(|| l.trim().strip_prefix("mod "))
        })
        .map(|m| m.trim_end_matches(';').trim().to_string())
        .filter(|m| m != "app")
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for f in files {
        let Some(m) = module_of(&src, &f) else {
            continue;
        };
        if !modules.contains(&m) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        // Unit tests may reach anywhere; they are not part of the module's dependencies.
        let text = text.split("#[cfg(test)]").next().unwrap_or("");
        for dep in imports(text, &modules) {
            if dep != m {
                graph.get_mut(&m).unwrap().insert(dep);
            }
        }
    }
    graph
}

#[test]
fn the_core_has_no_import_cycle() {
    let graph = core_graph();
    assert!(graph.len() > 10, "read the core's modules: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        let edges: Vec<String> = graph
            .iter()
            .map(|(k, v)| {
                format!(
                    "  {k} -> {}",
                    v.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            })
            .collect();
        panic!(
            "import cycle among the core's modules: {}\n{}",
            cycle.join(" -> "),
            edges.join("\n")
        );
    }
}

/// The reader itself: a planted cycle is found, grouped imports are split, comments ignored.
#[test]
fn the_cycle_reader_finds_planted_cycles() {
    let modules: BTreeSet<String> = ["a", "b", "c", "error"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let got = imports(
        "use crate::{a::X, b};\n// crate::c in a comment\nfn f() -> crate::Result<()> { Ok(()) }",
        &modules,
    );
    assert_eq!(
        got,
        ["a", "b", "error"].iter().map(|s| s.to_string()).collect()
    );
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.insert("a".into(), ["b".to_string()].into());
    g.insert("b".into(), ["c".to_string()].into());
    g.insert("c".into(), BTreeSet::new());
    assert!(find_cycle(&g).is_none());
    g.get_mut("c").unwrap().insert("a".into());
    assert_eq!(find_cycle(&g).unwrap(), vec!["a", "b", "c", "a"]);
}
