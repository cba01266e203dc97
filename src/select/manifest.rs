//! Manifests (one row per selected sample: `rank,row,id,class,score`) and the summary JSON.
//!
//! Formats: `csv` (header line, RFC 4180 quoting of ids), `jsonl` (one object per line; `class`
//! is `null` when unknown), `npy` (the selected rows as int64, rank order), `uids` (DataComp's
//! selection format: the ids, each 32 hex digits, as a sorted `.npy` of 128-bit uids, numpy
//! dtype `"u8,u8"`, duplicates once). Rows are global row numbers of a corpus. Output depends
//! only on the selection, so the same inputs and seed give byte-identical files; both are
//! written atomically. Run times enter the summary only when asked for, as a [`Timing`]
//! breakdown.

use super::{Grouping, Selection};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::output::atomic_write;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// Manifest file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `rank,row,id,class,score` with a header line.
    Csv,
    /// One JSON object per line.
    Jsonl,
    /// The selected row numbers as a 1-D int64 .npy, in rank order.
    Npy,
    /// The ids (32 hex digits each) as a sorted 1-D .npy of 128-bit uids (`np.dtype("u8,u8")`).
    Uids,
}

parse_by_name!(Format, "manifest format", { "csv" => Format::Csv, "jsonl" => Format::Jsonl, "npy" => Format::Npy, "uids" => Format::Uids });

impl Format {
    /// Format named by the extension of `path` (`.jsonl`, `.npy`), csv otherwise.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl") => Format::Jsonl,
            Some("npy") => Format::Npy,
            _ => Format::Csv,
        }
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

#[derive(Serialize)]
struct Line<'a> {
    rank: usize,
    row: u32,
    id: &'a str,
    class: Option<u32>,
    score: f64,
}

/// The 128-bit uid spelled by `id` (32 hex digits: the high then the low 64 bits).
fn uid(id: &str) -> Option<(u64, u64)> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (hi, lo) = id.split_at(16);
    Some((
        u64::from_str_radix(hi, 16).ok()?,
        u64::from_str_radix(lo, 16).ok()?,
    ))
}

/// Write the manifest of `sel` (a selection from `engine`) to `path`.
pub fn write(path: &Path, format: Format, engine: &Engine, sel: &Selection) -> Result<()> {
    if format == Format::Npy {
        let rows: Vec<i64> = sel.picks.iter().map(|p| i64::from(p.row)).collect();
        return crate::npy::write_vector(path, &rows);
    }
    // Ids are read (and checked) before the file is opened, so a corrupt id leaves nothing.
    let ids = sel
        .picks
        .iter()
        .map(|p| engine.id(p.row as usize))
        .collect::<Result<Vec<_>>>()?;
    if format == Format::Uids {
        let mut uids = sel
            .picks
            .iter()
            .zip(&ids)
            .map(|(p, id)| {
                uid(id).ok_or_else(|| {
                    Error::invalid(format!(
                        "the uids format needs ids of 32 hex digits, but row {} of {} has the id {id:?}",
                        p.row,
                        engine.path().display()
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        uids.sort_unstable();
        uids.dedup();
        return crate::npy::write_uids(path, &uids);
    }
    atomic_write(path, |w| {
        if format == Format::Csv {
            w.write_all(b"rank,row,id,class,score\n")?;
        }
        for (rank, (p, id)) in sel.picks.iter().zip(&ids).enumerate() {
            match format {
                Format::Csv => {
                    let class = p.class.map(|c| c.to_string()).unwrap_or_default();
                    writeln!(
                        w,
                        "{},{},{},{},{}",
                        rank + 1,
                        p.row,
                        csv_field(id),
                        class,
                        p.score
                    )?;
                }
                _ => {
                    serde_json::to_writer(
                        &mut *w,
                        &Line {
                            rank: rank + 1,
                            row: p.row,
                            id,
                            class: p.class,
                            score: p.score,
                        },
                    )?;
                    w.write_all(b"\n")?;
                }
            }
        }
        Ok(())
    })
}

#[derive(Serialize)]
struct SelectedClass<'a> {
    rank: usize,
    class: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    importance: Option<f64>,
    samples: usize,
}

/// Wall-clock seconds of the phases of one selection run, for the summary's `timing`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timing {
    /// Opening the index (O(1): header, section table, metadata).
    pub open_s: f64,
    /// Reading the target features (and the test features of `--exclude-near`).
    pub read_s: f64,
    /// The selection: class means, cost and UOT solve, or the neighbour search, and the ranking.
    pub select_s: f64,
    /// Writing the manifest, fsync and rename included.
    pub write_s: f64,
    /// From the start of the run to the end of the manifest (the summary is written after).
    pub total_s: f64,
    /// The parts of `select_s` for the UOT methods, by name (`search_s`, `reverse_s`,
    /// `graph_s`, `solve_s`, `rank_s`: those that ran), beside the other seconds.
    #[serde(flatten)]
    pub select_phases: std::collections::BTreeMap<String, f64>,
}

/// Measures consecutive phases of a run.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch {
    start: Instant,
    last: Instant,
}

impl Stopwatch {
    /// Starts the first phase now.
    pub fn start() -> Self {
        let now = Instant::now();
        Stopwatch {
            start: now,
            last: now,
        }
    }

    /// Seconds since the previous lap (or the start); the next phase starts now.
    pub fn lap(&mut self) -> f64 {
        let now = Instant::now();
        let s = (now - self.last).as_secs_f64();
        self.last = now;
        s
    }

    /// Seconds from the start to the last lap.
    pub fn total(&self) -> f64 {
        (self.last - self.start).as_secs_f64()
    }
}

/// The summary of `sel`: method, `parameters` (as given by the caller), class importance,
/// selected classes (with names when the index or corpus has them), counts, solver statistics,
/// notes, and `timing` only when given (so that summaries stay byte-identical by default).
pub fn summary(
    engine: &Engine,
    sel: &Selection,
    parameters: serde_json::Value,
    timing: Option<&Timing>,
) -> serde_json::Value {
    let mut per_class: BTreeMap<u32, usize> = BTreeMap::new();
    for p in &sel.picks {
        if let Some(c) = p.class {
            *per_class.entry(c).or_default() += 1;
        }
    }
    let selected: Vec<SelectedClass> = sel
        .selected_classes
        .iter()
        .enumerate()
        .map(|(i, &c)| SelectedClass {
            rank: i + 1,
            class: c,
            name: if sel.grouping == Some(Grouping::Labels) {
                engine.class_name(c as usize)
            } else {
                None
            },
            importance: sel
                .importance
                .as_ref()
                .and_then(|imp| imp.get(c as usize).copied()),
            samples: per_class.get(&c).copied().unwrap_or(0),
        })
        .collect();
    let mut out = serde_json::json!({
        "method": sel.method,
        "index": engine.path().display().to_string(),
        "parameters": parameters,
        "grouping": sel.grouping,
        "selected": sel.picks.len(),
        "selected_classes": selected,
        "importance": sel.importance,
        "solver": sel.solver,
        "excluded": sel.excluded,
        "notes": sel.notes,
    });
    if let (Some(t), Some(map)) = (timing, out.as_object_mut()) {
        map.insert("timing".into(), serde_json::json!(t));
    }
    out
}

/// Write `summary` as pretty JSON (with a final newline) to `path`.
pub fn write_summary(path: &Path, summary: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(summary)
        .map_err(|e| Error::invalid(format!("summary: {e}")))?;
    atomic_write(path, |w| {
        w.write_all(text.as_bytes())?;
        w.write_all(b"\n")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("n01440764/img_1.JPEG"), "n01440764/img_1.JPEG");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn uids_are_32_hex_digits_high_then_low() {
        assert_eq!(
            uid("0123456789abcdef00000000000000FF"),
            Some((0x0123_4567_89ab_cdef, 0xff))
        );
        assert_eq!(uid("0123456789abcdef"), None);
        assert_eq!(uid("0123456789abcdef0000000000000g00"), None);
        assert_eq!(uid("+123456789abcdef0000000000000000"), None);
    }

    #[test]
    fn stopwatch_laps_add_up_to_the_total() {
        let mut clock = Stopwatch::start();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let first = clock.lap();
        let second = clock.lap();
        assert!(first >= 0.005 && second >= 0.0, "{first} {second}");
        assert!((first + second - clock.total()).abs() < 1e-9);
    }

    #[test]
    fn format_follows_the_extension() {
        assert_eq!(Format::from_path(Path::new("s.jsonl")), Format::Jsonl);
        assert_eq!(Format::from_path(Path::new("s.npy")), Format::Npy);
        assert_eq!(Format::from_path(Path::new("s.csv")), Format::Csv);
        assert_eq!(Format::from_path(Path::new("s")), Format::Csv);
    }
}
