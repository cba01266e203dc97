//! `ptsel build`, `info`, `verify` through the real binary: the happy path and every bad input,
//! each with a clear message naming the file, a non-zero exit and nothing left behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ptsel(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ptsel"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn write_f32(dir: &Path, name: &str, rows: usize, dim: usize, f: impl Fn(usize) -> f32) -> PathBuf {
    let p = dir.join(name);
    let data: Vec<f32> = (0..rows * dim).map(f).collect();
    ptsel::npy::write_matrix(&p, &data, rows, dim).unwrap();
    p
}

/// Files in `dir` (names), sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Run a build expected to fail; check exit code, that stderr names `culprit` and says
/// `problem`, and that the directory is unchanged.
fn fails(dir: &Path, args: &[&str], culprit: &str, problem: &str) {
    let before = listing(dir);
    let out = ptsel(dir, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert_ne!(out.status.code(), Some(101), "{args:?} panicked: {err}");
    assert!(
        err.contains(culprit),
        "{args:?}: error does not name {culprit}: {err}"
    );
    assert!(
        err.to_lowercase().contains(problem),
        "{args:?}: error does not say '{problem}': {err}"
    );
    assert_eq!(listing(dir), before, "{args:?} left files behind");
}

#[test]
fn build_info_verify_happy_path() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    write_f32(d, "f.npy", 50, 8, |i| ((i * 7) % 13) as f32 - 6.0);
    ptsel::npy::write_vector(
        &d.join("l.npy"),
        &(0..50).map(|i| (i % 5) as i16).collect::<Vec<_>>(),
    )
    .unwrap();
    std::fs::write(
        d.join("ids.txt"),
        (0..50).map(|i| format!("a/{i}.png\n")).collect::<String>(),
    )
    .unwrap();
    std::fs::write(d.join("names.txt"), "zero\none\ntwo\nthree\nfour\n").unwrap();
    let out = ptsel(
        d,
        &[
            "build",
            "--features",
            "f.npy",
            "--labels",
            "l.npy",
            "--ids",
            "ids.txt",
            "--class-names",
            "names.txt",
            "--out",
            "x.ptsel",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = ptsel(d, &["info", "x.ptsel", "--json"]);
    assert!(info.status.success());
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(v["rows"], 50);
    assert_eq!(v["dim"], 8);
    assert_eq!(v["classes"], 5);
    assert_eq!(v["dtype"], "f16");
    assert_eq!(v["has_ids"], true);
    assert!(ptsel(d, &["verify", "x.ptsel"]).status.success());
    let index = ptsel::Index::open(d.join("x.ptsel")).unwrap();
    assert_eq!(index.class_name(3), Some("three"));
    assert_eq!(index.id(7).unwrap(), "a/7.png");

    // f32 storage is twice the vector bytes.
    assert!(ptsel(
        d,
        &[
            "build",
            "--features",
            "f.npy",
            "--dtype",
            "f32",
            "--out",
            "y.ptsel"
        ]
    )
    .status
    .success());
    let y = ptsel::Index::open(d.join("y.ptsel")).unwrap();
    assert_eq!(y.vectors().len(), 400);
    assert!(matches!(y.vectors(), ptsel::Vectors::F32(_)));
}

#[test]
fn every_bad_input_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    write_f32(d, "f.npy", 10, 4, |i| i as f32);
    let b = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec!["build", "--out", "out.ptsel"];
        v.extend_from_slice(extra);
        v
    };
    fails(
        d,
        &b(&["--features", "missing.npy"]),
        "missing.npy",
        "no such file",
    );
    std::fs::write(d.join("text.npy"), "this is not numpy").unwrap();
    fails(
        d,
        &b(&["--features", "text.npy"]),
        "text.npy",
        "not a readable .npy",
    );
    ptsel::npy::write_vector(&d.join("rank1.npy"), &[1f32, 2.0, 3.0]).unwrap();
    fails(d, &b(&["--features", "rank1.npy"]), "rank1.npy", "2-d");
    ptsel::npy::write_matrix(&d.join("ints.npy"), &[1i32, 2, 3, 4], 2, 2).unwrap();
    fails(
        d,
        &b(&["--features", "ints.npy"]),
        "ints.npy",
        "unsupported dtype",
    );
    ptsel::npy::write_matrix::<f32>(&d.join("norows.npy"), &[], 0, 4).unwrap();
    fails(d, &b(&["--features", "norows.npy"]), "norows.npy", "empty");
    ptsel::npy::write_matrix::<f32>(&d.join("nodim.npy"), &[], 3, 0).unwrap();
    fails(d, &b(&["--features", "nodim.npy"]), "nodim.npy", "empty");
    write_f32(
        d,
        "nan.npy",
        10,
        4,
        |i| if i == 29 { f32::NAN } else { 1.0 },
    );
    fails(
        d,
        &b(&["--features", "nan.npy"]),
        "nan.npy",
        "row 7 column 1 is nan",
    );
    write_f32(d, "inf.npy", 10, 4, |i| {
        if i == 3 {
            f32::NEG_INFINITY
        } else {
            1.0
        }
    });
    fails(
        d,
        &b(&["--features", "inf.npy"]),
        "inf.npy",
        "row 0 column 3 is -inf",
    );
    // Finite in f32 but beyond f16: stored as f16 it would be infinity (l2 and ip keep raw
    // values); f32 storage and cos (unit rows) take it.
    write_f32(d, "big.npy", 10, 4, |i| if i == 22 { -1e5 } else { 1.0 });
    for metric in ["l2", "ip"] {
        fails(
            d,
            &b(&["--features", "big.npy", "--metric", metric, "--no-hnsw"]),
            "big.npy",
            "row 5 column 2 is -100000, beyond f16's range",
        );
    }
    for extra in [&["--metric", "l2", "--dtype", "f32"][..], &[]] {
        let mut args = vec![
            "build",
            "--features",
            "big.npy",
            "--out",
            "big.ptsel",
            "--force",
        ];
        args.extend(extra);
        let out = ptsel(d, &args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    std::fs::remove_file(d.join("big.ptsel")).unwrap();
    ptsel::npy::write_vector(&d.join("l9.npy"), &[0i64; 9]).unwrap();
    fails(
        d,
        &b(&["--features", "f.npy", "--labels", "l9.npy"]),
        "l9.npy",
        "9 labels for 10",
    );
    ptsel::npy::write_vector(&d.join("neg.npy"), &[0i32, 1, 2, -1, 0, 0, 0, 0, 0, 0]).unwrap();
    fails(
        d,
        &b(&["--features", "f.npy", "--labels", "neg.npy"]),
        "neg.npy",
        "position 3 is negative",
    );
    ptsel::npy::write_vector(&d.join("fl.npy"), &[0f32; 10]).unwrap();
    fails(
        d,
        &b(&["--features", "f.npy", "--labels", "fl.npy"]),
        "fl.npy",
        "must be integers",
    );
    std::fs::write(d.join("ids.txt"), "a\nb\nc\n").unwrap();
    fails(
        d,
        &b(&["--features", "f.npy", "--ids", "ids.txt"]),
        "ids.txt",
        "3 ids for 10 rows",
    );
    fails(
        d,
        &["build", "--features", "f.npy", "--out", "nodir/out.ptsel"],
        "nodir",
        "does not exist",
    );
    std::fs::write(d.join("taken.ptsel"), "precious").unwrap();
    fails(
        d,
        &["build", "--features", "f.npy", "--out", "taken.ptsel"],
        "taken.ptsel",
        "exists",
    );
    assert_eq!(std::fs::read(d.join("taken.ptsel")).unwrap(), b"precious");
    let out = ptsel(
        d,
        &[
            "build",
            "--features",
            "f.npy",
            "--out",
            "taken.ptsel",
            "--force",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ptsel::Index::open(d.join("taken.ptsel")).is_ok());
    // A device or FIFO is never replaced, --force or not: an index must be a file (renaming over
    // /dev/null as root would replace the device with a regular file).
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let fifo = d.join("out.fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success(), "mkfifo {}", fifo.display());
        fails(
            d,
            &[
                "build",
                "--features",
                "f.npy",
                "--out",
                "out.fifo",
                "--force",
            ],
            "out.fifo",
            "not a regular file",
        );
        assert!(std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo());
    }
}

#[test]
fn info_and_verify_reject_damaged_files() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    write_f32(d, "f.npy", 64, 16, |i| (i % 11) as f32);
    assert!(
        ptsel(d, &["build", "--features", "f.npy", "--out", "x.ptsel"])
            .status
            .success()
    );
    let mut bytes = std::fs::read(d.join("x.ptsel")).unwrap();
    bytes[200] ^= 0xff; // inside the vectors: only verify can see it
    std::fs::write(d.join("x.ptsel"), &bytes).unwrap();
    assert!(ptsel(d, &["info", "x.ptsel"]).status.success());
    let out = ptsel(d, &["verify", "x.ptsel"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum mismatch in section vectors"));
    std::fs::write(d.join("short.ptsel"), &bytes[..bytes.len() / 2]).unwrap();
    let out = ptsel(d, &["info", "short.ptsel"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("short.ptsel"));
}
