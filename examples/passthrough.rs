//! Writes a TorchScript module that returns its input flattened (`[B, 3, H, W] -> [B, 3*H*W]`).
//! `ptsel embed` with it outputs the preprocessed images themselves, to compare ptsel's
//! preprocessing with torchvision's (see scripts/compare-preprocess.py):
//!
//! ```text
//! cargo run --features torch --example passthrough -- pass.pt
//! ptsel embed --model pass.pt --images DIR --out pixels.npy --ids ids.txt
//! python3 scripts/compare-preprocess.py DIR ids.txt pixels.npy
//! ```

use tch::{CModule, Device, Kind, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(out) = std::env::args().nth(1) else {
        return Err("usage: passthrough OUT.pt".into());
    };
    let example = Tensor::zeros([1, 3, 224, 224], (Kind::Float, Device::Cpu));
    let module = CModule::create_by_tracing("Passthrough", "forward", &[example], &mut |x| {
        vec![x[0].flatten(1, -1)]
    })?;
    module.save(&out)?;
    eprintln!("wrote {out}");
    Ok(())
}
