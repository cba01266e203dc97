//! Output files (manifests, summaries, .npy results) written atomically: to a temporary file
//! beside the destination, flushed and fsynced, then renamed, so a failure leaves nothing behind.

use crate::error::{Error, IoContext, Result};
use std::io::{BufWriter, Write};
use std::path::Path;

/// Write `path` through `fill`; on any error the temporary file is removed and `path` untouched.
pub fn atomic_write<F>(path: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<&std::fs::File>) -> std::io::Result<()>,
{
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::invalid(format!(
            "{}: output directory {} does not exist",
            path.display(),
            dir.display()
        )));
    }
    let tmp = tempfile::Builder::new()
        .prefix(".ptsel-out.")
        .tempfile_in(dir)
        .at(dir)?;
    {
        let mut w = BufWriter::new(tmp.as_file());
        fill(&mut w).at(path)?;
        w.flush().at(path)?;
    }
    tmp.as_file().sync_all().at(path)?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}
