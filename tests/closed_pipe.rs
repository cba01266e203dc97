//! `ptsel ... | head -1`: a reader that goes away ends the command quietly with status 0, the
//! way ripgrep treats a broken pipe, instead of a panic in `println!` (exit 101).

use std::path::Path;
use std::process::{Command, Stdio};

/// Runs ptsel with `args` in `dir`, its stdout a pipe whose reading end is closed at once, so
/// every line it prints meets a closed pipe; returns (exit code, stderr).
fn with_closed_stdout(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ptsel"))
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn closed_stdout_ends_commands_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let demo = [
        "demo", "--dir", "d", "--rows", "3000", "--dim", "16", "--quiet",
    ];
    let (code, stderr) = with_closed_stdout(dir.path(), &demo);
    assert_eq!(code, Some(0), "demo: {stderr}");
    assert!(!stderr.contains("panicked"), "demo: {stderr}");
    // An index and queries for the commands that print tables.
    let built = Command::new(env!("CARGO_BIN_EXE_ptsel"))
        .current_dir(dir.path())
        .args(demo)
        .output()
        .unwrap();
    assert!(built.status.success());
    for args in [
        &[
            "bench",
            "--index",
            "d/demo.ptsel",
            "--queries",
            "d/demo-target.npy",
            "-k",
            "10",
            "--ef",
            "16,32,64,128,256",
        ][..],
        &["info", "d/demo.ptsel"],
        &["kernels"],
    ] {
        let (code, stderr) = with_closed_stdout(dir.path(), args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
