//! HNSW (Malkov & Yashunin, hierarchical navigable small worlds) stored as one section of the
//! index and searched in place through the mapping.
//!
//! - [`build_graph`] constructs the graph over the index's stored vectors (f16 or f32, the
//!   index's metric) with parameters M, efConstruction and a seed, deterministically and across
//!   threads, then checks that every point is reachable from the entry point on level 0 and finds
//!   itself, repairs what is not, and exports the layout described in [`header`].
//!   [`crate::build`] runs it when [`crate::BuildOptions::hnsw`] is set (the default).
//! - [`Graph::open`] validates the section in O(1); [`Graph::search`] and [`Graph::search_batch`]
//!   run the beam search (SIMD distances, per-thread visited bitset, prefetch).
//!
//! Why not `hnsw_rs` for construction: its parallel insertion is not reproducible (the graph
//! depends on thread timing) and its level generator has a fixed seed, while ptsel promises the
//! same graph for the same input and `--seed`; it also keeps one `Arc` per edge and needs the
//! vectors as f32. `hnsw_rs` stays the reference our recall is tested against (tests/hnsw.rs)
//! and the construction speed is compared with it in `benches/search.rs`.

mod blocks;
mod build;
mod compact;
pub mod graph;
pub mod header;
mod layers;
mod repair;
mod search;

pub use build::{build_graph, regraph};
pub use graph::Graph;
pub use header::{GraphHeader, GraphLayout, NO_NODE};

use std::collections::BTreeMap;

/// Construction parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Links per node on levels >= 1 (the paper's M); level 0 keeps up to 2 M.
    pub m: usize,
    /// Beam width while inserting (efConstruction).
    pub ef_construction: usize,
    /// Seed of the level draws and the insertion order.
    pub seed: u64,
    /// How the section stores the graph (node blocks by default).
    pub layout: GraphLayout,
}

impl Default for Params {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Params {
    /// The defaults: M 16, efConstruction 200, seed 0, node blocks (chosen by the recall/QPS
    /// benchmarks: see docs/PERFORMANCE.md).
    pub const DEFAULT: Params = Params {
        m: 16,
        ef_construction: 200,
        seed: 0,
        layout: GraphLayout::Blocks,
    };

    /// The parameters as recorded in the index metadata (`Meta.params`).
    pub fn record(&self, params: &mut BTreeMap<String, String>) {
        params.insert("hnsw_m".into(), self.m.to_string());
        params.insert(
            "hnsw_ef_construction".into(),
            self.ef_construction.to_string(),
        );
        params.insert("hnsw_seed".into(), self.seed.to_string());
        params.insert("hnsw_layout".into(), self.layout.name().into());
    }
}
