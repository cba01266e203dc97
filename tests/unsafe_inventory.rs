//! docs/GUARANTEES.md names every source file, the Python crate's included, that holds `unsafe`
//! code. This keeps that list
//! true, and checks the notes it promises: a `SAFETY` comment before every `unsafe` block, and a
//! `# Safety` section in the docs of every `unsafe fn` and `#[target_feature]` function.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file of the library, the binary and the Python crate (`src/`, `python/src/`),
/// relative to the crate root.
fn sources() -> Vec<PathBuf> {
    let mut stack = vec![root().join("src"), root().join("python/src")];
    let mut out = Vec::new();
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p.strip_prefix(root()).unwrap().to_path_buf());
        }
    }
    out.sort();
    out
}

/// The code of a line, without its `//` comment.
fn code(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

/// Positions of the keyword `unsafe` (not `unsafe_code` and the like) in `s`.
fn unsafe_at(s: &str) -> Vec<usize> {
    let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    s.match_indices("unsafe")
        .map(|(i, _)| i)
        .filter(|&i| !ident(s[..i].chars().last()) && !ident(s[i + 6..].chars().next()))
        .collect()
}

/// The files the `unsafe` promise of docs/GUARANTEES.md lists.
fn documented() -> BTreeSet<PathBuf> {
    let text = std::fs::read_to_string(root().join("docs/GUARANTEES.md")).unwrap();
    let bullet = text
        .split("\n- ")
        .find(|b| b.starts_with("`unsafe` appears"))
        .expect("GUARANTEES.md has no bullet starting with \"`unsafe` appears\"");
    bullet
        .split('`')
        .filter(|t| (t.starts_with("src/") || t.starts_with("python/src/")) && t.ends_with(".rs"))
        .map(PathBuf::from)
        .collect()
}

#[test]
fn unsafe_code_is_where_the_guarantees_say_with_its_safety_notes() {
    let mut found = BTreeSet::new();
    let mut missing = Vec::new();
    for file in sources() {
        let text = std::fs::read_to_string(root().join(&file)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let c = code(line);
            let at = |what: &str| format!("{}:{}: {what}: {}", file.display(), i + 1, line.trim());
            for pos in unsafe_at(c) {
                found.insert(file.clone());
                // A block (`unsafe {`, or `unsafe` ending the line before its brace): the
                // comment may precede the statement or the struct literal it sits in.
                let rest = c[pos + 6..].trim_start();
                if (rest.is_empty() || rest.starts_with('{'))
                    && !lines[i.saturating_sub(15)..=i]
                        .iter()
                        .any(|l| l.contains("SAFETY"))
                {
                    missing.push(at("unsafe block without a SAFETY comment"));
                }
            }
            let Some(f) = c.find("fn ") else { continue };
            if f > 0 && !c[..f].ends_with(' ') {
                continue;
            }
            // The doc comments and attributes right above the `fn`.
            let above: Vec<&str> = lines[..i]
                .iter()
                .rev()
                .map(|l| l.trim())
                .take_while(|l| l.starts_with("///") || l.starts_with("#["))
                .collect();
            let target_feature = above.iter().any(|l| l.starts_with("#[target_feature"));
            if (!unsafe_at(&c[..f]).is_empty() || target_feature)
                && !above.iter().any(|l| l.starts_with("/// # Safety"))
            {
                missing.push(at(
                    "unsafe or #[target_feature] fn without a # Safety section",
                ));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
    let documented = documented();
    assert_eq!(
        found, documented,
        "files with unsafe code (left) vs those docs/GUARANTEES.md lists (right)"
    );
}
