//! `ptsel.build`: features (a numpy array or a `.npy` path) into an index file. The build runs
//! on a worker thread; the calling thread waits without the GIL, reports progress and checks for
//! Ctrl-C, which cancels the build through the library's [`Cancel`] token.

use crate::arrays::{self, ArraySource, FloatArray};
use crate::defaults::parsed;
use crate::errors::{bad_arg, OrRaise};
use crate::index::PyIndex;
use ptsel::kmeans::KmeansParams;
use ptsel::{BuildOptions, Cancel, Labels, RowSource};
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// How often the waiting thread reports progress and checks for signals.
const POLL: Duration = Duration::from_millis(100);

/// The `progress` argument: None or True (the display of `ptsel._progress`: bars where a person
/// watches), False, or a callable `(stage, done, total)`.
pub enum Progress {
    /// No reports.
    Off,
    /// `ptsel._progress.reporter()`'s display.
    Shown,
    /// Called with `(stage, done, total)`.
    Callback(Py<PyAny>),
}

/// `build(partitions=...)`: a number of partitions, or `"auto"` for the library's choice
/// (`None` inside).
pub struct PartitionCount(Option<usize>);

impl<'a, 'py> FromPyObject<'a, 'py> for PartitionCount {
    type Error = PyErr;

    fn extract(ob: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(n) = ob.extract::<usize>() {
            Ok(PartitionCount(Some(n)))
        } else if ob.extract::<String>().is_ok_and(|s| s == "auto") {
            Ok(PartitionCount(None))
        } else {
            Err(bad_arg(
                "partitions",
                "expected a number of partitions or \"auto\"",
            ))
        }
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for Progress {
    type Error = PyErr;

    fn extract(ob: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(on) = ob.extract::<bool>() {
            Ok(if on { Progress::Shown } else { Progress::Off })
        } else if ob.is_callable() {
            Ok(Progress::Callback(ob.to_owned().unbind()))
        } else {
            Err(PyTypeError::new_err(
                "progress: expected a bool or a callable (stage, done, total)",
            ))
        }
    }
}

impl Progress {
    /// Where this build's reports go.
    fn start(self, py: Python<'_>) -> PyResult<Reporter> {
        Ok(match self {
            Progress::Off => Reporter {
                to: None,
                owned: false,
            },
            Progress::Callback(f) => Reporter {
                to: Some(f),
                owned: false,
            },
            Progress::Shown => {
                let shown = py.import("ptsel._progress")?.call_method0("reporter")?;
                Reporter {
                    to: (!shown.is_none()).then(|| shown.unbind()),
                    owned: true,
                }
            }
        })
    }
}

/// The callable that receives a build's `(stage, done, total)` reports, if any, and whether it is
/// the display this build made (closed at the end) or the caller's.
struct Reporter {
    to: Option<Py<PyAny>>,
    owned: bool,
}

impl Reporter {
    fn report(&self, py: Python<'_>, (stage, done, total): &(String, u64, u64)) -> PyResult<()> {
        match &self.to {
            Some(f) => f.call1(py, (stage, *done, *total)).map(drop),
            None => Ok(()),
        }
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        match &self.to {
            Some(display) if self.owned => display.call_method0(py, "close").map(drop),
            _ => Ok(()),
        }
    }
}

/// Build an index of `features` at `out` and return it opened (see `ptsel build`).
///
/// `features`: `[rows, dim]` float16/32/64 array in any memory order (streamed in blocks, no
/// full copy) or a `.npy` path. `labels`: integer array or `.npy` path, one per row. `ids` and
/// `class_names`: sequences of str or text files with one per line. `dtype` "f16" or "f32",
/// `metric` "cos", "ip" or "l2". An HNSW graph (`m`, `ef_construction`, `seed`) is built unless
/// `hnsw=False`, stored as `graph_layout` "blocks" (fastest search) or "compact" (smallest);
/// `kmeans=K` adds K pseudo-classes (spherical k-means, at most `kmeans_iters` Lloyd
/// iterations); `partitions=N` (at least 1) or `"auto"` (2 sqrt(rows)) adds partitions for
/// `Index.search(probes=...)`, scanning `partition_codes` "sq8" (8 bits per dimension; faster
/// when a query scans few partitions) or "pq4" (4 bits per pair of dimensions; faster when it
/// scans many). `progress`: None or True (a bar per stage where a person watches: tqdm
/// when installed, else a line rewritten on a terminal's stderr, else nothing), False, or a
/// callable `(stage, done, total)`. An existing `out` is refused unless `force=True`;
/// with `resume=True` (features from a file) an existing `out` that verifies and was built from
/// the same file with the same options is kept, and any other replaced (a retried Spark task
/// does not build its shard twice). Ctrl-C stops the build and leaves nothing behind. Options
/// left `None` take the library's defaults (`ptsel.defaults("build")`).
#[pyfunction]
#[pyo3(signature = (
    features, out, *, labels=None, ids=None, class_names=None, dtype=None, metric=None,
    hnsw=None, m=None, ef_construction=None, kmeans=None, kmeans_iters=None, seed=None,
    progress=None, force=false, resume=false, graph_layout=None, partitions=None,
    partition_codes=None
))]
#[allow(clippy::too_many_arguments)]
pub fn build(
    py: Python<'_>,
    features: &Bound<'_, PyAny>,
    out: PathBuf,
    labels: Option<&Bound<'_, PyAny>>,
    ids: Option<&Bound<'_, PyAny>>,
    class_names: Option<&Bound<'_, PyAny>>,
    dtype: Option<&str>,
    metric: Option<&str>,
    hnsw: Option<bool>,
    m: Option<usize>,
    ef_construction: Option<usize>,
    kmeans: Option<usize>,
    kmeans_iters: Option<usize>,
    seed: Option<u64>,
    progress: Option<Progress>,
    force: bool,
    resume: bool,
    graph_layout: Option<&str>,
    partitions: Option<PartitionCount>,
    partition_codes: Option<&str>,
) -> PyResult<PyIndex> {
    let d = BuildOptions::default();
    let graph = ptsel::hnsw::Params::DEFAULT;
    let seed = seed.unwrap_or(graph.seed);
    let (dtype, metric) = (parsed(dtype, d.dtype)?, parsed(metric, d.metric)?);
    let hnsw = hnsw
        .unwrap_or(d.hnsw.is_some())
        .then_some(ptsel::hnsw::Params {
            m: m.unwrap_or(graph.m),
            ef_construction: ef_construction.unwrap_or(graph.ef_construction),
            seed,
            layout: parsed(graph_layout, graph.layout)?,
        });
    let kmeans = kmeans.map(|k| KmeansParams {
        k,
        iters: kmeans_iters.unwrap_or(ptsel::kmeans::DEFAULT_ITERS),
        seed,
    });
    let codes = parsed(partition_codes, ptsel::partitions::Params::DEFAULT.codes)?;
    let partitions = partitions.map(|count| ptsel::partitions::Params {
        partitions: count.0,
        seed,
        codes,
    });
    let labels = labels
        .map(|l| -> PyResult<Labels> {
            let (values, origin) = arrays::labels(l, "labels")?;
            Ok(Labels { values, origin })
        })
        .transpose()?;
    let ids = ids.map(|v| arrays::text_list(v, "ids")).transpose()?;
    let class_names = class_names
        .map(|v| arrays::text_list(v, "class_names"))
        .transpose()?;
    let array;
    let mut source: Box<dyn RowSource + Send + '_> = match arrays::as_path(features)? {
        Some(p) => Box::new(ptsel::npy::MatrixReader::open(&p).or_raise()?),
        None if resume => {
            return Err(bad_arg(
                "resume",
                "needs features from a .npy file (an array cannot be compared with the file built from it)",
            ))
        }
        None => {
            array = FloatArray::extract(features, "features")?;
            Box::new(ArraySource::new(&array))
        }
    };
    let reporter = progress.unwrap_or(Progress::Shown).start(py)?;
    let cancel = Cancel::default();
    let state = Mutex::new(None::<(String, u64, u64)>);
    let caller = std::thread::current();
    let result = std::thread::scope(
        |s| -> PyResult<ptsel::Result<ptsel::corpus::ShardOutcome>> {
            let worker = s.spawn(|| {
                let opts = BuildOptions {
                    dtype,
                    metric,
                    force,
                    labels,
                    ids,
                    class_names,
                    hnsw,
                    kmeans,
                    partitions,
                    cancel: cancel.clone(),
                    ..BuildOptions::default()
                };
                let note = |stage: &str, done: u64, total: u64| {
                    if let Ok(mut st) = state.lock() {
                        *st = Some((stage.to_string(), done, total));
                    }
                };
                let report = ptsel::corpus::build_shard(&mut *source, &out, opts, resume, &note);
                caller.unpark();
                report
            });
            let mut shown = None;
            loop {
                let finished = worker.is_finished();
                let now = state.lock().map(|s| s.clone()).unwrap_or_default();
                let step = match now.filter(|now| shown.as_ref() != Some(now)) {
                    Some(now) => reporter.report(py, &now).map(|()| shown = Some(now)),
                    None => Ok(()),
                };
                if let Err(e) = step.and_then(|()| py.check_signals()) {
                    // Ctrl-C (or a failing progress callback): stop the build, wait for it to
                    // clean up, then raise.
                    cancel.cancel();
                    let _ = py.detach(|| worker.join());
                    let _ = reporter.close(py);
                    return Err(e);
                }
                if finished {
                    reporter.close(py)?;
                    return worker
                        .join()
                        .map_err(|_| PyRuntimeError::new_err("the build thread panicked"));
                }
                py.detach(|| std::thread::park_timeout(POLL));
            }
        },
    )?;
    result.or_raise()?;
    crate::index::open(py, out)
}

/// The folder where the shards of a build of the corpus folder `out` go (created): `out`, or,
/// when it holds a corpus and `force`, its staging folder, whose shards `assemble` moves over
/// the corpus only once all are built (without `force` an existing corpus is an error).
#[pyfunction]
#[pyo3(signature = (out, force=false))]
pub fn shard_dir(out: PathBuf, force: bool) -> PyResult<PathBuf> {
    ptsel::corpus::shard_dir(&out, force).or_raise()
}

/// Write the corpus file of the folder `out` for the shards `files` (names inside it, or inside
/// its staging folder when it has one, in row order), built elsewhere (one Spark task each),
/// and return the corpus opened. `classes` is
/// the global class count (the largest shard's by default) and `class_names` its names;
/// `params` (str to str) records how the corpus was made. Shards must agree in dim, dtype and
/// metric; verify them first (a retried task's resumed shard is verified by `build`).
#[pyfunction]
#[pyo3(signature = (out, files, class_names=None, classes=None, params=None))]
pub fn assemble(
    py: Python<'_>,
    out: PathBuf,
    files: Vec<String>,
    class_names: Option<Vec<String>>,
    classes: Option<usize>,
    params: Option<std::collections::BTreeMap<String, String>>,
) -> PyResult<PyIndex> {
    py.detach(|| {
        ptsel::corpus::assemble(
            &out,
            &files,
            class_names.unwrap_or_default(),
            classes,
            params.unwrap_or_default(),
        )
    })
    .or_raise()?;
    crate::index::open(py, out)
}
