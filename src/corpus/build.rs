//! Building a corpus: shards built in parallel (locally, or one per Spark task), then the corpus
//! file written once every shard is complete.

use super::{corpus_file, shard_file, write, CorpusMeta, ShardEntry, MAX_ROWS, MAX_SHARDS};
use crate::builder::{
    check_class_means, check_labels, read_class_names, record_input, recorded_params,
};
use crate::error::Progress;
use crate::error::{Error, IoContext, Result};
use crate::npy::MatrixReader;
use crate::store::{Index, OpenOptions};
use crate::{BuildOptions, Labels, RowSource, TextList};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

/// What a sharded build produced.
#[derive(Debug, Clone)]
pub struct CorpusReport {
    /// Shards in the corpus.
    pub shards: usize,
    /// Shards kept from an earlier, interrupted build of the same input.
    pub kept: usize,
    /// Rows.
    pub rows: usize,
    /// Dimension.
    pub dim: usize,
    /// Classes (0 when unlabelled).
    pub classes: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// What [`build_shard`] did.
#[derive(Debug, Clone, Copy)]
pub struct ShardOutcome {
    /// Rows in the shard.
    pub rows: usize,
    /// Whether a complete shard of the same input and options was already there and was kept.
    pub kept: bool,
    /// Wall-clock seconds (verifying a kept shard, or building it).
    pub seconds: f64,
}

/// Build one shard at `out` from `source` with `opts` (whose labels and ids are the source's
/// rows' own). With `resume`, a file already at `out` that verifies and was built from the same
/// source (its origin, and the creation parameters of `opts`, such as the rows of a larger
/// file it holds) with the same options is kept, so a retried or rerun task does not build its
/// shard twice; any other file there is replaced. `progress` is the build's.
pub fn build_shard(
    source: &mut dyn RowSource,
    out: &Path,
    mut opts: BuildOptions,
    resume: bool,
    progress: Progress<'_>,
) -> Result<ShardOutcome> {
    let start = Instant::now();
    if resume && out.exists() {
        let want = recorded_params(&opts, &source.origin());
        if let Ok(index) = Index::open_with(out, OpenOptions { verify: true }) {
            let m = index.meta();
            if m.params == want
                && m.rows == source.rows() as u64
                && m.dtype == opts.dtype
                && m.metric == opts.metric
            {
                return Ok(ShardOutcome {
                    rows: source.rows(),
                    kept: true,
                    seconds: start.elapsed().as_secs_f64(),
                });
            }
        }
        opts.force = true;
    }
    let report = crate::build(source, out, opts, progress)?;
    Ok(ShardOutcome {
        rows: report.rows,
        kept: false,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Build the corpus folder `dir` from `features` cut into shards of `shard_rows` rows (the last
/// one shorter), with the labels, ids and class names of `opts` split along. Shards are built
/// in parallel, as many at a time as there are threads in the current rayon pool, each with
/// `opts`'s dtype, metric and graph; the corpus file is written last, so the folder is a corpus
/// only once every shard is complete. A folder that already holds a corpus is refused unless
/// `opts.force`, which rebuilds every shard in the staging folder ([`shard_dir`]) and replaces
/// the corpus only once they are all built, so a failed rebuild leaves the old corpus whole;
/// without it, shards that an interrupted build of the same input completed are kept.
/// `progress` is called from this thread with ("shards", done, total).
pub fn build(
    features: &Path,
    shard_rows: usize,
    dir: &Path,
    opts: BuildOptions,
    progress: Progress<'_>,
) -> Result<CorpusReport> {
    let start = Instant::now();
    if shard_rows == 0 {
        return Err(Error::invalid("shard rows must be at least 1"));
    }
    if opts.kmeans.is_some() || !opts.extensions.is_empty() {
        return Err(Error::invalid(
            "k-means pseudo-classes and other derived sections are per shard and not comparable across shards: a sharded build takes labels, or none",
        ));
    }
    let (rows, dim) = {
        let r = MatrixReader::open(features)?;
        (r.rows(), r.dim())
    };
    let n = rows.div_ceil(shard_rows);
    if n > MAX_SHARDS {
        return Err(Error::invalid(format!(
            "{rows} rows in shards of {shard_rows} make {n} shards (at most {MAX_SHARDS})"
        )));
    }
    let classes = check_labels(opts.labels.as_ref(), rows)?;
    let class_names = match &opts.class_names {
        Some(names) => read_class_names(names, classes)?,
        None => Vec::new(),
    };
    let ids = opts.ids.as_ref().map(TextList::read_ids).transpose()?;
    if let (Some(ids), Some(list)) = (&ids, &opts.ids) {
        if ids.len() != rows {
            return Err(Error::input(
                list.origin(),
                format!("{} ids for {rows} rows", ids.len()),
            ));
        }
    }
    let ranges: Vec<Range<usize>> = (0..n)
        .map(|i| i * shard_rows..((i + 1) * shard_rows).min(rows))
        .collect();
    if let Some(l) = &opts.labels {
        // Each shard stores the statistics of the classes up to its largest label.
        let stored = ranges.iter().map(|r| {
            let max = l.values[r.clone()].iter().max().copied();
            max.map_or(0, |m| u64::from(m) + 1)
        });
        check_class_means(stored.sum(), dim, &format!(" in {n} shards"))?;
    }
    let shards_at = shard_dir(dir, opts.force)?;

    let mut params = opts.params.clone();
    record_input(&mut params, "features", features);
    params.insert("shard_rows".into(), shard_rows.to_string());
    if let Some(l) = &opts.labels {
        record_input(&mut params, "labels", &l.origin);
    }
    if let Some(list) = &opts.ids {
        record_input(&mut params, "ids", list.origin());
    }
    let shard_opts = |range: Range<usize>| BuildOptions {
        dtype: opts.dtype,
        metric: opts.metric,
        force: opts.force,
        labels: opts.labels.as_ref().map(|l| Labels {
            values: l.values[range.clone()].to_vec(),
            origin: l.origin.clone(),
        }),
        ids: ids.as_ref().map(|v| TextList::List(v[range].to_vec())),
        class_names: None,
        hnsw: opts.hnsw,
        kmeans: None,
        partitions: opts.partitions,
        params: params.clone(),
        extensions: Vec::new(),
        cancel: opts.cancel.clone(),
    };
    let built = in_parallel(ranges.len(), progress, |i| {
        let range = ranges[i].clone();
        let mut source = MatrixReader::open_rows(features, range.clone())?;
        let mut shard = shard_opts(range.clone());
        shard.params.insert(
            "source_rows".into(),
            format!("{}..{}", range.start, range.end),
        );
        build_shard(
            &mut source,
            &shards_at.join(shard_file(i)),
            shard,
            !opts.force,
            &|_, _, _| {},
        )
    });
    let files: Vec<String> = (0..n).map(shard_file).collect();
    let outcomes = built
        .and_then(|o| assemble(dir, &files, class_names, Some(classes), params).map(|_| o))
        .inspect_err(|_| {
            if shards_at != dir {
                // A failed forced rebuild leaves the corpus in place as it was.
                let _ = std::fs::remove_dir_all(&shards_at);
            }
        })?;
    Ok(CorpusReport {
        shards: n,
        kept: outcomes.iter().filter(|o| o.kept).count(),
        rows,
        dim,
        classes,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The folder inside a corpus folder where a forced rebuild builds its shards, which
/// [`assemble`] moves over the corpus in place.
pub const STAGING: &str = ".rebuild";

/// Where the shards of a build of the corpus folder `dir` go (created, with `dir`): `dir`
/// itself, unless it holds a corpus already. That is an error without `force`; with it the
/// corpus stays untouched and usable while the new shards are built in its staging folder
/// ([`STAGING`], emptied first), until [`assemble`] moves them in place. A staging folder left
/// by an interrupted forced rebuild of a folder that holds no corpus is removed.
pub fn shard_dir(dir: &Path, force: bool) -> Result<PathBuf> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::invalid(format!(
            "{}: exists and is not a folder (a sharded build writes a corpus folder)",
            dir.display()
        )));
    }
    let has_corpus = corpus_file(dir).exists();
    if has_corpus && !force {
        return Err(Error::invalid(format!(
            "{}: output exists (replacing it needs the force option)",
            dir.display()
        )));
    }
    let staging = dir.join(STAGING);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).at(&staging)?;
    }
    if !has_corpus {
        std::fs::create_dir_all(dir).at(dir)?;
        return Ok(dir.to_path_buf());
    }
    std::fs::create_dir(&staging).at(&staging)?;
    Ok(staging)
}

/// Remove the files named like shards (`shard-NNNNN.ptsel`) that `files` does not list: left
/// by an earlier build of the folder with more shards.
fn remove_stale_shards(dir: &Path, files: &[String]) -> Result<()> {
    for entry in std::fs::read_dir(dir).at(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let number = name
            .strip_prefix("shard-")
            .and_then(|s| s.strip_suffix(".ptsel"))
            .and_then(|s| s.parse::<usize>().ok());
        if number.is_some_and(|k| name == shard_file(k) && !files.contains(&name)) {
            std::fs::remove_file(entry.path()).at(&entry.path())?;
        }
    }
    Ok(())
}

/// Run `job(0..n)` on as many worker threads as the current rayon pool has (each job's own
/// parallel work goes to that pool), reporting ("shards", done, n) from this thread. After the
/// first failure no new job starts; its error is returned.
fn in_parallel<T: Send>(
    n: usize,
    progress: Progress<'_>,
    job: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let workers = rayon::current_num_threads().clamp(1, n.max(1));
    let mut results: Vec<Option<Result<T>>> = (0..n).map(|_| None).collect();
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, failed, job) = (&next, &failed, &job);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n || failed.load(Ordering::Relaxed) {
                    break;
                }
                let r = job(i);
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                if tx.send((i, r)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        progress("shards", 0, n as u64);
        let mut done = 0;
        for (i, r) in rx {
            done += 1;
            progress("shards", done, n as u64);
            results[i] = Some(r);
        }
    });
    // A job that did not run was skipped after a failure, whose error comes first in order.
    results.into_iter().flatten().collect()
}

/// Write the corpus file of `dir` for the shard `files` (names inside `dir`, in row order),
/// opening each (O(1)) and recording its identity: `classes` is the global class count (the
/// largest shard's when `None`), `class_names` its names (or none), `params` how the corpus was
/// made. Shards must agree in dim, dtype and metric, and all be labelled or all not. Callers
/// verify the shards first ([`build_shard`] verifies a kept one; a fresh build is complete).
/// When `dir` has a staging folder ([`shard_dir`]) the shards are read there and, once they
/// check, moved over the corpus in place. Files named like shards that `files` does not list
/// (an earlier build's) are removed.
pub fn assemble(
    dir: &Path,
    files: &[String],
    class_names: Vec<String>,
    classes: Option<usize>,
    params: BTreeMap<String, String>,
) -> Result<CorpusMeta> {
    let staging = dir.join(STAGING);
    let from = if staging.is_dir() { &staging } else { dir };
    let indexes = files
        .iter()
        .map(|f| Index::open(from.join(f)))
        .collect::<Result<Vec<_>>>()?;
    let first = indexes
        .first()
        .ok_or_else(|| Error::invalid("a corpus needs at least one shard"))?
        .meta();
    let classes = classes.unwrap_or_else(|| {
        indexes
            .iter()
            .map(|i| i.classes())
            .max()
            .unwrap_or_default()
    });
    if !class_names.is_empty() && class_names.len() != classes {
        return Err(Error::invalid(format!(
            "{} class names for {classes} classes",
            class_names.len()
        )));
    }
    let mut next = 0u64;
    let mut shards = Vec::with_capacity(files.len());
    for (file, index) in files.iter().zip(&indexes) {
        let h = index.header();
        shards.push(ShardEntry {
            file: file.clone(),
            first_row: next,
            rows: index.meta().rows,
            bytes: h.file_len,
            table_checksum: super::hex(h.table_checksum),
        });
        next = next.saturating_add(index.meta().rows);
    }
    if next > MAX_ROWS {
        return Err(Error::invalid(format!(
            "the shards hold {next} rows; a corpus holds at most {MAX_ROWS}"
        )));
    }
    let meta = CorpusMeta {
        rows: next,
        dim: first.dim,
        dtype: first.dtype,
        metric: first.metric,
        classes: u32::try_from(classes)
            .map_err(|_| Error::invalid(format!("{classes} classes")))?,
        class_names,
        shards,
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        writer: format!("ptsel {}", env!("CARGO_PKG_VERSION")),
        params,
    };
    for (index, entry) in indexes.iter().zip(&meta.shards) {
        super::check_shard(index, &meta, entry.rows)?;
    }
    if from == staging {
        // From here until the corpus file is written, the old one names shards whose
        // identity no longer matches: opening the folder is an error, never a mix.
        for f in files {
            std::fs::rename(staging.join(f), dir.join(f)).at(&dir.join(f))?;
        }
    }
    remove_stale_shards(dir, files)?;
    write(dir, &meta)?;
    if from == staging {
        std::fs::remove_dir_all(&staging).at(&staging)?;
    }
    Ok(meta)
}
