//! `ptsel select --method uot-knn` and `--method uot --graph-k` end to end: through the graph,
//! exact search and an index without a graph, on a sharded corpus, with reverse edges, seeded
//! draws and near-duplicate exclusion; reruns byte-identical; bad input refused.

use ptsel::synth::{self, Spec};
use std::path::{Path, PathBuf};
mod common;
use common::{ok, ptsel, s};

const ROWS: usize = 4000;
const DIM: usize = 24;

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    target: PathBuf,
    test: PathBuf,
}

/// The fixture's corpus: 30 overlapping clusters.
fn corpus() -> synth::Corpus {
    synth::clustered(Spec {
        rows: ROWS,
        dim: DIM,
        classes: 30,
        spread: 1.0,
        seed: 11,
    })
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let corpus = corpus();
    let f = dir.join("f.npy");
    ptsel::npy::write_matrix(&f, &corpus.data, ROWS, DIM).unwrap();
    let l = dir.join("l.npy");
    ptsel::npy::write_labels(&l, &corpus.labels).unwrap();
    let common = [
        "--features",
        s(&f),
        "--labels",
        s(&l),
        "--hnsw-m",
        "8",
        "-q",
    ];
    for (name, extra) in [
        ("g.ptsel", vec![]),
        ("n.ptsel", vec!["--no-hnsw"]),
        ("sh", vec!["--shard-rows", "1500"]),
    ] {
        let out = dir.join(name);
        let mut args = vec!["build", "--out", s(&out)];
        args.extend(common);
        args.extend(extra);
        ok(&args);
    }
    let (t, _) = synth::target_like(&corpus, &[1, 7, 20], 30, 1.0, 4);
    let target = dir.join("t.npy");
    ptsel::npy::write_matrix(&target, &t, t.len() / DIM, DIM).unwrap();
    // Near-duplicates of a few corpus rows.
    let test = dir.join("test.npy");
    let rows: Vec<f32> = corpus.data[..5 * DIM].to_vec();
    ptsel::npy::write_matrix(&test, &rows, 5, DIM).unwrap();
    Fixture {
        _tmp: tmp,
        dir,
        target,
        test,
    }
}

/// Manifest lines without their score (the last column).
fn unscored(manifest: &str) -> Vec<String> {
    manifest
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string())
        .collect()
}

impl Fixture {
    /// `select --index DIR/index --target T --out out ARGS...`.
    fn select_args(&self, index: &str, out: &Path, args: &[&str]) -> Vec<String> {
        self.select_args_for(index, &self.target, out, args)
    }

    /// [`Fixture::select_args`] for another target.
    fn select_args_for(
        &self,
        index: &str,
        target: &Path,
        out: &Path,
        args: &[&str],
    ) -> Vec<String> {
        let index = self.dir.join(index);
        let mut all: Vec<String> = ["select", "--index", s(&index), "--target", s(target)]
            .iter()
            .map(|a| a.to_string())
            .collect();
        all.extend(["--out".to_string(), s(out).to_string()]);
        all.extend(args.iter().map(|a| a.to_string()));
        all
    }

    /// `select` on `g.ptsel` for `target` with `args` (the method among them), which must
    /// succeed: the manifest and the summary.
    fn run_for(&self, target: &Path, args: &[&str]) -> (String, serde_json::Value) {
        let (out, sum) = (self.dir.join("sel.csv"), self.dir.join("sum.json"));
        let mut all = vec!["--summary", s(&sum)];
        all.extend(args);
        let all = self.select_args_for("g.ptsel", target, &out, &all);
        ok(&all.iter().map(String::as_str).collect::<Vec<_>>());
        let summary = serde_json::from_str(&std::fs::read_to_string(&sum).unwrap()).unwrap();
        (std::fs::read_to_string(out).unwrap(), summary)
    }

    /// [`Fixture::select_args`], which must succeed.
    fn ok_select(&self, index: &str, out: &Path, args: &[&str]) {
        let all = self.select_args(index, out, args);
        ok(&all.iter().map(String::as_str).collect::<Vec<_>>());
    }

    /// `select --method uot-knn` on `index` with `args`: the manifest and the summary.
    fn run(&self, index: &str, args: &[&str]) -> (String, serde_json::Value) {
        let (out, sum) = (self.dir.join("sel.csv"), self.dir.join("sum.json"));
        let mut all = vec!["--summary", s(&sum), "--method", "uot-knn"];
        all.extend(args);
        self.ok_select(index, &out, &all);
        let summary = serde_json::from_str(&std::fs::read_to_string(&sum).unwrap()).unwrap();
        (std::fs::read_to_string(out).unwrap(), summary)
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.dir.join("bad.csv");
        let all = self.select_args("g.ptsel", &out, args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let o = ptsel(&all);
        assert!(!o.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&o.stderr).into_owned()
    }
}

fn rows(manifest: &str) -> Vec<String> {
    manifest
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().to_string())
        .collect()
}

#[test]
fn uot_knn_selects_through_every_search_and_on_shards() {
    let f = fixture();
    let (graph, sum) = f.run("g.ptsel", &["--budget", "200"]);
    assert_eq!(rows(&graph).len(), 200);
    let solver = &sum["solver"];
    assert_eq!(solver["converged"], true, "{sum}");
    assert_eq!(sum["parameters"]["per_target"], 64);
    assert_eq!(sum["parameters"]["uot"]["eps"], 0.1);
    assert!(solver["edges"].as_u64().unwrap() == 90 * 64, "{solver}");
    assert!(solver["touched_rows"].as_u64().unwrap() >= 200);
    for term in ["transport", "entropy", "source_kl", "target_kl", "total"] {
        assert!(solver["objective"][term].is_f64(), "{term}");
    }
    assert!(solver["tail_median"].is_f64());
    // At eps 0.1 the plan decays well within 64 neighbours: no note. At eps 1 (the class-level
    // value) the sample-level plan is still flat where the graph ends, and the note says so.
    let flat = |s: &serde_json::Value| s["solver"]["kth_kernel_median"].as_f64().unwrap();
    assert!(flat(&sum) < 0.1, "{sum}");
    assert!(!sum["notes"].to_string().contains("cut off"), "{sum}");
    let (_, diffuse) = f.run("g.ptsel", &["--budget", "200", "--eps", "1"]);
    assert!(
        flat(&diffuse) > flat(&sum) && flat(&diffuse) > 0.1,
        "{diffuse}"
    );
    assert!(
        diffuse["notes"].to_string().contains("cut off"),
        "{diffuse}"
    );
    // Reruns are byte-identical.
    assert_eq!(f.run("g.ptsel", &["--budget", "200"]), (graph.clone(), sum));
    // Exact search, an index without a graph (exact, with a note), and shards: the same rows.
    let (exact, _) = f.run("g.ptsel", &["--budget", "200", "--exact"]);
    let (nograph, s2) = f.run("n.ptsel", &["--budget", "200"]);
    assert_eq!(rows(&exact), rows(&nograph));
    assert!(s2["notes"].to_string().contains("exact search"), "{s2}");
    let (shards, _) = f.run("sh", &["--budget", "200", "--exact"]);
    assert_eq!(exact, shards);
    let (shard_graph, s3) = f.run("sh", &["--budget", "200"]);
    assert_eq!(rows(&shard_graph).len(), 200);
    assert_eq!(s3["solver"]["converged"], true);
    // The graph's answer is close to the exact one.
    let common = rows(&graph)
        .iter()
        .filter(|r| rows(&exact).contains(r))
        .count();
    assert!(common >= 180, "{common} of 200");
}

#[test]
fn uot_knn_options_reverse_edges_draws_and_exclusion() {
    let f = fixture();
    let base = ["--budget", "100", "--exact", "--per-target", "16"];
    let (_, plain) = f.run("g.ptsel", &base);
    let (_, rev) = f.run("g.ptsel", &[&base[..], &["--reverse-k", "5"]].concat());
    let edges = |v: &serde_json::Value| v["solver"]["edges"].as_u64().unwrap();
    assert!(edges(&rev) > edges(&plain));
    assert_eq!(rev["parameters"]["reverse_k"], 5);
    let drawn = |seed: &str| {
        let (m, _) = f.run(
            "g.ptsel",
            &[&base[..], &["--draw", "sample", "--seed", seed]].concat(),
        );
        rows(&m)
    };
    let (a, b, c) = (drawn("1"), drawn("1"), drawn("2"));
    assert_eq!(a, b);
    assert_ne!(a, c);
    let mut distinct = a.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 100);
    // The cost is 1 - cos: targets so long that their squared norms overflow f32 select the
    // same rows, through the graph and exactly.
    let t = ptsel::npy::read_matrix(&f.target).unwrap();
    let long = f.dir.join("long.npy");
    let scaled: Vec<f32> = t.data.iter().map(|v| v * 1e20).collect();
    ptsel::npy::write_matrix(&long, &scaled, t.rows, DIM).unwrap();
    for search in [&["--exact"][..], &[]] {
        let args = [&["--method", "uot-knn", "--budget", "100"][..], search].concat();
        let (want, _) = f.run_for(&f.target, &args);
        assert_eq!(rows(&f.run_for(&long, &args).0), rows(&want), "{search:?}");
    }
    let (m, sum) = f.run(
        "g.ptsel",
        &[&base[..], &["--exclude-near", s(&f.test)]].concat(),
    );
    assert!(sum["excluded"].as_u64().unwrap() >= 5);
    for r in 0..5 {
        assert!(!rows(&m).contains(&r.to_string()), "row {r} excluded");
    }
}

#[test]
fn class_level_graph_k_over_all_classes_is_the_dense_selection() {
    let f = fixture();
    let sel = |extra: &[&str]| {
        let out = f.dir.join("c.csv");
        f.ok_select("g.ptsel", &out, &[&["--classes", "5"], extra].concat());
        std::fs::read_to_string(out).unwrap()
    };
    let dense = sel(&[]);
    // The complete graph: the same classes and rows (scores within rounding).
    assert!(unscored(&sel(&["--graph-k", "30"])) == unscored(&dense));
    let few = sel(&["--graph-k", "3"]);
    assert_eq!(few.lines().count(), dense.lines().count());
}

#[test]
fn bad_values_are_refused_with_the_argument_named() {
    let f = fixture();
    let cases: [(&[&str], &str); 6] = [
        (&["--graph-k", "0"], "graph_k"),
        (&["--graph-k", "31"], "graph_k"),
        (
            &["--method", "uot-knn", "--budget", "10", "--per-target", "0"],
            "per_target",
        ),
        (
            &[
                "--method",
                "uot-knn",
                "--budget",
                "3999",
                "--per-target",
                "2",
            ],
            "budget",
        ),
        (&["--method", "uot-knn", "--classes", "3"], "budget"),
        (&["--method", "uot-knn"], "budget"),
    ];
    for (args, want) in cases {
        let err = f.fails(args);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let err = f.fails(&["--method", "uot-knn", "--budget", "10", "--reverse-k", "0"]);
    assert!(err.contains("reverse_k"), "{err}");
    let err = f.fails(&["--method", "knn", "--budget", "10", "--graph-k", "3"]);
    assert!(err.contains("graph_k"), "{err}");
    let err = f.fails(&["--method", "knn", "--budget", "10", "--draw", "sample"]);
    assert!(err.contains("uot-knn"), "{err}");
    let err = f.fails(&["--method", "knn", "--budget", "10", "--dedup-greedy", "0.9"]);
    assert!(err.contains("uot-knn"), "{err}");
    let err = f.fails(&["--method", "uot-knn", "--budget", "10", "--dedup-kde", "1"]);
    assert!(err.contains("cosine in [-1, 1)"), "{err}");
}

/// The unit-norm feature rows of the fixture's corpus.
fn unit_rows(f: &Fixture) -> Vec<Vec<f32>> {
    let m = ptsel::npy::read_matrix(&f.dir.join("f.npy")).unwrap();
    m.data
        .chunks_exact(m.dim)
        .map(|r| {
            let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
            r.iter().map(|x| x / n).collect()
        })
        .collect()
}

#[test]
fn deduplication_spreads_the_selection_and_is_counted() {
    let f = fixture();
    let (plain, _) = f.run("g.ptsel", &["--budget", "150"]);
    // Greedy: no two kept rows within cosine 0.8 of each other, the skipped ones counted.
    let (greedy, s) = f.run("g.ptsel", &["--budget", "150", "--dedup-greedy", "0.8"]);
    let skipped = s["solver"]["greedy_skipped"].as_u64().unwrap();
    assert!(skipped > 0, "{s}");
    let units = unit_rows(&f);
    let kept: Vec<usize> = rows(&greedy).iter().map(|r| r.parse().unwrap()).collect();
    assert_eq!(kept.len(), 150);
    for (a, &i) in kept.iter().enumerate() {
        for &j in &kept[..a] {
            let c: f32 = units[i].iter().zip(&units[j]).map(|(x, y)| x * y).sum();
            assert!(c < 0.8 + 1e-3, "rows {i} and {j}: cosine {c}");
        }
    }
    // The same rows as the plain ranking, with the skipped ones taken out.
    let plain_rows = rows(&plain);
    assert_eq!(rows(&greedy)[0], plain_rows[0]);
    // Density: rows in dense neighbourhoods lose mass, so the ranking changes.
    let (kde, s) = f.run("g.ptsel", &["--budget", "150", "--dedup-kde", "0.8"]);
    assert!(s["solver"]["kde_downweighted"].as_u64().unwrap() > 0, "{s}");
    assert_ne!(rows(&kde), plain_rows);
    assert_eq!(
        f.run("g.ptsel", &["--budget", "150", "--dedup-kde", "0.8"])
            .0,
        kde
    );
}

/// A labelled target gives each class column masses `w_c / n_c` and its share of the budget: a
/// class with a tenth of the samples still gets half the rows (or a quarter with weights 3:1);
/// bad weights are refused naming the file.
#[test]
fn labelled_targets_get_per_class_quotas_and_weights() {
    let f = fixture();
    let corpus = corpus();
    // 60 samples around corpus class 1 (label 0), 6 around class 7 (label 1).
    let (t, l) = synth::target_like(&corpus, &[1, 7], 60, 1.0, 5);
    let keep: Vec<usize> = (0..l.len()).filter(|&i| l[i] == 0 || i < 66).collect();
    let t: Vec<f32> = keep
        .iter()
        .flat_map(|&i| t[i * DIM..(i + 1) * DIM].to_vec())
        .collect();
    let l: Vec<u32> = keep.iter().map(|&i| l[i]).collect();
    assert_eq!((l.len(), l.iter().filter(|&&x| x == 1).count()), (66, 6));
    let (target, labels) = (f.dir.join("imb.npy"), f.dir.join("imb-l.npy"));
    ptsel::npy::write_matrix(&target, &t, l.len(), DIM).unwrap();
    ptsel::npy::write_labels(&labels, &l).unwrap();
    let weights = f.dir.join("w.npy");
    ptsel::npy::write_matrix(&weights, &[3.0f32, 1.0], 2, 1).unwrap();
    let flat = f.dir.join("w1.npy");
    ptsel::npy::write_vector(&flat, &[3.0f32, 1.0]).unwrap();
    let index = f.dir.join("g.ptsel");
    let run = |extra: &[&str]| {
        let mut args = vec!["--method", "uot-knn", "--budget", "100", "--exact"];
        args.extend(extra);
        let (manifest, sum) = f.run_for(&target, &args);
        let near_7 = rows(&manifest)
            .iter()
            .filter(|r| corpus.labels[r.parse::<usize>().unwrap()] == 7)
            .count();
        (near_7, sum)
    };
    let (plain, _) = run(&[]);
    let (equal, sum) = run(&["--target-labels", s(&labels)]);
    let (weighted, wsum) = run(&["--target-labels", s(&labels), "--target-weights", s(&flat)]);
    // Measured: 3, 41 and 23 rows of the small class's source (its quota rows also come from
    // overlapping clusters).
    assert!(
        plain < 10,
        "unlabelled: {plain} of 100 rows near the small class"
    );
    assert!(
        equal >= 35,
        "equal quotas: {equal} of 100 near the small class"
    );
    assert!(
        (15..=25).contains(&weighted) && weighted < equal,
        "weights 3:1: {weighted} near the small class"
    );
    assert!(sum["notes"].to_string().contains("0: 50, 1: 50"), "{sum}");
    // uot-knn with equal quotas, and `extra`.
    let labelled = |extra: &[&str]| {
        let base = [
            "--method",
            "uot-knn",
            "--budget",
            "100",
            "--exact",
            "--target-labels",
            s(&labels),
        ];
        f.run_for(&target, &[&base[..], extra].concat())
    };
    // After greedy de-duplication drops rows, the note counts the quota rows kept.
    let (kept, dsum) = labelled(&["--dedup-greedy", "0.3"]);
    let kept = rows(&kept).len();
    let note = dsum["notes"].to_string();
    let counts = note
        .split("(label: rows): ")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no quota note in {note}"));
    let noted: usize = counts
        .split(", ")
        .map(|p| p.split(": ").nth(1).unwrap().parse::<usize>().unwrap())
        .sum();
    assert!(
        kept < 100 && noted <= kept,
        "{kept} rows kept, note: {counts}"
    );
    // A drawn sample keeps the quotas, is seeded, and is not the top of the plan.
    let drawn = |seed: &str| labelled(&["--draw", "sample", "--seed", seed]);
    let ((a, asum), (b, _), (c, _)) = (drawn("3"), drawn("3"), drawn("4"));
    assert!(asum["notes"].to_string().contains("0: 50, 1: 50"), "{asum}");
    assert_eq!(a, b);
    assert_ne!(unscored(&a), unscored(&c));
    let top = labelled(&[]).0;
    assert_ne!(rows(&a), rows(&top));
    assert!(wsum["notes"].to_string().contains("0: 75, 1: 25"), "{wsum}");
    assert_eq!(wsum["parameters"]["target_weights"], s(&flat));
    // Bad weights: a 2-D array, a zero weight, too few weights, another method.
    let base = ["--budget", "100", "--target-labels", s(&labels)];
    let bad = |w: &Path, method: &str| {
        let out = f.dir.join("bad.csv");
        let mut args = vec![
            "select",
            "--index",
            s(&index),
            "--target",
            s(&target),
            "--out",
            s(&out),
        ];
        args.extend(base);
        args.extend(["--target-weights", s(w), "--method", method]);
        let o = ptsel(&args);
        assert!(!o.status.success() && !out.exists(), "{w:?} {method}");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    assert!(bad(&weights, "uot-knn").contains("1-D"));
    let zero = f.dir.join("w0.npy");
    ptsel::npy::write_vector(&zero, &[1.0f32, 0.0]).unwrap();
    assert!(bad(&zero, "uot-knn").contains("weight 0"));
    let short = f.dir.join("ws.npy");
    ptsel::npy::write_vector(&short, &[1.0f32]).unwrap();
    assert!(bad(&short, "uot-knn").contains("label 1"));
    assert!(bad(&flat, "similarity").contains("uot and uot-knn"));
}

/// Class level, a labelled target is one unit per class of mass `w_c` (scaled to one per class):
/// the weights decide which source class ranks first, by the dense plan and on the graph.
#[test]
fn class_weights_move_the_class_level_ranking() {
    let f = fixture();
    let corpus = corpus();
    // As many samples around corpus class 1 (label 0) as around class 7 (label 1).
    let (t, l) = synth::target_like(&corpus, &[1, 7], 30, 1.0, 6);
    let (target, labels) = (f.dir.join("cw.npy"), f.dir.join("cw-l.npy"));
    ptsel::npy::write_matrix(&target, &t, l.len(), DIM).unwrap();
    ptsel::npy::write_labels(&labels, &l).unwrap();
    let first = |weights: [f32; 2], graph: &[&str]| {
        let w = f.dir.join("cw-w.npy");
        ptsel::npy::write_vector(&w, &weights).unwrap();
        let mut args = vec![
            "--method",
            "uot",
            "--classes",
            "1",
            "--target-labels",
            s(&labels),
            "--target-weights",
            s(&w),
        ];
        args.extend(graph);
        let (_, sum) = f.run_for(&target, &args);
        sum["selected_classes"][0]["class"].as_u64().unwrap()
    };
    for graph in [&[][..], &["--graph-k", "3"]] {
        assert_eq!(first([3.0, 1.0], graph), 1, "{graph:?}");
        assert_eq!(first([1.0, 3.0], graph), 7, "{graph:?}");
    }
}
