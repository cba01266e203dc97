//! `ptsel select`, `ptsel build --kmeans` and `ptsel demo` through the real binary, checked
//! against independent computations on the synthetic features the index was built from.

use ptsel::synth::{self, Corpus, Spec};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
mod common;
use common::{ok, ptsel, s};

const TRUE_CLASSES: [usize; 3] = [2, 9, 30];

struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    corpus: Corpus,
    index: PathBuf,
    target: PathBuf,
    target_labels: PathBuf,
    target_data: Vec<f32>,
    target_label_values: Vec<u32>,
}

/// A labelled corpus of 40 classes (labels optional), its index (without an HNSW graph unless
/// `extra` sets `--hnsw-m`) and a target drawn around `TRUE_CLASSES`. `extra` are more
/// `ptsel build` arguments.
fn fixture(labelled: bool, dtype: &str, extra: &[&str]) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let corpus = synth::clustered(Spec {
        rows: 4000,
        dim: 32,
        classes: 40,
        spread: 1.0,
        seed: 11,
    });
    let features = dir.join("f.npy");
    ptsel::npy::write_matrix(&features, &corpus.data, corpus.rows, corpus.dim).unwrap();
    let labels = dir.join("l.npy");
    ptsel::npy::write_labels(&labels, &corpus.labels).unwrap();
    let index = dir.join("c.ptsel");
    let mut args = vec![
        "build",
        "--features",
        s(&features),
        "--out",
        s(&index),
        "--dtype",
        dtype,
        "-q",
    ];
    if labelled {
        args.extend(["--labels", s(&labels)]);
    }
    args.extend(extra);
    // A graph only where a test asks for one (by setting its M): building it takes most of the time.
    if !extra.contains(&"--hnsw-m") {
        args.push("--no-hnsw");
    }
    ok(&args);
    let (target_data, target_label_values) = synth::target_like(&corpus, &TRUE_CLASSES, 20, 1.0, 5);
    let target = dir.join("t.npy");
    ptsel::npy::write_matrix(&target, &target_data, target_label_values.len(), corpus.dim).unwrap();
    let target_labels = dir.join("tl.npy");
    ptsel::npy::write_labels(&target_labels, &target_label_values).unwrap();
    Fixture {
        _dir: tmp,
        dir,
        corpus,
        index,
        target,
        target_labels,
        target_data,
        target_label_values,
    }
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Run `select` with `--index` and `--target` filled in.
    fn select(&self, args: &[&str]) -> Output {
        self.select_on(&self.index, args)
    }

    /// [`Fixture::select`] on another index.
    fn select_on(&self, index: &Path, args: &[&str]) -> Output {
        let mut all = vec!["select", "--index", s(index), "--target", s(&self.target)];
        all.extend(args);
        ptsel(&all)
    }

    fn select_ok(&self, args: &[&str]) -> Output {
        let out = self.select(args);
        assert!(
            out.status.success(),
            "select {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Target class means (f64), as an independent oracle.
    fn target_means(&self) -> Vec<Vec<f64>> {
        let d = self.corpus.dim;
        let mut sums = vec![vec![0f64; d]; TRUE_CLASSES.len()];
        let mut counts = vec![0f64; TRUE_CLASSES.len()];
        for (r, &l) in self.target_label_values.iter().enumerate() {
            counts[l as usize] += 1.0;
            sums[l as usize]
                .iter_mut()
                .zip(&self.target_data[r * d..(r + 1) * d])
                .for_each(|(s, &x)| *s += f64::from(x));
        }
        sums.into_iter()
            .zip(counts)
            .map(|(s, c)| s.into_iter().map(|x| x / c).collect())
            .collect()
    }

    fn row(&self, r: usize) -> &[f32] {
        &self.corpus.data[r * self.corpus.dim..(r + 1) * self.corpus.dim]
    }
}

fn cos(a: &[f64], b: &[f64]) -> f64 {
    let n = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / (n(a) * n(b))
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// Manifest rows: (rank, row, id, class, score).
fn read_csv(path: &Path) -> Vec<(usize, usize, String, Option<u32>, f64)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("rank,row,id,class,score"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].to_string(),
                f[3].parse().ok(),
                f[4].parse().unwrap(),
            )
        })
        .collect()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn selected_classes(summary: &serde_json::Value) -> Vec<u64> {
    summary["selected_classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["class"].as_u64().unwrap())
        .collect()
}

#[test]
fn uot_keeps_the_targets_source_classes_whole() {
    let f = fixture(true, "f16", &[]);
    let (out, sum) = (f.path("sel.csv"), f.path("sum.json"));
    f.select_ok(&[
        "--target-labels",
        s(&f.target_labels),
        "--classes",
        "3",
        "--out",
        s(&out),
        "--summary",
        s(&sum),
    ]);
    let summary = read_json(&sum);
    let mut chosen = selected_classes(&summary);
    chosen.sort_unstable();
    assert_eq!(
        chosen,
        TRUE_CLASSES.iter().map(|&c| c as u64).collect::<Vec<_>>()
    );
    assert_eq!(summary["method"], "uot");
    assert_eq!(summary["importance"].as_array().unwrap().len(), 40);
    assert_eq!(summary["solver"]["target_units"], 3);
    assert_eq!(summary["solver"]["converged"], true);
    assert!(summary.get("timing").is_none());
    // Every sample of the chosen classes, nothing else, ranks 1..n.
    let rows = read_csv(&out);
    let want: BTreeSet<usize> = (0..f.corpus.rows)
        .filter(|&r| TRUE_CLASSES.contains(&(f.corpus.labels[r] as usize)))
        .collect();
    assert_eq!(rows.iter().map(|r| r.1).collect::<BTreeSet<_>>(), want);
    assert_eq!(summary["selected"].as_u64().unwrap() as usize, want.len());
    for (i, (rank, row, id, class, _)) in rows.iter().enumerate() {
        assert_eq!(
            (*rank, id.clone(), *class),
            (i + 1, row.to_string(), Some(f.corpus.labels[*row]))
        );
    }
    // Target means given directly rank the same classes first.
    let means: Vec<f32> = f
        .target_means()
        .iter()
        .flatten()
        .map(|&x| x as f32)
        .collect();
    let tm = f.path("tm.npy");
    ptsel::npy::write_matrix(&tm, &means, 3, f.corpus.dim).unwrap();
    let sum2 = f.path("sum2.json");
    ok(&[
        "select",
        "--index",
        s(&f.index),
        "--target",
        s(&tm),
        "--target-means",
        "--classes",
        "3",
        "--out",
        s(&f.path("o2.csv")),
        "--summary",
        s(&sum2),
    ]);
    let mut again = selected_classes(&read_json(&sum2));
    again.sort_unstable();
    assert_eq!(again, chosen);
}

#[test]
fn same_inputs_give_byte_identical_outputs() {
    let f = fixture(true, "f16", &[]);
    let run = |tag: &str, method: &str, timing: bool| {
        let (out, sum) = (
            f.path(&format!("{tag}.csv")),
            f.path(&format!("{tag}.json")),
        );
        let mut args = vec![
            "--method",
            method,
            "--budget",
            "700",
            "--seed",
            "3",
            "--out",
            s(&out),
            "--summary",
            s(&sum),
        ];
        if timing {
            args.push("--timing");
        }
        f.select_ok(&args);
        (std::fs::read(&out).unwrap(), std::fs::read(&sum).unwrap())
    };
    for method in ["uot", "knn", "similarity", "random"] {
        let (a, b) = (
            run(&format!("{method}a"), method, false),
            run(&format!("{method}b"), method, false),
        );
        assert!(
            a.0 == b.0 && a.1 == b.1,
            "{method}: outputs differ between identical runs"
        );
        assert_eq!(a.0.iter().filter(|&&c| c == b'\n').count(), 701, "{method}");
    }
    for method in ["uot", "knn"] {
        let timed = run(&format!("{method}-timed"), method, true);
        assert_eq!(timed.0, run(&format!("{method}-untimed"), method, false).0);
        // The breakdown: each phase, and a total that covers them.
        let summary = read_json(&f.path(&format!("{method}-timed.json")));
        let t = summary["timing"].as_object().unwrap();
        let part = |k: &str| {
            t[k].as_f64()
                .unwrap_or_else(|| panic!("{method}: no {k} in {t:?}"))
        };
        let parts = ["open_s", "read_s", "select_s", "write_s"].map(part);
        assert!(parts.iter().all(|&p| p >= 0.0), "{method}: {t:?}");
        assert!(
            (parts.iter().sum::<f64>() - part("total_s")).abs() < 1e-6,
            "{method}: {t:?}"
        );
        // Every value a number; uot's solve is a part of its select time.
        assert!(t.values().all(serde_json::Value::is_f64), "{method}: {t:?}");
        if method == "uot" {
            assert!(part("solve_s") <= part("select_s"), "{t:?}");
        }
    }
}

#[test]
fn budget_fills_the_last_class_with_its_samples_closest_to_the_target() {
    let f = fixture(true, "f32", &[]);
    let (out, sum) = (f.path("sel.csv"), f.path("sum.json"));
    let counts: BTreeMap<u32, usize> = f.corpus.labels.iter().fold(BTreeMap::new(), |mut m, &l| {
        *m.entry(l).or_default() += 1;
        m
    });
    // Find the first class of the ranking, then ask for it plus 10 samples.
    f.select_ok(&[
        "--target-labels",
        s(&f.target_labels),
        "--classes",
        "2",
        "--out",
        s(&out),
        "--summary",
        s(&sum),
    ]);
    let order = selected_classes(&read_json(&sum));
    let first = counts[&(order[0] as u32)];
    f.select_ok(&[
        "--target-labels",
        s(&f.target_labels),
        "--budget",
        &(first + 10).to_string(),
        "--out",
        s(&out),
        "--summary",
        s(&sum),
    ]);
    let rows = read_csv(&out);
    assert_eq!(rows.len(), first + 10);
    assert_eq!(selected_classes(&read_json(&sum)), order);
    assert!(rows[..first].iter().all(|r| r.3 == Some(order[0] as u32)));
    let partial: BTreeSet<usize> = rows[first..].iter().map(|r| r.1).collect();
    // Oracle: cosine of each sample of the second class to its nearest target mean.
    let means = f.target_means();
    let score = |r: usize| {
        means
            .iter()
            .map(|m| cos(&widen(f.row(r)), m))
            .fold(f64::MIN, f64::max)
    };
    let second: Vec<usize> = (0..f.corpus.rows)
        .filter(|&r| f.corpus.labels[r] == order[1] as u32)
        .collect();
    let worst_in = partial.iter().map(|&r| score(r)).fold(f64::MAX, f64::min);
    let best_out = second
        .iter()
        .filter(|r| !partial.contains(r))
        .map(|&r| score(r))
        .fold(f64::MIN, f64::max);
    assert!(partial.iter().all(|r| second.contains(r)));
    assert!(
        worst_in >= best_out - 1e-6,
        "kept {worst_in} < left out {best_out}"
    );
}

#[test]
fn manifest_formats_agree() {
    let f = fixture(true, "f16", &[]);
    let (csv, jsonl, npy) = (f.path("s.csv"), f.path("s.jsonl"), f.path("s.npy"));
    for out in [&csv, &jsonl, &npy] {
        f.select_ok(&["--classes", "2", "--out", s(out)]);
    }
    f.select_ok(&[
        "--classes",
        "2",
        "--out",
        s(&f.path("forced.txt")),
        "--format",
        "jsonl",
    ]);
    let rows = read_csv(&csv);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), rows.len());
    for (l, r) in lines.iter().zip(&rows) {
        assert_eq!(
            (
                l["rank"].as_u64().unwrap() as usize,
                l["row"].as_u64().unwrap() as usize
            ),
            (r.0, r.1)
        );
        assert_eq!(
            (
                l["id"].as_str().unwrap(),
                l["class"].as_u64().map(|c| c as u32)
            ),
            (r.2.as_str(), r.3)
        );
        assert_eq!(l["score"].as_f64().unwrap(), r.4);
    }
    assert_eq!(
        std::fs::read(&jsonl).unwrap(),
        std::fs::read(f.path("forced.txt")).unwrap()
    );
    let bytes = std::fs::read(&npy).unwrap();
    let arr = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(arr.shape(), &[rows.len() as u64]);
    let vals: Vec<i64> = arr.into_vec().unwrap();
    assert_eq!(vals, rows.iter().map(|r| r.1 as i64).collect::<Vec<_>>());
}

#[test]
fn knn_matches_brute_force() {
    let f = fixture(true, "f32", &["--hnsw-m", "16", "--partitions"]);
    let out = f.path("knn.csv");
    let (k, budget) = (7usize, 90usize);
    let knn = |extra: &[&str], out: &Path| {
        let mut args = vec![
            "--method",
            "knn",
            "--per-target",
            "7",
            "--budget",
            "90",
            "--out",
            s(out),
        ];
        args.extend(extra);
        String::from_utf8_lossy(&f.select_ok(&args).stderr).to_string()
    };
    assert!(
        !knn(&["--exact"], &out).contains("note:"),
        "exact search needs no note"
    );
    // Through the HNSW graph (built by default): nearly the same rows.
    let approx = f.path("approx.csv");
    assert!(
        !knn(&[], &approx).contains("note:"),
        "the index has a graph"
    );
    let exact: BTreeSet<usize> = read_csv(&out).iter().map(|r| r.1).collect();
    // Rows of the manifest at `path` that exact search selected too.
    let found = |path: &Path| {
        read_csv(path)
            .iter()
            .filter(|r| exact.contains(&r.1))
            .count()
    };
    let graph = found(&approx);
    assert!(
        graph * 100 >= 90 * budget,
        "the graph found {graph} of the {budget} exact rows"
    );
    // Through the partitions (a third of the 126 scanned per target sample): nearly the same.
    let parts = f.path("parts.csv");
    assert!(!knn(&["--probes", "42"], &parts).contains("note:"));
    let scanned = found(&parts);
    assert!(
        scanned * 100 >= 90 * budget,
        "the partitions found {scanned} of the {budget} exact rows"
    );
    // Without a graph the exact fallback is reported.
    let flat = f.path("flat.ptsel");
    ok(&[
        "build",
        "--features",
        s(&f.path("f.npy")),
        "--out",
        s(&flat),
        "--no-hnsw",
        "-q",
    ]);
    // kNN selection of 10 rows from the index without a graph, to `out`, with `extra`.
    let flat_knn = |out: &Path, extra: &[&str]| {
        let mut args = vec!["select", "--index", s(&flat), "--target", s(&f.target)];
        args.extend(["--method", "knn", "--budget", "10", "--out", s(out)]);
        args.extend_from_slice(extra);
        ptsel(&args)
    };
    let res = flat_knn(&f.path("flat.csv"), &[]);
    assert!(
        String::from_utf8_lossy(&res.stderr).contains("no HNSW graph"),
        "the exact fallback must be reported"
    );
    // Partitions asked of an index without them: an error, nothing written.
    let res = flat_knn(&f.path("flat-probes.csv"), &["--probes", "4"]);
    assert_eq!(res.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&res.stderr).contains("no partitions"));
    assert!(!f.path("flat-probes.csv").exists());
    // Oracle: f64 cosines, top k per target sample, summed, top budget.
    let d = f.corpus.dim;
    let mut summed: BTreeMap<usize, f64> = BTreeMap::new();
    for q in f.target_data.chunks_exact(d) {
        let q = widen(q);
        let mut sims: Vec<(f64, usize)> = (0..f.corpus.rows)
            .map(|r| (cos(&widen(f.row(r)), &q), r))
            .collect();
        sims.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(sim, r) in &sims[..k] {
            *summed.entry(r).or_default() += sim;
        }
    }
    let mut ranked: Vec<(usize, f64)> = summed.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let rows = read_csv(&out);
    assert_eq!(rows.len(), budget);
    for (got, want) in rows.iter().zip(&ranked) {
        assert_eq!(got.1, want.0);
        assert!(
            (got.4 - want.1).abs() < 1e-4,
            "row {}: {} vs {}",
            got.1,
            got.4,
            want.1
        );
        assert_eq!(got.3, Some(f.corpus.labels[got.1]));
    }
}

#[test]
fn similarity_ranks_classes_by_cosine_to_the_mean_target_direction() {
    let f = fixture(true, "f16", &[]);
    let sum = f.path("sum.json");
    f.select_ok(&[
        "--method",
        "similarity",
        "--target-labels",
        s(&f.target_labels),
        "--classes",
        "5",
        "--out",
        s(&f.path("o.csv")),
        "--summary",
        s(&sum),
    ]);
    let summary = read_json(&sum);
    let d = f.corpus.dim;
    let mut centre = vec![0f64; d];
    for m in f.target_means() {
        let n = m.iter().map(|x| x * x).sum::<f64>().sqrt();
        centre.iter_mut().zip(&m).for_each(|(c, x)| *c += x / n);
    }
    let importance = summary["importance"].as_array().unwrap();
    for c in 0..40u32 {
        let rows: Vec<usize> = (0..f.corpus.rows)
            .filter(|&r| f.corpus.labels[r] == c)
            .collect();
        let mut mean = vec![0f64; d];
        for &r in &rows {
            mean.iter_mut()
                .zip(f.row(r))
                .for_each(|(m, &x)| *m += f64::from(x) / rows.len() as f64);
        }
        let got = importance[c as usize].as_f64().unwrap();
        assert!(
            (got - cos(&mean, &centre)).abs() < 1e-3,
            "class {c}: {got} vs {}",
            cos(&mean, &centre)
        );
    }
    // Selected: the five highest, in order (the mean direction blurs the three target classes,
    // which is why the paper transports to each target class instead).
    let mut want: Vec<u64> = (0..40).collect();
    let imp = |c: u64| importance[c as usize].as_f64().unwrap();
    want.sort_by(|&a, &b| imp(b).total_cmp(&imp(a)).then(a.cmp(&b)));
    want.truncate(5);
    assert_eq!(selected_classes(&summary), want);
}

#[test]
fn random_is_seeded_and_uniform_without_replacement() {
    let f = fixture(true, "f16", &[]);
    let rows_of = |seed: &str, extra: &[&str]| {
        let out = f.path(&format!("r{seed}{}.csv", extra.len()));
        let mut args = vec!["--method", "random", "--seed", seed, "--out", s(&out)];
        args.extend(extra);
        f.select_ok(&args);
        read_csv(&out).into_iter().map(|r| r.1).collect::<Vec<_>>()
    };
    let a = rows_of("1", &["--budget", "500"]);
    assert_eq!(a, rows_of("1", &["--budget", "500"]));
    assert_ne!(a, rows_of("2", &["--budget", "500"]));
    assert_eq!(a.iter().collect::<BTreeSet<_>>().len(), 500);
    let classes = rows_of("1", &["--classes", "4"]);
    let labels: BTreeSet<u32> = classes.iter().map(|&r| f.corpus.labels[r]).collect();
    assert_eq!(labels.len(), 4);
    assert_eq!(
        classes.len(),
        (0..f.corpus.rows)
            .filter(|r| labels.contains(&f.corpus.labels[*r]))
            .count()
    );
}

#[test]
fn exclude_near_drops_near_duplicates_of_the_test_set() {
    let f = fixture(true, "f16", &[]);
    // The test set holds 25 corpus rows of the target's classes, slightly perturbed.
    let dups: Vec<usize> = (0..f.corpus.rows)
        .filter(|&r| TRUE_CLASSES.contains(&(f.corpus.labels[r] as usize)))
        .step_by(7)
        .take(25)
        .collect();
    let test: Vec<f32> = dups
        .iter()
        .flat_map(|&r| f.row(r).iter().map(|x| x * 1.01 + 1e-4))
        .collect();
    let test_path = f.path("test.npy");
    ptsel::npy::write_matrix(&test_path, &test, dups.len(), f.corpus.dim).unwrap();
    let (out, sum) = (f.path("sel.csv"), f.path("sum.json"));
    let stderr = f
        .select_ok(&[
            "--target-labels",
            s(&f.target_labels),
            "--classes",
            "3",
            "--exclude-near",
            s(&test_path),
            "--out",
            s(&out),
            "--summary",
            s(&sum),
        ])
        .stderr;
    let summary = read_json(&sum);
    // Oracle: every corpus row at cosine >= 0.95 to a test row.
    let tests: Vec<Vec<f64>> = test.chunks_exact(f.corpus.dim).map(widen).collect();
    let near: BTreeSet<usize> = (0..f.corpus.rows)
        .filter(|&r| tests.iter().any(|t| cos(&widen(f.row(r)), t) >= 0.95))
        .collect();
    assert!(dups.iter().all(|r| near.contains(r)));
    assert_eq!(summary["excluded"].as_u64().unwrap() as usize, near.len());
    assert!(String::from_utf8_lossy(&stderr)
        .contains(&format!("{} near-duplicates excluded", near.len())));
    let rows: BTreeSet<usize> = read_csv(&out).iter().map(|r| r.1).collect();
    assert!(rows.is_disjoint(&near));
    let in_classes = (0..f.corpus.rows)
        .filter(|&r| TRUE_CLASSES.contains(&(f.corpus.labels[r] as usize)))
        .count();
    assert_eq!(
        rows.len(),
        in_classes
            - near
                .iter()
                .filter(|&&r| TRUE_CLASSES.contains(&(f.corpus.labels[r] as usize)))
                .count()
    );
}

#[test]
fn kmeans_pseudo_classes_serve_unlabelled_corpora() {
    let f = fixture(
        false,
        "f16",
        &["--kmeans", "40", "--kmeans-iters", "15", "--seed", "4"],
    );
    let (out, sum) = (f.path("sel.csv"), f.path("sum.json"));
    f.select_ok(&["--classes", "3", "--out", s(&out), "--summary", s(&sum)]);
    let summary = read_json(&sum);
    assert_eq!(summary["grouping"], "kmeans");
    // The three chosen clusters hold mostly the target's source classes.
    let rows = read_csv(&out);
    let hits = rows
        .iter()
        .filter(|r| TRUE_CLASSES.contains(&(f.corpus.labels[r.1] as usize)))
        .count();
    assert!(
        hits * 10 >= rows.len() * 7,
        "{hits} of {} selected rows come from the target's classes",
        rows.len()
    );
    // Seeded: a second build has identical k-means sections.
    let again = f.path("again.ptsel");
    ok(&[
        "build",
        "--features",
        s(&f.path("f.npy")),
        "--out",
        s(&again),
        "--kmeans",
        "40",
        "--kmeans-iters",
        "15",
        "--seed",
        "4",
        "-q",
        "--no-hnsw",
    ]);
    let (a, b) = (
        ptsel::Index::open(&f.index).unwrap(),
        ptsel::Index::open(&again).unwrap(),
    );
    for kind in [
        ptsel::format::SectionKind::KmeansCentroids,
        ptsel::format::SectionKind::KmeansAssign,
        ptsel::format::SectionKind::KmeansMeans,
    ] {
        assert_eq!(a.section_bytes(kind), b.section_bytes(kind));
    }
    assert_eq!(
        a.meta().params.get("kmeans_k").map(String::as_str),
        Some("40")
    );
    // knn needs no classes; an unlabelled corpus has no class column.
    f.select_ok(&[
        "--method",
        "knn",
        "--budget",
        "50",
        "--exact",
        "--out",
        s(&out),
    ]);
    assert!(read_csv(&out).iter().all(|r| r.3.is_none()));
    assert_indexes_without_stored_means_select_the_same(&f);
}

#[test]
fn kmeans_recovers_separated_clusters() {
    let corpus = synth::clustered(Spec {
        rows: 3000,
        dim: 16,
        classes: 12,
        spread: 0.1,
        seed: 3,
    });
    let dir = tempfile::tempdir().unwrap();
    let features = dir.path().join("f.npy");
    ptsel::npy::write_matrix(&features, &corpus.data, corpus.rows, corpus.dim).unwrap();
    let mut source = ptsel::npy::MatrixReader::open(&features).unwrap();
    let out = dir.path().join("k.ptsel");
    let params = ptsel::kmeans::KmeansParams {
        k: 12,
        iters: 30,
        seed: 1,
    };
    let opts = ptsel::BuildOptions {
        kmeans: Some(params),
        ..Default::default()
    };
    ptsel::build(&mut source, &out, opts, &|_, _, _| {}).unwrap();
    let index = ptsel::Index::open(&out).unwrap();
    let km = ptsel::kmeans::KmeansView::open(&index).unwrap().unwrap();
    assert_eq!(km.k, 12);
    // Purity: each cluster's majority class covers almost all of it.
    let mut agree = 0;
    for c in 0..12u32 {
        let mut votes: BTreeMap<u32, usize> = BTreeMap::new();
        for r in (0..corpus.rows).filter(|&r| km.assign[r] == c) {
            *votes.entry(corpus.labels[r]).or_default() += 1;
        }
        agree += votes.values().max().copied().unwrap_or(0);
    }
    assert!(
        agree * 100 >= corpus.rows * 95,
        "purity {agree}/{}",
        corpus.rows
    );
    for cen in km.centroids.chunks_exact(16) {
        assert!((cen.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
    }
    // The stored raw means are the means of each cluster's input features (f16-rounded
    // directions times their f32 norms, so within f16's rounding).
    let means = km.means.expect("the build stores the clusters' raw means");
    for c in 0..12usize {
        let rows: Vec<usize> = (0..corpus.rows)
            .filter(|&r| km.assign[r] == c as u32)
            .collect();
        for j in 0..16 {
            let want = rows
                .iter()
                .map(|&r| f64::from(corpus.data[r * 16 + j]))
                .sum::<f64>()
                / rows.len() as f64;
            let got = means[c * 16 + j];
            assert!(
                (got - want).abs() <= 2e-3 * (1.0 + want.abs()),
                "cluster {c} dim {j}: {got} vs {want}"
            );
        }
    }
}

/// An index written before the raw means were stored (its other k-means sections only) selects
/// exactly as `f`'s, which stores them: the means are computed from its rows the same way.
fn assert_indexes_without_stored_means_select_the_same(f: &Fixture) {
    use ptsel::format::SectionKind::{KmeansAssign, KmeansCentroids, KmeansMeans};
    let index = ptsel::Index::open(&f.index).unwrap();
    assert!(index.section_bytes(KmeansMeans).is_some());
    let old: Sections = [KmeansCentroids, KmeansAssign]
        .iter()
        .map(|&k| (k, index.section_bytes(k).unwrap().to_vec()))
        .collect();
    let legacy = f.path("legacy.ptsel");
    let mut source = ptsel::npy::MatrixReader::open(&f.path("f.npy")).unwrap();
    let opts = ptsel::BuildOptions {
        extensions: vec![Box::new(Raw(old))],
        ..Default::default()
    };
    ptsel::build(&mut source, &legacy, opts, &|_, _, _| {}).unwrap();
    assert!(ptsel::Index::open(&legacy)
        .unwrap()
        .section_bytes(KmeansMeans)
        .is_none());
    let run = |idx: &Path, tag: &str| {
        let (out, sum) = (
            f.path(&format!("{tag}.csv")),
            f.path(&format!("{tag}.json")),
        );
        let o = f.select_on(
            idx,
            &["--classes", "3", "--out", s(&out), "--summary", s(&sum)],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (
            std::fs::read(&out).unwrap(),
            read_json(&sum)["importance"].clone(),
        )
    };
    assert_eq!(run(&f.index, "stored"), run(&legacy, "computed"));
}

/// Sections as an extension returns them.
type Sections = Vec<(ptsel::format::SectionKind, Vec<u8>)>;

/// An extension writing whatever bytes it is given, to fake corrupt k-means sections.
struct Raw(Sections);

impl ptsel::builder::Extension for Raw {
    fn name(&self) -> &str {
        "raw"
    }
    fn build(&self, _: &ptsel::Index, _: ptsel::Step<'_>) -> ptsel::Result<Sections> {
        Ok(self.0.clone())
    }
}

#[test]
fn corrupt_kmeans_sections_are_errors_not_panics() {
    use ptsel::format::SectionKind::{KmeansAssign, KmeansCentroids, KmeansMeans};
    let dir = tempfile::tempdir().unwrap();
    let corpus = synth::clustered(Spec {
        rows: 100,
        dim: 8,
        classes: 4,
        spread: 0.5,
        seed: 1,
    });
    let features = dir.path().join("f.npy");
    ptsel::npy::write_matrix(&features, &corpus.data, 100, 8).unwrap();
    let t = dir.path().join("t.npy");
    ptsel::npy::write_matrix(&t, &corpus.data[..16], 2, 8).unwrap();
    let centroids = vec![0u8; 4 * 8 * 4];
    // Valid centroids and assignments (every row in cluster 0) beside the given means.
    let with_means = |means: Vec<u8>| -> Sections {
        vec![
            (KmeansCentroids, centroids.clone()),
            (KmeansAssign, vec![0u8; 400]),
            (KmeansMeans, means),
        ]
    };
    let cases: Vec<(&str, Sections)> = vec![
        (
            "assigned to cluster 4",
            vec![
                (KmeansCentroids, centroids.clone()),
                (KmeansAssign, bytemuck::cast_slice(&[4u32; 100]).to_vec()),
            ],
        ),
        (
            "whole number",
            vec![
                (KmeansCentroids, vec![0u8; 33]),
                (KmeansAssign, vec![0u8; 400]),
            ],
        ),
        (
            "one u32 per row",
            vec![
                (KmeansCentroids, centroids.clone()),
                (KmeansAssign, vec![0u8; 396]),
            ],
        ),
        ("one 8-d f64 mean per cluster", with_means(vec![0u8; 255])),
        (
            "means must be finite",
            with_means(bytemuck::cast_slice(&[f64::NAN; 32]).to_vec()),
        ),
        ("missing", vec![(KmeansCentroids, centroids)]),
    ];
    for (i, (want, sections)) in cases.into_iter().enumerate() {
        let out = dir.path().join(format!("bad{i}.ptsel"));
        let mut source = ptsel::npy::MatrixReader::open(&features).unwrap();
        let opts = ptsel::BuildOptions {
            extensions: vec![Box::new(Raw(sections))],
            ..Default::default()
        };
        ptsel::build(&mut source, &out, opts, &|_, _, _| {}).unwrap();
        let res = ptsel(&[
            "select",
            "--index",
            s(&out),
            "--target",
            s(&t),
            "--classes",
            "1",
            "--out",
            s(&dir.path().join("o.csv")),
        ]);
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(3), "case {i}: {err}");
        assert!(
            err.contains("corrupt") && err.contains(want),
            "case {i}: {err}"
        );
    }
}

#[test]
fn empty_classes_are_never_selected() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = synth::clustered(Spec {
        rows: 600,
        dim: 16,
        classes: 6,
        spread: 1.0,
        seed: 2,
    });
    // Classes 5, 6 and 7 get no samples: labels 0..=4 and 8.
    let labels: Vec<i64> = corpus
        .labels
        .iter()
        .map(|&l| if l == 5 { 8 } else { i64::from(l) })
        .collect();
    let (fp, lp, ip) = (
        dir.path().join("f.npy"),
        dir.path().join("l.npy"),
        dir.path().join("i.ptsel"),
    );
    ptsel::npy::write_matrix(&fp, &corpus.data, 600, 16).unwrap();
    ptsel::npy::write_vector(&lp, &labels).unwrap();
    ok(&[
        "build",
        "--features",
        s(&fp),
        "--labels",
        s(&lp),
        "--out",
        s(&ip),
        "-q",
        "--no-hnsw",
    ]);
    let (out, sum) = (dir.path().join("o.csv"), dir.path().join("s.json"));
    ok(&[
        "select",
        "--index",
        s(&ip),
        "--target",
        s(&fp),
        "--classes",
        "6",
        "--out",
        s(&out),
        "--summary",
        s(&sum),
    ]);
    let summary = read_json(&sum);
    let chosen = selected_classes(&summary);
    assert_eq!(chosen.len(), 6);
    assert!(chosen.iter().all(|c| ![5, 6, 7].contains(c)));
    assert_eq!(summary["importance"][6], 0.0);
    assert_eq!(summary["solver"]["source_classes"], 6);
    let res = ptsel(&[
        "select",
        "--index",
        s(&ip),
        "--target",
        s(&fp),
        "--classes",
        "8",
        "--out",
        s(&out),
    ]);
    assert_eq!(res.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&res.stderr).contains("only 6 non-empty classes"));
}

#[test]
fn bad_values_are_clear_errors_and_write_nothing() {
    let f = fixture(true, "f16", &[]);
    let unlabelled = fixture(false, "f16", &[]);
    let d = f.corpus.dim;
    let write = |name: &str, data: &[f32], dim: usize| {
        let p = f.path(name);
        ptsel::npy::write_matrix(&p, data, data.len() / dim, dim).unwrap();
        p
    };
    let wrong_dim = write("wd.npy", &f.target_data[..10 * d], d / 2);
    let mut nan = f.target_data[..4 * d].to_vec();
    nan[5] = f32::NAN;
    let nan = write("nan.npy", &nan, d);
    let short_labels = f.path("short.npy");
    ptsel::npy::write_vector(&short_labels, &[0i64, 1, 2]).unwrap();
    let out = f.path("never.csv");
    let o = s(&out);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--classes", "0", "--out", o], "at least 1"),
        (vec!["--budget", "0", "--out", o], "at least 1"),
        (
            vec!["--budget", "4001", "--out", o],
            "exceeds the 4000 selectable samples",
        ),
        (
            vec!["--method", "knn", "--budget", "4001", "--out", o],
            "exceeds the 4000",
        ),
        (
            vec!["--method", "random", "--budget", "4001", "--out", o],
            "exceeds the 4000",
        ),
        (
            vec!["--classes", "41", "--out", o],
            "only 40 non-empty classes",
        ),
        (vec!["--method", "knn", "--out", o], "needs a budget"),
        (
            vec!["--method", "knn", "--classes", "3", "--out", o],
            "not a number of classes",
        ),
        (
            vec![
                "--method",
                "knn",
                "--budget",
                "10",
                "--per-target",
                "0",
                "--out",
                o,
            ],
            "per_target = 0",
        ),
        (
            vec!["--target-labels", s(&short_labels), "--out", o],
            "3 target labels for the 60 rows",
        ),
        (
            vec!["--pseudo-classes", "--out", o],
            "no k-means pseudo-classes",
        ),
        (vec!["--eps", "0", "--out", o], "must be positive"),
        (vec!["--p-m=-1", "--out", o], "p_m must be positive"),
        // Infinite or subnormal parameters made NaN plans that read as converged.
        (
            vec!["--tau-target", "inf", "--out", o],
            "positive and finite",
        ),
        (vec!["--eps", "1e-320", "--out", o], "positive and finite"),
        (
            vec![
                "--method",
                "uot-knn",
                "--budget",
                "5",
                "--tau-source",
                "inf",
                "--out",
                o,
            ],
            "positive and finite",
        ),
        (
            vec![
                "--method",
                "uot-knn",
                "--budget",
                "5",
                "--p-m=-0.1",
                "--out",
                o,
            ],
            "p_m must be positive",
        ),
        (
            vec![
                "--method", "uot-knn", "--budget", "5", "--p-m", "inf", "--out", o,
            ],
            "p_m must be positive",
        ),
        (
            vec!["--exclude-near", s(&wrong_dim), "--out", o],
            "test features are 16-d",
        ),
        (
            vec![
                "--exclude-near",
                s(&f.target),
                "--exclude-threshold",
                "2",
                "--out",
                o,
            ],
            "[-1, 1]",
        ),
    ];
    for (args, want) in cases {
        let res = f.select(&args);
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: expected {want:?} in {err}");
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
    let other_target = |target: &Path, want: &str| {
        let res = ptsel(&[
            "select",
            "--index",
            s(&f.index),
            "--target",
            s(target),
            "--out",
            o,
        ]);
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(2), "{err}");
        assert!(
            err.contains(want) && err.contains(s(target)),
            "expected {want:?} naming the file in {err}"
        );
    };
    other_target(&wrong_dim, "target features are 16-d but the index is 32-d");
    other_target(&nan, "NaN");
    let res = unlabelled.select(&["--classes", "3", "--out", o]);
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the index has no labels") && err.contains("rebuild it with k-means"),
        "{err}"
    );
    let res = ptsel(&[
        "build",
        "--features",
        s(&f.path("f.npy")),
        "--out",
        s(&f.path("k0.ptsel")),
        "--kmeans",
        "0",
        "-q",
    ]);
    assert_eq!(res.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&res.stderr).contains("k-means k = 0"));
    assert!(!f.path("k0.ptsel").exists());
}

#[test]
fn demo_finds_the_targets_source_classes() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(&[
        "demo",
        "--dir",
        s(dir.path()),
        "--rows",
        "4000",
        "--dim",
        "32",
        "-q",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("the target's source classes ranked first: yes"),
        "{text}"
    );
    assert!(
        dir.path().join("demo-selection.csv").is_file()
            && dir.path().join("demo-summary.json").is_file()
    );
}

/// `demo --real` runs from any directory on the class means built into the binary, and on a
/// `--data` folder of the same layout (the shipped copy here).
#[test]
fn demo_real_names_the_chosen_imagenet_classes() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/classmeans-moco128");
    let elsewhere = tempfile::tempdir().unwrap();
    let builtin = Command::new(env!("CARGO_BIN_EXE_ptsel"))
        .current_dir(elsewhere.path())
        .args(["demo", "--real"])
        .output()
        .unwrap();
    assert!(
        builtin.status.success(),
        "{}",
        String::from_utf8_lossy(&builtin.stderr)
    );
    let text = String::from_utf8_lossy(&builtin.stdout);
    for target in [
        "cub", "cars", "aircraft", "dogs", "pets", "caltech", "dtd", "sun",
    ] {
        assert!(
            text.contains(&format!("\n{target}: ")),
            "{target} missing from {text}"
        );
    }
    assert!(text.contains("top-100 concepts: dog 100"), "{text}");
    let from_dir = ok(&["demo", "--real", "--data", s(&data)]);
    let strip_origin = |t: &str| t.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(
        strip_origin(&String::from_utf8_lossy(&from_dir.stdout)),
        strip_origin(&text)
    );
    let res = ptsel(&["demo", "--real", "--data", "/nonexistent-ptsel-data"]);
    assert!(!res.status.success());
    assert!(String::from_utf8_lossy(&res.stderr).contains("/nonexistent-ptsel-data/imagenet.npy"));
}
