//! The library's layering: `src/lib.rs` declares its modules lowest layer first, and a module
//! imports only modules declared before it; no set of files imports itself round (a file-level
//! cycle). Every `crate::`, `super::` and `self::` path outside comments and the tests at the end
//! of a file is resolved to the file that defines it (names re-exported at the crate root to
//! the module they come from). The binary (`src/bin`) and the Python crate sit on top and may
//! import anything.

use regex::Regex;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Source files by path relative to `src/` ("hnsw/search.rs"), without comments and without a
/// trailing `#[cfg(test)] mod tests`.
type Files = BTreeMap<String, String>;

fn read_sources(src: &Path) -> Files {
    let mut files = Files::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            if p.strip_prefix(src).unwrap() != Path::new("bin") {
                stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            }
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p
                .strip_prefix(src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            files.insert(rel, std::fs::read_to_string(&p).unwrap());
        }
    }
    files
}

/// `text` without comments, without the bodies of `macro_rules!` (their paths are resolved
/// where the macro is used) and without the test module that ends a file.
fn code(text: &str) -> String {
    let comments = Regex::new(r"(?s)//[^\n]*|/\*.*?\*/").unwrap();
    let mut text = comments.replace_all(text, "").into_owned();
    while let Some(start) = text.find("macro_rules!") {
        let open = text[start..].find('{').map_or(text.len(), |o| start + o);
        let mut depth = 0usize;
        let end = text[open..]
            .char_indices()
            .find_map(|(i, c)| {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(open + i + 1)
            })
            .unwrap_or(text.len());
        text.replace_range(start..end, "");
    }
    let tests = Regex::new(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{").unwrap();
    match tests.find(&text) {
        Some(m) => text[..m.start()].to_string(),
        None => text,
    }
}

/// "hnsw/search.rs" -> ["hnsw", "search"]; "hnsw/mod.rs" -> ["hnsw"]; "lib.rs" -> [].
fn module_path(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The import graph: for each file, the files its paths resolve to.
struct Imports {
    edges: BTreeMap<String, BTreeSet<String>>,
}

impl Imports {
    fn of(files: &Files) -> Self {
        let by_module: BTreeMap<Vec<String>, &String> =
            files.keys().map(|f| (module_path(f), f)).collect();
        let lib = files.get("lib.rs").map(|t| code(t)).unwrap_or_default();
        // Root re-exports: `pub use builder::{build, BuildOptions}` puts `build` in `builder`.
        let mut root_names: BTreeMap<String, String> = BTreeMap::new();
        let reexport = Regex::new(r"pub use (\w+)::\{([^}]*)\}|pub use (\w+)::(\w+)").unwrap();
        for c in reexport.captures_iter(&lib) {
            let (module, names) = match (c.get(1), c.get(2), c.get(3), c.get(4)) {
                (Some(m), Some(n), _, _) | (_, _, Some(m), Some(n)) => (m.as_str(), n.as_str()),
                _ => continue,
            };
            for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                root_names.insert(name.to_string(), module.to_string());
            }
        }
        let resolve = |segs: &[String]| -> Option<&String> {
            (1..=segs.len())
                .rev()
                .find_map(|n| by_module.get(&segs[..n]).copied())
        };
        let path = Regex::new(r"\b(crate|super|self)((?:::\w+)*)(::\{[^;]*?\})?").unwrap();
        let mut edges = BTreeMap::new();
        for (file, text) in files {
            let here = module_path(file);
            let mut to = BTreeSet::new();
            for c in path.captures_iter(&code(text)) {
                let rest: Vec<String> = c[2]
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                // `self` is this file's module; `super` its parent (a `mod.rs` is its module).
                let start: Vec<String> = match &c[1] {
                    "crate" => Vec::new(),
                    "self" => here.clone(),
                    _ => here[..here.len().saturating_sub(1)].to_vec(),
                };
                let base: Vec<String> = match (&c[1], start.is_empty(), rest.first()) {
                    ("crate", true, Some(first)) if root_names.contains_key(first) => {
                        vec![root_names[first].clone()]
                    }
                    _ => start.iter().chain(&rest).cloned().collect(),
                };
                let mut targets = vec![base.clone()];
                if let Some(group) = c.get(3) {
                    let inner = &group.as_str()[3..group.as_str().len() - 1];
                    for item in inner.split(',') {
                        let item = item.trim().split(" as ").next().unwrap_or("");
                        let item = item.split('{').next().unwrap_or("");
                        let sub = item.split("::").filter(|s| !s.is_empty() && *s != "self");
                        targets.push(base.iter().cloned().chain(sub.map(String::from)).collect());
                    }
                }
                for t in targets {
                    if let Some(f) = resolve(&t).filter(|f| *f != file) {
                        to.insert(f.clone());
                    }
                }
            }
            edges.insert(file.clone(), to);
        }
        Imports { edges }
    }

    /// The sets of more than one file that import each other round (Tarjan's strongly
    /// connected components).
    fn cycles(&self) -> Vec<Vec<String>> {
        struct Walk<'a> {
            edges: &'a BTreeMap<String, BTreeSet<String>>,
            index: BTreeMap<&'a str, usize>,
            low: BTreeMap<&'a str, usize>,
            stack: Vec<&'a str>,
            on_stack: BTreeSet<&'a str>,
            found: Vec<Vec<String>>,
        }
        impl<'a> Walk<'a> {
            fn visit(&mut self, v: &'a str) {
                let n = self.index.len();
                self.index.insert(v, n);
                self.low.insert(v, n);
                self.stack.push(v);
                self.on_stack.insert(v);
                for w in self.edges.get(v).into_iter().flatten() {
                    if !self.index.contains_key(w.as_str()) {
                        self.visit(w);
                        let low = self.low[v].min(self.low[w.as_str()]);
                        self.low.insert(v, low);
                    } else if self.on_stack.contains(w.as_str()) {
                        let low = self.low[v].min(self.index[w.as_str()]);
                        self.low.insert(v, low);
                    }
                }
                if self.low[v] == self.index[v] {
                    let mut component = Vec::new();
                    while let Some(w) = self.stack.pop() {
                        self.on_stack.remove(w);
                        component.push(w.to_string());
                        if w == v {
                            break;
                        }
                    }
                    if component.len() > 1 {
                        component.sort();
                        self.found.push(component);
                    }
                }
            }
        }
        let mut walk = Walk {
            edges: &self.edges,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            found: Vec::new(),
        };
        for v in self.edges.keys() {
            if !walk.index.contains_key(v.as_str()) {
                walk.visit(v);
            }
        }
        walk.found
    }

    /// Imports that look up: a file of module `a` using one of module `b` where `lib.rs`
    /// declares `b` after `a`.
    fn upward(&self, order: &[String]) -> Vec<String> {
        let rank = |f: &str| {
            let top = module_path(f).first().cloned()?;
            order.iter().position(|m| *m == top).map(|r| (r, top))
        };
        let mut up = Vec::new();
        for (from, tos) in &self.edges {
            for to in tos {
                if let (Some((a, ma)), Some((b, mb))) = (rank(from), rank(to)) {
                    if b > a {
                        up.push(format!(
                            "src/{from} imports src/{to}: `{mb}` is declared after `{ma}` in lib.rs"
                        ));
                    }
                }
            }
        }
        up
    }
}

/// The modules `lib.rs` declares, in order.
fn declared_order(lib: &str) -> Vec<String> {
    let decl = Regex::new(r"(?m)^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;").unwrap();
    decl.captures_iter(&code(lib))
        .map(|c| c[1].to_string())
        .collect()
}

fn check(files: &Files) -> Vec<String> {
    let imports = Imports::of(files);
    let order = declared_order(files.get("lib.rs").map_or("", String::as_str));
    let mut problems: Vec<String> = imports
        .cycles()
        .into_iter()
        .map(|c| format!("file cycle: src/{}", c.join(" <-> src/")))
        .collect();
    problems.extend(imports.upward(&order));
    problems
}

#[test]
fn modules_import_only_the_layers_below_them() {
    let files = read_sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(files.len() > 50, "read only {} files of src/", files.len());
    let problems = check(&files);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The checker itself: a small tree with a cycle inside a module and an upward import is
/// reported file by file, and the same tree without them passes.
#[test]
fn the_checker_reports_cycles_and_upward_imports() {
    let tree = |error: &str, search: &str| -> Files {
        [
            (
                "lib.rs",
                "mod error;\npub mod store;\npub mod hnsw;\npub use store::Index;\n",
            ),
            ("error.rs", error),
            ("store.rs", "pub struct Index;"),
            ("hnsw/mod.rs", "mod graph;\nmod search;\n"),
            (
                "hnsw/graph.rs",
                "use super::search::beam;\nuse crate::Index;\n",
            ),
            ("hnsw/search.rs", search),
        ]
        .into_iter()
        .map(|(f, t)| (f.to_string(), t.to_string()))
        .collect()
    };
    let clean = tree(
        "pub struct Error;",
        "// use super::graph::Graph;\npub fn beam() {}",
    );
    assert_eq!(check(&clean), Vec::<String>::new());
    // `crate::Index` is the root re-export of `store::Index`.
    let bad = tree(
        "fn f(_: crate::Index) {}",
        "use super::{graph::Graph};\npub fn beam() {}",
    );
    let problems = check(&bad);
    assert!(
        problems.contains(&"file cycle: src/hnsw/graph.rs <-> src/hnsw/search.rs".to_string()),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("src/error.rs imports src/store.rs")),
        "{problems:?}"
    );
    assert_eq!(problems.len(), 2, "{problems:?}");
}
