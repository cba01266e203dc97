//! Partitioned search: recall against exact search, exact scores, batch = one query at a time,
//! determinism, damaged sections rejected with errors, corpora of shards, and `ptsel build
//! --partitions` / `ptsel partition` / `search --probes` / `bench --probes` through the binary.

use ptsel::format::SectionKind;
use ptsel::partitions::{CodeKind, Params, Partitions};
use ptsel::score::{cpu::CpuScorer, Scorer};
use ptsel::synth::{clustered, Spec};
use ptsel::{BuildOptions, DType, Engine, ErrorKind, Index, Metric, SearchOpts};
use std::path::{Path, PathBuf};
mod common;
use common::{ptsel, s};

const ROWS: usize = 3000;
const DIM: usize = 32;
const K: usize = 10;

fn data(rows: usize, seed: u64) -> Vec<f32> {
    clustered(Spec {
        rows,
        dim: DIM,
        classes: 30,
        spread: 1.0,
        seed,
    })
    .data
}

/// A build step that appends the sections it holds as they are.
struct Raw(Vec<(SectionKind, Vec<u8>)>);

impl ptsel::builder::Extension for Raw {
    fn name(&self) -> &str {
        "raw"
    }
    fn build(&self, _: &Index, _: ptsel::Step<'_>) -> ptsel::Result<Vec<(SectionKind, Vec<u8>)>> {
        Ok(self.0.clone())
    }
}

/// An index of `rows` at `dir/name` built with `opts` (features written beside it).
fn index_with(dir: &Path, name: &str, rows: &[f32], opts: BuildOptions) -> PathBuf {
    let features = dir.join(format!("{name}.npy"));
    ptsel::npy::write_matrix(&features, rows, rows.len() / DIM, DIM).unwrap();
    let out = dir.join(name);
    let mut source = ptsel::npy::MatrixReader::open(&features).unwrap();
    ptsel::build(&mut source, &out, opts, &|_, _, _| {}).unwrap();
    out
}

/// Both kinds of codes.
const CODES: [CodeKind; 2] = [CodeKind::Sq8, CodeKind::Pq4];

/// An index with partitions and no graph.
fn partitioned(
    dir: &Path,
    name: &str,
    metric: Metric,
    partitions: Option<usize>,
    codes: CodeKind,
) -> PathBuf {
    let opts = BuildOptions {
        dtype: DType::F16,
        metric,
        force: true,
        hnsw: None,
        partitions: Some(Params {
            partitions,
            seed: 3,
            codes,
        }),
        ..BuildOptions::default()
    };
    index_with(dir, name, &data(ROWS, 1), opts)
}

fn recall(found: &[u32], truth: &[u32]) -> f64 {
    let hits: usize = found
        .chunks(K)
        .zip(truth.chunks(K))
        .map(|(f, t)| f.iter().filter(|i| t.contains(i)).count())
        .sum();
    hits as f64 / truth.len() as f64
}

#[test]
fn recall_rises_with_probes_to_exact_and_scores_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let q = data(100, 99);
    for (metric, codes) in [Metric::Cos, Metric::Ip, Metric::L2]
        .into_iter()
        .flat_map(|m| CODES.map(|c| (m, c)))
    {
        let name = format!("{}-{}.ptsel", metric.name(), codes.name());
        let path = partitioned(dir.path(), &name, metric, None, codes);
        let index = Index::open(&path).unwrap();
        let parts = Partitions::open(&index).unwrap().unwrap();
        assert_eq!(parts.header().codes, codes);
        let p = parts.header().partitions as usize;
        // 2 sqrt(3000) partitions.
        assert_eq!(p, 110, "{metric:?}");
        let exact = CpuScorer::new(&index).top_k(&q, K).unwrap();
        let mut last = 0.0;
        for probes in [1, 4, 16, p] {
            let nn = parts.search_batch(&q, K, 64, probes).unwrap();
            let r = recall(&nn.ids, &exact.ids);
            assert!(
                r >= last - 0.01,
                "{metric:?} probes {probes}: {r} after {last}"
            );
            last = r;
            // Scores are those of exact search for the rows returned, best first, no repeats.
            for (qi, (ids, scores)) in nn.ids.chunks(K).zip(nn.scores.chunks(K)).enumerate() {
                let mut seen = ids.to_vec();
                seen.sort_unstable();
                seen.dedup();
                assert_eq!(seen.len(), K, "{metric:?}: repeated rows {ids:?}");
                let (want, _) = exact_score(&index, &q[qi * DIM..(qi + 1) * DIM], ids);
                for (s, w) in scores.iter().zip(&want) {
                    assert!(
                        (s - w).abs() <= 1e-3 * (1.0 + w.abs()),
                        "{metric:?}: {s} vs {w}"
                    );
                }
                let ordered = scores.windows(2).all(|w| match metric {
                    Metric::L2 => w[0] <= w[1],
                    _ => w[0] >= w[1],
                });
                assert!(ordered, "{metric:?}: {scores:?}");
            }
        }
        // All partitions scanned: exact up to the codes' choice of the 64 re-ranked (4-bit
        // codes are coarser than 8-bit ones), and exact with a deeper re-rank.
        let floor = match codes {
            CodeKind::Sq8 => 0.99,
            CodeKind::Pq4 => 0.97,
        };
        assert!(
            last >= floor,
            "{metric:?} {codes:?}: recall {last} with every partition"
        );
        let deep = recall(&parts.search_batch(&q, K, 400, p).unwrap().ids, &exact.ids);
        assert!(
            deep >= 0.998,
            "{metric:?} {codes:?}: recall {deep} re-ranking 400"
        );
        // This data's 30 classes overlap (the graph's case, not the partitions'): a third of
        // the partitions holds 90-95% of the neighbours, one partition 20-25%.
        let one = parts.search_batch(&q, K, 64, 1).unwrap();
        assert!(
            recall(&one.ids, &exact.ids) >= 0.15,
            "{metric:?}: one partition"
        );
        let third = parts.search_batch(&q, K, 64, p / 3).unwrap();
        assert!(
            recall(&third.ids, &exact.ids) >= 0.85,
            "{metric:?}: a third"
        );
    }
}

/// Exact scores of `rows` for the raw query `q` (in the metric's unit) and the query itself.
fn exact_score(index: &Index, q: &[f32], rows: &[u32]) -> (Vec<f32>, Vec<f32>) {
    let nn = CpuScorer::new(index).top_k(q, index.rows()).unwrap();
    let want = rows
        .iter()
        .map(|r| nn.scores[nn.ids.iter().position(|i| i == r).unwrap()])
        .collect();
    (want, q.to_vec())
}

#[test]
fn batches_answer_as_single_queries_and_builds_are_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    for codes in CODES {
        let a = partitioned(dir.path(), "a.ptsel", Metric::L2, Some(40), codes);
        // The same section whatever the thread count.
        let one_thread = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let b =
            one_thread.install(|| partitioned(dir.path(), "b.ptsel", Metric::L2, Some(40), codes));
        let (ia, ib) = (Index::open(&a).unwrap(), Index::open(&b).unwrap());
        let sa = ia.section_bytes(SectionKind::Partitions).unwrap();
        assert_eq!(sa, ib.section_bytes(SectionKind::Partitions).unwrap());
        let parts = Partitions::open(&ia).unwrap().unwrap();
        // 21 queries: two whole blocks and a part of one.
        let q = data(21, 5);
        let batch = parts.search_batch(&q, K, 30, 3).unwrap();
        for (i, row) in q.chunks_exact(DIM).enumerate() {
            let (ids, scores) = parts.search(row, K, 30, 3).unwrap();
            assert_eq!(ids, batch.ids_of(i), "{codes:?} query {i}");
            assert_eq!(scores, batch.scores_of(i), "{codes:?} query {i}");
        }
    }
}

#[test]
fn partitions_too_small_for_k_are_topped_up_from_the_next_ones() {
    let dir = tempfile::tempdir().unwrap();
    let q = data(5, 7);
    for codes in CODES {
        // About 2 rows a partition: one partition cannot hold k = 10.
        let path = partitioned(dir.path(), "tiny.ptsel", Metric::Cos, Some(1500), codes);
        let index = Index::open(&path).unwrap();
        let parts = Partitions::open(&index).unwrap().unwrap();
        let nn = parts.search_batch(&q, K, K, 1).unwrap();
        for ids in nn.ids.chunks(K) {
            let mut seen = ids.to_vec();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), K, "{codes:?}: {ids:?}");
            assert!(ids.iter().all(|&i| (i as usize) < ROWS));
        }
    }
    let path = dir.path().join("tiny.ptsel");
    let index = Index::open(&path).unwrap();
    let parts = Partitions::open(&index).unwrap().unwrap();
    assert!(parts.search(&q[..DIM], 0, 10, 1).is_err());
    assert!(parts.search(&q[..DIM], ROWS + 1, 10, 1).is_err());
    assert!(parts.search(&q[..DIM - 1], K, 10, 1).is_err());
}

/// The section of a freshly built index, changed by `edit`, in an index of the same rows.
fn with_section(dir: &Path, name: &str, bytes: Vec<u8>) -> PathBuf {
    let opts = BuildOptions {
        dtype: DType::F16,
        force: true,
        hnsw: None,
        extensions: vec![Box::new(Raw(vec![(SectionKind::Partitions, bytes)]))],
        ..BuildOptions::default()
    };
    index_with(dir, name, &data(ROWS, 1), opts)
}

#[test]
fn damaged_sections_are_corrupt_errors_not_panics() {
    for codes in CODES {
        damaged_sections_are_corrupt_errors(codes);
    }
}

fn damaged_sections_are_corrupt_errors(codes: CodeKind) {
    let dir = tempfile::tempdir().unwrap();
    let good = partitioned(dir.path(), "good.ptsel", Metric::Cos, Some(50), codes);
    let bytes = Index::open(&good)
        .unwrap()
        .section_bytes(SectionKind::Partitions)
        .unwrap()
        .to_vec();
    let p = 50usize;
    // Region starts, as the module's layout lays them out for cos (no norms).
    let centroids = 64;
    let offsets = centroids + p.div_ceil(64) * 64 * DIM * 4;
    let order = (offsets + (p + 1) * 4).next_multiple_of(64);
    // pq4: 16 codebooks of 16 points of 2 f32, then the block starts.
    let block_starts = (order + ROWS * 4).next_multiple_of(64) + DIM / 2 * 16 * 2 * 4;
    let put = |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    type Edit = Box<dyn Fn(&mut Vec<u8>)>;
    let mut cases: Vec<(&str, Edit)> = vec![
        ("magic", Box::new(|b| b[0] = b'X')),
        ("version", Box::new(move |b| put(b, 8, 9))),
        ("metric", Box::new(move |b| put(b, 12, 2))),
        ("rows", Box::new(move |b| put(b, 16, DIM as u32 + 1))),
        ("partitions for", Box::new(move |b| put(b, 20, 0))),
        ("code kind", Box::new(move |b| put(b, 40, 7))),
        ("bytes", Box::new(|b| b.truncate(b.len() - 64))),
        ("partition", Box::new(move |b| put(b, offsets + 4, 4000))),
        ("partition", Box::new(move |b| put(b, offsets + 8, 1))),
        (
            "no row",
            Box::new(move |b| {
                for i in 0..ROWS {
                    put(b, order + 4 * i, 7000);
                }
            }),
        ),
        (
            "two positions",
            Box::new(move |b| {
                for i in 0..ROWS {
                    put(b, order + 4 * i, 5);
                }
            }),
        ),
    ];
    match codes {
        CodeKind::Sq8 => {
            // Every partition empty: a search cannot find k rows.
            cases.push((
                "fewer than k",
                Box::new(move |b| {
                    for j in 0..=p {
                        put(b, offsets + 4 * j, 0);
                    }
                }),
            ));
            cases.push(("bytes", Box::new(move |b| put(b, 20, 200))));
            cases.push(("code blocks", Box::new(move |b| put(b, 48, 1))));
        }
        CodeKind::Pq4 => {
            // A version 1 section holds sq8 codes only.
            cases.push((
                "code kind 2 in layout version 1",
                Box::new(move |b| put(b, 8, 1)),
            ));
            // ROWS / 32 blocks at the least, one more a partition at most.
            cases.push(("code blocks", Box::new(move |b| put(b, 48, 90))));
            cases.push(("code blocks", Box::new(move |b| put(b, 48, 200))));
            cases.push(("bytes", Box::new(move |b| put(b, 48, 120))));
            cases.push((
                "range of code blocks",
                Box::new(move |b| put(b, block_starts + 8, 1)),
            ));
            cases.push((
                "range of code blocks",
                Box::new(move |b| put(b, block_starts + 4 * p, 9999)),
            ));
            // Every partition empty, consistently: a search cannot find k rows.
            cases.push((
                "fewer than k",
                Box::new(move |b| {
                    for j in 0..=p {
                        put(b, offsets + 4 * j, 0);
                        put(b, block_starts + 4 * j, 0);
                    }
                }),
            ));
        }
    }
    let q = data(4, 3);
    for (i, (want, edit)) in cases.iter().enumerate() {
        let mut b = bytes.clone();
        edit(&mut b);
        let path = with_section(dir.path(), &format!("bad{i}.ptsel"), b);
        let index = Index::open(&path).unwrap();
        let err = match Partitions::open(&index) {
            Err(e) => e,
            Ok(parts) => {
                let parts = parts.unwrap();
                // Every partition scanned, so a damaged one is met whatever the query.
                parts.search_batch(&q, K, K, 50).unwrap_err()
            }
        };
        assert_eq!(
            err.kind(),
            ErrorKind::Corrupt,
            "{codes:?} case {i} ({want}): {err}"
        );
        assert!(err.to_string().contains(want), "{codes:?} case {i}: {err}");
        assert!(err.to_string().contains("partitions"), "case {i}: {err}");
    }
    // Single-byte changes anywhere in the section: an answer or a corrupt error, never a panic.
    let index_of = |b: Vec<u8>, i: usize| with_section(dir.path(), &format!("flip{i}.ptsel"), b);
    for i in 0..60 {
        let at = (i * 7919 * 131) % bytes.len();
        let mut b = bytes.clone();
        b[at] ^= 0x5a;
        let index = Index::open(index_of(b, i)).unwrap();
        let res = Partitions::open(&index).and_then(|p| p.unwrap().search_batch(&q, K, K, 50));
        if let Err(e) = res {
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{codes:?} byte {at}: {e}");
        }
    }
}

#[test]
fn engine_searches_partitions_of_a_corpus_and_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let rows = data(ROWS, 1);
    let features = dir.path().join("f.npy");
    ptsel::npy::write_matrix(&features, &rows, ROWS, DIM).unwrap();
    let corpus = dir.path().join("corpus");
    let opts = BuildOptions {
        force: true,
        partitions: Some(Params::default()),
        ..BuildOptions::default()
    };
    ptsel::corpus::build(&features, 1000, &corpus, opts, &|_, _, _| {}).unwrap();
    let engine = Engine::open(&corpus).unwrap();
    let q = data(50, 8);
    let exact = engine
        .search(
            &q,
            K,
            &SearchOpts {
                exact: true,
                ..Default::default()
            },
        )
        .unwrap();
    let probes = SearchOpts {
        probes: Some(32),
        ..Default::default()
    };
    let nn = engine.search(&q, K, &probes).unwrap();
    assert!(
        recall(&nn.ids, &exact.ids) >= 0.9,
        "{}",
        recall(&nn.ids, &exact.ids)
    );
    let one = engine.search(&q[..DIM], K, &probes).unwrap();
    assert_eq!(one.ids, nn.ids_of(0));
    let zero = SearchOpts {
        probes: Some(0),
        ..Default::default()
    };
    assert!(engine.search(&q, K, &zero).is_err());
    // A graph-only index asked for partitions says so.
    let graph_only = index_with(
        dir.path(),
        "g.ptsel",
        &rows,
        BuildOptions {
            force: true,
            ..Default::default()
        },
    );
    let err = Engine::open(&graph_only)
        .unwrap()
        .search(&q, K, &probes)
        .unwrap_err();
    assert!(err.to_string().contains("no partitions"), "{err}");
}

#[test]
fn cli_builds_adds_searches_and_benches_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let features = d.join("f.npy");
    ptsel::npy::write_matrix(&features, &data(ROWS, 1), ROWS, DIM).unwrap();
    let queries = d.join("q.npy");
    ptsel::npy::write_matrix(&queries, &data(20, 4), 20, DIM).unwrap();
    // `ptsel build` of the features to `out` with `args`.
    let build = |out: &Path, args: &[&str]| {
        let mut all = vec!["build", "--features", s(&features), "--out", s(out), "-q"];
        all.extend_from_slice(args);
        ptsel(&all)
    };
    let built = d.join("built.ptsel");
    let res = build(&built, &["--partitions", "--partition-codes", "sq8"]);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    // `--partitions 0` is refused by the library (the CLI and Python pass it on), with nothing
    // left behind.
    let res = build(&d.join("z"), &["--partitions", "0"]);
    assert_eq!(res.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&res.stderr).contains("partitions must be at least 1"));
    assert!(!d.join("z").exists());
    let res = build(&d.join("z"), &["--partitions", "--partition-codes", "pq5"]);
    assert_eq!(res.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&res.stderr).contains("pq4"));
    // A graph-only index gets partitions without its features; the graph is kept.
    let plain = d.join("plain.ptsel");
    assert!(build(&plain, &[]).status.success());
    let out = d.join("nn.npy");
    let search = |index: &Path, out: &Path| {
        ptsel(&[
            "search",
            "--index",
            s(index),
            "--queries",
            s(&queries),
            "--probes",
            "4",
            "--out",
            s(out),
        ])
    };
    let res = search(&plain, &out);
    assert_eq!(res.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&res.stderr).contains("no partitions"));
    assert!(!out.exists());
    let res = ptsel(&["partition", s(&plain), "--codes", "sq8", "-q"]);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(String::from_utf8_lossy(&res.stderr).contains("110 partitions"));
    let info = ptsel(&["info", s(&plain)]);
    assert!(String::from_utf8_lossy(&info.stdout).contains("partitions 110 (sq8 codes"));
    let index = Index::open(&plain).unwrap();
    assert!(ptsel::hnsw::Graph::open(&index).unwrap().is_some());
    assert!(Partitions::open(&index).unwrap().is_some());
    assert_eq!(
        index.meta().params.get("partitions").map(String::as_str),
        Some("auto")
    );
    assert_eq!(
        index
            .meta()
            .params
            .get("partition_codes")
            .map(String::as_str),
        Some("sq8")
    );
    // The same partitions either way (the same section bytes), so the same answers.
    let section = |p: &Path| {
        let index = Index::open(p).unwrap();
        index
            .section_bytes(SectionKind::Partitions)
            .unwrap()
            .to_vec()
    };
    assert_eq!(section(&plain), section(&built));
    let other = d.join("nn2.npy");
    assert!(search(&plain, &out).status.success());
    assert!(search(&built, &other).status.success());
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&other).unwrap());
    let res = ptsel(&[
        "bench",
        "--index",
        s(&built),
        "--queries",
        s(&queries),
        "--ef",
        "20",
        "--probes",
        "1,8",
        "--json",
        s(&d.join("b.json")),
    ]);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("b.json")).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["probes"], 8);
    assert!(rows[1]["recall"].as_f64().unwrap() >= rows[0]["recall"].as_f64().unwrap());
    let res = ptsel(&["partition", s(&plain), "--partitions", "0"]);
    assert_eq!(res.status.code(), Some(2));
    // 4-bit codes: the same bytes either way too (`partition` replaces the 8-bit section).
    let built4 = d.join("built4.ptsel");
    let res = build(&built4, &["--partitions", "--partition-codes", "pq4"]);
    assert!(res.status.success());
    let plain4 = d.join("plain4.ptsel");
    let res = ptsel(&[
        "partition",
        s(&plain),
        "--out",
        s(&plain4),
        "--codes",
        "pq4",
        "-q",
    ]);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert_eq!(section(&plain4), section(&built4));
    assert_ne!(section(&plain4), section(&plain));
}
