//! The validated view of a partitions section and the search over it.

use super::shortlist::Shortlist;
use super::{pq, CodeKind, PartitionsHeader, Regions};
use crate::error::{Error, Result};
use crate::format::{Metric, SectionKind};
use crate::score::cand::Cand;
use crate::score::codes::CodeQuery;
use crate::score::simd::PANEL;
use crate::score::space::Space;
use crate::score::{check_one_query, Neighbors};
use crate::store::Index;
use rayon::prelude::*;

/// Queries whose centroid ranking shares each pass over the centroids in a batch search.
const QUERY_BLOCK: usize = 8;

/// An index's partitions, used in place through the mapping.
///
/// ```no_run
/// # fn main() -> ptsel::Result<()> {
/// let index = ptsel::Index::open("index-data/corpus.ptsel")?;
/// let parts = ptsel::partitions::Partitions::open(&index)?.expect("built with --partitions");
/// let queries = vec![0.0f32; 3 * index.dim()]; // [nq, dim] row-major, raw (not normalised)
/// let nn = parts.search_batch(&queries, 10, 64, 2)?; // k = 10, ef = 64, 2 partitions
/// println!("{:?} {:?}", nn.ids_of(0), nn.scores_of(0));
/// # Ok(()) }
/// ```
pub struct Partitions<'a> {
    index: &'a Index,
    space: Space<'a>,
    header: PartitionsHeader,
    centroids: &'a [f32],
    centroid_sq_norms: &'a [f32],
    offsets: &'a [u32],
    order: &'a [u32],
    /// Squared norms of the positions' codes (sq8) or vectors (pq4); l2 only, else empty.
    sq_norms: &'a [f32],
    codes: Codes<'a>,
}

/// The codes of the positions, of the section's kind.
enum Codes<'a> {
    Sq8 {
        scale: &'a [f32],
        codes: &'a [i8],
    },
    Pq4 {
        books: &'a [f32],
        block_starts: &'a [u32],
        blocks: &'a [u8],
    },
}

/// The state of one query's scan: the candidates so far and scratch space.
struct Scan {
    best: Shortlist,
    sums: Vec<u16>,
    dists: Vec<f32>,
}

/// A query prepared for the codes of a section, with those codes.
enum Prepared<'a> {
    Sq8(CodeQuery, &'a [i8]),
    Pq4(pq::Lut, &'a [u32], &'a [u8]),
}

impl std::fmt::Debug for Partitions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partitions")
            .field("path", &self.index.path())
            .field("header", &self.header)
            .finish()
    }
}

impl<'a> Partitions<'a> {
    /// The partitions of `index`: `Ok(None)` when the index has no partitions section, an error
    /// when the section is inconsistent with itself or the index. O(1) in the number of rows:
    /// the header and the region sizes are checked, the contents where a search reads them.
    pub fn open(index: &'a Index) -> Result<Option<Self>> {
        match index.section_bytes(SectionKind::Partitions) {
            Some(bytes) => Self::parse(index, bytes).map(Some),
            None => Ok(None),
        }
    }

    fn parse(index: &'a Index, bytes: &'a [u8]) -> Result<Self> {
        let corrupt = |p: String| Error::corrupt(index.path(), "partitions", p);
        let header = PartitionsHeader::from_bytes(bytes).map_err(corrupt)?;
        if header.rows != index.rows() as u64 || header.dim as usize != index.dim() {
            return Err(corrupt(format!(
                "partitions cover {} rows x {} dims, the index has {} x {}",
                header.rows,
                header.dim,
                index.rows(),
                index.dim()
            )));
        }
        if header.metric != index.metric() {
            return Err(corrupt(format!(
                "partitions made for metric {}, the index uses {}",
                header.metric.name(),
                index.metric().name()
            )));
        }
        let (regions, len) = header
            .regions()
            .ok_or_else(|| corrupt("region sizes overflow".into()))?;
        if len != bytes.len() {
            return Err(corrupt(format!(
                "{} bytes, the header implies {len}",
                bytes.len()
            )));
        }
        let Regions {
            centroids,
            centroid_sq_norms,
            offsets,
            order,
            quantiser: [q0, q1],
            sq_norms,
            codes,
        } = regions;
        fn cast<T: bytemuck::Pod>(
            bytes: &[u8],
            r: std::ops::Range<usize>,
        ) -> std::result::Result<&[T], String> {
            let b = bytes.get(r).ok_or("region outside the section")?;
            bytemuck::try_cast_slice(b).map_err(|e| format!("misaligned region: {e}"))
        }
        let view = (|| {
            Ok::<_, String>(Partitions {
                index,
                space: Space::of(index),
                header,
                centroids: cast(bytes, centroids)?,
                centroid_sq_norms: cast(bytes, centroid_sq_norms)?,
                offsets: cast(bytes, offsets)?,
                order: cast(bytes, order)?,
                sq_norms: cast(bytes, sq_norms)?,
                codes: match header.codes {
                    CodeKind::Sq8 => Codes::Sq8 {
                        scale: cast(bytes, q0)?,
                        codes: cast(bytes, codes)?,
                    },
                    CodeKind::Pq4 => Codes::Pq4 {
                        books: cast(bytes, q0)?,
                        block_starts: cast(bytes, q1)?,
                        blocks: cast(bytes, codes)?,
                    },
                },
            })
        })()
        .map_err(corrupt)?;
        Ok(view)
    }

    /// Header fields (number of partitions, seed).
    pub fn header(&self) -> &PartitionsHeader {
        &self.header
    }

    fn corrupt(&self, problem: String) -> Error {
        Error::corrupt(self.index.path(), "partitions", problem)
    }

    /// The `k` nearest rows of one raw query (`dim` values), best first, with scores in the
    /// metric's unit (see [`Neighbors`]): the `probes` partitions with the nearest centroids are
    /// scanned (more when they hold fewer than `k` rows), and the `ef` (at least `k`) rows
    /// nearest by code are re-ranked exactly. Higher `probes` and `ef` are slower and more exact.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        probes: usize,
    ) -> Result<(Vec<u32>, Vec<f32>)> {
        let sp = &self.space;
        check_one_query(query, sp.dim, k, sp.rows)?;
        let mut found = self.search_block(query, k, ef, probes)?;
        Ok(found.pop().unwrap_or_default())
    }

    /// [`Partitions::search`] for a row-major `[nq, dim]` batch across rayon threads, in blocks
    /// of [`QUERY_BLOCK`] queries that rank the centroids together (each panel of centroids is
    /// read once per block, not once per query; the answers are those of one query at a time).
    pub fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
        ef: usize,
        probes: usize,
    ) -> Result<Neighbors> {
        let sp = &self.space;
        crate::score::check_queries(queries, sp.dim)?;
        crate::score::check_k(k, sp.rows)?;
        let per = queries
            .par_chunks(sp.dim * QUERY_BLOCK)
            .map(|block| self.search_block(block, k, ef, probes))
            .collect::<Result<Vec<_>>>()?;
        Ok(Neighbors::from_queries(
            k,
            per.into_iter().flatten().collect(),
        ))
    }

    /// The answers of [`Partitions::search`] for each query of a small row-major block (whole
    /// rows, `k` checked by the caller).
    fn search_block(
        &self,
        queries: &[f32],
        k: usize,
        ef: usize,
        probes: usize,
    ) -> Result<Vec<(Vec<u32>, Vec<f32>)>> {
        let sp = &self.space;
        let p = self.header.partitions as usize;
        let probes = probes.clamp(1, p);
        let prepared: Vec<Vec<f32>> = queries
            .chunks_exact(sp.dim)
            .map(|q| sp.prepare(q))
            .collect();
        let nearest = self.nearest_centroids(&prepared, probes);
        prepared
            .iter()
            .zip(nearest)
            .map(|(q, parts)| {
                let found = self.scan_and_rerank(q, &parts, k, ef)?;
                Ok(found.iter().take(k).map(|c| (c.id, sp.score(c.d))).unzip())
            })
            .collect()
    }

    /// The `k` exact nearest rows among the `ef.max(k)` nearest by code in the partitions `parts`
    /// (and the next ones when those hold fewer than `k` rows), nearest first.
    fn scan_and_rerank(&self, q: &[f32], parts: &[Cand], k: usize, ef: usize) -> Result<Vec<Cand>> {
        let prepared = self.prepare(q);
        let mut scan = Scan {
            best: Shortlist::new(ef.max(k).min(self.order.len())),
            sums: Vec::new(),
            dists: Vec::new(),
        };
        let mut scanned = 0;
        for c in parts {
            let part = self.partition(c.id)?;
            scanned += part.len();
            self.scan(&prepared, c, part, &mut scan)?;
        }
        if scanned < k {
            // Too few rows in the probed partitions: the next ones, nearest first.
            let p = self.header.partitions as usize;
            let all = self.nearest_centroids(std::slice::from_ref(&q.to_vec()), p);
            for c in all.into_iter().flatten().skip(parts.len()) {
                let part = self.partition(c.id)?;
                scanned += part.len();
                self.scan(&prepared, &c, part, &mut scan)?;
                if scanned >= k {
                    break;
                }
            }
            if scanned < k {
                return Err(self.corrupt(format!(
                    "the partitions hold {scanned} positions, fewer than k = {k}"
                )));
            }
        }
        self.rerank(scan.best.into_vec(), q, k)
    }

    /// For each prepared query, the `n` partitions whose centroids are nearest to it, nearest
    /// first (distance lower is closer, ties to the lower partition). Each panel of centroids is
    /// scored against every query of the block while it is in cache.
    fn nearest_centroids(&self, queries: &[Vec<f32>], n: usize) -> Vec<Vec<Cand>> {
        let p = self.header.partitions as usize;
        let l2 = self.space.metric == Metric::L2;
        let mut tops: Vec<Vec<Cand>> = vec![Vec::with_capacity(n + 1); queries.len()];
        let mut dots = [0f32; PANEL];
        let width = self.space.dim.max(1) * PANEL;
        for (b, panel) in self.centroids.chunks_exact(width).enumerate() {
            let lanes = PANEL.min(p - b * PANEL);
            let norms = if l2 {
                self.centroid_sq_norms.get(b * PANEL..b * PANEL + lanes)
            } else {
                None
            };
            for (q, top) in queries.iter().zip(&mut tops) {
                (self.space.kernels.dot_panel)(q, panel, &mut dots);
                if let Some(norms) = norms {
                    dots.iter_mut()
                        .zip(norms)
                        .for_each(|(d, n)| *d = 2.0 * *d - n);
                }
                // `dots` now holds similarities (higher is closer): -distance up to a constant.
                let dots = &dots[..lanes];
                let worst = |top: &Vec<Cand>| match top.last() {
                    Some(w) if top.len() == n => w.d,
                    _ => f32::INFINITY,
                };
                // Most panels hold no centroid nearer than the n-th nearest so far.
                if -dots.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) > worst(top) {
                    continue;
                }
                for (l, &sim) in dots.iter().enumerate() {
                    // A NaN (a damaged centroid) ranks last.
                    let d = if sim.is_nan() { f32::INFINITY } else { -sim };
                    if d > worst(top) {
                        continue;
                    }
                    let c = Cand {
                        d,
                        id: (b * PANEL + l) as u32,
                    };
                    let at = top.partition_point(|x| *x < c);
                    top.insert(at, c);
                    top.truncate(n);
                }
            }
        }
        tops
    }

    /// The positions of partition `j`, checked against the section.
    fn partition(&self, j: u32) -> Result<std::ops::Range<usize>> {
        let j = j as usize;
        match (self.offsets.get(j), self.offsets.get(j + 1)) {
            (Some(&a), Some(&b)) if a <= b && b as usize <= self.order.len() => {
                Ok(a as usize..b as usize)
            }
            _ => Err(self.corrupt(format!("partition {j} has no valid range of positions"))),
        }
    }

    /// The prepared query `q` in the form this section's codes are compared with.
    fn prepare(&self, q: &[f32]) -> Prepared<'a> {
        match self.codes {
            Codes::Sq8 { scale, codes } => Prepared::Sq8(CodeQuery::new(q, scale), codes),
            Codes::Pq4 {
                books,
                block_starts,
                blocks,
            } => {
                let factor = if self.space.metric == Metric::L2 {
                    2.0
                } else {
                    1.0
                };
                Prepared::Pq4(pq::Lut::new(q, books, factor), block_starts, blocks)
            }
        }
    }

    /// Measure the codes of the positions of partition `part` and offer them to `scan.best`.
    fn scan(
        &self,
        query: &Prepared,
        part: &Cand,
        positions: std::ops::Range<usize>,
        scan: &mut Scan,
    ) -> Result<()> {
        let norms = self.sq_norms.get(positions.clone()).unwrap_or(&[]);
        let kernels = self.space.kernels;
        let dists = &mut scan.dists;
        dists.clear();
        dists.resize(positions.len(), 0.0);
        match *query {
            Prepared::Sq8(ref cq, codes) => {
                let dim = self.space.dim;
                let codes = &codes[positions.start * dim..positions.end * dim];
                cq.dists(kernels, codes, norms, dists);
            }
            Prepared::Pq4(ref lut, block_starts, blocks) => {
                let j = part.id as usize;
                let width = pq::block_bytes(self.space.dim);
                let span = match (block_starts.get(j), block_starts.get(j + 1)) {
                    (Some(&a), Some(&b))
                        if b.checked_sub(a)
                            == u32::try_from(positions.len().div_ceil(pq::BLOCK)).ok() =>
                    {
                        blocks.get(a as usize * width..b as usize * width)
                    }
                    _ => None,
                };
                let span = span.ok_or_else(|| {
                    self.corrupt(format!("partition {j} has no valid range of code blocks"))
                })?;
                lut.sums(kernels, span, &mut scan.sums);
                // The partition's share of every distance: -q . centroid (times 2 for l2).
                let centroid = match self.space.metric {
                    Metric::L2 => part.d - self.centroid_sq_norms.get(j).copied().unwrap_or(0.0),
                    _ => part.d,
                };
                let (base, delta) = (lut.bias + centroid, lut.delta);
                dists
                    .iter_mut()
                    .zip(&scan.sums)
                    .for_each(|(d, &s)| *d = base + delta * f32::from(s));
                dists.iter_mut().zip(norms).for_each(|(d, n)| *d += n);
            }
        }
        scan.best.offer(positions.start, dists);
        Ok(())
    }

    /// The `k` of the candidates' rows nearest to `q` by exact measure, nearest first.
    fn rerank(&self, cands: Vec<Cand>, q: &[f32], k: usize) -> Result<Vec<Cand>> {
        let rows = self.space.rows;
        let mut out = cands
            .into_iter()
            .map(|c| match self.order.get(c.id as usize) {
                Some(&row) if (row as usize) < rows => Ok(Cand { d: 0.0, id: row }),
                _ => Err(self.corrupt(format!("position {} has no row among the {rows}", c.id))),
            })
            .collect::<Result<Vec<_>>>()?;
        self.space
            .rank_exact(&mut out, q, k)
            .map_err(|row| self.corrupt(format!("row {row} is in two positions")))?;
        Ok(out)
    }
}
