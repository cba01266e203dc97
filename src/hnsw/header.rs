//! The HNSW section's header and the byte layouts it announces; [`super::graph`] opens and
//! searches them, [`super::compact`] and [`super::blocks`] parse them.
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

use crate::format::{le_u32, le_u64, section_header, Metric};

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

/// The error text of a section whose length is not the one its header implies.
pub(super) fn size_mismatch(len: usize, want: Option<u64>) -> String {
    format!(
        "{len} bytes, the header implies {}",
        want.map_or("an impossible size".into(), |w| w.to_string())
    )
}
