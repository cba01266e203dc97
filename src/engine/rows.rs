//! Questions about global rows and classes, answered by the shard that holds the row, and the
//! class statistics of a corpus, merged from its shards.

use super::Engine;
use crate::corpus::Shard;
use crate::error::{Error, Result};
use crate::score::{Device, Scorer};
use std::borrow::Cow;
use std::ops::Range;

impl Engine {
    /// The shard holding global `row`, and the row's number inside it.
    pub fn locate(&self, row: usize) -> Result<(&Shard, usize)> {
        if row >= self.rows() {
            return Err(Error::invalid(format!(
                "row {row} out of range ({} rows)",
                self.rows()
            )));
        }
        // Shard 0 starts at row 0, so the partition point is at least 1.
        let shards = self.shards();
        let s = &shards[shards.partition_point(|s| s.first_row() <= row) - 1];
        Ok((s, row - s.first_row()))
    }

    /// Global `row` as a unit vector in `out` (`dim` values; a zero row stays zero).
    pub fn unit_row(&self, row: usize, out: &mut [f32]) -> Result<()> {
        let (shard, local) = self.locate(row)?;
        crate::kmeans::unit_row(&shard.index().vectors(), local, self.dim(), out);
        Ok(())
    }

    /// Checked class label of global `row` (see [`crate::Index::label`]).
    pub fn label(&self, row: usize) -> Result<Option<u32>> {
        let (s, r) = self.locate(row)?;
        s.index().label(r)
    }

    /// Id of global `row`: the id its shard stores, or the global row number when its shard
    /// stores none.
    pub fn id(&self, row: usize) -> Result<Cow<'_, str>> {
        let (s, r) = self.locate(row)?;
        if s.index().meta().has_ids {
            s.index().id(r)
        } else {
            Ok(row.to_string().into())
        }
    }

    /// The stored vector of global `row` (unit-normalised for cos) as f32, into `out` (`dim`).
    pub fn row_into(&self, row: usize, out: &mut [f32]) -> Result<()> {
        let (s, r) = self.locate(row)?;
        if out.len() != self.dim() {
            return Err(Error::invalid(format!(
                "a row has {} values, not {}",
                self.dim(),
                out.len()
            )));
        }
        s.index().vectors().row_into(r, self.dim(), out);
        Ok(())
    }

    /// Samples per class and the class means of the raw features (`[classes, dim]` f64). For a
    /// corpus: counts add and class sums (mean x count) add in f64 in shard order, so the same
    /// shards always give the same means; made on first use and kept.
    pub fn class_stats(&self) -> (&[u64], &[f64]) {
        if self.corpus().is_none() {
            let index = self.first();
            return (index.class_counts(), index.class_means());
        }
        let (counts, means) = self.inner.class_stats.get_or_init(|| self.merged_stats());
        (counts, means)
    }

    fn merged_stats(&self) -> (Vec<u64>, Vec<f64>) {
        let (classes, dim) = (self.classes(), self.dim());
        let mut counts = vec![0u64; classes];
        let mut sums = vec![0f64; classes * dim];
        for s in self.shards() {
            let index = s.index();
            // A shard's classes are at most the corpus's (checked at open): zip stops there.
            let shard = index
                .class_counts()
                .iter()
                .zip(index.class_means().chunks_exact(dim));
            for ((count, sum), (&n, mean)) in
                counts.iter_mut().zip(sums.chunks_exact_mut(dim)).zip(shard)
            {
                *count += n;
                sum.iter_mut()
                    .zip(mean)
                    .for_each(|(s, m)| *s += m * n as f64);
            }
        }
        for (sum, &n) in sums.chunks_exact_mut(dim).zip(&counts) {
            if n > 0 {
                sum.iter_mut().for_each(|s| *s /= n as f64);
            }
        }
        (counts, sums)
    }

    /// The global rows of the shards `shards` whose cosine to some test feature of `test`
    /// (`[n, dim]`, raw) reaches `threshold`, ascending: scored on the CPU, shard by shard.
    pub fn near_duplicates(
        &self,
        shards: Range<usize>,
        test: &[f32],
        threshold: f32,
    ) -> Result<Vec<u32>> {
        let mut rows = Vec::new();
        for i in self.shard_range(shards)? {
            let first = self.shards()[i].first_row() as u32;
            let best = self.scorer(i, Device::Cpu)?.max_similarity(test)?;
            rows.extend(
                (first..)
                    .zip(best)
                    .filter(|&(_, s)| s >= threshold)
                    .map(|(r, _)| r),
            );
        }
        Ok(rows)
    }
}
