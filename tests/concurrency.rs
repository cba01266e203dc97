//! Readers in many processes while another process rebuilds the index and renames it over the
//! old one: every reader sees one complete, consistent version (all checksums match, and the
//! vectors are those of one version, never a mix), with no errors.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn ptsel(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ptsel"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

/// Every row of version `v` is the constant vector `v + 1`, so a mix of versions is visible.
fn write_version(dir: &Path, v: usize) {
    let (rows, dim) = (20_000, 32);
    let data = vec![(v + 1) as f32; rows * dim];
    ptsel::npy::write_matrix(&dir.join(format!("v{v}.npy")), &data, rows, dim).unwrap();
}

#[test]
fn readers_see_one_version_while_the_index_is_replaced() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    for v in 0..2 {
        write_version(d, v);
    }
    let build = |v: usize| {
        ptsel(
            d,
            &[
                "build",
                "--features",
                &format!("v{v}.npy"),
                "--metric",
                "ip",
                "--dtype",
                "f32",
                "--out",
                "x.ptsel",
                "--force",
                "-q",
                "--no-hnsw",
            ],
        )
    };
    assert!(build(0).status.success());
    ptsel::npy::write_matrix(&d.join("q.npy"), &[1f32; 32], 1, 32).unwrap();
    let stop = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    let rebuilds = AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            let start = Instant::now();
            let mut v = 1;
            while start.elapsed() < Duration::from_secs(4) {
                let out = build(v);
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                rebuilds.fetch_add(1, Ordering::Relaxed);
                v = 1 - v;
            }
            stop.store(true, Ordering::Relaxed);
        });
        for reader in 0..3 {
            let (failures, reads, stop) = (&failures, &reads, &stop);
            s.spawn(move || {
                let (nn, scores) = (format!("nn{reader}.npy"), format!("s{reader}.npy"));
                while !stop.load(Ordering::Relaxed) {
                    // A separate process searches whatever version it opened: every row of a
                    // version is the same vector, so the 5 scores must all be that version's.
                    let out = ptsel(
                        d,
                        &[
                            "search",
                            "--index",
                            "x.ptsel",
                            "--queries",
                            "q.npy",
                            "-k",
                            "5",
                            "--exact",
                            "--device",
                            "cpu",
                            "--out",
                            &nn,
                            "--scores",
                            &scores,
                        ],
                    );
                    let got = out
                        .status
                        .success()
                        .then(|| ptsel::npy::read_matrix(&d.join(&scores)).unwrap().data);
                    match got {
                        Some(s)
                            if s.iter().all(|&x| x == s[0]) && (s[0] == 32.0 || s[0] == 64.0) => {}
                        Some(s) => failures
                            .lock()
                            .unwrap()
                            .push(format!("search mixed versions: {s:?}")),
                        None => failures
                            .lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&out.stderr).into_owned()),
                    }
                    // A separate process verifies every checksum of whatever version it opened.
                    let out = ptsel(d, &["verify", "x.ptsel"]);
                    if !out.status.success() {
                        failures
                            .lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&out.stderr).into_owned());
                    }
                    // In this process: one open, all rows of one version.
                    let index = ptsel::Index::open(d.join("x.ptsel")).unwrap();
                    let ptsel::Vectors::F32(v) = index.vectors() else {
                        panic!("expected f32")
                    };
                    let first = v[0];
                    if v.iter().any(|&x| x != first) || !(first == 1.0 || first == 2.0) {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("mixed versions in one open (first value {first})"));
                    }
                    reads.fetch_add(3, Ordering::Relaxed);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} inconsistent reads: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    let (reads, rebuilds) = (reads.into_inner(), rebuilds.into_inner());
    assert!(
        rebuilds >= 2 && reads >= 10,
        "too little overlap: {reads} reads, {rebuilds} rebuilds"
    );
    eprintln!("{reads} reads (searches, verifies, in-process scans) during {rebuilds} rebuilds, 0 inconsistencies");
}
