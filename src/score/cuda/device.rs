//! NVRTC compilation of the kernels and the per-process device cache: the part of the CUDA
//! backend that knows nothing of scoring. cudarc panics inside `CudaContext::new` and
//! `compile_ptx` when libcuda or libnvrtc is missing, so every entry point checks
//! `is_culib_present()` first.

use crate::error::{Error, Result};
use cudarc::driver::sys::{CUdevice_attribute, CUfunction_attribute};
use cudarc::driver::{CudaContext, CudaFunction, CudaStream};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileError, CompileOptions, Ptx};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// Shared header, spliced into each source in place of its `#include "common.cuh"` (NVRTC gets
/// no header list from cudarc).
const COMMON: &str = include_str!("../../../kernels/common.cuh");

/// Kernel sources, one per family: (file, source, entry points).
pub const SOURCES: &[(&str, &str, &[&str])] = &[(
    "topk.cu",
    include_str!("../../../kernels/topk.cu"),
    &[
        "topk_simt1_f16",
        "topk_simt2_f16",
        "topk_simt4_f16",
        "topk_simt8_f16",
        "topk_simt1_f32",
        "topk_simt2_f32",
        "topk_simt4_f32",
        "topk_simt8_f32",
        "topk_mma128_f16",
        "topk_mma64_f16",
        "topk_merge_f32",
        "rescore_f16",
        "rescore_f32",
    ],
)];

/// Virtual architecture of the PTX: sm_90 (H100). NVRTC 13.0 emits PTX ISA 9.0, the newest the
/// 580 driver (CUDA 13.0) loads.
const ARCH: &str = "compute_90";
/// Env var naming the folder that holds `cuda_fp16.h`.
pub const INCLUDE_ENV: &str = "PTSEL_CUDA_INCLUDE";

pub(super) fn cuda_err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> Error + '_ {
    move |e| Error::Cuda(format!("{what}: {e}"))
}

/// Whether libnvrtc can be loaded.
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Checks that the driver, NVRTC and a device are present; `Error::Unavailable` says which is not.
pub fn probe() -> Result<()> {
    // SAFETY: only tries to dlopen the library by its usual names.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(Error::Unavailable(
            "CUDA unavailable: no CUDA driver (libcuda.so) on this machine".into(),
        ));
    }
    if !nvrtc_present() {
        return Err(Error::Unavailable(
            "CUDA unavailable: NVRTC (libnvrtc.so) not found; pip install nvidia-cuda-nvrtc==13.0.88 and add its nvidia/cu13/lib folder to LD_LIBRARY_PATH".into(),
        ));
    }
    cudarc::driver::result::init()
        .map_err(|e| Error::Unavailable(format!("CUDA unavailable: cuInit failed: {e}")))?;
    match CudaContext::device_count() {
        Ok(n) if n > 0 => Ok(()),
        Ok(_) => Err(Error::Unavailable(
            "CUDA unavailable: the driver reports no device".into(),
        )),
        Err(e) => Err(Error::Unavailable(format!("CUDA unavailable: {e}"))),
    }
}

/// The folder holding `cuda_fp16.h`: `$PTSEL_CUDA_INCLUDE`, else `../include` next to a
/// `LD_LIBRARY_PATH` entry that holds libnvrtc (the pip wheel's `nvidia/cu13/lib`), else the CI
/// cache `~/.cache/ptsel/nvrtc/nvidia/cu13/include`, else `/usr/local/cuda/include`.
pub fn include_dir() -> Result<PathBuf> {
    let has_header = |d: &PathBuf| d.join("cuda_fp16.h").is_file();
    if let Some(d) = std::env::var_os(INCLUDE_ENV) {
        let d = PathBuf::from(d);
        return if has_header(&d) {
            Ok(d)
        } else {
            Err(Error::Unavailable(format!(
                "{INCLUDE_ENV}={}: no cuda_fp16.h there",
                d.display()
            )))
        };
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .filter(|d| d.join("libnvrtc.so.13").exists() || d.join("libnvrtc.so").exists())
                .map(|d| d.join("../include"))
                .collect()
        })
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cache/ptsel/nvrtc/nvidia/cu13/include"));
    }
    candidates.push(PathBuf::from("/usr/local/cuda/include"));
    candidates.into_iter().find(has_header).ok_or_else(|| {
        Error::Unavailable(format!(
            "cuda_fp16.h not found for NVRTC: set {INCLUDE_ENV} to the include folder of the nvidia-cuda-runtime wheel (site-packages/nvidia/cu13/include) or of a CUDA toolkit"
        ))
    })
}

/// Compiles one kernel family to PTX; a failure carries NVRTC's log.
pub fn compile(file: &str, source: &str) -> Result<Ptx> {
    if !nvrtc_present() {
        return Err(Error::Unavailable("NVRTC (libnvrtc.so) not found: pip install nvidia-cuda-nvrtc==13.0.88 and add its lib folder to LD_LIBRARY_PATH".into()));
    }
    let include = include_dir()?;
    let src = source.replace("#include \"common.cuh\"", COMMON);
    let opts = CompileOptions {
        arch: Some(ARCH),
        include_paths: vec![include.display().to_string()],
        options: vec!["--std=c++17".into()],
        name: Some(file.into()),
        ..Default::default()
    };
    compile_ptx_with_opts(src, opts).map_err(|e| match e {
        CompileError::CompileError { log, .. } => {
            Error::Cuda(format!("{file}: NVRTC failed:\n{}", log.to_string_lossy()))
        }
        other => Error::Cuda(format!("{file}: NVRTC: {other}")),
    })
}

/// One family's compile result for `ptsel kernels --check`.
pub struct KernelCheck {
    /// Source file.
    pub file: &'static str,
    /// Entry points it must define.
    pub entries: &'static [&'static str],
    /// The PTX, or the error (NVRTC's log, or a missing entry point).
    pub result: Result<PtxInfo>,
}

/// What `ptsel kernels --check` reports of a compiled family.
pub struct PtxInfo {
    /// PTX size in bytes.
    pub bytes: usize,
    /// The `.version` (PTX ISA) line's value: the driver must support it.
    pub isa: String,
    /// The `.target` line's value.
    pub target: String,
}

/// Compiles every kernel family and checks that each entry point is in its PTX.
pub fn check_kernels() -> Vec<KernelCheck> {
    SOURCES
        .iter()
        .map(|&(file, src, entries)| {
            let result = compile(file, src).and_then(|ptx| {
                let text = ptx.to_src();
                let directive = |d: &str| {
                    text.lines()
                        .find_map(|l| l.trim().strip_prefix(d))
                        .unwrap_or("?")
                        .trim()
                        .to_string()
                };
                match entries
                    .iter()
                    .find(|e| !text.contains(&format!(".entry {e}(")))
                {
                    Some(e) => Err(Error::Cuda(format!(
                        "{file}: entry point {e} missing from the PTX"
                    ))),
                    None => Ok(PtxInfo {
                        bytes: text.len(),
                        isa: directive(".version"),
                        target: directive(".target"),
                    }),
                }
            });
            KernelCheck {
                file,
                entries,
                result,
            }
        })
        .collect()
}

/// A device with the kernels loaded.
pub(super) struct Device {
    pub(super) stream: Arc<CudaStream>,
    functions: HashMap<&'static str, CudaFunction>,
    pub(super) sms: usize,
    pub(super) smem_optin: usize,
    pub(super) name: String,
}

impl Device {
    pub(super) fn function(&self, name: &str) -> Result<&CudaFunction> {
        self.functions
            .get(name)
            .ok_or_else(|| Error::Cuda(format!("kernel {name} not loaded")))
    }
}

/// PTX of every family, compiled once per process (a failure is not cached: it keeps its
/// `Unavailable` or `Cuda` kind for the caller).
fn ptx() -> Result<Vec<Ptx>> {
    static PTX: OnceLock<Vec<Ptx>> = OnceLock::new();
    if let Some(p) = PTX.get() {
        return Ok(p.clone());
    }
    let compiled = SOURCES
        .iter()
        .map(|&(f, s, _)| compile(f, s))
        .collect::<Result<Vec<_>>>()?;
    Ok(PTX.get_or_init(|| compiled).clone())
}

/// Device `ordinal` with its kernels, loaded on first use and cached.
pub(super) fn device(ordinal: usize) -> Result<Arc<Device>> {
    static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<Device>>>> = OnceLock::new();
    let mut devices = DEVICES
        .get_or_init(Default::default)
        .lock()
        .map_err(|_| Error::poisoned("CUDA device cache"))?;
    if let Some(d) = devices.get(&ordinal) {
        return Ok(d.clone());
    }
    probe()?;
    let ctx = CudaContext::new(ordinal).map_err(cuda_err("creating the context"))?;
    let smem_optin = ctx
        .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
        .map_err(cuda_err("device attribute"))?;
    let sms = ctx
        .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        .map_err(cuda_err("device attribute"))?;
    let mut functions = HashMap::new();
    for (&(file, _, entries), ptx) in SOURCES.iter().zip(ptx()?) {
        let module = ctx.load_module(ptx).map_err(cuda_err(file))?;
        for &e in entries {
            let f = module.load_function(e).map_err(cuda_err(e))?;
            f.set_attribute(
                CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                smem_optin,
            )
            .map_err(cuda_err(e))?;
            functions.insert(e, f);
        }
    }
    let name = ctx.name().unwrap_or_else(|_| "CUDA device".into());
    let d = Arc::new(Device {
        stream: ctx.default_stream(),
        functions,
        sms: sms.max(1) as usize,
        smem_optin: smem_optin.max(0) as usize,
        name,
    });
    devices.insert(ordinal, d.clone());
    Ok(d)
}
