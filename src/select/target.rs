//! The target task: its features and what their rows are (samples, class means, labelled
//! samples), checked against the index and turned into units of target mass.

use crate::error::{Error, Result};
use crate::npy::Matrix;
use std::path::PathBuf;

/// What the rows of the target matrix are.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetKind {
    /// Target samples, each its own unit of mass.
    Samples,
    /// One mean per target class (as the authors store them).
    Means,
    /// Target samples with their class labels: one unit per class mean of mass `w_c` (class-level
    /// methods); for uot-knn, column masses `b_j = w_c / n_c` and a share of the budget per
    /// class. Masses are scaled to one per unit (class or sample) in all.
    Labelled {
        /// One label per target row.
        labels: Vec<u32>,
        /// Where the labels came from (for errors and the summary).
        origin: PathBuf,
        /// The class weights `w_c`, indexed by label (`None`: every class weighs the same).
        weights: Option<ClassWeights>,
    },
}

/// Per-class weights of a labelled target (uot and uot-knn).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassWeights {
    /// `values[c]` for label `c`: finite, positive for every label the target has.
    pub values: Vec<f32>,
    /// Where they came from (for errors and the summary).
    pub origin: PathBuf,
}

/// The classes of a labelled target as uot-knn weighs them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TargetClasses {
    /// Class of every target row (`0..labels.len()`).
    pub of_row: Vec<usize>,
    /// Label of each class, ascending.
    pub labels: Vec<u32>,
    /// Rows of each class.
    pub counts: Vec<usize>,
    /// Share of each class in the target mass and the budget (summing to 1).
    pub shares: Vec<f64>,
}

/// The target task's features.
#[derive(Debug, Clone)]
pub struct Target {
    /// Row-major features (raw, unnormalised).
    pub features: Matrix,
    /// What the rows are.
    pub kind: TargetKind,
    /// Where the features came from (for errors).
    pub origin: PathBuf,
}

impl Target {
    /// Check the target against an index of dimension `dim`.
    pub(super) fn check(&self, dim: usize) -> Result<()> {
        let f = &self.features;
        if f.rows == 0 {
            return Err(Error::input(&self.origin, "the target has no rows"));
        }
        if f.dim != dim {
            return Err(Error::input(
                &self.origin,
                format!("target features are {}-d but the index is {dim}-d", f.dim),
            ));
        }
        if let Some(i) = f.data.iter().position(|x| !x.is_finite()) {
            return Err(Error::input(
                &self.origin,
                format!(
                    "row {} column {} is {} (features must be finite)",
                    i / dim,
                    i % dim,
                    f.data[i]
                ),
            ));
        }
        if let TargetKind::Labelled {
            labels: l,
            origin,
            weights,
        } = &self.kind
        {
            if let Some(w) = weights {
                check_weights(l, w)?;
            }
            if l.len() != f.rows {
                return Err(Error::input(
                    origin,
                    format!(
                        "{} target labels for the {} rows of {}",
                        l.len(),
                        f.rows,
                        self.origin.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The classes of a labelled target (`None` for other kinds).
    pub(crate) fn classes(&self) -> Option<TargetClasses> {
        let TargetKind::Labelled {
            labels, weights, ..
        } = &self.kind
        else {
            return None;
        };
        let mut present = labels.clone();
        present.sort_unstable();
        present.dedup();
        let class = |l: u32| present.binary_search(&l).unwrap_or(0);
        let of_row: Vec<usize> = labels.iter().map(|&l| class(l)).collect();
        let mut counts = vec![0; present.len()];
        of_row.iter().for_each(|&c| counts[c] += 1);
        let w: Vec<f64> = present
            .iter()
            .map(|&l| {
                weights
                    .as_ref()
                    .map_or(1.0, |w| f64::from(w.values[l as usize]))
            })
            .collect();
        let total: f64 = w.iter().sum();
        Some(TargetClasses {
            of_row,
            labels: present,
            counts,
            shares: w.iter().map(|x| x / total).collect(),
        })
    }

    /// The mass of each of [`Self::units`] when a labelled target weighs its classes: `w_c`
    /// scaled to one per class in all. `None` when every unit weighs 1.
    pub(crate) fn unit_masses(&self) -> Option<Vec<f64>> {
        let TargetKind::Labelled {
            weights: Some(_), ..
        } = &self.kind
        else {
            return None;
        };
        let c = self.classes()?;
        let n = c.shares.len() as f64;
        Some(c.shares.iter().map(|s| s * n).collect())
    }

    /// The units of target mass, `[units, dim]` f64: the rows themselves, or per-class means of
    /// the samples (classes without samples are skipped).
    pub fn units(&self) -> Vec<f64> {
        let f = &self.features;
        // Sized by the labels present, not the largest label (a label of 4e9 must not allocate
        // 4e9 sums).
        let Some(c) = self.classes() else {
            return f.data.iter().map(|&x| f64::from(x)).collect();
        };
        let mut sums = vec![0f64; c.counts.len() * f.dim];
        for (row, &k) in f.data.chunks_exact(f.dim).zip(&c.of_row) {
            sums[k * f.dim..(k + 1) * f.dim]
                .iter_mut()
                .zip(row)
                .for_each(|(s, &x)| *s += f64::from(x));
        }
        sums.chunks_exact_mut(f.dim)
            .zip(&c.counts)
            .for_each(|(s, &n)| s.iter_mut().for_each(|x| *x /= n as f64));
        sums
    }
}

/// An error unless `w` weighs every label of `labels` with a finite positive value.
fn check_weights(labels: &[u32], w: &ClassWeights) -> Result<()> {
    if let Some((c, v)) = w
        .values
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite() || **v < 0.0)
    {
        return Err(Error::input(
            &w.origin,
            format!("the weight of class {c} is {v} (weights must be finite and not negative)"),
        ));
    }
    for &l in labels {
        match w.values.get(l as usize) {
            None => {
                return Err(Error::input(
                    &w.origin,
                    format!(
                    "{} weights, but the target has label {l} (one weight per label value, from 0)",
                    w.values.len()
                ),
                ))
            }
            Some(&v) if v <= 0.0 => {
                return Err(Error::input(
                    &w.origin,
                    format!("target class {l} has weight 0 (drop its samples instead)"),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Class means in label order, sized by the labels present: a label near `u32::MAX`
    /// allocates one mean, not four billion.
    #[test]
    fn labelled_units_are_the_means_of_the_labels_present() {
        let target = Target {
            features: Matrix {
                data: vec![1.0, 2.0, 3.0, 5.0, 5.0, 6.0],
                rows: 3,
                dim: 2,
            },
            kind: TargetKind::Labelled {
                labels: vec![u32::MAX - 1, 7, u32::MAX - 1],
                origin: "l.npy".into(),
                weights: None,
            },
            origin: "t.npy".into(),
        };
        target.check(2).unwrap();
        assert_eq!(target.units(), [3.0, 5.0, 3.0, 4.0]);
    }
}
