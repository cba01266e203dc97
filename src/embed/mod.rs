//! Feature extraction: one forward pass of a TorchScript backbone over an image folder, the step
//! that turns a pre-training corpus into the features an index is built from (docs/ARCHITECTURE.md,
//! "The method", step 1).
//!
//! - [`ImageFolder`] lists the images: torchvision's ImageFolder layout (one sub-folder per class,
//!   sorted folder names are classes `0..C-1`) or a flat folder (no labels). Ids are the paths
//!   relative to the folder, `/`-separated, in sorted order, so runs are deterministic.
//! - [`Embedder`] decodes and preprocesses batches on a thread pool while the model runs on the
//!   previous batch (a bounded channel between the two), and is a [`RowSource`](crate::RowSource):
//!   the builder streams its rows straight into an index.
//!
//! The backend needs the cargo feature `torch` (libtorch, see `scripts/install-libtorch.sh`).
//! Without it, [`Embedder::new`] returns [`Error::Unavailable`] and the rest of the API is the
//! same, so callers need no `cfg`.

use crate::error::{Error, IoContext, Result};
use std::path::{Path, PathBuf};

#[cfg(not(feature = "torch"))]
mod disabled;
#[cfg(feature = "torch")]
mod pipeline;
#[cfg(feature = "torch")]
pub mod preprocess;
mod sink;

pub use sink::{build_from_images, write_features};

#[cfg(not(feature = "torch"))]
pub use disabled::Embedder;
#[cfg(feature = "torch")]
pub use pipeline::Embedder;

/// File extensions (lower case) read as images, the formats this build decodes.
pub const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

/// ImageNet channel means and standard deviations of torchvision's `Normalize`.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// See [`IMAGENET_MEAN`].
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Parameters of an embedding run.
#[derive(Debug, Clone)]
pub struct EmbedOptions {
    /// Images per forward pass.
    pub batch: usize,
    /// Length the shorter side is resized to (torchvision `Resize(resize)`).
    pub resize: u32,
    /// Side of the centre crop fed to the model (torchvision `CenterCrop(crop)`).
    pub crop: u32,
    /// Threads for libtorch's intra-op parallelism and, separately, for decoding.
    pub threads: usize,
    /// Skip unreadable images (listed by [`Embedder::bad`]) instead of failing.
    pub skip_bad: bool,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions {
            batch: 64,
            resize: 256,
            crop: 224,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            skip_bad: false,
        }
    }
}

/// Largest `--resize` accepted (keeps a decoded, resized image well below a few hundred MB).
const MAX_RESIZE: u32 = 8192;

impl EmbedOptions {
    /// Check the parameters.
    pub fn validate(&self) -> Result<()> {
        if self.batch == 0 || self.threads == 0 || self.crop == 0 {
            return Err(Error::invalid("batch, threads and crop must be at least 1"));
        }
        if self.resize < self.crop || self.resize > MAX_RESIZE {
            return Err(Error::invalid(format!(
                "resize {} must be between the crop {} and {MAX_RESIZE} (the crop is taken from the resized image)",
                self.resize, self.crop
            )));
        }
        Ok(())
    }
}

/// An image that could not be read or decoded, skipped under [`EmbedOptions::skip_bad`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadImage {
    /// Position in the folder's sorted list.
    pub position: usize,
    /// Id (path relative to the folder).
    pub id: String,
    /// What went wrong.
    pub problem: String,
}

/// Timings of an embedding run, to see where the time goes.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmbedStats {
    /// Images embedded.
    pub images: usize,
    /// Images skipped as unreadable.
    pub skipped: usize,
    /// Seconds in the model's forward passes (wall clock).
    pub model_seconds: f64,
    /// Seconds spent reading, decoding and preprocessing, summed over the decoding threads.
    pub decode_seconds: f64,
    /// Seconds the consumer waited for decoded batches (decoding not hidden behind the model).
    pub wait_seconds: f64,
}

/// The images of a folder, in a fixed order, with their labels when the folder has classes.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    root: PathBuf,
    ids: Vec<String>,
    labels: Option<Vec<u32>>,
    class_names: Vec<String>,
}

impl ImageFolder {
    /// List the images under `root`. With sub-folders, each is a class (sorted by name, labels
    /// `0..C-1`) and the images in it (recursively) are its samples; an empty class folder or
    /// images beside the class folders are errors. Without sub-folders, the images of `root`
    /// are an unlabelled corpus. Files whose extension is not in [`IMAGE_EXTENSIONS`] are ignored.
    pub fn scan(root: &Path) -> Result<Self> {
        let (dirs, files) = list_dir(root)?;
        let mut folder = ImageFolder {
            root: root.to_path_buf(),
            ids: Vec::new(),
            labels: None,
            class_names: Vec::new(),
        };
        if dirs.is_empty() {
            folder.ids = files;
        } else {
            if let Some(f) = files.first() {
                return Err(Error::input(
                    root,
                    format!(
                        "holds class folders and also the image {f}: move it into a class folder"
                    ),
                ));
            }
            let mut labels = Vec::new();
            for (label, class) in dirs.into_iter().enumerate() {
                let before = folder.ids.len();
                walk(root, &class, &mut folder.ids)?;
                if folder.ids.len() == before {
                    return Err(Error::input(
                        root.join(&class),
                        "class folder holds no images",
                    ));
                }
                let label = u32::try_from(label)
                    .map_err(|_| Error::input(root, "too many class folders"))?;
                labels.resize(folder.ids.len(), label);
                folder.class_names.push(class);
            }
            folder.labels = Some(labels);
        }
        if folder.ids.is_empty() {
            return Err(Error::input(
                root,
                format!("no images ({}) found", IMAGE_EXTENSIONS.join(", ")),
            ));
        }
        Ok(folder)
    }

    /// The folder scanned.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there are no images (never, for a scanned folder).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Paths relative to the root, `/`-separated, one per image.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Class of each image (ImageFolder layout), `None` for a flat folder.
    pub fn labels(&self) -> Option<&[u32]> {
        self.labels.as_deref()
    }

    /// Class folder names in label order (empty for a flat folder).
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// Full path of image `i`.
    pub fn path(&self, i: usize) -> PathBuf {
        self.root.join(&self.ids[i])
    }
}

/// Sub-folder names and image file names of `dir`, each sorted. Names must be UTF-8 without
/// line breaks, since they become ids and class names stored one per line.
fn list_dir(dir: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .ok()
            .filter(|n| !n.contains(['\n', '\r']))
            .ok_or_else(|| {
                Error::input(
                    &path,
                    "file name is not UTF-8 or holds a line break (ids are stored one per line)",
                )
            })?;
        // metadata() follows symbolic links, as torchvision does.
        if std::fs::metadata(&path).at(&path)?.is_dir() {
            dirs.push(name);
        } else if is_image_name(&name) {
            files.push(name);
        }
    }
    dirs.sort_unstable();
    files.sort_unstable();
    Ok((dirs, files))
}

fn is_image_name(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Append the images under `root/rel` (recursively) as `rel/...` ids, sorted by id.
fn walk(root: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
    let start = out.len();
    let mut stack = vec![rel.to_string()];
    while let Some(dir) = stack.pop() {
        let (dirs, files) = list_dir(&root.join(&dir))?;
        out.extend(files.into_iter().map(|f| format!("{dir}/{f}")));
        stack.extend(dirs.into_iter().map(|d| format!("{dir}/{d}")));
    }
    out[start..].sort_unstable();
    Ok(())
}

/// Write the skipped images as `id<TAB>problem` lines, atomically.
pub fn write_bad_report(path: &Path, bad: &[BadImage]) -> Result<()> {
    crate::output::atomic_write(path, |w| {
        use std::io::Write;
        bad.iter()
            .try_for_each(|b| writeln!(w, "{}\t{}", b.id, b.problem.replace(['\n', '\r'], " ")))
    })
}
