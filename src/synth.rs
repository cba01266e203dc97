//! Deterministic synthetic data: class-structured corpora and targets for the demo, tests and
//! benchmarks. Clusters overlap on purpose (easy data hides differences between methods).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// A labelled corpus: `data` is `[rows, dim]` row-major.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Row-major features.
    pub data: Vec<f32>,
    /// Class of each row.
    pub labels: Vec<u32>,
    /// Class centres, `[classes, dim]`.
    pub centres: Vec<f32>,
    /// Rows.
    pub rows: usize,
    /// Dimension.
    pub dim: usize,
}

/// Parameters of [`clustered`].
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Rows.
    pub rows: usize,
    /// Dimension.
    pub dim: usize,
    /// Number of classes.
    pub classes: usize,
    /// Standard deviation of samples around their centre, relative to the centre norm
    /// (about 1.0 gives clusters that overlap).
    pub spread: f32,
    /// RNG seed.
    pub seed: u64,
}

impl Spec {
    /// The corpus of `ptsel demo`: 20,000 rows of 128 dims in 100 overlapping classes.
    pub const DEMO: Spec = Spec {
        rows: 20_000,
        dim: 128,
        classes: 100,
        spread: 1.0,
        seed: 7,
    };
}

fn gaussian(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| normal(rng)).collect()
}

fn normal(rng: &mut ChaCha8Rng) -> f32 {
    StandardNormal.sample(rng)
}

/// Class centres are shared Gaussian directions scaled to unit norm; class `c`'s samples are its
/// centre plus isotropic noise, with a positive offset shared by all (features after a ReLU
/// have a common mean direction, which makes classes harder to tell apart).
pub fn clustered(spec: Spec) -> Corpus {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let d = spec.dim;
    let common = gaussian(&mut rng, d);
    let mut centres = Vec::with_capacity(spec.classes * d);
    for _ in 0..spec.classes {
        let mut c = gaussian(&mut rng, d);
        c.iter_mut().zip(&common).for_each(|(x, m)| *x += 0.5 * m);
        let n = c.iter().map(|x| x * x).sum::<f32>().sqrt();
        centres.extend(c.iter().map(|x| x / n));
    }
    let noise = spec.spread / (d as f32).sqrt();
    let mut data = Vec::with_capacity(spec.rows * d);
    let mut labels = Vec::with_capacity(spec.rows);
    for i in 0..spec.rows {
        let c = if i < spec.classes {
            i
        } else {
            rng.random_range(0..spec.classes)
        };
        labels.push(c as u32);
        let centre = &centres[c * d..(c + 1) * d];
        data.extend(centre.iter().map(|&x| x + noise * normal(&mut rng)));
    }
    Corpus {
        data,
        labels,
        centres,
        rows: spec.rows,
        dim: d,
    }
}

/// A target set drawn around the centres of `classes` of `corpus` (each target class is one
/// source class, shifted a little): `(features, labels)` with `per_class` samples each.
pub fn target_like(
    corpus: &Corpus,
    classes: &[usize],
    per_class: usize,
    spread: f32,
    seed: u64,
) -> (Vec<f32>, Vec<u32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = corpus.dim;
    let noise = spread / (d as f32).sqrt();
    let mut data = Vec::with_capacity(classes.len() * per_class * d);
    let mut labels = Vec::with_capacity(classes.len() * per_class);
    for (t, &c) in classes.iter().enumerate() {
        let centre = &corpus.centres[c * d..(c + 1) * d];
        let shift = gaussian(&mut rng, d);
        for _ in 0..per_class {
            labels.push(t as u32);
            data.extend(
                centre
                    .iter()
                    .zip(&shift)
                    .map(|(&x, &s)| x + 0.3 * noise * s + noise * normal(&mut rng)),
            );
        }
    }
    (data, labels)
}

/// `[rows, dim]` standard-normal values, generated in parallel: row block `b` (of 4096 rows)
/// comes from its own stream seeded by `(seed, b)`, so the result does not depend on the
/// number of threads.
pub fn gaussian_matrix(rows: usize, dim: usize, seed: u64) -> Vec<f32> {
    use rayon::prelude::*;
    const BLOCK: usize = 4096;
    let mut data = vec![0.0f32; rows * dim];
    data.par_chunks_mut((BLOCK * dim).max(1))
        .enumerate()
        .for_each(|(b, chunk)| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(b as u64);
            chunk.iter_mut().for_each(|x| *x = normal(&mut rng));
        });
    data
}
