//! A candidate of a nearest-neighbour search: a row and its distance to the query, ordered so
//! that sorts and heaps of candidates are deterministic. Shared by the graph and the partitions.

use std::cmp::Ordering;

/// A node and its distance to the query; ordered by distance, then id (deterministic ties).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cand {
    pub d: f32,
    pub id: u32,
}
impl Eq for Cand {}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> Ordering {
        self.d.total_cmp(&o.d).then(self.id.cmp(&o.id))
    }
}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
