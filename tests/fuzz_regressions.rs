//! Replays every input under `fuzz/regressions/<target>/` (inputs that once crashed a fuzz target,
//! and seeds) through the same code the fuzz targets run. Each must finish without a panic, and
//! the seeds (`seed-*`, valid files) must also open and read: a replay that skips what fails to
//! open would otherwise check nothing of them.

#[path = "../fuzz/src/exercise.rs"]
#[allow(dead_code)]
mod exercise;

use ptsel::{Index, OpenOptions};
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
    assert!(
        v.iter().any(|p| is_seed(p)),
        "no seed-* input in {}",
        dir.display()
    );
    v
}

/// A valid input the fuzzer starts from (named `seed-*`), as opposed to a finding.
fn is_seed(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("seed-"))
}

#[test]
fn open_index_regressions() {
    let dir = tempfile::tempdir().unwrap();
    for input in inputs("open_index") {
        let path = dir.path().join("replay.ptsel");
        std::fs::copy(&input, &path).unwrap();
        if is_seed(&input) {
            let index = Index::open_with(&path, OpenOptions { verify: true })
                .unwrap_or_else(|e| panic!("seed {} must open: {e}", input.display()));
            assert!(index.rows() > 0 && index.dim() > 0);
            // A seed's partitions must open and answer, or the replay searches none of them.
            if index
                .section_bytes(ptsel::format::SectionKind::Partitions)
                .is_some()
            {
                let parts = ptsel::partitions::Partitions::open(&index)
                    .and_then(|p| p.unwrap().search(&vec![1.0; index.dim()], 3, 16, 1));
                assert!(parts.is_ok(), "seed {}: {parts:?}", input.display());
            }
        }
        exercise::index_file(&path);
        let mut fixed = std::fs::read(&input).unwrap();
        exercise::fix_checksums(&mut fixed);
        if is_seed(&input) {
            assert!(
                fixed == std::fs::read(&input).unwrap(),
                "fix_checksums changed the valid seed {}",
                input.display()
            );
        }
        std::fs::write(&path, &fixed).unwrap();
        exercise::index_file(&path);
    }
}

#[test]
fn npy_reader_regressions() {
    for input in inputs("npy_reader") {
        if is_seed(&input) {
            let matrix = ptsel::npy::read_matrix(&input).map(|m| m.data.len());
            let labels = ptsel::npy::read_labels(&input).map(|l| l.len());
            assert!(
                matches!(matrix, Ok(n) if n > 0) || matches!(labels, Ok(n) if n > 0),
                "seed {} must read as features or labels: {matrix:?} {labels:?}",
                input.display()
            );
        }
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

/// A timeout finding: deeply nested brackets made npyz's header parser backtrack for minutes.
/// Screened out before parsing now; a test without a time limit would just be slow, so check the
/// message too.
#[test]
fn npy_header_with_nested_brackets_is_refused_before_parsing() {
    let input = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions/npy_reader/timeout-nested-brackets");
    let err = ptsel::npy::MatrixReader::open(&input)
        .err()
        .expect("hostile header accepted")
        .to_string();
    assert!(err.contains("not supported"), "{err}");
}

#[test]
fn ids_section_regressions() {
    let dir = tempfile::tempdir().unwrap();
    for input in inputs("ids_section") {
        let ids = exercise::ids_sections(dir.path(), &std::fs::read(&input).unwrap());
        if is_seed(&input) {
            let ids = ids.unwrap_or_else(|| panic!("seed {} must open", input.display()));
            assert!(
                !ids.is_empty() && ids.iter().all(|i| i.is_ok()),
                "seed {}: {ids:?}",
                input.display()
            );
        }
    }
}
