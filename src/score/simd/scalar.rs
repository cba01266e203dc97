//! Portable kernels: the reference the SIMD ones are tested against, and the fallback.

use half::f16;

pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
pub fn dot_f16(a: &[f16], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x.to_f32() * y).sum()
}
pub fn l2_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}
pub fn l2_f16(a: &[f16], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x.to_f32() - y) * (x.to_f32() - y))
        .sum()
}
pub fn dot_norm_f32(a: &[f32], b: &[f32]) -> (f32, f32) {
    (dot_f32(a, b), dot_f32(a, a))
}
pub fn dot_norm_f16(a: &[f16], b: &[f32]) -> (f32, f32) {
    a.iter().zip(b).fold((0.0, 0.0), |(d, n), (x, y)| {
        let x = x.to_f32();
        (d + x * y, n + x * x)
    })
}
pub fn dot_i8_i16(a: &[i8], b: &[i16]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum()
}

pub fn reaches(s: &[f32], t: &[f32]) -> u64 {
    s.iter()
        .zip(t)
        .take(64)
        .enumerate()
        .filter(|(_, (s, t))| s >= t || s.is_nan())
        .fold(0, |m, (i, _)| m | 1 << i)
}

pub fn dot_i8_i16_rows(codes: &[i8], q: &[i16], out: &mut [i32]) {
    for (o, c) in out.iter_mut().zip(codes.chunks_exact(q.len().max(1))) {
        *o = dot_i8_i16(c, q);
    }
}

pub fn dot_panel(q: &[f32], panel: &[f32], out: &mut [f32; super::PANEL]) {
    *out = [0.0; super::PANEL];
    for (&x, p) in q.iter().zip(panel.chunks_exact(super::PANEL)) {
        out.iter_mut().zip(p).for_each(|(o, &v)| *o += x * v);
    }
}

pub fn sum_lut16(luts: &[u8], blocks: &[u8], out: &mut [u16]) {
    super::check_lut16(luts, blocks, out);
    for (block, out) in blocks
        .chunks_exact(luts.len().max(1))
        .zip(out.chunks_exact_mut(32))
    {
        out.fill(0);
        for (codes, lut) in block.chunks_exact(16).zip(luts.chunks_exact(16)) {
            for (i, &c) in codes.iter().enumerate() {
                out[i] = out[i].wrapping_add(u16::from(lut[usize::from(c & 15)]));
                out[16 + i] = out[16 + i].wrapping_add(u16::from(lut[usize::from(c >> 4)]));
            }
        }
    }
}

pub const MR: usize = 4;
pub const NR: usize = 16;

pub fn tile(
    kc: usize,
    q: &[f32],
    ldq: usize,
    panel: &[f32],
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    super::check_tile((MR, NR), kc, q, ldq, panel, c, ldc);
    let mut s = [[0.0f32; NR]; MR];
    for (k, p) in panel.chunks_exact(NR).take(kc).enumerate() {
        for (i, si) in s.iter_mut().enumerate() {
            let a = q[i * ldq + k];
            si.iter_mut()
                .zip(p)
                .for_each(|(s, &b)| *s = a.mul_add(b, *s));
        }
    }
    for (i, si) in s.iter().enumerate() {
        let row = &mut c[i * ldc..i * ldc + NR];
        if accumulate {
            row.iter_mut().zip(si).for_each(|(c, s)| *c += s);
        } else {
            row.copy_from_slice(si);
        }
    }
}
