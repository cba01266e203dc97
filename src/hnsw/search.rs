//! The beam search shared by construction and queries: distances over the stored vectors
//! ([`Space`]), the greedy descent through the upper levels and SEARCH-LAYER on one level, with
//! a per-thread visited bitset and prefetching of the next candidates.

use super::header::NO_NODE;
use crate::error::{Error, Result};
use crate::score::cand::Cand;
use crate::score::space::{prefetch, Distance};
use std::cell::RefCell;

/// Neighbour lists by node and level; implemented by the mapped graph and the one being built,
/// so construction and queries share one search.
pub(crate) trait Adjacency {
    /// Ids of `node` at `level` (padded with [`NO_NODE`]); an error when the stored layout is
    /// inconsistent.
    fn neighbours(&self, node: u32, level: u32) -> Result<&[u32]>;
}

/// Visited set, one bit per node, with the words a search set so that the next search clears
/// only those: a million nodes take 128 KiB, which stays in a core's L2 cache where a byte per
/// node (1 MiB) kept missing it, and clearing costs what the search touched, not the graph size.
#[derive(Default)]
struct Visited {
    bits: Vec<u64>,
    /// `dirty[..set]` are the indices of the words of `bits` that are not zero. A slot per word
    /// and one more, so that recording a word is a store and an add, never a branch.
    dirty: Vec<u32>,
    set: usize,
}

impl Visited {
    fn reset(&mut self, n: usize) {
        let words = n.div_ceil(64);
        if self.bits.len() != words {
            self.bits = vec![0; words];
            self.dirty = vec![0; words + 1];
        } else {
            for &w in &self.dirty[..self.set] {
                self.bits[w as usize] = 0;
            }
        }
        self.set = 0;
    }

    /// Mark `i` (`i < n`); true when it was not visited yet.
    #[inline]
    fn insert(&mut self, i: usize) -> bool {
        let (w, bit) = (i / 64, 1u64 << (i % 64));
        let word = self.bits[w];
        if word & bit != 0 {
            return false;
        }
        self.bits[w] = word | bit;
        // `set <= words`: each counted word is a distinct non-zero one.
        self.dirty[self.set] = w as u32;
        self.set += usize::from(word == 0);
        true
    }
}

/// The beam of SEARCH-LAYER as one sorted array of at most `ef` nodes (closest first), each
/// flagged (one bit) once expanded, with a cursor at the closest one not expanded yet. It stands
/// for both heaps of the paper's algorithm 2: a candidate outside the best `ef` would never be
/// expanded there either. Small and contiguous, it beats two binary heaps and ends sorted.
#[derive(Default)]
struct Beam {
    /// The nodes as [`Key`]s, ascending.
    keys: Vec<Key>,
    /// Bit `i` set once `keys[i]` is expanded; bits from `keys.len()` on are clear.
    expanded: Flags,
    cap: usize,
    cursor: usize,
    /// Measured nodes outside the beam (turned away or pushed out), kept when the caller asks
    /// for a spill.
    outside: Vec<Cand>,
    keep_outside: bool,
}

/// A [`Cand`] as one integer ordered like it: the distance's bits made monotone (the order of
/// `f32::total_cmp`) above the id. Finding a place in the beam is then a search over plain
/// integers.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Key(u64);

impl Key {
    const SIGN: u32 = 1 << 31;

    #[inline]
    fn of(c: Cand) -> Self {
        let b = c.d.to_bits();
        let mono = if b & Self::SIGN != 0 {
            !b
        } else {
            b | Self::SIGN
        };
        Key(u64::from(mono) << 32 | u64::from(c.id))
    }

    #[inline]
    fn cand(self) -> Cand {
        let mono = (self.0 >> 32) as u32;
        let b = if mono & Self::SIGN != 0 {
            mono & !Self::SIGN
        } else {
            !mono
        };
        Cand {
            d: f32::from_bits(b),
            id: self.0 as u32,
        }
    }
}

impl Beam {
    fn reset(&mut self, cap: usize, keep_outside: bool) {
        self.keys.clear();
        self.expanded.reset(cap);
        self.cap = cap;
        self.cursor = 0;
        self.outside.clear();
        self.keep_outside = keep_outside;
    }

    /// Whether a node at distance `d` would enter the beam.
    #[inline]
    fn admits(&self, d: f32) -> bool {
        self.keys.len() < self.cap || self.keys.last().is_some_and(|w| d < w.cand().d)
    }

    /// Insert `c` in order (dropping the farthest past `cap`).
    #[inline]
    fn insert(&mut self, c: Cand) {
        let key = Key::of(c);
        let at = self.keys.partition_point(|&x| x < key);
        if at >= self.cap {
            return;
        }
        if self.keys.len() == self.cap {
            if let Some(out) = self.keys.pop() {
                self.expanded.clear(self.keys.len());
                if self.keep_outside {
                    self.outside.push(out.cand());
                }
            }
        }
        self.keys.insert(at, key);
        self.expanded.open(at);
        self.cursor = self.cursor.min(at);
    }

    /// The closest node not expanded yet, now marked expanded.
    #[inline]
    fn next(&mut self) -> Option<Cand> {
        let at = self.expanded.first_clear(self.cursor)?;
        let key = self.keys.get(at)?;
        self.expanded.set(at);
        self.cursor = at + 1;
        Some(key.cand())
    }

    /// The nodes, closest first.
    fn cands(&self) -> impl Iterator<Item = Cand> + '_ {
        self.keys.iter().map(|k| k.cand())
    }
}

/// One flag per beam slot, packed 64 to a word, so that inserting into the beam shifts a word or
/// two instead of moving a byte per slot.
#[derive(Default)]
struct Flags(Vec<u64>);

impl Flags {
    /// All clear, room for `cap` slots and the one an insertion pushes past the end.
    fn reset(&mut self, cap: usize) {
        self.0.clear();
        self.0.resize(cap / 64 + 1, 0);
    }

    #[inline]
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    #[inline]
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }

    /// Move every flag from slot `at` on up one slot, leaving `at` clear.
    #[inline]
    fn open(&mut self, at: usize) {
        let w = at / 64;
        for i in (w + 1..self.0.len()).rev() {
            self.0[i] = self.0[i] << 1 | self.0[i - 1] >> 63;
        }
        let below = (1u64 << (at % 64)) - 1;
        let x = self.0[w];
        self.0[w] = x & below | (x & !below) << 1;
    }

    /// The first clear slot at `from` or after (past the beam's end when all are set).
    #[inline]
    fn first_clear(&self, from: usize) -> Option<usize> {
        let w = from / 64;
        let first = !*self.0.get(w)? & (!0u64 << (from % 64));
        std::iter::once(first)
            .chain(self.0[w + 1..].iter().map(|x| !x))
            .enumerate()
            .find(|&(_, bits)| bits != 0)
            .map(|(i, bits)| (w + i) * 64 + bits.trailing_zeros() as usize)
    }
}

/// Per-thread buffers reused across searches.
#[derive(Default)]
struct Scratch {
    visited: Visited,
    beam: Beam,
    /// Unvisited neighbours of the node being expanded.
    fresh: Vec<u32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// A neighbour id read from a list: `None` at the end of the list, an error when out of range.
#[inline]
pub(super) fn checked_id(
    n: u32,
    rows: usize,
    corrupt: &dyn Fn(String) -> Error,
) -> Result<Option<usize>> {
    if n == NO_NODE {
        return Ok(None);
    }
    if n as usize >= rows {
        return Err(corrupt(format!(
            "neighbour id {n} out of range ({rows} rows)"
        )));
    }
    Ok(Some(n as usize))
}

/// Greedy search (ef = 1) from `entry` on levels `top` down to `stop + 1`: the closest node
/// found, which enters level `stop`.
pub(crate) fn descend<A: Adjacency, D: Distance>(
    adj: &A,
    space: &D,
    q: &D::Query,
    entry: u32,
    top: u32,
    stop: u32,
    corrupt: &dyn Fn(String) -> Error,
) -> Result<Cand> {
    let rows = space.rows();
    let e = checked_id(entry, rows, corrupt)?.ok_or_else(|| corrupt("no entry point".into()))?;
    let mut cur = Cand {
        d: space.dist(e, q),
        id: entry,
    };
    let mut level = top;
    while level > stop {
        loop {
            let mut moved = false;
            let list = adj.neighbours(cur.id, level)?;
            // Start loading every neighbour before measuring the first: the misses overlap.
            for &n in list {
                let Some(i) = checked_id(n, rows, corrupt)? else {
                    break;
                };
                space.prefetch(i);
            }
            for &n in list {
                let Some(i) = checked_id(n, rows, corrupt)? else {
                    break;
                };
                let d = space.dist(i, q);
                if d < cur.d {
                    cur = Cand { d, id: n };
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        level -= 1;
    }
    Ok(cur)
}

/// How many nodes [`search_layer`] returns: the beam width `ef`, then the `spill` closest of the
/// nodes measured but left outside the beam (turned away or pushed out), in no order; for a
/// caller that re-ranks approximate distances, whose noise misplaces exactly those.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Width {
    pub ef: usize,
    pub spill: usize,
}

impl Width {
    /// A beam of `ef` and no spill.
    pub fn beam(ef: usize) -> Self {
        Width { ef, spill: 0 }
    }
}

/// Beam search on one level (the paper's SEARCH-LAYER, algorithm 2): the `width.ef` closest
/// nodes to `q` reachable from `entries`, closest first, then the spill (see [`Width`]).
pub(crate) fn search_layer<A: Adjacency, D: Distance>(
    adj: &A,
    space: &D,
    q: &D::Query,
    entries: &[Cand],
    width: Width,
    level: u32,
    corrupt: &dyn Fn(String) -> Error,
) -> Result<Vec<Cand>> {
    SCRATCH.with(|cell| {
        let mut guard = cell.borrow_mut();
        let s = &mut *guard;
        s.visited.reset(space.rows());
        let Width { ef, spill } = width;
        s.beam.reset(ef.max(1), spill > 0);
        for &c in entries {
            checked_id(c.id, space.rows(), corrupt)?;
            if s.visited.insert(c.id as usize) {
                s.beam.insert(c);
            }
        }
        // The two closest nodes not expanded yet are expanded together: the unvisited
        // neighbours of both are marked and start loading before any is measured, so their
        // memory latencies overlap. The second is usually the one expanded next anyway; when a
        // neighbour of the first would have displaced it, the search does a little more work
        // than one at a time, and finds a little more.
        while let Some(first) = s.beam.next() {
            let second = s.beam.next();
            // Mark and start loading the unvisited neighbours, then measure them.
            s.fresh.clear();
            for c in std::iter::once(first).chain(second) {
                for &n in adj.neighbours(c.id, level)? {
                    let Some(i) = checked_id(n, space.rows(), corrupt)? else {
                        break;
                    };
                    if s.visited.insert(i) {
                        space.prefetch(i);
                        s.fresh.push(n);
                    }
                }
            }
            for &n in &s.fresh {
                let c = Cand {
                    d: space.dist(n as usize, q),
                    id: n,
                };
                if s.beam.admits(c.d) {
                    s.beam.insert(c);
                    // Expanded soon, likely: start loading its list.
                    if let Ok(l) = adj.neighbours(c.id, level) {
                        prefetch(l.as_ptr(), std::mem::size_of_val(l));
                    }
                } else if s.beam.keep_outside {
                    s.beam.outside.push(c);
                }
            }
        }
        let mut out: Vec<Cand> = s.beam.cands().collect();
        let outside = &mut s.beam.outside;
        if outside.len() > spill {
            outside.select_nth_unstable(spill);
            outside.truncate(spill);
        }
        out.extend_from_slice(outside);
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points on a line, each linked to every other: the beam sees every point.
    struct Line(Vec<f32>, Vec<Vec<u32>>);

    impl Line {
        fn new(xs: &[f32]) -> Self {
            let n = xs.len() as u32;
            let lists = (0..n)
                .map(|i| (0..n).filter(|&j| j != i).collect())
                .collect();
            Line(xs.to_vec(), lists)
        }
    }

    impl Adjacency for Line {
        fn neighbours(&self, node: u32, _: u32) -> Result<&[u32]> {
            Ok(&self.1[node as usize])
        }
    }

    impl Distance for Line {
        type Query = f32;
        fn rows(&self) -> usize {
            self.0.len()
        }
        fn dist(&self, i: usize, q: &f32) -> f32 {
            (self.0[i] - q).abs()
        }
        fn prefetch(&self, _: usize) {}
    }

    fn ids(c: &[Cand]) -> Vec<u32> {
        c.iter().map(|c| c.id).collect()
    }

    #[test]
    fn keys_order_like_candidates_and_give_them_back() {
        let ds = [
            f32::NEG_INFINITY,
            -3.5,
            -1e-30,
            -0.0,
            0.0,
            1e-30,
            2.25,
            f32::INFINITY,
            f32::NAN,
        ];
        let cands: Vec<Cand> = ds
            .iter()
            .flat_map(|&d| [7, 0, u32::MAX].map(|id| Cand { d, id }))
            .collect();
        for a in &cands {
            let back = Key::of(*a).cand();
            assert_eq!((back.d.to_bits(), back.id), (a.d.to_bits(), a.id));
            for b in &cands {
                assert_eq!(Key::of(*a).cmp(&Key::of(*b)), a.cmp(b), "{a:?} {b:?}");
            }
        }
    }

    proptest::proptest! {
        /// The beam (sorted keys, packed flags, cursor) against a plain sorted list of
        /// (candidate, expanded) pairs, with caps on both sides of a flag word's 64 slots.
        #[test]
        fn the_beam_matches_a_sorted_list(
            cap in 1usize..140,
            ops in proptest::collection::vec(proptest::option::of(0u16..500), 0..400),
        ) {
            let mut beam = Beam::default();
            beam.reset(cap, false);
            let mut model: Vec<(Cand, bool)> = Vec::new();
            for (id, op) in ops.into_iter().enumerate() {
                match op {
                    Some(d) => {
                        let c = Cand { d: f32::from(d), id: id as u32 };
                        beam.insert(c);
                        let at = model.partition_point(|(x, _)| *x < c);
                        if at < cap {
                            model.insert(at, (c, false));
                            model.truncate(cap);
                        }
                    }
                    None => {
                        let want = model.iter_mut().find(|(_, e)| !*e).map(|(c, e)| {
                            *e = true;
                            *c
                        });
                        proptest::prop_assert_eq!(beam.next(), want);
                    }
                }
                let cands: Vec<Cand> = beam.cands().collect();
                let want: Vec<Cand> = model.iter().map(|(c, _)| *c).collect();
                proptest::prop_assert_eq!(cands, want);
            }
        }
    }

    proptest::proptest! {
        /// The visited bits against a set, across searches of graphs of several sizes (the
        /// clearing of the words a search set, and the word-count slot when every word is set).
        #[test]
        fn the_visited_set_matches_a_set(
            searches in proptest::collection::vec(
                (1usize..300, proptest::collection::vec(0usize..300, 0..400)),
                1..8,
            ),
        ) {
            let mut visited = Visited::default();
            for (n, marks) in searches {
                visited.reset(n);
                let mut model = std::collections::HashSet::new();
                for i in marks.into_iter().map(|i| i % n) {
                    proptest::prop_assert_eq!(visited.insert(i), model.insert(i));
                }
            }
        }
    }

    #[test]
    fn the_beam_ends_sorted_and_the_spill_is_the_nearest_left_outside() {
        let line = Line::new(&[9.0, 3.0, 7.0, 1.0, 5.0, 8.0, 2.0, 6.0, 4.0, 0.0]);
        let corrupt = |p: String| Error::invalid(p);
        let start = [Cand { d: 9.0, id: 0 }];
        let found = search_layer(&line, &line, &0.0, &start, Width::beam(3), 0, &corrupt).unwrap();
        assert_eq!(ids(&found), [9, 3, 6]);
        let width = Width { ef: 3, spill: 2 };
        let found = search_layer(&line, &line, &0.0, &start, width, 0, &corrupt).unwrap();
        let (beam, spill) = found.split_at(3);
        assert_eq!(ids(beam), [9, 3, 6]);
        let mut spill = ids(spill);
        spill.sort_unstable();
        // The rows at 3 and 4: the nearest measured outside the beam.
        assert_eq!(spill, [1, 8]);
        // A spill wider than what was pushed out returns all of it, nothing twice.
        let width = Width { ef: 3, spill: 100 };
        let all = search_layer(&line, &line, &0.0, &start, width, 0, &corrupt).unwrap();
        let mut every = ids(&all);
        every.sort_unstable();
        every.dedup();
        assert_eq!(every.len(), all.len());
    }
}
