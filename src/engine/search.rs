//! Search over the shards: each shard answers with its own rows, offset to global rows, and the
//! answers merge per query (better score first, ties to the lower global row). Each shard's
//! exact top-k breaks ties the same way, so an exact search of a corpus returns what one index
//! file of the same rows returns.

use super::{Engine, SearchOpts, DEFAULT_EF};
use crate::error::{Error, Result};
use crate::format::Metric;
use crate::hnsw::{Graph, NO_NODE};
use crate::partitions::Partitions;
use crate::score::{self, cpu::CpuScorer, Neighbors, Scorer};
use rayon::prelude::*;
use std::ops::Range;
use std::path::Path;

/// The approximate index of every shard (its HNSW graph, or its partitions), searched as one
/// index of global rows.
pub struct Approx<'a> {
    /// Each shard's first global row and index.
    parts: Vec<(u32, Part<'a>)>,
    metric: Metric,
}

/// One shard's approximate index.
enum Part<'a> {
    Graph(Graph<'a>),
    /// The partitions and how many of them a query scans.
    Partitions(Partitions<'a>, usize),
}

impl Part<'_> {
    fn rows(&self) -> usize {
        match self {
            Part::Graph(g) => g.header().rows as usize,
            Part::Partitions(p, _) => p.header().rows as usize,
        }
    }

    fn search(&self, query: &[f32], k: usize, ef: usize) -> Result<(Vec<u32>, Vec<f32>)> {
        match self {
            Part::Graph(g) => g.search(query, k, ef),
            Part::Partitions(p, probes) => p.search(query, k, ef, *probes),
        }
    }

    fn search_batch(&self, queries: &[f32], k: usize, ef: usize) -> Result<Neighbors> {
        match self {
            Part::Graph(g) => g.search_batch(queries, k, ef),
            Part::Partitions(p, probes) => p.search_batch(queries, k, ef, *probes),
        }
    }
}

impl Approx<'_> {
    /// The `k` nearest global rows of one raw query, best first, with scores in the metric's
    /// unit: each shard in turn (beam width, or rows re-ranked, `ef`, raised to `k`), merged.
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Result<(Vec<u32>, Vec<f32>)> {
        if let [(0, g)] = self.parts.as_slice() {
            return g.search(query, k, ef);
        }
        let mut found = Vec::new();
        for (first, g) in &self.parts {
            let (ids, scores) = g.search(query, k.min(g.rows()), ef)?;
            found.extend(ids.into_iter().map(|i| i + first).zip(scores));
        }
        rank(self.metric, &mut found);
        found.truncate(k);
        Ok(found.into_iter().unzip())
    }

    /// [`Approx::search`] for a row-major `[nq, dim]` batch: the shards in parallel, each across
    /// rayon threads, merged per query.
    pub fn search_batch(&self, queries: &[f32], k: usize, ef: usize) -> Result<Neighbors> {
        if let [(0, g)] = self.parts.as_slice() {
            return g.search_batch(queries, k, ef);
        }
        let parts = self
            .parts
            .par_iter()
            .map(|(first, g)| {
                let nn = g.search_batch(queries, k.min(g.rows()), ef)?;
                Ok(offset(nn, *first))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(merge(self.metric, k, &parts))
    }
}

/// Sort `(row, score)` pairs best first under `metric`, ties to the lower row.
fn rank(metric: Metric, found: &mut [(u32, f32)]) {
    found.sort_by(|a, b| {
        let by_score = match metric {
            Metric::L2 => a.1.total_cmp(&b.1),
            Metric::Cos | Metric::Ip => b.1.total_cmp(&a.1),
        };
        by_score.then(a.0.cmp(&b.0))
    });
}

/// `nn` with its rows moved up by `first` (padding stays padding).
fn offset(mut nn: Neighbors, first: u32) -> Neighbors {
    nn.ids
        .iter_mut()
        .filter(|i| **i != NO_NODE)
        .for_each(|i| *i += first);
    nn
}

/// The per-query top-`k` of answers `parts` for the same queries from different shards (global
/// rows, each best first, ties to the lower row) under `metric`; padded with [`NO_NODE`] and
/// NaN where the shards found fewer than `k` in all. An error when the parts answer different
/// numbers of queries.
pub fn merge_neighbors(metric: Metric, k: usize, parts: &[Neighbors]) -> Result<Neighbors> {
    let nq = parts.first().map_or(0, Neighbors::queries);
    if let Some(p) = parts
        .iter()
        .find(|p| p.queries() != nq || p.ids.len() != p.scores.len() || p.ids.len() != nq * p.k)
    {
        return Err(Error::invalid(format!(
            "neighbour lists to merge answer {} and {} queries (or their ids and scores differ in length)",
            nq,
            p.queries()
        )));
    }
    Ok(merge(metric, k, parts))
}

/// [`merge_neighbors`] of parts known to answer the same queries.
fn merge(metric: Metric, k: usize, parts: &[Neighbors]) -> Neighbors {
    let nq = parts.first().map_or(0, Neighbors::queries);
    let per_query: Vec<Vec<(u32, f32)>> = (0..nq)
        .into_par_iter()
        .map(|q| {
            let mut found: Vec<(u32, f32)> = parts
                .iter()
                .flat_map(|p| {
                    p.ids_of(q)
                        .iter()
                        .copied()
                        .zip(p.scores_of(q).iter().copied())
                })
                .filter(|&(i, _)| i != NO_NODE)
                .collect();
            rank(metric, &mut found);
            found.resize(k, (NO_NODE, f32::NAN));
            found
        })
        .collect();
    let (ids, scores) = per_query.into_iter().flatten().unzip();
    Neighbors { k, ids, scores }
}

impl Engine {
    /// The `k` nearest global rows of each query of `queries` (row-major `[nq, dim]`, raw
    /// features), best first: through the HNSW graphs, or exactly with `opts.exact`. The shards
    /// of a corpus are searched in parallel and their answers merged.
    pub fn search(&self, queries: &[f32], k: usize, opts: &SearchOpts) -> Result<Neighbors> {
        self.search_shards(0..self.shards().len(), queries, k, opts)
    }

    /// [`Engine::search`] over the shards `shards` only (one Spark task's part of a corpus):
    /// global rows, padded with [`NO_NODE`] where those shards hold fewer than `k` rows.
    /// [`merge_neighbors`] of every part's answer is the answer of the whole corpus.
    pub fn search_shards(
        &self,
        shards: Range<usize>,
        queries: &[f32],
        k: usize,
        opts: &SearchOpts,
    ) -> Result<Neighbors> {
        score::check_queries(queries, self.dim())?;
        if k == 0 || k > self.rows() {
            return Err(Error::invalid(format!(
                "k = {k} must be between 1 and the number of rows ({})",
                self.rows()
            )));
        }
        let shards = self.shard_range(shards)?;
        if opts.probes == Some(0) {
            return Err(Error::invalid(
                "probes = 0: a partitioned search scans at least 1 partition",
            ));
        }
        let approx = || {
            self.approx_of(shards.clone(), opts.probes)?
                .map_err(|path| missing(path, opts.probes))
        };
        let ef = opts.ef.unwrap_or(DEFAULT_EF).max(k);
        let rows: usize = self.shards()[shards.clone()].iter().map(|s| s.rows()).sum();
        if !opts.exact && queries.len() == self.dim() && rows >= k {
            // One query (and rows enough that nothing is padded): searched on the calling
            // thread, without a hand-off to a pool.
            let (ids, scores) = approx()?.search(queries, k, ef)?;
            return Ok(Neighbors { k, ids, scores });
        }
        self.on_threads(opts.threads, || {
            if opts.exact {
                self.exact_top_k(shards.clone(), queries, k, opts)
            } else {
                approx()?.search_batch(queries, k, ef)
            }
        })
    }

    /// Exact top-`k` over the shards `shards`. On the CPU they are scored as one pass over
    /// their rows (each thread's top-k lists span every shard, so pruning works as in one
    /// file); shards on a GPU are scored apart, each on its own copy, and merged.
    fn exact_top_k(
        &self,
        shards: Range<usize>,
        queries: &[f32],
        k: usize,
        opts: &SearchOpts,
    ) -> Result<Neighbors> {
        if self.shards().len() == 1 {
            return self.scorer(0, opts.device)?.top_k(queries, k);
        }
        let on_gpu = shards
            .clone()
            .map(|i| Ok(self.gpu(i, opts.device)?.is_some()))
            .collect::<Result<Vec<bool>>>()?;
        if !on_gpu.contains(&true) {
            let part = &self.shards()[shards];
            let vectors: Vec<_> = part.iter().map(|s| s.index().vectors()).collect();
            let rows = part.iter().map(|s| s.rows()).sum::<usize>();
            let cpu = CpuScorer::from_segments(&vectors, self.dim(), self.metric())?;
            let nn = offset(cpu.top_k(queries, k.min(rows))?, part[0].first_row() as u32);
            // A part with fewer than k rows is padded.
            return Ok(if k <= rows {
                nn
            } else {
                merge(self.metric(), k, &[nn])
            });
        }
        let parts = shards
            .into_par_iter()
            .map(|i| {
                let s = &self.shards()[i];
                let nn = self
                    .scorer(i, opts.device)?
                    .top_k(queries, k.min(s.rows()))?;
                Ok(offset(nn, s.first_row() as u32))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(merge(self.metric(), k, &parts))
    }

    /// The HNSW graphs of all shards, searched as one; `None` when some shard has none.
    pub fn graphs(&self) -> Result<Option<Approx<'_>>> {
        self.approx(None)
    }

    /// The approximate index of all shards, searched as one: their partitions, `probes` of them
    /// scanned per query, when `probes` is given, else their HNSW graphs. `None` when some
    /// shard has no such section.
    pub fn approx(&self, probes: Option<usize>) -> Result<Option<Approx<'_>>> {
        Ok(self.approx_of(0..self.shards().len(), probes)?.ok())
    }

    /// The approximate index of the shards `shards`, or the file of the first one without it.
    fn approx_of(
        &self,
        shards: Range<usize>,
        probes: Option<usize>,
    ) -> Result<std::result::Result<Approx<'_>, &Path>> {
        let mut parts = Vec::with_capacity(shards.len());
        for s in &self.shards()[shards] {
            let part = match probes {
                None => Graph::open(s.index())?.map(Part::Graph),
                Some(p) => Partitions::open(s.index())?.map(|v| Part::Partitions(v, p)),
            };
            match part {
                Some(part) => parts.push((s.first_row() as u32, part)),
                None => return Ok(Err(s.index().path())),
            }
        }
        Ok(Ok(Approx {
            parts,
            metric: self.metric(),
        }))
    }
}

/// The error of a search that needs a section the index file `path` lacks: its graph, or its
/// partitions when `probes` is given.
pub fn missing(path: &Path, probes: Option<usize>) -> Error {
    match probes {
        None => Error::invalid(format!(
            "{} has no HNSW graph (it was built without one): search exactly, or rebuild it with a graph",
            path.display()
        )),
        Some(_) => Error::invalid(format!(
            "{} has no partitions: build it with --partitions, or add them with `ptsel partition`",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nn(k: usize, ids: &[u32], scores: &[f32]) -> Neighbors {
        Neighbors {
            k,
            ids: ids.to_vec(),
            scores: scores.to_vec(),
        }
    }

    #[test]
    fn merging_keeps_the_best_ties_to_the_lower_row_and_pads() {
        // Two queries, two shards of k = 2 answers each (the second shard starts at row 10).
        let a = nn(2, &[3, 1, 0, NO_NODE], &[0.9, 0.5, 0.7, f32::NAN]);
        let b = offset(nn(2, &[2, 0, 1, 4], &[0.9, 0.4, 0.7, 0.1]), 10);
        assert_eq!(b.ids, [12, 10, 11, 14]);
        let m = merge(Metric::Cos, 3, &[a.clone(), b.clone()]);
        assert_eq!(m.ids, [3, 12, 1, 0, 11, 14]);
        assert_eq!(m.scores_of(0), [0.9, 0.9, 0.5]);
        // Squared distances rank ascending.
        let m = merge(Metric::L2, 2, &[a, b]);
        assert_eq!(m.ids, [10, 1, 14, 0]);
        // Fewer than k found in all: padded.
        let one = nn(1, &[NO_NODE], &[f32::NAN]);
        let m = merge(Metric::Ip, 2, &[one.clone(), one]);
        assert_eq!(m.ids, [NO_NODE, NO_NODE]);
        assert!(m.scores.iter().all(|s| s.is_nan()));
    }
}
