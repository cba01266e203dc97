//! Replays every input under `fuzz/regressions/<target>/` (inputs that once crashed a fuzz target,
//! and seeds) through the same code the fuzz targets run. Each must finish without a panic.

#[path = "../fuzz/src/exercise.rs"]
#[allow(dead_code)]
mod exercise;

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    assert!(!v.is_empty(), "no regression inputs in {}", dir.display());
    v
}

#[test]
fn open_index_regressions() {
    let dir = tempfile::tempdir().unwrap();
    for input in inputs("open_index") {
        let path = dir.path().join("replay.ptsel");
        std::fs::copy(&input, &path).unwrap();
        exercise::index_file(&path);
        let mut fixed = std::fs::read(&input).unwrap();
        exercise::fix_checksums(&mut fixed);
        std::fs::write(&path, &fixed).unwrap();
        exercise::index_file(&path);
    }
}

#[test]
fn npy_reader_regressions() {
    for input in inputs("npy_reader") {
        exercise::npy_file(&input);
    }
}

/// An out-of-memory finding cannot crash a test without a memory limit, so check that it is now
/// refused before the allocation, with a message about the header.
#[test]
fn npy_header_claiming_gigabytes_is_refused_before_allocation() {
    let input = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions/npy_reader/oom-header-len-4gib");
    let err = ptsel::npy::MatrixReader::open(&input)
        .err()
        .expect("hostile header accepted")
        .to_string();
    assert!(err.contains("header claims 4286251126 bytes"), "{err}");
}

#[test]
fn ids_section_regressions() {
    let dir = tempfile::tempdir().unwrap();
    for input in inputs("ids_section") {
        exercise::ids_sections(dir.path(), &std::fs::read(&input).unwrap());
    }
}
