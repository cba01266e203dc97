//! The validated view of the graph section over the mapping ([`Graph`]), in either layout
//! ([`super::header`] describes both), searched with the beam search of [`super::search`].
//!
//! Opening checks the header and that the section length is exactly the size these counts give
//! (checked arithmetic); nothing is scanned. Every id and offset read while searching is checked
//! before use, so a corrupted section is an `Error::Corrupt`, never a panic or a wild read.

use super::blocks::Blocks;
use super::compact::Compact;
use super::header::{size_mismatch, GraphHeader, GraphLayout};
use super::search::{checked_id, descend, search_layer, Adjacency, Width};
use crate::error::{Error, Result};
use crate::format::SectionKind;
use crate::score::cand::Cand;
use crate::score::space::{Distance, Space};
use crate::score::{check_one_query, Neighbors};
use crate::store::Index;
use rayon::prelude::*;

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
