//! Helpers shared by the integration tests: the `ptsel` binary run in a child process, paths
//! as arguments, and the committed JSON fixtures.
// Each test crate uses the helpers it needs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `ptsel ARGS...`, its output captured.
pub fn ptsel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ptsel"))
        .args(args)
        .output()
        .unwrap()
}

/// `ptsel ARGS...`, which must succeed.
pub fn ok(args: &[&str]) -> Output {
    let out = ptsel(args);
    assert!(
        out.status.success(),
        "ptsel {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `p` as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every `.json` fixture in `tests/fixtures/FOLDER`, in file-name order; at least `at_least`.
pub fn json_fixtures<T: serde::de::DeserializeOwned>(folder: &str, at_least: usize) -> Vec<T> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(folder);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= at_least,
        "fixtures missing in {}",
        dir.display()
    );
    paths
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}
