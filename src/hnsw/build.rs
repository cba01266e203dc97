//! Deterministic parallel construction over the mapped vectors, then the post-build checks and
//! repairs ([`super::repair`]) and the export to the section layout.
//!
//! Points are inserted in a seeded random order, in batches that grow with the graph (1 point at
//! first, at most [`MAX_BATCH`]). Within a batch every point searches the graph as it stood at the
//! batch start, in parallel (INSERT, algorithm 1, with SELECT-NEIGHBORS-HEURISTIC, algorithm 4),
//! and also considers the points earlier in its batch, so it misses nothing a one-by-one insertion
//! would have seen. The reverse links are then merged per target node, again in parallel, and
//! written in a fixed order. The graph depends only on the input, the parameters and the seed,
//! never on the thread count or timing.

use super::blocks;
use super::compact::Compact;
use super::graph::Graph;
use super::header::{GraphHeader, GraphLayout, MAX_LEVEL, MAX_M, NO_NODE};
use super::layers::{internal, used, Layers};
use super::repair::{repair_reachability, repair_self_recall};
use super::search::{descend, search_layer, Adjacency, Width};
use super::Params;
use crate::error::{Error, Result, Step};
use crate::pages::Pages;
use crate::score::cand::Cand;
use crate::score::codes::RowCodes;
use crate::score::space::Space;
use crate::store::Index;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Largest insertion batch.
const MAX_BATCH: usize = 256;
/// A batch holds at most this fraction of the points already inserted.
const BATCH_FRACTION: usize = 16;

/// SELECT-NEIGHBORS-HEURISTIC (algorithm 4, without extension or kept pruned connections, as in
/// hnswlib): walk `cands` closest first and keep a candidate only if it is closer to the base
/// than to every neighbour kept so far, which spreads links across directions.
fn select(space: &Space<'_>, cands: &[Cand], m: usize) -> Vec<u32> {
    if cands.len() <= m {
        return cands.iter().map(|c| c.id).collect();
    }
    let mut kept: Vec<Cand> = Vec::with_capacity(m);
    let mut v = vec![0f32; space.dim];
    for c in cands {
        if kept.len() == m {
            break;
        }
        space.row(c.id as usize, &mut v);
        if kept.iter().all(|s| space.dist(s.id as usize, &v) >= c.d) {
            kept.push(*c);
        }
    }
    kept.iter().map(|c| c.id).collect()
}

/// Forward links of one new point: per level `0..=level`, the neighbours it keeps. The beams
/// walk the codes; their nodes are re-ranked exactly before the heuristic chooses.
fn connect(
    layers: &Layers,
    space: &Space<'_>,
    codes: &RowCodes,
    p: u32,
    earlier: &[u32],
    ef: usize,
) -> Result<Vec<Vec<u32>>> {
    let mut q = vec![0f32; space.dim];
    space.row(p as usize, &mut q);
    let cq = codes.query(&q);
    let lp = u32::from(layers.levels[p as usize]);
    let mut peers: Vec<Cand> = earlier.iter().map(|&id| Cand { d: 0.0, id }).collect();
    space.measure(&mut peers, &q);
    let mut out = vec![Vec::new(); lp as usize + 1];
    let mut eps = vec![descend(
        layers,
        codes,
        &cq,
        layers.entry,
        layers.max_level,
        lp,
        &internal,
    )?];
    for level in (0..=lp).rev() {
        let mut cands = if level <= layers.max_level {
            let found = search_layer(layers, codes, &cq, &eps, Width::beam(ef), level, &internal)?;
            let mut cands = found.clone();
            space.measure(&mut cands, &q);
            if !found.is_empty() {
                eps = found;
            }
            cands
        } else {
            Vec::new()
        };
        // A peer farther than the beam's worst would not have entered the beam had it been in
        // the graph already: leave it out (the heuristic then scans no more than usual).
        let bound = if cands.len() >= ef {
            cands.iter().map(|c| c.d).fold(f32::NEG_INFINITY, f32::max)
        } else {
            f32::INFINITY
        };
        cands.extend(
            peers
                .iter()
                .filter(|c| c.d < bound && u32::from(layers.levels[c.id as usize]) >= level),
        );
        cands.sort_unstable();
        out[level as usize] = select(space, &cands, layers.m);
    }
    Ok(out)
}

/// The merged list of `node` at `level` after adding `new` (reverse links), pruned with the
/// heuristic when it overflows.
fn merge(
    layers: &Layers,
    space: &Space<'_>,
    node: u32,
    level: u32,
    new: &[u32],
) -> Result<Vec<u32>> {
    let mut ids: Vec<u32> = used(layers.neighbours(node, level)?).to_vec();
    for &n in new {
        if n != node && !ids.contains(&n) {
            ids.push(n);
        }
    }
    let cap = layers.cap(level);
    if ids.len() <= cap {
        return Ok(ids);
    }
    let mut v = vec![0f32; space.dim];
    space.row(node as usize, &mut v);
    let mut cands: Vec<Cand> = ids.iter().map(|&id| Cand { d: 0.0, id }).collect();
    space.measure(&mut cands, &v);
    cands.sort_unstable();
    Ok(select(space, &cands, cap))
}

/// Draw levels (floor(-ln U * mL), mL = 1 / ln M) and the insertion order from `seed`.
fn draw(rows: usize, m: usize, seed: u64) -> (Vec<u8>, Vec<u32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let ml = 1.0 / (m as f64).ln();
    let levels = (0..rows)
        .map(|_| ((-(1.0 - rng.random::<f64>()).ln() * ml) as u32).min(MAX_LEVEL) as u8)
        .collect();
    let mut order: Vec<u32> = (0..rows as u32).collect();
    for i in (1..rows).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    (levels, order)
}

/// Build the graph of `index` (its stored vectors and metric) and return the section bytes.
pub fn build_graph(
    index: &Index,
    params: &Params,
    step: Step<'_>,
) -> Result<(GraphHeader, Vec<u8>)> {
    if params.m < 2 || params.m > MAX_M as usize {
        return Err(Error::invalid(format!(
            "HNSW M = {} must be between 2 and {MAX_M}",
            params.m
        )));
    }
    if params.ef_construction == 0 || params.ef_construction > 1 << 20 {
        return Err(Error::invalid(format!(
            "HNSW ef_construction = {} must be between 1 and {}",
            params.ef_construction,
            1 << 20
        )));
    }
    let space = Space::of(index);
    let codes = RowCodes::of(&space)?;
    let mut layers = construct(&space, &codes, params, step)?;
    let unreachable = repair_reachability(&mut layers, &space, &codes)?;
    step("hnsw check", 1, 2)?;
    let self_recall = repair_self_recall(&mut layers, &space, &codes)?;
    step("hnsw check", 2, 2)?;
    let (header, bytes) = export(&layers, params, space.metric, unreachable, self_recall);
    drop(layers);
    match params.layout {
        GraphLayout::Compact => Ok((header, bytes)),
        GraphLayout::Blocks => {
            let compact = Compact::parse(index.path(), &header, &bytes)?;
            Ok((header, blocks::encode(&compact, &header, &codes)?))
        }
    }
}

/// The graph section of `index` for `params`: the stored graph when nothing differs, re-encoded
/// when only the layout does (compact to blocks or back; no distance is recomputed), else a fresh
/// construction. Returns the bytes and whether the stored graph was reused.
pub fn regraph(index: &Index, params: &Params, step: Step<'_>) -> Result<(Vec<u8>, bool)> {
    if let Some(graph) = Graph::open(index)? {
        let h = graph.header();
        let same = Params {
            layout: params.layout,
            ..h.params()
        } == *params;
        if same && h.layout == params.layout {
            if let Some(b) = index.section_bytes(crate::format::SectionKind::Hnsw) {
                return Ok((b.to_vec(), true));
            }
        } else if same {
            step("hnsw layout", 0, 1)?;
            let bytes = match (params.layout, graph.compact(), graph.blocks()) {
                (GraphLayout::Blocks, Some(c), _) => {
                    Some(blocks::encode(c, h, &RowCodes::of(graph.space())?)?)
                }
                (GraphLayout::Compact, _, Some(b)) => Some(b.decode(h)?),
                _ => None,
            };
            if let Some(bytes) = bytes {
                step("hnsw layout", 1, 1)?;
                return Ok((bytes, true));
            }
        }
    }
    Ok((build_graph(index, params, step)?.1, false))
}

/// Insert every row (see the module docs).
pub(super) fn construct(
    space: &Space<'_>,
    codes: &RowCodes,
    params: &Params,
    step: Step<'_>,
) -> Result<Layers> {
    let rows = space.rows;
    let (levels, order) = draw(rows, params.m, params.seed);
    let (m, m0) = (params.m, 2 * params.m);
    let upper = levels
        .iter()
        .map(|&l| vec![NO_NODE; usize::from(l) * m])
        .collect();
    let first = order[0];
    let mut layers = Layers {
        m,
        m0,
        rows,
        level0: Pages::filled(rows * m0, NO_NODE)?,
        entry: first,
        max_level: u32::from(levels[first as usize]),
        levels,
        upper,
    };
    let mut done = 1;
    while done < rows {
        let size = (done / BATCH_FRACTION).clamp(1, MAX_BATCH).min(rows - done);
        insert_batch(
            &mut layers,
            space,
            codes,
            &order[done..done + size],
            params.ef_construction,
        )?;
        done += size;
        step("hnsw", done as u64, rows as u64)?;
    }
    Ok(layers)
}

fn insert_batch(
    layers: &mut Layers,
    space: &Space<'_>,
    codes: &RowCodes,
    batch: &[u32],
    ef: usize,
) -> Result<()> {
    let forward: Vec<Vec<Vec<u32>>> = {
        let layers = &*layers;
        batch
            .par_iter()
            .enumerate()
            .map(|(i, &p)| connect(layers, space, codes, p, &batch[..i], ef))
            .collect::<Result<_>>()?
    };
    let mut reverse: Vec<(u32, u32, u32)> = Vec::new();
    for (&p, lists) in batch.iter().zip(&forward) {
        for (level, list) in lists.iter().enumerate() {
            layers.set(p, level as u32, list);
            reverse.extend(list.iter().map(|&j| (level as u32, j, p)));
        }
    }
    // Stable: within one target the new links keep batch order.
    reverse.sort_by_key(|&(level, j, _)| (level, j));
    let groups: Vec<&[(u32, u32, u32)]> =
        reverse.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)).collect();
    let merged: Vec<(u32, u32, Vec<u32>)> = {
        let layers = &*layers;
        groups
            .par_iter()
            .map(|g| {
                let (level, j) = (g[0].0, g[0].1);
                let new: Vec<u32> = g.iter().map(|e| e.2).collect();
                Ok((level, j, merge(layers, space, j, level, &new)?))
            })
            .collect::<Result<_>>()?
    };
    for (level, j, ids) in merged {
        layers.set(j, level, &ids);
    }
    for &p in batch {
        let lp = u32::from(layers.levels[p as usize]);
        if lp > layers.max_level {
            layers.max_level = lp;
            layers.entry = p;
        }
    }
    Ok(())
}

fn export(
    layers: &Layers,
    params: &Params,
    metric: crate::format::Metric,
    unreachable: u32,
    self_recall: u32,
) -> (GraphHeader, Vec<u8>) {
    let upper_ids: Vec<u32> = (0..layers.rows as u32)
        .filter(|&p| layers.levels[p as usize] > 0)
        .collect();
    let mut offsets = Vec::with_capacity(upper_ids.len() + 1);
    offsets.push(0u32);
    for &p in &upper_ids {
        let last = offsets.last().copied().unwrap_or(0);
        offsets.push(last + u32::from(layers.levels[p as usize]));
    }
    let header = GraphHeader {
        layout: GraphLayout::Compact,
        m: layers.m as u32,
        m0: layers.m0 as u32,
        ef_construction: params.ef_construction as u32,
        seed: params.seed,
        metric,
        entry: layers.entry,
        max_level: layers.max_level,
        upper_nodes: upper_ids.len() as u32,
        upper_lists: offsets.last().copied().unwrap_or(0),
        rows: layers.rows as u32,
        unreachable_repaired: unreachable,
        self_recall_repaired: self_recall,
    };
    let mut bytes = header.to_bytes().to_vec();
    bytes.extend_from_slice(bytemuck::cast_slice(&layers.level0[..]));
    bytes.extend_from_slice(bytemuck::cast_slice(&upper_ids));
    bytes.extend_from_slice(bytemuck::cast_slice(&offsets));
    for &p in &upper_ids {
        bytes.extend_from_slice(bytemuck::cast_slice(&layers.upper[p as usize]));
    }
    (header, bytes)
}
