//! The `Selection` class: the outcome of `Index.select`, with the CLI's manifests and summary.

use crate::errors::OrRaise;
use numpy::{IntoPyArray, PyArray1};
use ptsel::select::manifest::{self, Format};
use ptsel::select::Selection;
use ptsel::Engine;
use pyo3::prelude::*;
use pyo3::types::PyList;
use std::path::PathBuf;

/// The pre-training samples chosen for a target task, best first, with how they were chosen.
#[pyclass(frozen, module = "ptsel", name = "Selection")]
pub struct PySelection {
    engine: Engine,
    sel: Selection,
    summary: serde_json::Value,
}

/// `value` as Python objects (dict, list, str, float, int, bool, None).
pub fn json_to_py<'py>(py: Python<'py>, value: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?
        .call_method1("loads", (value.to_string(),))
}

impl PySelection {
    /// Wrap `sel`, issuing its notes (a fallback taken, a short selection) as Python warnings.
    pub fn new(
        py: Python<'_>,
        engine: Engine,
        sel: Selection,
        summary: serde_json::Value,
    ) -> PyResult<Self> {
        for note in &sel.notes {
            PyErr::warn(
                py,
                &py.get_type::<pyo3::exceptions::PyUserWarning>(),
                &std::ffi::CString::new(note.as_str())?,
                1,
            )?;
        }
        Ok(PySelection {
            engine,
            sel,
            summary,
        })
    }
}

#[pymethods]
impl PySelection {
    /// Number of selected samples.
    fn __len__(&self) -> usize {
        self.sel.picks.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "Selection(method='{}', rows={}, classes={})",
            self.summary["method"].as_str().unwrap_or_default(),
            self.sel.picks.len(),
            self.sel.selected_classes.len()
        )
    }

    /// Selected corpus rows, int64, in manifest (rank) order: they index the corpus as built.
    #[getter]
    fn rows<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        let rows: Vec<i64> = self.sel.picks.iter().map(|p| i64::from(p.row)).collect();
        rows.into_pyarray(py)
    }

    /// Selected source classes in order of importance (class-level methods; empty otherwise).
    #[getter]
    fn classes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, &self.sel.selected_classes)
    }

    /// Importance of every source class, float64 `[classes]` (uot, similarity), or None.
    #[getter]
    fn importance<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyArray1<f64>>> {
        self.sel.importance.clone().map(|v| v.into_pyarray(py))
    }

    /// The summary `ptsel select --summary` writes: method and parameters, importance, selected
    /// classes with names, counts, solver statistics, notes.
    #[getter]
    fn summary<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.summary)
    }

    /// Write the manifest to `path` as `ptsel select --out` does: "csv" (`rank,row,id,class,
    /// score`), "jsonl", "npy" (the rows, int64) or "uids" (DataComp's sorted 128-bit uids of
    /// ids of 32 hex digits); by default from the extension, csv otherwise.
    #[pyo3(signature = (path, format=None))]
    fn save(&self, py: Python<'_>, path: PathBuf, format: Option<&str>) -> PyResult<()> {
        let format = match format {
            Some(f) => f.parse().or_raise()?,
            None => Format::from_path(&path),
        };
        py.detach(|| manifest::write(&path, format, &self.engine, &self.sel))
            .or_raise()
    }
}
