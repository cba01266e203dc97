//! The tensor-core path made exact: `topk_mma*` proposes `plan.list` candidates per query from
//! fp16-rounded queries, `rescore_*` scores them again with the f32 query on the device (the
//! arithmetic of `topk_simt`, so a row gets the same bits on either path), and
//! [`crate::score::rescore::finish`] keeps the k best where the fp16 error bound proves them;
//! the other queries are scored again by `topk_simt`. The answer is then the top-k of the f32
//! scores for every query, whatever the batch size.

use super::{cuda_err, i32_arg, CudaScorer, DeviceRows, Launch};
use crate::error::{Error, Result};
use crate::score::{prepare_queries, rescore};
use cudarc::driver::{LaunchConfig, PushKernelArg};
use std::sync::atomic::Ordering;

impl CudaScorer {
    /// Top-`k` (similarities, ids) of one launch's queries on the tensor cores (`plan` is a
    /// tensor-core plan), exact as the module docs say.
    pub(super) fn top_k_rescored(
        &self,
        queries: &[f32],
        k: usize,
        plan: &Launch,
    ) -> Result<(Vec<f32>, Vec<u32>)> {
        let (kc, ld) = (plan.list, self.ld);
        let (approx, ids, _) = self.launch_top_k(queries, plan, false)?;
        let q = prepare_queries(queries, self.dim, self.metric, ld, 1)?;
        let exact = self.rescore(&q.data, &q.norms2, &ids, kc)?;
        let (mut sims, mut out) = (vec![0.0; q.count * k], vec![0u32; q.count * k]);
        let mut unproven = Vec::new();
        for qi in 0..q.count {
            let list = qi * kc..(qi + 1) * kc;
            let slack = rescore::slack(self.metric, &q.data[qi * ld..(qi + 1) * ld], self.max_norm);
            let last = approx[list.end - 1];
            match rescore::finish(
                k,
                &ids[list.clone()],
                &exact[list],
                last,
                slack,
                kc >= self.rows,
            ) {
                Some(best) => {
                    for (j, c) in best.into_iter().enumerate() {
                        (sims[qi * k + j], out[qi * k + j]) = (c.sim(), c.id);
                    }
                }
                None => unproven.push(qi),
            }
        }
        if unproven.is_empty() {
            return Ok((sims, out));
        }
        self.reruns.fetch_add(unproven.len(), Ordering::Relaxed);
        let again: Vec<f32> = unproven
            .iter()
            .flat_map(|&qi| &queries[qi * self.dim..(qi + 1) * self.dim])
            .copied()
            .collect();
        let simt = self.simt_plan(unproven.len(), k).ok_or_else(|| {
            Error::Cuda(format!(
                "no f32 kernel fits {}-d rows for k = {k}",
                self.dim
            ))
        })?;
        let (s, i, _) = self.launch_top_k(&again, &simt, false)?;
        for (n, &qi) in unproven.iter().enumerate() {
            sims[qi * k..(qi + 1) * k].copy_from_slice(&s[n * k..(n + 1) * k]);
            out[qi * k..(qi + 1) * k].copy_from_slice(&i[n * k..(n + 1) * k]);
        }
        Ok((sims, out))
    }

    /// Similarities (`[nq, kc]`) of the prepared f32 queries `q` (`[nq, ld]`, squared norms
    /// `norms2`) to the candidate rows `ids` (`[nq, kc]`, `u32::MAX` for none: `-inf`).
    fn rescore(&self, q: &[f32], norms2: &[f32], ids: &[u32], kc: usize) -> Result<Vec<f32>> {
        let stream = &self.dev.stream;
        let nq = norms2.len();
        let upload = cuda_err("uploading candidates");
        let (qd, qn, idd) = (
            stream.clone_htod(q).map_err(&upload)?,
            stream.clone_htod(norms2).map_err(&upload)?,
            stream.clone_htod(ids).map_err(&upload)?,
        );
        let mut out = stream
            .alloc_zeros::<f32>(ids.len())
            .map_err(cuda_err("allocating"))?;
        let (ldi, nqi, l2, kci) = (
            i32_arg(self.ld, "dim")?,
            i32_arg(nq, "queries")?,
            i32::from(self.metric == crate::format::Metric::L2),
            i32_arg(kc, "candidates")?,
        );
        let (kernel, mut b) = match &self.rows_dev {
            DeviceRows::F16(x) => {
                let mut b = stream.launch_builder(self.dev.function("rescore_f16")?);
                b.arg(x);
                ("rescore_f16", b)
            }
            DeviceRows::F32(x) => {
                let mut b = stream.launch_builder(self.dev.function("rescore_f32")?);
                b.arg(x);
                ("rescore_f32", b)
            }
        };
        b.arg(&self.norms2)
            .arg(&ldi)
            .arg(&qd)
            .arg(&qn)
            .arg(&nqi)
            .arg(&l2)
            .arg(&kci)
            .arg(&idd)
            .arg(&mut out);
        let cfg = LaunchConfig {
            grid_dim: (
                u32::try_from((ids.len() * 8).div_ceil(256)).map_err(|_| {
                    Error::invalid(format!("{} candidates exceed one launch", ids.len()))
                })?,
                1,
                1,
            ),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: x holds the corpus (rows padded to MMA_N, stride ld), norms2 one f32 per row,
        // qd nq rows of ld f32 values, qn nq values, idd and out nq * kc entries; every id
        // below u32::MAX came from the top-k kernels and is a row number. 8 threads per
        // (query, candidate) pair, the grid rounded up (the kernel skips pairs past the end).
        unsafe { b.launch(cfg) }.map_err(cuda_err(kernel))?;
        stream
            .clone_dtoh(&out)
            .map_err(cuda_err("downloading re-scores"))
    }
}
