//! # ptsel
//!
//! Selects the pre-training data worth re-using when a model is fine-tuned on a new target task
//! (Liu et al., NeurIPS 2022). Data flows through the modules in this order:
//!
//! - [`format`]: the one-file index layout (header, section table, checksums, atomic writes);
//! - [`embed`]: features computed by a TorchScript backbone over an image folder (feature `torch`);
//! - [`builder`]: streaming features (from .npy or a backbone) into an index;
//! - [`store`]: the memory-mapped, validated views of an index ([`Index`]);
//! - [`hnsw`]: the HNSW graph section: construction, checks and repair, search in place;
//! - [`score`]: exact scoring behind the [`score::Scorer`] trait (SIMD CPU, CUDA);
//! - [`select`]: the paper's UOT class selection, kNN selection, k-means pseudo-classes,
//!   baselines and manifests;
//! - [`embed`]: features computed by a TorchScript backbone over an image folder (cargo
//!   feature `torch`);
//! - [`npy`], [`output`]: reading inputs and writing results atomically;
//! - [`synth`]: deterministic synthetic corpora for the demo, tests and benchmarks.
#![deny(missing_docs)]

pub mod builder;
pub mod embed;
pub mod error;
pub mod format;
pub mod hnsw;
pub mod npy;
pub mod output;
pub mod score;
pub mod select;
pub mod store;
pub mod synth;

pub use builder::{build, BuildOptions, BuildReport, Labels, RowSource, TextList};
pub use error::{Error, Result};
pub use format::{DType, Metric};
pub use store::{Index, OpenOptions, Vectors};
