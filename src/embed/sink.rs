//! Where an embedding run's rows go: straight into an index ([`build_from_images`]) or into a
//! float32 .npy ([`write_features`]).

use super::{EmbedOptions, Embedder};
use crate::builder::{BuildOptions, BuildReport, Labels, RowSource, TextList};
use crate::error::{Error, IoContext, Progress, Result};
use npyz::WriterBuilder;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

/// Build an index at `out` from `embedder`'s rows, with its folder's labels, class names and
/// ids, recording the images folder, the model and the preprocessing in the creation
/// parameters. The result is byte-identical to [`write_features`] followed by a build from
/// the .npy with the same labels, ids and names.
pub fn build_from_images(
    embedder: &mut Embedder,
    model: &Path,
    embedding: &EmbedOptions,
    out: &Path,
    mut opts: BuildOptions,
    progress: Progress<'_>,
) -> Result<BuildReport> {
    let folder = embedder.folder();
    let images = folder.root().to_path_buf();
    opts.labels = folder.labels().map(|l| Labels {
        values: l.to_vec(),
        origin: images.clone(),
    });
    opts.class_names =
        (!folder.class_names().is_empty()).then(|| TextList::List(folder.class_names().to_vec()));
    opts.ids = Some(TextList::List(folder.ids().to_vec()));
    for (key, value) in [
        ("images", images.display().to_string()),
        ("model", model.display().to_string()),
        ("resize", embedding.resize.to_string()),
        ("crop", embedding.crop.to_string()),
    ] {
        opts.params.insert(key.into(), value);
    }
    crate::build(embedder, out, opts, progress)
}

/// Stream every row of `source` into a float32 .npy at `out`, atomically; returns the rows
/// written. The row count is known only at the end (skipped images), so rows go to a scratch
/// file beside `out` first. `progress(done, total)` counts delivered and skipped rows.
pub fn write_features(
    source: &mut dyn RowSource,
    out: &Path,
    progress: &dyn Fn(u64, u64),
) -> Result<usize> {
    let dir = crate::output::scratch_dir(out)?;
    let scratch = tempfile::Builder::new()
        .prefix(".ptsel-embed.")
        .tempfile_in(&dir)
        .at(&dir)?;
    let dim = source.dim();
    let total = source.rows() as u64;
    let mut block = vec![0f32; 64 * dim];
    let mut rows = 0usize;
    {
        let mut w = BufWriter::new(scratch.as_file());
        loop {
            let n = source.read_rows(&mut block)?;
            if n == 0 {
                break;
            }
            w.write_all(bytemuck::cast_slice(&block[..n * dim]))
                .at(scratch.path())?;
            rows += n;
            progress((rows + source.skipped().len()) as u64, total);
        }
        w.flush().at(scratch.path())?;
    }
    if rows == 0 {
        return Err(Error::invalid(format!(
            "{}: no image could be embedded",
            source.origin()
        )));
    }
    let mut r = BufReader::new(scratch.reopen().at(scratch.path())?);
    crate::output::atomic_write(out, |w| {
        let mut npy = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&[rows as u64, dim as u64])
            .writer(w)
            .begin_nd()?;
        let mut bytes = [0u8; 4];
        for _ in 0..rows * dim {
            r.read_exact(&mut bytes)?;
            npy.push(&f32::from_le_bytes(bytes))?;
        }
        npy.finish()
    })?;
    Ok(rows)
}
