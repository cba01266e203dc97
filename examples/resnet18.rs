//! Writes a ResNet-18 backbone with random weights as TorchScript (torchvision's architecture with
//! the classifier removed: `[B, 3, H, W] -> [B, 512, 1, 1]`), and optionally a folder of synthetic
//! 500x375 JPEGs (ImageNet's typical size), to try `ptsel embed` and measure its throughput
//! without PyTorch or a data set:
//!
//! ```text
//! cargo run --release --features torch --example resnet18 -- r18.pt [IMAGES_DIR COUNT]
//! ptsel embed --model r18.pt --images IMAGES_DIR --out f.npy --threads 2
//! ```

use rand::{Rng, SeedableRng};
use tch::nn::{self, ModuleT};
use tch::{CModule, Device, Kind, Tensor};

fn conv(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding: k / 2,
        bias: false,
        ..Default::default()
    };
    nn::conv2d(p, cin, cout, k, cfg)
}

/// torchvision's `BasicBlock`: two 3x3 convolutions with a residual (1x1 projection when the
/// shape changes).
fn block(p: nn::Path, cin: i64, cout: i64, stride: i64) -> impl ModuleT {
    let (c1, b1) = (
        conv(&p / "conv1", cin, cout, 3, stride),
        nn::batch_norm2d(&p / "bn1", cout, Default::default()),
    );
    let (c2, b2) = (
        conv(&p / "conv2", cout, cout, 3, 1),
        nn::batch_norm2d(&p / "bn2", cout, Default::default()),
    );
    let down = (stride != 1 || cin != cout).then(|| {
        (
            conv(&p / "downsample" / 0, cin, cout, 1, stride),
            nn::batch_norm2d(&p / "downsample" / 1, cout, Default::default()),
        )
    });
    nn::func_t(move |x, train| {
        let y = x
            .apply(&c1)
            .apply_t(&b1, train)
            .relu()
            .apply(&c2)
            .apply_t(&b2, train);
        let skip = match &down {
            Some((c, b)) => x.apply(c).apply_t(b, train),
            None => x.shallow_clone(),
        };
        (y + skip).relu()
    })
}

fn resnet18(p: &nn::Path) -> impl ModuleT {
    let conv1 = conv(p / "conv1", 3, 64, 7, 2);
    let bn1 = nn::batch_norm2d(p / "bn1", 64, Default::default());
    let mut layers = nn::seq_t();
    for (i, (cin, cout, stride)) in [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
        .into_iter()
        .enumerate()
    {
        let l = p / format!("layer{}", i + 1);
        layers = layers
            .add(block(&l / 0, cin, cout, stride))
            .add(block(&l / 1, cout, cout, 1));
    }
    nn::func_t(move |x, train| {
        x.apply(&conv1)
            .apply_t(&bn1, train)
            .relu()
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)
            .apply_t(&layers, train)
            .adaptive_avg_pool2d([1, 1])
    })
}

/// A smooth random scene with texture, so JPEG sizes resemble photographs'.
fn scene(rng: &mut impl Rng) -> image::RgbImage {
    let waves: Vec<[f32; 4]> = (0..6)
        .map(|_| {
            [
                rng.random_range(0.005..0.08),
                rng.random_range(0.005..0.08),
                rng.random_range(0.0..6.3),
                rng.random_range(20.0..60.0),
            ]
        })
        .collect();
    let base: [f32; 3] = [
        rng.random_range(40.0..200.0),
        rng.random_range(40.0..200.0),
        rng.random_range(40.0..200.0),
    ];
    image::RgbImage::from_fn(500, 375, |x, y| {
        let (x, y) = (x as f32, y as f32);
        let mut px = [0u8; 3];
        for (c, v) in px.iter_mut().enumerate() {
            let s: f32 = waves
                .iter()
                .skip(c)
                .map(|w| w[3] * (w[0] * x + w[1] * y + w[2]).sin())
                .sum();
            *v = (base[c] + s + rng.random_range(-12.0..12.0)).clamp(0.0, 255.0) as u8;
        }
        image::Rgb(px)
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first() else {
        return Err("usage: resnet18 OUT.pt [IMAGES_DIR COUNT]".into());
    };
    tch::manual_seed(0);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = resnet18(&vs.root());
    vs.freeze();
    let example = Tensor::zeros([1, 3, 224, 224], (Kind::Float, Device::Cpu));
    let module = CModule::create_by_tracing("ResNet18", "forward", &[example], &mut |x| {
        vec![x[0].apply_t(&net, false)]
    })?;
    module.save(out)?;
    eprintln!("wrote {out}");
    if let (Some(dir), Some(count)) = (args.get(1), args.get(2)) {
        let count: usize = count.parse()?;
        std::fs::create_dir_all(dir)?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut bytes = 0u64;
        for i in 0..count {
            let path = std::path::Path::new(dir).join(format!("{i:06}.jpg"));
            let file = std::io::BufWriter::new(std::fs::File::create(&path)?);
            image::codecs::jpeg::JpegEncoder::new_with_quality(file, 90)
                .encode_image(&scene(&mut rng))?;
            bytes += std::fs::metadata(&path)?.len();
        }
        eprintln!(
            "wrote {count} JPEGs of 500x375 to {dir} (mean {:.0} KB)",
            bytes as f64 / count.max(1) as f64 / 1e3
        );
    }
    Ok(())
}
