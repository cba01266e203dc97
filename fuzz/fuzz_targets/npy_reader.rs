//! Arbitrary bytes as an .npy file, read as features and as labels.
#![no_main]

#[path = "../src/exercise.rs"]
#[allow(dead_code)]
mod exercise;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).unwrap();
    let path = dir.path().join("fuzz.npy");
    std::fs::write(&path, data).unwrap();
    exercise::npy_file(&path);
});
