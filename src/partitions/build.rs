//! Construction of the partitions section: spherical k-means on a sample, every row assigned to
//! its nearest centroid, the rows ordered partition after partition, and their codes laid out in
//! that order.

use super::{pq, CodeKind, Params, PartitionsHeader, HEADER_LEN};
use crate::error::{Result, Step};
use crate::format::Metric;
use crate::kmeans::{self, KmeansParams};
use crate::score::codes::RowCodes;
use crate::score::simd::PANEL;
use crate::score::space::Space;
use crate::store::Index;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Rows the k-means trains on per partition (inside faiss's range of 39 to 256 per centroid).
const TRAIN_PER_PARTITION: usize = 64;
/// Lloyd iterations on the sample.
const ITERS: usize = 10;

/// The partitions section of `index` for `params`; `step(stage, done, total)` reports the
/// k-means iterations and the encoding.
pub fn build_partitions(index: &Index, params: &Params, step: Step<'_>) -> Result<Vec<u8>> {
    let (rows, dim) = (index.rows(), index.dim());
    let p = params.partitions_for(rows);
    let km = KmeansParams {
        k: p,
        iters: ITERS,
        seed: params.seed,
    };
    let trained = kmeans::kmeans_sampled(index, km, TRAIN_PER_PARTITION * p, "partitions", step)?;
    let all: Vec<u32> = (0..rows as u32).collect();
    let assign = kmeans::assign(index, &trained, &all)?;
    step("partitions: assign", 1, 3)?;
    // Counting sort of the rows by partition, rows ascending within each.
    let mut offsets = vec![0u32; p + 1];
    for &(c, _) in &assign {
        offsets[c as usize + 1] += 1;
    }
    for j in 0..p {
        offsets[j + 1] += offsets[j];
    }
    let mut next = offsets.clone();
    let mut order = vec![0u32; rows];
    for (r, &(c, _)) in assign.iter().enumerate() {
        order[next[c as usize] as usize] = r as u32;
        next[c as usize] += 1;
    }
    let space = Space::of(index);
    let centroids = centroids(&space, &offsets, &order, &trained);
    step("partitions: encode", 2, 3)?;
    let block_starts: Vec<u32> = std::iter::once(0)
        .chain(offsets.windows(2).scan(0u32, |at, w| {
            *at += (w[1] - w[0]).div_ceil(pq::BLOCK as u32);
            Some(*at)
        }))
        .collect();
    let header = PartitionsHeader {
        metric: index.metric(),
        dim: dim as u32,
        partitions: p as u32,
        rows: rows as u64,
        seed: params.seed,
        codes: params.codes,
        blocks: match params.codes {
            CodeKind::Sq8 => 0,
            CodeKind::Pq4 => u64::from(block_starts[p]),
        },
    };
    let (regions, len) = header
        .regions()
        .ok_or_else(|| crate::Error::invalid("partitions section too large"))?;
    let mut out = vec![0u8; len];
    out[..HEADER_LEN].copy_from_slice(&header.to_bytes());
    let mut put = |range: std::ops::Range<usize>, bytes: &[u8]| out[range].copy_from_slice(bytes);
    put(
        regions.centroids,
        bytemuck::cast_slice(&panels(&centroids, dim)),
    );
    let l2 = index.metric() == Metric::L2;
    if l2 {
        let norms: Vec<f32> = centroids
            .chunks_exact(dim.max(1))
            .map(|c| c.iter().map(|x| x * x).sum())
            .collect();
        put(regions.centroid_sq_norms, bytemuck::cast_slice(&norms));
    }
    put(regions.offsets, bytemuck::cast_slice(&offsets));
    put(regions.order, bytemuck::cast_slice(&order));
    let [q0, q1] = regions.quantiser;
    match params.codes {
        CodeKind::Sq8 => {
            let codes = RowCodes::of(&space)?;
            put(q0, bytemuck::cast_slice(&codes.quantiser.scale));
            put(q1, bytemuck::cast_slice(&codes.quantiser.offset));
            if l2 {
                let norms: Vec<f32> = order.iter().map(|&r| codes.sq_norms[r as usize]).collect();
                put(regions.sq_norms, bytemuck::cast_slice(&norms));
            }
            out[regions.codes]
                .par_chunks_exact_mut(dim.max(1))
                .zip(&order)
                .for_each(|(slot, &r)| {
                    slot.copy_from_slice(bytemuck::cast_slice(codes.code(r as usize)))
                });
        }
        CodeKind::Pq4 => {
            let books = train_codebooks(&space, &assign, &centroids, params.seed);
            put(q0, bytemuck::cast_slice(&books));
            put(q1, bytemuck::cast_slice(&block_starts));
            if l2 {
                let norms: Vec<f32> = order
                    .par_iter()
                    .map_init(
                        || vec![0f32; dim],
                        |row, &r| {
                            space.row(r as usize, row);
                            row.iter().map(|x| x * x).sum()
                        },
                    )
                    .collect();
                put(regions.sq_norms, bytemuck::cast_slice(&norms));
            }
            encode_pq4(
                &space,
                (&offsets, &order, &block_starts),
                (&centroids, &books),
                &mut out[regions.codes],
            );
        }
    }
    step("partitions: encode", 3, 3)?;
    Ok(out)
}

/// Residuals the 4-bit codebooks train on.
const PQ_SAMPLE: usize = 1 << 16;

/// The 4-bit codebooks of the residuals of a seeded sample of rows (`assign`: each row's
/// partition; `centroids` row-major).
fn train_codebooks(
    space: &Space<'_>,
    assign: &[(u32, f32)],
    centroids: &[f32],
    seed: u64,
) -> Vec<f32> {
    let dim = space.dim;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7071_3400);
    let sample = kmeans::sample(space.rows, PQ_SAMPLE, &mut rng);
    let mut residuals = vec![0f32; sample.len() * dim];
    residuals
        .par_chunks_exact_mut(dim.max(1))
        .zip(&sample)
        .for_each(|(out, &r)| residual(space, r, centroids, assign[r as usize].0, out));
    pq::train(&residuals, dim, seed)
}

/// Row `r` minus centroid `c` into `out`.
fn residual(space: &Space<'_>, r: u32, centroids: &[f32], c: u32, out: &mut [f32]) {
    let dim = space.dim;
    space.row(r as usize, out);
    let centroid = &centroids[c as usize * dim..(c as usize + 1) * dim];
    out.iter_mut().zip(centroid).for_each(|(x, m)| *x -= m);
}

/// The 4-bit codes of every partition's rows, in its blocks of `codes`.
fn encode_pq4(
    space: &Space<'_>,
    (offsets, order, block_starts): (&[u32], &[u32], &[u32]),
    (centroids, books): (&[f32], &[f32]),
    mut codes: &mut [u8],
) {
    let (dim, nb) = (space.dim, pq::codebooks(space.dim));
    let mut parts = Vec::with_capacity(offsets.len());
    for (j, w) in block_starts.windows(2).enumerate() {
        let (mine, rest) = codes.split_at_mut((w[1] - w[0]) as usize * pq::block_bytes(dim));
        parts.push((j, mine));
        codes = rest;
    }
    parts.into_par_iter().for_each(|(j, blocks)| {
        let members = &order[offsets[j] as usize..offsets[j + 1] as usize];
        let mut row = vec![0f32; dim];
        let mut code = vec![0u8; members.len() * nb];
        for (&r, c) in members.iter().zip(code.chunks_exact_mut(nb.max(1))) {
            residual(space, r, centroids, j as u32, &mut row);
            pq::encode(books, &row, c);
        }
        pq::pack(&code, nb, blocks);
    });
}

/// Row-major `[p, dim]` centroids as panels of [`PANEL`] stored dimension-major, zero-padded.
fn panels(centroids: &[f32], dim: usize) -> Vec<f32> {
    let p = centroids.len() / dim.max(1);
    let mut out = vec![0f32; p.div_ceil(PANEL) * PANEL * dim];
    for (c, row) in centroids.chunks_exact(dim.max(1)).enumerate() {
        let (panel, lane) = (c / PANEL, c % PANEL);
        for (j, &x) in row.iter().enumerate() {
            out[(panel * dim + j) * PANEL + lane] = x;
        }
    }
    out
}

/// The mean of each partition's stored vectors (renormalised for cos, where it is the
/// spherical k-means centroid of the final assignment); an empty partition keeps its trained
/// centroid.
fn centroids(space: &Space<'_>, offsets: &[u32], order: &[u32], trained: &[f32]) -> Vec<f32> {
    let dim = space.dim;
    offsets
        .par_windows(2)
        .zip(trained.par_chunks_exact(dim.max(1)))
        .flat_map_iter(|(w, fallback)| {
            let members = &order[w[0] as usize..w[1] as usize];
            if members.is_empty() {
                return fallback.to_vec();
            }
            let mut sum = vec![0f64; dim];
            let mut row = vec![0f32; dim];
            for &r in members {
                space.row(r as usize, &mut row);
                sum.iter_mut()
                    .zip(&row)
                    .for_each(|(s, &x)| *s += f64::from(x));
            }
            let scale = if space.metric == Metric::Cos {
                sum.iter().map(|x| x * x).sum::<f64>().sqrt()
            } else {
                members.len() as f64
            };
            sum.iter()
                .map(|x| if scale > 0.0 { (x / scale) as f32 } else { 0.0 })
                .collect()
        })
        .collect()
}
