//! Orders of weighted items: the largest first, or a seeded draw in proportion to the weights.

use rand::{Rng, SeedableRng};

/// The `n` largest of `w` (ties: lower index first).
pub(super) fn top(w: &[f64], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..w.len()).collect();
    order.sort_by(|&a, &b| w[b].total_cmp(&w[a]).then(a.cmp(&b)));
    order.truncate(n);
    order
}

/// `n` distinct indices drawn with probability in proportion to `w` (sequential sampling
/// without replacement, as Efraimidis and Spirakis' keys `ln(U) / w`), seeded; best key first.
pub(super) fn draw(w: &[f64], n: usize, seed: u64) -> Vec<usize> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let keys: Vec<f64> = w
        .iter()
        .map(|&w| {
            let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
            if w > 0.0 {
                u.ln() / w
            } else {
                f64::NEG_INFINITY
            }
        })
        .collect();
    top(&keys, n)
}
