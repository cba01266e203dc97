//! `ptsel kernels`: the CUDA kernels built into this binary; `--check` compiles each family with
//! NVRTC (no GPU needed) and reports its PTX size or NVRTC's log.

use anyhow::{bail, Result};
use ptsel::score::cuda;

/// Arguments of `ptsel kernels`.
#[derive(clap::Args)]
pub struct Args {
    /// Compile every kernel with NVRTC; exit non-zero if any fails.
    #[arg(long)]
    pub check: bool,
}

/// Run `ptsel kernels`.
pub fn run(args: Args) -> Result<()> {
    if !args.check {
        for (file, _, entries) in cuda::SOURCES {
            outln!("{file:<12} {}", entries.join(" "))?;
        }
        return Ok(());
    }
    if !cuda::nvrtc_present() {
        return Err(ptsel::Error::Unavailable("NVRTC (libnvrtc.so) not found: pip install nvidia-cuda-nvrtc==13.0.88 and add its nvidia/cu13/lib folder to LD_LIBRARY_PATH".into()).into());
    }
    outln!("include   {}", cuda::include_dir()?.display())?;
    let mut failed = 0;
    for check in cuda::check_kernels() {
        match check.result {
            Ok(p) => outln!(
                "ok        {:<12} {:>8} bytes of PTX ISA {} for {}  ({})",
                check.file,
                p.bytes,
                p.isa,
                p.target,
                check.entries.join(" ")
            )?,
            Err(e) => {
                failed += 1;
                outln!("FAILED    {:<12} {e}", check.file)?;
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} kernel famil{} failed to compile",
            if failed == 1 { "y" } else { "ies" }
        );
    }
    Ok(())
}
