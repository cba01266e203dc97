//! Sharded corpora (`ptsel build --shard-rows`, a corpus folder given to every command): merged
//! class statistics, search and selection against a single-file index of the same rows, the
//! uids manifest format, and clear errors for missing, corrupt and swapped shards.

use ptsel::synth::{self, Spec};
use ptsel::Engine;
use std::path::{Path, PathBuf};
mod common;
use common::{ok, ptsel, s};

/// Exit code and stderr of a command that must fail.
fn fails(args: &[&str]) -> (i32, String) {
    let out = ptsel(args);
    assert!(!out.status.success(), "ptsel {args:?} succeeded");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const ROWS: usize = 6000;
const DIM: usize = 32;

/// A labelled corpus with hex ids, written as .npy files, its single-file index and a corpus of
/// shards of `shard_rows` rows, both with HNSW graphs, and a target around three classes.
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    single: PathBuf,
    sharded: PathBuf,
    target: PathBuf,
    features: PathBuf,
    labels: PathBuf,
    ids: PathBuf,
    data: Vec<f32>,
}

fn fixture(shard_rows: usize) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let corpus = synth::clustered(Spec {
        rows: ROWS,
        dim: DIM,
        classes: 40,
        spread: 1.0,
        seed: 3,
    });
    let features = dir.join("f.npy");
    ptsel::npy::write_matrix(&features, &corpus.data, ROWS, DIM).unwrap();
    let labels = dir.join("l.npy");
    ptsel::npy::write_labels(&labels, &corpus.labels).unwrap();
    let ids = dir.join("ids.txt");
    let lines: Vec<String> = (0..ROWS)
        .map(|r| format!("{:032x}", (r as u128 * 0x9e37_79b9_7f4a_7c15) ^ 0xabc))
        .collect();
    std::fs::write(&ids, lines.join("\n") + "\n").unwrap();
    let names = dir.join("names.txt");
    let names_text: Vec<String> = (0..40).map(|c| format!("class {c}")).collect();
    std::fs::write(&names, names_text.join("\n") + "\n").unwrap();
    let common = [
        "--features",
        s(&features),
        "--labels",
        s(&labels),
        "--ids",
        s(&ids),
        "--class-names",
        s(&names),
        "--hnsw-m",
        "8",
        "--ef-construction",
        "64",
        "-q",
    ];
    let single = dir.join("single.ptsel");
    let mut args = vec!["build", "--out", s(&single)];
    args.extend(common);
    ok(&args);
    let sharded = dir.join("sharded");
    let n = shard_rows.to_string();
    let mut args = vec!["build", "--out", s(&sharded), "--shard-rows", &n];
    args.extend(common);
    ok(&args);
    let (t, _) = synth::target_like(&corpus, &[2, 9, 30], 20, 1.0, 5);
    let target = dir.join("t.npy");
    ptsel::npy::write_matrix(&target, &t, t.len() / DIM, DIM).unwrap();
    Fixture {
        _tmp: tmp,
        dir,
        single,
        sharded,
        target,
        features,
        labels,
        ids,
        data: corpus.data,
    }
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn shard(&self, i: usize) -> PathBuf {
        self.sharded.join(format!("shard-{i:05}.ptsel"))
    }

    /// `select` on `index` into `out`, with `args`; the manifest's text.
    fn select(&self, index: &Path, out: &str, args: &[&str]) -> String {
        let out = self.path(out);
        let mut all = vec![
            "select",
            "--index",
            s(index),
            "--target",
            s(&self.target),
            "--out",
            s(&out),
        ];
        all.extend(args);
        ok(&all);
        std::fs::read_to_string(out).unwrap()
    }
}

/// Manifest lines without the score column, and the scores.
fn split_scores(manifest: &str) -> (Vec<String>, Vec<f64>) {
    manifest
        .lines()
        .skip(1)
        .map(|l| {
            let (head, score) = l.rsplit_once(',').unwrap();
            (head.to_string(), score.parse::<f64>().unwrap())
        })
        .unzip()
}

#[test]
fn a_sharded_corpus_answers_as_the_single_file_of_the_same_rows() {
    // 6000 rows in shards of 1100: five full shards and a short one.
    let f = fixture(1100);
    let single = Engine::open(&f.single).unwrap();
    let sharded = Engine::open(&f.sharded).unwrap();
    assert_eq!(sharded.shards().len(), 6);
    assert_eq!(sharded.shards()[5].rows(), 500);
    assert_eq!(
        (sharded.rows(), sharded.dim(), sharded.classes()),
        (ROWS, DIM, 40)
    );
    assert!(sharded.index().is_err(), "a corpus has no one index file");

    // Class statistics: counts add, means agree to 1e-12 relative (per class, in norm).
    let (c1, m1) = single.class_stats();
    let (c2, m2) = sharded.class_stats();
    assert_eq!(c1, c2);
    for (a, b) in m1.chunks_exact(DIM).zip(m2.chunks_exact(DIM)) {
        let diff = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm = a.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!(diff <= 1e-12 * norm, "means differ by {diff} (norm {norm})");
    }
    // Rows, labels and ids are global.
    for r in [0, 1099, 1100, 4999, 5000, 5999] {
        assert_eq!(single.id(r).unwrap(), sharded.id(r).unwrap());
        assert_eq!(single.label(r).unwrap(), sharded.label(r).unwrap());
    }
    assert_eq!(sharded.class_name(7), Some("class 7"));

    // Exact search: the same rows and scores, bit for bit.
    let queries = &f.data[..50 * DIM];
    let exact = ptsel::SearchOpts {
        exact: true,
        device: ptsel::score::Device::Cpu,
        ..Default::default()
    };
    for k in [1, 10, 700] {
        assert_eq!(
            single.search(queries, k, &exact).unwrap(),
            sharded.search(queries, k, &exact).unwrap(),
            "k = {k}"
        );
    }
    // The CLI writes the same files.
    for (ix, out) in [(&f.single, "nn1.npy"), (&f.sharded, "nn2.npy")] {
        ok(&[
            "search",
            "--index",
            s(ix),
            "--queries",
            s(&f.target),
            "-k",
            "15",
            "--exact",
            "--out",
            s(&f.path(out)),
        ]);
    }
    assert_eq!(
        std::fs::read(f.path("nn1.npy")).unwrap(),
        std::fs::read(f.path("nn2.npy")).unwrap()
    );

    // Exact kNN selection: byte-identical manifests and summaries (but for the index path).
    let knn = [
        "--method",
        "knn",
        "--exact",
        "--per-target",
        "20",
        "--budget",
        "900",
    ];
    assert_eq!(
        f.select(&f.single, "knn1.csv", &knn),
        f.select(&f.sharded, "knn2.csv", &knn)
    );
    // UOT: the same rows, ids and classes in the same order; importances to 1e-12.
    for extra in [&["--classes", "3"][..], &["--budget", "500"][..]] {
        let a = f.select(&f.single, "uot1.csv", extra);
        let b = f.select(&f.sharded, "uot2.csv", extra);
        let ((la, sa), (lb, sb)) = (split_scores(&a), split_scores(&b));
        assert!(!la.is_empty());
        assert_eq!(la, lb, "{extra:?}");
        for (x, y) in sa.iter().zip(&sb) {
            assert!((x - y).abs() <= 1e-12 * x.abs(), "{x} vs {y}");
        }
    }
    // The contamination guard drops the same rows.
    let guard = [
        "--method",
        "knn",
        "--exact",
        "--budget",
        "300",
        "--exclude-near",
        s(&f.target),
        "--exclude-threshold",
        "0.9",
    ];
    assert_eq!(
        f.select(&f.single, "x1.csv", &guard),
        f.select(&f.sharded, "x2.csv", &guard)
    );

    // HNSW over the shards agrees with exact search on at least 99% of the selected rows.
    let rows = |text: &str| -> std::collections::HashSet<String> {
        text.lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap().to_string())
            .collect()
    };
    let hnsw = f.select(
        &f.sharded,
        "knn3.csv",
        &["--method", "knn", "--per-target", "20", "--budget", "900"],
    );
    let truth = rows(&std::fs::read_to_string(f.path("knn1.csv")).unwrap());
    let agree = rows(&hnsw).intersection(&truth).count();
    assert!(
        agree * 100 >= 99 * truth.len(),
        "{agree} of {} rows agree",
        truth.len()
    );

    // info and verify see every shard.
    let info: serde_json::Value =
        serde_json::from_slice(&ok(&["info", s(&f.sharded), "--json"]).stdout).unwrap();
    assert_eq!(info["rows"], 6000);
    assert_eq!(info["shards"].as_array().unwrap().len(), 6);
    assert_eq!(info["shards"][5]["first_row"], 5500);
    assert_eq!(info["shards"][2]["hnsw"]["m"], 8);
    let out = String::from_utf8(ok(&["verify", s(&f.sharded)]).stdout).unwrap();
    assert!(out.contains("ok, 6 shards"), "{out}");
}

#[test]
fn damaged_corpora_are_clear_errors_naming_the_shard() {
    let f = fixture(2000);
    let uot = |ix: &Path| {
        fails(&[
            "select",
            "--index",
            s(ix),
            "--target",
            s(&f.target),
            "--classes",
            "3",
            "--out",
            s(&f.path("x.csv")),
        ])
    };
    // A byte flipped in shard 1's vectors: opening is O(1) and does not see it; verify does.
    let shard1 = f.shard(1);
    let original = std::fs::read(&shard1).unwrap();
    let vectors = ptsel::Index::open(&shard1)
        .unwrap()
        .sections()
        .into_iter()
        .find(|e| e.kind.name() == "vectors")
        .unwrap();
    let mut bytes = original.clone();
    bytes[vectors.offset as usize + 10] ^= 0x40;
    std::fs::write(&shard1, &bytes).unwrap();
    let (code, err) = fails(&["verify", s(&f.sharded)]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("shard-00001.ptsel") && err.contains("vectors"),
        "{err}"
    );
    // A flipped header byte is seen at open, by every command.
    let mut bytes = original.clone();
    bytes[20] ^= 1;
    std::fs::write(&shard1, &bytes).unwrap();
    let (code, err) = uot(&f.sharded);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("shard-00001.ptsel"), "{err}");
    // A shard swapped for another valid one.
    std::fs::copy(f.shard(2), &shard1).unwrap();
    let (code, err) = uot(&f.sharded);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("shard-00001.ptsel") && err.contains("swapped"),
        "{err}"
    );
    // A missing shard.
    std::fs::remove_file(&shard1).unwrap();
    let (code, err) = fails(&["info", s(&f.sharded)]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("shard-00001.ptsel") && err.contains("missing"),
        "{err}"
    );
    std::fs::write(&shard1, &original).unwrap();
    ok(&["verify", s(&f.sharded)]);

    // The corpus file: its checksum covers the body; a hostile shard name is refused.
    let file = f.sharded.join("corpus.json");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("\"rows\": 6000", "\"rows\": 6001", 1)).unwrap();
    let (code, err) = uot(&f.sharded);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("corpus.json") && err.contains("checksum mismatch"),
        "{err}"
    );
    // A corpus file whose checksum is right but which names a file outside the folder.
    let body = text[text.find("\"corpus\": ").unwrap() + 10..text.rfind('}').unwrap()].replacen(
        "shard-00000.ptsel",
        "../single.ptsel",
        1,
    );
    let sum = format!("{:016x}", ptsel::format::checksum(body.as_bytes()));
    std::fs::write(
        &file,
        format!("{{\"format\": \"ptsel-corpus\", \"version\": 1, \"checksum\": \"{sum}\", \"corpus\": {body}}}"),
    )
    .unwrap();
    let (code, err) = uot(&f.sharded);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("\"../single.ptsel\" is not a plain file name"),
        "{err}"
    );
    std::fs::write(
        &file,
        "{\"format\": \"ptsel-corpus\", \"version\": 9, \"checksum\": \"0\", \"corpus\": {}}",
    )
    .unwrap();
    let (code, err) = uot(&f.sharded);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("corpus.json") && err.contains("version 9"),
        "{err}"
    );
    std::fs::remove_file(&file).unwrap();
    let (_, err) = uot(&f.sharded);
    assert!(err.contains("corpus.json"), "{err}");
}

#[test]
fn rebuilding_keeps_complete_shards_and_force_rebuilds() {
    let f = fixture(2500);
    let checksums = || -> Vec<String> {
        ptsel::corpus::read(&f.sharded)
            .unwrap()
            .shards
            .iter()
            .map(|e| e.table_checksum.clone())
            .collect()
    };
    let before = checksums();
    let build = |extra: &[&str]| {
        let mut args = vec![
            "build",
            "--features",
            s(&f.features),
            "--labels",
            s(&f.labels),
            "--ids",
            s(&f.ids),
            "--hnsw-m",
            "8",
            "--ef-construction",
            "64",
            "--shard-rows",
            "2500",
            "--out",
            s(&f.sharded),
        ];
        args.extend(extra);
        ptsel(&args)
    };
    // A folder that holds a corpus is refused without --force.
    let out = build(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("output exists"));
    // An interrupted build: the corpus file and the last shard are gone, shard 0 is damaged.
    std::fs::remove_file(f.sharded.join("corpus.json")).unwrap();
    std::fs::remove_file(f.shard(2)).unwrap();
    let mut bytes = std::fs::read(f.shard(0)).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    std::fs::write(f.shard(0), bytes).unwrap();
    let out = build(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("3 shards (1 kept from an earlier run)"),
        "{err}"
    );
    let after = checksums();
    assert_eq!(after[1], before[1], "the complete shard was kept");
    ok(&["verify", s(&f.sharded)]);
    // --force rebuilds every shard, and a smaller shard count removes the extra files.
    let mut args = vec![
        "build",
        "--features",
        s(&f.features),
        "--shard-rows",
        "4000",
        "--no-hnsw",
        "--force",
        "--out",
        s(&f.sharded),
        "-q",
    ];
    ok(&args);
    assert!(!f.shard(2).exists());
    assert_eq!(ptsel::corpus::read(&f.sharded).unwrap().shards.len(), 2);
    // k-means pseudo-classes are per shard: refused for a sharded build.
    args.extend(["--kmeans", "4"]);
    let (code, err) = fails(&args);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_failed_forced_rebuild_leaves_the_corpus_whole() {
    let f = fixture(2500);
    let before = ptsel::corpus::read(&f.sharded).unwrap();
    let search = |out: &str| {
        let out = f.path(out);
        ok(&[
            "search",
            "--index",
            s(&f.sharded),
            "--queries",
            s(&f.target),
            "-k",
            "5",
            "--out",
            s(&out),
        ]);
        std::fs::read(out).unwrap()
    };
    let answer = search("before.npy");
    // New features whose third shard holds a NaN: the rebuild fails on that shard, after the
    // first two were built.
    let mut bad = f.data.clone();
    bad[5500 * DIM + 3] = f32::NAN;
    let features = f.path("bad.npy");
    ptsel::npy::write_matrix(&features, &bad, ROWS, DIM).unwrap();
    let rebuild = |features: &Path, extra: &[&str]| {
        let mut args = vec![
            "build",
            "--features",
            s(features),
            "--labels",
            s(&f.labels),
            "--shard-rows",
            "2500",
            "--no-hnsw",
            "--out",
            s(&f.sharded),
            "-q",
        ];
        args.extend(extra);
        ptsel(&args)
    };
    let out = rebuild(&features, &["--force", "--threads", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.npy") && err.contains("NaN"), "{err}");
    assert_eq!(ptsel::corpus::read(&f.sharded).unwrap(), before);
    assert!(!f.sharded.join(ptsel::corpus::STAGING).exists());
    ok(&["verify", s(&f.sharded)]);
    assert_eq!(search("after.npy"), answer, "the corpus answers as before");

    // A forced rebuild that succeeds replaces it (the staging folder is gone).
    let out = rebuild(&f.features, &["--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rebuilt = ptsel::corpus::read(&f.sharded).unwrap();
    assert_ne!(
        rebuilt.shards, before.shards,
        "the graphs are gone from the new shards"
    );
    assert!(!f.sharded.join(ptsel::corpus::STAGING).exists());
    ok(&["verify", s(&f.sharded)]);

    // An interrupted build resumed after its input was rewritten under the same path rebuilds
    // every shard instead of keeping those of the old content.
    std::fs::remove_file(f.sharded.join("corpus.json")).unwrap();
    let changed: Vec<f32> = f.data.iter().map(|v| -v).collect();
    ptsel::npy::write_matrix(&f.features, &changed, ROWS, DIM).unwrap();
    let out = rebuild(&f.features, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("(0 kept from an earlier run)"), "{err}");
    let engine = Engine::open(&f.sharded).unwrap();
    let mut row = vec![0.0f32; DIM];
    engine.row_into(7, &mut row).unwrap();
    let want: Vec<f32> = changed[7 * DIM..8 * DIM].to_vec();
    let norm = want.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!(
        row.iter()
            .zip(&want)
            .all(|(a, b)| (a - b / norm).abs() < 1e-2),
        "stale rows kept"
    );
}

#[test]
fn class_statistics_are_capped_over_all_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let (rows, dim) = (24, 64);
    let features = tmp.path().join("f.npy");
    let data = synth::gaussian_matrix(rows, dim, 1);
    ptsel::npy::write_matrix(&features, &data, rows, dim).unwrap();
    // One shard's statistics for label 1e6 take 0.5 GB: with one shard per row, 12 GB in all.
    let labels = tmp.path().join("l.npy");
    ptsel::npy::write_labels(&labels, &vec![1_000_000u32; rows]).unwrap();
    let out = tmp.path().join("corpus");
    let (code, err) = fails(&[
        "build",
        "--features",
        s(&features),
        "--labels",
        s(&labels),
        "--shard-rows",
        "1",
        "--no-hnsw",
        "--out",
        s(&out),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("in 24 shards") && err.contains("GiB"), "{err}");
    assert!(!out.exists(), "a refused build made {}", out.display());
}

#[test]
fn uids_manifests_and_unlabelled_corpora() {
    let f = fixture(3000);
    // The uids format: the selected ids as sorted 128-bit uids, numpy dtype "u8,u8".
    let budget = [
        "--method",
        "knn",
        "--exact",
        "--budget",
        "40",
        "--per-target",
        "5",
    ];
    let csv = f.select(&f.sharded, "u.csv", &budget);
    let out = f.path("u.npy");
    let mut args = vec![
        "select",
        "--index",
        s(&f.sharded),
        "--target",
        s(&f.target),
        "--out",
        s(&out),
        "--format",
        "uids",
    ];
    args.extend(budget);
    ok(&args);
    let mut want: Vec<(u64, u64)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let id = l.split(',').nth(2).unwrap();
            (
                u64::from_str_radix(&id[..16], 16).unwrap(),
                u64::from_str_radix(&id[16..], 16).unwrap(),
            )
        })
        .collect();
    want.sort();
    let bytes = std::fs::read(&out).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(
        header.starts_with(
            "{'descr': [('f0', '<u8'), ('f1', '<u8')], 'fortran_order': False, 'shape': (40,), }"
        ),
        "{header}"
    );
    assert_eq!((10 + header_len) % 64, 0);
    let got: Vec<(u64, u64)> = bytes[10 + header_len..]
        .chunks_exact(16)
        .map(|c| {
            (
                u64::from_le_bytes(c[..8].try_into().unwrap()),
                u64::from_le_bytes(c[8..].try_into().unwrap()),
            )
        })
        .collect();
    assert_eq!(got, want);
    // Ids that are not 32 hex digits (here: row numbers) are an error naming the first one.
    let plain = f.path("plain");
    ok(&[
        "build",
        "--features",
        s(&f.features),
        "--shard-rows",
        "2000",
        "--no-hnsw",
        "--out",
        s(&plain),
        "-q",
    ]);
    args[2] = s(&plain);
    let (code, err) = fails(&args);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("32 hex digits") && err.contains("has the id"),
        "{err}"
    );
    // An unlabelled corpus: kNN works (exact, without graphs); class-level methods explain why not.
    let knn = f.select(&plain, "p.csv", &["--method", "knn", "--budget", "10"]);
    assert_eq!(knn.lines().count(), 11);
    let (code, err) = fails(&[
        "select",
        "--index",
        s(&plain),
        "--target",
        s(&f.target),
        "--classes",
        "2",
        "--out",
        s(&f.path("p2.csv")),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("per shard"), "{err}");
}

#[test]
fn parts_scanned_apart_and_merged_give_the_whole_corpus_answer() {
    use ptsel::select::{Amount, Exclude, Found, Method, SelectParams, Target, TargetKind};
    let f = fixture(1500);
    let e = Engine::open(&f.sharded).unwrap();
    let q = ptsel::npy::read_matrix(&f.target).unwrap();
    let groups = [0..1, 1..3, 3..4];
    for exact in [true, false] {
        let opts = ptsel::SearchOpts {
            exact,
            device: ptsel::score::Device::Cpu,
            ..Default::default()
        };
        let whole = e.search(&q.data, 20, &opts).unwrap();
        let parts: Vec<_> = groups
            .iter()
            .map(|g| e.search_shards(g.clone(), &q.data, 20, &opts).unwrap())
            .collect();
        assert!(parts[0].ids.iter().all(|&r| r < 1500), "shard 0 only");
        assert!(parts[2].ids.iter().all(|&r| r >= 4500), "shard 3 only");
        let merged = ptsel::engine::merge_neighbors(e.metric(), 20, &parts).unwrap();
        assert_eq!(merged, whole, "exact: {exact}");
    }
    assert!(e
        .search_shards(3..5, &q.data, 5, &Default::default())
        .is_err());
    // A driver's selection from the parts is the selection of the whole corpus.
    let target = Target {
        features: q.clone(),
        kind: TargetKind::Samples,
        origin: f.target.clone(),
    };
    let exclude = Exclude {
        test: ptsel::npy::Matrix {
            data: f.data[..20 * DIM].to_vec(),
            rows: 20,
            dim: DIM,
        },
        origin: "test".into(),
        threshold: 0.9,
    };
    let p = SelectParams {
        method: Method::Knn,
        amount: Amount::Budget(400),
        per_target: 20,
        exact: true,
        ..Default::default()
    };
    let whole = e.select(&target, Some(&exclude), &p).unwrap();
    let found = Found {
        neighbors: groups
            .iter()
            .map(|g| {
                e.search_shards(
                    g.clone(),
                    &q.data,
                    20,
                    &ptsel::SearchOpts {
                        exact: true,
                        ..Default::default()
                    },
                )
                .unwrap()
            })
            .collect(),
        excluded: groups
            .iter()
            .map(|g| {
                e.near_duplicates(g.clone(), &exclude.test.data, 0.9)
                    .unwrap()
            })
            .collect(),
    };
    assert!(
        whole.excluded >= 20,
        "the test rows themselves are near-duplicates"
    );
    // A list shorter than k (here one part's, its last neighbour dropped) is padded with
    // (NO_NODE, NaN) by the merge: no neighbour, not a row that ranks first.
    let mut padded = Found {
        neighbors: found.neighbors[..1].to_vec(),
        excluded: found.excluded[..1].to_vec(),
    };
    for part in &mut padded.neighbors {
        let k = part.k;
        for (ids, scores) in part
            .ids
            .chunks_exact_mut(k)
            .zip(part.scores.chunks_exact_mut(k))
        {
            ids[k - 1] = ptsel::hnsw::NO_NODE;
            scores[k - 1] = f32::NAN;
        }
    }
    let sel = e.select_found(&target, Some(&exclude), &p, padded).unwrap();
    assert!(sel
        .picks
        .iter()
        .all(|pick| pick.row != ptsel::hnsw::NO_NODE));
    assert!(sel.picks.iter().all(|pick| pick.score.is_finite()));
    assert_eq!(
        e.select_found(&target, Some(&exclude), &p, found).unwrap(),
        whole
    );
}
