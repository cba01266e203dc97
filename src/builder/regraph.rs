//! Replacing the HNSW graph of a built index (another layout, other parameters), or giving it
//! partitions, without reading the features again: every other section is copied as stored, and
//! the file is replaced atomically like a build's.

use super::{Progress, Step};
use crate::error::{Error, Result};
use crate::format::{IndexWriter, Meta, SectionKind};
use crate::hnsw;
use crate::partitions;
use crate::store::Index;
use std::path::Path;
use std::time::Instant;

/// What [`rebuild_graph`] did.
#[derive(Debug, Clone, Copy)]
pub struct RegraphReport {
    /// Rows the graph covers.
    pub rows: usize,
    /// True when the stored graph was kept or re-encoded, false when it was constructed anew.
    pub reused: bool,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Write `src` to `dest` (which may be `src` itself) with its graph made for `params`; see
/// [`hnsw::regraph`]. Every section of `src` is verified before it is copied. `force` allows
/// replacing an existing `dest` other than `src`.
pub fn rebuild_graph(
    src: &Path,
    dest: &Path,
    params: &hnsw::Params,
    force: bool,
    progress: Progress<'_>,
) -> Result<RegraphReport> {
    let start = Instant::now();
    let mut reused = false;
    let rows = rewrite(
        src,
        dest,
        "rebuild-graph",
        force,
        progress,
        |index, step, meta| {
            let (graph, kept) = hnsw::regraph(index, params, step)?;
            reused = kept;
            params.record(&mut meta.params);
            Ok((SectionKind::Hnsw, graph))
        },
    )?;
    Ok(RegraphReport {
        rows,
        reused,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Write `src` to `dest` (which may be `src` itself) with partitions made for `params` (see
/// [`crate::partitions`]), replacing any it has; returns the number of partitions made. Every
/// section of `src` is verified before it is copied. `force` allows replacing an existing `dest`
/// other than `src`.
pub fn add_partitions(
    src: &Path,
    dest: &Path,
    params: &partitions::Params,
    force: bool,
    progress: Progress<'_>,
) -> Result<usize> {
    params.check()?;
    let mut made = 0;
    rewrite(
        src,
        dest,
        "partition",
        force,
        progress,
        |index, step, meta| {
            let bytes = partitions::build_partitions(index, params, step)?;
            made = params.partitions_for(index.rows());
            params.record(&mut meta.params);
            Ok((SectionKind::Partitions, bytes))
        },
    )?;
    Ok(made)
}

/// Copy the index file `src` to `dest` with the section `derive` makes from it (replacing one
/// of the same kind) and the metadata `derive` updated; returns the rows. `command` names the
/// caller in errors.
fn rewrite(
    src: &Path,
    dest: &Path,
    command: &str,
    force: bool,
    progress: Progress<'_>,
    derive: impl FnOnce(&Index, Step<'_>, &mut Meta) -> Result<(SectionKind, Vec<u8>)>,
) -> Result<usize> {
    if src.is_dir() {
        return Err(Error::input(
            src,
            format!("a folder: {command} takes one index file (a corpus is rebuilt with `ptsel build --shard-rows`, which keeps the shards built with the same options)"),
        ));
    }
    let index = Index::open(src)?;
    index.verify()?;
    let step: Step<'_> = &|stage, done, total| {
        progress(stage, done, total);
        Ok(())
    };
    let mut meta = index.meta().clone();
    let (kind, bytes) = derive(&index, step, &mut meta)?;
    let in_place = same_file(src, dest);
    let mut w = IndexWriter::create(dest, force || in_place)?;
    for entry in index.sections() {
        if entry.kind == SectionKind::Meta || entry.kind == kind {
            continue;
        }
        let bytes = index
            .entry_bytes(&entry)
            .ok_or_else(|| Error::corrupt(src, entry.kind.name(), "section outside the file"))?;
        w.add_section(entry.kind, bytes)?;
    }
    w.add_section(kind, &bytes)?;
    w.add_section(SectionKind::Meta, &meta.encode().map_err(Error::invalid)?)?;
    w.commit()?;
    Ok(index.rows())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
