//! A candidate of a nearest-neighbour search: a row and its distance to the query, ordered so
//! that sorts and heaps of candidates are deterministic. Shared by the graph, the partitions
//! and exact scoring's top-k lists (which rank similarities: [`Cand::of_sim`]).

use std::cmp::Ordering;

/// A node and its distance to the query; ordered by distance, then id (deterministic ties).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cand {
    pub d: f32,
    pub id: u32,
}
impl Cand {
    /// The candidate of row `id` with similarity `sim` (higher is closer): its distance is
    /// `-sim`, exactly, so candidates order closest first and ties to the lower id either way.
    pub fn of_sim(sim: f32, id: u32) -> Self {
        Cand { d: -sim, id }
    }

    /// The similarity of a candidate made by [`Cand::of_sim`].
    pub fn sim(&self) -> f32 {
        -self.d
    }
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
