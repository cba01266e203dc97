//! CPU scorer throughput: exact top-10 of query batches against seeded Gaussian corpora in f16
//! and f32, on every kernel of the CPU (the faiss comparison at 100k x 512 is
//! scripts/score-vs-faiss.py).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::f16;
use ptsel::score::simd::available_matrix_kernels;
use ptsel::score::{cpu::CpuScorer, Scorer};
use ptsel::{Metric, Vectors};

fn top_k(c: &mut Criterion) {
    let (rows, dim) = (20_000, 512);
    let data = ptsel::synth::gaussian_matrix(rows, dim, 1);
    let halves: Vec<f16> = data.iter().map(|&x| f16::from_f32(x)).collect();
    let mut group = c.benchmark_group("cpu_top10_20k_x_512");
    group.sample_size(10);
    for (dtype, vectors) in [("f16", Vectors::F16(&halves)), ("f32", Vectors::F32(&data))] {
        for metric in [Metric::Ip, Metric::L2] {
            // The f32 products, then each matrix unit of this CPU (AMX, AVX512-BF16).
            let kernels =
                std::iter::once(None).chain(available_matrix_kernels().into_iter().map(Some));
            for matrix in kernels {
                let scorer = CpuScorer::from_vectors(vectors, dim, metric)
                    .unwrap()
                    .with_matrix(matrix);
                for nq in [1usize, 16, 256] {
                    let queries = ptsel::synth::gaussian_matrix(nq, dim, 2);
                    group.throughput(Throughput::Elements(nq as u64));
                    group.bench_with_input(
                        BenchmarkId::new(
                            format!("{dtype}_{}_{}", metric.name(), scorer.kernel()),
                            nq,
                        ),
                        &queries,
                        |b, q| b.iter(|| scorer.top_k(q, 10).unwrap()),
                    );
                }
            }
        }
    }
    group.finish();
}

fn max_similarity(c: &mut Criterion) {
    let (rows, dim) = (20_000, 512);
    let halves: Vec<f16> = ptsel::synth::gaussian_matrix(rows, dim, 1)
        .iter()
        .map(|&x| f16::from_f32(x))
        .collect();
    let scorer = CpuScorer::from_vectors(Vectors::F16(&halves), dim, Metric::Cos).unwrap();
    let queries = ptsel::synth::gaussian_matrix(256, dim, 3);
    let mut group = c.benchmark_group("cpu_max_similarity_20k_x_512");
    group.sample_size(10);
    group.throughput(Throughput::Elements(256));
    group.bench_function("f16_cos_256", |b| {
        b.iter(|| scorer.max_similarity(&queries).unwrap())
    });
    group.finish();
}

criterion_group!(benches, top_k, max_similarity);
criterion_main!(benches);
