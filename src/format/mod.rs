//! The on-disk layout of a `.ptsel` index: one file, used in place through a memory map.
//!
//! ```text
//! offset 0   Header (64 bytes, little-endian)
//!            0..8    magic  b"PTSELIDX"
//!            8..12   format version (u32)
//!            12..16  endianness tag 0x0A0B0C0D (u32; reads back differently on a big-endian writer)
//!            16..24  offset of the section table (u64)
//!            24..28  number of sections (u32, at most MAX_SECTIONS)
//!            28..32  reserved, zero
//!            32..40  total file length in bytes (u64; a truncated file is caught at open)
//!            40..48  xxh3-64 of the section table bytes
//!            48..56  reserved, zero
//!            56..64  xxh3-64 of bytes 0..56
//! offset 64  sections, each starting on a 64-byte boundary, zero padding between them
//! ...        section table: `count` entries of 40 bytes
//!            kind u32, flags u32 (reserved), offset u64, length u64, xxh3-64 of the bytes u64,
//!            reserved u64
//! ```
//!
//! Rules: all integers and floats are little-endian; matrices are row-major; a section is used
//! in place with no parsing, so its offset is 64-byte aligned. Readers skip section kinds they do
//! not know (later versions add sections without a format break) but reject duplicates of known
//! ones. Every offset and length is checked against the file length with checked arithmetic
//! before any slice is made. The metadata section is serialised with `bincode` 2 (serde,
//! standard configuration, size-limited when decoding).

// Parsing code: no panics on data read from files.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod header;
mod meta;
mod stale;
mod writer;

pub(crate) use header::{le_u32, le_u64, section_header};
pub use header::{
    Header, HeaderError, SectionEntry, SectionKind, HEADER_LEN, MAX_SECTIONS, SECTION_ENTRY_LEN,
};
pub use meta::{DType, Meta, Metric, NO_LABEL};
pub use writer::{IndexWriter, SectionSink};

/// Largest vector dimension accepted.
pub const MAX_DIM: u32 = 1 << 16;
/// Largest number of classes accepted.
pub const MAX_CLASSES: u32 = 1 << 24;
/// Magic bytes at offset 0.
pub const MAGIC: [u8; 8] = *b"PTSELIDX";
/// Format version written by this build.
pub const FORMAT_VERSION: u32 = 1;
/// Oldest format version this build reads.
pub const OLDEST_SUPPORTED_VERSION: u32 = 1;
/// Alignment of every section.
pub const ALIGN: u64 = 64;
/// Endianness tag stored at offset 12.
pub const ENDIAN_TAG: u32 = 0x0A0B_0C0D;

/// 64-bit checksum used for the header, the table and every section.
pub fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// Round `x` up to the next multiple of [`ALIGN`]; `None` on overflow.
pub fn align_up(x: u64) -> Option<u64> {
    x.checked_add(ALIGN - 1).map(|v| v & !(ALIGN - 1))
}
