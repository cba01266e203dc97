//! Format compatibility: an index written by each released format version is committed under
//! `tests/fixtures/format/` (made once by `make_v<N>.py` and `ptsel build`, never rebuilt) and
//! must keep opening, verifying and answering the same. The expected values below were read
//! from the fixture when it was made and are written out here, so a reader that changes how it
//! interprets old bytes fails, instead of agreeing with itself.

use ptsel::format::{DType, Metric, SectionKind};
use ptsel::hnsw::{Graph, GraphLayout};
use ptsel::kmeans::KmeansView;
use ptsel::score::{cpu::CpuScorer, Scorer};
use ptsel::{Index, OpenOptions};
use std::path::Path;

fn fixture(name: &str) -> Index {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/format")
        .join(name);
    Index::open_with(&path, OpenOptions { verify: true })
        .unwrap_or_else(|e| panic!("{} no longer opens: {e}", path.display()))
}

fn close(got: &[f32], want: &[f32], tol: f32) -> bool {
    got.len() == want.len() && got.iter().zip(want).all(|(g, w)| (g - w).abs() <= tol)
}

#[test]
fn format_v1_fixture_keeps_opening_with_its_values() {
    let index = fixture("v1.ptsel");
    index.verify().unwrap();
    assert_eq!(index.header().version, 1);
    let meta = index.meta();
    assert_eq!((index.rows(), index.dim(), index.classes()), (48, 8, 4));
    assert_eq!((meta.dtype, index.metric()), (DType::F16, Metric::Cos));
    assert_eq!(meta.class_names, ["alpha", "beta", "gamma", "delta"]);
    let kinds: Vec<SectionKind> = index.sections().iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            SectionKind::Vectors,
            SectionKind::Norms,
            SectionKind::Labels,
            SectionKind::ClassCounts,
            SectionKind::ClassMeans,
            SectionKind::IdsBlob,
            SectionKind::IdsOffsets,
            SectionKind::Hnsw,
            SectionKind::KmeansCentroids,
            SectionKind::KmeansAssign,
            SectionKind::Meta,
        ]
    );

    // Rows: stored unit vectors (f16 values, exactly), raw norms, labels, ids.
    let mut row = [0f32; 8];
    for (r, vector, norm, label) in [
        (
            0,
            [
                0.61083984,
                0.7519531,
                0.14099121,
                -0.04699707,
                0.09399414,
                -0.09399414,
                0.04699707,
                -0.14099121,
            ],
            1.3302373,
            0,
        ),
        (
            13,
            [
                -0.044311523,
                0.08862305,
                0.62060547,
                0.75341797,
                -0.13293457,
                0.0,
                0.13293457,
                -0.044311523,
            ],
            1.4100642,
            1,
        ),
    ] {
        index.vectors().row_into(r, 8, &mut row);
        assert_eq!(row, vector, "row {r}");
        assert_eq!(index.norms()[r], norm, "norm of row {r}");
        assert_eq!(index.label(r).unwrap(), Some(label));
        assert_eq!(index.id(r).unwrap(), format!("img/{r:03}.jpg"));
    }
    assert_eq!(index.class_counts(), [12, 12, 12, 12]);
    // Means of the raw features (sixteenths averaged over 12 rows: multiples of 1/192).
    let means: [[f64; 8]; 4] = [
        [195.0, 189.0, 5.0, -1.0, 0.0, 1.0, -5.0, 3.0],
        [0.0, 1.0, 187.0, 195.0, -3.0, 5.0, -1.0, 0.0],
        [-3.0, 5.0, -1.0, 0.0, 193.0, 187.0, 3.0, -3.0],
        [1.0, -5.0, 3.0, -3.0, 5.0, -1.0, 192.0, 193.0],
    ];
    for (c, (got, want)) in index.class_means().chunks(8).zip(means).enumerate() {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w / 192.0).abs() < 1e-12, "class {c}: {got:?}");
        }
    }

    // The HNSW graph: its header and a search (rows 8 and 36 are duplicates: the lower id first).
    let graph = Graph::open(&index).unwrap().unwrap();
    let h = graph.header();
    assert_eq!(
        (
            h.m,
            h.m0,
            h.ef_construction,
            h.seed,
            h.entry,
            h.max_level,
            h.rows
        ),
        (4, 8, 32, 5, 6, 3, 48)
    );
    let q = [1.0f32, 0.9, 0.1, 0.0, 0.0, 0.2, 0.0, 0.0];
    let (ids, scores) = graph.search(&q, 4, 16).unwrap();
    assert_eq!(ids, [8, 36, 12, 40]);
    let want_scores = [0.98406136, 0.98406136, 0.97690755, 0.97690755];
    assert!(close(&scores, &want_scores, 1e-5), "{scores:?}");
    let exact = CpuScorer::new(&index).top_k(&q, 4).unwrap();
    assert_eq!(exact.ids, ids);

    // k-means: 3 centroids and the assignment of every row.
    let km = KmeansView::open(&index).unwrap().unwrap();
    assert_eq!(km.k, 3);
    // Written before the raw means were stored: selection computes them from the rows.
    assert!(km.means.is_none());
    assert_eq!(&km.assign[..12], [0, 2, 1, 2, 0, 2, 1, 2, 0, 2, 1, 2]);
    assert!(close(&km.centroids[..2], &[0.7176477, 0.695841], 1e-6));
    assert!(close(
        &km.centroids[16..],
        &[
            -0.00011551497,
            -0.008612763,
            0.4973377,
            0.5044171,
            0.006466355,
            0.011142723,
            0.49834284,
            0.49963272
        ],
        1e-6
    ));
}

/// The graph of the v1 fixture (compact layout) converts to node blocks without its features:
/// the same answers, every other section copied byte for byte; and the blocks decode back to the
/// fixture's graph section.
#[test]
fn format_v1_graph_converts_to_blocks_with_the_same_answers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format/v1.ptsel");
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("blocks.ptsel");
    let params = ptsel::hnsw::Params {
        m: 4,
        ef_construction: 32,
        seed: 5,
        layout: GraphLayout::Blocks,
    };
    let report = ptsel::rebuild_graph(&src, &out, &params, false, &|_, _, _| {}).unwrap();
    assert!(report.reused, "the stored graph was constructed anew");
    let (old, new) = (fixture("v1.ptsel"), Index::open(&out).unwrap());
    new.verify().unwrap();
    for e in old.sections() {
        if !matches!(e.kind, SectionKind::Hnsw | SectionKind::Meta) {
            assert_eq!(
                old.section_bytes(e.kind),
                new.section_bytes(e.kind),
                "{:?}",
                e.kind
            );
        }
    }
    let graph = Graph::open(&new).unwrap().unwrap();
    let h = graph.header();
    assert_eq!(h.layout, GraphLayout::Blocks);
    assert_eq!(
        (h.m, h.m0, h.ef_construction, h.seed, h.max_level),
        (4, 8, 32, 5, 3)
    );
    let q = [1.0f32, 0.9, 0.1, 0.0, 0.0, 0.2, 0.0, 0.0];
    let (ids, scores) = graph.search(&q, 4, 16).unwrap();
    assert_eq!(ids, [8, 36, 12, 40]);
    let want_scores = [0.98406136, 0.98406136, 0.97690755, 0.97690755];
    assert!(close(&scores, &want_scores, 1e-5), "{scores:?}");
    assert_eq!(
        new.meta().params.get("hnsw_layout").map(String::as_str),
        Some("blocks")
    );
    // And back to compact: the fixture's own graph section, byte for byte.
    let back = t.path().join("back.ptsel");
    let compact = ptsel::hnsw::Params {
        layout: GraphLayout::Compact,
        ..params
    };
    let report = ptsel::rebuild_graph(&out, &back, &compact, false, &|_, _, _| {}).unwrap();
    assert!(report.reused, "the blocks were not decoded");
    assert_eq!(
        Index::open(&back).unwrap().section_bytes(SectionKind::Hnsw),
        old.section_bytes(SectionKind::Hnsw)
    );
}

/// Graph layout 2 (node blocks) as first written: header, answers and scores stay.
#[test]
fn graph_layout_2_fixture_keeps_opening_with_its_answers() {
    let index = fixture("v1-graph-blocks.ptsel");
    assert_eq!((index.rows(), index.dim(), index.classes()), (48, 8, 4));
    let graph = Graph::open(&index).unwrap().unwrap();
    let h = graph.header();
    assert_eq!(
        (
            h.layout,
            h.m,
            h.m0,
            h.ef_construction,
            h.seed,
            h.max_level,
            h.rows
        ),
        (GraphLayout::Blocks, 4, 8, 32, 5, 3, 48)
    );
    let q = [1.0f32, 0.9, 0.1, 0.0, 0.0, 0.2, 0.0, 0.0];
    let (ids, scores) = graph.search(&q, 4, 16).unwrap();
    assert_eq!(ids, [8, 36, 12, 40]);
    let want_scores = [0.98406136, 0.98406136, 0.97690755, 0.97690755];
    assert!(close(&scores, &want_scores, 1e-5), "{scores:?}");
    let all = graph.search(&q, 48, 48).unwrap().0;
    let mut sorted = all.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..48).collect::<Vec<u32>>(), "every row once");
}
