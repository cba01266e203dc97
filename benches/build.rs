//! Build throughput (rows/s) and open time of an index.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ptsel::synth::{clustered, Spec};
use ptsel::{build, BuildOptions, DType, Index, Labels};

fn bench_build(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("build");
    g.sample_size(10);
    for (rows, dim) in [(20_000usize, 128usize), (20_000, 512)] {
        let corpus = clustered(Spec {
            rows,
            dim,
            classes: 100,
            spread: 1.0,
            seed: 1,
        });
        let features = dir.path().join(format!("f{rows}x{dim}.npy"));
        ptsel::npy::write_matrix(&features, &corpus.data, rows, dim).expect("write features");
        g.throughput(Throughput::Elements(rows as u64));
        for dtype in [DType::F16, DType::F32] {
            g.bench_with_input(
                BenchmarkId::new(format!("{rows}x{dim}"), dtype.name()),
                &dtype,
                |b, &dtype| {
                    b.iter(|| {
                        let mut src =
                            ptsel::npy::MatrixReader::open(&features).expect("open features");
                        let opts = BuildOptions {
                            dtype,
                            force: true,
                            labels: Some(Labels {
                                values: corpus.labels.clone(),
                                origin: "synthetic".into(),
                            }),
                            ..BuildOptions::default()
                        };
                        build(
                            &mut src,
                            &dir.path().join("bench.ptsel"),
                            opts,
                            &|_, _, _| {},
                        )
                        .expect("build")
                    })
                },
            );
        }
    }
    g.finish();

    let path = dir.path().join("bench.ptsel");
    c.bench_function("open", |b| b.iter(|| Index::open(&path).expect("open")));
}

criterion_group!(benches, bench_build);
criterion_main!(benches);
