//! Library errors as Python exceptions, chosen by [`ptsel::ErrorKind`], never by message text.

use ptsel::ErrorKind;
use pyo3::exceptions::{
    PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;

pyo3::create_exception!(
    ptsel,
    CorruptIndexError,
    PyValueError,
    "A damaged, truncated or unsupported index file (a subclass of ValueError)."
);

/// The Python exception for `e`: `FileNotFoundError`, `OSError`, `ValueError` (bad input or
/// parameter), `CorruptIndexError`, `RuntimeError` (backend unavailable or failing) or
/// `KeyboardInterrupt` (a cancelled build).
pub fn to_py(e: ptsel::Error) -> PyErr {
    let msg = e.to_string();
    match e.kind() {
        ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
        ErrorKind::Io => PyOSError::new_err(msg),
        ErrorKind::Input | ErrorKind::Invalid => PyValueError::new_err(msg),
        ErrorKind::Corrupt => CorruptIndexError::new_err(msg),
        ErrorKind::Unavailable | ErrorKind::Cuda => PyRuntimeError::new_err(msg),
        ErrorKind::Interrupted => PyKeyboardInterrupt::new_err(msg),
        ErrorKind::Internal => PyRuntimeError::new_err(msg),
    }
}

/// `?`-friendly conversion of library results.
pub trait OrRaise<T> {
    /// The value, or the Python exception for the error.
    fn or_raise(self) -> PyResult<T>;
}

impl<T> OrRaise<T> for ptsel::Result<T> {
    fn or_raise(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}

/// A `ValueError` about the argument `name`.
pub fn bad_arg(name: &str, problem: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("{name}: {problem}"))
}
