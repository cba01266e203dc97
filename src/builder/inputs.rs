//! The inputs that come with the features: labels, ids and class names, read from files or
//! memory, checked against the rows, and written as their sections.

use crate::error::{Error, IoContext, Result};
use crate::format::MAX_CLASSES;
use crate::format::{IndexWriter, SectionKind};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Labels and the file they came from (for error messages).
pub struct Labels {
    /// One label per row.
    pub values: Vec<u32>,
    /// Source file, or a description.
    pub origin: PathBuf,
}

impl Labels {
    /// Read labels from an integer .npy file.
    pub fn from_npy(path: &Path) -> Result<Self> {
        Ok(Labels {
            values: crate::npy::read_labels(path)?,
            origin: path.to_path_buf(),
        })
    }
}

/// A list of strings (ids, class names): a text file with one per line, or values in memory
/// (an image folder's relative paths and class folder names).
#[derive(Debug, Clone)]
pub enum TextList {
    /// A text file, one entry per line.
    File(PathBuf),
    /// Entries in memory.
    List(Vec<String>),
}

impl From<PathBuf> for TextList {
    fn from(path: PathBuf) -> Self {
        TextList::File(path)
    }
}

impl TextList {
    /// The file, or a description of the in-memory list, for error messages.
    pub(crate) fn origin(&self) -> &Path {
        match self {
            TextList::File(p) => p,
            TextList::List(_) => Path::new("(list in memory)"),
        }
    }

    /// Number of entries.
    pub(super) fn count(&self) -> Result<usize> {
        match self {
            TextList::File(p) => count_lines(p),
            TextList::List(v) => Ok(v.len()),
        }
    }

    /// Every entry as an id, read into memory (a sharded build hands each shard its slice); an
    /// empty entry is an error naming its line.
    pub(crate) fn read_ids(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        self.for_each(|line, v| {
            if v.is_empty() {
                return Err(Error::input(
                    self.origin(),
                    format!("line {line} is an empty id"),
                ));
            }
            out.push(v.to_string());
            Ok(())
        })?;
        Ok(out)
    }

    /// Visit the entries in order with their line numbers (1-based), stopping at the first error.
    fn for_each(&self, mut f: impl FnMut(usize, &str) -> Result<()>) -> Result<()> {
        match self {
            TextList::File(path) => {
                let file = std::fs::File::open(path).at(path)?;
                for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
                    let line =
                        line.map_err(|e| Error::input(path, format!("line {}: {e}", i + 1)))?;
                    f(i + 1, line.strip_suffix('\r').unwrap_or(&line))?;
                }
                Ok(())
            }
            TextList::List(values) => values.iter().enumerate().try_for_each(|(i, v)| f(i + 1, v)),
        }
    }
}

/// The labels of the rows delivered: all but the `skipped` positions (ascending).
pub(super) fn kept_labels(labels: &[u32], skipped: &[usize]) -> Vec<u32> {
    let mut next_skip = skipped.iter().peekable();
    labels
        .iter()
        .enumerate()
        .filter(|&(i, _)| next_skip.next_if_eq(&&i).is_none())
        .map(|(_, &l)| l)
        .collect()
}

pub(crate) fn check_labels(labels: Option<&Labels>, rows: usize) -> Result<usize> {
    let Some(l) = labels else { return Ok(0) };
    if l.values.len() != rows {
        return Err(Error::input(
            &l.origin,
            format!("{} labels for {rows} feature rows", l.values.len()),
        ));
    }
    let max = l.values.iter().copied().max().unwrap_or(0);
    if max >= MAX_CLASSES {
        return Err(Error::input(
            &l.origin,
            format!("label {max} exceeds the maximum class {}", MAX_CLASSES - 1),
        ));
    }
    Ok(max as usize + 1)
}

fn count_lines(path: &Path) -> Result<usize> {
    let f = std::fs::File::open(path).at(path)?;
    let mut n = 0;
    for line in std::io::BufReader::new(f).split(b'\n') {
        line.at(path)?;
        n += 1;
    }
    Ok(n)
}

/// Write the ids of the delivered rows: every entry of `ids` except the `skipped` positions.
pub(super) fn write_ids(
    w: &mut IndexWriter,
    ids: &TextList,
    skipped: &[usize],
    rows: usize,
) -> Result<()> {
    let path = ids.origin();
    let mut offsets: Vec<u64> = Vec::with_capacity(rows + 1);
    offsets.push(0);
    let mut sink = w.section(SectionKind::IdsBlob)?;
    let mut next_skip = skipped.iter().peekable();
    ids.for_each(|line, id| {
        if next_skip.next_if_eq(&&(line - 1)).is_some() {
            return Ok(());
        }
        if id.is_empty() {
            return Err(Error::input(path, format!("line {line} is an empty id")));
        }
        sink.write_bytes(id.as_bytes())?;
        offsets.push(sink.len());
        Ok(())
    })?;
    sink.finish()?;
    if offsets.len() != rows + 1 {
        return Err(Error::input(
            path,
            format!("{} ids for {rows} rows", offsets.len() - 1),
        ));
    }
    w.add_section(SectionKind::IdsOffsets, bytemuck::cast_slice(&offsets))
}

pub(crate) fn read_class_names(names: &TextList, classes: usize) -> Result<Vec<String>> {
    let path = names.origin();
    if classes == 0 {
        return Err(Error::input(
            path,
            "class names given but the corpus has no labels",
        ));
    }
    let mut out = Vec::with_capacity(classes);
    names.for_each(|_, name| {
        out.push(name.to_string());
        Ok(())
    })?;
    if out.len() != classes {
        return Err(Error::input(
            path,
            format!("{} class names for {classes} classes", out.len()),
        ));
    }
    Ok(out)
}
