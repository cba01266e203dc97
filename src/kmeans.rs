//! Pseudo-classes for unlabelled corpora (docs/ARCHITECTURE.md, "The method", step 6): spherical
//! k-means with k-means++ seeding, computed at build time by [`crate::build`] and stored as
//! sections: `KmeansCentroids` (f32 `[k, dim]`, unit norm; `k` = section length / (4 dim)),
//! `KmeansAssign` (u32 `[rows]`) and `KmeansMeans` (f64 `[k, dim]`, the raw means of the
//! clusters that class-level selection needs, so that no selection reads the corpus for them;
//! indexes written before it lack it and have them computed). [`KmeansView::open`] validates
//! them when they are first used.
//!
//! Seeding runs k-means++ on a seeded sample of at most `max(SEED_SAMPLE, 16 k)` rows (as faiss
//! samples its training set), because exact k-means++ is `k` sequential passes over the corpus.
//! Beyond [`PLUSPLUS_MAX_K`] clusters even the sample's `k` passes would take hours (100,000
//! passes over 1.6M rows), so the seeds are `k` distinct rows of the sample drawn uniformly, as
//! faiss seeds every k-means; Lloyd's assignments run on the exact scorer (AMX tiles where the
//! CPU has them).
//! Every step is deterministic for a given seed whatever the thread count: per-row work is
//! independent, and sums are taken per cluster in row order.

use crate::error::{Error, Result, Step};
use crate::format::{Metric, SectionKind};
use crate::score::{cpu::CpuScorer, Scorer};
use crate::store::{Index, Vectors};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Rows seeded with k-means++ at least (when the corpus has that many).
const SEED_SAMPLE: usize = 50_000;
/// Rows converted to f32 per parallel task.
const BLOCK: usize = 1024;
/// Rows assigned per call of the scorer (its packing of the centroids is amortised over them).
const ASSIGN_BLOCK: usize = 4096;

/// Largest k seeded with k-means++; larger runs seed with a uniform draw of distinct rows.
pub const PLUSPLUS_MAX_K: usize = 4096;

/// Lloyd iterations of a k-means run unless asked otherwise.
pub const DEFAULT_ITERS: usize = 20;

/// Parameters of a k-means run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KmeansParams {
    /// Number of clusters (the authors used 2000 for ImageNet).
    pub k: usize,
    /// Lloyd iterations at most (stops earlier when no assignment changes).
    pub iters: usize,
    /// Seed of the k-means++ sampling.
    pub seed: u64,
}

impl KmeansParams {
    /// The parameters as recorded in the index metadata (`Meta.params`).
    pub fn record(&self, params: &mut std::collections::BTreeMap<String, String>) {
        params.insert("kmeans_k".into(), self.k.to_string());
        params.insert("kmeans_iters".into(), self.iters.to_string());
        params.insert("kmeans_seed".into(), self.seed.to_string());
    }
}

/// Centroids and assignments.
#[derive(Debug, Clone, PartialEq)]
pub struct Kmeans {
    /// Unit-norm centroids, `[k, dim]`.
    pub centroids: Vec<f32>,
    /// Cluster of every row.
    pub assign: Vec<u32>,
    /// Means of the raw vectors of each cluster, `[k, dim]` (zero for an empty one).
    pub means: Vec<f64>,
    /// Lloyd iterations run.
    pub iterations: usize,
}

/// Row `i` of `vectors` as a unit vector in `out` (a zero row stays zero).
pub(crate) fn unit_row(vectors: &Vectors<'_>, i: usize, dim: usize, out: &mut [f32]) {
    vectors.row_into(i, dim, out);
    let n = out.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        out.iter_mut().for_each(|x| *x /= n);
    }
}

/// Row `i` of the raw (unnormalised) input features: the stored vector times its norm for
/// `cos` (which stores unit vectors), the stored vector otherwise.
pub(crate) fn raw_row(index: &Index, i: usize, out: &mut [f32]) {
    index.vectors().row_into(i, index.dim(), out);
    if index.metric() == Metric::Cos {
        let n = index.norms().get(i).copied().unwrap_or(0.0);
        out.iter_mut().for_each(|x| *x *= n);
    }
}

/// For each row, the best centroid and its cosine (ties go to the lower centroid): blocks of
/// unit rows scored against the centroids by the exact CPU scorer (a blocked matrix product
/// fused with the top-1), not one dot product at a time.
pub(crate) fn assign(index: &Index, centroids: &[f32], rows: &[u32]) -> Result<Vec<(u32, f32)>> {
    let dim = index.dim();
    let vectors = index.vectors();
    let scorer = CpuScorer::from_vectors(Vectors::F32(centroids), dim, Metric::Ip)?;
    let blocks = rows
        .par_chunks(ASSIGN_BLOCK)
        .map(|block| {
            let mut x = vec![0f32; block.len() * dim];
            for (r, o) in block.iter().zip(x.chunks_exact_mut(dim)) {
                unit_row(&vectors, *r as usize, dim, o);
            }
            let best = scorer.top_k(&x, 1)?;
            Ok(best.ids.into_iter().zip(best.scores).collect::<Vec<_>>())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(blocks.concat())
}

/// k-means++ seeds drawn from `sample` (rows): the first uniformly, each next one with
/// probability proportional to `1 - cos` to its nearest seed so far; beyond [`PLUSPLUS_MAX_K`],
/// `k` distinct rows of `sample` drawn uniformly.
fn seed(index: &Index, k: usize, sample: &[u32], rng: &mut ChaCha8Rng) -> Vec<f32> {
    let dim = index.dim();
    let vectors = index.vectors();
    if k > PLUSPLUS_MAX_K {
        let mut centroids = vec![0f32; k * dim];
        let picks = rand::seq::index::sample(rng, sample.len(), k);
        centroids
            .par_chunks_exact_mut(dim)
            .zip(picks.into_vec())
            .for_each(|(c, i)| unit_row(&vectors, sample[i] as usize, dim, c));
        return centroids;
    }
    let dot = crate::score::simd::kernels().dot_f32;
    let units: Vec<f32> = sample
        .par_chunks(BLOCK)
        .flat_map_iter(|block| {
            let mut out = vec![0f32; block.len() * dim];
            for (r, o) in block.iter().zip(out.chunks_exact_mut(dim)) {
                unit_row(&vectors, *r as usize, dim, o);
            }
            out
        })
        .collect();
    let mut centroids = Vec::with_capacity(k * dim);
    let first = rng.random_range(0..sample.len());
    centroids.extend_from_slice(&units[first * dim..(first + 1) * dim]);
    let mut dist: Vec<f64> = vec![f64::INFINITY; sample.len()];
    for c in 1..k {
        let last = &centroids[(c - 1) * dim..c * dim];
        dist.par_iter_mut()
            .zip(units.par_chunks_exact(dim))
            .for_each(|(d, x)| *d = d.min(f64::from(1.0 - dot(x, last)).max(0.0)));
        let total: f64 = dist.iter().sum();
        let pick = if total > 0.0 {
            let mut r = rng.random::<f64>() * total;
            dist.iter().position(|&d| {
                r -= d;
                r < 0.0
            })
        } else {
            None
        };
        // All remaining mass is zero (duplicates): fall back to a uniform draw.
        let pick = pick.unwrap_or_else(|| rng.random_range(0..sample.len()));
        centroids.extend_from_slice(&units[pick * dim..(pick + 1) * dim]);
    }
    centroids
}

/// Rows of each cluster, in row order.
pub(crate) fn members(assign: &[u32], k: usize) -> Vec<Vec<u32>> {
    let mut m = vec![Vec::new(); k];
    for (r, &c) in assign.iter().enumerate() {
        if let Some(v) = m.get_mut(c as usize) {
            v.push(r as u32);
        }
    }
    m
}

/// Unit-norm mean direction of each cluster; `None` for an empty one.
fn update(index: &Index, members: &[Vec<u32>]) -> Vec<Option<Vec<f32>>> {
    let dim = index.dim();
    let vectors = index.vectors();
    members
        .par_iter()
        .map(|rows| {
            if rows.is_empty() {
                return None;
            }
            let mut sum = vec![0f64; dim];
            let mut x = vec![0f32; dim];
            for &r in rows {
                unit_row(&vectors, r as usize, dim, &mut x);
                sum.iter_mut()
                    .zip(&x)
                    .for_each(|(s, v)| *s += f64::from(*v));
            }
            let n = sum.iter().map(|x| x * x).sum::<f64>().sqrt();
            Some(
                sum.iter()
                    .map(|x| if n > 0.0 { (x / n) as f32 } else { 0.0 })
                    .collect(),
            )
        })
        .collect()
}

/// Spherical k-means over `index`'s vectors; `step("kmeans", iteration, iters)`.
pub fn kmeans(index: &Index, p: KmeansParams, step: Step<'_>) -> Result<Kmeans> {
    let rows = index.rows();
    check(p, rows)?;
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let mut centroids = seed(
        index,
        p.k,
        &sample(rows, SEED_SAMPLE.max(16 * p.k), &mut rng),
        &mut rng,
    );
    let all: Vec<u32> = (0..rows as u32).collect();
    let (assign, iterations) = lloyd(index, &mut centroids, &all, p, "kmeans", step)?;
    let means = raw_means(index, &members(&assign, p.k));
    Ok(Kmeans {
        centroids,
        assign,
        means,
        iterations,
    })
}

/// Means of the raw vectors ([`raw_row`]) of each group of rows, `[groups, dim]` f64, summed in
/// row order (zero for an empty group).
pub(crate) fn raw_means(index: &Index, members: &[Vec<u32>]) -> Vec<f64> {
    let dim = index.dim();
    members
        .par_iter()
        .flat_map_iter(|rows| {
            let mut sum = vec![0f64; dim];
            let mut x = vec![0f32; dim];
            for &r in rows {
                raw_row(index, r as usize, &mut x);
                sum.iter_mut()
                    .zip(&x)
                    .for_each(|(s, v)| *s += f64::from(*v));
            }
            let n = rows.len().max(1) as f64;
            sum.into_iter().map(move |s| s / n)
        })
        .collect()
}

/// Spherical k-means centroids (`[k, dim]`, unit norm) trained on a seeded sample of
/// `train_rows` rows of `index` (all rows when it has no more), as an IVF trains its coarse
/// quantiser; `step(stage, iteration, iters)`.
pub(crate) fn kmeans_sampled(
    index: &Index,
    p: KmeansParams,
    train_rows: usize,
    stage: &str,
    step: Step<'_>,
) -> Result<Vec<f32>> {
    check(p, index.rows())?;
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let train = sample(index.rows(), train_rows.max(p.k), &mut rng);
    let mut centroids = seed(index, p.k, &train, &mut rng);
    lloyd(index, &mut centroids, &train, p, stage, step)?;
    Ok(centroids)
}

/// An error unless `p` fits an index of `rows` rows.
fn check(p: KmeansParams, rows: usize) -> Result<()> {
    if p.k == 0 || p.k > rows {
        return Err(Error::invalid(format!(
            "k-means k = {} must be between 1 and the number of rows ({rows})",
            p.k
        )));
    }
    if p.iters == 0 {
        return Err(Error::invalid("k-means iterations must be at least 1"));
    }
    Ok(())
}

/// A seeded sample of `len` of `rows` rows (all of them when `len >= rows`), ascending.
pub(crate) fn sample(rows: usize, len: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
    let mut s: Vec<u32> = rand::seq::index::sample(rng, rows, rows.min(len))
        .into_iter()
        .map(|r| r as u32)
        .collect();
    s.sort_unstable();
    s
}

/// Lloyd iterations of spherical k-means over the rows `rows` from `centroids` (updated in
/// place); returns the cluster of each of `rows` and the iterations run.
fn lloyd(
    index: &Index,
    centroids: &mut [f32],
    rows: &[u32],
    p: KmeansParams,
    stage: &str,
    step: Step<'_>,
) -> Result<(Vec<u32>, usize)> {
    let dim = index.dim();
    let mut labels: Vec<u32> = vec![u32::MAX; rows.len()];
    let mut iterations = 0;
    for it in 0..p.iters {
        iterations += 1;
        let best = assign(index, centroids, rows)?;
        let changed = best.iter().zip(&labels).filter(|(b, l)| b.0 != **l).count();
        labels.iter_mut().zip(&best).for_each(|(l, b)| *l = b.0);
        // Members as rows (`members` numbers them by position in `rows`).
        let mut groups = members(&labels, p.k);
        groups
            .iter_mut()
            .flatten()
            .for_each(|i| *i = rows[*i as usize]);
        // Empty clusters take the rows farthest from their centroids (lowest cosine, then row).
        let empty = groups.iter().filter(|g| g.is_empty()).count();
        let mut far: Vec<usize> = Vec::new();
        if empty > 0 {
            far = (0..rows.len()).collect();
            far.sort_by(|&a, &b| best[a].1.total_cmp(&best[b].1).then(a.cmp(&b)));
            far.truncate(empty);
        }
        let mut far = far.into_iter().map(|i| rows[i]);
        let mut x = vec![0f32; dim];
        for (c, new) in update(index, &groups).into_iter().enumerate() {
            let slot = &mut centroids[c * dim..(c + 1) * dim];
            match new {
                Some(v) => slot.copy_from_slice(&v),
                None => {
                    if let Some(r) = far.next() {
                        unit_row(&index.vectors(), r as usize, dim, &mut x);
                        slot.copy_from_slice(&x);
                    }
                }
            }
        }
        step(stage, it as u64 + 1, p.iters as u64)?;
        if changed == 0 {
            break;
        }
    }
    Ok((labels, iterations))
}

impl Kmeans {
    /// The sections [`crate::build`] stores: centroids, assignments and raw means.
    pub fn sections(&self) -> [(SectionKind, Vec<u8>); 3] {
        [
            (
                SectionKind::KmeansCentroids,
                bytemuck::cast_slice(&self.centroids).to_vec(),
            ),
            (
                SectionKind::KmeansAssign,
                bytemuck::cast_slice(&self.assign).to_vec(),
            ),
            (
                SectionKind::KmeansMeans,
                bytemuck::cast_slice(&self.means).to_vec(),
            ),
        ]
    }
}

/// Validated view of an index's k-means sections.
#[derive(Debug, Clone, Copy)]
pub struct KmeansView<'a> {
    /// Number of clusters.
    pub k: usize,
    /// Centroids `[k, dim]`.
    pub centroids: &'a [f32],
    /// Cluster of every row; values are checked against `k` where they are read.
    pub assign: &'a [u32],
    /// Raw means `[k, dim]` of the clusters (`None` in indexes written before they were
    /// stored); finiteness is checked where they are used.
    pub means: Option<&'a [f64]>,
}

impl<'a> KmeansView<'a> {
    /// The k-means sections of `index`: `Ok(None)` when it has none, `Error::Corrupt` when their
    /// sizes do not fit the index.
    pub fn open(index: &'a Index) -> Result<Option<Self>> {
        let (cen, asg) = (
            index.section_bytes(SectionKind::KmeansCentroids),
            index.section_bytes(SectionKind::KmeansAssign),
        );
        let corrupt =
            |section: &str, problem: String| Error::corrupt(index.path(), section, problem);
        let (cen, asg) = match (cen, asg) {
            (None, None) => return Ok(None),
            (Some(c), Some(a)) => (c, a),
            (Some(_), None) => {
                return Err(corrupt(
                    "kmeans_assign",
                    "missing (centroids present)".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(corrupt(
                    "kmeans_centroids",
                    "missing (assignments present)".into(),
                ))
            }
        };
        let row_bytes = index.dim() * 4;
        if cen.is_empty() || !cen.len().is_multiple_of(row_bytes) {
            return Err(corrupt(
                "kmeans_centroids",
                format!(
                    "{} bytes is not a whole number of {}-d f32 rows",
                    cen.len(),
                    index.dim()
                ),
            ));
        }
        let k = cen.len() / row_bytes;
        if k > index.rows() {
            return Err(corrupt(
                "kmeans_centroids",
                format!("{k} centroids for {} rows", index.rows()),
            ));
        }
        if asg.len() != index.rows() * 4 {
            return Err(corrupt(
                "kmeans_assign",
                format!(
                    "{} bytes, expected {} (one u32 per row)",
                    asg.len(),
                    index.rows() * 4
                ),
            ));
        }
        let centroids = bytemuck::try_cast_slice(cen)
            .map_err(|e| corrupt("kmeans_centroids", e.to_string()))?;
        let assign =
            bytemuck::try_cast_slice(asg).map_err(|e| corrupt("kmeans_assign", e.to_string()))?;
        let means = match index.section_bytes(SectionKind::KmeansMeans) {
            None => None,
            Some(b) if b.len() != k * index.dim() * 8 => {
                return Err(corrupt(
                    "kmeans_means",
                    format!(
                        "{} bytes, expected {} (one {}-d f64 mean per cluster)",
                        b.len(),
                        k * index.dim() * 8,
                        index.dim()
                    ),
                ))
            }
            Some(b) => Some(
                bytemuck::try_cast_slice(b).map_err(|e| corrupt("kmeans_means", e.to_string()))?,
            ),
        };
        Ok(Some(KmeansView {
            k,
            centroids,
            assign,
            means,
        }))
    }
}
