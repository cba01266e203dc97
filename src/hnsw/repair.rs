//! The post-build checks of a constructed graph and their repairs: every point reachable from
//! the entry point on level 0 (stranded points are linked to their nearest reachable
//! neighbours, or to any reachable node with a free slot where distances tie), and every point
//! found by a search for its own vector.

use super::layers::{internal, used, Layers};
use super::search::{descend, search_layer, Width};
use crate::error::Result;
use crate::score::cand::Cand;
use crate::score::codes::RowCodes;
use crate::score::space::Space;
use rayon::prelude::*;

/// Beam width of the self-recall check and of the searches that place repaired links.
const CHECK_EF: usize = 32;
/// Nodes a repair may take an in-link from (the closest ones a search reached).
const LINK_CHOICES: usize = 8;
/// Reachability repair rounds (a repair link may displace another point's only in-link).
const REPAIR_ROUNDS: usize = 8;

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

/// The search a query for row `p`'s own vector runs, on the codes: row `p` as f32 (the query)
/// and the beam (code distances, closest first).
fn search_codes(
    layers: &Layers,
    space: &Space<'_>,
    codes: &RowCodes,
    p: u32,
) -> Result<(Vec<f32>, Vec<Cand>)> {
    let mut q = vec![0f32; space.dim];
    space.row(p as usize, &mut q);
    let cq = codes.query(&q);
    let top = descend(
        layers,
        codes,
        &cq,
        layers.entry,
        layers.max_level,
        0,
        &internal,
    )?;
    let beam = search_layer(
        layers,
        codes,
        &cq,
        &[top],
        Width::beam(CHECK_EF),
        0,
        &internal,
    )?;
    Ok((q, beam))
}

/// The beam of [`search_codes`] re-ranked with exact distances to `q`, closest first.
fn exact(space: &Space<'_>, mut beam: Vec<Cand>, q: &[f32]) -> Vec<Cand> {
    space.measure(&mut beam, q);
    beam.sort_unstable();
    beam
}

/// The nearest nodes to row `p`'s own vector found by a search as queries run it (on the
/// codes, then re-ranked exactly), closest first.
fn search_row(layers: &Layers, space: &Space<'_>, codes: &RowCodes, p: u32) -> Result<Vec<Cand>> {
    let (q, beam) = search_codes(layers, space, codes, p)?;
    Ok(exact(space, beam, &q))
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
pub(super) fn repair_reachability(
    layers: &mut Layers,
    space: &Space<'_>,
    codes: &RowCodes,
) -> Result<u32> {
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
                    let near = search_row(layers, space, codes, p)?;
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
pub(super) fn repair_self_recall(
    layers: &mut Layers,
    space: &Space<'_>,
    codes: &RowCodes,
) -> Result<u32> {
    let fixes: Vec<(Vec<u32>, u32)> = {
        let layers = &*layers;
        (0..layers.rows as u32)
            .into_par_iter()
            .map(|p| {
                let (q, beam) = search_codes(layers, space, codes, p)?;
                // Found: no exact distance needed (the common case, so the check costs about
                // one query per point).
                if beam.iter().any(|c| c.id == p) {
                    return Ok(None);
                }
                let near = exact(space, beam, &q);
                let own = space.dist(p as usize, &q);
                let ok = near.first().is_some_and(|c| c.d <= own);
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

#[cfg(test)]
mod tests {
    use super::super::build::construct;
    use super::super::search::Adjacency;
    use super::super::Params;
    use super::*;
    use crate::store::Index;
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
                ..Params::default()
            };
            let codes = RowCodes::of(&space).unwrap();
            let mut layers = construct(&space, &codes, &params, &|_, _, _| Ok(())).unwrap();
            repair_reachability(&mut layers, &space, &codes).unwrap();
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
        let codes = RowCodes::of(&space).unwrap();
        let mut layers = construct(
            &space,
            &codes,
            &Params {
                m: 8,
                ef_construction: 64,
                seed: 2,
                ..Params::default()
            },
            &|_, _, _| Ok(()),
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

        let found = repair_reachability(&mut layers, &space, &codes).unwrap();
        assert!(found as usize >= victims.len(), "found {found}");
        assert!(reachable(&layers).iter().all(|&r| r));
        // Each repaired point is now found by a search for its own vector.
        repair_self_recall(&mut layers, &space, &codes).unwrap();
        for &v in &victims {
            assert!(
                search_row(&layers, &space, &codes, v)
                    .unwrap()
                    .iter()
                    .any(|c| c.id == v),
                "{v} not found"
            );
        }
    }
}
