//! torchvision's standard evaluation transform, on images decoded by the `image` crate:
//!
//! ```text
//! Resize(resize) -> CenterCrop(crop) -> ToTensor() -> Normalize(IMAGENET_MEAN, IMAGENET_STD)
//! ```
//!
//! - decoding: by content (JPEG, PNG, WebP), then RGB with 8 bits per channel (an alpha channel
//!   is dropped, grey is replicated: PIL's `convert("RGB")`); EXIF orientation is ignored, as PIL
//!   ignores it;
//! - resize: the shorter side becomes `resize`, the longer `int(resize * long / short)` (truncated,
//!   as torchvision computes it). The filter is the triangle (bilinear) kernel with half-pixel
//!   centres whose support is widened by the scale factor when shrinking, the antialiased
//!   bilinear of PIL and of torchvision's `antialias=True`: output pixel `x` averages input pixels
//!   `i` with weights `max(0, 1 - |i + 0.5 - (x + 0.5) * s| / max(s, 1))`, `s = in / out`,
//!   normalised to sum 1 (clipped at the borders). As in PIL, the width is resized first and
//!   rounded to 8 bits, then the height (`image::imageops::resize` with `FilterType::Triangle`,
//!   once per axis). PIL's weights are fixed-point, so a value may still differ by one level:
//!   over 50 PNGs (scripts/compare-preprocess.py) 0.01% of values did, none by more; over
//!   40 JPEGs 1.2% did and 0.004% by two (zune-jpeg and libjpeg-turbo decode a few pixels
//!   apart);
//! - centre crop: top-left at `int(round((side - crop) / 2))`, Python's `round` (ties to even);
//! - `ToTensor` + `Normalize`: `(v / 255 - mean[c]) / std[c]` in f32, channels first (CHW).

use super::{IMAGENET_MEAN, IMAGENET_STD};
use crate::error::{Error, IoContext, Result};
use image::imageops::FilterType;
use image::RgbImage;
use std::path::Path;

/// Most pixels a resized image may have (an extremely elongated input would otherwise allocate
/// gigabytes before the crop).
const MAX_RESIZED_PIXELS: u64 = 1 << 26;

/// Size `(width, height)` after resizing the shorter side to `size` (torchvision's
/// `_compute_resized_output_size`: the longer side is `int(size * long / short)`).
pub fn resized_dims(width: u32, height: u32, size: u32) -> (u32, u32) {
    let long_side =
        |long: u32, short: u32| (f64::from(size) * f64::from(long) / f64::from(short)) as u32;
    if width <= height {
        (size, long_side(height, width))
    } else {
        (long_side(width, height), size)
    }
}

/// Offset of a centre crop of `crop` pixels along a side of `side` pixels: torchvision's
/// `int(round((side - crop) / 2.0))`, where Python rounds ties to even.
pub fn crop_offset(side: u32, crop: u32) -> u32 {
    (f64::from(side.saturating_sub(crop)) / 2.0).round_ties_even() as u32
}

/// Read and decode the image at `path` (format from its content) as 8-bit RGB.
pub fn decode(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).at(path)?;
    let img = image::load_from_memory(&bytes)
        .map_err(|e| Error::input(path, format!("cannot decode image: {e}")))?;
    Ok(img.into_rgb8())
}

/// Apply the evaluation transform to `img`, writing `3 * crop * crop` values (CHW) to `out`.
/// `resize >= crop` (checked by [`EmbedOptions::validate`](super::EmbedOptions::validate)).
pub fn preprocess(img: &RgbImage, resize: u32, crop: u32, out: &mut [f32]) -> Result<()> {
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return Err(Error::invalid("image has no pixels"));
    }
    let (rw, rh) = resized_dims(w, h, resize);
    if u64::from(rw) * u64::from(rh) > MAX_RESIZED_PIXELS {
        return Err(Error::invalid(format!(
            "a {w}x{h} image resized to {rw}x{rh} is too elongated"
        )));
    }
    let plane = (crop as usize) * (crop as usize);
    if out.len() != 3 * plane || rw < crop || rh < crop {
        return Err(Error::invalid(format!(
            "cannot crop {crop}x{crop} from {rw}x{rh} into {} values",
            out.len()
        )));
    }
    // Width first, rounded to 8 bits, then height: PIL's order and intermediate rounding. (A
    // resize that keeps one side runs an identity pass along it.)
    let wide = image::imageops::resize(img, rw, h, FilterType::Triangle);
    let resized = image::imageops::resize(&wide, rw, rh, FilterType::Triangle);
    let (left, top) = (crop_offset(rw, crop), crop_offset(rh, crop));
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    let scale = |v: u8, c: usize| (f32::from(v) / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
    let mut i = 0;
    for y in top..top + crop {
        for x in left..left + crop {
            let p = resized.get_pixel(x, y).0;
            r[i] = scale(p[0], 0);
            g[i] = scale(p[1], 1);
            b[i] = scale(p[2], 2);
            i += 1;
        }
    }
    Ok(())
}

/// [`decode`] then [`preprocess`]; errors name `path`.
pub fn load(path: &Path, resize: u32, crop: u32, out: &mut [f32]) -> Result<()> {
    let img = decode(path)?;
    preprocess(&img, resize, crop, out).map_err(|e| Error::input(path, e.to_string()))
}
