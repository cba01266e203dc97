//! Orders of weighted items: the largest first, or a seeded draw in proportion to the weights.

use rand::{Rng, SeedableRng};

/// The `n` largest of `w` (ties: lower index first).
pub(super) fn top(w: &[f64], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..w.len()).collect();
    order.sort_by(|&a, &b| w[b].total_cmp(&w[a]).then(a.cmp(&b)));
    order.truncate(n);
    order
}

/// The random stream of a draw: draws of one selection with one seed use different streams,
/// so that their keys are independent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stream {
    /// Touched rows by their plan mass.
    Rows = 0,
    /// (class, row) pairs by their mass, for per-class quotas.
    ClassPairs = 1,
}

/// `n` distinct indices drawn with probability in proportion to `w` (sequential sampling
/// without replacement, as Efraimidis and Spirakis' keys `ln(U) / w`), seeded; best key first.
pub(super) fn draw(w: &[f64], n: usize, seed: u64, stream: Stream) -> Vec<usize> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream as u64);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_seeded_and_streams_independent() {
        let w = vec![1.0; 64];
        let rows = draw(&w, 64, 7, Stream::Rows);
        assert_eq!(rows, draw(&w, 64, 7, Stream::Rows));
        assert_ne!(rows, draw(&w, 64, 8, Stream::Rows));
        // With equal weights a draw is the order of its uniforms: one stream must not repeat
        // the other's.
        assert_ne!(rows, draw(&w, 64, 7, Stream::ClassPairs));
        let mut sorted = rows.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..64).collect::<Vec<_>>());
        // Zero weights come last.
        let mut w = w;
        w[3] = 0.0;
        assert_eq!(draw(&w, 64, 7, Stream::Rows)[63], 3);
    }
}
