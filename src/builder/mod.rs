//! Building an index: rows stream from a [`RowSource`] into the vectors section while norms and
//! per-class f64 sums accumulate; labels, class statistics, ids and metadata follow; then
//! derived sections (the HNSW graph, k-means pseudo-classes, any [`Extension`]) are computed over
//! the written vectors, and the file is committed atomically. A [`Cancel`] token stops a build
//! between blocks, leaving nothing behind.

mod inputs;
mod regraph;

pub use inputs::{Labels, TextList};
pub use regraph::{add_partitions, rebuild_graph, RegraphReport};

use crate::error::{Cancel, Error, Progress, Result, Step};
use crate::format::{DType, IndexWriter, Meta, Metric, SectionKind};
use crate::hnsw;
use crate::kmeans::{self, KmeansParams};
use crate::npy::MatrixReader;
use crate::partitions;
use crate::store::Index;
use half::f16;
pub(crate) use inputs::{check_labels, read_class_names};
use inputs::{kept_labels, write_ids};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Instant, UNIX_EPOCH};

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
    /// Positions (ascending, among the [`rows`](RowSource::rows) announced) that the source
    /// dropped instead of delivering, such as unreadable images under skip-bad. It must cover
    /// every position before the last row delivered; the builder leaves out their labels and ids.
    fn skipped(&self) -> &[usize] {
        &[]
    }
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
pub trait Extension: Send {
    /// Short name for progress messages.
    fn name(&self) -> &str;
    /// Compute the sections to append, reading the partially built `index`; `step` reports
    /// progress and fails once the build is cancelled.
    fn build(&self, index: &Index, step: Step<'_>) -> Result<Vec<(SectionKind, Vec<u8>)>>;
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
    /// Ids, one per row.
    pub ids: Option<TextList>,
    /// Class names, one per class.
    pub class_names: Option<TextList>,
    /// The HNSW graph to build (`None`: no graph; search then needs exact scoring).
    pub hnsw: Option<hnsw::Params>,
    /// k-means pseudo-classes to compute (for class-level selection on unlabelled corpora).
    pub kmeans: Option<KmeansParams>,
    /// The partitions to build for partitioned search (`None`: none; see [`crate::partitions`]).
    pub partitions: Option<partitions::Params>,
    /// Creation parameters recorded in the metadata besides the ones the build records itself
    /// (the features, labels and ids files, the HNSW and k-means parameters).
    pub params: BTreeMap<String, String>,
    /// Further derived sections to add after the graph and the k-means ones.
    pub extensions: Vec<Box<dyn Extension>>,
    /// Stops the build with an [`Error::Interrupted`], leaving nothing behind.
    pub cancel: Cancel,
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
            hnsw: Some(hnsw::Params::default()),
            kmeans: None,
            partitions: None,
            params: BTreeMap::new(),
            extensions: Vec::new(),
            cancel: Cancel::default(),
        }
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

/// Build an index at `out` from `source`.
pub fn build(
    source: &mut dyn RowSource,
    out: &Path,
    opts: BuildOptions,
    progress: Progress<'_>,
) -> Result<BuildReport> {
    let start = Instant::now();
    let step = |stage: &str, done: u64, total: u64| -> Result<()> {
        opts.cancel.check("build")?;
        progress(stage, done, total);
        Ok(())
    };
    if let Some(p) = &opts.partitions {
        p.check()?;
    }
    let (rows, dim) = (source.rows(), source.dim());
    let classes = check_labels(opts.labels.as_ref(), rows)?;
    check_class_means(classes as u64, dim, "")?;
    if let Some(ids) = &opts.ids {
        let n = ids.count()?;
        if n != rows {
            return Err(Error::input(
                ids.origin(),
                format!("{n} ids for {rows} rows"),
            ));
        }
    }
    let class_names = match &opts.class_names {
        Some(names) => read_class_names(names, classes)?,
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
        &step,
    )?;
    let skipped = source.skipped();
    if skipped.windows(2).any(|p| p[0] >= p[1]) || skipped.last().is_some_and(|&s| s >= rows) {
        return Err(Error::invalid(format!(
            "{}: skipped positions not ascending below {rows}",
            source.origin()
        )));
    }
    let rows = stats.norms.len();
    w.add_section(SectionKind::Norms, bytemuck::cast_slice(&stats.norms))?;
    if let Some(labels) = labels {
        let kept = kept_labels(labels, skipped);
        w.add_section(SectionKind::Labels, bytemuck::cast_slice(&kept))?;
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
        write_ids(&mut w, ids, skipped, rows)?;
    }
    let params = recorded_params(&opts, &source.origin());
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
    if opts.hnsw.is_some()
        || opts.kmeans.is_some()
        || opts.partitions.is_some()
        || !opts.extensions.is_empty()
    {
        // Derived sections read the vectors through a regular open of the temporary file.
        w.add_section(SectionKind::Meta, &meta.encode().map_err(Error::invalid)?)?;
        w.checkpoint()?;
        let partial = Index::open(w.temp_path())?;
        if let Some(p) = &opts.hnsw {
            let (_, bytes) = hnsw::build_graph(&partial, p, &step)?;
            ext_sections.push((SectionKind::Hnsw, bytes));
        }
        if let Some(p) = opts.kmeans {
            ext_sections.extend(kmeans::kmeans(&partial, p, &step)?.sections());
        }
        if let Some(p) = &opts.partitions {
            let bytes = partitions::build_partitions(&partial, p, &step)?;
            ext_sections.push((SectionKind::Partitions, bytes));
        }
        for ext in &opts.extensions {
            ext_sections.extend(ext.build(&partial, &step)?);
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

/// The creation parameters of a build: the caller's, then the inputs and the derived sections'
/// parameters.
pub(crate) fn recorded_params(opts: &BuildOptions, features: &str) -> BTreeMap<String, String> {
    let mut params = opts.params.clone();
    record_input(&mut params, "features", Path::new(features));
    if let Some(l) = &opts.labels {
        record_input(&mut params, "labels", &l.origin);
    }
    if let Some(TextList::File(ids)) = &opts.ids {
        record_input(&mut params, "ids", ids);
    }
    if let Some(h) = &opts.hnsw {
        h.record(&mut params);
    }
    if let Some(k) = &opts.kmeans {
        k.record(&mut params);
    }
    if let Some(p) = &opts.partitions {
        p.record(&mut params);
    }
    params
}

/// Refuses class statistics of `classes` classes (summed over the shards of a corpus, whose
/// each stores its own, `whose` saying so) of `dim` dims beyond [`MAX_CLASS_MEANS_BYTES`].
pub(crate) fn check_class_means(classes: u64, dim: usize, whose: &str) -> Result<()> {
    if classes.saturating_mul(dim as u64).saturating_mul(8) > MAX_CLASS_MEANS_BYTES {
        return Err(Error::invalid(format!(
            "{classes} classes{whose} x {dim} dims of class means exceed {} GiB",
            MAX_CLASS_MEANS_BYTES >> 30
        )));
    }
    Ok(())
}

/// Records the input `path` under `key`, and, when it is a file, its size and modification
/// time under `key_stamp`: a resumed build keeps a shard only when its recorded parameters are
/// today's, so an input rewritten under the same path has its shards rebuilt.
pub(crate) fn record_input(params: &mut BTreeMap<String, String>, key: &str, path: &Path) {
    params.insert(key.into(), path.display().to_string());
    let stamp = std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| {
            let modified = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok());
            let nanos = modified.map_or(0, |d| d.as_nanos());
            format!("{} bytes, modified {nanos} ns", m.len())
        });
    if let Some(stamp) = stamp {
        params.insert(format!("{key}_stamp"), stamp);
    }
}

/// Drop the provisional metadata section written for the checkpoint so the final one (with the
/// build time) replaces it.
fn rewind_meta(mut w: IndexWriter) -> Result<IndexWriter> {
    w.drop_last_section(SectionKind::Meta)?;
    Ok(w)
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
    step: Step<'_>,
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
    // Rows delivered, and positions accounted for (delivered or skipped) among those announced.
    let (mut done, mut position) = (0usize, 0usize);
    let mut row_labels = Vec::with_capacity(BLOCK_ROWS);
    loop {
        let n = source.read_rows(&mut block)?;
        let skipped = source.skipped();
        if n == 0 {
            if done + skipped.len() == rows {
                break;
            }
            return Err(Error::invalid(format!(
                "{}: ended after {done} of {rows} rows",
                source.origin()
            )));
        }
        if done + n + skipped.len() > rows {
            return Err(Error::invalid(format!(
                "{}: delivered more than the {rows} rows announced",
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
            // The label of each delivered row: the next announced position that was not skipped.
            row_labels.clear();
            let mut skip = skipped.partition_point(|&s| s < position);
            while row_labels.len() < n {
                if skipped.get(skip) == Some(&position) {
                    skip += 1;
                } else {
                    row_labels.push(labels[position]);
                }
                position += 1;
            }
            for (r, &l) in block.chunks_exact(dim).zip(&row_labels) {
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
                // Beyond f16's range (|x| >= 65520) a value would be stored as infinity and
                // every distance to its row would be wrong.
                if let Some(i) = half_block.iter().position(|h| h.is_infinite()) {
                    return Err(Error::invalid(format!(
                        "{}: row {} column {} is {}, beyond f16's range (+-{}): build with --dtype f32 or scale the features",
                        source.origin(),
                        done + i / dim,
                        i % dim,
                        block[i],
                        f16::MAX
                    )));
                }
                sink.write_pod(&half_block)?;
            }
        }
        done += n;
        step("vectors", done as u64, rows as u64)?;
    }
    sink.finish()?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows `0..rows` of `dim` values `(row, row, ...)`, dropping the `skip` positions, delivered
    /// at most two at a time.
    struct Skipping {
        rows: usize,
        dim: usize,
        skip: Vec<usize>,
        next: usize,
        skipped: Vec<usize>,
    }

    impl RowSource for Skipping {
        fn rows(&self) -> usize {
            self.rows
        }
        fn dim(&self) -> usize {
            self.dim
        }
        fn read_rows(&mut self, out: &mut [f32]) -> Result<usize> {
            let mut n = 0;
            while n < 2 && self.next < self.rows {
                if self.skip.contains(&self.next) {
                    self.skipped.push(self.next);
                } else {
                    out[n * self.dim..(n + 1) * self.dim].fill(self.next as f32 + 1.0);
                    n += 1;
                }
                self.next += 1;
            }
            Ok(n)
        }
        fn origin(&self) -> String {
            "skipping".into()
        }
        fn skipped(&self) -> &[usize] {
            &self.skipped
        }
    }

    #[test]
    fn skipped_rows_drop_their_labels_and_ids() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.ptsel");
        let mut source = Skipping {
            rows: 7,
            dim: 3,
            skip: vec![0, 3, 4],
            next: 0,
            skipped: Vec::new(),
        };
        let opts = BuildOptions {
            dtype: DType::F32,
            metric: Metric::L2,
            labels: Some(Labels {
                values: vec![0, 0, 1, 1, 1, 2, 2],
                origin: "labels".into(),
            }),
            ids: Some(TextList::List((0..7).map(|i| format!("img{i}")).collect())),
            class_names: Some(TextList::List(vec!["a".into(), "b".into(), "c".into()])),
            ..BuildOptions::default()
        };
        let report = build(&mut source, &out, opts, &|_, _, _| {}).unwrap();
        assert_eq!((report.rows, report.classes), (4, 3));
        let index = Index::open(&out).unwrap();
        // Kept positions 1, 2, 5, 6: values 2, 3, 6, 7, labels 0, 1, 2, 2.
        assert_eq!(index.labels().unwrap(), [0, 1, 2, 2]);
        let ids: Vec<String> = (0..4).map(|r| index.id(r).unwrap().into_owned()).collect();
        assert_eq!(ids, ["img1", "img2", "img5", "img6"]);
        assert_eq!(index.class_counts(), [1, 1, 2]);
        assert_eq!(
            index.class_means(),
            [2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 6.5, 6.5, 6.5]
        );
        assert_eq!(index.class_name(2), Some("c"));
    }

    #[test]
    fn a_source_that_ends_early_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.ptsel");
        // Announces 5 rows but delivers only the last 3, listing none as skipped.
        let mut source = Skipping {
            rows: 5,
            dim: 2,
            skip: vec![],
            next: 2,
            skipped: Vec::new(),
        };
        let err = build(&mut source, &out, BuildOptions::default(), &|_, _, _| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("ended after 3 of 5 rows"), "{err}");
        assert!(!out.exists());
    }
}
