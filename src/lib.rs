//! # ptsel
//!
//! Selects the pre-training data worth re-using when a model is fine-tuned on a new target task
//! (Liu et al., NeurIPS 2022). The modules are declared below in layers, lowest first, and a
//! module imports only modules declared before it (`tests/layering.rs` keeps it so):
//!
//! - [`error`]: [`Error`], [`Result`], and the progress ([`Progress`], [`Step`]) and
//!   cancellation ([`Cancel`]) types every long operation takes;
//! - [`output`], [`format`], [`npy`]: atomic writes, the one-file index layout (header, section
//!   table, checksums, limits), `.npy` inputs and outputs;
//! - [`uot`]: the entropic unbalanced OT solver (plain and log-domain Sinkhorn scaling);
//! - [`synth`], [`data`]: deterministic synthetic corpora, and the MoCo-v2 class means shipped
//!   with ptsel;
//! - [`store`]: the memory-mapped, validated views of an index ([`Index`]);
//! - [`score`]: exact scoring behind the [`score::Scorer`] trait (SIMD CPU, CUDA), and the
//!   machinery both index kinds search with (quantised codes, candidates, the distance space);
//! - [`kmeans`]: spherical k-means (pseudo-classes, partition centroids);
//! - [`hnsw`], [`partitions`]: the two index kinds, an HNSW graph and an inverted file of
//!   k-means partitions, each a section searched in place;
//! - [`builder`], [`corpus`], [`embed`]: building an index from features (from .npy or a
//!   TorchScript backbone, cargo feature `torch`), or a sharded corpus of index files;
//! - [`engine`]: [`Engine`], an open index or corpus with its caches, the entry point for
//!   programs: search, info, measurement;
//! - [`select`]: the paper's UOT class selection, kNN selection, baselines, their parameters
//!   and defaults, manifests and summaries ([`Engine::select`]);
//! - [`plot`]: recall/QPS plots (cargo feature `cli`).
//!
//! Build once, then open and select as often as needed:
//!
//! ```
//! use ptsel::select::{manifest, Amount, SelectParams, Target, TargetKind};
//! use ptsel::synth::{clustered, Spec};
//! use ptsel::{BuildOptions, Engine, Labels};
//!
//! # fn main() -> ptsel::Result<()> {
//! let dir = tempfile::tempdir().map_err(|e| ptsel::Error::io("tempdir", e))?;
//! // A labelled corpus of 2,000 rows in 20 classes, streamed from a .npy file.
//! let corpus = clustered(Spec { rows: 2000, dim: 32, classes: 20, spread: 0.4, seed: 7 });
//! let features = dir.path().join("features.npy");
//! ptsel::npy::write_matrix(&features, &corpus.data, corpus.rows, corpus.dim)?;
//! let mut rows = ptsel::npy::MatrixReader::open(&features)?;
//! let labels = Labels { values: corpus.labels.clone(), origin: "labels".into() };
//! let opts = BuildOptions { labels: Some(labels), ..Default::default() }; // with an HNSW graph
//! let index = dir.path().join("corpus.ptsel");
//! ptsel::build(&mut rows, &index, opts, &|_, _, _| {})?;
//!
//! // A target task whose samples resemble classes 3 and 11.
//! let mut target = Vec::new();
//! for c in [3, 11] {
//!     for r in (0..corpus.rows).filter(|&r| corpus.labels[r] == c).take(10) {
//!         target.extend_from_slice(&corpus.data[r * corpus.dim..(r + 1) * corpus.dim]);
//!     }
//! }
//! let target = Target {
//!     features: ptsel::npy::Matrix { rows: 20, dim: corpus.dim, data: target },
//!     kind: TargetKind::Samples,
//!     origin: "target".into(),
//! };
//!
//! let engine = Engine::open(&index)?; // O(1): validates and maps the file
//! let params = SelectParams { amount: Amount::Classes(2), ..Default::default() }; // UOT
//! let selection = engine.select(&target, None, &params)?;
//! let mut chosen = selection.selected_classes.clone();
//! chosen.sort();
//! assert_eq!(chosen, vec![3, 11]);
//! let out = dir.path().join("selection.csv");
//! manifest::write(&out, manifest::Format::Csv, &engine, &selection)?;
//! // Every sample of the two classes, in rank order.
//! let members = corpus.labels.iter().filter(|&&l| l == 3 || l == 11).count();
//! assert_eq!(selection.picks.len(), members);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

#[macro_use]
mod names;

pub mod error;
pub mod output;
pub mod format;
pub mod npy;
pub mod uot;
pub mod synth;
pub mod data;
mod pages;
pub mod store;
pub mod score;
pub mod kmeans;
pub mod hnsw;
pub mod partitions;
pub mod builder;
pub mod corpus;
pub mod embed;
pub mod engine;
pub mod select;
#[cfg(feature = "cli")]
pub mod plot;

pub use builder::{
    add_partitions, build, rebuild_graph, BuildOptions, BuildReport, Labels, RegraphReport,
    RowSource, TextList,
};
pub use engine::{Engine, SearchOpts};
pub use error::{Cancel, Error, ErrorKind, Progress, Result, Step};
pub use format::{DType, Metric};
pub use store::{Index, OpenOptions, Vectors};
