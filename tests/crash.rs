//! Crash safety: `ptsel build` killed with SIGKILL at random moments never leaves a partial
//! file under the output name (it holds the previous complete index or the new complete one),
//! and the next build removes the temporary files that the killed builds left behind.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn build_cmd(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ptsel"));
    c.current_dir(dir)
        .args([
            "build",
            "--features",
            "f.npy",
            "--out",
            "x.ptsel",
            "--force",
            "--quiet",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

#[test]
fn sigkill_during_build_never_leaves_a_partial_index() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let corpus = ptsel::synth::clustered(ptsel::synth::Spec {
        rows: 60_000,
        dim: 64,
        classes: 10,
        spread: 1.0,
        seed: 5,
    });
    ptsel::npy::write_matrix(&d.join("f.npy"), &corpus.data, corpus.rows, corpus.dim).unwrap();
    let start = Instant::now();
    assert!(build_cmd(d).status().unwrap().success());
    let full = start.elapsed();
    let previous = std::fs::read(d.join("x.ptsel")).unwrap();

    let trials = 24u64;
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut killed = 0;
    for trial in 0..trials {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(seed % (full.as_micros() as u64 * 5 / 4).max(1));
        let mut child = build_cmd(d).spawn().unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        let index = ptsel::Index::open_with(d.join("x.ptsel"), ptsel::OpenOptions { verify: true })
            .unwrap_or_else(|e| panic!("trial {trial} (kill after {delay:?}): {e}"));
        assert_eq!(index.rows(), corpus.rows);
        let now = std::fs::read(d.join("x.ptsel")).unwrap();
        // Same data: a finished rebuild differs from the previous file only in its timestamps.
        assert_eq!(now.len(), previous.len(), "trial {trial}");
    }
    assert!(
        killed >= trials / 2,
        "only {killed} of {trials} builds were killed mid-way"
    );
    assert!(build_cmd(d).status().unwrap().success());
    let stray: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(stray.is_empty(), "temporary files left behind: {stray:?}");
    eprintln!(
        "{killed} of {trials} builds killed mid-way (full build {full:?}); index intact every time"
    );
}
