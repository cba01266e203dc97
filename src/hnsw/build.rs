//! Deterministic parallel construction over the mapped vectors, the post-build checks
//! (reachability, self-recall) with their repairs, and the export to the section layout.
//!
//! Points are inserted in a seeded random order, in batches that grow with the graph (1 point at
//! first, at most [`MAX_BATCH`]). Within a batch every point searches the graph as it stood at the
//! batch start, in parallel (INSERT, algorithm 1, with SELECT-NEIGHBORS-HEURISTIC, algorithm 4),
//! and also considers the points earlier in its batch, so it misses nothing a one-by-one insertion
//! would have seen. The reverse links are then merged per target node, again in parallel, and
//! written in a fixed order. The graph depends only on the input, the parameters and the seed,
//! never on the thread count or timing.

use super::graph::{
    descend, search_layer, Adjacency, Cand, GraphHeader, Space, MAX_LEVEL, MAX_M, NO_NODE,
};
use super::Params;
use crate::error::{Error, Result};
use crate::store::Index;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Largest insertion batch.
const MAX_BATCH: usize = 256;
/// A batch holds at most this fraction of the points already inserted.
const BATCH_FRACTION: usize = 16;
/// Beam width of the self-recall check and of the searches that place repaired links.
const CHECK_EF: usize = 32;
/// Nodes a repair may take an in-link from (the closest ones a search reached).
const LINK_CHOICES: usize = 8;
/// Reachability repair rounds (a repair link may displace another point's only in-link).
const REPAIR_ROUNDS: usize = 8;

/// The graph while it is being built: level-0 lists in one flat array, upper levels per node.
pub(crate) struct Layers {
    m: usize,
    m0: usize,
    rows: usize,
    level0: Vec<u32>,
    levels: Vec<u8>,
    upper: Vec<Vec<u32>>,
    entry: u32,
    max_level: u32,
}

impl Adjacency for Layers {
    fn neighbours(&self, node: u32, level: u32) -> Result<&[u32]> {
        let n = node as usize;
        let list = if level == 0 {
            self.level0.get(n * self.m0..(n + 1) * self.m0)
        } else {
            let l = level as usize - 1;
            self.upper
                .get(n)
                .and_then(|u| u.get(l * self.m..(l + 1) * self.m))
        };
        list.ok_or_else(|| internal(format!("node {node} has no level {level}")))
    }
}

impl Layers {
    fn list_mut(&mut self, node: u32, level: u32) -> &mut [u32] {
        let n = node as usize;
        if level == 0 {
            &mut self.level0[n * self.m0..(n + 1) * self.m0]
        } else {
            let l = level as usize - 1;
            &mut self.upper[n][l * self.m..(l + 1) * self.m]
        }
    }

    /// The level-0 slots of `node` (used ones first, then `NO_NODE`).
    fn level0_of(&self, node: u32) -> &[u32] {
        let n = node as usize;
        &self.level0[n * self.m0..(n + 1) * self.m0]
    }

    fn set(&mut self, node: u32, level: u32, ids: &[u32]) {
        let list = self.list_mut(node, level);
        list.fill(NO_NODE);
        list[..ids.len()].copy_from_slice(ids);
    }

    fn cap(&self, level: u32) -> usize {
        if level == 0 {
            self.m0
        } else {
            self.m
        }
    }
}

fn used(list: &[u32]) -> &[u32] {
    &list[..list
        .iter()
        .position(|&x| x == NO_NODE)
        .unwrap_or(list.len())]
}

/// Errors of the graph under construction (a bug, not a file problem).
fn internal(problem: String) -> Error {
    Error::invalid(format!("hnsw build: {problem}"))
}

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

/// Forward links of one new point: per level `0..=level`, the neighbours it keeps.
fn connect(
    layers: &Layers,
    space: &Space<'_>,
    p: u32,
    earlier: &[u32],
    ef: usize,
) -> Result<Vec<Vec<u32>>> {
    let mut q = vec![0f32; space.dim];
    space.row(p as usize, &mut q);
    let lp = u32::from(layers.levels[p as usize]);
    let peers: Vec<Cand> = earlier
        .iter()
        .map(|&j| Cand {
            d: space.dist(j as usize, &q),
            id: j,
        })
        .collect();
    let mut out = vec![Vec::new(); lp as usize + 1];
    let mut eps = vec![descend(
        layers,
        space,
        &q,
        layers.entry,
        layers.max_level,
        lp,
        &internal,
    )?];
    for level in (0..=lp).rev() {
        let mut cands = if level <= layers.max_level {
            search_layer(layers, space, &q, &eps, ef, level, &internal)?
        } else {
            Vec::new()
        };
        if !cands.is_empty() {
            eps.clone_from(&cands);
        }
        // A peer farther than the beam's worst would not have entered the beam had it been in
        // the graph already: leave it out (the heuristic then scans no more than usual).
        let bound = if cands.len() >= ef {
            cands.last().map_or(f32::INFINITY, |c| c.d)
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
    let mut cands: Vec<Cand> = ids
        .iter()
        .map(|&id| Cand {
            d: space.dist(id as usize, &v),
            id,
        })
        .collect();
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
    progress: &dyn Fn(&str, u64, u64),
) -> Result<(GraphHeader, Vec<u8>)> {
    if params.m < 2 || params.m > MAX_M as usize {
        return Err(Error::invalid(format!(
            "--hnsw-m {} must be between 2 and {MAX_M}",
            params.m
        )));
    }
    if params.ef_construction == 0 || params.ef_construction > 1 << 20 {
        return Err(Error::invalid(format!(
            "--ef-construction {} must be between 1 and {}",
            params.ef_construction,
            1 << 20
        )));
    }
    let space = Space::of(index);
    let mut layers = construct(&space, params, progress)?;
    let unreachable = repair_reachability(&mut layers, &space)?;
    progress("hnsw check", 1, 2);
    let self_recall = repair_self_recall(&mut layers, &space)?;
    progress("hnsw check", 2, 2);
    Ok(export(
        &layers,
        params,
        space.metric,
        unreachable,
        self_recall,
    ))
}

/// Insert every row (see the module docs).
fn construct(
    space: &Space<'_>,
    params: &Params,
    progress: &dyn Fn(&str, u64, u64),
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
        level0: vec![NO_NODE; rows * m0],
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
            &order[done..done + size],
            params.ef_construction,
        )?;
        done += size;
        progress("hnsw", done as u64, rows as u64);
    }
    Ok(layers)
}

fn insert_batch(layers: &mut Layers, space: &Space<'_>, batch: &[u32], ef: usize) -> Result<()> {
    let forward: Vec<Vec<Vec<u32>>> = {
        let layers = &*layers;
        batch
            .par_iter()
            .enumerate()
            .map(|(i, &p)| connect(layers, space, p, &batch[..i], ef))
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

/// Points reachable from the entry point on level 0 (breadth-first).
pub(crate) fn reachable(layers: &Layers) -> Vec<bool> {
    let mut seen = vec![false; layers.rows];
    let mut queue = std::collections::VecDeque::from([layers.entry]);
    seen[layers.entry as usize] = true;
    while let Some(n) = queue.pop_front() {
        for &j in used(layers.level0_of(n)) {
            if !std::mem::replace(&mut seen[j as usize], true) {
                queue.push_back(j);
            }
        }
    }
    seen
}

/// The nearest nodes to row `p`'s own vector found by a normal search, closest first.
fn search_row(layers: &Layers, space: &Space<'_>, p: u32) -> Result<Vec<Cand>> {
    let mut q = vec![0f32; space.dim];
    space.row(p as usize, &mut q);
    let top = descend(
        layers,
        space,
        &q,
        layers.entry,
        layers.max_level,
        0,
        &internal,
    )?;
    search_layer(layers, space, &q, &[top], CHECK_EF, 0, &internal)
}

/// Give `p` an in-link on level 0 from one of `near` (closest first): the closest with a free
/// slot, else the closest, in place of its farthest neighbour (which may strand that one: the
/// caller checks again).
fn link(layers: &mut Layers, space: &Space<'_>, near: &[u32], p: u32) {
    let m0 = layers.m0;
    let list_of = |layers: &Layers, n: u32| layers.level0_of(n).to_vec();
    let near: Vec<u32> = near.iter().copied().filter(|&n| n != p).collect();
    if near.iter().any(|&n| list_of(layers, n).contains(&p)) {
        return;
    }
    let free = near
        .iter()
        .copied()
        .find(|&n| used(&list_of(layers, n)).len() < m0);
    let Some(from) = free.or(near.first().copied()) else {
        return;
    };
    let list = list_of(layers, from);
    let n = used(&list).len();
    let slot = if n < m0 {
        n
    } else {
        let mut v = vec![0f32; space.dim];
        space.row(from as usize, &mut v);
        (0..m0)
            .max_by(|&a, &b| {
                space
                    .dist(list[a] as usize, &v)
                    .total_cmp(&space.dist(list[b] as usize, &v))
            })
            .unwrap_or(m0 - 1)
    };
    layers.level0[from as usize * m0 + slot] = p;
}

/// Link every point that no search from the entry point can reach on level 0 to its nearest
/// reachable point; returns how many distinct points were found stranded (over all rounds).
fn repair_reachability(layers: &mut Layers, space: &Space<'_>) -> Result<u32> {
    let mut ever = vec![false; layers.rows];
    for _ in 0..REPAIR_ROUNDS {
        let seen = reachable(layers);
        let stranded: Vec<u32> = (0..layers.rows as u32)
            .filter(|&p| !seen[p as usize])
            .collect();
        if stranded.is_empty() {
            break;
        }
        stranded.iter().for_each(|&p| ever[p as usize] = true);
        let fixes: Vec<(Vec<u32>, u32)> = {
            let layers = &*layers;
            stranded
                .par_iter()
                .map(|&p| {
                    let near = search_row(layers, space, p)?;
                    let mut from: Vec<u32> = near
                        .iter()
                        .filter(|c| seen[c.id as usize] && c.id != p)
                        .map(|c| c.id)
                        .take(LINK_CHOICES)
                        .collect();
                    if from.is_empty() {
                        from.push(layers.entry);
                    }
                    Ok((from, p))
                })
                .collect::<Result<_>>()?
        };
        for (from, p) in fixes {
            link(layers, space, &from, p);
        }
    }
    let seen = reachable(layers);
    (0..layers.rows).for_each(|p| ever[p] |= !seen[p]);
    link_to_free_slots(layers, &seen);
    Ok(ever.iter().filter(|&&e| e).count() as u32)
}

/// Last resort after the search-guided rounds: where distances tie (duplicate rows), every
/// search returns the same few nodes, whose lists fill up and displace each other's repairs.
/// Each point still stranded gets an in-link from a reachable node with a free level-0 slot
/// (the points linked so far included), in order, so every point ends up reachable.
fn link_to_free_slots(layers: &mut Layers, seen: &[bool]) {
    let m0 = layers.m0;
    let free = |layers: &Layers, n: u32| used(layers.level0_of(n)).len() < m0;
    let mut hosts: Vec<u32> = (0..layers.rows as u32)
        .filter(|&n| seen[n as usize] && free(layers, n))
        .rev()
        .collect();
    for p in (0..layers.rows as u32).filter(|&p| !seen[p as usize]) {
        let Some(&host) = hosts.last() else {
            return;
        };
        let n = used(layers.level0_of(host)).len();
        layers.level0[host as usize * m0 + n] = p;
        if !free(layers, host) {
            hosts.pop();
        }
        if free(layers, p) {
            hosts.push(p);
        }
    }
}

/// Search every point's own vector; a point that is not found (and nothing at least as close
/// is) gets an in-link from the nearest node the search reached. Returns the failures.
fn repair_self_recall(layers: &mut Layers, space: &Space<'_>) -> Result<u32> {
    let fixes: Vec<(Vec<u32>, u32)> = {
        let layers = &*layers;
        (0..layers.rows as u32)
            .into_par_iter()
            .map(|p| {
                let near = search_row(layers, space, p)?;
                let mut q = vec![0f32; space.dim];
                space.row(p as usize, &mut q);
                let own = space.dist(p as usize, &q);
                let ok = near.iter().any(|c| c.id == p) || near.first().is_some_and(|c| c.d <= own);
                Ok((!ok).then(|| (near.iter().map(|c| c.id).take(LINK_CHOICES).collect(), p)))
            })
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect()
    };
    let failures = fixes.len() as u32;
    for (from, p) in fixes {
        link(layers, space, &from, p);
    }
    Ok(failures)
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
    bytes.extend_from_slice(bytemuck::cast_slice(&layers.level0));
    bytes.extend_from_slice(bytemuck::cast_slice(&upper_ids));
    bytes.extend_from_slice(bytemuck::cast_slice(&offsets));
    for &p in &upper_ids {
        bytes.extend_from_slice(bytemuck::cast_slice(&layers.upper[p as usize]));
    }
    (header, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{clustered, Spec};

    /// An index (no graph) over `rows x dim` values `data`, in `dir`.
    fn index_of(dir: &std::path::Path, data: &[f32], rows: usize, dim: usize) -> Index {
        let features = dir.join("f.npy");
        crate::npy::write_matrix(&features, data, rows, dim).unwrap();
        let mut source = crate::npy::MatrixReader::open(&features).unwrap();
        let path = dir.join("x.ptsel");
        crate::build(
            &mut source,
            &path,
            crate::BuildOptions::default(),
            &|_, _, _| {},
        )
        .unwrap();
        Index::open(&path).unwrap()
    }

    #[test]
    fn degenerate_data_leaves_no_point_stranded() {
        // Every row identical (then every distance ties), and every row one of two points.
        let (rows, dim) = (1500, 8);
        let same: Vec<f32> = (0..rows * dim).map(|i| 1.0 + (i % dim) as f32).collect();
        let two: Vec<f32> = (0..rows * dim)
            .map(|i| {
                if (i / dim) % 2 == 0 {
                    1.0
                } else {
                    (i % dim) as f32
                }
            })
            .collect();
        for (what, data) in [("identical", same), ("two points", two)] {
            let t = tempfile::tempdir().unwrap();
            let index = index_of(t.path(), &data, rows, dim);
            let space = Space::of(&index);
            let params = Params {
                m: 4,
                ef_construction: 16,
                seed: 1,
            };
            let mut layers = construct(&space, &params, &|_, _, _| {}).unwrap();
            repair_reachability(&mut layers, &space).unwrap();
            let stranded = reachable(&layers).iter().filter(|&&r| !r).count();
            assert_eq!(
                stranded, 0,
                "{what}: {stranded} of {rows} points unreachable"
            );
        }
    }

    #[test]
    fn stranded_points_are_relinked_and_find_themselves() {
        let t = tempfile::tempdir().unwrap();
        let c = clustered(Spec {
            rows: 800,
            dim: 16,
            classes: 10,
            spread: 1.0,
            seed: 3,
        });
        let index = index_of(t.path(), &c.data, c.rows, c.dim);
        let space = Space::of(&index);
        let mut layers = construct(
            &space,
            &Params {
                m: 8,
                ef_construction: 64,
                seed: 2,
            },
            &|_, _, _| {},
        )
        .unwrap();
        assert!(
            reachable(&layers).iter().all(|&r| r),
            "construction itself left points stranded"
        );

        // Strand five points: remove every level-0 link that leads to them.
        let victims: Vec<u32> = (0..800u32)
            .filter(|&p| p != layers.entry)
            .step_by(150)
            .collect();
        for n in 0..800u32 {
            let kept: Vec<u32> = used(layers.neighbours(n, 0).unwrap())
                .iter()
                .copied()
                .filter(|x| !victims.contains(x))
                .collect();
            layers.set(n, 0, &kept);
        }
        let seen = reachable(&layers);
        assert!(victims.iter().all(|&v| !seen[v as usize]));

        let found = repair_reachability(&mut layers, &space).unwrap();
        assert!(found as usize >= victims.len(), "found {found}");
        assert!(reachable(&layers).iter().all(|&r| r));
        // Each repaired point is now found by a search for its own vector.
        repair_self_recall(&mut layers, &space).unwrap();
        for &v in &victims {
            assert!(
                search_row(&layers, &space, v)
                    .unwrap()
                    .iter()
                    .any(|c| c.id == v),
                "{v} not found"
            );
        }
    }
}
