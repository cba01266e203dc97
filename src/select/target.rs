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
    /// Target samples with their class labels: one unit of mass per class mean.
    Labelled {
        /// One label per target row.
        labels: Vec<u32>,
        /// Where the labels came from (for errors and the summary).
        origin: PathBuf,
    },
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
        if let TargetKind::Labelled { labels: l, origin } = &self.kind {
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

    /// The units of target mass, `[units, dim]` f64: the rows themselves, or per-class means of
    /// the samples (classes without samples are skipped).
    pub fn units(&self) -> Vec<f64> {
        let f = &self.features;
        match &self.kind {
            TargetKind::Samples | TargetKind::Means => {
                f.data.iter().map(|&x| f64::from(x)).collect()
            }
            TargetKind::Labelled { labels, .. } => {
                let classes = labels.iter().max().map_or(0, |&m| m as usize + 1);
                let mut sums = vec![0f64; classes * f.dim];
                let mut counts = vec![0u64; classes];
                // Zipped with the rows, so a label list of the wrong length cannot index past
                // them (`check` reports that mismatch).
                for (row, &l) in f.data.chunks_exact(f.dim).zip(labels) {
                    counts[l as usize] += 1;
                    sums[l as usize * f.dim..(l as usize + 1) * f.dim]
                        .iter_mut()
                        .zip(row)
                        .for_each(|(s, &x)| *s += f64::from(x));
                }
                sums.chunks_exact(f.dim)
                    .zip(&counts)
                    .filter(|(_, &c)| c > 0)
                    .flat_map(|(s, &c)| s.iter().map(move |x| x / c as f64))
                    .collect()
            }
        }
    }
}
