//! Building an index: rows stream from a [`RowSource`] into the vectors section while norms and
//! per-class f64 sums accumulate; labels, class statistics, ids and metadata follow; then
//! [`Extension`]s (HNSW graph, k-means) compute derived sections over the written vectors, and
//! the file is committed atomically.

use crate::error::{Error, IoContext, Result};
use crate::format::{DType, IndexWriter, Meta, Metric, SectionKind};
use crate::npy::MatrixReader;
use crate::store::{Index, MAX_CLASSES};
use half::f16;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Rows converted per block while streaming.
const BLOCK_ROWS: usize = 4096;
/// Most bytes of class means accepted (classes x dim x 8).
const MAX_CLASS_MEANS_BYTES: u64 = 4 << 30;

/// A stream of feature rows (an .npy file, or a backbone running over images).
pub trait RowSource {
    /// Total number of rows.
    fn rows(&self) -> usize;
    /// Row dimension.
    fn dim(&self) -> usize;
    /// Fill `out` (a multiple of `dim`) with the next rows; returns rows read, 0 at the end.
    fn read_rows(&mut self, out: &mut [f32]) -> Result<usize>;
    /// Where the rows come from (a path), for metadata and errors.
    fn origin(&self) -> String;
}

impl RowSource for MatrixReader {
    fn rows(&self) -> usize {
        MatrixReader::rows(self)
    }
    fn dim(&self) -> usize {
        MatrixReader::dim(self)
    }
    fn read_rows(&mut self, out: &mut [f32]) -> Result<usize> {
        MatrixReader::read_rows(self, out)
    }
    fn origin(&self) -> String {
        self.path().display().to_string()
    }
}

/// A derived section computed from the written core sections (HNSW graph, k-means).
pub trait Extension {
    /// Short name for progress messages.
    fn name(&self) -> &str;
    /// Compute the sections to append, reading the partially built `index`.
    fn build(
        &self,
        index: &Index,
        progress: &dyn Fn(&str, u64, u64),
    ) -> Result<Vec<(SectionKind, Vec<u8>)>>;
}

/// Options of a build.
pub struct BuildOptions {
    /// Element type of the stored vectors.
    pub dtype: DType,
    /// Search metric (cos stores unit-normalised vectors).
    pub metric: Metric,
    /// Replace an existing output.
    pub force: bool,
    /// Labels, one per row.
    pub labels: Option<Labels>,
    /// Ids file: one id per line.
    pub ids: Option<PathBuf>,
    /// Class names file: one per line, one per class.
    pub class_names: Option<PathBuf>,
    /// Creation parameters recorded in the metadata.
    pub params: BTreeMap<String, String>,
    /// Derived sections to add.
    pub extensions: Vec<Box<dyn Extension>>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            dtype: DType::F16,
            metric: Metric::Cos,
            force: false,
            labels: None,
            ids: None,
            class_names: None,
            params: BTreeMap::new(),
            extensions: Vec::new(),
        }
    }
}

/// Labels and the file they came from (for error messages).
pub struct Labels {
    /// One label per row.
    pub values: Vec<u32>,
    /// Source file, or a description.
    pub origin: PathBuf,
}

impl Labels {
    /// Read labels from an integer .npy file.
    pub fn from_npy(path: &Path) -> Result<Self> {
        Ok(Labels {
            values: crate::npy::read_labels(path)?,
            origin: path.to_path_buf(),
        })
    }
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// Rows written.
    pub rows: usize,
    /// Dimension.
    pub dim: usize,
    /// Classes (0 when unlabelled).
    pub classes: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Progress callback: (stage, done, total).
pub type Progress<'a> = &'a dyn Fn(&str, u64, u64);

/// Build an index at `out` from `source`.
pub fn build(
    source: &mut dyn RowSource,
    out: &Path,
    opts: BuildOptions,
    progress: Progress<'_>,
) -> Result<BuildReport> {
    let start = Instant::now();
    let (rows, dim) = (source.rows(), source.dim());
    let classes = check_labels(opts.labels.as_ref(), rows)?;
    if (classes as u64) * (dim as u64) * 8 > MAX_CLASS_MEANS_BYTES {
        return Err(Error::invalid(format!(
            "{classes} classes x {dim} dims of class means exceed {} GiB",
            MAX_CLASS_MEANS_BYTES >> 30
        )));
    }
    if let Some(ids) = &opts.ids {
        let n = count_lines(ids)?;
        if n != rows {
            return Err(Error::input(ids, format!("{n} ids for {rows} rows")));
        }
    }
    let class_names = match &opts.class_names {
        Some(p) => read_class_names(p, classes)?,
        None => Vec::new(),
    };

    let mut w = IndexWriter::create(out, opts.force)?;
    let labels = opts.labels.as_ref().map(|l| l.values.as_slice());
    let stats = write_vectors(
        &mut w,
        source,
        opts.dtype,
        opts.metric,
        labels,
        classes,
        progress,
    )?;
    w.add_section(SectionKind::Norms, bytemuck::cast_slice(&stats.norms))?;
    if let Some(labels) = labels {
        w.add_section(SectionKind::Labels, bytemuck::cast_slice(labels))?;
        w.add_section(
            SectionKind::ClassCounts,
            bytemuck::cast_slice(&stats.counts),
        )?;
        let means: Vec<f64> = stats
            .sums
            .chunks_exact(dim)
            .zip(&stats.counts)
            .flat_map(|(s, &c)| {
                s.iter()
                    .map(move |x| if c > 0 { x / c as f64 } else { 0.0 })
            })
            .collect();
        w.add_section(SectionKind::ClassMeans, bytemuck::cast_slice(&means))?;
    }
    if let Some(ids) = &opts.ids {
        write_ids(&mut w, ids, rows)?;
    }
    let mut params = opts.params;
    params.insert("features".into(), source.origin());
    let mut meta = Meta {
        rows: rows as u64,
        dim: dim as u32,
        dtype: opts.dtype,
        metric: opts.metric,
        classes: classes as u32,
        class_names,
        has_ids: opts.ids.is_some(),
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        build_seconds: 0.0,
        writer: format!("ptsel {}", env!("CARGO_PKG_VERSION")),
        params,
    };
    let mut ext_sections = Vec::new();
    if !opts.extensions.is_empty() {
        // Derived sections read the vectors through a regular open of the temporary file.
        w.add_section(SectionKind::Meta, &meta.encode().map_err(Error::invalid)?)?;
        w.checkpoint()?;
        let partial = Index::open(w.temp_path())?;
        for ext in &opts.extensions {
            ext_sections.extend(ext.build(&partial, progress)?);
        }
        drop(partial);
        w = rewind_meta(w)?;
    }
    for (kind, bytes) in &ext_sections {
        w.add_section(*kind, bytes)?;
    }
    meta.build_seconds = start.elapsed().as_secs_f64();
    w.add_section(SectionKind::Meta, &meta.encode().map_err(Error::invalid)?)?;
    w.commit()?;
    Ok(BuildReport {
        rows,
        dim,
        classes,
        seconds: meta.build_seconds,
    })
}

/// Drop the provisional metadata section written for the checkpoint so the final one (with the
/// build time) replaces it.
fn rewind_meta(mut w: IndexWriter) -> Result<IndexWriter> {
    w.drop_last_section(SectionKind::Meta)?;
    Ok(w)
}

fn check_labels(labels: Option<&Labels>, rows: usize) -> Result<usize> {
    let Some(l) = labels else { return Ok(0) };
    if l.values.len() != rows {
        return Err(Error::input(
            &l.origin,
            format!("{} labels for {rows} feature rows", l.values.len()),
        ));
    }
    let max = l.values.iter().copied().max().unwrap_or(0);
    if max >= MAX_CLASSES {
        return Err(Error::input(
            &l.origin,
            format!("label {max} exceeds the maximum class {}", MAX_CLASSES - 1),
        ));
    }
    Ok(max as usize + 1)
}

struct Stats {
    norms: Vec<f32>,
    counts: Vec<u64>,
    sums: Vec<f64>,
}

fn write_vectors(
    w: &mut IndexWriter,
    source: &mut dyn RowSource,
    dtype: DType,
    metric: Metric,
    labels: Option<&[u32]>,
    classes: usize,
    progress: Progress<'_>,
) -> Result<Stats> {
    let (rows, dim) = (source.rows(), source.dim());
    let mut stats = Stats {
        norms: Vec::with_capacity(rows),
        counts: vec![0; classes],
        sums: vec![0.0; classes * dim],
    };
    let mut block = vec![0f32; BLOCK_ROWS * dim];
    let mut half_block: Vec<f16> = Vec::new();
    let mut sink = w.section(SectionKind::Vectors)?;
    let mut done = 0usize;
    while done < rows {
        let n = source.read_rows(&mut block)?;
        if n == 0 {
            return Err(Error::invalid(format!(
                "{}: ended after {done} of {rows} rows",
                source.origin()
            )));
        }
        let block = &mut block[..n * dim];
        let norms: Vec<f64> = block
            .par_chunks_exact(dim)
            .map(|r| {
                r.iter()
                    .map(|&x| f64::from(x) * f64::from(x))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect();
        if let Some(labels) = labels {
            for (r, &l) in block.chunks_exact(dim).zip(&labels[done..done + n]) {
                let l = l as usize;
                stats.counts[l] += 1;
                stats.sums[l * dim..(l + 1) * dim]
                    .iter_mut()
                    .zip(r)
                    .for_each(|(s, &x)| *s += f64::from(x));
            }
        }
        if metric == Metric::Cos {
            block
                .par_chunks_exact_mut(dim)
                .zip(&norms)
                .for_each(|(r, &nrm)| {
                    if nrm > 0.0 {
                        r.iter_mut().for_each(|x| *x = (f64::from(*x) / nrm) as f32);
                    }
                });
        }
        stats.norms.extend(norms.iter().map(|&x| x as f32));
        match dtype {
            DType::F32 => sink.write_pod(block)?,
            DType::F16 => {
                half_block.clear();
                half_block.par_extend(block.par_iter().map(|&x| f16::from_f32(x)));
                sink.write_pod(&half_block)?;
            }
        }
        done += n;
        progress("vectors", done as u64, rows as u64);
    }
    sink.finish()?;
    Ok(stats)
}

fn count_lines(path: &Path) -> Result<usize> {
    let f = std::fs::File::open(path).at(path)?;
    let mut n = 0;
    for line in std::io::BufReader::new(f).split(b'\n') {
        line.at(path)?;
        n += 1;
    }
    Ok(n)
}

fn write_ids(w: &mut IndexWriter, path: &Path, rows: usize) -> Result<()> {
    let f = std::fs::File::open(path).at(path)?;
    let mut offsets: Vec<u64> = Vec::with_capacity(rows + 1);
    offsets.push(0);
    let mut sink = w.section(SectionKind::IdsBlob)?;
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| Error::input(path, format!("line {}: {e}", i + 1)))?;
        let id = line.strip_suffix('\r').unwrap_or(&line);
        if id.is_empty() {
            return Err(Error::input(path, format!("line {} is an empty id", i + 1)));
        }
        sink.write_bytes(id.as_bytes())?;
        offsets.push(sink.len());
    }
    sink.finish()?;
    if offsets.len() != rows + 1 {
        return Err(Error::input(
            path,
            format!("{} ids for {rows} rows", offsets.len() - 1),
        ));
    }
    w.add_section(SectionKind::IdsOffsets, bytemuck::cast_slice(&offsets))
}

fn read_class_names(path: &Path, classes: usize) -> Result<Vec<String>> {
    if classes == 0 {
        return Err(Error::input(
            path,
            "class names given but the corpus has no labels",
        ));
    }
    let text = std::fs::read_to_string(path).at(path)?;
    let names: Vec<String> = text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect();
    if names.len() != classes {
        return Err(Error::input(
            path,
            format!("{} class names for {classes} classes", names.len()),
        ));
    }
    Ok(names)
}
