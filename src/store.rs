//! Memory-mapped views of an index file. Opening reads the header, the section table and the
//! metadata block, validates every offset, length and count against the file size, and makes
//! typed slices; it never touches vectors or graph pages, so it is O(1) in corpus size.

// Parsing code: no panics on data read from files.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use crate::error::{Error, IoContext, Result};
use crate::format::{
    self, DType, Header, Meta, Metric, SectionEntry, SectionKind, HEADER_LEN, MAX_CLASSES, MAX_DIM,
    MAX_SECTIONS, SECTION_ENTRY_LEN,
};
use half::f16;
use memmap2::Mmap;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Largest metadata block accepted.
const MAX_META_LEN: u64 = 16 << 20;

/// Borrowed view of the stored vectors.
#[derive(Debug, Clone, Copy)]
pub enum Vectors<'a> {
    /// Half-precision rows.
    F16(&'a [f16]),
    /// Single-precision rows.
    F32(&'a [f32]),
}

impl<'a> Vectors<'a> {
    /// Rows `rows` (of dimension `dim`) as a view of their own.
    /// Panics when the rows are out of range, like slice indexing.
    #[allow(clippy::indexing_slicing)]
    pub fn rows(&self, rows: std::ops::Range<usize>, dim: usize) -> Vectors<'a> {
        let r = rows.start * dim..rows.end * dim;
        match *self {
            Vectors::F16(v) => Vectors::F16(&v[r]),
            Vectors::F32(v) => Vectors::F32(&v[r]),
        }
    }

    /// Number of stored elements (rows x dim).
    pub fn len(&self) -> usize {
        match self {
            Vectors::F16(v) => v.len(),
            Vectors::F32(v) => v.len(),
        }
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copy row `i` (of dimension `dim`) into `out` as f32.
    /// Panics when the row is out of range, like slice indexing.
    #[allow(clippy::indexing_slicing)]
    pub fn row_into(&self, i: usize, dim: usize, out: &mut [f32]) {
        let r = i * dim..(i + 1) * dim;
        match self {
            Vectors::F16(v) => out.iter_mut().zip(&v[r]).for_each(|(o, x)| *o = x.to_f32()),
            Vectors::F32(v) => out.copy_from_slice(&v[r]),
        }
    }
}

/// How to open an index.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    /// Recompute every section checksum at open (reads the whole file).
    pub verify: bool,
}

/// An open, validated, memory-mapped index.
pub struct Index {
    path: PathBuf,
    map: Mmap,
    header: Header,
    meta: Meta,
    sections: BTreeMap<SectionKind, SectionEntry>,
    unknown: Vec<SectionEntry>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("path", &self.path)
            .field("meta", &self.meta)
            .finish()
    }
}

impl Index {
    /// Open and validate `path` (see [`OpenOptions`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, OpenOptions::default())
    }

    /// Open with options.
    pub fn open_with(path: impl AsRef<Path>, opts: OpenOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).at(&path)?;
        let len = file.metadata().at(&path)?.len();
        if len < HEADER_LEN as u64 {
            return Err(Error::corrupt(
                &path,
                "header",
                format!("file is {len} bytes, shorter than the {HEADER_LEN}-byte header"),
            ));
        }
        // SAFETY: the map is read-only and ptsel never modifies an index in place: writers build
        // a new file and rename it over the old one, so this mapping keeps seeing the old inode.
        // Another program truncating the file while it is mapped could raise SIGBUS; that is the
        // documented contract of `Index::open` (see docs/GUARANTEES.md).
        let map = unsafe { Mmap::map(&file) }.at(&path)?;
        let index = Self::from_map(path, map)?;
        if opts.verify {
            index.verify()?;
        }
        Ok(index)
    }

    fn from_map(path: PathBuf, map: Mmap) -> Result<Self> {
        let bytes: &[u8] = &map;
        let len = bytes.len() as u64;
        let corrupt = |section: &str, problem: String| Error::corrupt(&path, section, problem);
        let head: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt("header", "file shorter than the header".into()))?;
        let header = Header::from_bytes(head).map_err(|e| {
            let problem = match e {
                format::HeaderError::Magic => "not a ptsel index (bad magic bytes)",
                format::HeaderError::Endian => "written with the other byte order",
                format::HeaderError::Checksum => "header checksum mismatch",
            };
            corrupt("header", problem.into())
        })?;
        if !(format::OLDEST_SUPPORTED_VERSION..=format::FORMAT_VERSION).contains(&header.version) {
            return Err(Error::Version {
                path: path.clone(),
                found: header.version,
                oldest: format::OLDEST_SUPPORTED_VERSION,
                newest: format::FORMAT_VERSION,
            });
        }
        if header.file_len != len {
            return Err(corrupt(
                "header",
                format!(
                    "file is {len} bytes but the header says {} (truncated or appended to)",
                    header.file_len
                ),
            ));
        }
        if header.section_count > MAX_SECTIONS {
            return Err(corrupt(
                "section table",
                format!("{} sections (at most {MAX_SECTIONS})", header.section_count),
            ));
        }
        let table_len = u64::from(header.section_count) * SECTION_ENTRY_LEN as u64;
        let table = header
            .table_offset
            .checked_add(table_len)
            .filter(|&end| header.table_offset >= HEADER_LEN as u64 && end <= len)
            .and_then(|end| bytes.get(header.table_offset as usize..end as usize))
            .ok_or_else(|| {
                corrupt(
                    "section table",
                    format!(
                        "offset {} + {table_len} bytes lies outside the file",
                        header.table_offset
                    ),
                )
            })?;
        if format::checksum(table) != header.table_checksum {
            return Err(corrupt("section table", "checksum mismatch".into()));
        }
        let mut sections = BTreeMap::new();
        let mut unknown = Vec::new();
        for chunk in table.chunks_exact(SECTION_ENTRY_LEN) {
            let raw: &[u8; SECTION_ENTRY_LEN] = chunk
                .try_into()
                .map_err(|_| corrupt("section table", "short entry".into()))?;
            let e = SectionEntry::from_bytes(raw);
            let name = e.kind.name();
            let end = e.offset.checked_add(e.len);
            if !e.offset.is_multiple_of(format::ALIGN)
                || e.offset < HEADER_LEN as u64
                || end.is_none_or(|end| end > header.table_offset)
            {
                return Err(corrupt(
                    &name,
                    format!(
                        "offset {} length {} is misaligned or outside the data area",
                        e.offset, e.len
                    ),
                ));
            }
            if let SectionKind::Unknown(_) = e.kind {
                unknown.push(e);
            } else if sections.insert(e.kind, e).is_some() {
                return Err(corrupt(&name, "section appears twice".into()));
            }
        }
        let meta_entry = sections
            .get(&SectionKind::Meta)
            .ok_or_else(|| corrupt("meta", "missing".into()))?;
        if meta_entry.len > MAX_META_LEN {
            return Err(corrupt(
                "meta",
                format!("{} bytes (at most {MAX_META_LEN})", meta_entry.len),
            ));
        }
        let meta_bytes = slice_of(bytes, meta_entry)
            .ok_or_else(|| corrupt("meta", "outside the file".into()))?;
        if format::checksum(meta_bytes) != meta_entry.checksum {
            return Err(corrupt("meta", "checksum mismatch".into()));
        }
        let meta = Meta::decode(meta_bytes).map_err(|e| corrupt("meta", e))?;
        let index = Index {
            path,
            map,
            header,
            meta,
            sections,
            unknown,
        };
        index.validate_layout()?;
        Ok(index)
    }

    /// Check every known section's length against the metadata (no data pages are read).
    fn validate_layout(&self) -> Result<()> {
        let m = &self.meta;
        let corrupt = |section: &str, problem: String| Error::corrupt(&self.path, section, problem);
        if m.rows == 0 || m.rows > u64::from(u32::MAX - 1) {
            return Err(corrupt(
                "meta",
                format!("row count {} out of range 1..{}", m.rows, u32::MAX - 1),
            ));
        }
        if m.dim == 0 || m.dim > MAX_DIM {
            return Err(corrupt(
                "meta",
                format!("dimension {} out of range 1..={MAX_DIM}", m.dim),
            ));
        }
        if m.classes > MAX_CLASSES {
            return Err(corrupt(
                "meta",
                format!("{} classes (at most {MAX_CLASSES})", m.classes),
            ));
        }
        if !m.class_names.is_empty() && m.class_names.len() != m.classes as usize {
            return Err(corrupt(
                "meta",
                format!(
                    "{} class names for {} classes",
                    m.class_names.len(),
                    m.classes
                ),
            ));
        }
        let rows = m.rows;
        let dim = u64::from(m.dim);
        let classes = u64::from(m.classes);
        let expect =
            |kind: SectionKind, required: bool, elems: Option<u64>, elem: u64| -> Result<()> {
                match self.sections.get(&kind) {
                    None if required => Err(corrupt(&kind.name(), "missing".into())),
                    None => Ok(()),
                    Some(e) => match elems.and_then(|n| n.checked_mul(elem)) {
                        Some(want) if want == e.len => Ok(()),
                        want => Err(corrupt(
                            &kind.name(),
                            format!(
                                "{} bytes, expected {}",
                                e.len,
                                want.map_or("an impossible size".into(), |w| w.to_string())
                            ),
                        )),
                    },
                }
            };
        expect(
            SectionKind::Vectors,
            true,
            rows.checked_mul(dim),
            m.dtype.size(),
        )?;
        expect(SectionKind::Norms, true, Some(rows), 4)?;
        let labelled = m.classes > 0;
        expect(SectionKind::Labels, labelled, Some(rows), 4)?;
        expect(SectionKind::ClassCounts, labelled, Some(classes), 8)?;
        expect(
            SectionKind::ClassMeans,
            labelled,
            classes.checked_mul(dim),
            8,
        )?;
        if !labelled && self.sections.contains_key(&SectionKind::Labels) {
            return Err(corrupt(
                "labels",
                "present but the metadata says 0 classes".into(),
            ));
        }
        expect(SectionKind::IdsOffsets, m.has_ids, rows.checked_add(1), 8)?;
        if m.has_ids && !self.sections.contains_key(&SectionKind::IdsBlob) {
            return Err(corrupt("ids_blob", "missing".into()));
        }
        Ok(())
    }

    /// Recompute every section checksum (in parallel) and check that the padding between
    /// sections is zero, so that every byte of the file is covered; the first problem is an error.
    pub fn verify(&self) -> Result<()> {
        use rayon::prelude::*;
        let mut all: Vec<&SectionEntry> = self.sections.values().chain(&self.unknown).collect();
        all.sort_by_key(|e| e.offset);
        let mut covered = HEADER_LEN as u64;
        for e in all
            .iter()
            .map(|e| (e.offset, e.offset + e.len))
            .chain([(self.header.table_offset, self.header.table_offset)])
        {
            let (start, end) = e;
            if start < covered {
                return Err(Error::corrupt(
                    &self.path,
                    "section table",
                    format!("sections overlap at offset {start}"),
                ));
            }
            let gap = self
                .map
                .get(covered as usize..start as usize)
                .unwrap_or(&[]);
            if gap.iter().any(|&b| b != 0) {
                return Err(Error::corrupt(
                    &self.path,
                    "padding",
                    format!("non-zero bytes between offsets {covered} and {start}"),
                ));
            }
            covered = end;
        }
        all.par_iter().try_for_each(|e| {
            let bytes = slice_of(&self.map, e)
                .ok_or_else(|| Error::corrupt(&self.path, e.kind.name(), "outside the file"))?;
            let computed = format::checksum(bytes);
            if computed != e.checksum {
                return Err(Error::Checksum {
                    path: self.path.clone(),
                    section: e.kind.name(),
                    stored: e.checksum,
                    computed,
                });
            }
            Ok(())
        })
    }

    /// Path the index was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Metadata block.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Parsed header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.meta.rows as usize
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.meta.dim as usize
    }

    /// Search metric.
    pub fn metric(&self) -> Metric {
        self.meta.metric
    }

    /// Number of classes (0 when unlabelled).
    pub fn classes(&self) -> usize {
        self.meta.classes as usize
    }

    /// Every section, known kinds first, in table order within each group.
    pub fn sections(&self) -> Vec<SectionEntry> {
        let mut all: Vec<SectionEntry> = self
            .sections
            .values()
            .copied()
            .chain(self.unknown.iter().copied())
            .collect();
        all.sort_by_key(|e| e.offset);
        all
    }

    /// Raw bytes of the section of `entry` (one of [`Index::sections`], unknown kinds too).
    pub fn entry_bytes(&self, entry: &SectionEntry) -> Option<&[u8]> {
        slice_of(&self.map, entry)
    }

    /// Raw bytes of a known section, if present.
    pub fn section_bytes(&self, kind: SectionKind) -> Option<&[u8]> {
        self.sections
            .get(&kind)
            .and_then(|e| slice_of(&self.map, e))
    }

    fn pod<T: bytemuck::Pod>(&self, kind: SectionKind) -> Option<&[T]> {
        // Lengths were validated at open; offsets are 64-byte aligned in a page-aligned map.
        self.section_bytes(kind)
            .and_then(|b| bytemuck::try_cast_slice(b).ok())
    }

    /// The stored vectors, `[rows, dim]` row-major.
    pub fn vectors(&self) -> Vectors<'_> {
        match self.meta.dtype {
            DType::F16 => Vectors::F16(self.pod(SectionKind::Vectors).unwrap_or(&[])),
            DType::F32 => Vectors::F32(self.pod(SectionKind::Vectors).unwrap_or(&[])),
        }
    }

    /// L2 norms of the raw input vectors.
    pub fn norms(&self) -> &[f32] {
        self.pod(SectionKind::Norms).unwrap_or(&[])
    }

    /// Class label of every row, if the corpus is labelled. Values are not checked at open:
    /// use [`Index::label`] for a checked read.
    pub fn labels(&self) -> Option<&[u32]> {
        self.pod(SectionKind::Labels)
    }

    /// Checked class label of `row`: `Ok(None)` for an unlabelled row, an error when the stored
    /// value is out of range (a corrupted file).
    pub fn label(&self, row: usize) -> Result<Option<u32>> {
        let Some(labels) = self.labels() else {
            return Ok(None);
        };
        match labels.get(row).copied() {
            Some(format::NO_LABEL) => Ok(None),
            Some(l) if l < self.meta.classes => Ok(Some(l)),
            Some(l) => Err(Error::corrupt(
                &self.path,
                "labels",
                format!(
                    "row {row} has label {l} but there are {} classes",
                    self.meta.classes
                ),
            )),
            None => Err(Error::invalid(format!(
                "row {row} out of range ({} rows)",
                self.rows()
            ))),
        }
    }

    /// Samples per class.
    pub fn class_counts(&self) -> &[u64] {
        self.pod(SectionKind::ClassCounts).unwrap_or(&[])
    }

    /// Class means of the raw (unnormalised) features, `[classes, dim]` f64.
    pub fn class_means(&self) -> &[f64] {
        self.pod(SectionKind::ClassMeans).unwrap_or(&[])
    }

    /// Name of class `c`, when the index has class names.
    pub fn class_name(&self, c: usize) -> Option<&str> {
        self.meta.class_names.get(c).map(String::as_str)
    }

    /// Id of `row`: the stored string, or the row number when the index has no ids.
    pub fn id(&self, row: usize) -> Result<std::borrow::Cow<'_, str>> {
        if row >= self.rows() {
            return Err(Error::invalid(format!(
                "row {row} out of range ({} rows)",
                self.rows()
            )));
        }
        if !self.meta.has_ids {
            return Ok(row.to_string().into());
        }
        let bad = |problem: String| Error::corrupt(&self.path, "ids", problem);
        let offsets: &[u64] = self
            .pod(SectionKind::IdsOffsets)
            .ok_or_else(|| bad("offsets missing".into()))?;
        let blob = self
            .section_bytes(SectionKind::IdsBlob)
            .ok_or_else(|| bad("blob missing".into()))?;
        let (start, end) = match (offsets.get(row), offsets.get(row + 1)) {
            (Some(&s), Some(&e)) if s <= e && e <= blob.len() as u64 => (s as usize, e as usize),
            _ => {
                return Err(bad(format!(
                    "offsets of row {row} are out of order or outside the blob"
                )))
            }
        };
        let bytes = blob
            .get(start..end)
            .ok_or_else(|| bad(format!("row {row} outside the blob")))?;
        std::str::from_utf8(bytes)
            .map(Into::into)
            .map_err(|_| bad(format!("id of row {row} is not UTF-8")))
    }
}

fn slice_of<'a>(bytes: &'a [u8], e: &SectionEntry) -> Option<&'a [u8]> {
    let start = usize::try_from(e.offset).ok()?;
    let end = start.checked_add(usize::try_from(e.len).ok()?)?;
    bytes.get(start..end)
}
