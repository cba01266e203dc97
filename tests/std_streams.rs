//! Standard streams as outputs. `ptsel ... | head -1`: a reader that goes away ends the command
//! quietly with status 0, the way ripgrep treats a broken pipe, instead of a panic in `println!`
//! (exit 101). `--summary /dev/stdout > file`: the redirection is written, never renamed over.

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

const DEMO: [&str; 8] = [
    "demo", "--dir", "d", "--rows", "3000", "--dim", "16", "--quiet",
];

/// Runs the small demo in `dir`: an index and a target under `dir/d`.
fn build_demo(dir: &Path) {
    let built = Command::new(env!("CARGO_BIN_EXE_ptsel"))
        .current_dir(dir)
        .args(DEMO)
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
}

#[test]
fn closed_stdout_ends_commands_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = with_closed_stdout(dir.path(), &DEMO);
    assert_eq!(code, Some(0), "demo: {stderr}");
    assert!(!stderr.contains("panicked"), "demo: {stderr}");
    // An index and queries for the commands that print tables.
    build_demo(dir.path());
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

/// `select --summary /dev/stdout` with stdout redirected (`>>`) to a file: the summary lands after
/// what the file held, and the file is the one the shell opened, not a new one renamed over it.
#[test]
fn a_summary_to_redirected_stdout_appends_to_the_redirection() {
    let dir = tempfile::tempdir().unwrap();
    build_demo(dir.path());
    for (name, stream) in [
        ("/dev/stdout", 1),
        ("/dev/stderr", 2),
        ("/proc/self/fd/1", 1),
    ] {
        let log = dir.path().join("log.txt");
        std::fs::write(&log, "earlier line\n").unwrap();
        let file = || {
            let f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            Stdio::from(f)
        };
        let (stdout, stderr) = match stream {
            1 => (file(), Stdio::piped()),
            _ => (Stdio::piped(), file()),
        };
        let out = Command::new(env!("CARGO_BIN_EXE_ptsel"))
            .current_dir(dir.path())
            .args([
                "select",
                "--index",
                "d/demo.ptsel",
                "--target",
                "d/demo-target.npy",
                "--target-labels",
                "d/demo-target-labels.npy",
                "--out",
                "picked.csv",
                "--summary",
                name,
            ])
            .stdout(stdout)
            .stderr(stderr)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {out:?}");
        let text = std::fs::read_to_string(&log).unwrap();
        let summary_at = text.find("\"selected_classes\"");
        assert!(
            text.starts_with("earlier line\n") && summary_at.is_some(),
            "{name}: the redirection lost its earlier line or got no summary: {:?}",
            &text[..text.len().min(200)]
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3, "{name}");
    }
}
