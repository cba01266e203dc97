//! What an index or corpus holds, as `ptsel info` prints it and `ptsel info --json` writes it.

use super::Engine;
use crate::error::Result;
use serde::Serialize;
use std::collections::BTreeMap;

/// One section of the file.
#[derive(Debug, Clone, Serialize)]
pub struct SectionInfo {
    /// Section kind name.
    pub kind: String,
    /// Byte offset in the file.
    pub offset: u64,
    /// Length in bytes.
    pub bytes: u64,
}

/// The HNSW graph's parameters and the counts of its post-build repairs.
#[derive(Debug, Clone, Serialize)]
pub struct HnswInfo {
    /// Storage layout: `blocks` or `compact`.
    pub layout: &'static str,
    /// Bytes of the graph section.
    pub bytes: u64,
    /// Links per node above level 0 (level 0 keeps 2 M).
    pub m: u32,
    /// Beam width of construction.
    pub ef_construction: u32,
    /// Seed of the level draws and insertion order.
    pub seed: u64,
    /// Highest level.
    pub max_level: u32,
    /// Entry point.
    pub entry: u32,
    /// Points that were unreachable from the entry point and were linked in.
    pub unreachable_repaired: u32,
    /// Points that did not find themselves and were relinked.
    pub self_recall_repaired: u32,
}

/// The partitions of a partitioned search.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionsInfo {
    /// Number of partitions.
    pub partitions: u32,
    /// Codes scanned (`sq8`, `pq4`).
    pub codes: &'static str,
    /// Bytes of the section.
    pub bytes: u64,
    /// Seed of the k-means.
    pub seed: u64,
}

/// One shard of a corpus.
#[derive(Debug, Clone, Serialize)]
pub struct ShardInfo {
    /// The shard's index file.
    pub path: String,
    /// Global row of its first row.
    pub first_row: u64,
    /// Rows.
    pub rows: u64,
    /// File length.
    pub file_bytes: u64,
    /// Build wall time.
    pub build_seconds: f64,
    /// Its graph, when it has one.
    pub hnsw: Option<HnswInfo>,
    /// Its partitions, when it has them.
    pub partitions: Option<PartitionsInfo>,
}

/// Shape, types, classes, sections and creation parameters of an index or corpus. For a corpus,
/// the per-file fields (`sections`, `hnsw`) are empty and each shard is described in `shards`;
/// `created_unix`, `writer` and `params` are the corpus file's and `build_seconds` the shards'
/// total.
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    /// The index file or corpus folder.
    pub path: String,
    /// Format version in the header (the corpus file's version for a corpus).
    pub format_version: u32,
    /// Rows.
    pub rows: u64,
    /// Vector dimension.
    pub dim: u32,
    /// Stored element type (`f16`, `f32`).
    pub dtype: &'static str,
    /// Metric (`cos`, `ip`, `l2`).
    pub metric: &'static str,
    /// Classes (0 when unlabelled).
    pub classes: u32,
    /// Whether the classes have names.
    pub has_class_names: bool,
    /// Whether rows have stored ids (every shard's, for a corpus; otherwise a row's id is its
    /// global row number).
    pub has_ids: bool,
    /// File length (all shards' for a corpus).
    pub file_bytes: u64,
    /// Milliseconds the open took, when the engine opened the file itself.
    pub open_ms: Option<f64>,
    /// Creation time (Unix seconds).
    pub created_unix: u64,
    /// Build wall time.
    pub build_seconds: f64,
    /// Program that wrote the file.
    pub writer: String,
    /// Creation parameters.
    pub params: BTreeMap<String, String>,
    /// The graph, when there is one.
    pub hnsw: Option<HnswInfo>,
    /// The partitions, when there are some.
    pub partitions: Option<PartitionsInfo>,
    /// Every section, in file order.
    pub sections: Vec<SectionInfo>,
    /// The shards of a corpus in row order (empty for a single file).
    pub shards: Vec<ShardInfo>,
    /// The products exact scoring runs on in this process (`amx-bf16`, `f32 avx512f`, ...).
    pub exact_kernel: String,
    /// The scoring units this CPU has.
    pub cpu_units: String,
}

/// The text of `ptsel info`: one line per fact, then the creation parameters and the sections.
impl std::fmt::Display for Info {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.shards.is_empty() {
            "index  "
        } else {
            "corpus "
        };
        writeln!(f, "{what}   {}", self.path)?;
        writeln!(
            f,
            "format    v{}, written by {}",
            self.format_version, self.writer
        )?;
        writeln!(
            f,
            "shape     {} rows x {} dims, {} vectors, metric {}",
            self.rows, self.dim, self.dtype, self.metric
        )?;
        let names = if self.has_class_names { ", named" } else { "" };
        writeln!(f, "classes   {}{names}", self.classes)?;
        writeln!(
            f,
            "ids       {}",
            if self.has_ids {
                "stored"
            } else {
                "row numbers"
            }
        )?;
        writeln!(
            f,
            "size      {} ({:.1} MiB), opened in {:.3} ms, built in {:.2} s",
            self.file_bytes,
            self.file_bytes as f64 / 1048576.0,
            self.open_ms.unwrap_or_default(),
            self.build_seconds
        )?;
        match &self.hnsw {
            Some(h) => writeln!(f,
                "hnsw      {} layout ({:.1} MiB), M {}, ef_construction {}, seed {}, {} levels; repaired {} unreachable, {} self-recall failures",
                h.layout,
                h.bytes as f64 / 1048576.0,
                h.m,
                h.ef_construction,
                h.seed,
                h.max_level + 1,
                h.unreachable_repaired,
                h.self_recall_repaired
            )?,
            None if self.shards.is_empty() => writeln!(f, "hnsw      none (search needs --exact)")?,
            None => {}
        }
        writeln!(
            f,
            "scoring   exact top-k on {} products, re-scored in f64 (this CPU: {})",
            self.exact_kernel, self.cpu_units
        )?;
        if let Some(p) = &self.partitions {
            writeln!(
                f,
                "partitions {} ({} codes, {:.1} MiB), seed {}",
                p.partitions,
                p.codes,
                p.bytes as f64 / 1048576.0,
                p.seed
            )?;
        }
        for s in &self.shards {
            let mut graph = match &s.hnsw {
                Some(h) => format!("hnsw M {}", h.m),
                None => "no hnsw".into(),
            };
            if let Some(p) = &s.partitions {
                graph += &format!(", {} partitions ({})", p.partitions, p.codes);
            }
            writeln!(
                f,
                "shard     {}: rows {}..{}, {:.1} MiB, {graph}, built in {:.2} s",
                s.path,
                s.first_row,
                s.first_row + s.rows,
                s.file_bytes as f64 / 1048576.0,
                s.build_seconds
            )?;
        }
        for (k, v) in &self.params {
            writeln!(f, "param     {k} = {v}")?;
        }
        if !self.sections.is_empty() {
            writeln!(f, "sections:")?;
        }
        for s in &self.sections {
            writeln!(
                f,
                "  {:<18} offset {:>14}  {:>14} bytes",
                s.kind, s.offset, s.bytes
            )?;
        }
        Ok(())
    }
}

/// The graph header of `index`, when it has a graph.
fn hnsw(index: &crate::Index) -> Result<Option<HnswInfo>> {
    Ok(crate::hnsw::Graph::open(index)?.map(|g| {
        let h = g.header();
        HnswInfo {
            layout: h.layout.name(),
            bytes: index
                .section_bytes(crate::format::SectionKind::Hnsw)
                .map_or(0, |b| b.len() as u64),
            m: h.m,
            ef_construction: h.ef_construction,
            seed: h.seed,
            max_level: h.max_level,
            entry: h.entry,
            unreachable_repaired: h.unreachable_repaired,
            self_recall_repaired: h.self_recall_repaired,
        }
    }))
}

/// The partitions header of `index`, when it has partitions.
fn partitions(index: &crate::Index) -> Result<Option<PartitionsInfo>> {
    Ok(crate::partitions::Partitions::open(index)?.map(|p| {
        let h = p.header();
        PartitionsInfo {
            partitions: h.partitions,
            codes: h.codes.name(),
            bytes: index
                .section_bytes(crate::format::SectionKind::Partitions)
                .map_or(0, |b| b.len() as u64),
            seed: h.seed,
        }
    }))
}

impl Engine {
    /// What the index or corpus holds.
    pub fn info(&self) -> Result<Info> {
        let open_ms = self.inner.opened_in.map(|d| d.as_secs_f64() * 1e3);
        let Some(c) = self.corpus() else {
            let index = self.first();
            let m = index.meta();
            return Ok(Info {
                path: index.path().display().to_string(),
                format_version: index.header().version,
                rows: m.rows,
                dim: m.dim,
                dtype: m.dtype.name(),
                metric: m.metric.name(),
                classes: m.classes,
                has_class_names: !m.class_names.is_empty(),
                has_ids: m.has_ids,
                file_bytes: index.header().file_len,
                open_ms,
                created_unix: m.created_unix,
                build_seconds: m.build_seconds,
                writer: m.writer.clone(),
                params: m.params.clone(),
                hnsw: hnsw(index)?,
                partitions: partitions(index)?,
                sections: index
                    .sections()
                    .iter()
                    .map(|e| SectionInfo {
                        kind: e.kind.name(),
                        offset: e.offset,
                        bytes: e.len,
                    })
                    .collect(),
                shards: Vec::new(),
                exact_kernel: crate::score::simd::kernel_name(),
                cpu_units: crate::score::simd::cpu_units(),
            });
        };
        let shards = self
            .shards()
            .iter()
            .map(|s| {
                let index = s.index();
                Ok(ShardInfo {
                    path: index.path().display().to_string(),
                    first_row: s.first_row() as u64,
                    rows: index.meta().rows,
                    file_bytes: index.header().file_len,
                    build_seconds: index.meta().build_seconds,
                    hnsw: hnsw(index)?,
                    partitions: partitions(index)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Info {
            path: self.path().display().to_string(),
            format_version: crate::corpus::CORPUS_VERSION,
            rows: c.rows,
            dim: c.dim,
            dtype: c.dtype.name(),
            metric: c.metric.name(),
            classes: c.classes,
            has_class_names: !c.class_names.is_empty(),
            has_ids: self.shards().iter().all(|s| s.index().meta().has_ids),
            file_bytes: shards.iter().map(|s| s.file_bytes).sum(),
            open_ms,
            created_unix: c.created_unix,
            build_seconds: shards.iter().map(|s| s.build_seconds).sum(),
            writer: c.writer.clone(),
            params: c.params.clone(),
            hnsw: None,
            partitions: None,
            sections: Vec::new(),
            shards,
            exact_kernel: crate::score::simd::kernel_name(),
            cpu_units: crate::score::simd::cpu_units(),
        })
    }
}
