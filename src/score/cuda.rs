//! CUDA scoring through cudarc, with the driver and NVRTC loaded at run time (no CUDA needed to
//! build). The kernels in `kernels/*.cu` are embedded with `include_str!`, compiled to PTX by
//! NVRTC once per process and loaded once per device. The corpus moves to the device once per
//! scorer; query batches stream: few queries take the bandwidth-bound SIMT kernel, larger fp16
//! batches the tensor-core (mma.sync) kernel; both keep per-query top-k lists per block and a merge
//! kernel reduces them. The tensor-core lists are candidates, re-scored exactly (`cuda/rescore.rs`).
//! Compilation, the library probes and the device cache are in `cuda/device.rs`.

mod device;
mod rescore;

pub use device::{
    check_kernels, compile, include_dir, nvrtc_present, probe, KernelCheck, PtxInfo, INCLUDE_ENV,
    SOURCES,
};
use device::{cuda_err, device, Device};

use super::{prepare_queries, Neighbors};
use crate::error::{Error, Result};
use crate::format::Metric;
use crate::store::Vectors;
use cudarc::driver::{
    CudaSlice, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;
use std::sync::Arc;

/// Largest k of the GPU top-k (PTSEL_TOPK_MAX in common.cuh); larger k run on the CPU.
pub const TOPK_MAX: usize = 64;
/// Row stride granularity on the device (elements): the mma kernel steps k by 32 and swizzles
/// 16-byte chunks within groups of 8.
const LD_ALIGN: usize = 64;
/// Rows per SIMT tile (SIMT_TILE in topk.cu); a SIMT block has 8 warps and 1, 2, 4 or 8
/// queries.
const SIMT_TILE: usize = 256;
/// Rows per tensor-core tile (MMA_N in topk.cu); a tensor-core block has 64 or 128 queries.
const MMA_N: usize = 128;
/// Batches larger than this use tensor cores (fp16 corpora).
const SIMT_MAX_QUERIES: usize = 4;
/// Resident blocks per SM of the SIMT kernels (a launch aims for whole waves of them); the
/// tensor-core blocks take most of an SM's shared memory, one per SM.
const SIMT_BLOCKS_PER_SM: usize = 8;
/// Queries per launch: bounds the partial top-k buffers.
const LAUNCH_QUERIES: usize = 16384;

/// The corpus on the device, rows padded to `MMA_N` and strided by `ld`.
enum DeviceRows {
    F16(CudaSlice<u16>),
    F32(CudaSlice<f32>),
}

/// Similarities and ids (`[nq, k]`) of one launch, with the kernel times when asked for.
type LaunchResult = (Vec<f32>, Vec<u32>, Option<[f32; 2]>);

/// A query batch on the device, in the type its kernel reads.
enum DeviceQueries {
    F16(CudaSlice<u16>),
    F32(CudaSlice<f32>),
}

/// How a batch is scored: kernel, queries per block, rows per tile, block size, shared memory,
/// partial lists per query and chunk, fp16 queries (whose lists are candidates, re-scored), and
/// the length of each query's list.
struct Launch {
    kernel: &'static str,
    group: usize,
    tile: usize,
    threads: u32,
    smem: usize,
    slices: usize,
    f16_queries: bool,
    list: usize,
}

/// The corpus on a CUDA device and the top-k kernels over it. It owns its device copy (no
/// borrow of the index), so an [`crate::Engine`] uploads once and keeps it; batches the kernels
/// cannot take are left to the CPU ([`super::Backend`]).
pub struct CudaScorer {
    dev: Arc<Device>,
    rows_dev: DeviceRows,
    /// Squared row norms (l2).
    norms2: CudaSlice<f32>,
    rows: usize,
    dim: usize,
    ld: usize,
    metric: Metric,
    /// Largest row norm, rounded up (for the fp16 error bound of the re-scoring).
    max_norm: f64,
    /// Queries the tensor-core path could not prove and scored again with f32 queries.
    reruns: std::sync::atomic::AtomicUsize,
}

/// Copies `src` (`[rows, dim]`) to a zeroed device buffer of `rows_pad` rows of stride `ld`,
/// converting each value with `f`, through a host staging buffer of about 64 MiB.
fn upload_padded<S: Sync, T: DeviceRepr + ValidAsZeroBits + Default + Clone + Send>(
    stream: &Arc<CudaStream>,
    src: &[S],
    dim: usize,
    ld: usize,
    rows_pad: usize,
    f: impl Fn(&S) -> T + Sync,
) -> Result<CudaSlice<T>> {
    let err = cuda_err("uploading the corpus");
    let mut dev = stream.alloc_zeros::<T>(rows_pad * ld).map_err(&err)?;
    let rows = src.len() / dim;
    let chunk_rows = ((64 << 20) / (ld * std::mem::size_of::<T>())).max(1);
    for r0 in (0..rows).step_by(chunk_rows) {
        let r1 = (r0 + chunk_rows).min(rows);
        let mut host = vec![T::default(); (r1 - r0) * ld];
        host.par_chunks_mut(ld)
            .zip(src[r0 * dim..r1 * dim].par_chunks(dim))
            .for_each(|(h, x)| h.iter_mut().zip(x).for_each(|(h, x)| *h = f(x)));
        stream
            .memcpy_htod(&host, &mut dev.slice_mut(r0 * ld..r1 * ld))
            .map_err(&err)?;
        // The staging buffer is reused: wait until the copy has read it.
        stream.synchronize().map_err(&err)?;
    }
    Ok(dev)
}

fn i32_arg(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| {
        Error::invalid(format!(
            "CUDA path: {what} = {v} exceeds the kernels' 32-bit indices"
        ))
    })
}

impl CudaScorer {
    /// Uploads `vectors` (`[rows, dim]`, unit-normalised for cos) to device 0.
    pub fn new(vectors: Vectors<'_>, dim: usize, metric: Metric) -> Result<Self> {
        super::check_shape(&vectors, dim)?;
        let dev = device(0)?;
        let rows = vectors.len() / dim;
        i32_arg(rows, "rows")?;
        let ld = dim.div_ceil(LD_ALIGN) * LD_ALIGN;
        let rows_pad = rows.div_ceil(MMA_N).max(1) * MMA_N;
        let stream = &dev.stream;
        let mut norms2 = vec![0.0f32; rows];
        let widen = |i: usize, out: &mut Vec<f32>| match vectors {
            Vectors::F16(v) => {
                out.resize(dim, 0.0);
                v[i * dim..(i + 1) * dim].convert_to_f32_slice(out);
            }
            Vectors::F32(v) => {
                out.clear();
                out.extend_from_slice(&v[i * dim..(i + 1) * dim]);
            }
        };
        norms2
            .par_iter_mut()
            .enumerate()
            .for_each_init(Vec::new, |row, (i, n)| {
                widen(i, row);
                *n = row.iter().map(|x| x * x).sum();
            });
        let rows_dev = match vectors {
            Vectors::F16(v) => DeviceRows::F16(upload_padded(stream, v, dim, ld, rows_pad, |x| {
                x.to_bits()
            })?),
            Vectors::F32(v) => {
                DeviceRows::F32(upload_padded(stream, v, dim, ld, rows_pad, |&x| x)?)
            }
        };
        // The f32 sums of the squared norms are within dim 2^-24 of the exact ones.
        let max_norm2 = norms2.iter().fold(0.0f32, |m, &n| m.max(n));
        let max_norm = (f64::from(max_norm2) * (1.0 + dim as f64 * 2f64.powi(-23))).sqrt();
        let norms2 = stream
            .clone_htod(&norms2)
            .map_err(cuda_err("uploading norms"))?;
        Ok(CudaScorer {
            dev,
            rows_dev,
            norms2,
            rows,
            dim,
            ld,
            metric,
            max_norm,
            reruns: Default::default(),
        })
    }

    /// The kernel for `nq` queries and `k`, with its launch shape.
    fn plan(&self, nq: usize, k: usize) -> Option<Launch> {
        let tensor_cores = matches!(self.rows_dev, DeviceRows::F16(_)) && nq > SIMT_MAX_QUERIES;
        if let Some(list) = super::rescore::candidates(k, TOPK_MAX).filter(|_| tensor_cores) {
            // Queries, two corpus stages of MMA_N x 128 halves (which then hold the scores), lists.
            let mma = |m: usize, kernel| Launch {
                kernel,
                group: m,
                tile: MMA_N,
                threads: 4 * m as u32,
                smem: m * self.ld * 2 + 2 * MMA_N * 128 * 2 + 2 * m * list * 4,
                slices: 1,
                f16_queries: true,
                list,
            };
            let candidates = if nq > 64 {
                vec![mma(128, "topk_mma128_f16"), mma(64, "topk_mma64_f16")]
            } else {
                vec![mma(64, "topk_mma64_f16")]
            };
            if let Some(l) = candidates
                .into_iter()
                .find(|l| l.smem <= self.dev.smem_optin)
            {
                return Some(l);
            }
        }
        self.simt_plan(nq, k)
    }

    /// The f32-query (SIMT) kernel for `nq` queries and `k`, with its launch shape.
    fn simt_plan(&self, nq: usize, k: usize) -> Option<Launch> {
        let group = [1, 2, 4, 8]
            .into_iter()
            .find(|&g| g >= nq.min(8))
            .unwrap_or(8);
        let kernel = match (&self.rows_dev, group) {
            (DeviceRows::F16(_), 1) => "topk_simt1_f16",
            (DeviceRows::F16(_), 2) => "topk_simt2_f16",
            (DeviceRows::F16(_), 4) => "topk_simt4_f16",
            (DeviceRows::F16(_), _) => "topk_simt8_f16",
            (DeviceRows::F32(_), 1) => "topk_simt1_f32",
            (DeviceRows::F32(_), 2) => "topk_simt2_f32",
            (DeviceRows::F32(_), 4) => "topk_simt4_f32",
            (DeviceRows::F32(_), _) => "topk_simt8_f32",
        };
        let smem = (group * self.ld + group * SIMT_TILE + 2 * 8 * k) * 4;
        (smem <= self.dev.smem_optin).then_some(Launch {
            kernel,
            group,
            tile: SIMT_TILE,
            threads: 256,
            smem,
            slices: 8 / group,
            f16_queries: false,
            list: k,
        })
    }

    /// The best `plan.list` rows of each of one launch's queries (`nq <= LAUNCH_QUERIES`) as
    /// (similarities, ids). With `timing`, also the milliseconds of the scoring and of the merge
    /// kernel.
    fn launch_top_k(&self, queries: &[f32], plan: &Launch, timing: bool) -> Result<LaunchResult> {
        let k = plan.list;
        let stream = &self.dev.stream;
        let event_err = cuda_err("timing event");
        let events = if timing {
            let ctx = stream.context();
            let flags = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
            let e = (0..3)
                .map(|_| ctx.new_event(flags))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(&event_err)?;
            Some(e)
        } else {
            None
        };
        let mark = |i: usize| -> Result<()> {
            if let Some(e) = &events {
                e[i].record(stream).map_err(&event_err)?;
            }
            Ok(())
        };
        let q = prepare_queries(queries, self.dim, self.metric, self.ld, plan.group)?;
        let groups = q.count.div_ceil(plan.group);
        // Whole waves of blocks, each walking a chunk of whole tiles: the fewest waves (longest
        // chunks) that keep the last wave at least 90% full.
        let slots = if plan.f16_queries {
            1
        } else {
            SIMT_BLOCKS_PER_SM
        } * self.dev.sms;
        let fill = |w: usize| {
            let blocks = groups * (w * slots).div_ceil(groups);
            blocks as f64 / (blocks.div_ceil(slots) * slots) as f64
        };
        let waves = (1..=8).find(|&w| fill(w) >= 0.9).unwrap_or(8);
        let want = (waves * slots)
            .div_ceil(groups)
            .clamp(1, self.rows.div_ceil(plan.tile).max(1));
        let chunk_rows = self.rows.div_ceil(want).div_ceil(plan.tile) * plan.tile;
        let chunks = self.rows.div_ceil(chunk_rows);
        let parts = chunks * plan.slices;
        let alloc_err = cuda_err("allocating");
        let mut ps = stream
            .alloc_zeros::<f32>(q.count * parts * k)
            .map_err(&alloc_err)?;
        let mut pi = stream
            .alloc_zeros::<u32>(q.count * parts * k)
            .map_err(&alloc_err)?;
        let upload_err = cuda_err("uploading queries");
        let qn = stream.clone_htod(&q.norms2).map_err(&upload_err)?;
        let queries_dev = match plan.f16_queries {
            true => {
                // Slice conversion uses F16C where the CPU has it (per-value from_f32 may not).
                let mut halves = vec![half::f16::ZERO; q.data.len()];
                halves
                    .par_chunks_mut(1 << 16)
                    .zip(q.data.par_chunks(1 << 16))
                    .for_each(|(h, x)| h.convert_from_f32_slice(x));
                let bits: &[u16] = bytemuck::cast_slice(&halves);
                DeviceQueries::F16(stream.clone_htod(bits).map_err(&upload_err)?)
            }
            false => DeviceQueries::F32(stream.clone_htod(&q.data).map_err(&upload_err)?),
        };
        let (rows, ld, nq, l2, ki, cr, np) = (
            i32_arg(self.rows, "rows")?,
            i32_arg(self.ld, "dim")?,
            i32_arg(q.count, "queries")?,
            i32::from(self.metric == Metric::L2),
            i32_arg(k, "k")?,
            i32_arg(chunk_rows, "rows")?,
            i32_arg(parts, "chunks")?,
        );
        let cfg = LaunchConfig {
            grid_dim: (groups as u32, chunks as u32, 1),
            block_dim: (plan.threads, 1, 1),
            shared_mem_bytes: plan.smem as u32,
        };
        let mut b = stream.launch_builder(self.dev.function(plan.kernel)?);
        match &self.rows_dev {
            DeviceRows::F16(x) => b.arg(x),
            DeviceRows::F32(x) => b.arg(x),
        };
        b.arg(&self.norms2).arg(&rows).arg(&ld);
        match &queries_dev {
            DeviceQueries::F16(qd) => b.arg(qd),
            DeviceQueries::F32(qd) => b.arg(qd),
        };
        b.arg(&qn)
            .arg(&nq)
            .arg(&l2)
            .arg(&ki)
            .arg(&cr)
            .arg(&mut ps)
            .arg(&mut pi);
        // SAFETY: x holds the corpus padded to a multiple of MMA_N rows of ld elements (ld a
        // multiple of 64, so the 16-byte vector loads are aligned and stay in their row), the
        // queries groups * group padded rows of ld values in the type the kernel takes (f16 for
        // mma, f32 for simt), norms2 and qn one f32 per row / query, ps and pi nq * parts * k
        // entries (parts = chunks * slices, the lists each query gets); smem is what the
        // kernel carves (queries, corpus stages, scores, lists), within the opt-in limit set at
        // load, and the block has the threads the kernel's warp layout assumes.
        mark(0)?;
        unsafe { b.launch(cfg) }.map_err(cuda_err(plan.kernel))?;
        mark(1)?;
        let mut out_s = stream.alloc_zeros::<f32>(q.count * k).map_err(&alloc_err)?;
        let mut out_i = stream.alloc_zeros::<u32>(q.count * k).map_err(&alloc_err)?;
        let merge = LaunchConfig {
            grid_dim: (q.count as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: (8 * 8 * k) as u32,
        };
        let mut b = stream.launch_builder(self.dev.function("topk_merge_f32")?);
        b.arg(&ps)
            .arg(&pi)
            .arg(&nq)
            .arg(&np)
            .arg(&ki)
            .arg(&mut out_s)
            .arg(&mut out_i);
        // SAFETY: ps/pi hold nq * parts * k partial entries, out_s/out_i nq * k; one block
        // of 8 warps per query with 8 * k (score, id) pairs of shared memory.
        unsafe { b.launch(merge) }.map_err(cuda_err("topk_merge_f32"))?;
        mark(2)?;
        let download_err = cuda_err("downloading results");
        let sims = stream.clone_dtoh(&out_s).map_err(&download_err)?;
        let ids = stream.clone_dtoh(&out_i).map_err(&download_err)?;
        let times = match &events {
            Some(e) => Some([
                e[0].elapsed_ms(&e[1]).map_err(&event_err)?,
                e[1].elapsed_ms(&e[2]).map_err(&event_err)?,
            ]),
            None => None,
        };
        Ok((sims, ids, times))
    }

    /// Milliseconds of the scoring kernel and of the merge kernel for one batch (at most
    /// `LAUNCH_QUERIES` queries), measured with CUDA events; `None` where the CPU scores it. On
    /// the tensor-core path these propose the candidates; their exact re-score is not included.
    pub fn kernel_times(&self, queries: &[f32], k: usize) -> Result<Option<[f32; 2]>> {
        super::check_queries(queries, self.dim)?;
        let nq = queries.len() / self.dim;
        match (k <= TOPK_MAX && nq <= LAUNCH_QUERIES && k <= self.rows)
            .then(|| self.plan(nq, k))
            .flatten()
        {
            Some(plan) => Ok(self.launch_top_k(queries, &plan, true)?.2),
            None => Ok(None),
        }
    }

    /// The kernel that scores a batch of `nq` queries for `k` (`cpu` where the CPU does).
    pub fn kernel_for(&self, nq: usize, k: usize) -> &'static str {
        match (k <= TOPK_MAX)
            .then(|| self.plan(nq.min(LAUNCH_QUERIES), k))
            .flatten()
        {
            Some(plan) => plan.kernel,
            None => "cpu",
        }
    }

    /// Name of the device.
    pub fn device_name(&self) -> &str {
        &self.dev.name
    }

    /// Queries so far that the tensor-core path could not prove exact and scored again with
    /// f32 queries.
    pub fn reruns(&self) -> usize {
        self.reruns.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl CudaScorer {
    /// Backend description for logs and reports.
    pub fn describe(&self) -> String {
        format!("cuda {} ({} SMs)", self.dev.name, self.dev.sms)
    }

    /// The `k` best rows of each query (the [`super::Scorer::top_k`] contract), or `None` where the
    /// kernels cannot take the batch (`k > TOPK_MAX`, rows too wide for shared memory) and the
    /// CPU must score it.
    pub fn top_k(&self, queries: &[f32], k: usize) -> Result<Option<Neighbors>> {
        let nq = queries.len() / self.dim.max(1);
        let Some(plan) = (k <= TOPK_MAX)
            .then(|| self.plan(nq.min(LAUNCH_QUERIES), k))
            .flatten()
        else {
            return Ok(None);
        };
        if k == 0 || k > self.rows {
            return Err(Error::invalid(format!(
                "k = {k} must be between 1 and the number of rows ({})",
                self.rows
            )));
        }
        super::check_queries(queries, self.dim)?;
        let mut ids = Vec::with_capacity(queries.len() / self.dim * k);
        let mut scores = Vec::with_capacity(ids.capacity());
        for batch in queries.chunks(LAUNCH_QUERIES * self.dim) {
            let (s, i) = if plan.f16_queries {
                self.top_k_rescored(batch, k, &plan)?
            } else {
                let (s, i, _) = self.launch_top_k(batch, &plan, false)?;
                (s, i)
            };
            if i.contains(&u32::MAX) {
                return Err(Error::Cuda(
                    "top-k kernel returned fewer than k rows".into(),
                ));
            }
            scores.extend(
                s.into_iter()
                    .map(|s| if self.metric == Metric::L2 { -s } else { s }),
            );
            ids.extend(i);
        }
        Ok(Some(Neighbors { k, ids, scores }))
    }
}
