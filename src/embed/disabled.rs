//! The embedder of a build without the `torch` feature: same API, construction fails with
//! [`Error::Unavailable`], so the CLI needs no `cfg`. The type is uninhabited: once `new` has
//! failed, no method can ever be called.

use super::{BadImage, EmbedOptions, EmbedStats, ImageFolder};
use crate::error::{Error, Result};
use std::path::Path;

/// Runs a TorchScript backbone over an [`ImageFolder`] (needs the `torch` feature).
pub enum Embedder {}

impl Embedder {
    /// Always [`Error::Unavailable`]: this build has no libtorch.
    pub fn new(_model: &Path, _folder: ImageFolder, _opts: EmbedOptions) -> Result<Self> {
        Err(Error::Unavailable(
            "built without the torch feature: rebuild with `cargo build --release --features torch` (libtorch from scripts/install-libtorch.sh)".into(),
        ))
    }

    /// The images being embedded.
    pub fn folder(&self) -> &ImageFolder {
        match *self {}
    }

    /// Feature dimension of the model.
    pub fn dim(&self) -> usize {
        match *self {}
    }

    /// Images skipped so far.
    pub fn bad(&self) -> &[BadImage] {
        match *self {}
    }

    /// Timings so far.
    pub fn stats(&self) -> EmbedStats {
        match *self {}
    }
}

impl crate::RowSource for Embedder {
    fn rows(&self) -> usize {
        match *self {}
    }
    fn dim(&self) -> usize {
        match *self {}
    }
    fn read_rows(&mut self, _out: &mut [f32]) -> Result<usize> {
        match *self {}
    }
    fn origin(&self) -> String {
        match *self {}
    }
}
