//! The fixed header and the section table (see the module docs of [`crate::format`]).

use super::{checksum, ENDIAN_TAG, MAGIC};

/// Length of the fixed header.
pub const HEADER_LEN: usize = 64;
/// Length of one section-table entry.
pub const SECTION_ENTRY_LEN: usize = 40;
/// Upper bound on the number of sections a reader accepts (a hostile count is refused early).
pub const MAX_SECTIONS: u32 = 256;

/// What a section holds. Unknown kinds read as [`SectionKind::Unknown`] and are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SectionKind {
    /// bincode-serialised [`super::Meta`].
    Meta,
    /// `[rows, dim]` f16 or f32 vectors.
    Vectors,
    /// `[rows]` f32 L2 norms of the raw (unnormalised) input vectors.
    Norms,
    /// `[rows]` u32 class labels, [`super::NO_LABEL`] for none.
    Labels,
    /// `[classes]` u64 samples per class.
    ClassCounts,
    /// `[classes, dim]` f64 means of the raw (unnormalised) vectors of each class.
    ClassMeans,
    /// `[rows + 1]` u64 byte offsets into [`SectionKind::IdsBlob`].
    IdsOffsets,
    /// UTF-8 bytes of all ids, concatenated.
    IdsBlob,
    /// HNSW graph (layout in [`crate::hnsw`]).
    Hnsw,
    /// `[k, dim]` f32 unit-norm k-means centroids.
    KmeansCentroids,
    /// `[rows]` u32 k-means assignment of each row.
    KmeansAssign,
    /// `[k, dim]` f64 means of the raw (unnormalised) vectors of each k-means cluster.
    KmeansMeans,
    /// Partitioned (IVF) search structure (layout in [`crate::partitions`]).
    Partitions,
    /// A kind this build does not know; skipped by readers.
    Unknown(u32),
}

impl SectionKind {
    /// Numeric code stored in the table.
    pub fn code(self) -> u32 {
        match self {
            SectionKind::Meta => 1,
            SectionKind::Vectors => 2,
            SectionKind::Norms => 3,
            SectionKind::Labels => 4,
            SectionKind::ClassCounts => 5,
            SectionKind::ClassMeans => 6,
            SectionKind::IdsOffsets => 7,
            SectionKind::IdsBlob => 8,
            SectionKind::Hnsw => 16,
            SectionKind::KmeansCentroids => 17,
            SectionKind::KmeansAssign => 18,
            SectionKind::Partitions => 19,
            SectionKind::KmeansMeans => 20,
            SectionKind::Unknown(c) => c,
        }
    }

    /// Kind for a numeric code.
    pub fn from_code(code: u32) -> Self {
        match code {
            1 => SectionKind::Meta,
            2 => SectionKind::Vectors,
            3 => SectionKind::Norms,
            4 => SectionKind::Labels,
            5 => SectionKind::ClassCounts,
            6 => SectionKind::ClassMeans,
            7 => SectionKind::IdsOffsets,
            8 => SectionKind::IdsBlob,
            16 => SectionKind::Hnsw,
            17 => SectionKind::KmeansCentroids,
            18 => SectionKind::KmeansAssign,
            19 => SectionKind::Partitions,
            20 => SectionKind::KmeansMeans,
            c => SectionKind::Unknown(c),
        }
    }

    /// Human-readable name used in errors and `info`.
    pub fn name(self) -> String {
        match self {
            SectionKind::Meta => "meta".into(),
            SectionKind::Vectors => "vectors".into(),
            SectionKind::Norms => "norms".into(),
            SectionKind::Labels => "labels".into(),
            SectionKind::ClassCounts => "class_counts".into(),
            SectionKind::ClassMeans => "class_means".into(),
            SectionKind::IdsOffsets => "ids_offsets".into(),
            SectionKind::IdsBlob => "ids_blob".into(),
            SectionKind::Hnsw => "hnsw".into(),
            SectionKind::KmeansCentroids => "kmeans_centroids".into(),
            SectionKind::KmeansAssign => "kmeans_assign".into(),
            SectionKind::Partitions => "partitions".into(),
            SectionKind::KmeansMeans => "kmeans_means".into(),
            SectionKind::Unknown(c) => format!("unknown({c})"),
        }
    }
}

/// One entry of the section table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionEntry {
    /// What the section holds.
    pub kind: SectionKind,
    /// Byte offset from the start of the file (64-byte aligned).
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// xxh3-64 of the section bytes.
    pub checksum: u64,
}

impl SectionEntry {
    /// Serialise to the 40-byte table form.
    pub fn to_bytes(&self) -> [u8; SECTION_ENTRY_LEN] {
        let mut b = [0u8; SECTION_ENTRY_LEN];
        b[0..4].copy_from_slice(&self.kind.code().to_le_bytes());
        b[8..16].copy_from_slice(&self.offset.to_le_bytes());
        b[16..24].copy_from_slice(&self.len.to_le_bytes());
        b[24..32].copy_from_slice(&self.checksum.to_le_bytes());
        b
    }

    /// Parse the 40-byte table form (no validation of the values).
    pub fn from_bytes(b: &[u8; SECTION_ENTRY_LEN]) -> Self {
        SectionEntry {
            kind: SectionKind::from_code(le_u32(b, 0)),
            offset: le_u64(b, 8),
            len: le_u64(b, 16),
            checksum: le_u64(b, 24),
        }
    }
}

/// The fixed 64-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Format version.
    pub version: u32,
    /// Offset of the section table.
    pub table_offset: u64,
    /// Number of sections.
    pub section_count: u32,
    /// Total file length.
    pub file_len: u64,
    /// xxh3-64 of the table bytes.
    pub table_checksum: u64,
}

/// Why a header could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Not a ptsel file.
    Magic,
    /// Written on a machine of the other endianness.
    Endian,
    /// The header checksum does not match.
    Checksum,
}

impl Header {
    /// Serialise, computing the header checksum.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&ENDIAN_TAG.to_le_bytes());
        b[16..24].copy_from_slice(&self.table_offset.to_le_bytes());
        b[24..28].copy_from_slice(&self.section_count.to_le_bytes());
        b[32..40].copy_from_slice(&self.file_len.to_le_bytes());
        b[40..48].copy_from_slice(&self.table_checksum.to_le_bytes());
        let sum = checksum(&b[0..56]);
        b[56..64].copy_from_slice(&sum.to_le_bytes());
        b
    }

    /// Parse and check magic, endianness and the header checksum.
    pub fn from_bytes(b: &[u8; HEADER_LEN]) -> Result<Self, HeaderError> {
        if b[0..8] != MAGIC {
            return Err(HeaderError::Magic);
        }
        if le_u32(b, 12) != ENDIAN_TAG {
            return Err(HeaderError::Endian);
        }
        if le_u64(b, 56) != checksum(&b[0..56]) {
            return Err(HeaderError::Checksum);
        }
        Ok(Header {
            version: le_u32(b, 8),
            table_offset: le_u64(b, 16),
            section_count: le_u32(b, 24),
            file_len: le_u64(b, 32),
            table_checksum: le_u64(b, 40),
        })
    }
}

/// The header of a section (its first `N` bytes) when the section is that long and starts with
/// `magic`: where every section's header parser starts.
pub(crate) fn section_header<'b, const N: usize>(
    b: &'b [u8],
    magic: &[u8; 8],
) -> std::result::Result<&'b [u8; N], String> {
    let b: &[u8; N] = b
        .get(..N)
        .and_then(|h| h.try_into().ok())
        .ok_or("section shorter than its header")?;
    match b.get(..8) {
        Some(m) if m == magic => Ok(b),
        _ => Err("bad magic bytes".into()),
    }
}

/// The little-endian u32 at `at` of a header.
pub(crate) fn le_u32<const N: usize>(b: &[u8; N], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

/// The little-endian u64 at `at` of a header.
pub(crate) fn le_u64<const N: usize>(b: &[u8; N], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_detects_flips() {
        let h = Header {
            version: 1,
            table_offset: 4096,
            section_count: 7,
            file_len: 5000,
            table_checksum: 42,
        };
        let b = h.to_bytes();
        assert_eq!(Header::from_bytes(&b), Ok(h));
        for i in 0..HEADER_LEN {
            let mut c = b;
            c[i] ^= 0x10;
            assert!(
                Header::from_bytes(&c).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn entry_round_trips() {
        let e = SectionEntry {
            kind: SectionKind::Unknown(999),
            offset: 128,
            len: 7,
            checksum: u64::MAX,
        };
        assert_eq!(SectionEntry::from_bytes(&e.to_bytes()), e);
        for code in 0..32 {
            assert_eq!(SectionKind::from_code(code).code(), code);
        }
    }
}
