//! The compact layout of the graph section (version 1): level-0 lists in row order, and the
//! upper levels both layouts share ([`Upper`]).

use super::header::{GraphHeader, GRAPH_HEADER_LEN, NO_NODE};
use super::search::Adjacency;
use crate::error::{Error, Result};
use std::path::Path;

/// The upper levels (>= 1) of either layout: lists of `m` ids per node and level.
#[derive(Clone, Copy)]
pub(super) struct Upper<'a> {
    pub ids: &'a [u32],
    pub offsets: &'a [u32],
    pub lists: &'a [u32],
    pub m: usize,
}

impl<'a> Upper<'a> {
    /// Split `words` (exactly `GraphHeader::upper_len` bytes) into the three arrays.
    pub fn parse(h: &GraphHeader, words: &'a [u32]) -> Self {
        let (ids, rest) = words.split_at(h.upper_nodes as usize);
        let (offsets, lists) = rest.split_at(h.upper_nodes as usize + 1);
        Upper {
            ids,
            offsets,
            lists,
            m: h.m as usize,
        }
    }

    /// The list of `node` on `level` >= 1; the problem when the stored layout disagrees.
    pub fn list(&self, node: u32, level: u32) -> std::result::Result<&'a [u32], String> {
        // Ids are ascending and distinct, so `ids[node] == node` puts it in slot `node`: the
        // case of every upper node of a blocks section written since upper nodes come first.
        let slot = match self.ids.get(node as usize) {
            Some(&id) if id == node => node as usize,
            _ => self
                .ids
                .binary_search(&node)
                .map_err(|_| format!("node {node} listed on level {level} has no upper levels"))?,
        };
        let lists = (self.lists.len() / self.m.max(1)) as u32;
        let (lo, hi) = match (self.offsets.get(slot), self.offsets.get(slot + 1)) {
            (Some(&lo), Some(&hi)) if lo <= hi && hi <= lists => (lo, hi),
            _ => {
                return Err(format!(
                    "upper offsets of node {node} are out of order or range"
                ))
            }
        };
        if level > hi - lo {
            return Err(format!(
                "node {node} listed on level {level} but has {} upper levels",
                hi - lo
            ));
        }
        let start = (lo + level - 1) as usize * self.m;
        self.lists
            .get(start..start + self.m)
            .ok_or_else(|| format!("upper list of node {node} outside the section"))
    }

    /// Levels (>= 1) of the upper node in `slot`.
    pub fn levels_of(&self, slot: usize) -> u32 {
        match (self.offsets.get(slot), self.offsets.get(slot + 1)) {
            (Some(&lo), Some(&hi)) => hi.saturating_sub(lo),
            _ => 0,
        }
    }

    /// The upper levels with every id (nodes and list entries) passed through `to` (`None`: out
    /// of range), as the bytes of upper_ids, upper_offsets and upper_lists; the problem when
    /// the stored lists are inconsistent.
    pub fn renumbered(
        &self,
        to: impl Fn(u32) -> Option<u32>,
    ) -> std::result::Result<Vec<u8>, String> {
        let mut nodes: Vec<(u32, Vec<u32>)> = Vec::with_capacity(self.ids.len());
        for (slot, &id) in self.ids.iter().enumerate() {
            let mut lists = Vec::new();
            for level in 1..=self.levels_of(slot) {
                for &j in self.list(id, level)? {
                    lists.push(match to(j) {
                        Some(n) => n,
                        None if j == NO_NODE => NO_NODE,
                        None => return Err(format!("upper id {j} out of range")),
                    });
                }
            }
            let node = to(id).ok_or_else(|| format!("upper node {id} out of range"))?;
            nodes.push((node, lists));
        }
        nodes.sort_unstable_by_key(|n| n.0);
        let mut offsets = vec![0u32];
        for (_, lists) in &nodes {
            offsets.push(offsets[offsets.len() - 1] + (lists.len() / self.m.max(1)) as u32);
        }
        let ids: Vec<u32> = nodes.iter().map(|n| n.0).collect();
        let mut bytes = bytemuck::cast_slice(&ids).to_vec();
        bytes.extend_from_slice(bytemuck::cast_slice(&offsets));
        for (_, lists) in &nodes {
            bytes.extend_from_slice(bytemuck::cast_slice(lists));
        }
        Ok(bytes)
    }
}

/// The compact layout: level-0 lists in row order and the upper levels.
pub(super) struct Compact<'a> {
    pub path: &'a Path,
    pub m0: usize,
    pub level0: &'a [u32],
    pub upper: Upper<'a>,
}

impl<'a> Compact<'a> {
    /// The compact view of `bytes` (a whole section whose `header` is already checked and
    /// whose length equals `GraphHeader::compact_len`).
    pub fn parse(path: &'a Path, header: &GraphHeader, bytes: &'a [u8]) -> Result<Self> {
        let words: &[u32] = bytes
            .get(GRAPH_HEADER_LEN..)
            .and_then(|b| bytemuck::try_cast_slice(b).ok())
            .ok_or_else(|| Error::corrupt(path, "hnsw", "misaligned"))?;
        let (level0, upper) = words.split_at(header.rows as usize * header.m0 as usize);
        Ok(Compact {
            path,
            m0: header.m0 as usize,
            level0,
            upper: Upper::parse(header, upper),
        })
    }
}

impl Compact<'_> {
    /// A corrupt-graph error naming this index file.
    pub fn corrupt(&self, problem: String) -> Error {
        Error::corrupt(self.path, "hnsw", problem)
    }
}

impl Adjacency for Compact<'_> {
    #[inline]
    fn neighbours(&self, node: u32, level: u32) -> Result<&[u32]> {
        let corrupt = |p: String| self.corrupt(p);
        if level == 0 {
            let start = node as usize * self.m0;
            return self
                .level0
                .get(start..start + self.m0)
                .ok_or_else(|| corrupt(format!("node {node} outside level 0")));
        }
        self.upper.list(node, level).map_err(corrupt)
    }
}
