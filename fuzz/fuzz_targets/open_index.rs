//! Arbitrary bytes as an index file: open (with and without verification) and use whatever
//! opened. Must never panic, hang or allocate without bound.
#![no_main]

#[path = "../src/exercise.rs"]
#[allow(dead_code)]
mod exercise;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).unwrap();
    let path = dir.path().join("fuzz.ptsel");
    std::fs::write(&path, data).unwrap();
    exercise::index_file(&path);
    // The same bytes with consistent checksums, to reach the checks behind them.
    let mut fixed = data.to_vec();
    exercise::fix_checksums(&mut fixed);
    std::fs::write(&path, &fixed).unwrap();
    exercise::index_file(&path);
});
