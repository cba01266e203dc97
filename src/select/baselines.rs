//! Baselines: classes ranked by cosine similarity to the target, and seeded random samples.

use super::{Excluded, Groups, Method, Pick, Selection};
use crate::engine::Engine;
use crate::error::Result;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn unit(v: &[f64]) -> Vec<f64> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter()
        .map(|x| if n > 0.0 { x / n } else { 0.0 })
        .collect()
}

/// Cosine between each class mean and the mean direction of the target: the average of the
/// L2-normalised target units, so every target class weighs the same (as in UOT's `b = 1`).
/// Empty classes get 0.
pub fn similarity_importance(groups: &Groups<'_>, target_units: &[f64]) -> Vec<f64> {
    let dim = groups.engine.dim();
    let mut centre = vec![0.0; dim];
    for t in target_units.chunks_exact(dim) {
        centre.iter_mut().zip(unit(t)).for_each(|(c, x)| *c += x);
    }
    let centre = unit(&centre);
    groups
        .means
        .chunks_exact(dim)
        .zip(groups.counts.iter())
        .map(|(m, &n)| {
            if n == 0 {
                0.0
            } else {
                unit(m).iter().zip(&centre).map(|(a, b)| a * b).sum()
            }
        })
        .collect()
}

/// Non-empty classes in a seeded random order.
pub fn random_classes(groups: &Groups<'_>, seed: u64) -> Vec<u32> {
    let mut order = groups.non_empty();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    order
}

/// A seeded uniform sample of `n` global rows without replacement (skipping rows set in
/// `mask`), in row order.
pub(super) fn random_rows(
    engine: &Engine,
    n: usize,
    mask: Option<&Excluded>,
    seed: u64,
) -> Result<Selection> {
    let eligible: Vec<u32> = (0..engine.rows() as u32)
        .filter(|&r| !mask.is_some_and(|m| m.contains(r)))
        .collect();
    super::check_budget(n, eligible.len())?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows: Vec<u32> = rand::seq::index::sample(&mut rng, eligible.len(), n)
        .into_iter()
        .map(|i| eligible[i])
        .collect();
    rows.sort_unstable();
    let picks = rows
        .into_iter()
        .map(|row| {
            Ok(Pick {
                row,
                class: engine.label(row as usize)?,
                score: 0.0,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Selection::samples(Method::Random, picks, Vec::new()))
}
