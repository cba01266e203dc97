//! Replacing the HNSW graph of a built index (another layout, other parameters) without reading
//! the features again: every other section is copied as stored, and the file is replaced
//! atomically like a build's.

use super::{Progress, Step};
use crate::error::{Error, Result};
use crate::format::{IndexWriter, SectionKind};
use crate::hnsw;
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
    if src.is_dir() {
        return Err(Error::input(
            src,
            "a folder: rebuild-graph takes one index file (a corpus is rebuilt with `ptsel build --shard-rows`, which keeps the shards built with the same options)",
        ));
    }
    let index = Index::open(src)?;
    index.verify()?;
    let step: Step<'_> = &|stage, done, total| {
        progress(stage, done, total);
        Ok(())
    };
    let (graph, reused) = hnsw::regraph(&index, params, step)?;
    let in_place = same_file(src, dest);
    let mut w = IndexWriter::create(dest, force || in_place)?;
    for entry in index.sections() {
        if matches!(entry.kind, SectionKind::Meta | SectionKind::Hnsw) {
            continue;
        }
        let bytes = index
            .entry_bytes(&entry)
            .ok_or_else(|| Error::corrupt(src, entry.kind.name(), "section outside the file"))?;
        w.add_section(entry.kind, bytes)?;
    }
    w.add_section(SectionKind::Hnsw, &graph)?;
    let mut meta = index.meta().clone();
    params.record(&mut meta.params);
    w.add_section(SectionKind::Meta, &meta.encode().map_err(Error::invalid)?)?;
    w.commit()?;
    Ok(RegraphReport {
        rows: index.rows(),
        reused,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
