//! Partitioned search (an inverted file, "IVF"): the rows split into partitions by spherical
//! k-means, each partition's traversal codes stored contiguously, and a query scanning the
//! partitions whose centroids are nearest to it.
//!
//! A graph walks from node to node and pays a cache miss for nearly every row it measures; a
//! partition is scanned as one contiguous run of codes. On corpora that fall into clusters (the
//! features of a labelled pre-training set; `benches/gen_data.py`'s data) a query's neighbours
//! lie in few partitions, and scanning them beats walking the graph; on corpora without that
//! structure the graph is the better choice. Both can live in one index: [`crate::build`] writes
//! this section when [`crate::BuildOptions::partitions`] is set, `ptsel partition` adds it to a
//! built index, and a search picks it with [`crate::SearchOpts::probes`].
//!
//! The section (kind [`SectionKind::Partitions`]), every region starting on a 64-byte boundary
//! of the section:
//!
//! ```text
//! 0..64      header: magic b"PTSPART\0", version u32 (1), metric u32, dim u32, partitions u32,
//!            rows u64, seed u64, code kind u32 (1 = sq8), zero padding
//!            centroids [ceil(partitions / 64), dim, 64] f32: the mean of each partition's stored
//!            vectors (unit norm for cos) in panels of 64 stored dimension-major (panel b,
//!            dimension j, lane l: centroid 64 b + l), zero past the last centroid
//!            centroid_sq_norms [partitions] f32: squared norm of each centroid (l2 only, else empty)
//!            offsets [partitions + 1] u32: partition j holds positions offsets[j]..offsets[j+1]
//!            order [rows] u32: the row at each position (a permutation of 0..rows)
//!            scale, offset [dim] f32 each: code c of dimension j stands for offset[j] + scale[j] c
//!            sq_norms [rows] f32: squared norm of each position's decoded code (l2 only, else empty)
//!            codes [rows, dim] i8: each position's code, partition after partition
//! ```
//!
//! A search ranks the centroids, scans the codes of the `probes` nearest partitions (more when
//! they hold fewer than `k` rows), keeps the `ef` nearest by code and re-ranks them exactly on
//! the stored vectors, so scores are exact and the codes only choose the candidates. Rows stay the
//! user's: the order is applied to the results and never seen outside this module.

mod build;
mod view;

pub use build::build_partitions;
pub use view::Partitions;

use crate::format::Metric;
use crate::score::simd::PANEL;
use std::collections::BTreeMap;

/// Magic bytes at the start of the section.
pub const MAGIC: [u8; 8] = *b"PTSPART\0";
/// Layout version written by this build.
pub const VERSION: u32 = 1;
/// Bytes of the section header.
pub const HEADER_LEN: usize = 64;
/// Code kind: one i8 per dimension with a per-dimension scale and offset.
const CODE_SQ8: u32 = 1;

/// Construction parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params {
    /// Number of partitions; 0 chooses `2 sqrt(rows)` (ScaNN's default number of leaves).
    pub partitions: usize,
    /// Seed of the k-means sample and seeding.
    pub seed: u64,
}

impl Params {
    /// The number of partitions for `rows` rows: the one asked for, or `2 sqrt(rows)`, at most
    /// one per row.
    pub fn partitions_for(&self, rows: usize) -> usize {
        let p = match self.partitions {
            0 => (2.0 * (rows as f64).sqrt()).round() as usize,
            p => p,
        };
        p.clamp(1, rows.max(1))
    }

    /// The parameters as recorded in the index metadata (`Meta.params`; the number made is in
    /// the section header).
    pub fn record(&self, params: &mut BTreeMap<String, String>) {
        let asked = match self.partitions {
            0 => "auto".to_string(),
            p => p.to_string(),
        };
        params.insert("partitions".into(), asked);
        params.insert("partitions_seed".into(), self.seed.to_string());
    }
}

/// The fields of the section header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionsHeader {
    /// Metric the partitions were made for (the index's).
    pub metric: Metric,
    /// Vector dimension.
    pub dim: u32,
    /// Number of partitions.
    pub partitions: u32,
    /// Rows covered (the index's).
    pub rows: u64,
    /// Seed of the k-means.
    pub seed: u64,
}

impl PartitionsHeader {
    /// The 64-byte header.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        for (at, v) in [
            (8, VERSION),
            (12, self.metric.code()),
            (16, self.dim),
            (20, self.partitions),
            (40, CODE_SQ8),
        ] {
            b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        b[24..32].copy_from_slice(&self.rows.to_le_bytes());
        b[32..40].copy_from_slice(&self.seed.to_le_bytes());
        b
    }

    /// Parse and check the header fields that do not depend on the index.
    pub fn from_bytes(b: &[u8]) -> std::result::Result<Self, String> {
        let b: &[u8; HEADER_LEN] = b
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or("section shorter than its header")?;
        if b[0..8] != MAGIC {
            return Err("bad magic bytes".into());
        }
        let w = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let d = |at: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(x)
        };
        if w(8) != VERSION {
            return Err(format!(
                "partitions layout version {} (this build reads {VERSION})",
                w(8)
            ));
        }
        if w(40) != CODE_SQ8 {
            return Err(format!("unknown code kind {}", w(40)));
        }
        let metric =
            Metric::from_code(w(12)).ok_or_else(|| format!("unknown metric code {}", w(12)))?;
        let h = PartitionsHeader {
            metric,
            dim: w(16),
            partitions: w(20),
            rows: d(24),
            seed: d(32),
        };
        if h.partitions == 0 || u64::from(h.partitions) > h.rows {
            return Err(format!("{} partitions for {} rows", h.partitions, h.rows));
        }
        Ok(h)
    }

    /// Byte ranges of the regions after the header, in section order, and the section length;
    /// `None` on overflow.
    fn regions(&self) -> Option<(Regions, usize)> {
        let (p, dim) = (self.partitions as usize, self.dim as usize);
        let rows = usize::try_from(self.rows).ok()?;
        let norms = if self.metric == Metric::L2 { rows } else { 0 };
        let panels = p.div_ceil(PANEL);
        let lens = [
            panels
                .checked_mul(PANEL)?
                .checked_mul(dim)?
                .checked_mul(4)?,
            if self.metric == Metric::L2 { p * 4 } else { 0 },
            p.checked_add(1)?.checked_mul(4)?,
            rows.checked_mul(4)?,
            dim.checked_mul(4)?,
            dim.checked_mul(4)?,
            norms.checked_mul(4)?,
            rows.checked_mul(dim)?,
        ];
        let mut at = HEADER_LEN;
        let mut ranges = [0..0, 0..0, 0..0, 0..0, 0..0, 0..0, 0..0, 0..0];
        for (r, len) in ranges.iter_mut().zip(lens) {
            *r = at..at.checked_add(len)?;
            at = r.end.checked_next_multiple_of(64)?;
        }
        let end = ranges[7].end;
        let [centroids, centroid_sq_norms, offsets, order, scale, offset, sq_norms, codes] = ranges;
        Some((
            Regions {
                centroids,
                centroid_sq_norms,
                offsets,
                order,
                scale,
                offset,
                sq_norms,
                codes,
            },
            end,
        ))
    }
}

/// Byte ranges of a section's regions.
struct Regions {
    centroids: std::ops::Range<usize>,
    centroid_sq_norms: std::ops::Range<usize>,
    offsets: std::ops::Range<usize>,
    order: std::ops::Range<usize>,
    scale: std::ops::Range<usize>,
    offset: std::ops::Range<usize>,
    sq_norms: std::ops::Range<usize>,
    codes: std::ops::Range<usize>,
}
