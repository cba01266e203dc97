//! Per-class quotas of a labelled target in uot-knn: each target class gets its share of the
//! budget, filled with the rows that carry the most plan mass towards that class's samples (or,
//! with a drawn sample, rows drawn in proportion to that mass).

use super::order::Stream;
use super::target::TargetClasses;
use crate::uot::{SparseCost, SparsePlan};

/// The shares of `budget` rows per class by largest remainder (ties: the lower class).
fn quotas(shares: &[f64], budget: usize) -> Vec<usize> {
    let exact: Vec<f64> = shares.iter().map(|s| s * budget as f64).collect();
    let mut q: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut by_rest: Vec<usize> = (0..q.len()).collect();
    by_rest.sort_by(|&a, &b| {
        (exact[b] - q[b] as f64)
            .total_cmp(&(exact[a] - q[a] as f64))
            .then(a.cmp(&b))
    });
    let missing = budget.saturating_sub(q.iter().sum());
    by_rest.iter().take(missing).for_each(|&c| q[c] += 1);
    q
}

/// The rows of `g` (touched rows) in the order the budget takes them: first each class's quota
/// of the rows carrying the most plan mass towards its target samples (a row serves one class:
/// the pairs are taken by mass, highest first, ties to the lower row; with `sample = Some(seed)`
/// in the order of a seeded draw in proportion to that mass), then every other row in `rest`
/// order. Returns the order and, for each row, the class whose quota took it (`None`: the rest).
pub(super) fn order(
    g: &SparseCost,
    plan: &SparsePlan,
    classes: &TargetClasses,
    budget: usize,
    rest: &[usize],
    sample: Option<u64>,
) -> (Vec<usize>, Vec<Option<usize>>) {
    let cls = classes.labels.len();
    // (class, row, mass) for every edge, then summed per (class, row).
    let mut pairs: Vec<(usize, u32, f64)> = Vec::with_capacity(plan.plan.len());
    let mut at = 0;
    for j in 0..g.cols() {
        let (rows, _) = g.column(j);
        let c = classes.of_row[j];
        pairs.extend(rows.iter().zip(&plan.plan[at..]).map(|(&r, &m)| (c, r, m)));
        at += rows.len();
    }
    pairs.sort_unstable_by_key(|p| (p.0, p.1));
    let mut merged: Vec<(usize, u32, f64)> = Vec::with_capacity(pairs.len());
    for (c, r, m) in pairs {
        match merged.last_mut() {
            Some(last) if (last.0, last.1) == (c, r) => last.2 += m,
            _ => merged.push((c, r, m)),
        }
    }
    merged.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.1.cmp(&b.1)).then(a.0.cmp(&b.0)));
    if let Some(seed) = sample {
        let mass: Vec<f64> = merged.iter().map(|p| p.2).collect();
        let drawn = super::order::draw(&mass, mass.len(), seed, Stream::ClassPairs);
        merged = drawn.into_iter().map(|i| merged[i]).collect();
    }
    let quota = quotas(&classes.shares, budget);
    let mut taken = vec![0usize; cls];
    let mut owner = vec![None; g.rows()];
    let mut order = Vec::with_capacity(g.rows());
    for (c, r, _) in merged {
        if taken[c] < quota[c] && owner[r as usize].is_none() {
            owner[r as usize] = Some(c);
            taken[c] += 1;
            order.push(r as usize);
        }
    }
    order.extend(rest.iter().filter(|&&r| owner[r].is_none()));
    (order, owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_split_the_budget_by_largest_remainder() {
        assert_eq!(quotas(&[0.5, 0.5], 10), vec![5, 5]);
        assert_eq!(quotas(&[0.75, 0.25], 10), vec![8, 2]);
        assert_eq!(quotas(&[1.0 / 3.0; 3], 10), vec![4, 3, 3]);
        assert_eq!(quotas(&[0.9, 0.1], 0), vec![0, 0]);
    }
}
