//! [`Engine`]: an open index or sharded corpus with everything its calls need, owned and
//! shareable, so that a program (the CLI, the Python package, a server) opens it once and calls
//! it many times.
//!
//! An engine is a list of shards: one index file is one shard at row 0; a corpus folder
//! ([`crate::corpus`]) is its shards in row order. Rows in every answer are global row numbers.
//! Searches fan out over the shards in parallel and merge per query ([`merge_neighbors`]);
//! selection works on the merged class statistics ([`Engine::class_stats`]) and global rows
//! ([`Engine::locate`]). The engine holds each
//! shard's index behind an `Arc` (views borrowed from it stay valid while any clone lives),
//! opens the mapped HNSW graphs in place per call (O(1): a header check), keeps each shard's GPU
//! copy once the first GPU call has uploaded it (a select with `exclude` and exact kNN uploads
//! at most once), and keeps one rayon pool per thread count asked for. Every CLI subcommand is
//! glue over these methods.

mod bench;
mod info;
mod rows;
mod search;
mod truth;

pub use bench::{Measured, DEFAULT_EF_SWEEP, DEFAULT_THREADS};
pub use info::{HnswInfo, Info, SectionInfo, ShardInfo};
pub use search::{merge_neighbors, missing, Approx};
pub use truth::GroundTruth;

use crate::corpus::{self, CorpusMeta, Shard};
use crate::error::{Error, Result};
use crate::format::{DType, Metric};
use crate::score::{self, cuda::CudaScorer, Backend, Device};
use crate::store::Index;
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// HNSW beam width of a search when none is given (raised to `k` when lower).
pub const DEFAULT_EF: usize = 64;

/// Neighbours per query unless asked otherwise.
pub const DEFAULT_K: usize = 10;

/// How to run a search.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchOpts {
    /// HNSW beam width, or rows re-ranked exactly by a partitioned search ([`DEFAULT_EF`] when
    /// `None`; raised to `k` when lower).
    pub ef: Option<usize>,
    /// Search the partitions, scanning this many per query, instead of the HNSW graph (see
    /// [`crate::partitions`]).
    pub probes: Option<usize>,
    /// Exact (brute-force) scoring on `device` instead of the graph.
    pub exact: bool,
    /// Threads (all cores when `None`).
    pub threads: Option<usize>,
    /// Backend of exact scoring.
    pub device: Device,
}

/// An open index or corpus and its cached resources. Cheap to clone (clones share everything).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    /// The index file, or the corpus folder.
    path: PathBuf,
    /// The corpus file of a corpus folder; `None` for a single index file.
    corpus: Option<CorpusMeta>,
    shards: Vec<Shard>,
    /// Merged class counts and means of a corpus, made on first use.
    class_stats: OnceLock<(Vec<u64>, Vec<f64>)>,
    opened_in: Option<Duration>,
    /// Per shard: its GPU copy once a GPU call made it, or why there is none.
    gpu: Mutex<Vec<Option<Gpu>>>,
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
            .field("path", &self.inner.path)
            .field("shards", &self.inner.shards.len())
            .finish()
    }
}

impl Engine {
    /// Open and validate the index file or corpus folder at `path`: O(1) for a file, one O(1)
    /// open per shard for a corpus (each checked against the corpus file).
    pub fn open(path: impl AsRef<Path>) -> Result<Engine> {
        let path = path.as_ref();
        let t = Instant::now();
        if corpus::is_corpus(path) {
            let meta = corpus::read(path)?;
            let shards = corpus::open_shards(path, &meta)?;
            return Ok(Self::with(path, Some(meta), shards, Some(t.elapsed())));
        }
        let index = Index::open(path)?;
        Ok(Self::with(
            path,
            None,
            vec![Shard::new(Arc::new(index), 0)],
            Some(t.elapsed()),
        ))
    }

    /// An engine over an index opened by the caller.
    pub fn from_index(index: Index) -> Engine {
        let path = index.path().to_path_buf();
        Self::with(&path, None, vec![Shard::new(Arc::new(index), 0)], None)
    }

    fn with(
        path: &Path,
        corpus: Option<CorpusMeta>,
        shards: Vec<Shard>,
        opened_in: Option<Duration>,
    ) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                corpus,
                gpu: Mutex::new(vec![None; shards.len()]),
                shards,
                class_stats: OnceLock::new(),
                opened_in,
                pools: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The index file or corpus folder the engine was opened from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The corpus file of a corpus folder; `None` for a single index file.
    pub fn corpus(&self) -> Option<&CorpusMeta> {
        self.inner.corpus.as_ref()
    }

    /// The shards in row order (one, at row 0, for a single index file).
    pub fn shards(&self) -> &[Shard] {
        &self.inner.shards
    }

    /// The index of a single-file engine (clone the `Arc` to keep its mapping alive
    /// independently). A corpus has no one index: this is an [`Error::Invalid`] for it, and
    /// whole-corpus questions go through the engine's own methods (or [`Engine::shards`]).
    pub fn index(&self) -> Result<&Arc<Index>> {
        match (&self.inner.corpus, self.inner.shards.as_slice()) {
            (None, [shard]) => Ok(shard.index()),
            _ => Err(Error::invalid(format!(
                "{} is a corpus of {} shards, not one index file: use the engine's corpus-wide calls, or its shards",
                self.path().display(),
                self.inner.shards.len()
            ))),
        }
    }

    /// The first shard's index: the source of what all shards share (dim, dtype, metric).
    fn first(&self) -> &Index {
        // `open` and `from_index` make at least one shard.
        self.inner.shards[0].index()
    }

    /// Rows (all shards).
    pub fn rows(&self) -> usize {
        self.inner
            .corpus
            .as_ref()
            .map_or_else(|| self.first().rows(), |c| c.rows as usize)
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.first().dim()
    }

    /// Stored element type.
    pub fn dtype(&self) -> DType {
        self.first().meta().dtype
    }

    /// Search metric.
    pub fn metric(&self) -> Metric {
        self.first().metric()
    }

    /// Number of classes (0 when unlabelled); a corpus's global count.
    pub fn classes(&self) -> usize {
        self.inner
            .corpus
            .as_ref()
            .map_or_else(|| self.first().classes(), |c| c.classes as usize)
    }

    /// The class names (one per class), or none.
    pub fn class_names(&self) -> &[String] {
        match &self.inner.corpus {
            Some(m) => &m.class_names,
            None => &self.first().meta().class_names,
        }
    }

    /// Name of class `c`, when the index or corpus has class names.
    pub fn class_name(&self, c: usize) -> Option<&str> {
        self.class_names().get(c).map(String::as_str)
    }

    /// Recompute every checksum of every shard (see [`Index::verify`]); the first problem is an
    /// error naming its file. Returns the bytes checked.
    pub fn verify(&self) -> Result<u64> {
        self.inner.shards.iter().try_fold(0u64, |bytes, s| {
            s.index().verify()?;
            Ok(bytes + s.index().header().file_len)
        })
    }

    /// The exact scorer of shard `shard` on `device` (rows local to the shard). The GPU copy of
    /// its vectors is made on the first call that needs it and kept; `Auto` falls back to the
    /// CPU when no GPU is usable, `Cuda` is then an [`Error::Unavailable`].
    pub fn scorer(&self, shard: usize, device: Device) -> Result<Backend<'_>> {
        let index = self.shard(shard)?.index();
        Backend::new(
            index.vectors(),
            index.dim(),
            index.metric(),
            self.gpu(shard, device)?,
        )
    }

    /// `shards` checked against the shard count.
    fn shard_range(&self, shards: Range<usize>) -> Result<Range<usize>> {
        let n = self.inner.shards.len();
        if shards.is_empty() || shards.end > n {
            return Err(Error::invalid(format!(
                "shards {}..{} are not a non-empty range of the {n} shards",
                shards.start, shards.end
            )));
        }
        Ok(shards)
    }

    fn shard(&self, shard: usize) -> Result<&Shard> {
        self.inner.shards.get(shard).ok_or_else(|| {
            Error::invalid(format!(
                "shard {shard} out of range ({} shards)",
                self.inner.shards.len()
            ))
        })
    }

    fn gpu(&self, shard: usize, device: Device) -> Result<Option<Arc<CudaScorer>>> {
        if device == Device::Cpu {
            return Ok(None);
        }
        let index = self.shard(shard)?.index();
        let mut cached = self
            .inner
            .gpu
            .lock()
            .map_err(|_| Error::poisoned("GPU cache"))?;
        let slot = &mut cached[shard];
        if slot.is_none() {
            *slot = match score::upload(index.vectors(), index.dim(), index.metric(), Device::Cuda)
            {
                Ok(g) => g.map(Gpu::Ready),
                Err(Error::Unavailable(why)) => Some(Gpu::Unavailable(why)),
                Err(e) => return Err(e),
            };
        }
        match (slot.clone(), device) {
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
                .map_err(|_| Error::poisoned("thread pool cache"))?;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::Scorer;
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
        let index = e.index().unwrap().clone();
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
            let first = e.gpu(0, Device::Cuda).unwrap().unwrap();
            let second = e.gpu(0, Device::Auto).unwrap().unwrap();
            assert!(Arc::ptr_eq(&first, &second), "uploaded twice");
        } else {
            let err = e.scorer(0, Device::Cuda).err().expect("no GPU here");
            assert_eq!(err.kind(), crate::ErrorKind::Unavailable);
            assert!(matches!(
                e.inner.gpu.lock().unwrap()[..],
                [Some(Gpu::Unavailable(_))]
            ));
            assert!(e
                .scorer(0, Device::Auto)
                .unwrap()
                .describe()
                .starts_with("cpu"));
        }
        assert!(e.gpu(0, Device::Cpu).unwrap().is_none());
    }
}
