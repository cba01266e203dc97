//! The graph while it is being built ([`Layers`]): what construction inserts into and the
//! post-build repairs mend.

use super::header::NO_NODE;
use super::search::Adjacency;
use crate::error::{Error, Result};
use crate::pages::Pages;

/// The graph while it is being built: level-0 lists in one flat array, upper levels per node.
pub(crate) struct Layers {
    pub(super) m: usize,
    pub(super) m0: usize,
    pub(super) rows: usize,
    pub(super) level0: Pages<u32>,
    pub(super) levels: Vec<u8>,
    pub(super) upper: Vec<Vec<u32>>,
    pub(super) entry: u32,
    pub(super) max_level: u32,
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
    pub(super) fn list_mut(&mut self, node: u32, level: u32) -> &mut [u32] {
        let n = node as usize;
        if level == 0 {
            &mut self.level0[n * self.m0..(n + 1) * self.m0]
        } else {
            let l = level as usize - 1;
            &mut self.upper[n][l * self.m..(l + 1) * self.m]
        }
    }

    /// The level-0 slots of `node` (used ones first, then `NO_NODE`).
    pub(super) fn level0_of(&self, node: u32) -> &[u32] {
        let n = node as usize;
        &self.level0[n * self.m0..(n + 1) * self.m0]
    }

    pub(super) fn set(&mut self, node: u32, level: u32, ids: &[u32]) {
        let list = self.list_mut(node, level);
        list.fill(NO_NODE);
        list[..ids.len()].copy_from_slice(ids);
    }

    pub(super) fn cap(&self, level: u32) -> usize {
        if level == 0 {
            self.m0
        } else {
            self.m
        }
    }
}

/// The used slots of a list (those before the first `NO_NODE`).
pub(super) fn used(list: &[u32]) -> &[u32] {
    &list[..list
        .iter()
        .position(|&x| x == NO_NODE)
        .unwrap_or(list.len())]
}

/// Errors of the graph under construction (a bug, not a file problem).
pub(super) fn internal(problem: String) -> Error {
    Error::Internal(format!("hnsw build: {problem}"))
}
