//! The HNSW section layout and its validated view over the mapping, searched with the beam
//! search of [`super::search`].
//!
//! ```text
//! 0..64     GraphHeader (see `GraphHeader::to_bytes` for every byte)
//! 64..      level 0: [rows, m0] u32 neighbour ids, a list ends at the first NO_NODE
//!           upper_ids: [upper] u32, ascending ids of the nodes whose level is >= 1
//!           upper_offsets: [upper + 1] u32, node i owns lists offsets[i]..offsets[i+1]
//!                          (its levels 1..=L, one list of m slots each)
//!           upper_lists: [lists, m] u32 neighbour ids, NO_NODE padded
//! ```
//!
//! Opening checks the header and that the section length is exactly the size these counts give
//! (checked arithmetic); nothing is scanned. Every id and offset read while searching is checked
//! before use, so a corrupted section is an `Error::Corrupt`, never a panic or a wild read.

use super::search::{checked_id, descend, search_layer, Adjacency, Cand, Space};
use crate::error::{Error, Result};
use crate::format::{Metric, SectionKind};
use crate::score::Neighbors;
use crate::store::Index;
use rayon::prelude::*;

/// Padding of neighbour lists.
pub const NO_NODE: u32 = u32::MAX;
/// Magic bytes of the graph section.
pub const GRAPH_MAGIC: [u8; 8] = *b"PTSHNSW\0";
/// Layout version of the graph section.
pub const GRAPH_VERSION: u32 = 1;
/// Length of the graph header.
pub const GRAPH_HEADER_LEN: usize = 64;
/// Highest level accepted (levels are drawn with mL = 1/ln M; 16 is never reached in practice).
pub const MAX_LEVEL: u32 = 16;
/// Largest M accepted (level-0 lists hold 2 M ids).
pub const MAX_M: u32 = 256;

/// The fixed header of the graph section: construction parameters, entry point and the counts
/// of the post-build checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphHeader {
    /// Neighbours per node on levels >= 1 (the paper's M).
    pub m: u32,
    /// Neighbour slots per node on level 0 (M_max0 = 2 M).
    pub m0: u32,
    /// Beam width used at construction (efConstruction).
    pub ef_construction: u32,
    /// Seed of the level draws and insertion order.
    pub seed: u64,
    /// Metric the graph was built for (must match the index).
    pub metric: Metric,
    /// Entry point (a node of level `max_level`).
    pub entry: u32,
    /// Top level of the graph.
    pub max_level: u32,
    /// Nodes with a level >= 1.
    pub upper_nodes: u32,
    /// Neighbour lists on levels >= 1.
    pub upper_lists: u32,
    /// Rows the graph covers (must equal the index's).
    pub rows: u32,
    /// Points not reachable from the entry point on level 0 after construction, now repaired.
    pub unreachable_repaired: u32,
    /// Points whose own vector did not find them, now repaired.
    pub self_recall_repaired: u32,
}

fn metric_code(m: Metric) -> u32 {
    match m {
        Metric::Cos => 1,
        Metric::Ip => 2,
        Metric::L2 => 3,
    }
}

impl GraphHeader {
    /// Serialise to the 64-byte form.
    pub fn to_bytes(&self) -> [u8; GRAPH_HEADER_LEN] {
        let mut b = [0u8; GRAPH_HEADER_LEN];
        b[0..8].copy_from_slice(&GRAPH_MAGIC); // magic
        let words: [(usize, u32); 12] = [
            (8, GRAPH_VERSION),
            (12, self.m),
            (16, self.m0),
            (20, self.ef_construction),
            // 24..32: seed (u64), below
            (32, metric_code(self.metric)),
            (36, self.entry),
            (40, self.max_level),
            (44, self.upper_nodes),
            (48, self.upper_lists),
            (52, self.rows),
            (56, self.unreachable_repaired),
            (60, self.self_recall_repaired),
        ];
        for (at, w) in words {
            b[at..at + 4].copy_from_slice(&w.to_le_bytes());
        }
        b[24..32].copy_from_slice(&self.seed.to_le_bytes());
        b
    }

    /// Parse and check the header fields that do not depend on the index.
    pub fn from_bytes(b: &[u8]) -> std::result::Result<Self, String> {
        let b: &[u8; GRAPH_HEADER_LEN] = b
            .get(..GRAPH_HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or("section shorter than its header")?;
        if b[0..8] != GRAPH_MAGIC {
            return Err("bad magic bytes".into());
        }
        let w = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        if w(8) != GRAPH_VERSION {
            return Err(format!(
                "graph layout version {} (this build reads {GRAPH_VERSION})",
                w(8)
            ));
        }
        let metric = match w(32) {
            1 => Metric::Cos,
            2 => Metric::Ip,
            3 => Metric::L2,
            c => return Err(format!("unknown metric code {c}")),
        };
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&b[24..32]);
        let h = GraphHeader {
            m: w(12),
            m0: w(16),
            ef_construction: w(20),
            seed: u64::from_le_bytes(seed),
            metric,
            entry: w(36),
            max_level: w(40),
            upper_nodes: w(44),
            upper_lists: w(48),
            rows: w(52),
            unreachable_repaired: w(56),
            self_recall_repaired: w(60),
        };
        if h.m < 2 || h.m > MAX_M || h.m0 < h.m || h.m0 > 2 * MAX_M {
            return Err(format!("M = {} / M0 = {} out of range", h.m, h.m0));
        }
        if h.max_level > MAX_LEVEL {
            return Err(format!("max level {} (at most {MAX_LEVEL})", h.max_level));
        }
        if h.entry >= h.rows || h.upper_nodes > h.rows {
            return Err(format!(
                "entry {} / {} upper nodes for {} rows",
                h.entry, h.upper_nodes, h.rows
            ));
        }
        Ok(h)
    }

    /// Exact section length these counts imply, `None` on overflow.
    pub fn section_len(&self) -> Option<u64> {
        let level0 = u64::from(self.rows).checked_mul(u64::from(self.m0))?;
        let upper = u64::from(self.upper_lists).checked_mul(u64::from(self.m))?;
        let ids = level0
            .checked_add(u64::from(self.upper_nodes).checked_mul(2)?.checked_add(1)?)?
            .checked_add(upper)?;
        ids.checked_mul(4)?.checked_add(GRAPH_HEADER_LEN as u64)
    }
}

/// The HNSW graph of an index, used in place through the mapping.
///
/// ```no_run
/// # fn main() -> ptsel::Result<()> {
/// let index = ptsel::Index::open("index-data/corpus.ptsel")?;
/// let graph = ptsel::hnsw::Graph::open(&index)?.expect("built without --no-hnsw");
/// let queries = vec![0.0f32; 3 * index.dim()]; // [nq, dim] row-major, raw (not normalised)
/// let nn = graph.search_batch(&queries, 10, 64)?; // k = 10, ef = 64
/// println!("{:?} {:?}", nn.ids_of(0), nn.scores_of(0));
/// # Ok(()) }
/// ```
pub struct Graph<'a> {
    index: &'a Index,
    space: Space<'a>,
    header: GraphHeader,
    level0: &'a [u32],
    upper_ids: &'a [u32],
    upper_offsets: &'a [u32],
    upper_lists: &'a [u32],
}

impl std::fmt::Debug for Graph<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("path", &self.index.path())
            .field("header", &self.header)
            .finish()
    }
}

impl<'a> Graph<'a> {
    /// The graph of `index`: `Ok(None)` when the index has no HNSW section, an error when the
    /// section is inconsistent with itself or the index. O(1): only the header is read.
    pub fn open(index: &'a Index) -> Result<Option<Self>> {
        let Some(bytes) = index.section_bytes(SectionKind::Hnsw) else {
            return Ok(None);
        };
        let corrupt = |p: String| Error::corrupt(index.path(), "hnsw", p);
        let header = GraphHeader::from_bytes(bytes).map_err(corrupt)?;
        if header.rows as usize != index.rows() {
            return Err(corrupt(format!(
                "graph covers {} rows, the index has {}",
                header.rows,
                index.rows()
            )));
        }
        if header.metric != index.metric() {
            return Err(corrupt(format!(
                "graph built for metric {}, the index uses {}",
                header.metric.name(),
                index.metric().name()
            )));
        }
        match header.section_len() {
            Some(len) if len == bytes.len() as u64 => {}
            want => {
                return Err(corrupt(format!(
                    "{} bytes, the header implies {}",
                    bytes.len(),
                    want.map_or("an impossible size".into(), |w| w.to_string())
                )))
            }
        }
        let ids: &[u32] = bytes
            .get(GRAPH_HEADER_LEN..)
            .and_then(|b| bytemuck::try_cast_slice(b).ok())
            .ok_or_else(|| corrupt("misaligned".into()))?;
        // Lengths follow from the exact size check above.
        let (level0, rest) = ids.split_at(header.rows as usize * header.m0 as usize);
        let (upper_ids, rest) = rest.split_at(header.upper_nodes as usize);
        let (upper_offsets, upper_lists) = rest.split_at(header.upper_nodes as usize + 1);
        Ok(Some(Graph {
            index,
            space: Space::of(index),
            header,
            level0,
            upper_ids,
            upper_offsets,
            upper_lists,
        }))
    }

    /// Header fields (parameters, entry point, repair counts).
    pub fn header(&self) -> &GraphHeader {
        &self.header
    }

    fn corrupt(&self, problem: String) -> Error {
        Error::corrupt(self.index.path(), "hnsw", problem)
    }

    /// The `k` nearest rows of one raw query (`dim` values), best first, with scores in the
    /// metric's unit (see [`Neighbors`]). `ef` (raised to `k` if lower) trades speed for recall.
    /// Always exactly `k` rows: a graph in which fewer than `k` rows can be reached from the
    /// entry point (which the build's repair rules out) is an `Error::Corrupt`.
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Result<(Vec<u32>, Vec<f32>)> {
        let sp = &self.space;
        if query.len() != sp.dim {
            return Err(Error::invalid(format!(
                "query has {} values, the index has dimension {}",
                query.len(),
                sp.dim
            )));
        }
        if k == 0 || k > sp.rows {
            return Err(Error::invalid(format!(
                "k = {k} must be between 1 and the number of rows ({})",
                sp.rows
            )));
        }
        let q = sp.prepare(query);
        let corrupt = |p: String| self.corrupt(p);
        let h = &self.header;
        let top = descend(self, sp, &q, h.entry, h.max_level, 0, &corrupt)?;
        let mut found = search_layer(self, sp, &q, &[top], ef.max(k), 0, &corrupt)?;
        if found.len() < k {
            // A beam that is not full has visited everything reachable from `top`. Every row is
            // reachable from the entry point, so start there too; if that is still short, the
            // lists are damaged.
            let e = checked_id(h.entry, sp.rows, &corrupt)?
                .ok_or_else(|| corrupt("no entry point".into()))?;
            let entry = Cand {
                d: sp.dist(e, &q),
                id: h.entry,
            };
            found = search_layer(self, sp, &q, &[top, entry], ef.max(k), 0, &corrupt)?;
            if found.len() < k {
                return Err(corrupt(format!(
                    "only {} rows are reachable from the entry point {} on level 0, fewer than k = {k}",
                    found.len(),
                    h.entry
                )));
            }
        }
        Ok(found.iter().take(k).map(|c| (c.id, sp.score(c.d))).unzip())
    }

    /// [`Graph::search`] for a row-major `[nq, dim]` batch across rayon threads. Errors: NaN or
    /// infinite values, a batch that is not whole rows, `k` = 0 or `k` > rows, a corrupt graph.
    pub fn search_batch(&self, queries: &[f32], k: usize, ef: usize) -> Result<Neighbors> {
        let nq = crate::score::check_queries(queries, self.space.dim)?;
        let per: Vec<(Vec<u32>, Vec<f32>)> = queries
            .par_chunks_exact(self.space.dim)
            .map(|q| self.search(q, k, ef))
            .collect::<Result<_>>()?;
        let mut ids = Vec::with_capacity(nq * k);
        let mut scores = Vec::with_capacity(nq * k);
        for (i, s) in per {
            ids.extend(i);
            scores.extend(s);
        }
        Ok(Neighbors { k, ids, scores })
    }
}

impl Adjacency for Graph<'_> {
    #[inline]
    fn neighbours(&self, node: u32, level: u32) -> Result<&[u32]> {
        let h = &self.header;
        if level == 0 {
            let w = h.m0 as usize;
            let start = node as usize * w;
            return self
                .level0
                .get(start..start + w)
                .ok_or_else(|| self.corrupt(format!("node {node} outside level 0")));
        }
        let slot = self.upper_ids.binary_search(&node).map_err(|_| {
            self.corrupt(format!(
                "node {node} listed on level {level} has no upper levels"
            ))
        })?;
        let (lo, hi) = match (
            self.upper_offsets.get(slot),
            self.upper_offsets.get(slot + 1),
        ) {
            (Some(&lo), Some(&hi)) if lo <= hi && hi <= h.upper_lists => (lo, hi),
            _ => {
                return Err(self.corrupt(format!(
                    "upper offsets of node {node} are out of order or range"
                )))
            }
        };
        if level > hi - lo {
            return Err(self.corrupt(format!(
                "node {node} listed on level {level} but has {} upper levels",
                hi - lo
            )));
        }
        let m = h.m as usize;
        let start = (lo + level - 1) as usize * m;
        self.upper_lists
            .get(start..start + m)
            .ok_or_else(|| self.corrupt(format!("upper list of node {node} outside the section")))
    }
}
