//! The node-block layout of the graph section (layout version 2): what the beam search touches
//! per visited node sits in one cache-line-aligned block, in an order that follows the graph.
//!
//! ```text
//! 0..64      GraphHeader (version 2; every node id in the section is a node number, not a row)
//! 64..128    dim u32, block_len u32, code kind u32 (1 = sq8), zero padding
//! 128..      blocks [rows, block_len]: node i's level-0 list (m0 u32 node numbers, NO_NODE
//!            padded), then its code (dim i8), zero padding to a multiple of 64 bytes
//!            order [rows] u32: the row of each node (a permutation of 0..rows)
//!            scale, offset [dim] f32 each: code c of dimension j stands for offset[j] + scale[j] c
//!            sq_norms [rows] f32: squared norm of each node's decoded code (l2 only, else empty)
//!            upper_ids, upper_offsets, upper_lists: as in the compact layout, in node numbers
//! ```
//!
//! Nodes of the upper levels are numbered first, then the others breadth-first from the entry
//! point on level 0, so the blocks of a node's neighbours tend to share pages, the visited set
//! is touched in a narrow band, and the descent through the upper levels reads one small run of
//! blocks (see `numbering`). The beam search runs on the codes (a quarter of an f32 vector,
//! half of the stored f16 one) and the code-nearest nodes it measured are re-ranked with exact
//! distances on the stored vectors (see `graph::RERANK`), so scores and the final order are
//! exact; the codes only steer the walk. Rows stay the user's ids: the permutation is
//! applied to the results and never seen outside this module.

use super::compact::{Compact, Upper};
use super::header::{size_mismatch, GraphHeader, GraphLayout, GRAPH_HEADER_LEN, NO_NODE};
use super::search::Adjacency;
use crate::error::{Error, Result};
use crate::format::Metric;
use crate::score::cand::Cand;
use crate::score::codes::{CodeQuery, RowCodes};
use crate::score::space::{prefetch, Distance, Space};
use rayon::prelude::*;
use std::path::Path;

/// Length of the header plus the block extension.
const HEADER_LEN: usize = 2 * GRAPH_HEADER_LEN;
/// Code kind: one i8 per dimension with a per-dimension scale and offset.
const CODE_SQ8: u32 = 1;

/// Bytes of one node block: `m0` ids and `dim` codes, rounded up to whole cache lines.
fn block_len(m0: usize, dim: usize) -> Option<usize> {
    (4 * m0).checked_add(dim)?.checked_next_multiple_of(64)
}

/// Byte lengths of the regions after the header, in section order.
struct Regions {
    blocks: usize,
    order: usize,
    quantiser: usize,
    sq_norms: usize,
    upper: usize,
}

impl Regions {
    fn of(h: &GraphHeader, dim: usize) -> Option<Self> {
        let rows = h.rows as usize;
        Some(Regions {
            blocks: rows.checked_mul(block_len(h.m0 as usize, dim)?)?,
            order: rows.checked_mul(4)?,
            quantiser: dim.checked_mul(8)?,
            sq_norms: if h.metric == Metric::L2 {
                rows.checked_mul(4)?
            } else {
                0
            },
            upper: usize::try_from(h.upper_len()?).ok()?,
        })
    }

    fn total(&self) -> Option<usize> {
        HEADER_LEN
            .checked_add(self.blocks)?
            .checked_add(self.order)?
            .checked_add(self.quantiser)?
            .checked_add(self.sq_norms)?
            .checked_add(self.upper)
    }
}

/// The validated view of a blocks section: an [`Adjacency`] and a [`Distance`] over node numbers
/// in one, plus the exact re-rank.
pub(crate) struct Blocks<'a> {
    path: &'a Path,
    m0: usize,
    block_len: usize,
    /// The blocks region as u32 (the lists) and as i8 (the codes): one memory, two views.
    words: &'a [u32],
    codes: &'a [i8],
    order: &'a [u32],
    scale: &'a [f32],
    sq_norms: &'a [f32],
    upper: Upper<'a>,
    space: Space<'a>,
}

impl<'a> Blocks<'a> {
    /// The view of `bytes`, a whole section whose first 64 bytes parsed as `header`; checks the
    /// block extension and that the length is exactly what the counts imply.
    pub fn parse(
        path: &'a Path,
        header: &GraphHeader,
        space: Space<'a>,
        bytes: &'a [u8],
    ) -> Result<Self> {
        let corrupt = |p: String| Error::corrupt(path, "hnsw", p);
        let ext: &[u32] = bytes
            .get(GRAPH_HEADER_LEN..HEADER_LEN)
            .and_then(|b| bytemuck::try_cast_slice(b).ok())
            .ok_or_else(|| corrupt("block header missing or misaligned".into()))?;
        let (dim, stored_block, code) = match ext {
            [d, b, c, ..] => (*d as usize, *b as usize, *c),
            _ => return Err(corrupt("block header missing".into())),
        };
        if dim != space.dim {
            return Err(corrupt(format!(
                "codes of dimension {dim}, the index has {}",
                space.dim
            )));
        }
        if code != CODE_SQ8 {
            return Err(corrupt(format!("unknown code kind {code}")));
        }
        let block = block_len(header.m0 as usize, dim).filter(|&b| b == stored_block);
        let Some(block) = block else {
            return Err(corrupt(format!(
                "block length {stored_block} does not fit M0 = {} and dimension {dim}",
                header.m0
            )));
        };
        let regions = Regions::of(header, dim);
        match regions.as_ref().and_then(Regions::total) {
            Some(len) if len == bytes.len() => {}
            want => return Err(corrupt(size_mismatch(bytes.len(), want.map(|w| w as u64)))),
        }
        let Some(r) = regions else {
            return Err(corrupt("impossible region sizes".into()));
        };
        // Every region length below is a multiple of 4 and their sum is the section length.
        let (blocks, rest) = bytes[HEADER_LEN..].split_at(r.blocks);
        let (order, rest) = rest.split_at(r.order);
        let (quantiser, rest) = rest.split_at(r.quantiser);
        let (sq_norms, upper) = rest.split_at(r.sq_norms);
        let words = |b: &'a [u8]| -> Result<&'a [u32]> {
            bytemuck::try_cast_slice(b).map_err(|_| corrupt("misaligned".into()))
        };
        let floats = |b: &'a [u8]| -> Result<&'a [f32]> {
            bytemuck::try_cast_slice(b).map_err(|_| corrupt("misaligned".into()))
        };
        let quantiser = floats(quantiser)?;
        Ok(Blocks {
            path,
            m0: header.m0 as usize,
            block_len: block,
            words: words(blocks)?,
            codes: bytemuck::cast_slice(blocks),
            order: words(order)?,
            scale: &quantiser[..dim],
            sq_norms: floats(sq_norms)?,
            upper: Upper::parse(header, words(upper)?),
            space,
        })
    }

    /// `q` (prepared for the metric) quantised for the codes.
    pub fn prepare(&self, q: &[f32]) -> CodeQuery {
        CodeQuery::new(q, self.scale)
    }

    /// The compact section of this graph (`header`: this section's), every id mapped back from
    /// node numbers to rows: the inverse of [`encode`], byte for byte the compact section the
    /// blocks were encoded from. An error when the node order is not a permutation of the rows.
    pub fn decode(&self, header: &GraphHeader) -> Result<Vec<u8>> {
        let corrupt = |p: String| self.corrupt(p);
        let (rows, m0) = (self.space.rows, self.m0);
        let row = |n: u32| self.row_of(n);
        let mut level0 = vec![NO_NODE; rows * m0];
        let mut seen = vec![false; rows];
        for node in 0..rows as u32 {
            let r = row(node).ok_or_else(|| corrupt(format!("node {node} has no row")))? as usize;
            if std::mem::replace(&mut seen[r], true) {
                return Err(corrupt(format!("row {r} belongs to two nodes")));
            }
            let list = self.neighbours(node, 0)?;
            for (slot, &j) in level0[r * m0..(r + 1) * m0].iter_mut().zip(list) {
                *slot = match row(j) {
                    Some(r) => r,
                    None if j == NO_NODE => NO_NODE,
                    None => return Err(corrupt(format!("neighbour id {j} out of range"))),
                };
            }
        }
        let upper = self.upper.renumbered(row).map_err(corrupt)?;
        let entry = row(header.entry).ok_or_else(|| corrupt("entry out of range".into()))?;
        let compact = GraphHeader {
            layout: GraphLayout::Compact,
            entry,
            ..*header
        };
        let mut bytes = compact.to_bytes().to_vec();
        bytes.extend_from_slice(bytemuck::cast_slice(&level0));
        bytes.extend_from_slice(&upper);
        Ok(bytes)
    }

    /// The row of node `n`; `None` when `n` or its stored row is out of range.
    #[inline]
    fn row_of(&self, n: u32) -> Option<u32> {
        let row = self.order.get(n as usize).copied();
        row.filter(|&r| (r as usize) < self.space.rows)
    }

    /// A corrupt-graph error naming this index file.
    fn corrupt(&self, problem: String) -> Error {
        Error::corrupt(self.path, "hnsw", problem)
    }

    /// The `k` of the beam's nodes (approximate distances) nearest to `q` (prepared for the
    /// metric) as rows with exact distances, closest first; the problem when the node order is
    /// damaged.
    pub fn rerank(
        &self,
        beam: &[Cand],
        q: &[f32],
        k: usize,
    ) -> std::result::Result<Vec<Cand>, String> {
        let rows = self.space.rows;
        let mut out = Vec::with_capacity(beam.len());
        for c in beam {
            let row = self
                .row_of(c.id)
                .ok_or_else(|| format!("node {} has no row among the {rows}", c.id))?;
            out.push(Cand { d: 0.0, id: row });
        }
        self.space
            .rank_exact(&mut out, q, k)
            .map_err(|row| format!("row {row} belongs to two nodes"))?;
        Ok(out)
    }
}

impl Adjacency for Blocks<'_> {
    #[inline]
    fn neighbours(&self, node: u32, level: u32) -> Result<&[u32]> {
        let corrupt = |p: String| self.corrupt(p);
        if level == 0 {
            let start = node as usize * (self.block_len / 4);
            return self
                .words
                .get(start..start + self.m0)
                .ok_or_else(|| corrupt(format!("node {node} outside level 0")));
        }
        self.upper.list(node, level).map_err(corrupt)
    }
}

impl Distance for Blocks<'_> {
    type Query = CodeQuery;

    #[inline]
    fn rows(&self) -> usize {
        self.space.rows
    }

    #[inline]
    fn dist(&self, i: usize, q: &CodeQuery) -> f32 {
        let at = i * self.block_len + 4 * self.m0;
        q.dist(
            self.space.kernels,
            &self.codes[at..at + self.space.dim],
            self.sq_norms.get(i).copied(),
        )
    }

    #[inline]
    fn prefetch(&self, i: usize) {
        let at = i * self.block_len + 4 * self.m0;
        prefetch(self.codes.as_ptr().wrapping_add(at), self.space.dim);
        if let Some(n) = self.sq_norms.get(i) {
            prefetch(n, 4);
        }
    }
}

/// The node numbering: the nodes of the upper levels first, breadth-first from the entry point
/// on level 1, then every other node breadth-first from the entry point on level 0 (lists in
/// stored order); nodes a walk does not reach (the build's repair leaves none on level 0) follow
/// in row order. Upper nodes first make their lookup O(1) (node number = slot) and keep the
/// blocks the descent reads in one small, cache-resident run. Returns `order` (row of each
/// node) and its inverse (node of each row).
fn numbering(compact: &Compact<'_>, entry: u32, rows: usize) -> Result<(Vec<u32>, Vec<u32>)> {
    if entry as usize >= rows {
        return Err(compact.corrupt(format!("entry {entry} out of range")));
    }
    let mut node_of = vec![NO_NODE; rows];
    let mut order = Vec::with_capacity(rows);
    let upper = compact.upper.ids;
    if !upper.is_empty() {
        let seeds = std::iter::once(entry).chain(upper.iter().copied());
        breadth_first(compact, 1, seeds, upper.len(), &mut node_of, &mut order)?;
    }
    let seeds = std::iter::once(entry).chain(0..rows as u32);
    breadth_first(compact, 0, seeds, rows, &mut node_of, &mut order)?;
    Ok((order, node_of))
}

/// Number, in breadth-first order on `level` from each of `seeds` in turn, the nodes not
/// numbered yet (walking through those that are), until `until` nodes are numbered.
fn breadth_first(
    compact: &Compact<'_>,
    level: u32,
    seeds: impl Iterator<Item = u32>,
    until: usize,
    node_of: &mut [u32],
    order: &mut Vec<u32>,
) -> Result<()> {
    let rows = node_of.len();
    let mut queued = vec![false; rows];
    let mut queue = Vec::new();
    for seed in seeds {
        if order.len() >= until {
            break;
        }
        match queued.get_mut(seed as usize) {
            None => return Err(compact.corrupt(format!("node {seed} out of range"))),
            Some(true) => continue,
            Some(q) => *q = true,
        }
        queue.clear();
        queue.push(seed);
        let mut next = 0;
        while let Some(&r) = queue.get(next) {
            next += 1;
            if node_of[r as usize] == NO_NODE {
                node_of[r as usize] = order.len() as u32;
                order.push(r);
            }
            for &j in compact.neighbours(r, level)? {
                if j == NO_NODE {
                    break;
                }
                if j as usize >= rows {
                    return Err(compact.corrupt(format!("neighbour id {j} out of range")));
                }
                if !std::mem::replace(&mut queued[j as usize], true) {
                    queue.push(j);
                }
            }
        }
    }
    Ok(())
}

/// The blocks section of the graph whose compact form is `compact` (with `header`), with the
/// `codes` of its rows. The graph itself (every list, level and the entry point) is unchanged;
/// only its numbering and storage differ.
pub(super) fn encode(
    compact: &Compact<'_>,
    header: &GraphHeader,
    codes: &RowCodes,
) -> Result<Vec<u8>> {
    let (rows, m0) = (header.rows as usize, compact.m0);
    let dim = codes.quantiser.scale.len();
    let (order, node_of) = numbering(compact, header.entry, rows)?;
    let block = block_len(m0, dim).ok_or_else(|| Error::invalid("block size overflows"))?;
    let mut blocks = vec![0u8; rows * block];
    blocks
        .par_chunks_mut(block)
        .zip(order.par_iter())
        .try_for_each(|(b, &r)| -> Result<()> {
            let (ids, rest) = b.split_at_mut(4 * m0);
            for (slot, &j) in ids.chunks_exact_mut(4).zip(compact.neighbours(r, 0)?) {
                let node = match node_of.get(j as usize) {
                    Some(&n) => n,
                    None if j == NO_NODE => NO_NODE,
                    None => return Err(compact.corrupt(format!("neighbour id {j} out of range"))),
                };
                slot.copy_from_slice(&node.to_le_bytes());
            }
            rest[..dim].copy_from_slice(bytemuck::cast_slice(codes.code(r as usize)));
            Ok(())
        })?;
    let upper = compact
        .upper
        .renumbered(|r| node_of.get(r as usize).copied())
        .map_err(|p| compact.corrupt(p))?;
    let entry = node_of
        .get(header.entry as usize)
        .copied()
        .ok_or_else(|| compact.corrupt("entry out of range".into()))?;
    let out_header = GraphHeader {
        layout: GraphLayout::Blocks,
        entry,
        ..*header
    };
    let mut bytes = out_header.to_bytes().to_vec();
    for w in [dim as u32, block as u32, CODE_SQ8] {
        bytes.extend_from_slice(&w.to_le_bytes());
    }
    bytes.resize(HEADER_LEN, 0);
    bytes.extend_from_slice(&blocks);
    bytes.extend_from_slice(bytemuck::cast_slice(&order));
    bytes.extend_from_slice(bytemuck::cast_slice(&codes.quantiser.scale));
    bytes.extend_from_slice(bytemuck::cast_slice(&codes.quantiser.offset));
    if header.metric == Metric::L2 {
        for &r in &order {
            bytes.extend_from_slice(&codes.sq_norms[r as usize].to_le_bytes());
        }
    }
    bytes.extend_from_slice(&upper);
    Ok(bytes)
}
