//! Feature extraction. With the `torch` feature: a small TorchScript model made here by tracing,
//! an image folder generated here (three classes, mixed sizes and formats, one corrupt file),
//! and checks of the layout, the preprocessing (against a hand-computed tensor), the features
//! (against a direct forward pass), bad-image handling and `build --images` (against embed +
//! build from .npy). Without it: the commands fail cleanly as unavailable.

use std::path::Path;
use std::process::{Command, Output};

fn ptsel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ptsel"))
        .args(args)
        .output()
        .expect("run ptsel")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An image folder in the ImageFolder layout; the content of the files does not matter for
/// the layout checks.
fn touch_folder(root: &Path, files: &[&str]) {
    for f in files {
        let p = root.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }
}

#[test]
fn folder_layout_classes_ids_and_errors() {
    use ptsel::embed::ImageFolder;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("imgs");
    touch_folder(
        &root,
        &[
            "dog/b.png",
            "cat/z.JPG",
            "cat/a/c.webp",
            "cat/b.jpeg",
            "dog/notes.txt",
            "dog/a.jpg",
        ],
    );
    let f = ImageFolder::scan(&root).unwrap();
    assert_eq!(f.class_names(), ["cat", "dog"]);
    assert_eq!(
        f.ids(),
        [
            "cat/a/c.webp",
            "cat/b.jpeg",
            "cat/z.JPG",
            "dog/a.jpg",
            "dog/b.png"
        ]
    );
    assert_eq!(f.labels().unwrap(), [0, 0, 0, 1, 1]);

    let flat = dir.path().join("flat");
    touch_folder(&flat, &["2.png", "10.jpg", "readme.md"]);
    let f = ImageFolder::scan(&flat).unwrap();
    assert_eq!(f.ids(), ["10.jpg", "2.png"]);
    assert!(f.labels().is_none() && f.class_names().is_empty());

    touch_folder(&root, &["loose.jpg"]);
    let e = ImageFolder::scan(&root).unwrap_err().to_string();
    assert!(e.contains("loose.jpg"), "{e}");
    std::fs::remove_file(root.join("loose.jpg")).unwrap();
    std::fs::create_dir(root.join("empty")).unwrap();
    let e = ImageFolder::scan(&root).unwrap_err().to_string();
    assert!(e.contains("empty") && e.contains("no images"), "{e}");
    let e = ImageFolder::scan(&dir.path().join("nothing"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nothing"), "{e}");
}

#[cfg(not(feature = "torch"))]
#[test]
fn embed_without_the_feature_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    touch_folder(dir.path(), &["a/x.png"]);
    let d = dir.path().to_str().unwrap();
    let out = dir.path().join("f.npy");
    let o = ptsel(&[
        "embed",
        "--model",
        "m.pt",
        "--images",
        d,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("torch feature"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[cfg(feature = "torch")]
mod torch {
    use super::{ptsel, stderr};
    use image::{GrayImage, Luma, Rgb, RgbImage, Rgba, RgbaImage};
    use ptsel::embed::preprocess::{crop_offset, load, preprocess, resized_dims};
    use ptsel::embed::{EmbedOptions, Embedder, ImageFolder, IMAGENET_MEAN, IMAGENET_STD};
    use ptsel::{Index, RowSource};
    use std::path::{Path, PathBuf};
    use tch::{nn, CModule, Device, Kind, Tensor};

    const RESIZE: u32 = 40;
    const CROP: u32 = 32;
    const DIM: i64 = 6;

    /// How the traced model shapes its output.
    enum Head {
        /// `[B, D, 1, 1]` (a pooled backbone).
        Pooled,
        /// `[B, D]`.
        Flat,
        /// `[B, D, 2, 2]`: not a feature vector.
        Spatial,
    }

    /// A small conv net traced to TorchScript and saved at `path`.
    fn make_model(path: &Path, head: Head) {
        tch::manual_seed(7);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let cfg = nn::ConvConfig {
            stride: 2,
            padding: 1,
            ..Default::default()
        };
        let conv1 = nn::conv2d(vs.root() / "c1", 3, 8, 3, cfg);
        let conv2 = nn::conv2d(vs.root() / "c2", 8, DIM, 3, cfg);
        vs.freeze();
        let mut forward = |x: &[Tensor]| {
            let h = x[0].apply(&conv1).relu().apply(&conv2);
            vec![match head {
                Head::Pooled => h.adaptive_avg_pool2d([1, 1]),
                Head::Flat => h.adaptive_avg_pool2d([1, 1]).flatten(1, -1),
                Head::Spatial => h.adaptive_avg_pool2d([2, 2]),
            }]
        };
        let example = Tensor::zeros([2, 3, CROP as i64, CROP as i64], (Kind::Float, Device::Cpu));
        let module =
            CModule::create_by_tracing("Backbone", "forward", &[example], &mut forward).unwrap();
        module.save(path).unwrap();
    }

    /// A colourful deterministic pattern (strong edges, so a wrong filter or crop shows).
    fn pattern(w: u32, h: u32, seed: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = |c: u32| {
                ((x * (7 + seed + c) + y * (13 + 3 * c) + seed * 31 + ((x / 4 + y / 3) % 2) * 90)
                    % 256) as u8
            };
            Rgb([v(0), v(1), v(2)])
        })
    }

    /// Three classes of mixed sizes and formats (upscaled and downscaled, grey and RGBA, nested
    /// sub-folder), a non-image file, and a corrupt JPEG. Returns (root, corrupt file id).
    fn make_folder(root: &Path) -> (PathBuf, &'static str) {
        for d in ["cat/sub", "dog", "zebra"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        pattern(60, 45, 1).save(root.join("cat/a.png")).unwrap();
        pattern(64, 48, 2).save(root.join("cat/b.jpg")).unwrap();
        pattern(30, 50, 3)
            .save(root.join("cat/sub/c.webp"))
            .unwrap();
        pattern(50, 50, 4).save(root.join("dog/x.jpg")).unwrap();
        GrayImage::from_fn(33, 20, |x, y| Luma([(x * 7 + y * 11) as u8]))
            .save(root.join("dog/y.png"))
            .unwrap();
        RgbaImage::from_fn(20, 33, |x, y| {
            Rgba([(x * 9) as u8, (y * 5) as u8, 77, (x + y) as u8])
        })
        .save(root.join("dog/z.png"))
        .unwrap();
        pattern(45, 31, 5).save(root.join("zebra/w.webp")).unwrap();
        std::fs::write(root.join("zebra/notes.txt"), "not an image").unwrap();
        let mut jpeg = std::fs::read(root.join("cat/b.jpg")).unwrap();
        jpeg.truncate(40);
        std::fs::write(root.join("zebra/bad.jpg"), jpeg).unwrap();
        (root.to_path_buf(), "zebra/bad.jpg")
    }

    fn options(skip_bad: bool, batch: usize) -> EmbedOptions {
        EmbedOptions {
            batch,
            resize: RESIZE,
            crop: CROP,
            threads: 2,
            skip_bad,
        }
    }

    /// PIL's antialiased bilinear weights for one axis: `out` rows of `len` normalised weights.
    fn triangle_weights(len: usize, out: usize) -> Vec<Vec<f64>> {
        let scale = len as f64 / out as f64;
        let support = scale.max(1.0);
        (0..out)
            .map(|o| {
                let centre = (o as f64 + 0.5) * scale;
                let w: Vec<f64> = (0..len)
                    .map(|i| (1.0 - ((i as f64 + 0.5 - centre) / support).abs()).max(0.0))
                    .collect();
                let sum: f64 = w.iter().sum();
                w.into_iter().map(|x| x / sum).collect()
            })
            .collect()
    }

    /// The evaluation transform computed by hand in f64 from its definition, resizing as PIL
    /// does: along the width first, rounded to 8 bits, then along the height.
    fn hand_transform(
        img: &RgbImage,
        rw: usize,
        rh: usize,
        left: usize,
        top: usize,
        crop: usize,
    ) -> Vec<f32> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let (wx, wy) = (triangle_weights(w, rw), triangle_weights(h, rh));
        let round = |v: f64| v.round().clamp(0.0, 255.0);
        let mut out = vec![0f32; 3 * crop * crop];
        for c in 0..3 {
            // wide[j][x]: row j of the image resized along the width.
            let wide: Vec<Vec<f64>> = (0..h)
                .map(|j| {
                    (0..rw)
                        .map(|x| {
                            round(
                                wx[x]
                                    .iter()
                                    .enumerate()
                                    .map(|(i, wi)| {
                                        wi * f64::from(img.get_pixel(i as u32, j as u32).0[c])
                                    })
                                    .sum(),
                            )
                        })
                        .collect()
                })
                .collect();
            for y in 0..crop {
                for x in 0..crop {
                    let v = round(
                        wy[top + y]
                            .iter()
                            .zip(&wide)
                            .map(|(wj, row)| wj * row[left + x])
                            .sum(),
                    );
                    out[c * crop * crop + y * crop + x] =
                        (v as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
                }
            }
        }
        out
    }

    #[test]
    fn resize_and_crop_geometry_follow_torchvision() {
        assert_eq!(resized_dims(500, 375, 256), (341, 256));
        assert_eq!(resized_dims(375, 500, 256), (256, 341));
        assert_eq!(resized_dims(300, 300, 256), (256, 256));
        assert_eq!(resized_dims(6, 4, 3), (4, 3));
        // Python's round: ties to even.
        assert_eq!(crop_offset(341, 224), 58);
        assert_eq!(crop_offset(343, 224), 60);
        assert_eq!(crop_offset(3, 2), 0);
        assert_eq!(crop_offset(256, 224), 16);
    }

    #[test]
    fn preprocessing_matches_a_hand_computed_tensor() {
        // Downscaling (antialiased, 6x4 -> 4x3, crop 2 at (1, 0)) and upscaling (3x2 -> 6x4,
        // crop 4 at (1, 0)).
        for (img, resize, crop, (rw, rh), (left, top)) in [
            (pattern(6, 4, 9), 3, 2, (4, 3), (1, 0)),
            (pattern(3, 2, 4), 4, 4, (6, 4), (1, 0)),
        ] {
            let expected = hand_transform(&img, rw, rh, left, top, crop as usize);
            let mut got = vec![0f32; expected.len()];
            preprocess(&img, resize, crop, &mut got).unwrap();
            for (k, (g, e)) in got.iter().zip(&expected).enumerate() {
                // One 8-bit level: the crate's f32 sum may round a tie the other way.
                let c = k / (crop * crop) as usize;
                assert!(
                    (g - e).abs() <= 1.0 / 255.0 / IMAGENET_STD[c] + 1e-6,
                    "value {k}: {g} vs {e}"
                );
            }
            let exact = got.iter().zip(&expected).filter(|(g, e)| g == e).count();
            assert!(
                exact * 10 >= got.len() * 9,
                "only {exact} of {} values exact",
                got.len()
            );
        }
    }

    /// Every row of an embedder.
    fn drain(e: &mut Embedder) -> Vec<f32> {
        let mut all = Vec::new();
        let mut block = vec![0f32; 4 * e.dim()];
        loop {
            let n = e.read_rows(&mut block).unwrap();
            if n == 0 {
                return all;
            }
            all.extend_from_slice(&block[..n * e.dim()]);
        }
    }

    #[test]
    fn features_equal_a_direct_forward_pass() {
        let dir = tempfile::tempdir().unwrap();
        let (root, bad) = make_folder(&dir.path().join("imgs"));
        let model = dir.path().join("m.pt");
        make_model(&model, Head::Pooled);
        let folder = ImageFolder::scan(&root).unwrap();
        assert_eq!(folder.class_names(), ["cat", "dog", "zebra"]);
        assert_eq!(
            folder.ids(),
            [
                "cat/a.png",
                "cat/b.jpg",
                "cat/sub/c.webp",
                "dog/x.jpg",
                "dog/y.png",
                "dog/z.png",
                "zebra/bad.jpg",
                "zebra/w.webp"
            ]
        );
        assert_eq!(folder.labels().unwrap(), [0, 0, 0, 1, 1, 1, 2, 2]);

        // Batches of 3: the corrupt file falls in the last, partial batch.
        let mut e = Embedder::new(&model, folder.clone(), options(true, 3)).unwrap();
        assert_eq!((e.rows(), e.dim()), (8, DIM as usize));
        let features = drain(&mut e);
        assert_eq!(e.skipped(), [6]);
        assert_eq!(e.bad().len(), 1);
        assert_eq!(e.bad()[0].id, bad);
        assert_eq!(features.len(), 7 * DIM as usize);

        // Oracle: the same images preprocessed one by one, one forward pass of the whole batch.
        let item = (3 * CROP * CROP) as usize;
        let good: Vec<usize> = (0..8).filter(|&i| i != 6).collect();
        let mut batch = vec![0f32; good.len() * item];
        for (k, &i) in good.iter().enumerate() {
            load(
                &folder.path(i),
                RESIZE,
                CROP,
                &mut batch[k * item..(k + 1) * item],
            )
            .unwrap();
        }
        let input =
            Tensor::from_slice(&batch).view([good.len() as i64, 3, CROP as i64, CROP as i64]);
        let out = CModule::load(&model)
            .unwrap()
            .forward_ts(&[input])
            .unwrap()
            .flatten(0, -1);
        let direct: Vec<f32> = Vec::try_from(&out).unwrap();
        assert_eq!(direct.len(), features.len());
        for (k, (a, b)) in features.iter().zip(&direct).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "feature {k}: {a} vs {b}"
            );
        }
        // Distinct images give distinct features (so a mix-up of rows would show).
        assert!(features[..DIM as usize] != features[DIM as usize..2 * DIM as usize]);
        let stats = e.stats();
        assert_eq!((stats.images, stats.skipped), (7, 1));
    }

    #[test]
    fn model_output_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("flat");
        std::fs::create_dir(&root).unwrap();
        pattern(40, 40, 1).save(root.join("one.png")).unwrap();
        let folder = ImageFolder::scan(&root).unwrap();
        let flat = dir.path().join("flat.pt");
        make_model(&flat, Head::Flat);
        let mut e = Embedder::new(&flat, folder.clone(), options(false, 4)).unwrap();
        assert_eq!(drain(&mut e).len(), DIM as usize);

        let spatial = dir.path().join("spatial.pt");
        make_model(&spatial, Head::Spatial);
        let err = Embedder::new(&spatial, folder.clone(), options(false, 4))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("spatial.pt")
                && err.contains("[1, 6, 2, 2]")
                && err.contains("[1, D, 1, 1]"),
            "{err}"
        );

        let junk = dir.path().join("junk.pt");
        std::fs::write(&junk, "not a model").unwrap();
        let err = Embedder::new(&junk, folder, options(false, 4))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("junk.pt") && err.contains("cannot load"),
            "{err}"
        );
    }

    #[test]
    fn cli_embed_corrupt_image_and_skip_bad() {
        let dir = tempfile::tempdir().unwrap();
        let (root, bad) = make_folder(&dir.path().join("imgs"));
        let model = dir.path().join("m.pt");
        make_model(&model, Head::Pooled);
        let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
        let (root, model) = (root.to_str().unwrap(), model.to_str().unwrap());
        let common = [
            "--model",
            model,
            "--images",
            root,
            "--resize",
            "40",
            "--crop",
            "32",
            "--threads",
            "2",
            "--quiet",
        ];

        let o = ptsel(&[&["embed"], &common[..], &["--out", &p("f.npy")]].concat());
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(bad), "{}", stderr(&o));
        assert!(!dir.path().join("f.npy").exists());

        let o = ptsel(
            &[
                &["embed"],
                &common[..],
                &[
                    "--out",
                    &p("f.npy"),
                    "--skip-bad",
                    "--labels",
                    &p("l.npy"),
                    "--ids",
                    &p("ids.txt"),
                    "--class-names",
                    &p("names.txt"),
                ],
            ]
            .concat(),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let f = ptsel::npy::read_matrix(&dir.path().join("f.npy")).unwrap();
        assert_eq!((f.rows, f.dim), (7, DIM as usize));
        assert_eq!(
            ptsel::npy::read_labels(&dir.path().join("l.npy")).unwrap(),
            [0, 0, 0, 1, 1, 1, 2]
        );
        let ids = std::fs::read_to_string(dir.path().join("ids.txt")).unwrap();
        assert_eq!(
            ids.lines().collect::<Vec<_>>(),
            [
                "cat/a.png",
                "cat/b.jpg",
                "cat/sub/c.webp",
                "dog/x.jpg",
                "dog/y.png",
                "dog/z.png",
                "zebra/w.webp"
            ]
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("names.txt")).unwrap(),
            "cat\ndog\nzebra\n"
        );
        let report = std::fs::read_to_string(dir.path().join("f.bad.txt")).unwrap();
        assert_eq!(report.lines().count(), 1);
        assert!(report.starts_with(&format!("{bad}\t")), "{report}");

        // build --images equals embed + build from the .npy, section by section.
        let o = ptsel(
            &[
                &["build"],
                &common[..],
                &["--skip-bad", "--out", &p("direct.ptsel")],
            ]
            .concat(),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(dir.path().join("direct.bad.txt").exists());
        let o = ptsel(&[
            "build",
            "--features",
            &p("f.npy"),
            "--labels",
            &p("l.npy"),
            "--ids",
            &p("ids.txt"),
            "--class-names",
            &p("names.txt"),
            "--out",
            &p("via-npy.ptsel"),
            "--quiet",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let (a, b) = (
            Index::open(dir.path().join("direct.ptsel")).unwrap(),
            Index::open(dir.path().join("via-npy.ptsel")).unwrap(),
        );
        assert_eq!((a.rows(), a.dim(), a.classes()), (7, DIM as usize, 3));
        assert_eq!(
            (a.rows(), a.dim(), a.classes()),
            (b.rows(), b.dim(), b.classes())
        );
        assert_eq!(a.meta().class_names, b.meta().class_names);
        use ptsel::format::SectionKind as K;
        for kind in [
            K::Vectors,
            K::Norms,
            K::Labels,
            K::ClassCounts,
            K::ClassMeans,
            K::IdsBlob,
            K::IdsOffsets,
        ] {
            assert_eq!(a.section_bytes(kind), b.section_bytes(kind), "{kind:?}");
        }
        assert_eq!(a.id(6).unwrap(), "zebra/w.webp");
        assert_eq!(a.class_counts(), [3, 3, 1]);
    }
}
