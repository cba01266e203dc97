//! The operands of the matrix kernels ([`super::MatrixKernel`]): vectors (corpus rows or
//! queries) in blocks of 16 over k-blocks of the kernel's format ([`super::bf16`]: 32 bf16
//! values; [`super::int8`]: 64 int8 codes), each block 1 KiB, the shape of an AMX tile, with the
//! per-vector scales and code sums of the int8 format.

use crate::store::Vectors;
use std::ops::Range;

/// Vectors (rows or queries) per operand block pair: kernels step over two blocks of 16.
pub const BLOCK: usize = 32;
/// 16-bit words of one block of 16 vectors over one k-block (1 KiB).
pub const BLOCK_WORDS: usize = 512;

/// Words of an operand of `n` vectors (a multiple of 16) over `kb` k-blocks.
pub fn operand_len(n: usize, kb: usize) -> usize {
    n / 16 * kb * BLOCK_WORDS
}

/// A packed operand.
#[derive(Debug, Default, Clone)]
pub struct Operand {
    /// The blocks, in the format's layout (bytes of int8 codes two to a word, little-endian).
    pub codes: Vec<u16>,
    /// Per vector: the scale of its codes (int8; empty for bf16).
    pub scales: Vec<f32>,
    /// Per vector: the sum of its codes (int8 rows; empty otherwise).
    pub sums: Vec<i32>,
    /// Per vector: an upper bound on the norm of its coding error `|x - s c|` (int8 rows;
    /// empty otherwise), for the error bound of each row.
    pub errors: Vec<f32>,
}

/// Whole blocks of an [`Operand`], as a kernel reads them.
#[derive(Debug, Clone, Copy)]
pub struct OperandRef<'a> {
    /// The blocks.
    pub codes: &'a [u16],
    /// Per vector scales (or empty).
    pub scales: &'a [f32],
    /// Per vector code sums (or empty).
    pub sums: &'a [i32],
}

impl Operand {
    /// Empties the operand and sizes it for `padded` vectors over `kb` k-blocks (codes zeroed;
    /// `scaled`: scales and sums zeroed too).
    pub fn reset(&mut self, padded: usize, kb: usize, scaled: bool) {
        self.codes.clear();
        self.codes.resize(operand_len(padded, kb), 0);
        let per_vector = if scaled { padded } else { 0 };
        self.scales.clear();
        self.scales.resize(per_vector, 0.0);
        self.sums.clear();
        self.sums.resize(per_vector, 0);
        self.errors.clear();
        self.errors.resize(per_vector, 0.0);
    }

    /// The operand's vectors `v` (whole blocks of 16) over `kb` k-blocks.
    pub fn view(&self, v: Range<usize>, kb: usize) -> OperandRef<'_> {
        let per_vector = |n: usize| if n == 0 { 0..0 } else { v.clone() };
        OperandRef {
            codes: &self.codes[operand_len(v.start, kb)..operand_len(v.end, kb)],
            scales: &self.scales[per_vector(self.scales.len())],
            sums: &self.sums[per_vector(self.sums.len())],
        }
    }

    /// The whole operand.
    pub fn all(&self) -> OperandRef<'_> {
        OperandRef {
            codes: &self.codes,
            scales: &self.scales,
            sums: &self.sums,
        }
    }
}

impl OperandRef<'_> {
    /// Vectors in the operand.
    pub fn len(&self, kb: usize) -> usize {
        self.codes.len() / (kb * BLOCK_WORDS) * 16
    }

    fn checked(self, kb: usize) -> Self {
        assert!(
            kb > 0 && self.codes.len().is_multiple_of(2 * kb * BLOCK_WORDS),
            "matrix kernel: operands are not whole pairs of blocks"
        );
        self
    }
}

/// Starts packing rows `x` (`[n, dim]`) as an operand of `padded` rows over k-blocks of `kblock`
/// dimensions: sizes `out` (`scaled`: with scales and sums) and empties `norms2`; returns `(n,
/// kblocks)`. Panics if `n > padded`.
pub fn start_pack(
    x: Vectors<'_>,
    (dim, kblock): (usize, usize),
    padded: usize,
    scaled: bool,
    out: &mut Operand,
    norms2: &mut Vec<f32>,
) -> (usize, usize) {
    let n = x.len() / dim.max(1);
    assert!(
        n <= padded,
        "matrix kernel: more rows than the operand holds"
    );
    let kb = dim.div_ceil(kblock);
    out.reset(padded, kb, scaled);
    norms2.clear();
    (n, kb)
}

/// Checks the operands and result of a kernel call and returns `(rows, queries)`; `scaled`:
/// the format needs every vector's scale, and the rows' code sums.
pub fn check(
    kb: usize,
    a: OperandRef<'_>,
    b: OperandRef<'_>,
    c: &[f32],
    scaled: bool,
) -> (usize, usize) {
    let (rows, queries) = (a.checked(kb).len(kb), b.checked(kb).len(kb));
    assert_eq!(c.len(), rows * queries, "matrix kernel: result size");
    if scaled {
        assert!(
            a.scales.len() == rows && a.sums.len() == rows && b.scales.len() == queries,
            "matrix kernel: scales or sums missing"
        );
    }
    (rows, queries)
}
