//! Arbitrary bytes as the ids sections of an otherwise valid index.
#![no_main]

#[path = "../src/exercise.rs"]
#[allow(dead_code)]
mod exercise;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).unwrap();
    let _ = exercise::ids_sections(dir.path(), data);
});
