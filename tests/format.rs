//! The index format: round trips (property tests), corruption (truncation and byte flips are
//! always an error, never a panic) and concurrent readers.

use half::f16;
use proptest::prelude::*;
use ptsel::{build, BuildOptions, DType, Index, Labels, Metric, OpenOptions};
use std::path::{Path, PathBuf};

#[derive(Debug)]
struct Case {
    rows: usize,
    dim: usize,
    data: Vec<f32>,
    labels: Option<Vec<u32>>,
    ids: Option<Vec<String>>,
    dtype: DType,
    metric: Metric,
}

fn write_case(dir: &Path, c: &Case) -> PathBuf {
    let features = dir.join("f.npy");
    ptsel::npy::write_matrix(&features, &c.data, c.rows, c.dim).unwrap();
    let ids = c.ids.as_ref().map(|ids| {
        let p = dir.join("ids.txt");
        std::fs::write(&p, ids.join("\n") + "\n").unwrap();
        p
    });
    let out = dir.join("x.ptsel");
    let opts = BuildOptions {
        dtype: c.dtype,
        metric: c.metric,
        labels: c.labels.clone().map(|values| Labels {
            values,
            origin: "labels".into(),
        }),
        ids: ids.map(Into::into),
        force: true,
        ..BuildOptions::default()
    };
    let mut src = ptsel::npy::MatrixReader::open(&features).unwrap();
    build(&mut src, &out, opts, &|_, _, _| {}).unwrap();
    out
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        1usize..40,
        1usize..24,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0u8..3,
    )
        .prop_flat_map(|(rows, dim, f16s, labelled, with_ids, metric)| {
            (
                proptest::collection::vec(-100.0f32..100.0, rows * dim),
                proptest::collection::vec(0u32..5, rows),
                proptest::collection::vec("[a-z0-9/_.é]{1,12}", rows),
            )
                .prop_map(move |(data, labels, ids)| Case {
                    rows,
                    dim,
                    data,
                    labels: labelled.then_some(labels),
                    ids: with_ids.then_some(ids),
                    dtype: if f16s { DType::F16 } else { DType::F32 },
                    metric: [Metric::Cos, Metric::Ip, Metric::L2][metric as usize],
                })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn round_trip(c in case_strategy()) {
        let dir = tempfile::tempdir().unwrap();
        let path = write_case(dir.path(), &c);
        let index = Index::open_with(&path, OpenOptions { verify: true }).unwrap();
        prop_assert_eq!((index.rows(), index.dim(), index.metric()), (c.rows, c.dim, c.metric));
        let mut row = vec![0f32; c.dim];
        for i in 0..c.rows {
            let raw = &c.data[i * c.dim..(i + 1) * c.dim];
            let norm = raw.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
            prop_assert!((f64::from(index.norms()[i]) - norm).abs() <= 1e-5 * norm.max(1.0));
            index.vectors().row_into(i, c.dim, &mut row);
            for (j, (&got, &x)) in row.iter().zip(raw).enumerate() {
                let want = if c.metric == Metric::Cos && norm > 0.0 { (f64::from(x) / norm) as f32 } else { x };
                let want = if c.dtype == DType::F16 { f16::from_f32(want).to_f32() } else { want };
                prop_assert_eq!(got, want, "row {} col {}", i, j);
            }
            let id = index.id(i).unwrap();
            match &c.ids {
                Some(ids) => prop_assert_eq!(id.as_ref(), ids[i].as_str()),
                None => prop_assert_eq!(id.as_ref(), i.to_string()),
            }
        }
        if let Some(labels) = &c.labels {
            let classes = *labels.iter().max().unwrap() as usize + 1;
            prop_assert_eq!(index.classes(), classes);
            for k in 0..classes {
                let members: Vec<usize> = (0..c.rows).filter(|&i| labels[i] as usize == k).collect();
                prop_assert_eq!(index.class_counts()[k], members.len() as u64);
                for j in 0..c.dim {
                    let sum: f64 = members.iter().map(|&i| f64::from(c.data[i * c.dim + j])).sum();
                    let want = if members.is_empty() { 0.0 } else { sum / members.len() as f64 };
                    let got = index.class_means()[k * c.dim + j];
                    prop_assert!((got - want).abs() <= 1e-9 * want.abs().max(1.0), "class {} dim {}: {} vs {}", k, j, got, want);
                }
            }
            for (i, &l) in labels.iter().enumerate() {
                prop_assert_eq!(index.label(i).unwrap(), Some(l));
            }
        } else {
            prop_assert_eq!(index.classes(), 0);
            prop_assert!(index.labels().is_none());
        }
    }
}

fn sample_index(dir: &Path) -> PathBuf {
    let corpus = ptsel::synth::clustered(ptsel::synth::Spec {
        rows: 300,
        dim: 16,
        classes: 7,
        spread: 1.0,
        seed: 3,
    });
    let c = Case {
        rows: corpus.rows,
        dim: corpus.dim,
        data: corpus.data,
        labels: Some(corpus.labels),
        ids: Some(
            (0..corpus.rows)
                .map(|i| format!("img/{i:05}.jpg"))
                .collect(),
        ),
        dtype: DType::F16,
        metric: Metric::Cos,
    };
    write_case(dir, &c)
}

/// Open with verification and touch everything a reader would.
fn open_and_read(path: &Path) -> ptsel::Result<()> {
    let index = Index::open_with(path, OpenOptions { verify: true })?;
    for i in 0..index.rows() {
        index.id(i)?;
        index.label(i)?;
    }
    Ok(())
}

#[test]
fn truncation_is_always_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample_index(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.ptsel");
    let mut lens: Vec<usize> = (0..bytes.len()).step_by(97).collect();
    lens.extend([0, 1, 63, 64, 65, bytes.len() - 1]);
    for len in lens {
        std::fs::write(&cut, &bytes[..len]).unwrap();
        let err = Index::open(&cut).expect_err(&format!("truncated to {len} bytes but opened"));
        assert!(
            err.to_string().contains("cut.ptsel"),
            "error does not name the file: {err}"
        );
    }
}

#[test]
fn every_byte_flip_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample_index(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    let bad = dir.path().join("bad.ptsel");
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    // Every byte of the header and table, and a sample of the rest.
    let table_start = bytes.len() - 8 * 40;
    let mut positions: Vec<usize> = (0..64)
        .chain(table_start.saturating_sub(64)..bytes.len())
        .collect();
    for _ in 0..400 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        positions.push((rng % bytes.len() as u64) as usize);
    }
    for pos in positions {
        let mut b = bytes.clone();
        b[pos] ^= 1 << (pos % 8);
        std::fs::write(&bad, &b).unwrap();
        assert!(
            open_and_read(&bad).is_err(),
            "flip at byte {pos} of {} went unnoticed",
            bytes.len()
        );
    }
}

#[test]
fn hostile_headers_are_rejected_before_allocation() {
    use ptsel::format::{Header, HEADER_LEN};
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("hostile.ptsel");
    let cases = [
        Header {
            version: 1,
            table_offset: u64::MAX - 8,
            section_count: 3,
            file_len: 128,
            table_checksum: 0,
        },
        Header {
            version: 1,
            table_offset: 64,
            section_count: u32::MAX,
            file_len: 128,
            table_checksum: 0,
        },
        Header {
            version: 999,
            table_offset: 64,
            section_count: 0,
            file_len: 128,
            table_checksum: 0,
        },
        Header {
            version: 1,
            table_offset: 64,
            section_count: 0,
            file_len: 128,
            table_checksum: ptsel::format::checksum(&[]),
        },
    ];
    for h in cases {
        let mut b = h.to_bytes().to_vec();
        b.resize(128, 0);
        assert_eq!(b.len() - HEADER_LEN, 64);
        std::fs::write(&bad, &b).unwrap();
        let err = Index::open(&bad).unwrap_err().to_string();
        assert!(err.contains("hostile.ptsel"), "{err}");
    }
}

#[test]
fn concurrent_readers_in_threads_and_processes() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample_index(dir.path());
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| open_and_read(&path).unwrap());
        }
    });
    let children: Vec<_> = (0..6)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_ptsel"))
                .arg("verify")
                .arg(&path)
                .output()
                .unwrap()
        })
        .collect();
    for out in children {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn unknown_sections_are_skipped() {
    use ptsel::format::{IndexWriter, Meta, SectionKind};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.ptsel");
    let meta = Meta {
        rows: 2,
        dim: 2,
        dtype: DType::F32,
        metric: Metric::Ip,
        classes: 0,
        class_names: vec![],
        has_ids: false,
        created_unix: 0,
        build_seconds: 0.0,
        writer: "test".into(),
        params: Default::default(),
    };
    let mut w = IndexWriter::create(&path, false).unwrap();
    w.add_section(SectionKind::Unknown(4242), b"from a later version")
        .unwrap();
    w.add_section(
        SectionKind::Vectors,
        bytemuck::cast_slice(&[1f32, 2.0, 3.0, 4.0]),
    )
    .unwrap();
    w.add_section(
        SectionKind::Norms,
        bytemuck::cast_slice(&[5f32.sqrt(), 5.0]),
    )
    .unwrap();
    w.add_section(SectionKind::Meta, &meta.encode().unwrap())
        .unwrap();
    w.commit().unwrap();
    let index = Index::open_with(&path, OpenOptions { verify: true }).unwrap();
    assert_eq!(index.rows(), 2);
    assert!(index
        .sections()
        .iter()
        .any(|s| s.kind == SectionKind::Unknown(4242)));
}
