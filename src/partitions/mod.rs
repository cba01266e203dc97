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
//! 0..64      header: magic b"PTSPART\0", version u32 (1 for sq8, 2 for pq4), metric u32, dim u32, partitions u32,
//!            rows u64, seed u64, code kind u32 (1 = sq8, 2 = pq4), zero u32, blocks u64 (pq4,
//!            else 0), zero padding
//!            centroids [ceil(partitions / 64), dim, 64] f32: the mean of each partition's stored
//!            vectors (unit norm for cos) in panels of 64 stored dimension-major (panel b,
//!            dimension j, lane l: centroid 64 b + l), zero past the last centroid
//!            centroid_sq_norms [partitions] f32: squared norm of each centroid (l2 only, else empty)
//!            offsets [partitions + 1] u32: partition j holds positions offsets[j]..offsets[j+1]
//!            order [rows] u32: the row at each position (a permutation of 0..rows)
//! sq8:       scale, offset [dim] f32 each: code c of dimension j stands for offset[j] + scale[j] c
//!            sq_norms [rows] f32: squared norm of each position's decoded code (l2 only, else empty)
//!            codes [rows, dim] i8: each position's code, partition after partition
//! pq4:       codebooks [ceil(dim / 2), 16, 2] f32: 16 points per pair of dimensions (pq.rs)
//!            block_starts [partitions + 1] u32: partition j's codes are blocks
//!            block_starts[j]..block_starts[j+1], ceil(its rows / 32) of them
//!            sq_norms [rows] f32: squared norm of each position's stored vector (l2 only)
//!            codes [blocks, tables, 16] u8: the 4-bit codes of each position's residual (its
//!            vector minus its partition's centroid) in blocks of 32 positions (pq.rs)
//! ```
//!
//! A search ranks the centroids, scans the codes of the `probes` nearest partitions (more when
//! they hold fewer than `k` rows), keeps the `ef` nearest by code and re-ranks them exactly on
//! the stored vectors, so scores are exact and the codes only choose the candidates. Rows stay the
//! user's: the order is applied to the results and never seen outside this module.

mod build;
mod pq;
mod shortlist;
mod view;

pub use build::build_partitions;
pub use view::Partitions;

use crate::error::{Error, Result};
use crate::format::{le_u32, le_u64, section_header, Metric};
use crate::score::simd::PANEL;
use std::collections::BTreeMap;

/// Magic bytes at the start of the section.
pub const MAGIC: [u8; 8] = *b"PTSPART\0";
/// Highest layout version this build reads. Version 1 holds `sq8` codes only; version 2 added
/// `pq4`. A section is written with the lowest version that holds its kind, so that builds
/// reading only version 1 still open `sq8` sections and refuse `pq4` ones as a later version.
pub const VERSION: u32 = 2;
/// Bytes of the section header.
pub const HEADER_LEN: usize = 64;
/// The codes a partitioned search scans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum CodeKind {
    /// One i8 per dimension with a per-dimension scale and offset (the graph's traversal
    /// codes): `dim` bytes a row, close enough that few rows need re-ranking. The faster kind
    /// where a query scans few partitions (clustered corpora).
    #[default]
    Sq8,
    /// 4 bits per pair of dimensions: the row's residual from its partition's centroid,
    /// product-quantised and scanned with byte-shuffle tables. A quarter of the bytes of
    /// [`CodeKind::Sq8`] and faster to scan, coarser, so more rows are re-ranked: the faster
    /// kind where a query scans many partitions.
    Pq4,
}

impl CodeKind {
    /// The kind's name (`sq8`, `pq4`).
    pub fn name(self) -> &'static str {
        match self {
            CodeKind::Sq8 => "sq8",
            CodeKind::Pq4 => "pq4",
        }
    }

    fn code(self) -> u32 {
        match self {
            CodeKind::Sq8 => 1,
            CodeKind::Pq4 => 2,
        }
    }

    /// The layout version that introduced the kind.
    fn version(self) -> u32 {
        match self {
            CodeKind::Sq8 => 1,
            CodeKind::Pq4 => 2,
        }
    }

    fn from_code(code: u32) -> Option<Self> {
        [CodeKind::Sq8, CodeKind::Pq4]
            .into_iter()
            .find(|k| k.code() == code)
    }
}

parse_by_name!(CodeKind, "partition code kind", { "sq8" => CodeKind::Sq8, "pq4" => CodeKind::Pq4 });

/// Construction parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Number of partitions, at least 1; `None` chooses `2 sqrt(rows)` (ScaNN's default number
    /// of leaves).
    pub partitions: Option<usize>,
    /// Seed of the k-means sample and seeding (and of the codebooks).
    pub seed: u64,
    /// The codes scanned.
    pub codes: CodeKind,
}

impl Default for Params {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Params {
    /// The defaults: `2 sqrt(rows)` partitions, seed 0, [`CodeKind::Sq8`] codes.
    pub const DEFAULT: Params = Params {
        partitions: None,
        seed: 0,
        codes: CodeKind::Sq8,
    };

    /// An error unless the parameters can be built: a number of partitions, when given, is at
    /// least 1.
    pub fn check(&self) -> Result<()> {
        match self.partitions {
            Some(0) => Err(Error::invalid(
                "the number of partitions must be at least 1",
            )),
            _ => Ok(()),
        }
    }

    /// The number of partitions for `rows` rows: the one asked for, or `2 sqrt(rows)`, at most
    /// one per row.
    pub fn partitions_for(&self, rows: usize) -> usize {
        let p = self
            .partitions
            .unwrap_or_else(|| (2.0 * (rows as f64).sqrt()).round() as usize);
        p.clamp(1, rows.max(1))
    }

    /// The parameters as recorded in the index metadata (`Meta.params`; the number made is in
    /// the section header).
    pub fn record(&self, params: &mut BTreeMap<String, String>) {
        let asked = self
            .partitions
            .map_or_else(|| "auto".to_string(), |p| p.to_string());
        params.insert("partitions".into(), asked);
        params.insert("partitions_seed".into(), self.seed.to_string());
        params.insert("partition_codes".into(), self.codes.name().into());
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
    /// The codes scanned.
    pub codes: CodeKind,
    /// Blocks of 4-bit codes ([`CodeKind::Pq4`]; 0 for [`CodeKind::Sq8`]).
    pub blocks: u64,
}

impl PartitionsHeader {
    /// The 64-byte header.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        for (at, v) in [
            (8, self.codes.version()),
            (12, self.metric.code()),
            (16, self.dim),
            (20, self.partitions),
            (40, self.codes.code()),
        ] {
            b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        for (at, v) in [(24, self.rows), (32, self.seed), (48, self.blocks)] {
            b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Parse and check the header fields that do not depend on the index.
    pub fn from_bytes(b: &[u8]) -> std::result::Result<Self, String> {
        let b = section_header::<HEADER_LEN>(b, &MAGIC)?;
        let (w, d) = (|at| le_u32(b, at), |at| le_u64(b, at));
        if !(1..=VERSION).contains(&w(8)) {
            return Err(format!(
                "partitions layout version {} (this build reads 1 to {VERSION})",
                w(8)
            ));
        }
        let codes = CodeKind::from_code(w(40))
            .filter(|c| c.version() <= w(8))
            .ok_or_else(|| format!("unknown code kind {} in layout version {}", w(40), w(8)))?;
        let metric =
            Metric::from_code(w(12)).ok_or_else(|| format!("unknown metric code {}", w(12)))?;
        let h = PartitionsHeader {
            metric,
            dim: w(16),
            partitions: w(20),
            rows: d(24),
            seed: d(32),
            codes,
            blocks: d(48),
        };
        if h.partitions == 0 || u64::from(h.partitions) > h.rows {
            return Err(format!("{} partitions for {} rows", h.partitions, h.rows));
        }
        // Each partition pads its last block: between rows / 32 and that plus one a partition.
        let least = h.rows.div_ceil(pq::BLOCK as u64);
        let blocks_ok = match codes {
            CodeKind::Sq8 => h.blocks == 0,
            CodeKind::Pq4 => (least..=least + u64::from(h.partitions)).contains(&h.blocks),
        };
        if !blocks_ok {
            return Err(format!("{} code blocks for {} rows", h.blocks, h.rows));
        }
        Ok(h)
    }

    /// Byte ranges of the regions after the header, in section order, and the section length;
    /// `None` on overflow.
    fn regions(&self) -> Option<(Regions, usize)> {
        let (p, dim) = (self.partitions as usize, self.dim as usize);
        let rows = usize::try_from(self.rows).ok()?;
        let l2 = self.metric == Metric::L2;
        let (quantiser, codes) = match self.codes {
            CodeKind::Sq8 => (
                [dim.checked_mul(4)?, dim.checked_mul(4)?],
                rows.checked_mul(dim)?,
            ),
            CodeKind::Pq4 => (
                [
                    pq::codebooks(dim) * pq::POINTS * pq::SUB * 4,
                    p.checked_add(1)?.checked_mul(4)?,
                ],
                usize::try_from(self.blocks)
                    .ok()?
                    .checked_mul(pq::block_bytes(dim))?,
            ),
        };
        let lens = [
            p.div_ceil(PANEL)
                .checked_mul(PANEL)?
                .checked_mul(dim)?
                .checked_mul(4)?,
            if l2 { p * 4 } else { 0 },
            p.checked_add(1)?.checked_mul(4)?,
            rows.checked_mul(4)?,
            quantiser[0],
            quantiser[1],
            if l2 { rows.checked_mul(4)? } else { 0 },
            codes,
        ];
        let mut at = HEADER_LEN;
        let mut ranges: [std::ops::Range<usize>; 8] = Default::default();
        for (r, len) in ranges.iter_mut().zip(lens) {
            *r = at..at.checked_add(len)?;
            at = r.end.checked_next_multiple_of(64)?;
        }
        let end = ranges[7].end;
        let [centroids, centroid_sq_norms, offsets, order, q0, q1, sq_norms, codes] = ranges;
        Some((
            Regions {
                centroids,
                centroid_sq_norms,
                offsets,
                order,
                quantiser: [q0, q1],
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
    /// sq8: the scale and the offset; pq4: the codebooks and the block starts.
    quantiser: [std::ops::Range<usize>; 2],
    sq_norms: std::ops::Range<usize>,
    codes: std::ops::Range<usize>,
}
