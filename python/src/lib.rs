//! Python bindings of ptsel: the extension module `ptsel._ptsel`, re-exported by the pure-Python
//! package `ptsel` (`python/ptsel/`). A thin shell over the library's [`ptsel::Engine`]:
//!
//! - [`index`]: `ptsel.open`, `ptsel.set_kernel` and the `Index` class (read-only zero-copy numpy views of the
//!   mapped file, batch search, selection);
//! - [`build`]: `ptsel.build` from numpy arrays or `.npy` files, on a worker thread that Ctrl-C
//!   cancels, `ptsel.shard_dir`, where shards built elsewhere go, and `ptsel.assemble`,
//!   the corpus file of them;
//! - [`selection`]: the `Selection` class (rows, importance, summary, manifests);
//! - [`arrays`]: numpy inputs (any float dtype and layout) converted once or streamed;
//! - [`defaults`]: `ptsel.defaults()`, the library's defaults of every `None` argument;
//! - [`errors`]: library errors mapped to Python exceptions by [`ptsel::ErrorKind`].
#![deny(missing_docs)]

mod arrays;
mod build;
mod defaults;
mod errors;
mod index;
mod selection;

use pyo3::prelude::*;

/// The extension module `ptsel._ptsel`.
#[pymodule]
fn _ptsel(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add(
        "CorruptIndexError",
        py.get_type::<errors::CorruptIndexError>(),
    )?;
    m.add_class::<index::PyIndex>()?;
    m.add_class::<selection::PySelection>()?;
    m.add_function(wrap_pyfunction!(index::open, m)?)?;
    m.add_function(wrap_pyfunction!(index::set_kernel, m)?)?;
    m.add_function(wrap_pyfunction!(index::merge_neighbors, m)?)?;
    m.add_function(wrap_pyfunction!(build::build, m)?)?;
    m.add_function(wrap_pyfunction!(build::assemble, m)?)?;
    m.add_function(wrap_pyfunction!(build::shard_dir, m)?)?;
    m.add_function(wrap_pyfunction!(defaults::defaults, m)?)?;
    Ok(())
}
