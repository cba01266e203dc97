//! What the fuzz targets do with their input, shared with the regression test
//! (`tests/fuzz_regressions.rs` includes this file), so a crashing input found by the fuzzer is
//! replayed by `cargo test` exactly as the fuzzer ran it.

use ptsel::format::{DType, IndexWriter, Meta, Metric, SectionKind};
use ptsel::{Index, OpenOptions};
use std::path::Path;

/// Rows sampled from an opened index (all of them for small ones).
fn sample_rows(rows: usize) -> Vec<usize> {
    if rows <= 64 {
        (0..rows).collect()
    } else {
        (0..32).chain(rows - 32..rows).collect()
    }
}

/// Open `path` as an index and use everything a reader would: metadata, sections, ids, labels,
/// vectors, class statistics and exact scoring. Errors are fine; panics are not.
pub fn index_file(path: &Path) {
    for verify in [false, true] {
        let Ok(index) = Index::open_with(path, OpenOptions { verify }) else {
            continue;
        };
        let _ = index.sections();
        let dim = index.dim();
        let mut row = vec![0f32; dim];
        for r in sample_rows(index.rows()) {
            let _ = index.id(r);
            let _ = index.label(r);
            index.vectors().row_into(r, dim, &mut row);
        }
        let _ = index.class_means().iter().sum::<f64>();
        let _ = index.class_counts().iter().sum::<u64>();
        for c in 0..index.classes().min(64) {
            let _ = index.class_name(c);
        }
        if index.rows() <= 4096 {
            if let Ok(scorer) = ptsel::score::scorer_for(&index, ptsel::score::Device::Cpu) {
                use ptsel::score::Scorer;
                let _ = scorer.top_k(&row, 1);
            }
            if let Ok(Some(graph)) = ptsel::hnsw::Graph::open(&index) {
                let _ = graph.search(&row, 3, 16);
            }
            if let Ok(Some(parts)) = ptsel::partitions::Partitions::open(&index) {
                // One partition (and the next ones when it holds too few rows), then all.
                for probes in [1, parts.header().partitions as usize] {
                    let _ = parts.search(&row, 3, 16, probes);
                }
            }
            select_uot(&ptsel::Engine::from_index(index), &row);
        }
    }
}

/// Make `bytes` pass the checksum checks where its structure allows: recompute each in-bounds
/// section's checksum, the table checksum, the file length and the header checksum. Mutations
/// then reach the validation behind the checksums instead of stopping at the first one.
pub fn fix_checksums(bytes: &mut [u8]) {
    use ptsel::format::{checksum, Header, HEADER_LEN, SECTION_ENTRY_LEN};
    let len = bytes.len();
    let Some(head) = bytes.get(..HEADER_LEN) else {
        return;
    };
    let word = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().unwrap());
    let (table_offset, count) = (
        word(16),
        u32::from_le_bytes(head[24..28].try_into().unwrap()),
    );
    let version = u32::from_le_bytes(head[8..12].try_into().unwrap());
    let table_end = (count as usize)
        .checked_mul(SECTION_ENTRY_LEN)
        .and_then(|n| n.checked_add(table_offset as usize));
    let mut table_checksum = 0;
    if let Some(end) = table_end.filter(|&e| e <= len && table_offset as usize >= HEADER_LEN) {
        for i in 0..count as usize {
            let at = table_offset as usize + i * SECTION_ENTRY_LEN;
            let e = |k: usize| u64::from_le_bytes(bytes[at + k..at + k + 8].try_into().unwrap());
            let (off, n) = (e(8) as usize, e(16) as usize);
            if let Some(sum) = off
                .checked_add(n)
                .filter(|&end| end <= len)
                .map(|end| checksum(&bytes[off..end]))
            {
                bytes[at + 24..at + 32].copy_from_slice(&sum.to_le_bytes());
            }
        }
        table_checksum = checksum(&bytes[table_offset as usize..end]);
    }
    let header = Header {
        version,
        table_offset,
        section_count: count,
        file_len: len as u64,
        table_checksum,
    };
    bytes[..HEADER_LEN].copy_from_slice(&header.to_bytes());
}

/// A UOT class selection for a one-row target (labels or k-means pseudo-classes).
fn select_uot(engine: &ptsel::Engine, row: &[f32]) {
    use ptsel::select::{SelectParams, Target, TargetKind};
    let target = Target {
        features: ptsel::npy::Matrix {
            data: row.to_vec(),
            rows: 1,
            dim: row.len(),
        },
        kind: TargetKind::Means,
        origin: "fuzz-target".into(),
    };
    let params = SelectParams {
        amount: ptsel::select::Amount::Classes(2),
        device: ptsel::score::Device::Cpu,
        ..SelectParams::default()
    };
    let _ = engine.select(&target, None, &params);
}

/// Read `path` as a feature matrix and as a label vector.
pub fn npy_file(path: &Path) {
    if let Ok(mut r) = ptsel::npy::MatrixReader::open(path) {
        let mut block = vec![0f32; r.dim().min(1 << 16) * 16];
        while let Ok(n) = r.read_rows(&mut block) {
            if n == 0 {
                break;
            }
        }
    }
    let _ = ptsel::npy::read_labels(path);
}

/// Build a valid 1-d index whose ids sections hold `data` (split into offsets and blob), with
/// correct checksums so the open succeeds, then read every id (and one past the last). Returns
/// the ids of the rows when the index was written and opened.
pub fn ids_sections(dir: &Path, data: &[u8]) -> Option<Vec<ptsel::Result<String>>> {
    let (&n, rest) = data.split_first()?;
    let rows = usize::from(n % 16) + 1;
    let split = ((rows + 1) * 8).min(rest.len());
    let (offsets, blob) = rest.split_at(split);
    let path = dir.join("ids.ptsel");
    let meta = Meta {
        rows: rows as u64,
        dim: 1,
        dtype: DType::F32,
        metric: Metric::Ip,
        classes: 0,
        class_names: vec![],
        has_ids: true,
        created_unix: 0,
        build_seconds: 0.0,
        writer: "fuzz".into(),
        params: Default::default(),
    };
    let mut w = IndexWriter::create(&path, true).ok()?;
    let ok = w
        .add_section(
            SectionKind::Vectors,
            bytemuck::cast_slice(&vec![1f32; rows]),
        )
        .is_ok()
        && w.add_section(SectionKind::Norms, bytemuck::cast_slice(&vec![1f32; rows]))
            .is_ok()
        && w.add_section(SectionKind::IdsOffsets, offsets).is_ok()
        && w.add_section(SectionKind::IdsBlob, blob).is_ok()
        && meta
            .encode()
            .is_ok_and(|m| w.add_section(SectionKind::Meta, &m).is_ok());
    if !ok || w.commit().is_err() {
        return None;
    }
    let index = Index::open(&path).ok()?;
    let _ = index.id(rows);
    Some(
        (0..rows)
            .map(|r| index.id(r).map(|id| id.into_owned()))
            .collect(),
    )
}
