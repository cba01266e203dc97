//! The candidates of a partitioned search: the `keep` nearest of every scanned row's distance,
//! gathered without a heap.

use crate::score::cand::Cand;

/// Distances offered per pass of the gathering loop.
const CHUNK: usize = 64;

/// The `keep` nearest of the distances offered (ties to the lower position). Distances not
/// above the bar are appended without a branch; when `2 keep` have gathered, the `keep`
/// nearest are selected (`select_nth_unstable`, linear) and the bar drops to the farthest of
/// them. A heap would pay a sift for most rows that enter; most rows here never pass the bar.
pub(super) struct Shortlist {
    keep: usize,
    buf: Vec<Cand>,
    len: usize,
    bar: f32,
}

impl Shortlist {
    /// An empty list that keeps `keep` (at least 1) candidates; the caller bounds `keep` (by
    /// the rows there are), the list holds `2 keep + 64`.
    pub fn new(keep: usize) -> Self {
        let keep = keep.max(1);
        Shortlist {
            keep,
            buf: vec![Cand { d: 0.0, id: 0 }; 2 * keep + CHUNK],
            len: 0,
            bar: f32::INFINITY,
        }
    }

    /// Offer `dists`, the distances of positions `first`, `first + 1`, ... A NaN distance (only
    /// a damaged section makes one) counts as infinite: kept only while there is room, to be
    /// measured exactly, and never the bar.
    pub fn offer(&mut self, first: usize, dists: &[f32]) {
        for (c, chunk) in dists.chunks(CHUNK).enumerate() {
            let at = first + c * CHUNK;
            let (mut n, bar) = (self.len, self.bar);
            for (i, &d) in chunk.iter().enumerate() {
                let d = if d.is_nan() { f32::INFINITY } else { d };
                // n < 2 keep + CHUNK: at most 2 keep - 1 before the chunk, then one per value.
                self.buf[n] = Cand {
                    d,
                    id: (at + i) as u32,
                };
                n += usize::from(d <= bar);
            }
            self.len = n;
            if n >= 2 * self.keep {
                self.shrink();
            }
        }
    }

    /// Keep the `keep` nearest gathered and lower the bar to the farthest of them.
    fn shrink(&mut self) {
        if self.len > self.keep {
            let kept = &mut self.buf[..self.len];
            kept.select_nth_unstable(self.keep - 1);
            self.len = self.keep;
            self.bar = kept[self.keep - 1].d;
        }
    }

    /// The kept candidates, in no particular order.
    pub fn into_vec(mut self) -> Vec<Cand> {
        self.shrink();
        self.buf.truncate(self.len);
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The list holds exactly the `keep` smallest (distance, position) pairs, whatever the
        /// order and the split of the offers.
        #[test]
        fn keeps_the_nearest(d in proptest::collection::vec(0u8..40, 0..400), keep in 1usize..50, split in 0usize..400) {
            let dists: Vec<f32> = d.iter().map(|&x| f32::from(x)).collect();
            let split = split.min(dists.len());
            let mut list = Shortlist::new(keep);
            list.offer(0, &dists[..split]);
            list.offer(split, &dists[split..]);
            let mut got = list.into_vec();
            got.sort_unstable();
            let mut want: Vec<Cand> = dists.iter().enumerate().map(|(i, &d)| Cand { d, id: i as u32 }).collect();
            want.sort_unstable();
            want.truncate(keep);
            prop_assert_eq!(got, want);
        }
    }

    /// NaN distances never block finite ones, however many come first.
    #[test]
    fn nan_distances_rank_last() {
        let mut list = Shortlist::new(10);
        list.offer(0, &[f32::NAN; 40]);
        let finite: Vec<f32> = (0..100).map(|i| i as f32).collect();
        list.offer(40, &finite);
        let mut got: Vec<u32> = list.into_vec().iter().map(|c| c.id).collect();
        got.sort_unstable();
        assert_eq!(got, (40..50).collect::<Vec<u32>>());
    }
}
