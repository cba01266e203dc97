//! [`Engine`]: an open index with everything its calls need, owned and shareable, so that a
//! program (the CLI, the Python package, a server) opens an index once and calls it many times.
//!
//! It holds the index behind an `Arc` (views borrowed from it stay valid while any clone
//! lives), opens the mapped HNSW graph in place per call (O(1): a header check), keeps the GPU
//! copy of the vectors once the first GPU call has uploaded it (a select with
//! `exclude` and exact kNN uploads at most once), and keeps one rayon pool per thread count
//! asked for. Every CLI subcommand is glue over these methods.

mod info;
mod truth;

pub use info::{HnswInfo, Info, SectionInfo};
pub use truth::GroundTruth;

use crate::error::{Error, Result};
use crate::hnsw::Graph;
use crate::score::{self, cuda::CudaScorer, Backend, Device, Neighbors, Scorer};
use crate::select::{self, Exclude, SelectParams, Selection, Target};
use crate::store::Index;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// HNSW beam width of a search when none is given (raised to `k` when lower).
pub const DEFAULT_EF: usize = 64;

/// How to run a search.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchOpts {
    /// HNSW beam width ([`DEFAULT_EF`] when `None`; raised to `k` when lower).
    pub ef: Option<usize>,
    /// Exact (brute-force) scoring on `device` instead of the graph.
    pub exact: bool,
    /// Threads (all cores when `None`).
    pub threads: Option<usize>,
    /// Backend of exact scoring.
    pub device: Device,
}

/// An open index and its cached resources. Cheap to clone (clones share everything).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    index: Arc<Index>,
    opened_in: Option<Duration>,
    /// The GPU copy of the vectors once a GPU call made it, or why there is none.
    gpu: Mutex<Option<Gpu>>,
    pools: Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>,
}

#[derive(Clone)]
enum Gpu {
    Ready(Arc<CudaScorer>),
    Unavailable(String),
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("index", &self.inner.index)
            .finish()
    }
}

impl Engine {
    /// Open and validate the index at `path` (O(1) in its size).
    pub fn open(path: impl AsRef<Path>) -> Result<Engine> {
        let t = Instant::now();
        let index = Index::open(path)?;
        Ok(Self::with(index, Some(t.elapsed())))
    }

    /// An engine over an index opened by the caller.
    pub fn from_index(index: Index) -> Engine {
        Self::with(index, None)
    }

    fn with(index: Index, opened_in: Option<Duration>) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                index: Arc::new(index),
                opened_in,
                gpu: Mutex::new(None),
                pools: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The index (clone the `Arc` to keep its mapping alive independently).
    pub fn index(&self) -> &Arc<Index> {
        &self.inner.index
    }

    /// The mapped HNSW graph, `None` when the index was built without one.
    pub fn graph(&self) -> Result<Option<Graph<'_>>> {
        Graph::open(self.index())
    }

    /// The exact scorer on `device`. The GPU copy of the vectors is made on the first call that
    /// needs it and kept; `Auto` falls back to the CPU when no GPU is usable, `Cuda` is then an
    /// [`Error::Unavailable`].
    pub fn scorer(&self, device: Device) -> Result<Backend<'_>> {
        let index = self.index();
        Backend::new(
            index.vectors(),
            index.dim(),
            index.metric(),
            self.gpu(device)?,
        )
    }

    fn gpu(&self, device: Device) -> Result<Option<Arc<CudaScorer>>> {
        if device == Device::Cpu {
            return Ok(None);
        }
        let mut cached = self
            .inner
            .gpu
            .lock()
            .map_err(|_| Error::Cuda("GPU cache poisoned by a panic".into()))?;
        if cached.is_none() {
            let index = self.index();
            *cached =
                match score::upload(index.vectors(), index.dim(), index.metric(), Device::Cuda) {
                    Ok(g) => g.map(Gpu::Ready),
                    Err(Error::Unavailable(why)) => Some(Gpu::Unavailable(why)),
                    Err(e) => return Err(e),
                };
        }
        match (cached.clone(), device) {
            (Some(Gpu::Ready(g)), _) => Ok(Some(g)),
            (Some(Gpu::Unavailable(why)), Device::Cuda) => Err(Error::Unavailable(why)),
            _ => Ok(None),
        }
    }

    /// Run `f` on `threads` threads: the global pool when `None`, else a pool of that size,
    /// made once per count and kept.
    fn on_threads<T: Send>(
        &self,
        threads: Option<usize>,
        f: impl FnOnce() -> Result<T> + Send,
    ) -> Result<T> {
        let Some(n) = threads else { return f() };
        if n == 0 {
            return Err(Error::invalid("threads must be at least 1"));
        }
        let pool = {
            let mut pools = self
                .inner
                .pools
                .lock()
                .map_err(|_| Error::invalid("thread pool cache poisoned by a panic"))?;
            match pools.get(&n) {
                Some(p) => p.clone(),
                None => {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(n)
                        .build()
                        .map_err(|e| Error::invalid(format!("cannot start {n} threads: {e}")))?;
                    pools.entry(n).or_insert(Arc::new(pool)).clone()
                }
            }
        };
        pool.install(f)
    }

    /// The `k` nearest rows of each query of `queries` (row-major `[nq, dim]`, raw features),
    /// best first: through the HNSW graph, or exactly with `opts.exact`.
    pub fn search(&self, queries: &[f32], k: usize, opts: &SearchOpts) -> Result<Neighbors> {
        let index = self.index();
        score::check_queries(queries, index.dim())?;
        if k == 0 || k > index.rows() {
            return Err(Error::invalid(format!(
                "k = {k} must be between 1 and the number of rows ({})",
                index.rows()
            )));
        }
        let graph = || {
            self.graph()?.ok_or_else(|| {
                Error::invalid(format!(
                    "{} has no HNSW graph (it was built without one): search exactly, or rebuild it with a graph",
                    index.path().display()
                ))
            })
        };
        let ef = opts.ef.unwrap_or(DEFAULT_EF).max(k);
        if !opts.exact && queries.len() == index.dim() {
            // One query: searched on the calling thread, without a hand-off to a pool.
            let (ids, scores) = graph()?.search(queries, k, ef)?;
            return Ok(Neighbors { k, ids, scores });
        }
        self.on_threads(opts.threads, || {
            if opts.exact {
                self.scorer(opts.device)?.top_k(queries, k)
            } else {
                graph()?.search_batch(queries, k, ef)
            }
        })
    }

    /// Run the selection `params` for `target`, leaving out near-duplicates of `exclude`.
    pub fn select(
        &self,
        target: &Target,
        exclude: Option<&Exclude>,
        params: &SelectParams,
    ) -> Result<Selection> {
        select::run(self, target, exclude, params)
    }

    /// The summary of a selection, as `ptsel select --summary` writes it (without timing).
    pub fn summary(
        &self,
        target: &Target,
        exclude: Option<&Exclude>,
        params: &SelectParams,
        sel: &Selection,
    ) -> serde_json::Value {
        select::manifest::summary(
            self.index(),
            sel,
            select::parameters(target, exclude, params),
            None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{clustered, Spec};

    fn engine(dir: &Path, hnsw: bool) -> Engine {
        let c = clustered(Spec {
            rows: 300,
            dim: 8,
            classes: 3,
            spread: 0.3,
            seed: 4,
        });
        let f = dir.join("f.npy");
        crate::npy::write_matrix(&f, &c.data, 300, 8).unwrap();
        let out = dir.join("e.ptsel");
        let opts = crate::BuildOptions {
            hnsw: hnsw.then(crate::hnsw::Params::default),
            ..Default::default()
        };
        let mut src = crate::npy::MatrixReader::open(&f).unwrap();
        crate::build(&mut src, &out, opts, &|_, _, _| {}).unwrap();
        Engine::open(&out).unwrap()
    }

    #[test]
    fn search_checks_k_and_threads_and_needs_a_graph_unless_exact() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), false);
        let q = vec![0.5f32; 8];
        let err = e.search(&q, 0, &SearchOpts::default()).unwrap_err();
        assert!(err.to_string().contains("k = 0"), "{err}");
        let err = e.search(&q, 301, &SearchOpts::default()).unwrap_err();
        assert!(err.to_string().contains("(300)"), "{err}");
        let zero = SearchOpts {
            threads: Some(0),
            exact: true,
            ..Default::default()
        };
        assert!(e.search(&q, 3, &zero).is_err());
        let err = e.search(&q, 3, &SearchOpts::default()).unwrap_err();
        assert!(err.to_string().contains("no HNSW graph"), "{err}");
        let exact = SearchOpts {
            exact: true,
            threads: Some(1),
            device: Device::Cpu,
            ..Default::default()
        };
        let nn = e.search(&q, 3, &exact).unwrap();
        assert_eq!(nn.queries(), 1);
        // The same pool serves the next call with the same thread count.
        let again = e.search(&q, 3, &exact).unwrap();
        assert_eq!(nn, again);
        assert_eq!(e.inner.pools.lock().unwrap().len(), 1);
    }

    #[test]
    fn clones_share_the_index_and_outlive_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), true);
        let index = e.index().clone();
        let copy = e.clone();
        drop(e);
        let q = index.vectors();
        let mut row = vec![0f32; 8];
        q.row_into(7, 8, &mut row);
        let nn = copy.search(&row, 1, &SearchOpts::default()).unwrap();
        assert_eq!(nn.ids, vec![7]);
    }

    #[test]
    fn the_gpu_copy_or_its_absence_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), false);
        if crate::score::cuda::probe().is_ok() {
            let first = e.gpu(Device::Cuda).unwrap().unwrap();
            let second = e.gpu(Device::Auto).unwrap().unwrap();
            assert!(Arc::ptr_eq(&first, &second), "uploaded twice");
        } else {
            let err = e.scorer(Device::Cuda).err().expect("no GPU here");
            assert_eq!(err.kind(), crate::ErrorKind::Unavailable);
            assert!(matches!(
                *e.inner.gpu.lock().unwrap(),
                Some(Gpu::Unavailable(_))
            ));
            assert!(e
                .scorer(Device::Auto)
                .unwrap()
                .describe()
                .starts_with("cpu"));
        }
        assert!(e.gpu(Device::Cpu).unwrap().is_none());
    }
}
