//! The HNSW section: its header, its two layouts and the validated view over the mapping,
//! searched with the beam search of [`super::search`].
//!
//! Layout version 1, *compact* (ids only; distances read the index's vectors section):
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
//! Layout version 2, *blocks* (the default; see [`super::blocks`]): nodes renumbered (upper
//! levels first, then breadth-first), each node's level-0 list stored beside an i8 code of its
//! vector in one cache-line-aligned block, traversal on the codes and an exact re-rank on the
//! stored vectors.
//!
//! Opening checks the header and that the section length is exactly the size these counts give
//! (checked arithmetic); nothing is scanned. Every id and offset read while searching is checked
//! before use, so a corrupted section is an `Error::Corrupt`, never a panic or a wild read.

use super::blocks::Blocks;
use super::search::{checked_id, descend, search_layer, Adjacency, Cand, Distance, Space, Width};
use crate::error::{Error, Result};
use crate::format::{le_u32, le_u64, section_header, Metric, SectionKind};
use crate::score::{check_one_query, Neighbors};
use crate::store::Index;
use rayon::prelude::*;
use std::path::Path;

/// Padding of neighbour lists.
pub const NO_NODE: u32 = u32::MAX;
/// Magic bytes of the graph section.
pub const GRAPH_MAGIC: [u8; 8] = *b"PTSHNSW\0";
/// The two layouts of the graph section, told apart by the header's version word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum GraphLayout {
    /// Version 1: neighbour ids only, in row order (the smallest; written before blocks existed).
    Compact,
    /// Version 2: breadth-first node blocks of ids and i8 codes, re-ranked exactly.
    #[default]
    Blocks,
}

impl GraphLayout {
    /// The version word of this layout.
    pub fn version(self) -> u32 {
        match self {
            GraphLayout::Compact => 1,
            GraphLayout::Blocks => 2,
        }
    }

    /// Name used by `--graph-layout` and `info`.
    pub fn name(self) -> &'static str {
        match self {
            GraphLayout::Compact => "compact",
            GraphLayout::Blocks => "blocks",
        }
    }
}

parse_by_name!(GraphLayout, "graph layout", {
    "compact" => GraphLayout::Compact,
    "blocks" => GraphLayout::Blocks,
});
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
    /// Layout of the section after the header.
    pub layout: GraphLayout,
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

impl GraphHeader {
    /// The construction parameters this graph was built with, and its layout.
    pub fn params(&self) -> super::Params {
        super::Params {
            m: self.m as usize,
            ef_construction: self.ef_construction as usize,
            seed: self.seed,
            layout: self.layout,
        }
    }

    /// Serialise to the 64-byte form.
    pub fn to_bytes(&self) -> [u8; GRAPH_HEADER_LEN] {
        let mut b = [0u8; GRAPH_HEADER_LEN];
        b[0..8].copy_from_slice(&GRAPH_MAGIC); // magic
        let words: [(usize, u32); 12] = [
            (8, self.layout.version()),
            (12, self.m),
            (16, self.m0),
            (20, self.ef_construction),
            // 24..32: seed (u64), below
            (32, self.metric.code()),
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
        let b = section_header::<GRAPH_HEADER_LEN>(b, &GRAPH_MAGIC)?;
        let w = |at| le_u32(b, at);
        let layout = match w(8) {
            1 => GraphLayout::Compact,
            2 => GraphLayout::Blocks,
            v => {
                return Err(format!(
                    "graph layout version {v} (this build reads 1 and 2)"
                ))
            }
        };
        let metric =
            Metric::from_code(w(32)).ok_or_else(|| format!("unknown metric code {}", w(32)))?;
        let h = GraphHeader {
            layout,
            m: w(12),
            m0: w(16),
            ef_construction: w(20),
            seed: le_u64(b, 24),
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

    /// Bytes of the upper levels (ids, offsets and lists), `None` on overflow.
    pub(super) fn upper_len(&self) -> Option<u64> {
        let upper = u64::from(self.upper_lists).checked_mul(u64::from(self.m))?;
        u64::from(self.upper_nodes)
            .checked_mul(2)?
            .checked_add(1)?
            .checked_add(upper)?
            .checked_mul(4)
    }

    /// Exact length of a compact section with these counts, `None` on overflow.
    pub fn compact_len(&self) -> Option<u64> {
        let level0 = u64::from(self.rows).checked_mul(u64::from(self.m0))?;
        level0
            .checked_mul(4)?
            .checked_add(self.upper_len()?)?
            .checked_add(GRAPH_HEADER_LEN as u64)
    }
}

/// The upper levels (>= 1) of either layout: lists of `m` ids per node and level.
#[derive(Clone, Copy)]
pub(super) struct Upper<'a> {
    pub ids: &'a [u32],
    pub offsets: &'a [u32],
    pub lists: &'a [u32],
    pub m: usize,
}

impl<'a> Upper<'a> {
    /// Split `words` (exactly `GraphHeader::upper_len` bytes) into the three arrays.
    pub fn parse(h: &GraphHeader, words: &'a [u32]) -> Self {
        let (ids, rest) = words.split_at(h.upper_nodes as usize);
        let (offsets, lists) = rest.split_at(h.upper_nodes as usize + 1);
        Upper {
            ids,
            offsets,
            lists,
            m: h.m as usize,
        }
    }

    /// The list of `node` on `level` >= 1; the problem when the stored layout disagrees.
    pub fn list(&self, node: u32, level: u32) -> std::result::Result<&'a [u32], String> {
        // Ids are ascending and distinct, so `ids[node] == node` puts it in slot `node`: the
        // case of every upper node of a blocks section written since upper nodes come first.
        let slot = match self.ids.get(node as usize) {
            Some(&id) if id == node => node as usize,
            _ => self
                .ids
                .binary_search(&node)
                .map_err(|_| format!("node {node} listed on level {level} has no upper levels"))?,
        };
        let lists = (self.lists.len() / self.m.max(1)) as u32;
        let (lo, hi) = match (self.offsets.get(slot), self.offsets.get(slot + 1)) {
            (Some(&lo), Some(&hi)) if lo <= hi && hi <= lists => (lo, hi),
            _ => {
                return Err(format!(
                    "upper offsets of node {node} are out of order or range"
                ))
            }
        };
        if level > hi - lo {
            return Err(format!(
                "node {node} listed on level {level} but has {} upper levels",
                hi - lo
            ));
        }
        let start = (lo + level - 1) as usize * self.m;
        self.lists
            .get(start..start + self.m)
            .ok_or_else(|| format!("upper list of node {node} outside the section"))
    }

    /// Levels (>= 1) of the upper node in `slot`.
    pub fn levels_of(&self, slot: usize) -> u32 {
        match (self.offsets.get(slot), self.offsets.get(slot + 1)) {
            (Some(&lo), Some(&hi)) => hi.saturating_sub(lo),
            _ => 0,
        }
    }

    /// The upper levels with every id (nodes and list entries) passed through `to` (`None`: out
    /// of range), as the bytes of upper_ids, upper_offsets and upper_lists; the problem when
    /// the stored lists are inconsistent.
    pub fn renumbered(
        &self,
        to: impl Fn(u32) -> Option<u32>,
    ) -> std::result::Result<Vec<u8>, String> {
        let mut nodes: Vec<(u32, Vec<u32>)> = Vec::with_capacity(self.ids.len());
        for (slot, &id) in self.ids.iter().enumerate() {
            let mut lists = Vec::new();
            for level in 1..=self.levels_of(slot) {
                for &j in self.list(id, level)? {
                    lists.push(match to(j) {
                        Some(n) => n,
                        None if j == NO_NODE => NO_NODE,
                        None => return Err(format!("upper id {j} out of range")),
                    });
                }
            }
            let node = to(id).ok_or_else(|| format!("upper node {id} out of range"))?;
            nodes.push((node, lists));
        }
        nodes.sort_unstable_by_key(|n| n.0);
        let mut offsets = vec![0u32];
        for (_, lists) in &nodes {
            offsets.push(offsets[offsets.len() - 1] + (lists.len() / self.m.max(1)) as u32);
        }
        let ids: Vec<u32> = nodes.iter().map(|n| n.0).collect();
        let mut bytes = bytemuck::cast_slice(&ids).to_vec();
        bytes.extend_from_slice(bytemuck::cast_slice(&offsets));
        for (_, lists) in &nodes {
            bytes.extend_from_slice(bytemuck::cast_slice(lists));
        }
        Ok(bytes)
    }
}

/// The compact layout: level-0 lists in row order and the upper levels.
pub(super) struct Compact<'a> {
    pub path: &'a Path,
    pub m0: usize,
    pub level0: &'a [u32],
    pub upper: Upper<'a>,
}

impl<'a> Compact<'a> {
    /// The compact view of `bytes` (a whole section whose `header` is already checked and
    /// whose length equals `GraphHeader::compact_len`).
    pub fn parse(path: &'a Path, header: &GraphHeader, bytes: &'a [u8]) -> Result<Self> {
        let words: &[u32] = bytes
            .get(GRAPH_HEADER_LEN..)
            .and_then(|b| bytemuck::try_cast_slice(b).ok())
            .ok_or_else(|| Error::corrupt(path, "hnsw", "misaligned"))?;
        let (level0, upper) = words.split_at(header.rows as usize * header.m0 as usize);
        Ok(Compact {
            path,
            m0: header.m0 as usize,
            level0,
            upper: Upper::parse(header, upper),
        })
    }
}

impl Compact<'_> {
    /// A corrupt-graph error naming this index file.
    pub fn corrupt(&self, problem: String) -> Error {
        Error::corrupt(self.path, "hnsw", problem)
    }
}

impl Adjacency for Compact<'_> {
    #[inline]
    fn neighbours(&self, node: u32, level: u32) -> Result<&[u32]> {
        let corrupt = |p: String| self.corrupt(p);
        if level == 0 {
            let start = node as usize * self.m0;
            return self
                .level0
                .get(start..start + self.m0)
                .ok_or_else(|| corrupt(format!("node {node} outside level 0")));
        }
        self.upper.list(node, level).map_err(corrupt)
    }
}

/// Nodes per result the blocks search re-ranks exactly: the `RERANK k` nearest by code. A beam
/// narrower than that adds the nearest nodes it measured and pushed out (where the codes' noise
/// misplaces true neighbours); of a wider one only the code-nearest `RERANK k` are re-ranked,
/// since a true neighbour the codes rank past them does not occur in practice (recall at every
/// ef the same to four digits on 200k-1M x 128, a real 100k x 384 and 100k x 512 set) while
/// re-ranking all `ef` cost up to 15% of a query at ef 250.
const RERANK: usize = 2;

/// The searchable form of either layout.
enum Layout<'a> {
    Compact(Compact<'a>),
    Blocks(Blocks<'a>),
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
    layout: Layout<'a>,
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
        match index.section_bytes(SectionKind::Hnsw) {
            Some(bytes) => Self::parse(index, bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The graph in `bytes` (a graph section of either layout) over the vectors of `index`.
    pub(crate) fn parse(index: &'a Index, bytes: &'a [u8]) -> Result<Self> {
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
        let space = Space::of(index);
        let layout = match header.layout {
            GraphLayout::Compact => {
                match header.compact_len() {
                    Some(len) if len == bytes.len() as u64 => {}
                    want => return Err(corrupt(size_mismatch(bytes.len(), want))),
                }
                Layout::Compact(Compact::parse(index.path(), &header, bytes)?)
            }
            GraphLayout::Blocks => {
                Layout::Blocks(Blocks::parse(index.path(), &header, space, bytes)?)
            }
        };
        Ok(Graph {
            index,
            space,
            header,
            layout,
        })
    }

    /// Header fields (layout, parameters, entry point, repair counts).
    pub fn header(&self) -> &GraphHeader {
        &self.header
    }

    /// The compact view, for re-encoding into blocks; `None` for a blocks graph.
    pub(super) fn compact(&self) -> Option<&Compact<'a>> {
        match &self.layout {
            Layout::Compact(c) => Some(c),
            Layout::Blocks(_) => None,
        }
    }

    /// The blocks view, for decoding back to compact; `None` for a compact graph.
    pub(super) fn blocks(&self) -> Option<&Blocks<'a>> {
        match &self.layout {
            Layout::Blocks(b) => Some(b),
            Layout::Compact(_) => None,
        }
    }

    /// The vectors the graph indexes.
    pub(super) fn space(&self) -> &Space<'a> {
        &self.space
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
        check_one_query(query, sp.dim, k, sp.rows)?;
        let q = sp.prepare(query);
        let found = match &self.layout {
            Layout::Compact(c) => self.beam(c, sp, &q, k, ef, 0)?,
            Layout::Blocks(b) => {
                let spill = (RERANK * k).saturating_sub(ef.max(k));
                let beam = self.beam(b, b, &b.prepare(&q), k, ef, spill)?;
                // Sorted by code up to ef.max(k); any spill after it is within the first 2 k.
                let nearest = &beam[..beam.len().min(RERANK * k)];
                b.rerank(nearest, &q, k).map_err(|p| self.corrupt(p))?
            }
        };
        Ok(found.iter().take(k).map(|c| (c.id, sp.score(c.d))).unzip())
    }

    /// The descent and the level-0 beam of [`Graph::search`] for a prepared query: at least `k`
    /// nodes, closest first, then up to `spill` nodes just outside the beam (see
    /// [`search_layer`]).
    fn beam<A: Adjacency, D: Distance>(
        &self,
        adj: &A,
        dist: &D,
        q: &D::Query,
        k: usize,
        ef: usize,
        spill: usize,
    ) -> Result<Vec<Cand>> {
        let corrupt = |p: String| self.corrupt(p);
        let h = &self.header;
        let width = Width {
            ef: ef.max(k),
            spill,
        };
        let top = descend(adj, dist, q, h.entry, h.max_level, 0, &corrupt)?;
        let found = search_layer(adj, dist, q, &[top], width, 0, &corrupt)?;
        if found.len() >= k {
            return Ok(found);
        }
        // A beam that is not full has visited everything reachable from `top`. Every node is
        // reachable from the entry point, so start there too; if that is still short, the lists
        // are damaged.
        let e = checked_id(h.entry, dist.rows(), &corrupt)?
            .ok_or_else(|| corrupt("no entry point".into()))?;
        let entry = Cand {
            d: dist.dist(e, q),
            id: h.entry,
        };
        let found = search_layer(adj, dist, q, &[top, entry], width, 0, &corrupt)?;
        if found.len() < k {
            return Err(corrupt(format!(
                "only {} rows are reachable from the entry point {} on level 0, fewer than k = {k}",
                found.len(),
                h.entry
            )));
        }
        Ok(found)
    }

    /// [`Graph::search`] for a row-major `[nq, dim]` batch across rayon threads. Errors: NaN or
    /// infinite values, a batch that is not whole rows, `k` = 0 or `k` > rows, a corrupt graph.
    pub fn search_batch(&self, queries: &[f32], k: usize, ef: usize) -> Result<Neighbors> {
        crate::score::check_queries(queries, self.space.dim)?;
        let per = queries
            .par_chunks_exact(self.space.dim)
            .map(|q| self.search(q, k, ef))
            .collect::<Result<Vec<_>>>()?;
        Ok(Neighbors::from_queries(k, per))
    }
}

/// The error text of a section whose length is not the one its header implies.
pub(super) fn size_mismatch(len: usize, want: Option<u64>) -> String {
    format!(
        "{len} bytes, the header implies {}",
        want.map_or("an impossible size".into(), |w| w.to_string())
    )
}
