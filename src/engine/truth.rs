//! Exact ground truth for recall measurements, cached beside the index (or in the corpus
//! folder, beside its corpus file).

use super::{Engine, SearchOpts};
use crate::error::Result;
use crate::score::Device;
use std::path::PathBuf;
use std::time::Instant;

/// Exact top-k row ids of a query batch and where they came from.
#[derive(Debug, Clone)]
pub struct GroundTruth {
    /// `[nq, k]` row ids, best first.
    pub ids: Vec<u32>,
    /// The cache file.
    pub path: PathBuf,
    /// Seconds the exact search took; `None` when the cache held a valid entry.
    pub computed_s: Option<f64>,
    /// Why the result could not be cached, if it could not (the result is still returned).
    pub cache_error: Option<String>,
}

impl Engine {
    /// Where the exact neighbours of `queries` are cached: keyed by the query bytes, k and the
    /// identity of every shard (its table checksum, length and creation time change with every
    /// rebuild), beside the index file or the corpus file.
    fn truth_path(&self, queries: &[f32], k: usize) -> PathBuf {
        let mut key = Vec::with_capacity(queries.len() * 4 + 32);
        key.extend_from_slice(bytemuck::cast_slice(queries));
        key.extend_from_slice(&(k as u64).to_le_bytes());
        for s in self.shards() {
            let h = s.index().header();
            for x in [h.table_checksum, h.file_len, s.index().meta().created_unix] {
                key.extend_from_slice(&x.to_le_bytes());
            }
        }
        let beside = match self.corpus() {
            Some(_) => crate::corpus::corpus_file(self.path()),
            None => self.path().to_path_buf(),
        };
        let mut name = beside.file_name().unwrap_or_default().to_os_string();
        name.push(format!(
            ".truth-{:016x}.npy",
            xxhash_rust::xxh3::xxh3_64(&key)
        ));
        beside.with_file_name(name)
    }

    /// Exact top-`k` ids of `queries` on `device`, from the cache beside the index when it
    /// holds a valid entry; a computed result is cached for the next call.
    pub fn ground_truth(&self, queries: &[f32], k: usize, device: Device) -> Result<GroundTruth> {
        let path = self.truth_path(queries, k);
        let nq = crate::score::check_queries(queries, self.dim())?;
        let rows = self.rows();
        if let Ok(ids) = crate::npy::read_labels(&path) {
            if ids.len() == nq * k && ids.iter().all(|&i| (i as usize) < rows) {
                return Ok(GroundTruth {
                    ids,
                    path,
                    computed_s: None,
                    cache_error: None,
                });
            }
        }
        let t = Instant::now();
        let opts = SearchOpts {
            exact: true,
            device,
            ..Default::default()
        };
        let nn = self.search(queries, k, &opts)?;
        let computed_s = Some(t.elapsed().as_secs_f64());
        let wide: Vec<i64> = nn.ids.iter().map(|&i| i64::from(i)).collect();
        let cache_error = crate::npy::write_vector(&path, &wide)
            .err()
            .map(|e| e.to_string());
        Ok(GroundTruth {
            ids: nn.ids,
            path,
            computed_s,
            cache_error,
        })
    }
}
