//! numpy inputs: float matrices of any float dtype and memory order (converted to row-major f32
//! once, or streamed block-wise into a build), integer labels, and "an array or a `.npy` path"
//! arguments.

use crate::errors::{bad_arg, OrRaise};
use half::f16;
use numpy::ndarray::{s, ArrayView2, ArrayViewMut2, Zip};
use numpy::{
    Element, PyArray1, PyArray2, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray1,
    PyReadonlyArray2, PyUntypedArray, PyUntypedArrayMethods,
};
use ptsel::npy::Matrix;
use ptsel::{Result, RowSource};
use pyo3::prelude::*;
use pyo3::types::PyString;
use std::path::{Path, PathBuf};

/// A float element type numpy arrays may hold.
pub trait Float: Element + Copy + Sync {
    /// The value as f32 (rounded for f64; out-of-range values become infinite).
    fn to_f32(self) -> f32;
}

impl Float for f16 {
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
}

impl Float for f32 {
    fn to_f32(self) -> f32 {
        self
    }
}

impl Float for f64 {
    fn to_f32(self) -> f32 {
        self as f32
    }
}

/// A read-only borrow of a 2-D float16, float32 or float64 numpy array (any strides).
pub enum FloatArray<'py> {
    /// float16.
    F16(PyReadonlyArray2<'py, f16>),
    /// float32.
    F32(PyReadonlyArray2<'py, f32>),
    /// float64.
    F64(PyReadonlyArray2<'py, f64>),
}

/// A view of a [`FloatArray`] that may cross to a worker thread.
pub enum FloatView<'a> {
    /// float16.
    F16(ArrayView2<'a, f16>),
    /// float32.
    F32(ArrayView2<'a, f32>),
    /// float64.
    F64(ArrayView2<'a, f64>),
}

/// `obj` as a numpy array (array-likes such as lists go through `numpy.asarray`).
fn as_ndarray<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyUntypedArray>> {
    if let Ok(a) = obj.cast::<PyUntypedArray>() {
        return Ok(a.clone());
    }
    let a = obj.py().import("numpy")?.call_method1("asarray", (obj,))?;
    Ok(a.cast_into::<PyUntypedArray>()?)
}

impl<'py> FloatArray<'py> {
    /// Borrow `obj` (the argument `name`): a 2-D array of float16, float32 or float64.
    pub fn extract(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<Self> {
        let a = as_ndarray(obj)?;
        if a.ndim() != 2 {
            return Err(bad_arg(
                name,
                format!(
                    "expected a 2-D array [rows, dim], got shape {:?}",
                    a.shape()
                ),
            ));
        }
        let out = if let Ok(a) = a.cast::<PyArray2<f32>>() {
            FloatArray::F32(a.try_readonly()?)
        } else if let Ok(a) = a.cast::<PyArray2<f16>>() {
            FloatArray::F16(a.try_readonly()?)
        } else if let Ok(a) = a.cast::<PyArray2<f64>>() {
            FloatArray::F64(a.try_readonly()?)
        } else {
            return Err(bad_arg(
                name,
                format!(
                    "expected float16, float32 or float64 values (native byte order), got {}",
                    a.dtype().str()?
                ),
            ));
        };
        let (rows, dim) = out.view().shape();
        if rows == 0 || dim == 0 {
            return Err(bad_arg(
                name,
                format!("empty array of shape ({rows}, {dim})"),
            ));
        }
        Ok(out)
    }

    /// The array's elements as a view.
    pub fn view(&self) -> FloatView<'_> {
        match self {
            FloatArray::F16(a) => FloatView::F16(a.as_array()),
            FloatArray::F32(a) => FloatView::F32(a.as_array()),
            FloatArray::F64(a) => FloatView::F64(a.as_array()),
        }
    }

    /// numpy's name of the element type.
    pub fn dtype_name(&self) -> &'static str {
        match self {
            FloatArray::F16(_) => "float16",
            FloatArray::F32(_) => "float32",
            FloatArray::F64(_) => "float64",
        }
    }
}

/// Convert rows `start..` of `src` into row-major f32 `out` (as many whole rows as fit); returns
/// the number of rows written.
fn copy_rows<T: Float>(src: &ArrayView2<'_, T>, start: usize, out: &mut [f32]) -> usize {
    let dim = src.ncols();
    let n = (out.len() / dim).min(src.nrows().saturating_sub(start));
    let block = src.slice(s![start..start + n, ..]);
    if let Ok(mut dst) = ArrayViewMut2::from_shape((n, dim), &mut out[..n * dim]) {
        Zip::from(&mut dst)
            .and(&block)
            .for_each(|o, &x| *o = x.to_f32());
    }
    n
}

impl FloatView<'_> {
    /// `(rows, dim)`.
    pub fn shape(&self) -> (usize, usize) {
        match self {
            FloatView::F16(v) => v.dim(),
            FloatView::F32(v) => v.dim(),
            FloatView::F64(v) => v.dim(),
        }
    }

    /// Rows `start..` converted into `out`, as many whole rows as fit; returns the count.
    pub fn copy_rows(&self, start: usize, out: &mut [f32]) -> usize {
        match self {
            FloatView::F16(v) => copy_rows(v, start, out),
            FloatView::F32(v) => copy_rows(v, start, out),
            FloatView::F64(v) => copy_rows(v, start, out),
        }
    }

    /// The whole array as a row-major f32 matrix.
    pub fn to_matrix(&self) -> Matrix {
        let (rows, dim) = self.shape();
        let mut data = vec![0f32; rows * dim];
        self.copy_rows(0, &mut data);
        Matrix { data, rows, dim }
    }
}

/// The rows of a numpy array streamed into a build, block by block, with no full f32 copy.
pub struct ArraySource<'a> {
    view: FloatView<'a>,
    origin: String,
    next: usize,
}

impl<'a> ArraySource<'a> {
    /// Stream `array` (the argument `features`).
    pub fn new(array: &'a FloatArray<'_>) -> Self {
        let view = array.view();
        let (rows, dim) = view.shape();
        ArraySource {
            view,
            origin: format!("numpy {} array [{rows}, {dim}]", array.dtype_name()),
            next: 0,
        }
    }
}

impl RowSource for ArraySource<'_> {
    fn rows(&self) -> usize {
        self.view.shape().0
    }

    fn dim(&self) -> usize {
        self.view.shape().1
    }

    fn read_rows(&mut self, out: &mut [f32]) -> Result<usize> {
        let n = self.view.copy_rows(self.next, out);
        let dim = self.dim();
        ptsel::npy::check_finite(Path::new("features"), self.next, dim, &out[..n * dim])?;
        self.next += n;
        Ok(n)
    }

    fn origin(&self) -> String {
        self.origin.clone()
    }
}

/// An argument that is either a path (`str` or `os.PathLike`) or something else.
pub fn as_path(obj: &Bound<'_, PyAny>) -> PyResult<Option<PathBuf>> {
    let os = obj.py().import("os")?;
    if obj.is_instance_of::<PyString>() || obj.is_instance(&os.getattr("PathLike")?)? {
        Ok(Some(obj.extract()?))
    } else {
        Ok(None)
    }
}

/// A float matrix argument `name`: an array (converted once) or a `.npy` path; with the path,
/// or `name` for an array, to name in errors.
pub fn matrix(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<(Matrix, PathBuf)> {
    match as_path(obj)? {
        Some(p) => Ok((ptsel::npy::read_matrix(&p).or_raise()?, p)),
        None => Ok((
            FloatArray::extract(obj, name)?.view().to_matrix(),
            name.into(),
        )),
    }
}

/// Floats `name` (per-class weights): a 1-D array of any real dtype, or a float `.npy` path;
/// with the path, or `name` for an array, to name in errors.
pub fn floats(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<(Vec<f32>, PathBuf)> {
    if let Some(p) = as_path(obj)? {
        return Ok((ptsel::npy::read_floats(&p).or_raise()?, p));
    }
    let a = as_ndarray(obj)?;
    if a.ndim() != 1 {
        return Err(bad_arg(
            name,
            format!("expected a 1-D array, got shape {:?}", a.shape()),
        ));
    }
    let values = a.call_method1("astype", ("float32",))?;
    let values: PyReadonlyArray1<'_, f32> = values.extract()?;
    Ok((values.as_array().to_vec(), name.into()))
}

/// Integer labels `name`: a 1-D integer array of non-negative values, or a `.npy` path; with
/// the path, or `name` for an array, to name in errors.
pub fn labels(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<(Vec<u32>, PathBuf)> {
    if let Some(p) = as_path(obj)? {
        return Ok((ptsel::npy::read_labels(&p).or_raise()?, p));
    }
    let a = as_ndarray(obj)?;
    if a.ndim() != 1 {
        return Err(bad_arg(
            name,
            format!("expected a 1-D array of labels, got shape {:?}", a.shape()),
        ));
    }
    let values = match a.dtype().kind() {
        b'u' => widened::<u64>(&a, "u8", name)?,
        b'i' => widened::<i64>(&a, "i8", name)?,
        _ => {
            return Err(bad_arg(
                name,
                format!("labels must be integers, got dtype {}", a.dtype().str()?),
            ))
        }
    };
    Ok((values, name.into()))
}

/// The integer array `a` widened to numpy's `dtype` (element type `T`), as class labels.
fn widened<T: Element + Copy + Into<i128>>(
    a: &Bound<'_, PyUntypedArray>,
    dtype: &str,
    name: &str,
) -> PyResult<Vec<u32>> {
    let wide = a.call_method1("astype", (dtype,))?;
    let wide = wide.cast::<PyArray1<T>>()?.try_readonly()?;
    let values = wide.as_array();
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let v: i128 = v.into();
            u32::try_from(v).map_err(|_| {
                bad_arg(
                    name,
                    format!("label at position {i} is {v} (labels are classes 0, 1, 2, ...)"),
                )
            })
        })
        .collect()
}

/// A list of strings `name` (ids, class names): a sequence of `str`, or a text file with one per
/// line.
pub fn text_list(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<ptsel::TextList> {
    match as_path(obj)? {
        Some(p) => Ok(ptsel::TextList::File(p)),
        None => obj
            .extract::<Vec<String>>()
            .map(ptsel::TextList::List)
            .map_err(|_| bad_arg(name, "expected a path or a sequence of str")),
    }
}
