//! Selection benchmarks: the UOT solve of ImageNet's 1000 source classes against SUN397's 397
//! target classes (the MoCo-v2 class means shipped in data/classmeans-moco128) on one thread,
//! and kNN selection over a synthetic index.
//!
//! `cargo bench --bench select`; compare with `python3 scripts/bench_uot_pot.py` (POT).

use criterion::{criterion_group, criterion_main, Criterion};
use ptsel::select::{Amount, Method, SelectParams, Target, TargetKind};
use ptsel::synth::{self, Spec};
use ptsel::uot::{class_importance, cost_matrix, solve, UotParams};
use std::hint::black_box;

/// ImageNet's and SUN397's MoCo-v2 class means (shipped in data/classmeans-moco128).
fn means() -> (Vec<f64>, Vec<f64>, usize) {
    let data = ptsel::data::ClassMeans::BuiltIn;
    let ((s, dim), (t, _)) = (data.means("imagenet").unwrap(), data.means("sun").unwrap());
    (s, t, dim)
}

fn uot(c: &mut Criterion) {
    let (source, target, dim) = means();
    let name = "sun397";
    let p = UotParams::default();
    let cost = cost_matrix(&source, &target, dim, 0.1);
    let (rows, cols) = (source.len() / dim, target.len() / dim);
    let (a, b) = (vec![1.0; rows], vec![1.0; cols]);
    let plan = solve(&cost, &a, &b, &p).unwrap();
    eprintln!(
        "uot {name} {rows}x{cols}: {} iterations, converged {}",
        plan.iterations, plan.converged
    );
    // One thread: the solver itself never spawns; this pool pins anything rayon might do.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut g = c.benchmark_group("uot");
    g.bench_function(format!("solve_{rows}x{cols}_{name}"), |bch| {
        pool.install(|| bch.iter(|| solve(black_box(&cost), &a, &b, &p).unwrap()))
    });
    g.bench_function(format!("cost_and_solve_{rows}x{cols}_{name}"), |bch| {
        pool.install(|| {
            bch.iter(|| class_importance(black_box(&source), &target, None, dim, 0.1, &p).unwrap())
        })
    });
    g.finish();
}

fn knn(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let corpus = synth::clustered(Spec {
        rows: 50_000,
        dim: 128,
        classes: 100,
        spread: 1.0,
        seed: 3,
    });
    let features = dir.path().join("f.npy");
    ptsel::npy::write_matrix(&features, &corpus.data, corpus.rows, corpus.dim).unwrap();
    let index_path = dir.path().join("k.ptsel");
    let mut source = ptsel::npy::MatrixReader::open(&features).unwrap();
    ptsel::build(
        &mut source,
        &index_path,
        ptsel::BuildOptions::default(),
        &|_, _, _| {},
    )
    .unwrap();
    let engine = ptsel::Engine::open(&index_path).unwrap();
    let (data, _) = synth::target_like(&corpus, &[1, 2, 3, 4], 25, 1.0, 4);
    let target = Target {
        features: ptsel::npy::Matrix {
            rows: data.len() / 128,
            dim: 128,
            data,
        },
        kind: TargetKind::Samples,
        origin: "bench".into(),
    };
    let p = SelectParams {
        method: Method::Knn,
        amount: Amount::Budget(2000),
        per_target: 50,
        exact: true,
        ..Default::default()
    };
    let mut g = c.benchmark_group("knn");
    g.sample_size(10);
    g.bench_function("select_100x50_of_50k", |bch| {
        bch.iter(|| engine.select(&target, None, &p).unwrap())
    });
    g.finish();
}

criterion_group!(benches, uot, knn);
criterion_main!(benches);
