//! Output files (manifests, summaries, .npy results) written atomically: to a temporary file
//! beside the destination, flushed and fsynced, then renamed, so a failure leaves nothing behind.
//!
//! A destination that already exists and is not a regular file (`/dev/null`, `/dev/stdout`, a
//! FIFO) is written in place: renaming over it would replace the device itself, and a stream has
//! no half-written file to leave behind. So is a path that names an open descriptor
//! (`/dev/stdout`, `/dev/fd/N`, `/proc/self/fd/N`) even when it resolves to a regular file, as
//! when the shell redirects standard output to one: the process's own standard output and error
//! are written through a duplicate of their descriptor, at its offset, and other descriptors are
//! appended to. Any other symbolic link to a regular file is followed, so the file it names is
//! replaced and the link stays.

use crate::error::{Error, IoContext, Result};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// How an output path is written.
enum Destination {
    /// Replace this regular file (new or existing) through a temporary file in its directory.
    Replace { file: PathBuf, dir: PathBuf },
    /// Write into the existing device, FIFO or terminal.
    Stream,
}

fn destination(path: &Path) -> Result<Destination> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(Error::invalid(format!(
                "{}: is a directory, not an output file",
                path.display()
            )))
        }
        Ok(m) if !m.is_file() || names_a_descriptor(path) => return Ok(Destination::Stream),
        _ => {}
    }
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    // A dangling link is replaced by the file, as `File::create` would not do but a rename does.
    let file = match is_link {
        true => std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
        false => path.to_path_buf(),
    };
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Error::invalid(format!(
            "{}: output directory {} does not exist",
            path.display(),
            dir.display()
        )));
    }
    Ok(Destination::Replace { file, dir })
}

/// Write `path` through `fill`; on any error the temporary file is removed and `path` untouched.
pub fn atomic_write<F>(path: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<&std::fs::File>) -> std::io::Result<()>,
{
    let (file, dir) = match destination(path)? {
        Destination::Replace { file, dir } => (file, dir),
        Destination::Stream => {
            let out = open_stream(path).at(path)?;
            let mut w = BufWriter::new(&out);
            fill(&mut w).at(path)?;
            return w.flush().at(path);
        }
    };
    let tmp = temp_builder(".ptsel-out.").tempfile_in(&dir).at(&dir)?;
    {
        let mut w = BufWriter::new(tmp.as_file());
        fill(&mut w).at(path)?;
        w.flush().at(path)?;
    }
    tmp.as_file().sync_all().at(path)?;
    tmp.persist(&file).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Whether `path` names one of this process's open descriptors, whose links (`/dev/stdout` to
/// `/proc/self/fd/1` to wherever the shell sent it) must not be followed and renamed over.
fn names_a_descriptor(path: &Path) -> bool {
    cfg!(unix)
        && (path == Path::new("/dev/stdout")
            || path == Path::new("/dev/stderr")
            || ["/dev/fd", "/proc/self/fd", "/proc/thread-self/fd"]
                .iter()
                .any(|dir| path.parent() == Some(Path::new(dir))))
}

/// Opens an existing stream for writing: this process's standard output or error through a
/// duplicate of the descriptor (so a redirection to a file keeps its offset and earlier lines,
/// where opening the path anew would write from the file's start), anything else for appending.
fn open_stream(path: &Path) -> std::io::Result<std::fs::File> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        let descriptor = match path.to_str() {
            Some("/dev/stdout" | "/dev/fd/1" | "/proc/self/fd/1") => {
                std::io::stdout().flush()?;
                Some(std::io::stdout().as_fd().try_clone_to_owned())
            }
            Some("/dev/stderr" | "/dev/fd/2" | "/proc/self/fd/2") => {
                Some(std::io::stderr().as_fd().try_clone_to_owned())
            }
            _ => None,
        };
        if let Some(fd) = descriptor {
            return fd.map(std::fs::File::from);
        }
    }
    std::fs::OpenOptions::new().append(true).open(path)
}

/// The regular file that writing `path` replaces and its directory (a link to a file is followed);
/// an error naming `path` when it is a directory, a device or a FIFO, or its directory is missing.
/// For outputs that must be files, such as an index that is later memory-mapped.
pub fn file_destination(path: &Path) -> Result<(PathBuf, PathBuf)> {
    match destination(path)? {
        Destination::Replace { file, dir } => Ok((file, dir)),
        Destination::Stream => Err(Error::invalid(format!(
            "{}: not a regular file (this output must be a file)",
            path.display()
        ))),
    }
}

/// The directory for scratch files on the way to `path`: beside the file it will replace, or the
/// system's temporary directory when `path` is a device or FIFO.
pub fn scratch_dir(path: &Path) -> Result<PathBuf> {
    Ok(match destination(path)? {
        Destination::Replace { dir, .. } => dir,
        Destination::Stream => std::env::temp_dir(),
    })
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

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};

    #[test]
    fn a_fifo_is_written_in_place_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("out.fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success(), "mkfifo {}", fifo.display());
        // A reader opened first (non-blocking), so that the writer's open does not wait.
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        atomic_write(&fifo, |w| w.write_all(b"rows\n")).unwrap();
        let mut got = Vec::new();
        let _ = reader.read_to_end(&mut got);
        assert_eq!(got, b"rows\n");
        let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(kind.is_fifo(), "the FIFO was replaced by a {kind:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(scratch_dir(&fifo).unwrap(), std::env::temp_dir());
    }

    #[test]
    fn a_link_to_a_file_is_followed_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let target = dir.path().join("data/manifest.csv");
        std::fs::write(&target, "old").unwrap();
        let link = dir.path().join("manifest.csv");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        atomic_write(&link, |w| w.write_all(b"new")).unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_directory_or_a_missing_directory_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let e = atomic_write(dir.path(), |w| w.write_all(b"x")).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        let missing = dir.path().join("no/such/out.csv");
        let e = atomic_write(&missing, |w| w.write_all(b"x")).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
}
