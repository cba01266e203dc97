//! `ptsel.open` and the `Index` class: an open index whose arrays are read-only views into the
//! memory-mapped file, with batch search and selection.

use crate::arrays::{self, FloatArray};
use crate::defaults::parsed;
use crate::errors::{bad_arg, CorruptIndexError, OrRaise};
use crate::selection::PySelection;
use numpy::ndarray::{Array2, ArrayView, Dimension, Ix1, Ix2};
use numpy::{
    Element, IntoPyArray, PyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1,
    PyReadonlyArray2, PyUntypedArrayMethods,
};
use ptsel::engine::DEFAULT_K;
use ptsel::hnsw::NO_NODE;
use ptsel::select::{
    Amount, ClassWeights, Exclude, Found, Method, SelectParams, Target, TargetKind,
    DEFAULT_EXCLUDE_THRESHOLD,
};
use ptsel::{Engine, SearchOpts, Vectors};
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;

/// An open index: memory-mapped and validated, O(1) to open. The array properties are
/// read-only numpy views into the mapping (no copy); each keeps the index alive.
#[pyclass(frozen, module = "ptsel", name = "Index")]
pub struct PyIndex {
    pub(crate) engine: Engine,
}

/// Open the index file or corpus folder at `path` (validated, memory-mapped; nothing is read in
/// bulk; a corpus opens each shard and checks it against its corpus file).
///
/// Raises FileNotFoundError when it does not exist and CorruptIndexError when it (or a shard)
/// is damaged, missing or swapped.
#[pyfunction]
pub fn open(py: Python<'_>, path: PathBuf) -> PyResult<PyIndex> {
    let engine = py.detach(|| Engine::open(&path)).or_raise()?;
    Ok(PyIndex { engine })
}

/// Make `kernel` ("auto", "f32", "bf16", "amx" or "int8") the unit exact scoring multiplies on
/// in this process, and return the name of the products it now runs on. Every kernel gives the
/// same exact top-k (bf16 and int8 products only propose rows, which are re-scored in float64);
/// forcing one is for benchmarks. Raises ValueError for an unknown name and RuntimeError when
/// this CPU lacks it.
#[pyfunction]
pub fn set_kernel(kernel: &str) -> PyResult<String> {
    let k: ptsel::score::simd::Kernel = kernel.parse().or_raise()?;
    k.choose().or_raise()?;
    Ok(ptsel::score::simd::kernel_name())
}

/// A read-only numpy array over `data` (`shape`), owned by the index object `this`.
fn view<'py, T: Element, D: Dimension>(
    this: &Bound<'py, PyIndex>,
    data: &[T],
    shape: D,
) -> PyResult<Bound<'py, PyArray<T, D>>> {
    let array = ArrayView::from_shape(shape, data).map_err(|e| {
        CorruptIndexError::new_err(format!(
            "section of unexpected size: {e} (not caught at open)"
        ))
    })?;
    // SAFETY: `data` lies in the index's read-only file mapping (or its metadata, or the
    // corpus's merged class statistics, made once and never changed), owned by the `Engine`
    // inside `this`. The mapping is never remapped, resized or dropped while the
    // `PyIndex` lives, and `this` becomes the array's base object, so it outlives the array.
    let array = unsafe { PyArray::borrow_from_array(&array, this.clone().into_any()) };
    // A write into the read-only mapping would be a SIGSEGV: numpy must refuse it instead.
    let readonly = array.try_readwrite()?.make_nonwriteable();
    Ok((*readonly).clone())
}

/// The keyword arguments of `Index.select` that make its [`SelectParams`], each `None` for the
/// library's default (the method's own where it has some): `select` fills them from its
/// arguments, `knn_search` from the same names in a dict. Written once by the macro, for both.
macro_rules! select_options {
    ($($name:ident: $ty:ty),* $(,)?) => {
        #[derive(Default)]
        struct SelectOptions {
            $($name: Option<$ty>,)*
        }

        impl SelectOptions {
            /// The options among `select`'s keyword arguments `kwargs`; the other arguments of
            /// `select` ([`SELECT_OTHER`]) are ignored, any other name is a TypeError.
            fn from_kwargs(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
                let mut options = Self::default();
                for (key, value) in kwargs.into_iter().flatten() {
                    let key: String = key.extract()?;
                    match key.as_str() {
                        $(stringify!($name) => {
                            options.$name = value.extract().map_err(|e| bad_arg(&key, e))?
                        })*
                        other if SELECT_OTHER.contains(&other) => {}
                        other => {
                            return Err(PyTypeError::new_err(format!(
                                "unexpected keyword argument '{other}' (not one of Index.select's)"
                            )))
                        }
                    }
                }
                Ok(options)
            }
        }
    };
}

select_options!(
    method: String,
    per_target: usize,
    exact: bool,
    ef: usize,
    probes: usize,
    seed: u64,
    p_m: f64,
    eps: f64,
    tau_source: f64,
    tau_target: f64,
    max_iter: usize,
    tol: f64,
    uot_domain: String,
    pseudo_classes: bool,
    device: String,
    graph_k: usize,
    reverse_k: usize,
    draw: String,
    dedup_kde: f32,
    dedup_greedy: f32,
);

/// The arguments of `Index.select` that are not [`SelectOptions`] (the target, how much to keep,
/// the exclusion and the scans done elsewhere).
const SELECT_OTHER: [&str; 9] = [
    "labels",
    "target_weights",
    "means",
    "classes",
    "budget",
    "exclude_near",
    "exclude_threshold",
    "neighbors",
    "excluded",
];

impl SelectOptions {
    /// The selection parameters: each option given, else the library's default for the method
    /// (keeping the default amount, which `select` replaces).
    fn params(&self) -> PyResult<SelectParams> {
        let method = parsed(self.method.as_deref(), SelectParams::DEFAULT.method)?;
        let d = crate::defaults::select_params(method);
        Ok(SelectParams {
            method,
            amount: d.amount,
            p_m: self.p_m.unwrap_or(d.p_m),
            uot: ptsel::uot::UotParams {
                eps: self.eps.unwrap_or(d.uot.eps),
                tau_source: self.tau_source.unwrap_or(d.uot.tau_source),
                tau_target: self.tau_target.unwrap_or(d.uot.tau_target),
                max_iter: self.max_iter.unwrap_or(d.uot.max_iter),
                tol: self.tol.unwrap_or(d.uot.tol),
                domain: parsed(self.uot_domain.as_deref(), d.uot.domain)?,
            },
            per_target: self.per_target.unwrap_or(d.per_target),
            exact: self.exact.unwrap_or(d.exact),
            ef: self.ef.or(d.ef),
            probes: self.probes.or(d.probes),
            seed: self.seed.unwrap_or(d.seed),
            pseudo_classes: self.pseudo_classes.unwrap_or(d.pseudo_classes),
            device: parsed(self.device.as_deref(), d.device)?,
            graph_k: self.graph_k.or(d.graph_k),
            reverse_k: self.reverse_k.or(d.reverse_k),
            draw: parsed(self.draw.as_deref(), d.draw)?,
            dedup_kde: self.dedup_kde.or(d.dedup_kde),
            dedup_greedy: self.dedup_greedy.or(d.dedup_greedy),
        })
    }
}

/// What `Index.search` returns: ids (int64) and scores (float32), both `[n, k]`.
type Neighbors<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>);

impl PyIndex {
    /// The shards `(start, stop)`, all of them by default.
    fn shard_range(&self, shards: Option<(usize, usize)>) -> std::ops::Range<usize> {
        shards.map_or(0..self.engine.shards().len(), |(a, b)| a..b)
    }

    /// The index file of a single-file engine; a ValueError for a corpus folder, whose shards
    /// are separate mappings (the per-row arrays have no one view).
    fn index(&self) -> PyResult<&ptsel::Index> {
        self.engine.index().map(|ix| &**ix).or_raise()
    }
}

#[pymethods]
impl PyIndex {
    /// Number of rows (of every shard, for a corpus).
    fn __len__(&self) -> usize {
        self.engine.rows()
    }

    fn __repr__(&self) -> String {
        let e = &self.engine;
        let shards = match e.corpus() {
            Some(c) => format!(", shards={}", c.shards.len()),
            None => String::new(),
        };
        format!(
            "Index('{}', rows={}, dim={}, dtype='{}', metric='{}', classes={}{shards})",
            e.path().display(),
            e.rows(),
            e.dim(),
            e.dtype().name(),
            e.metric().name(),
            e.classes()
        )
    }

    /// Path the index file or corpus folder was opened from.
    #[getter]
    fn path(&self) -> PathBuf {
        self.engine.path().to_path_buf()
    }

    /// Number of shards: 1 for an index file, the shard count of a corpus folder.
    #[getter]
    fn shards(&self) -> usize {
        self.engine.shards().len()
    }

    /// Vector dimension.
    #[getter]
    fn dim(&self) -> usize {
        self.engine.dim()
    }

    /// Element type of the stored vectors: "f16" or "f32".
    #[getter]
    fn dtype(&self) -> &'static str {
        self.engine.dtype().name()
    }

    /// Search metric: "cos", "ip" or "l2".
    #[getter]
    fn metric(&self) -> &'static str {
        self.engine.metric().name()
    }

    /// Number of classes (0 when the corpus has no labels).
    #[getter]
    fn classes(&self) -> usize {
        self.engine.classes()
    }

    /// Class names (one per class), or None when the index has none.
    #[getter]
    fn class_names(&self) -> Option<Vec<String>> {
        let names = self.engine.class_names();
        (!names.is_empty()).then(|| names.to_vec())
    }

    /// Whether every shard has an HNSW graph (otherwise search needs `exact=True`).
    #[getter]
    fn has_graph(&self) -> PyResult<bool> {
        Ok(self.engine.graphs().or_raise()?.is_some())
    }

    /// Whether every shard has partitions (for `search(probes=...)` and `select(probes=...)`).
    #[getter]
    fn has_partitions(&self) -> PyResult<bool> {
        Ok(self.engine.approx(Some(1)).or_raise()?.is_some())
    }

    /// Recompute every checksum (of every shard of a corpus), as `ptsel verify` does; raises
    /// CorruptIndexError naming the file at fault. Returns the bytes checked.
    fn verify(&self, py: Python<'_>) -> PyResult<u64> {
        py.detach(|| self.engine.verify()).or_raise()
    }

    /// What `ptsel info --json` prints: shape, sections, creation parameters, HNSW checks.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let info = self.engine.info().or_raise()?;
        let info =
            serde_json::to_value(info).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        crate::selection::json_to_py(py, &info)
    }

    /// The stored vectors, `[rows, dim]` float16 or float32 (unit-normalised for metric "cos"):
    /// a read-only view of the mapped file (of an index file only: ValueError for a corpus).
    #[getter]
    fn vectors<'py>(this: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let ix = this.get().index()?;
        let shape = Ix2(ix.rows(), ix.dim());
        Ok(match ix.vectors() {
            Vectors::F16(v) => view(this, v, shape)?.into_any(),
            Vectors::F32(v) => view(this, v, shape)?.into_any(),
        })
    }

    /// L2 norms of the raw input vectors, `[rows]` float32 (read-only view; index file only).
    #[getter]
    fn norms<'py>(this: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let ix = this.get().index()?;
        Ok(view(this, ix.norms(), Ix1(ix.rows()))?.into_any())
    }

    /// Class of every row, `[rows]` uint32 (read-only view; index file only), or None when
    /// unlabelled.
    #[getter]
    fn labels<'py>(this: &Bound<'py, Self>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let ix = this.get().index()?;
        ix.labels()
            .map(|l| Ok(view(this, l, Ix1(ix.rows()))?.into_any()))
            .transpose()
    }

    /// Samples per class, `[classes]` uint64 (read-only view; merged over the shards of a
    /// corpus), or None when unlabelled.
    #[getter]
    fn class_counts<'py>(this: &Bound<'py, Self>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let e = &this.get().engine;
        if e.classes() == 0 {
            return Ok(None);
        }
        Ok(Some(
            view(this, e.class_stats().0, Ix1(e.classes()))?.into_any(),
        ))
    }

    /// Means of the raw (unnormalised) features per class, `[classes, dim]` float64 (read-only
    /// view; merged over the shards of a corpus), or None when unlabelled.
    #[getter]
    fn class_means<'py>(this: &Bound<'py, Self>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let e = &this.get().engine;
        if e.classes() == 0 {
            return Ok(None);
        }
        let shape = Ix2(e.classes(), e.dim());
        Ok(Some(view(this, e.class_stats().1, shape)?.into_any()))
    }

    /// The id of every row (the stored strings, or the global row numbers where none are
    /// stored).
    #[getter]
    fn ids(&self) -> PyResult<Vec<String>> {
        let e = &self.engine;
        (0..e.rows())
            .map(|r| e.id(r).map(|id| id.into_owned()))
            .collect::<ptsel::Result<_>>()
            .or_raise()
    }

    /// The `k` nearest rows of each query: `(ids, scores)`, int64 and float32 `[n, k]`, best
    /// first (scores: cosine similarity for "cos", inner product for "ip", squared distance
    /// for "l2").
    ///
    /// Through the HNSW graph with beam width `ef` (default 64, raised to `k`), through the
    /// partitions with `probes=P` (the P partitions nearest to each query scanned, the `ef`
    /// rows nearest by code re-ranked exactly; an index built with `partitions`), or by exact
    /// scoring on `device` ("auto", "cpu", "cuda") with `exact=True`. `queries` is `[n, dim]`
    /// of any float dtype and memory order; `threads` defaults to all cores. Rows are global
    /// rows of a corpus; `shards=(start, stop)` searches only those shards (one task's part:
    /// padded with -1 where they hold fewer than `k` rows). The GIL is released while
    /// searching.
    #[pyo3(signature = (queries, k=None, *, ef=None, exact=None, threads=None, device=None, shards=None, probes=None))]
    #[allow(clippy::too_many_arguments)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
        k: Option<usize>,
        ef: Option<usize>,
        exact: Option<bool>,
        threads: Option<usize>,
        device: Option<&str>,
        shards: Option<(usize, usize)>,
        probes: Option<usize>,
    ) -> PyResult<Neighbors<'py>> {
        let q = FloatArray::extract(queries, "queries")?.view().to_matrix();
        if q.dim != self.engine.dim() {
            return Err(bad_arg(
                "queries",
                format!("{}-d, but the index is {}-d", q.dim, self.engine.dim()),
            ));
        }
        let d = SearchOpts::default();
        let opts = SearchOpts {
            ef: ef.or(d.ef),
            probes: probes.or(d.probes),
            exact: exact.unwrap_or(d.exact),
            threads: threads.or(d.threads),
            device: parsed(device, d.device)?,
        };
        let k = k.unwrap_or(DEFAULT_K);
        let shards = self.shard_range(shards);
        let nn = py
            .detach(|| self.engine.search_shards(shards, &q.data, k, &opts))
            .or_raise()?;
        to_numpy(py, nn)
    }

    /// The rows whose cosine to some row of `test` (`[n, dim]` array or `.npy` path) reaches
    /// `threshold`, ascending int64: what `select(exclude_near=test)` leaves out, over the shards
    /// `shards=(start, stop)` only when given (one task's part).
    #[pyo3(signature = (test, threshold=None, *, shards=None))]
    fn near_duplicates<'py>(
        &self,
        py: Python<'py>,
        test: &Bound<'py, PyAny>,
        threshold: Option<f32>,
        shards: Option<(usize, usize)>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let (test, _) = arrays::matrix(test, "test")?;
        if test.dim != self.engine.dim() {
            return Err(bad_arg(
                "test",
                format!("{}-d, but the index is {}-d", test.dim, self.engine.dim()),
            ));
        }
        let threshold = threshold.unwrap_or(DEFAULT_EXCLUDE_THRESHOLD);
        let shards = self.shard_range(shards);
        let rows = py
            .detach(|| self.engine.near_duplicates(shards, &test.data, threshold))
            .or_raise()?;
        Ok(rows
            .into_iter()
            .map(i64::from)
            .collect::<Vec<_>>()
            .into_pyarray(py))
    }

    /// The search a selection with these `select` keyword arguments runs for its kNN-based
    /// method ("knn", "uot-knn"), as the library resolves it: `{"k", "ef", "probes", "exact",
    /// "device"}`, the keyword arguments of `search` (`exact` is set when asked for, or when no
    /// partitions are asked for and a shard has no graph); None for a method that searches
    /// nothing. Options that do not change the search are accepted and ignored; a name that is
    /// no argument of `select` is a TypeError. `ptsel.spark.select` runs it per group of shards.
    #[pyo3(signature = (**select_options))]
    fn knn_search<'py>(
        &self,
        py: Python<'py>,
        select_options: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let params = SelectOptions::from_kwargs(select_options)?.params()?;
        if !matches!(params.method, Method::Knn | Method::UotKnn) {
            return Ok(None);
        }
        let search = params.knn_search(&self.engine).or_raise()?;
        let value = serde_json::json!({
            "k": search.k,
            "ef": search.opts.ef,
            "probes": search.opts.probes,
            "exact": search.opts.exact,
            "device": crate::defaults::name_of(search.opts.device)?,
        });
        crate::selection::json_to_py(py, &value).map(Some)
    }

    /// Choose the pre-training samples worth re-using for a target task (`ptsel select`).
    ///
    /// `target`: target features `[n, dim]` (array or `.npy` path): samples, each one unit of
    /// mass; with `labels` (array or path) one unit per target class (`target_weights[c]`, the
    /// weight of label `c`, equal by default: for "uot" the mass of each target class, for
    /// "uot-knn" column masses `w_c / n_c` and each class its share of the budget); with
    /// `means=True` the rows are class means. `method`: "uot" (the paper), "uot-knn", "knn",
    /// "similarity" or "random". Keep the
    /// `classes` best classes (default 100 for class-level methods) or `budget` samples (knn
    /// needs it). `exclude_near` (array or path) drops corpus rows whose cosine to any of those
    /// test features reaches `exclude_threshold`. `probes` finds knn's neighbours through the
    /// partitions (`build(partitions=...)`), `ef` rows re-ranked. The other parameters are the
    /// CLI's, with its defaults. `neighbors` (a list of `(ids, scores)` from `search(target, per_target, ...,
    /// shards=...)` covering every shard) and `excluded` (a list of `near_duplicates(...)`
    /// arrays) are those scans done elsewhere, one task per group of shards: they are merged
    /// and the corpus is not scanned again (`ptsel.spark.select`). The GIL is released while
    /// selecting.
    #[pyo3(signature = (
        target, labels=None, *, target_weights=None, means=false, method=None, classes=None, budget=None,
        exclude_near=None, exclude_threshold=None, per_target=None, exact=None, ef=None,
        seed=None, p_m=None, eps=None, tau_source=None, tau_target=None, max_iter=None,
        tol=None, uot_domain=None, pseudo_classes=None, device=None, neighbors=None,
        excluded=None, probes=None, graph_k=None, reverse_k=None, draw=None, dedup_kde=None,
        dedup_greedy=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn select(
        &self,
        py: Python<'_>,
        target: &Bound<'_, PyAny>,
        labels: Option<&Bound<'_, PyAny>>,
        target_weights: Option<&Bound<'_, PyAny>>,
        means: bool,
        method: Option<&str>,
        classes: Option<usize>,
        budget: Option<usize>,
        exclude_near: Option<&Bound<'_, PyAny>>,
        exclude_threshold: Option<f32>,
        per_target: Option<usize>,
        exact: Option<bool>,
        ef: Option<usize>,
        seed: Option<u64>,
        p_m: Option<f64>,
        eps: Option<f64>,
        tau_source: Option<f64>,
        tau_target: Option<f64>,
        max_iter: Option<usize>,
        tol: Option<f64>,
        uot_domain: Option<&str>,
        pseudo_classes: Option<bool>,
        device: Option<&str>,
        neighbors: Option<Vec<(PyReadonlyArray2<'_, i64>, PyReadonlyArray2<'_, f32>)>>,
        excluded: Option<Vec<PyReadonlyArray1<'_, i64>>>,
        probes: Option<usize>,
        graph_k: Option<usize>,
        reverse_k: Option<usize>,
        draw: Option<&str>,
        dedup_kde: Option<f32>,
        dedup_greedy: Option<f32>,
    ) -> PyResult<PySelection> {
        if classes.is_some() && budget.is_some() {
            return Err(bad_arg("budget", "give classes or budget, not both"));
        }
        let options = SelectOptions {
            method: method.map(String::from),
            per_target,
            exact,
            ef,
            probes,
            seed,
            p_m,
            eps,
            tau_source,
            tau_target,
            max_iter,
            tol,
            uot_domain: uot_domain.map(String::from),
            pseudo_classes,
            device: device.map(String::from),
            graph_k,
            reverse_k,
            draw: draw.map(String::from),
            dedup_kde,
            dedup_greedy,
        };
        let mut params = options.params()?;
        params.amount = Amount::for_method(params.method, classes, budget).or_raise()?;
        let exclude_threshold = exclude_threshold.unwrap_or(DEFAULT_EXCLUDE_THRESHOLD);
        let (features, origin) = arrays::matrix(target, "target")?;
        if target_weights.is_some() && labels.is_none() {
            return Err(bad_arg(
                "target_weights",
                "class weights need the target labels",
            ));
        }
        let kind = match (labels, means) {
            (Some(_), true) => {
                return Err(bad_arg(
                    "means",
                    "give target labels or means=True, not both",
                ))
            }
            (Some(l), false) => {
                let (labels, origin) = arrays::labels(l, "labels")?;
                let weights = target_weights
                    .map(|w| -> PyResult<ClassWeights> {
                        let (values, origin) = arrays::floats(w, "target_weights")?;
                        Ok(ClassWeights { values, origin })
                    })
                    .transpose()?;
                TargetKind::Labelled {
                    labels,
                    origin,
                    weights,
                }
            }
            (None, true) => TargetKind::Means,
            (None, false) => TargetKind::Samples,
        };
        let target = Target {
            features,
            kind,
            origin,
        };
        let exclude = exclude_near
            .map(|e| -> PyResult<Exclude> {
                let (test, origin) = arrays::matrix(e, "exclude_near")?;
                Ok(Exclude {
                    test,
                    origin,
                    threshold: exclude_threshold,
                })
            })
            .transpose()?;
        let found = Found {
            neighbors: neighbors
                .unwrap_or_default()
                .iter()
                .map(|(ids, scores)| found_neighbors(ids, scores))
                .collect::<PyResult<_>>()?,
            excluded: excluded
                .unwrap_or_default()
                .iter()
                .map(|rows| global_rows(rows.as_slice()?, "excluded"))
                .collect::<PyResult<_>>()?,
        };
        let engine = &self.engine;
        let (sel, summary) = py
            .detach(|| {
                let sel = engine.select_found(&target, exclude.as_ref(), &params, found)?;
                let summary = engine.summary(&target, exclude.as_ref(), &params, &sel);
                Ok((sel, summary))
            })
            .or_raise()?;
        PySelection::new(py, engine.clone(), sel, summary)
    }
}

/// `nn` as numpy `(ids, scores)`, `[n, k]` int64 and float32, padding as -1.
fn to_numpy(py: Python<'_>, nn: ptsel::score::Neighbors) -> PyResult<Neighbors<'_>> {
    let ids: Vec<i64> = nn.ids.iter().map(|&row| row_to_py(row)).collect();
    let shape = (nn.queries(), nn.k);
    let ids = Array2::from_shape_vec(shape, ids).map_err(|e| bad_arg("k", e))?;
    let scores = Array2::from_shape_vec(shape, nn.scores).map_err(|e| bad_arg("k", e))?;
    Ok((ids.into_pyarray(py), scores.into_pyarray(py)))
}

/// Merge `(ids, scores)` answers of `Index.search` over different shards of one corpus for the
/// same queries: per query the `k` best global rows under `metric` ("cos", "ip", "l2"), ties to
/// the lower row, padded with -1. Merging is exact and in any order gives the same result
/// (ptsel.spark merges task results in a tree).
#[pyfunction]
pub fn merge_neighbors<'py>(
    py: Python<'py>,
    parts: Vec<(PyReadonlyArray2<'py, i64>, PyReadonlyArray2<'py, f32>)>,
    k: usize,
    metric: &str,
) -> PyResult<Neighbors<'py>> {
    let metric = metric.parse().or_raise()?;
    let parts = parts
        .iter()
        .map(|(ids, scores)| found_neighbors(ids, scores))
        .collect::<PyResult<Vec<_>>>()?;
    let nn = py
        .detach(|| ptsel::engine::merge_neighbors(metric, k, &parts))
        .or_raise()?;
    to_numpy(py, nn)
}

/// Python's row where the library has [`NO_NODE`] (a slot no row fills).
const PADDING: i64 = -1;

/// A library row as Python sees it: [`NO_NODE`] is [`PADDING`].
fn row_to_py(row: u32) -> i64 {
    if row == NO_NODE {
        PADDING
    } else {
        i64::from(row)
    }
}

/// A row given back from Python, the inverse of [`row_to_py`]; `None` for a value that is no
/// row.
fn row_from_py(row: i64) -> Option<u32> {
    if row == PADDING {
        return Some(NO_NODE);
    }
    u32::try_from(row).ok().filter(|&r| r != NO_NODE)
}

/// Global rows given back from Python (`name` for errors), padding included.
fn global_rows(rows: &[i64], name: &str) -> PyResult<Vec<u32>> {
    rows.iter()
        .map(|&r| row_from_py(r).ok_or_else(|| bad_arg(name, format!("{r} is not a row"))))
        .collect()
}

/// One part's `search` answer given back from Python, as the library's neighbour lists.
fn found_neighbors(
    ids: &PyReadonlyArray2<'_, i64>,
    scores: &PyReadonlyArray2<'_, f32>,
) -> PyResult<ptsel::score::Neighbors> {
    if ids.shape() != scores.shape() {
        return Err(bad_arg(
            "neighbors",
            format!(
                "ids {:?} and scores {:?} differ in shape",
                ids.shape(),
                scores.shape()
            ),
        ));
    }
    Ok(ptsel::score::Neighbors {
        k: ids.shape()[1],
        ids: global_rows(
            &ids.as_array().iter().copied().collect::<Vec<_>>(),
            "neighbors",
        )?,
        scores: scores.as_array().iter().copied().collect(),
    })
}
