//! The host's modules depend on each other one way: no two sibling modules (`pipeline` and
//! `monitor`, or `discord::bot::answer` and `discord::bot::handler`) may each use the
//! other, directly or through others, in the host and in every plugin crate; and the host's
//! top-level modules keep the layer order `lib.rs` declares. Read from the source: every
//! `crate::…` and `super::…` path in code, followed through `pub use` re-exports to where
//! the item is defined, and lifted to the two siblings under the modules' lowest common
//! ancestor. A module using its own parent or child is not a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path: `["pipeline", "parse"]`; the crate root is `[]`.
type Module = Vec<String>;

fn modules(root: &Path) -> BTreeMap<Module, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(root).unwrap().with_extension("");
            let mut module: Module = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            if rel == Path::new("main") {
                continue;
            }
            out.insert(module, path);
        }
    }
    out
}

/// The code of a file without comments, string literals and `#[cfg(test)]` modules (tests
/// may reach anywhere).
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut in_str = false;
        let mut prev = ' ';
        for c in line.chars() {
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            } else if !in_str {
                out.push(c);
            }
            prev = if prev == '\\' && c == '\\' { ' ' } else { c };
        }
        out.push('\n');
    }
    out
}

/// Every module path a file's code names: `crate::a::b::Item` and `super::x` (resolved
/// against `me`), including those inside `use` groups (`crate::{a, b::c}`).
fn references(me: &Module, code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    for (start, _) in code
        .match_indices("crate::")
        .chain(code.match_indices("super::"))
    {
        if start > 0 && code[..start].chars().last().is_some_and(ident) {
            continue;
        }
        let mut base: Vec<String> = if code[start..].starts_with("crate::") {
            Vec::new()
        } else {
            // `super` of `a::b` is `a`, from `a/b.rs` and `a/b/mod.rs` alike.
            let mut m = me.clone();
            m.pop();
            m
        };
        let mut rest = &code[start..];
        rest = rest.split_once("::").map_or("", |(_, r)| r);
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
        // One path, or a `{…}` group of them.
        if let Some(group) = rest.strip_prefix('{') {
            let inner: String = group.chars().take_while(|c| *c != '}').collect();
            for item in inner.split(',') {
                let mut p = base.clone();
                p.extend(
                    item.trim()
                        .split("::")
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty() && s.chars().all(ident)),
                );
                out.push(p);
            }
        } else {
            let mut p = base.clone();
            for seg in rest.split("::") {
                let name: String = seg.chars().take_while(|c| ident(*c)).collect();
                if name.is_empty() {
                    break;
                }
                let ends = name.len() < seg.len();
                p.push(name);
                if ends {
                    break;
                }
            }
            out.push(p);
        }
    }
    out
}

/// The longest prefix of `path` that is a module.
fn module_of(path: &[String], known: &BTreeMap<Module, PathBuf>) -> Module {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| known.contains_key(m))
        .unwrap_or_default()
}

/// What each module re-exports: (module, name) → the path of what it names, from every
/// `pub use` (and `pub(crate)`, `pub(super)`) in its code.
type Exports = BTreeMap<(Module, String), Vec<String>>;

fn exports(known: &BTreeMap<Module, PathBuf>) -> Exports {
    let mut out = Exports::new();
    for (me, file) in known {
        let code = code(&std::fs::read_to_string(file).unwrap());
        for (at, _) in code.match_indices("pub") {
            let rest = &code[at + 3..];
            let rest = match rest.strip_prefix('(') {
                Some(r) => r.split_once(')').map_or("", |(_, r)| r),
                None => rest,
            };
            let Some(spec) = rest.trim_start().strip_prefix("use ") else {
                continue;
            };
            let spec: String = spec.chars().take_while(|c| *c != ';').collect();
            let (prefix, items) = match spec.split_once('{') {
                Some((p, i)) => (p.to_owned(), i.trim_end().trim_end_matches('}').to_owned()),
                None => (String::new(), spec.clone()),
            };
            for item in items.split(',') {
                let (path, name) = match item.split_once(" as ") {
                    Some((p, n)) => (format!("{prefix}{}", p.trim()), n.trim().to_owned()),
                    None => {
                        let p = format!("{prefix}{}", item.trim());
                        let n = p.rsplit("::").next().unwrap_or("").to_owned();
                        (p, n)
                    }
                };
                if name.is_empty() || name == "*" || name == "self" {
                    continue;
                }
                out.insert((me.clone(), name), absolute(me, &path));
            }
        }
    }
    out
}

/// `path` as written in module `me`, from the crate root.
fn absolute(me: &Module, path: &str) -> Vec<String> {
    let segs: Vec<&str> = path
        .split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let (mut base, mut rest) = match segs.first() {
        Some(&"crate") => (Vec::new(), &segs[1..]),
        Some(&"super") => (me[..me.len().saturating_sub(1)].to_vec(), &segs[1..]),
        Some(&"self") => (me.clone(), &segs[1..]),
        _ => (me.clone(), &segs[..]),
    };
    while let Some((&"super", r)) = rest.split_first() {
        base.pop();
        rest = r;
    }
    base.extend(rest.iter().map(|s| (*s).to_owned()));
    base
}

/// The module that defines what `path` names, following re-exports.
fn resolve(path: &[String], known: &BTreeMap<Module, PathBuf>, exports: &Exports) -> Module {
    let mut path = path.to_vec();
    for _ in 0..8 {
        let m = module_of(&path, known);
        let Some(target) = path
            .get(m.len())
            .and_then(|n| exports.get(&(m.clone(), n.clone())))
        else {
            return m;
        };
        let mut next = target.clone();
        next.extend(path[m.len() + 1..].iter().cloned());
        path = next;
    }
    module_of(&path, known)
}

/// The edges between siblings: (parent, from-child, to-child).
fn sibling_edges(root: &Path) -> BTreeSet<(Module, String, String)> {
    let known = modules(root);
    let exports = exports(&known);
    let mut edges = BTreeSet::new();
    for (me, file) in &known {
        let text = std::fs::read_to_string(file).unwrap();
        for path in references(me, &code(&text)) {
            let to = resolve(&path, &known, &exports);
            let common = me.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common == me.len() || common == to.len() {
                continue; // an ancestor or a descendant
            }
            edges.insert((
                me[..common].to_vec(),
                me[common].clone(),
                to[common].clone(),
            ));
        }
    }
    edges
}

/// Every cycle among siblings, each as the path that closes it.
fn cycles(edges: &BTreeSet<(Module, String, String)>) -> Vec<String> {
    let mut by_parent: BTreeMap<&Module, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
    for (parent, from, to) in edges {
        by_parent
            .entry(parent)
            .or_default()
            .entry(from)
            .or_default()
            .push(to);
    }
    let mut found = Vec::new();
    for (parent, graph) in &by_parent {
        for start in graph.keys() {
            // A path from `start` back to itself, by depth-first search.
            let mut stack = vec![(vec![*start], *start)];
            let mut seen = BTreeSet::new();
            while let Some((path, at)) = stack.pop() {
                for next in graph.get(at).into_iter().flatten() {
                    if next == start {
                        let mut shown: Vec<String> = parent.to_vec();
                        let cycle = format!("{} → {start}", path.join(" → "));
                        shown.push(cycle);
                        found.push(shown.join("::"));
                    } else if seen.insert(*next) {
                        let mut p = path.clone();
                        p.push(next);
                        stack.push((p, next));
                    }
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn the_host_has_no_import_cycles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = cycles(&sibling_edges(&root));
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn no_plugin_crate_has_import_cycles() {
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    let mut checked = 0;
    for entry in std::fs::read_dir(plugins).unwrap() {
        let src = entry.unwrap().path().join("src");
        if !src.join("lib.rs").is_file() {
            continue;
        }
        checked += 1;
        let found = cycles(&sibling_edges(&src));
        assert!(
            found.is_empty(),
            "import cycles in {}:\n{}",
            src.display(),
            found.join("\n")
        );
    }
    assert!(checked >= 5, "only {checked} plugin crates found");
}

/// The top-level modules `lib.rs`'s `# Layout` names, in its order, and which of them are
/// leaves (those named on its "Leaves" line and after).
fn declared_layers(lib: &str) -> Vec<(String, bool)> {
    let doc: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .skip_while(|l| !l.contains("# Layout"))
        .collect();
    let mut out: Vec<(String, bool)> = Vec::new();
    let mut leaves = false;
    for line in doc {
        leaves |= line.trim_start().starts_with("- Leaves");
        for piece in line.split("[`").skip(1) {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if piece[name.len()..].starts_with("`]") && !out.iter().any(|(n, _)| *n == name) {
                out.push((name, leaves));
            }
        }
    }
    out
}

/// Each use of a module by one declared after it (a leaf: by any non-leaf, or a leaf after
/// it), and each top-level module `lib.rs` does not place.
fn layer_breaks(root: &Path) -> Vec<String> {
    let declared = declared_layers(&std::fs::read_to_string(root.join("lib.rs")).unwrap());
    let place = |m: &str| declared.iter().position(|(n, _)| n == m);
    let mut breaks = Vec::new();
    for m in modules(root).keys().filter(|m| m.len() == 1) {
        if place(&m[0]).is_none() {
            breaks.push(format!("{} is not placed in lib.rs's # Layout", m[0]));
        }
    }
    for (parent, from, to) in sibling_edges(root) {
        if !parent.is_empty() {
            continue;
        }
        let (Some(a), Some(b)) = (place(&from), place(&to)) else {
            continue;
        };
        let (from_leaf, to_leaf) = (declared[a].1, declared[b].1);
        let allowed = if from_leaf {
            to_leaf && b < a
        } else {
            to_leaf || b < a
        };
        if !allowed {
            breaks.push(format!("{from} uses {to}, declared after it"));
        }
    }
    breaks
}

#[test]
fn the_host_keeps_the_layer_order_lib_rs_declares() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let declared = declared_layers(&std::fs::read_to_string(root.join("lib.rs")).unwrap());
    assert!(declared.len() > 20, "{declared:?}");
    let breaks = layer_breaks(&root);
    assert!(breaks.is_empty(), "layers broken:\n{}", breaks.join("\n"));
}

#[test]
fn the_layer_check_finds_a_use_against_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |path: &str, text: &str| std::fs::write(src.join(path), text).unwrap();
    write(
        "lib.rs",
        "//! # Layout\n//!\n//! - [`a`], then [`b`].\n//! - Leaves: [`leaf`].\npub mod a;\npub mod b;\npub mod leaf;\n",
    );
    write("a.rs", "use crate::leaf::L;\n");
    write("b.rs", "use crate::a::X;\n");
    write("leaf.rs", "pub struct L;\n");
    assert!(layer_breaks(src).is_empty(), "{:?}", layer_breaks(src));
    write("leaf.rs", "pub use crate::b::Y;\npub struct L;\n");
    write("a.rs", "use crate::leaf::Y;\n");
    let found = layer_breaks(src);
    // `a` names `leaf::Y`, which is `b`'s: the re-export is followed.
    assert!(
        found.contains(&"a uses b, declared after it".to_owned()),
        "{found:?}"
    );
    assert!(
        found.contains(&"leaf uses b, declared after it".to_owned()),
        "{found:?}"
    );
}

#[test]
fn the_check_finds_a_cycle_when_one_is_added() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |path: &str, text: &str| {
        let p = src.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n");
    write("a/mod.rs", "pub mod inner;\npub use inner::X;\n");
    write("a/inner.rs", "use super::super::b::Y;\npub struct X;\n");
    write(
        "b.rs",
        "use crate::c::Z;\npub struct Y;\n// crate::a is only a comment\n",
    );
    write(
        "c.rs",
        "pub struct Z;\nfn f() -> &'static str { \"crate::a::X\" }\n",
    );
    assert!(cycles(&sibling_edges(src)).is_empty());
    // c now uses a: a → b → c → a.
    write("c.rs", "use crate::{a::X, b};\npub struct Z;\n");
    let found = cycles(&sibling_edges(src));
    assert!(found.contains(&"a → b → c → a".to_owned()), "{found:?}");
}

/// The SDK crate carries the WIT package it builds plugins against (so it can be published
/// and a plugin needs nothing else): the same files as the newest `wit/since_v*`.
#[test]
fn the_sdk_carries_the_newest_wit_package_unchanged() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut versions: Vec<_> = std::fs::read_dir(root.join("wit"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("since_v"))
        .collect();
    versions.sort_by_key(|v| {
        v.trim_start_matches("since_v")
            .split('.')
            .map(|p| p.parse::<u32>().unwrap())
            .collect::<Vec<_>>()
    });
    let newest = root.join("wit").join(versions.last().unwrap());
    for file in ["types.wit", "parser.wit", "monitor.wit"] {
        assert_eq!(
            std::fs::read_to_string(root.join("plugins/sdk/wit").join(file)).unwrap(),
            std::fs::read_to_string(newest.join(file)).unwrap(),
            "plugins/sdk/wit/{file} differs from {}: copy it over",
            newest.display()
        );
    }
}

/// The size debt the house may pay down but not grow: files whose code (before their tests)
/// is over 500 lines, and functions over 80 lines, each with its size today as a ceiling.
/// Anything not listed keeps within the limits. `cargo test --test layout sizes --
/// --nocapture` prints today's figures.
/// Files whose code (before their tests) is over [`FILE_LINES`], with their sizes as
/// ceilings: none today.
const BIG_FILES: &[(&str, usize)] = &[];
/// Functions over [`FUNCTION_LINES`], with their sizes as ceilings: the long tables (every
/// metric, every key of servers.yml, every slash command, every rule file key). At most
/// [`MOST_LONG_FUNCTIONS`] may be over.
const LONG_FUNCTIONS: &[(&str, &str, usize)] = &[
    ("config/mod.rs", "from_text", 226),
    ("observe/metrics/mod.rs", "new", 213),
    ("discord/commands/parse.rs", "parse", 202),
    ("plugins/patterns-engine/src/file.rs", "load", 216),
];
const MOST_LONG_FUNCTIONS: usize = 5;
const FILE_LINES: usize = 500;
const FUNCTION_LINES: usize = 80;

/// Each function of `code` with its length in lines: from its `fn` line to the closing
/// brace at the same indentation.
fn functions(code: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (k, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let words: Vec<&str> = trimmed.split_whitespace().collect();
        let Some(at) = words.iter().position(|w| *w == "fn") else {
            continue;
        };
        let before_ok = words[..at]
            .iter()
            .all(|w| w.starts_with("pub") || matches!(*w, "const" | "async" | "unsafe" | "extern"));
        if !before_ok || trimmed.ends_with(';') || trimmed.ends_with('}') {
            continue;
        }
        let name: String = words
            .get(at + 1)
            .unwrap_or(&"")
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let close = format!("{indent}}}");
        if let Some(end) = (k + 1..lines.len()).find(|&j| lines[j] == close) {
            out.push((name, end - k + 1));
        }
    }
    out
}

/// The host's source files (named from its `src/`) and every plugin crate's (named
/// `plugins/<crate>/src/...`).
fn measured_files() -> Vec<(String, PathBuf)> {
    let host = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out: Vec<(String, PathBuf)> = modules(&host)
        .into_values()
        .map(|p| {
            (
                p.strip_prefix(&host)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                p,
            )
        })
        .collect();
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    for entry in std::fs::read_dir(&plugins).unwrap() {
        let src = entry.unwrap().path().join("src");
        if !src.join("lib.rs").is_file() {
            continue;
        }
        for p in modules(&src).into_values() {
            let rel = p.strip_prefix(plugins.parent().unwrap()).unwrap();
            out.push((rel.to_string_lossy().into_owned(), p));
        }
    }
    out
}

#[test]
fn sizes_shrink_and_never_grow() {
    let mut grown = Vec::new();
    let (mut files, mut long) = (0, 0);
    for (rel, path) in measured_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let code = match text.find("#[cfg(test)]\nmod tests") {
            Some(i) => &text[..i],
            None => &text[..],
        };
        let n = code.matches('\n').count();
        let allowed = BIG_FILES
            .iter()
            .find(|(f, _)| *f == rel)
            .map_or(FILE_LINES, |(_, n)| *n);
        files += usize::from(n > FILE_LINES);
        if n > allowed {
            grown.push(format!("{rel}: {n} lines (at most {allowed})"));
        }
        for (name, len) in functions(code) {
            let allowed = LONG_FUNCTIONS
                .iter()
                .find(|(f, n, _)| *f == rel && *n == name)
                .map_or(FUNCTION_LINES, |(_, _, n)| *n);
            long += usize::from(len > FUNCTION_LINES);
            if len > allowed {
                grown.push(format!("{rel}: fn {name}: {len} lines (at most {allowed})"));
            }
        }
    }
    println!(
        "files over {FILE_LINES} lines: {files}; functions over {FUNCTION_LINES} lines: {long}"
    );
    assert!(
        grown.is_empty(),
        "grown past its limit:\n{}",
        grown.join("\n")
    );
    assert!(
        long <= MOST_LONG_FUNCTIONS,
        "{long} functions over {FUNCTION_LINES} lines"
    );
}

#[test]
fn a_function_is_measured_from_its_fn_line_to_its_closing_brace() {
    let code = "pub(crate) async fn a() {\n    if x {\n    }\n}\nfn b();\nimpl X {\n    fn c(&self) {}\n    fn d(\n        y: u8,\n    ) {\n        z\n    }\n}\n";
    assert_eq!(functions(code), [("a".to_owned(), 4), ("d".to_owned(), 5)]);
}
