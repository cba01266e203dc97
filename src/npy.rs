//! Reading and writing NumPy `.npy` files. Headers are parsed with `npyz`; the data of large
//! float matrices is then read in blocks straight from the file and converted to f32, so a
//! corpus streams through with one block in memory. In-memory files (data embedded in a
//! binary) go through the same checks.

// Parsing code: no panics on data read from files.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use crate::error::{Error, IoContext, Result};
use half::f16;
use npyz::{DType as NpyDType, Endianness, TypeChar, WriterBuilder};
use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek};
use std::path::{Path, PathBuf};

/// Element types accepted for feature matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatType {
    /// `<f2`
    F16,
    /// `<f4`
    F32,
    /// `<f8`
    F64,
}

impl FloatType {
    fn size(self) -> usize {
        match self {
            FloatType::F16 => 2,
            FloatType::F32 => 4,
            FloatType::F64 => 8,
        }
    }
}

/// Where .npy bytes come from: a buffered file or an in-memory copy.
type Source = Box<dyn ReadSeek>;

/// A readable, seekable byte source (seeking skips the rows before a shard).
trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// Parsed header of an .npy file and the reader positioned at its data.
struct Opened {
    shape: Vec<u64>,
    type_char: TypeChar,
    size: u64,
    /// Length of the whole file in bytes.
    len: u64,
    reader: Source,
}

/// Largest .npy header accepted (numpy writes a few hundred bytes).
const MAX_HEADER_LEN: u64 = 1 << 20;

/// Screen the header before `npyz` parses it: a hostile file can claim a 4 GiB header (npyz
/// allocates it) or nest brackets deeply (its Python-literal parser then backtracks for
/// minutes). Headers of the plain dtypes ptsel reads have no lists and nest two levels deep.
fn screen_header(path: &Path, file: &mut (impl Read + Seek), file_len: u64) -> Result<()> {
    use std::io::SeekFrom;
    let bad = |problem: String| {
        Err(Error::input(
            path,
            format!("not a readable .npy file: {problem}"),
        ))
    };
    let mut pre = Vec::with_capacity(12);
    (&mut *file).take(12).read_to_end(&mut pre).at(path)?;
    let (len, start) = match pre.as_slice() {
        [_, _, _, _, _, _, 1, _, a, b, ..] => (u64::from(u16::from_le_bytes([*a, *b])), 10),
        [_, _, _, _, _, _, 2 | 3, _, a, b, c, d] => {
            (u64::from(u32::from_le_bytes([*a, *b, *c, *d])), 12)
        }
        // Too short or an unknown version: npyz reports it.
        _ => return file.rewind().at(path),
    };
    if len > MAX_HEADER_LEN || len > file_len {
        return bad(format!(
            "header claims {len} bytes in a {file_len}-byte file"
        ));
    }
    file.seek(SeekFrom::Start(start)).at(path)?;
    let mut header = Vec::new();
    (&mut *file).take(len).read_to_end(&mut header).at(path)?;
    file.rewind().at(path)?;
    let (mut depth, mut deepest) = (0usize, 0usize);
    for &c in &header {
        match c {
            b'[' => return bad("structured or nested dtypes are not supported".into()),
            b'(' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b')' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > 2 {
        return bad(format!("header nests brackets {deepest} deep"));
    }
    Ok(())
}

fn open_npy(path: &Path) -> Result<Opened> {
    let mut file = File::open(path).at(path)?;
    let len = file.metadata().at(path)?.len();
    screen_header(path, &mut file, len)?;
    parse_npy(path, BufReader::with_capacity(1 << 20, file), len)
}

/// `bytes` as an .npy file; `origin` names it in errors.
fn open_npy_bytes(origin: &Path, bytes: &[u8]) -> Result<Opened> {
    let mut cursor = Cursor::new(bytes.to_vec());
    let len = bytes.len() as u64;
    screen_header(origin, &mut cursor, len)?;
    parse_npy(origin, cursor, len)
}

/// An [`Error::Input`] naming `origin` and the first non-finite value of `rows` (`dim` values
/// each, the first being row `first_row` of the input): features must be finite.
pub fn check_finite(origin: &Path, first_row: usize, dim: usize, rows: &[f32]) -> Result<()> {
    match rows.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        Some((bad, x)) => Err(Error::input(
            origin,
            format!(
                "row {} column {} is {x} (features must be finite)",
                first_row + bad / dim,
                bad % dim
            ),
        )),
        None => Ok(()),
    }
}

/// A read error of the .npy `path`: a problem of its content (it ends early, its header does
/// not parse) as [`Error::Input`] saying `what`, any other as the [`Error::Io`] it is.
fn content_or_io(path: &Path, e: std::io::Error, what: &str) -> Error {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData => {
            Error::input(path, format!("{what}: {e}"))
        }
        _ => Error::io(path, e),
    }
}

/// Parses the header of a screened .npy of `len` bytes read from the start by `reader`.
fn parse_npy(path: &Path, reader: impl Read + Seek + Send + 'static, len: u64) -> Result<Opened> {
    let npy = npyz::NpyFile::new(reader)
        .map_err(|e| content_or_io(path, e, "not a readable .npy file"))?;
    if npy.order() != npyz::Order::C {
        return Err(Error::input(
            path,
            "Fortran-order arrays are not supported; save with np.ascontiguousarray",
        ));
    }
    let NpyDType::Plain(ts) = npy.dtype() else {
        return Err(Error::input(path, "structured dtypes are not supported"));
    };
    let little = matches!(ts.endianness(), Endianness::Little | Endianness::Irrelevant);
    if !little && ts.size_field() > 1 {
        return Err(Error::input(
            path,
            format!("big-endian dtype {ts} is not supported"),
        ));
    }
    let shape = npy.shape().to_vec();
    Ok(Opened {
        shape,
        type_char: ts.type_char(),
        size: ts.size_field(),
        len,
        reader: Box::new(npy.into_inner()),
    })
}

/// Streams the rows of a 2-D float `.npy` matrix (or of a range of its rows) as f32, checking
/// that every value is finite.
pub struct MatrixReader {
    path: PathBuf,
    /// Rows in the file.
    rows: usize,
    dim: usize,
    elem: FloatType,
    /// The rows delivered: `first..end` of the file.
    first: usize,
    end: usize,
    next_row: usize,
    reader: Source,
    buf: Vec<u8>,
}

impl MatrixReader {
    /// Open `path` and validate its header: rank 2, float dtype (f16, f32, f64), at least one row
    /// and one column.
    pub fn open(path: &Path) -> Result<Self> {
        Self::from_opened(path, open_npy(path)?)
    }

    /// [`MatrixReader::open`] for an .npy file held in memory; `origin` names it in errors.
    pub fn from_bytes(origin: &Path, bytes: &[u8]) -> Result<Self> {
        Self::from_opened(origin, open_npy_bytes(origin, bytes)?)
    }

    fn from_opened(path: &Path, o: Opened) -> Result<Self> {
        let elem = match (o.type_char, o.size) {
            (TypeChar::Float, 2) => FloatType::F16,
            (TypeChar::Float, 4) => FloatType::F32,
            (TypeChar::Float, 8) => FloatType::F64,
            (tc, size) => {
                return Err(Error::input(path, format!("unsupported dtype {tc:?} of {size} bytes (expected float16, float32 or float64)")))
            }
        };
        let [rows, dim] = o.shape[..] else {
            return Err(Error::input(
                path,
                format!(
                    "expected a 2-D array [rows, dim], found shape {:?}",
                    o.shape
                ),
            ));
        };
        if rows == 0 || dim == 0 {
            return Err(Error::input(
                path,
                format!("empty array of shape [{rows}, {dim}]"),
            ));
        }
        if dim > u64::from(crate::format::MAX_DIM) {
            return Err(Error::input(
                path,
                format!(
                    "dimension {dim} exceeds the maximum {}",
                    crate::format::MAX_DIM
                ),
            ));
        }
        if rows >= u64::from(u32::MAX) {
            return Err(Error::input(
                path,
                format!("{rows} rows exceed the maximum {}", u32::MAX - 1),
            ));
        }
        // The data must fit in the file before anything is allocated for it: a header of a few
        // bytes can claim terabytes.
        let bytes = rows
            .checked_mul(dim)
            .and_then(|n| n.checked_mul(o.size))
            .filter(|&b| b <= o.len);
        if bytes.is_none() {
            return Err(Error::input(
                path,
                format!(
                    "header claims [{rows}, {dim}] values of {} bytes but the file holds {} bytes",
                    o.size, o.len
                ),
            ));
        }
        Ok(MatrixReader {
            path: path.to_path_buf(),
            rows: rows as usize,
            dim: dim as usize,
            elem,
            first: 0,
            end: rows as usize,
            next_row: 0,
            reader: o.reader,
            buf: Vec::new(),
        })
    }

    /// Open `path` to deliver only its rows `rows` (a shard of a larger matrix): the reader
    /// seeks past the rows before them.
    pub fn open_rows(path: &Path, rows: std::ops::Range<usize>) -> Result<Self> {
        let mut r = Self::open(path)?;
        if rows.is_empty() || rows.end > r.rows {
            return Err(Error::input(
                path,
                format!(
                    "rows {}..{} are not a non-empty range within its {} rows",
                    rows.start, rows.end, r.rows
                ),
            ));
        }
        let skip = rows.start as u64 * r.dim as u64 * r.elem.size() as u64;
        let skip = i64::try_from(skip)
            .map_err(|_| Error::input(path, format!("cannot seek to row {}", rows.start)))?;
        r.reader.seek_relative(skip).at(path)?;
        (r.first, r.end, r.next_row) = (rows.start, rows.end, rows.start);
        Ok(r)
    }

    /// Number of rows delivered (all the file's, or the range opened).
    pub fn rows(&self) -> usize {
        self.end - self.first
    }

    /// Number of columns.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Path being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fill `out` (a multiple of `dim` long) with the next rows; returns how many rows were read
    /// (0 at the end). A short file or a NaN/Inf value is an error naming the row.
    pub fn read_rows(&mut self, out: &mut [f32]) -> Result<usize> {
        let want = (out.len() / self.dim).min(self.end - self.next_row);
        let n = want * self.dim;
        let size = self.elem.size();
        self.buf.resize(n * size, 0);
        self.reader.read_exact(&mut self.buf).map_err(|e| {
            Error::input(
                &self.path,
                format!(
                    "data ends early (expected {} rows of {} values): {e}",
                    self.rows, self.dim
                ),
            )
        })?;
        let out = out
            .get_mut(..n)
            .ok_or_else(|| Error::invalid("row buffer is not a multiple of the dimension"))?;
        match self.elem {
            FloatType::F16 => {
                for (o, c) in out.iter_mut().zip(self.buf.as_chunks::<2>().0) {
                    *o = f16::from_le_bytes(*c).to_f32();
                }
            }
            FloatType::F32 => {
                for (o, c) in out.iter_mut().zip(self.buf.as_chunks::<4>().0) {
                    *o = f32::from_le_bytes(*c);
                }
            }
            FloatType::F64 => {
                for (o, c) in out.iter_mut().zip(self.buf.as_chunks::<8>().0) {
                    *o = f64::from_le_bytes(*c) as f32;
                }
            }
        }
        check_finite(&self.path, self.next_row, self.dim, out)?;
        self.next_row += want;
        Ok(want)
    }
}

/// A dense row-major f32 matrix read whole (queries, target features).
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Row-major values.
    pub data: Vec<f32>,
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub dim: usize,
}

impl Matrix {
    /// Row `i`.
    /// Panics when `i >= rows`, like slice indexing (the matrix is in memory).
    #[allow(clippy::indexing_slicing)]
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// Read a whole 2-D float matrix into memory (see [`MatrixReader::open`] for the checks).
pub fn read_matrix(path: &Path) -> Result<Matrix> {
    read_all(MatrixReader::open(path)?)
}

/// [`read_matrix`] of an .npy file held in memory; `origin` names it in errors.
pub fn read_matrix_bytes(origin: &Path, bytes: &[u8]) -> Result<Matrix> {
    read_all(MatrixReader::from_bytes(origin, bytes)?)
}

fn read_all(mut r: MatrixReader) -> Result<Matrix> {
    let (rows, dim) = (r.rows(), r.dim());
    let mut data = vec![0f32; rows * dim];
    let mut filled = 0;
    while let Some(rest) = data.get_mut(filled * dim..).filter(|r| !r.is_empty()) {
        filled += r.read_rows(rest)?;
    }
    Ok(Matrix { data, rows, dim })
}

/// Read a 1-D float `.npy` (f16, f32 or f64; every value finite), such as per-class weights.
pub fn read_floats(path: &Path) -> Result<Vec<f32>> {
    let mut o = open_npy(path)?;
    let [n] = o.shape[..] else {
        return Err(Error::input(
            path,
            format!("expected a 1-D float array, found shape {:?}", o.shape),
        ));
    };
    // One value per row: the matrix reader's dtype, length and finiteness checks apply.
    o.shape = vec![n, 1];
    Ok(read_all(MatrixReader::from_opened(path, o)?)?.data)
}

/// Read a 1-D integer `.npy` of labels (any signed or unsigned width). Negative values and values
/// that do not fit below `u32::MAX` are errors naming the position.
pub fn read_labels(path: &Path) -> Result<Vec<u32>> {
    let mut o = open_npy(path)?;
    let [n] = o.shape[..] else {
        return Err(Error::input(
            path,
            format!("expected a 1-D array of labels, found shape {:?}", o.shape),
        ));
    };
    let signed = match o.type_char {
        TypeChar::Int => true,
        TypeChar::Uint => false,
        tc => {
            return Err(Error::input(
                path,
                format!("labels must be integers, found dtype {tc:?}"),
            ))
        }
    };
    let size = o.size as usize;
    if ![1, 2, 4, 8].contains(&size) {
        return Err(Error::input(
            path,
            format!("unsupported integer width of {size} bytes"),
        ));
    }
    let n = usize::try_from(n).map_err(|_| Error::input(path, "too many labels"))?;
    let bytes_len = n
        .checked_mul(size)
        .ok_or_else(|| Error::input(path, "too many labels"))?;
    let file_len = o.len;
    if bytes_len as u64 > file_len {
        return Err(Error::input(
            path,
            format!("header claims {n} labels but the file holds {file_len} bytes"),
        ));
    }
    let mut raw = vec![0u8; bytes_len];
    o.reader
        .read_exact(&mut raw)
        .map_err(|e| content_or_io(path, e, "data ends early"))?;
    raw.chunks_exact(size)
        .enumerate()
        .map(|(i, c)| {
            let mut b = [0u8; 8];
            b.iter_mut().zip(c).for_each(|(d, s)| *d = *s);
            let v: i128 = if signed {
                let shift = 64 - 8 * size as u32;
                i128::from((i64::from_le_bytes(b) << shift) >> shift)
            } else {
                i128::from(u64::from_le_bytes(b))
            };
            if v < 0 {
                Err(Error::input(
                    path,
                    format!("label at position {i} is negative ({v})"),
                ))
            } else if v >= i128::from(crate::format::MAX_CLASSES) {
                Err(Error::input(
                    path,
                    format!(
                        "label at position {i} is {v}, above the maximum class {}",
                        crate::format::MAX_CLASSES - 1
                    ),
                ))
            } else {
                Ok(v as u32)
            }
        })
        .collect()
}

/// Write a 2-D array `[rows, cols]` to `path` atomically (temporary file, then rename).
pub fn write_matrix<T>(path: &Path, data: &[T], rows: usize, cols: usize) -> Result<()>
where
    T: npyz::Serialize + npyz::AutoSerialize + Copy,
{
    write_array(path, data, &[rows as u64, cols as u64])
}

/// Write a 1-D array to `path` atomically.
pub fn write_vector<T>(path: &Path, data: &[T]) -> Result<()>
where
    T: npyz::Serialize + npyz::AutoSerialize + Copy,
{
    write_array(path, data, &[data.len() as u64])
}

/// Write class labels as a 1-D int64 `.npy` (the dtype `read_labels` and numpy default to).
pub fn write_labels(path: &Path, labels: &[u32]) -> Result<()> {
    write_vector(
        path,
        &labels.iter().map(|&l| i64::from(l)).collect::<Vec<_>>(),
    )
}

/// Write 128-bit uids as a 1-D `.npy` of numpy dtype `"u8,u8"` (fields `f0`, `f1`: the high
/// and low 64 bits), the selection format of DataComp, atomically.
pub fn write_uids(path: &Path, uids: &[(u64, u64)]) -> Result<()> {
    use std::io::Write;
    let dict = format!(
        "{{'descr': [('f0', '<u8'), ('f1', '<u8')], 'fortran_order': False, 'shape': ({},), }}",
        uids.len()
    );
    // Magic (6) + version (2) + header length (2) + dict, padded with spaces and a final
    // newline to a multiple of 64 bytes, as numpy writes format 1.0.
    let padded = (10 + dict.len() + 1).div_ceil(64) * 64 - 10;
    let mut header = dict.into_bytes();
    header.resize(padded - 1, b' ');
    header.push(b'\n');
    let len = u16::try_from(header.len()).map_err(|_| Error::invalid("npy header too long"))?;
    crate::output::atomic_write(path, |w| {
        w.write_all(b"\x93NUMPY\x01\x00")?;
        w.write_all(&len.to_le_bytes())?;
        w.write_all(&header)?;
        for (hi, lo) in uids {
            w.write_all(&hi.to_le_bytes())?;
            w.write_all(&lo.to_le_bytes())?;
        }
        Ok(())
    })
}

fn write_array<T>(path: &Path, data: &[T], shape: &[u64]) -> Result<()>
where
    T: npyz::Serialize + npyz::AutoSerialize + Copy,
{
    crate::output::atomic_write(path, |w| {
        let mut writer = npyz::WriteOptions::<T>::new()
            .default_dtype()
            .shape(shape)
            .writer(w)
            .begin_nd()?;
        writer.extend(data.iter().copied())?;
        writer.finish()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn a_short_or_malformed_file_is_bad_input_and_an_os_failure_stays_io() {
        let path = Path::new("x.npy");
        let kind = |k: std::io::ErrorKind| content_or_io(path, k.into(), "data ends early").kind();
        assert_eq!(kind(std::io::ErrorKind::UnexpectedEof), ErrorKind::Input);
        assert_eq!(kind(std::io::ErrorKind::InvalidData), ErrorKind::Input);
        assert_eq!(kind(std::io::ErrorKind::PermissionDenied), ErrorKind::Io);
        let eio = content_or_io(
            path,
            std::io::Error::from_raw_os_error(5),
            "data ends early",
        );
        assert!(
            matches!(&eio, Error::Io { error, .. } if error.raw_os_error() == Some(5)),
            "{eio}"
        );
    }

    #[test]
    fn in_memory_files_read_like_files_and_are_screened_alike() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.npy");
        let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        write_matrix(&path, &data, 3, 4).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let origin = Path::new("embedded/m.npy");
        assert_eq!(
            read_matrix_bytes(origin, &bytes).unwrap(),
            read_matrix(&path).unwrap()
        );
        let err = read_matrix_bytes(origin, &bytes[..bytes.len() - 4])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("embedded/m.npy: data ends early"), "{err}");
        let hostile = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz/regressions/npy_reader/oom-header-len-4gib"),
        )
        .unwrap();
        let err = read_matrix_bytes(origin, &hostile).unwrap_err().to_string();
        assert!(err.contains("header claims 4286251126 bytes"), "{err}");
    }

    /// A version 1.0 .npy of `descr` and `shape` holding only `data`.
    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    /// A header that claims more values than the file holds is refused before anything is
    /// allocated for them (the shapes below would need 8 EB and 400 MB).
    #[test]
    fn a_shape_larger_than_the_file_is_refused_before_allocation() {
        let origin = Path::new("t.npy");
        for (descr, shape) in [("<f4", "(4294967294, 65536)"), ("<f8", "(50000000, 1)")] {
            let err = read_matrix_bytes(origin, &npy(descr, shape, &[0; 16]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("header claims ["), "{shape}: {err}");
            assert!(err.contains("but the file holds"), "{shape}: {err}");
        }
        let ok = npy("<f2", "(2, 4)", &[0; 16]);
        assert_eq!(read_matrix_bytes(origin, &ok).unwrap().data, vec![0.0; 8]);
    }
}
