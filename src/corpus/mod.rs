//! Sharded corpora: a folder of ordinary index files and one small corpus file listing them.
//!
//! ```text
//! DIR/corpus.json          {"format": "ptsel-corpus", "version": 1, "checksum": "<16 hex>",
//!                           "corpus": {rows, dim, dtype, metric, classes, class_names,
//!                                      shards: [{file, first_row, rows, bytes, table_checksum}],
//!                                      created_unix, writer, params}}
//! DIR/shard-00000.ptsel    rows 0..n0 of the corpus (vectors, class statistics, HNSW graph)
//! DIR/shard-00001.ptsel    rows n0..n0+n1
//! ```
//!
//! Rules: `checksum` is the xxh3-64 of the bytes of the `corpus` value exactly as they stand in
//! the file. Shards are listed in row order; shard `i` holds the global rows
//! `first_row..first_row + rows`, and `first_row` is the sum of the rows before it. `file` is a
//! plain file name inside the folder (so the folder can move). A shard's identity is its file
//! length and the xxh3-64 of its section table (which holds every section's checksum): a shard
//! rebuilt, swapped or truncated after the corpus file was written is an [`Error::Corrupt`]
//! naming it. Every shard has the corpus's dim, dtype and metric; in a labelled corpus every
//! shard is labelled with classes below the corpus's class count, and class names live in the
//! corpus file only. A shard's own ids are the corpus ids of its rows; a shard without ids
//! gives its rows their global row numbers as ids.
//!
//! Opening reads the corpus file and opens every shard (O(1) each: header, table and metadata);
//! [`crate::Engine::open`] does it for a folder.

mod build;

pub use build::{assemble, build, build_shard, shard_dir, CorpusReport, ShardOutcome, STAGING};

use crate::error::{Error, IoContext, Result};
use crate::format::{DType, Metric};
use crate::format::{MAX_CLASSES, MAX_DIM};
use crate::store::Index;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Name of the corpus file inside a corpus folder.
pub const CORPUS_FILE: &str = "corpus.json";
/// Value of the corpus file's `format` field.
pub const FORMAT_NAME: &str = "ptsel-corpus";
/// Corpus file version written by this build.
pub const CORPUS_VERSION: u32 = 1;
/// Oldest corpus file version this build reads.
pub const OLDEST_SUPPORTED_CORPUS_VERSION: u32 = 1;
/// Largest corpus file accepted (shard list and class names).
const MAX_CORPUS_FILE: u64 = 256 << 20;
/// Most shards in one corpus.
pub const MAX_SHARDS: usize = 1 << 20;
/// Most rows in one corpus: global rows are `u32`, like a single file's.
pub const MAX_ROWS: u64 = u32::MAX as u64 - 1;

/// One shard as the corpus file lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// File name inside the corpus folder.
    pub file: String,
    /// Global row of the shard's first row.
    pub first_row: u64,
    /// Rows in the shard.
    pub rows: u64,
    /// File length in bytes.
    pub bytes: u64,
    /// xxh3-64 of the shard's section table, 16 hex digits (from its header).
    pub table_checksum: String,
}

/// The body of a corpus file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusMeta {
    /// Rows in all shards.
    pub rows: u64,
    /// Vector dimension of every shard.
    pub dim: u32,
    /// Stored element type of every shard.
    pub dtype: DType,
    /// Metric of every shard.
    pub metric: Metric,
    /// Global class count (0 when unlabelled); shards may have fewer.
    pub classes: u32,
    /// Class names, one per class, or none.
    pub class_names: Vec<String>,
    /// The shards in row order.
    pub shards: Vec<ShardEntry>,
    /// Seconds since the Unix epoch when the corpus file was written.
    pub created_unix: u64,
    /// ptsel version that wrote the corpus file.
    pub writer: String,
    /// How the corpus was made (inputs, shard size), for `info`.
    pub params: BTreeMap<String, String>,
}

/// A shard of an open corpus (or the one file of a single-file engine, at row 0).
#[derive(Debug, Clone)]
pub struct Shard {
    index: Arc<Index>,
    first_row: usize,
}

impl Shard {
    /// A shard holding global rows `first_row..first_row + index.rows()`.
    pub fn new(index: Arc<Index>, first_row: usize) -> Shard {
        Shard { index, first_row }
    }

    /// The shard's index file.
    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// Global row of its first row.
    pub fn first_row(&self) -> usize {
        self.first_row
    }

    /// Its rows.
    pub fn rows(&self) -> usize {
        self.index.rows()
    }
}

/// A corrupt corpus file.
fn corrupt(path: &Path, problem: impl Into<String>) -> Error {
    Error::corrupt(path, "corpus file", problem)
}

/// The 16-hex-digit form of a checksum, as the corpus file stores it.
fn hex(x: u64) -> String {
    format!("{x:016x}")
}

/// Whether `path` is a corpus folder (a directory holding a corpus file).
pub fn is_corpus(path: &Path) -> bool {
    path.is_dir()
}

/// Read and check the corpus file of the folder `dir`.
pub fn read(dir: &Path) -> Result<CorpusMeta> {
    let path = dir.join(CORPUS_FILE);
    let len = std::fs::metadata(&path).at(&path)?.len();
    if len > MAX_CORPUS_FILE {
        return Err(corrupt(
            &path,
            format!("{len} bytes (at most {MAX_CORPUS_FILE})"),
        ));
    }
    let text = std::fs::read(&path).at(&path)?;
    #[derive(Deserialize)]
    struct Envelope<'a> {
        format: String,
        version: u32,
        checksum: String,
        #[serde(borrow)]
        corpus: &'a serde_json::value::RawValue,
    }
    let env: Envelope = serde_json::from_slice(&text)
        .map_err(|e| corrupt(&path, format!("not a ptsel corpus file: {e}")))?;
    if env.format != FORMAT_NAME {
        return Err(corrupt(
            &path,
            format!("format is {:?}, not {FORMAT_NAME:?}", env.format),
        ));
    }
    if !(OLDEST_SUPPORTED_CORPUS_VERSION..=CORPUS_VERSION).contains(&env.version) {
        return Err(Error::Version {
            path,
            found: env.version,
            oldest: OLDEST_SUPPORTED_CORPUS_VERSION,
            newest: CORPUS_VERSION,
        });
    }
    let body = env.corpus.get();
    let computed = hex(crate::format::checksum(body.as_bytes()));
    if computed != env.checksum {
        return Err(corrupt(
            &path,
            format!(
                "checksum mismatch (stored {}, computed {computed})",
                env.checksum
            ),
        ));
    }
    let meta: CorpusMeta = serde_json::from_str(body).map_err(|e| corrupt(&path, e.to_string()))?;
    meta.check(&path)?;
    Ok(meta)
}

/// Write `meta` as the corpus file of `dir`, atomically.
pub fn write(dir: &Path, meta: &CorpusMeta) -> Result<()> {
    let path = dir.join(CORPUS_FILE);
    meta.check(&path)?;
    let body = serde_json::to_string_pretty(meta)
        .map_err(|e| Error::invalid(format!("corpus file: {e}")))?;
    let checksum = hex(crate::format::checksum(body.as_bytes()));
    crate::output::atomic_write(&path, |w| {
        write!(
            w,
            "{{\"format\": \"{FORMAT_NAME}\", \"version\": {CORPUS_VERSION}, \"checksum\": \"{checksum}\",\n\"corpus\": {body}}}\n"
        )
    })
}

impl CorpusMeta {
    /// Check the shard list and the shape (`path` is the corpus file, for errors).
    fn check(&self, path: &Path) -> Result<()> {
        let bad = |problem: String| Err(corrupt(path, problem));
        if self.shards.is_empty() || self.shards.len() > MAX_SHARDS {
            return bad(format!(
                "{} shards (1..={MAX_SHARDS} expected)",
                self.shards.len()
            ));
        }
        if self.dim == 0 || self.dim > MAX_DIM {
            return bad(format!("dimension {} out of range 1..={MAX_DIM}", self.dim));
        }
        if self.classes > MAX_CLASSES {
            return bad(format!("{} classes (at most {MAX_CLASSES})", self.classes));
        }
        if !self.class_names.is_empty() && self.class_names.len() != self.classes as usize {
            return bad(format!(
                "{} class names for {} classes",
                self.class_names.len(),
                self.classes
            ));
        }
        let mut next = 0u64;
        let mut names = HashSet::new();
        for (i, s) in self.shards.iter().enumerate() {
            let plain = Path::new(&s.file).file_name() == Some(std::ffi::OsStr::new(&s.file));
            if !plain || s.file.starts_with('.') || !names.insert(&s.file) {
                return bad(format!(
                    "shard {i}: {:?} is not a plain file name used once",
                    s.file
                ));
            }
            if s.first_row != next || s.rows == 0 {
                return bad(format!(
                    "shard {i} ({}) starts at row {} with {} rows; expected a start at row {next} and at least one row",
                    s.file, s.first_row, s.rows
                ));
            }
            if s.table_checksum.len() != 16 || u64::from_str_radix(&s.table_checksum, 16).is_err() {
                return bad(format!(
                    "shard {i} ({}): table checksum {:?} is not 16 hex digits",
                    s.file, s.table_checksum
                ));
            }
            next = next.saturating_add(s.rows);
        }
        if next != self.rows || next > MAX_ROWS {
            return bad(format!(
                "the shards hold {next} rows, the corpus says {} (at most {MAX_ROWS})",
                self.rows
            ));
        }
        Ok(())
    }
}

/// Open the shards `meta` lists in the folder `dir` and check each against it: present, the
/// same file (length and table checksum), and the corpus's shape.
pub fn open_shards(dir: &Path, meta: &CorpusMeta) -> Result<Vec<Shard>> {
    let listed_by = dir.join(CORPUS_FILE);
    let n = meta.shards.len();
    meta.shards
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let path = dir.join(&entry.file);
            let index = match Index::open(&path) {
                Ok(index) => index,
                Err(e) if e.kind() == crate::ErrorKind::NotFound => {
                    return Err(Error::corrupt(
                        &path,
                        "corpus",
                        format!(
                            "missing: shard {i} of {n} listed by {}",
                            listed_by.display()
                        ),
                    ))
                }
                Err(e) => return Err(e),
            };
            let h = index.header();
            if h.file_len != entry.bytes || hex(h.table_checksum) != entry.table_checksum {
                return Err(Error::corrupt(
                    &path,
                    "corpus",
                    format!(
                        "not the shard {i} that {} lists ({} bytes, table checksum {}; listed: {} bytes, {}): it was rebuilt, replaced or swapped",
                        listed_by.display(),
                        h.file_len,
                        hex(h.table_checksum),
                        entry.bytes,
                        entry.table_checksum
                    ),
                ));
            }
            check_shard(&index, meta, entry.rows)?;
            Ok(Shard::new(Arc::new(index), entry.first_row as usize))
        })
        .collect()
}

/// An error unless `index` fits the corpus `meta` as a shard of `rows` rows.
fn check_shard(index: &Index, meta: &CorpusMeta, rows: u64) -> Result<()> {
    let m = index.meta();
    let mismatch = |what: &str, shard: String, corpus: String| {
        Err(Error::corrupt(
            index.path(),
            "corpus",
            format!("{what} {shard} differs from the corpus's {corpus}"),
        ))
    };
    if m.rows != rows {
        return mismatch("rows", m.rows.to_string(), rows.to_string());
    }
    if m.dim != meta.dim {
        return mismatch("dimension", m.dim.to_string(), meta.dim.to_string());
    }
    if m.dtype != meta.dtype {
        return mismatch("dtype", m.dtype.name().into(), meta.dtype.name().into());
    }
    if m.metric != meta.metric {
        return mismatch("metric", m.metric.name().into(), meta.metric.name().into());
    }
    if (m.classes > 0) != (meta.classes > 0) || m.classes > meta.classes {
        return mismatch(
            "class count",
            m.classes.to_string(),
            format!("{} (shards of a labelled corpus are all labelled, within its classes; those of an unlabelled one have none)", meta.classes),
        );
    }
    Ok(())
}

/// The file name of shard `i` in a corpus folder.
pub fn shard_file(i: usize) -> String {
    format!("shard-{i:05}.ptsel")
}

/// The corpus file of the folder `dir`.
pub fn corpus_file(dir: &Path) -> PathBuf {
    dir.join(CORPUS_FILE)
}
