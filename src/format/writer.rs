//! Writing an index: sections streamed into a temporary file beside the destination, then
//! fsync and an atomic rename, so a failed or killed build never leaves a file under the
//! final name (rename is atomic only within one filesystem, hence "beside").

use super::{
    align_up, checksum, Header, SectionEntry, SectionKind, FORMAT_VERSION, HEADER_LEN, MAX_SECTIONS,
};
use crate::error::{Error, IoContext, Result};
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use tempfile::TempPath;

/// Streams sections into a temporary file and commits it under its final name.
pub struct IndexWriter {
    dest: PathBuf,
    overwrite: bool,
    tmp: TempPath,
    out: BufWriter<File>,
    pos: u64,
    entries: Vec<SectionEntry>,
}

impl IndexWriter {
    /// Start writing an index that will be committed to `dest` (the file a link names, when it is
    /// a link). Fails at once when the directory does not exist, when `dest` is not a regular file
    /// (a device such as /dev/null), or when it exists and `overwrite` is false.
    pub fn create(dest: &Path, overwrite: bool) -> Result<Self> {
        let (target, dir) = crate::output::file_destination(dest)?;
        if dest.exists() && !overwrite {
            return Err(Error::invalid(format!(
                "{}: output exists (replacing it needs the force option)",
                dest.display()
            )));
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        crate::format::stale::clean(&dir, &name);
        let tmp = crate::output::temp_builder(&crate::format::stale::prefix(&name))
            .suffix(crate::format::stale::SUFFIX)
            .tempfile_in(&dir)
            .at(&dir)?;
        let (file, tmp) = tmp.into_parts();
        let mut w = IndexWriter {
            dest: target,
            overwrite,
            tmp,
            out: BufWriter::with_capacity(1 << 20, file),
            pos: 0,
            entries: Vec::new(),
        };
        w.write_raw(&[0u8; HEADER_LEN])?;
        Ok(w)
    }

    /// Path of the temporary file being written (valid as an index after [`Self::checkpoint`]).
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// Destination path.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Begin a section of `kind`; write its bytes into the returned sink and call
    /// [`SectionSink::finish`].
    pub fn section(&mut self, kind: SectionKind) -> Result<SectionSink<'_>> {
        if self.entries.iter().any(|e| e.kind == kind) {
            return Err(Error::invalid(format!(
                "section {} written twice",
                kind.name()
            )));
        }
        if self.entries.len() >= MAX_SECTIONS as usize {
            return Err(Error::invalid("too many sections"));
        }
        self.pad()?;
        let start = self.pos;
        Ok(SectionSink {
            w: self,
            kind,
            start,
            hasher: xxhash_rust::xxh3::Xxh3::new(),
        })
    }

    /// Write a whole section from memory.
    pub fn add_section(&mut self, kind: SectionKind, bytes: &[u8]) -> Result<()> {
        let mut s = self.section(kind)?;
        s.write_bytes(bytes)?;
        s.finish()
    }

    /// Write the section table and header so the temporary file is a complete index that
    /// [`crate::Index::open`] accepts. Sections added afterwards overwrite the table, and the
    /// next checkpoint or commit writes a new one.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.pad()?;
        let table_offset = self.pos;
        let mut table = Vec::with_capacity(self.entries.len() * super::SECTION_ENTRY_LEN);
        for e in &self.entries {
            table.extend_from_slice(&e.to_bytes());
        }
        self.write_raw(&table)?;
        let file_len = self.pos;
        let header = Header {
            version: FORMAT_VERSION,
            table_offset,
            section_count: self.entries.len() as u32,
            file_len,
            table_checksum: checksum(&table),
        };
        let path = self.tmp.to_path_buf();
        self.out.flush().at(&path)?;
        let f = self.out.get_mut();
        f.set_len(file_len).at(&path)?;
        f.seek(SeekFrom::Start(0)).at(&path)?;
        f.write_all(&header.to_bytes()).at(&path)?;
        f.seek(SeekFrom::Start(table_offset)).at(&path)?;
        self.pos = table_offset;
        Ok(())
    }

    /// Remove the most recently written section if it is of `kind`, so it can be written again
    /// (the metadata written for a checkpoint is replaced by the final one).
    pub fn drop_last_section(&mut self, kind: SectionKind) -> Result<()> {
        match self.entries.last() {
            Some(e) if e.kind == kind => {
                let offset = e.offset;
                self.out
                    .seek(SeekFrom::Start(offset))
                    .map_err(|e| Error::io(&*self.tmp, e))?;
                self.pos = offset;
                self.entries.pop();
                Ok(())
            }
            _ => Err(Error::invalid(format!(
                "last section is not {}",
                kind.name()
            ))),
        }
    }

    /// Finish: write table and header, fsync, rename onto the destination, fsync the directory.
    pub fn commit(mut self) -> Result<()> {
        self.checkpoint()?;
        let path = self.tmp.to_path_buf();
        self.out.get_ref().sync_all().at(&path)?;
        drop(self.out);
        let dest = self.dest.clone();
        let persisted = if self.overwrite {
            self.tmp.persist(&dest)
        } else {
            self.tmp.persist_noclobber(&dest)
        };
        persisted.map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                Error::invalid(format!(
                    "{}: output exists (replacing it needs the force option)",
                    dest.display()
                ))
            } else {
                Error::io(&dest, e.error)
            }
        })?;
        if let Some(dir) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Make the rename itself durable; not all filesystems allow fsync on a directory.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    fn pad(&mut self) -> Result<()> {
        let target = align_up(self.pos).ok_or_else(|| Error::invalid("index too large"))?;
        let n = (target - self.pos) as usize;
        self.write_raw(&vec![0u8; n])
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(&*self.tmp, e))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }
}

/// A section being written; hashes what passes through.
pub struct SectionSink<'a> {
    w: &'a mut IndexWriter,
    kind: SectionKind,
    start: u64,
    hasher: xxhash_rust::xxh3::Xxh3,
}

impl SectionSink<'_> {
    /// Append bytes to the section.
    pub fn write_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        self.w.write_raw(bytes)
    }

    /// Append plain-old-data values (little-endian on the platforms ptsel supports).
    pub fn write_pod<T: bytemuck::Pod>(&mut self, values: &[T]) -> Result<()> {
        self.write_bytes(bytemuck::cast_slice(values))
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.w.pos - self.start
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record the section in the table.
    pub fn finish(self) -> Result<()> {
        let entry = SectionEntry {
            kind: self.kind,
            offset: self.start,
            len: self.w.pos - self.start,
            checksum: self.hasher.digest(),
        };
        self.w.entries.push(entry);
        Ok(())
    }
}
