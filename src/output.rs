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
    let tmp = temp_builder(".ptsel-out.").tempfile_in(dir).at(dir)?;
    {
        let mut w = BufWriter::new(tmp.as_file());
        fill(&mut w).at(path)?;
        w.flush().at(path)?;
    }
    tmp.as_file().sync_all().at(path)?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// A temporary-file builder whose files end up readable by all (0644 less the umask, as with
/// `File::create`) once renamed into place; tempfile's default is private (0600).
pub fn temp_builder(prefix: &str) -> tempfile::Builder<'_, 'static> {
    let mut b = tempfile::Builder::new();
    b.prefix(prefix);
    #[cfg(unix)]
    b.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    b
}
