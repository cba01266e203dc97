//! Error types. Library code returns [`Error`]; every variant that concerns a file names it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in ptsel, grouped by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O failure on a file.
    #[error("{path}: {error}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error (shown in the message, so not chained as a source).
        error: std::io::Error,
    },
    /// An index file that is not a valid ptsel index (truncated, corrupted or hostile).
    #[error("{path}: corrupt index: {section}: {problem}")]
    Corrupt {
        /// The index file.
        path: PathBuf,
        /// The part of the file at fault (header, section table, a section name).
        section: String,
        /// What is wrong.
        problem: String,
    },
    /// An index written by a format version this build cannot read.
    #[error("{path}: index format version {found} is not supported (this build reads {oldest}..={newest})")]
    Version {
        /// The index file.
        path: PathBuf,
        /// Version found in the header.
        found: u32,
        /// Oldest supported version.
        oldest: u32,
        /// Newest supported version.
        newest: u32,
    },
    /// A checksum mismatch found by `verify` or a verifying open.
    #[error("{path}: checksum mismatch in section {section} (stored {stored:016x}, computed {computed:016x})")]
    Checksum {
        /// The index file.
        path: PathBuf,
        /// Section name.
        section: String,
        /// Stored checksum.
        stored: u64,
        /// Recomputed checksum.
        computed: u64,
    },
    /// A user-supplied input file with bad content (wrong dtype, shape, NaN, ...).
    #[error("{path}: {problem}")]
    Input {
        /// The input file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// An invalid parameter or combination of parameters.
    #[error("{0}")]
    Invalid(String),
    /// A requested backend is not available (no GPU, no NVRTC, feature not built).
    #[error("{0}")]
    Unavailable(String),
    /// A CUDA driver or NVRTC failure.
    #[error("cuda: {0}")]
    Cuda(String),
    /// The operation was cancelled through its [`Cancel`] token; nothing was left behind.
    #[error("interrupted: {0}")]
    Interrupted(String),
    /// A broken invariant inside ptsel (a bug to report, not a problem of the input): a cache
    /// poisoned by a panic on another thread, a graph under construction that contradicts
    /// itself.
    #[error("internal error (please report): {0}")]
    Internal(String),
}

/// What kind of failure an [`Error`] is, for callers that map errors to their own types (exit
/// codes, Python exceptions) without reading messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A file that does not exist.
    NotFound,
    /// Any other operating-system I/O failure.
    Io,
    /// A user-supplied input file with bad content.
    Input,
    /// An invalid parameter value.
    Invalid,
    /// A damaged, hostile or unsupported index file (corrupt, checksum mismatch, version).
    Corrupt,
    /// A backend that is not available here.
    Unavailable,
    /// A CUDA driver or NVRTC failure.
    Cuda,
    /// Cancelled by the caller.
    Interrupted,
    /// A bug in ptsel.
    Internal,
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { error, .. } if error.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            Error::Io { .. } => ErrorKind::Io,
            Error::Corrupt { .. } | Error::Checksum { .. } | Error::Version { .. } => {
                ErrorKind::Corrupt
            }
            Error::Input { .. } => ErrorKind::Input,
            Error::Invalid(_) => ErrorKind::Invalid,
            Error::Unavailable(_) => ErrorKind::Unavailable,
            Error::Cuda(_) => ErrorKind::Cuda,
            Error::Interrupted(_) => ErrorKind::Interrupted,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// A shared cache found poisoned: a panic on another thread left it, so this is a bug.
    pub fn poisoned(what: &str) -> Self {
        Error::Internal(format!(
            "the {what} was poisoned by a panic on another thread"
        ))
    }

    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            error: source,
        }
    }

    /// A problem with the content of the input file `path`.
    pub fn input(path: impl AsRef<Path>, problem: impl Into<String>) -> Self {
        Error::Input {
            path: path.as_ref().to_path_buf(),
            problem: problem.into(),
        }
    }

    /// A corrupt index `path`, in `section`.
    pub fn corrupt(
        path: impl AsRef<Path>,
        section: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            path: path.as_ref().to_path_buf(),
            section: section.into(),
            problem: problem.into(),
        }
    }

    /// An invalid parameter.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}

/// Attach a path to `std::io::Result`s.
pub trait IoContext<T> {
    /// Convert an I/O error into [`Error::Io`] naming `path`.
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

/// Progress callback of a long operation: (stage, done, total).
pub type Progress<'a> = &'a dyn Fn(&str, u64, u64);

/// A stage's progress report inside a long operation: (stage, done, total); an error once the
/// operation is cancelled, which the stage returns at once.
pub type Step<'a> = &'a dyn Fn(&str, u64, u64) -> Result<()>;

/// A cancellation flag shared between a long operation and whoever may stop it (a signal
/// handler, another thread). Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// Ask the operation to stop at its next check.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`cancel`](Cancel::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Interrupted)` naming `what` once cancelled: the check a long loop makes.
    pub fn check(&self, what: &str) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Interrupted(format!("{what} cancelled")))
        } else {
            Ok(())
        }
    }
}
