//! The HNSW hot paths: one-thread beam search over the mapped graph (f16 and f32 vectors) at a
//! few beam widths, and graph construction against hnsw_rs's parallel insertion on the same data.
//!
//! `cargo bench --bench search`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ptsel::hnsw::{build_graph, Graph, Params};
use ptsel::synth::{clustered, Spec};
use ptsel::{BuildOptions, DType, Index, Metric};
use std::path::{Path, PathBuf};

const DIM: usize = 128;

fn corpus(rows: usize, seed: u64) -> Vec<f32> {
    clustered(Spec {
        rows,
        dim: DIM,
        classes: 100,
        spread: 1.2,
        seed,
    })
    .data
}

fn make_index(dir: &Path, data: &[f32], dtype: DType, hnsw: bool) -> PathBuf {
    let features = dir.join(format!("{}.npy", dtype.name()));
    ptsel::npy::write_matrix(&features, data, data.len() / DIM, DIM).unwrap();
    let out = dir.join(format!("{}-{hnsw}.ptsel", dtype.name()));
    let mut source = ptsel::npy::MatrixReader::open(&features).unwrap();
    let opts = BuildOptions {
        dtype,
        metric: Metric::Cos,
        force: true,
        hnsw: hnsw.then(Params::default),
        ..BuildOptions::default()
    };
    ptsel::build(&mut source, &out, opts, &|_, _, _| {}).unwrap();
    out
}

fn search(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let data = corpus(20_000, 1);
    let queries = corpus(200, 2);
    let mut g = c.benchmark_group("search");
    g.sample_size(20);
    g.throughput(Throughput::Elements(200));
    for dtype in [DType::F16, DType::F32] {
        let path = make_index(dir.path(), &data, dtype, true);
        let index = Index::open(&path).unwrap();
        let graph = Graph::open(&index).unwrap().unwrap();
        for ef in [16, 64] {
            g.bench_with_input(BenchmarkId::new(dtype.name(), ef), &ef, |b, &ef| {
                b.iter(|| {
                    for q in queries.chunks_exact(DIM) {
                        std::hint::black_box(graph.search(q, 10, ef).unwrap());
                    }
                })
            });
        }
    }
    g.finish();
}

fn construction(c: &mut Criterion) {
    use hnsw_rs::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let data = corpus(4_000, 3);
    let index_path = make_index(dir.path(), &data, DType::F32, false);
    let index = Index::open(&index_path).unwrap();
    let mut g = c.benchmark_group("build");
    g.sample_size(10);
    g.throughput(Throughput::Elements(4_000));
    g.bench_function("ptsel", |b| {
        b.iter(|| build_graph(&index, &Params::default(), &|_, _, _| Ok(())).unwrap())
    });
    g.bench_function("hnsw_rs", |b| {
        b.iter(|| {
            let h = Hnsw::<f32, DistCosine>::new(16, 4_000, 16, 200, DistCosine {});
            let items: Vec<(&[f32], usize)> = data
                .chunks_exact(DIM)
                .enumerate()
                .map(|(i, r)| (r, i))
                .collect();
            h.parallel_insert_slice(&items);
            h
        })
    });
    g.finish();
}

criterion_group!(benches, search, construction);
criterion_main!(benches);
