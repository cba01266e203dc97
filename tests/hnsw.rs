//! HNSW: recall against exact search and against hnsw_rs on the same data, the section's
//! round trip and determinism, corrupted graphs rejected with errors, and `ptsel search` /
//! `ptsel bench` through the real binary.

use ptsel::format::SectionKind;
use ptsel::hnsw::{build_graph, Graph, GraphLayout, Params};
use ptsel::score::{cpu::CpuScorer, Scorer};
use ptsel::synth::{clustered, Spec};
use ptsel::{BuildOptions, DType, Index, Metric};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROWS: usize = 3000;
const DIM: usize = 32;

fn corpus(rows: usize, seed: u64) -> Vec<f32> {
    clustered(Spec {
        rows,
        dim: DIM,
        classes: 30,
        spread: 1.0,
        seed,
    })
    .data
}

fn queries() -> Vec<f32> {
    clustered(Spec {
        rows: 100,
        dim: DIM,
        classes: 30,
        spread: 1.0,
        seed: 99,
    })
    .data
}

/// Build an index of `data` at `dir/name` with the HNSW extension when `hnsw` is given.
fn make_index(
    dir: &Path,
    name: &str,
    data: &[f32],
    dtype: DType,
    metric: Metric,
    hnsw: Option<Params>,
) -> PathBuf {
    let features = dir.join(format!("{name}.npy"));
    ptsel::npy::write_matrix(&features, data, data.len() / DIM, DIM).unwrap();
    let out = dir.join(name);
    let mut source = ptsel::npy::MatrixReader::open(&features).unwrap();
    let opts = BuildOptions {
        dtype,
        metric,
        force: true,
        hnsw,
        ..BuildOptions::default()
    };
    ptsel::build(&mut source, &out, opts, &|_, _, _| {}).unwrap();
    out
}

fn recall(found: &[u32], truth: &[u32], k: usize) -> f64 {
    let hits: usize = found
        .chunks(k)
        .zip(truth.chunks(k))
        .map(|(f, t)| f.iter().filter(|i| t.contains(i)).count())
        .sum();
    hits as f64 / truth.len() as f64
}

fn hnsw_rs_recall(data: &[f32], q: &[f32], truth: &[u32], k: usize, ef: usize) -> f64 {
    use hnsw_rs::prelude::*;
    let rows = data.len() / DIM;
    let h = Hnsw::<f32, DistCosine>::new(16, rows, 16, 200, DistCosine {});
    let items: Vec<(&[f32], usize)> = data
        .chunks_exact(DIM)
        .enumerate()
        .map(|(i, r)| (r, i))
        .collect();
    h.parallel_insert_slice(&items);
    let found: Vec<u32> = q
        .chunks_exact(DIM)
        .flat_map(|x| h.search(x, k, ef).into_iter().map(|n| n.d_id as u32))
        .collect();
    recall(&found, truth, k)
}

#[test]
fn recall_beats_a_floor_and_matches_hnsw_rs() {
    let t = tempfile::tempdir().unwrap();
    let data = corpus(ROWS, 1);
    let q = queries();
    let k = 10;
    for dtype in [DType::F32, DType::F16] {
        let path = make_index(
            t.path(),
            &format!("{}.ptsel", dtype.name()),
            &data,
            dtype,
            Metric::Cos,
            Some(Params::default()),
        );
        let index = Index::open(&path).unwrap();
        let graph = Graph::open(&index).unwrap().unwrap();
        let exact = CpuScorer::new(&index).top_k(&q, k).unwrap();
        let nn = graph.search_batch(&q, k, 64).unwrap();
        let ours = recall(&nn.ids, &exact.ids, k);
        // Scores are the exact similarities of the returned rows, best first.
        for (qi, (ids, scores)) in nn.ids.chunks(k).zip(nn.scores.chunks(k)).enumerate() {
            assert!(
                scores.windows(2).all(|w| w[0] >= w[1]),
                "scores not descending: {scores:?}"
            );
            let hit = exact.ids_of(qi).iter().position(|&i| i == ids[0]);
            if let Some(p) = hit {
                assert!((exact.scores_of(qi)[p] - scores[0]).abs() < 1e-4);
            }
        }
        let reference = hnsw_rs_recall(&data, &q, &exact.ids, k, 64);
        eprintln!(
            "{}: recall@10 at ef 64: ptsel {ours:.4}, hnsw_rs {reference:.4}",
            dtype.name()
        );
        assert!(ours >= 0.95, "{}: recall {ours}", dtype.name());
        assert!(
            ours >= reference - 0.02,
            "{}: recall {ours} well below hnsw_rs {reference}",
            dtype.name()
        );
    }
}

/// The graph's top-k (ef 64) and the exact top-k of `q` on an f32 index of `data` with a
/// default graph, built at `dir/name`.
fn graph_and_exact(
    dir: &Path,
    name: &str,
    data: &[f32],
    metric: Metric,
    q: &[f32],
    k: usize,
) -> (ptsel::score::Neighbors, ptsel::score::Neighbors) {
    let path = make_index(dir, name, data, DType::F32, metric, Some(Params::default()));
    let index = Index::open(&path).unwrap();
    let nn = Graph::open(&index)
        .unwrap()
        .unwrap()
        .search_batch(q, k, 64)
        .unwrap();
    (nn, CpuScorer::new(&index).top_k(q, k).unwrap())
}

#[test]
fn l2_and_ip_scores_are_in_metric_units() {
    let t = tempfile::tempdir().unwrap();
    let data = corpus(800, 2);
    let q = queries();
    for metric in [Metric::L2, Metric::Ip] {
        let name = format!("{}.ptsel", metric.name());
        let (nn, exact) = graph_and_exact(t.path(), &name, &data, metric, &q, 5);
        assert!(recall(&nn.ids, &exact.ids, 5) >= 0.9, "{}", metric.name());
        for (i, (&id, &s)) in nn.ids.iter().zip(&nn.scores).enumerate() {
            let (row, query) = (&data[id as usize * DIM..][..DIM], &q[i / 5 * DIM..][..DIM]);
            let want: f32 = match metric {
                Metric::L2 => row.iter().zip(query).map(|(a, b)| (a - b) * (a - b)).sum(),
                _ => row.iter().zip(query).map(|(a, b)| a * b).sum(),
            };
            assert!(
                (want - s).abs() < 1e-3 * (1.0 + want.abs()),
                "{}: {want} vs {s}",
                metric.name()
            );
        }
    }
}

/// One outlying row (1e4 times the others' scale) must not blind the graph walk of the blocks
/// layout: its traversal codes span the typical range, not the outlier's, so every other row
/// still finds its nearest row (l2 before: recall@1 0.11). (Under ip such a row is the answer
/// to half the queries by its norm alone: not a case codes can serve.)
#[test]
fn an_outlying_row_leaves_the_graph_walk_intact() {
    let t = tempfile::tempdir().unwrap();
    let mut data = corpus(1000, 5);
    data[7 * DIM..8 * DIM].iter_mut().for_each(|x| *x *= 1e4);
    for metric in [Metric::L2, Metric::Cos] {
        let name = format!("outlier-{}.ptsel", metric.name());
        let (nn, exact) = graph_and_exact(t.path(), &name, &data, metric, &data, 1);
        let r = recall(&nn.ids, &exact.ids, 1);
        assert!(r >= 0.95, "{}: recall@1 {r}", metric.name());
    }
}

#[test]
fn section_round_trips_and_is_deterministic() {
    let t = tempfile::tempdir().unwrap();
    let data = corpus(1500, 3);
    let p = Params {
        m: 8,
        ef_construction: 64,
        seed: 5,
        layout: GraphLayout::Compact,
    };
    let path = make_index(t.path(), "a.ptsel", &data, DType::F16, Metric::Cos, Some(p));
    let index = Index::open_with(&path, ptsel::OpenOptions { verify: true }).unwrap();
    let stored = index.section_bytes(SectionKind::Hnsw).unwrap().to_vec();
    let header = *Graph::open(&index).unwrap().unwrap().header();
    assert_eq!(
        (
            header.m,
            header.m0,
            header.ef_construction,
            header.seed,
            header.rows
        ),
        (8, 16, 64, 5, 1500)
    );

    // Rebuilt over the same index on one thread and on two: the same bytes.
    let build = |threads: usize, p: Params| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| build_graph(&index, &p, &|_, _, _| Ok(())).unwrap())
    };
    let (h1, b1) = build(1, p);
    let (h2, b2) = build(2, p);
    assert_eq!(h1, header);
    assert_eq!(b1, stored, "one thread differs from the stored graph");
    assert_eq!(b2, stored, "two threads differ from the stored graph");
    assert_eq!(h2, header);
    let (_, other) = build(2, Params { seed: 6, ..p });
    assert_ne!(other, stored, "the seed has no effect");
    // The blocks layout too (quantiser, codes and numbering included).
    let blocks = Params {
        layout: GraphLayout::Blocks,
        ..p
    };
    let (_, b1) = build(1, blocks);
    let (_, b2) = build(2, blocks);
    assert_eq!(b1, b2, "blocks differ between one and two threads");

    // Every stored id is in range or padding.
    let ids: &[u32] = bytemuck::cast_slice(&stored[64..]);
    let level0 = &ids[..1500 * 16];
    assert!(level0.iter().all(|&i| i == u32::MAX || i < 1500));
}

/// The blocks layout holds the same graph as the compact one: converting a compact index with
/// `rebuild_graph` writes the bytes a blocks build writes, converting those blocks back writes
/// the compact build's bytes, and every other section is copied as stored. Searches through blocks (codes steer the walk, the survivors are re-ranked exactly)
/// return exact scores, best first, with recall no lower than the compact layout's beyond the
/// codes' noise, for every metric.
#[test]
fn blocks_hold_the_compact_graph_renumbered_and_rerank_exactly() {
    let t = tempfile::tempdir().unwrap();
    let data = corpus(ROWS, 7);
    let q = queries();
    let k = 10;
    let params = |layout| Params {
        m: 8,
        ef_construction: 64,
        seed: 2,
        layout,
    };
    let section = |p: &Path, kind| {
        Index::open(p)
            .unwrap()
            .section_bytes(kind)
            .unwrap()
            .to_vec()
    };
    for metric in [Metric::Cos, Metric::L2, Metric::Ip] {
        let name = |what: &str| format!("{what}-{}.ptsel", metric.name());
        let compact = make_index(
            t.path(),
            &name("compact"),
            &data,
            DType::F16,
            metric,
            Some(params(GraphLayout::Compact)),
        );
        let blocks = make_index(
            t.path(),
            &name("blocks"),
            &data,
            DType::F16,
            metric,
            Some(params(GraphLayout::Blocks)),
        );
        // `src` given the other layout, with the stored graph re-encoded (never constructed).
        let convert = |src: &Path, what: &str, layout| {
            let out = t.path().join(name(what));
            let report =
                ptsel::rebuild_graph(src, &out, &params(layout), false, &|_, _, _| {}).unwrap();
            assert!(
                report.reused,
                "{metric:?}: {what}: the stored graph was not reused"
            );
            Index::open(&out).unwrap().verify().unwrap();
            out
        };
        let converted = convert(&compact, "converted", GraphLayout::Blocks);
        assert_eq!(
            section(&converted, SectionKind::Hnsw),
            section(&blocks, SectionKind::Hnsw),
            "{metric:?}: conversion and build disagree"
        );
        assert_eq!(
            section(&converted, SectionKind::Vectors),
            section(&compact, SectionKind::Vectors)
        );
        // And back: blocks decode to the very compact section they were encoded from.
        let back = convert(&blocks, "back", GraphLayout::Compact);
        assert_eq!(
            section(&back, SectionKind::Hnsw),
            section(&compact, SectionKind::Hnsw),
            "{metric:?}: decoded blocks and the compact build disagree"
        );

        let (ci, bi) = (
            Index::open(&compact).unwrap(),
            Index::open(&blocks).unwrap(),
        );
        let (cg, bg) = (
            Graph::open(&ci).unwrap().unwrap(),
            Graph::open(&bi).unwrap().unwrap(),
        );
        assert_eq!(cg.header().layout, GraphLayout::Compact);
        assert_eq!(bg.header().layout, GraphLayout::Blocks);
        // The upper-level nodes are numbered first: upper_ids (at the section's end, before
        // the offsets and lists) are 0, 1, 2, ...
        let h = bg.header();
        let tail = (2 * h.upper_nodes as usize + 1 + (h.upper_lists * h.m) as usize) * 4;
        let bytes = section(&blocks, SectionKind::Hnsw);
        let upper_ids: Vec<u32> = bytes[bytes.len() - tail..][..4 * h.upper_nodes as usize]
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
            .collect();
        assert!(h.upper_nodes > 0);
        assert_eq!(upper_ids, (0..h.upper_nodes).collect::<Vec<_>>());
        let exact = CpuScorer::new(&bi).top_k(&q, k).unwrap();
        for ef in [10, 16, 32, 64] {
            let (cn, bn) = (
                cg.search_batch(&q, k, ef).unwrap(),
                bg.search_batch(&q, k, ef).unwrap(),
            );
            let (rc, rb) = (
                recall(&cn.ids, &exact.ids, k),
                recall(&bn.ids, &exact.ids, k),
            );
            eprintln!("{metric:?} ef {ef}: recall compact {rc:.4}, blocks {rb:.4}");
            assert!(
                rb >= rc - 0.02,
                "{metric:?} ef {ef}: blocks {rb} vs compact {rc}"
            );
            for (qi, (ids, scores)) in bn.ids.chunks(k).zip(bn.scores.chunks(k)).enumerate() {
                let mut seen = HashSet::new();
                assert!(ids.iter().all(|i| seen.insert(*i)), "repeated rows {ids:?}");
                let higher_first = metric != Metric::L2;
                assert!(
                    scores.windows(2).all(|w| if higher_first {
                        w[0] >= w[1]
                    } else {
                        w[0] <= w[1]
                    }),
                    "{metric:?}: not best first: {scores:?}"
                );
                // Exact scores: the scorer's own for the rows both found.
                for (&id, &score) in ids.iter().zip(scores) {
                    if let Some(p) = exact.ids_of(qi).iter().position(|&e| e == id) {
                        let want = exact.scores_of(qi)[p];
                        assert!((want - score).abs() <= 1e-5 * (1.0 + want.abs()));
                    }
                }
            }
        }
    }
}

/// Damage to a blocks section: the block header, the lists, the node order. Opening or
/// searching reports a corrupt graph; nothing panics, whatever single byte is changed.
#[test]
fn corrupted_blocks_are_errors_not_panics() {
    let t = tempfile::tempdir().unwrap();
    let q = queries();
    let good = small_graph_index(t.path(), GraphLayout::Blocks);
    let (rows, block) = (500usize, 128usize); // 16 ids (64 bytes) + 32 codes, to 64-byte lines
    for (name, at, bytes) in [
        ("dim.ptsel", 64, 31u32.to_le_bytes()),
        ("block.ptsel", 68, 64u32.to_le_bytes()),
        ("code.ptsel", 72, 7u32.to_le_bytes()),
    ] {
        let path = damaged(&good, name, at, &bytes);
        corrupt_err(Graph::open(&Index::open(&path).unwrap()).unwrap_err());
    }
    let search = |path: &Path| {
        let index = Index::open(path).unwrap();
        let graph = Graph::open(&index).unwrap().unwrap();
        graph.search_batch(&q, 5, 32).map(|_| ())
    };
    // Decoding back to compact (what `rebuild-graph --graph-layout compact` does after its
    // checksum pass) meets the same damage with the same errors.
    let compact = Params {
        m: 8,
        ef_construction: 32,
        seed: 1,
        layout: GraphLayout::Compact,
    };
    let decode = |path: &Path| {
        let index = Index::open(path).unwrap();
        ptsel::hnsw::regraph(&index, &compact, &|_, _, _| Ok(())).map(|_| ())
    };
    decode(&good).unwrap();
    // Every level-0 id out of range.
    let section = Index::open(&good)
        .unwrap()
        .section_bytes(SectionKind::Hnsw)
        .unwrap()
        .to_vec();
    let mut region = section[128..128 + rows * block].to_vec();
    for b in region.chunks_exact_mut(block) {
        for (i, slot) in b[..64].chunks_exact_mut(4).enumerate() {
            slot.copy_from_slice(&(1000 + i as u32).to_le_bytes());
        }
    }
    let ids = damaged(&good, "ids.ptsel", 128, &region);
    corrupt_err(search(&ids).unwrap_err());
    corrupt_err(decode(&ids).unwrap_err());
    // The node order: every node mapped to row 0, then to a row past the end.
    let order_at = 128 + rows * block;
    for (name, row) in [("zeros.ptsel", 0u32), ("past.ptsel", 600)] {
        let order: Vec<u8> = (0..rows).flat_map(|_| row.to_le_bytes()).collect();
        let path = damaged(&good, name, order_at, &order);
        corrupt_err(search(&path).unwrap_err());
        corrupt_err(decode(&path).unwrap_err());
    }
    // Any single byte: an answer or a corrupt-graph error, never a panic.
    let len = section.len();
    for i in 0..300usize {
        let at = (i * 7919) % len;
        let path = damaged(
            &good,
            "byte.ptsel",
            at,
            &[(i as u8).wrapping_mul(37) ^ 0x5a],
        );
        let index = Index::open(&path).unwrap();
        match Graph::open(&index) {
            Ok(Some(g)) => {
                if let Err(e) = g.search_batch(&q, 5, 32) {
                    corrupt_err(e);
                }
                if let Err(e) = decode(&path) {
                    corrupt_err(e);
                }
            }
            Ok(None) => panic!("the graph section vanished"),
            Err(e) => corrupt_err(e),
        }
    }
}

/// Overwrite `bytes` at `at` (relative to the HNSW section) in a copy of `src` named `name`.
fn damaged(src: &Path, name: &str, at: usize, bytes: &[u8]) -> PathBuf {
    let index = Index::open(src).unwrap();
    let e = index
        .sections()
        .into_iter()
        .find(|e| e.kind == SectionKind::Hnsw)
        .unwrap();
    let mut file = std::fs::read(src).unwrap();
    let start = e.offset as usize + at;
    file[start..start + bytes.len()].copy_from_slice(bytes);
    let out = src.with_file_name(name);
    std::fs::write(&out, file).unwrap();
    out
}

/// `dir/<layout>.ptsel`: 500 rows in 32 dims with a graph of M = 8 (16 level-0 slots per row).
fn small_graph_index(dir: &Path, layout: GraphLayout) -> PathBuf {
    make_index(
        dir,
        &format!("{}.ptsel", layout.name()),
        &corpus(500, 4),
        DType::F16,
        Metric::Cos,
        Some(Params {
            m: 8,
            ef_construction: 32,
            seed: 1,
            layout,
        }),
    )
}

fn corrupt_err(e: ptsel::Error) {
    assert!(
        matches!(e, ptsel::Error::Corrupt { ref section, .. } if section == "hnsw"),
        "{e}"
    );
}

#[test]
fn corrupted_graphs_are_errors_not_panics() {
    let t = tempfile::tempdir().unwrap();
    let q = queries();
    let good = small_graph_index(t.path(), GraphLayout::Compact);
    let (m0, rows) = (16usize, 500usize);
    // Header damage: magic, M, entry point, a count that no longer matches the length.
    for (name, at, bytes) in [
        ("magic.ptsel", 0, b"XXXXXXXX".to_vec()),
        ("m.ptsel", 12, 1000u32.to_le_bytes().to_vec()),
        ("entry.ptsel", 36, 600u32.to_le_bytes().to_vec()),
        ("level.ptsel", 40, 99u32.to_le_bytes().to_vec()),
        ("lists.ptsel", 48, 1u32.to_le_bytes().to_vec()),
        ("rows.ptsel", 52, 499u32.to_le_bytes().to_vec()),
    ] {
        let path = damaged(&good, name, at, &bytes);
        let index = Index::open(&path).unwrap();
        corrupt_err(Graph::open(&index).unwrap_err());
    }
    // Neighbour ids out of range everywhere on level 0: the first search hits one.
    let bad_ids: Vec<u8> = (0..rows * m0)
        .flat_map(|i| (rows as u32 + i as u32).to_le_bytes())
        .collect();
    let path = damaged(&good, "ids.ptsel", 64, &bad_ids);
    let index = Index::open(&path).unwrap();
    let graph = Graph::open(&index).unwrap().unwrap();
    corrupt_err(graph.search_batch(&q, 5, 32).unwrap_err());
    // Upper offsets out of order: found when the search descends.
    let index = Index::open(&good).unwrap();
    let h = *Graph::open(&index).unwrap().unwrap().header();
    assert!(h.max_level > 0, "the test needs an upper level");
    let offsets_at = 64 + 4 * (rows * m0 + h.upper_nodes as usize);
    let garbage: Vec<u8> = (0..=h.upper_nodes)
        .flat_map(|i| (u32::MAX - i).to_le_bytes())
        .collect();
    let path = damaged(&good, "offsets.ptsel", offsets_at, &garbage);
    let index = Index::open(&path).unwrap();
    corrupt_err(
        Graph::open(&index)
            .unwrap()
            .unwrap()
            .search_batch(&q, 5, 32)
            .unwrap_err(),
    );
    // The CLI maps it to exit code 3.
    let out = ptsel(
        t.path(),
        &[
            "search",
            "--index",
            "ids.ptsel",
            "--queries",
            &write_queries(t.path(), "q.npy", &q),
            "-k",
            "3",
            "--out",
            "nn.npy",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("out of range"));
}

/// A graph whose level-0 lists were wiped: no search can reach k rows. Searches and kNN
/// selection fail with a corrupt-index error (exit 3) and write nothing, instead of padding the
/// results with row 4294967295 (and NaN scores, which then ranked first).
#[test]
fn short_searches_on_a_damaged_graph_are_corrupt_index_errors() {
    let t = tempfile::tempdir().unwrap();
    let rows = 500;
    let good = small_graph_index(t.path(), GraphLayout::Compact);
    let path = damaged(&good, "wiped.ptsel", 64, &vec![0xff; rows * 16 * 4]);
    let index = Index::open(&path).unwrap();
    let graph = Graph::open(&index).unwrap().unwrap();
    let q = queries();
    let e = graph.search_batch(&q, 5, 32).unwrap_err();
    assert!(
        e.to_string().contains("reachable from the entry point"),
        "{e}"
    );
    corrupt_err(e);
    // The undamaged graph gives k rows for every query.
    let index = Index::open(&good).unwrap();
    let nn = Graph::open(&index)
        .unwrap()
        .unwrap()
        .search_batch(&q, 5, 32)
        .unwrap();
    assert!(nn.ids.iter().all(|&i| (i as usize) < rows));
    let target = write_queries(t.path(), "target.npy", &q[..10 * DIM]);
    for (index, code) in [("wiped.ptsel", Some(3)), ("compact.ptsel", Some(0))] {
        let out = ptsel(
            t.path(),
            &[
                "select",
                "--index",
                index,
                "--target",
                &target,
                "--method",
                "knn",
                "--budget",
                "20",
                "--per-target",
                "5",
                "--out",
                "sel.npy",
            ],
        );
        assert_eq!(
            out.status.code(),
            code,
            "{index}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            t.path().join("sel.npy").exists(),
            code == Some(0),
            "{index}"
        );
    }
    let (_, rows_selected) = read_i64(&t.path().join("sel.npy"));
    assert!(rows_selected.iter().all(|&r| (0..rows as i64).contains(&r)));
}

fn ptsel(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ptsel"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn write_queries(dir: &Path, name: &str, q: &[f32]) -> String {
    ptsel::npy::write_matrix(&dir.join(name), q, q.len() / DIM, DIM).unwrap();
    name.to_string()
}

fn read_i64(path: &Path) -> (Vec<u64>, Vec<i64>) {
    let bytes = std::fs::read(path).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    (npy.shape().to_vec(), npy.into_vec::<i64>().unwrap())
}

#[test]
fn search_and_bench_cli() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let data = corpus(1000, 5);
    let q = queries();
    make_index(
        d,
        "g.ptsel",
        &data,
        DType::F16,
        Metric::Cos,
        Some(Params::default()),
    );
    make_index(d, "flat.ptsel", &data, DType::F16, Metric::Cos, None);
    let qn = write_queries(d, "q.npy", &q);
    let ok = |args: &[&str]| {
        let out = ptsel(d, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    ok(&[
        "search",
        "--index",
        "g.ptsel",
        "--queries",
        &qn,
        "-k",
        "7",
        "--ef",
        "64",
        "--out",
        "nn.npy",
        "--scores",
        "s.npy",
    ]);
    ok(&[
        "search",
        "--index",
        "flat.ptsel",
        "--queries",
        &qn,
        "-k",
        "7",
        "--exact",
        "--threads",
        "1",
        "--out",
        "ex.npy",
    ]);
    let (shape, nn) = read_i64(&d.join("nn.npy"));
    let (_, ex) = read_i64(&d.join("ex.npy"));
    assert_eq!(shape, vec![100, 7]);
    let hits = nn
        .chunks(7)
        .zip(ex.chunks(7))
        .map(|(a, b)| a.iter().filter(|x| b.contains(x)).count())
        .sum::<usize>();
    assert!(
        hits as f64 / 700.0 >= 0.95,
        "cli recall {}",
        hits as f64 / 700.0
    );
    let scores = std::fs::read(d.join("s.npy")).unwrap();
    let s: Vec<f32> = npyz::NpyFile::new(&scores[..]).unwrap().into_vec().unwrap();
    assert!(s.len() == 700 && s.iter().all(|x| (-1.0..=1.0001).contains(x)));

    // Bench: JSON with exactly the documented fields, an SVG, and a cached ground truth.
    ok(&[
        "bench",
        "--index",
        "g.ptsel",
        "--queries",
        &qn,
        "-k",
        "5",
        "--ef",
        "8,64",
        "--json",
        "b.json",
        "--plot",
        "b.svg",
    ]);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("b.json")).unwrap()).unwrap();
    let keys: HashSet<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, HashSet::from(["rows", "open_ms", "build_s"]));
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let row_keys: HashSet<&str> = rows[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        row_keys,
        HashSet::from(["ef", "recall", "qps", "mean_ms", "p99_ms"])
    );
    assert!(rows[1]["recall"].as_f64().unwrap() >= 0.95);
    assert!(std::fs::read_to_string(d.join("b.svg"))
        .unwrap()
        .contains("<svg"));
    let cached: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".truth-")
        })
        .collect();
    assert_eq!(cached.len(), 1);

    // Bad inputs: clear errors, exit 2, no output written.
    let mut nan = q.clone();
    nan[5] = f32::NAN;
    write_queries(d, "nan.npy", &nan);
    ptsel::npy::write_matrix(
        &d.join("wide.npy"),
        &vec![0.5f32; 3 * (DIM + 1)],
        3,
        DIM + 1,
    )
    .unwrap();
    for (args, says) in [
        (
            vec!["--index", "g.ptsel", "--queries", "wide.npy", "-k", "3"],
            "dimension 33",
        ),
        (
            vec!["--index", "g.ptsel", "--queries", "nan.npy", "-k", "3"],
            "nan",
        ),
        (
            vec!["--index", "g.ptsel", "--queries", &qn, "-k", "0"],
            "between 1 and",
        ),
        (
            vec!["--index", "g.ptsel", "--queries", &qn, "-k", "1001"],
            "between 1 and",
        ),
        (
            vec!["--index", "flat.ptsel", "--queries", &qn, "-k", "3"],
            "--exact",
        ),
    ] {
        let mut full = vec!["search"];
        full.extend(args);
        full.extend(["--out", "bad.npy"]);
        let out = ptsel(d, &full);
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert_eq!(out.status.code(), Some(2), "{full:?}: {err}");
        assert!(err.contains(says), "{full:?}: {err}");
        assert!(!d.join("bad.npy").exists());
    }
    // info reports the graph and its repair counts.
    let out = ok(&["info", "g.ptsel", "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["hnsw"]["m"], 16);
    assert!(
        info["hnsw"]["unreachable_repaired"].is_u64()
            && info["hnsw"]["self_recall_repaired"].is_u64()
    );
    assert!(String::from_utf8_lossy(&ok(&["info", "flat.ptsel"]).stdout).contains("hnsw      none"));
}

/// `ptsel rebuild-graph`: in place (re-encoded), with other parameters (constructed), and its
/// refusals: a missing index, an existing --out without --force.
#[test]
fn rebuild_graph_cli() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    small_graph_index(d, GraphLayout::Compact);
    let params = |name: &str| {
        let index = Index::open(d.join(name)).unwrap();
        let graph = Graph::open(&index).unwrap().unwrap();
        graph.header().params()
    };
    let stored = |m, layout| Params {
        m,
        ef_construction: 32,
        seed: 1,
        layout,
    };
    let common = ["--hnsw-m", "8", "--ef-construction", "32", "--seed", "1"];
    let out = ptsel(
        d,
        &[&["rebuild-graph", "compact.ptsel", "-q"][..], &common].concat(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("re-encoded"), "{err}");
    assert_eq!(params("compact.ptsel"), stored(8, GraphLayout::Blocks));
    let info = ptsel(d, &["info", "compact.ptsel", "--json"]);
    assert!(String::from_utf8_lossy(&info.stdout).contains("\"layout\": \"blocks\""));

    let out = ptsel(
        d,
        &[
            "rebuild-graph",
            "compact.ptsel",
            "--out",
            "m6.ptsel",
            "--hnsw-m",
            "6",
            "-q",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("constructed"), "{err}");
    // Unset, efConstruction and the seed are the stored graph's (32 and 1, not the defaults).
    assert_eq!(params("m6.ptsel"), stored(6, GraphLayout::Blocks));
    // So is M: a layout change alone re-encodes.
    let out = ptsel(
        d,
        &[
            "rebuild-graph",
            "m6.ptsel",
            "--graph-layout",
            "compact",
            "-q",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("re-encoded"), "{err}");
    assert_eq!(params("m6.ptsel"), stored(6, GraphLayout::Compact));

    let before = std::fs::read(d.join("m6.ptsel")).unwrap();
    let out = ptsel(
        d,
        &["rebuild-graph", "compact.ptsel", "--out", "m6.ptsel", "-q"],
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("m6.ptsel"));
    assert_eq!(std::fs::read(d.join("m6.ptsel")).unwrap(), before);

    std::fs::create_dir(d.join("folder")).unwrap();
    let out = ptsel(d, &["rebuild-graph", "folder"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("takes one index file"));

    let out = ptsel(d, &["rebuild-graph", "missing.ptsel"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.ptsel"));
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".ptsel-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
