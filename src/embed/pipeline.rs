//! The embedder: a decoding thread (with its own rayon pool) prepares batches of preprocessed
//! images and hands them over a bounded channel to the caller's thread, which runs the
//! TorchScript model on them. Decoding batch `k+1` thus overlaps the forward pass of batch `k`,
//! and at most [`QUEUED_BATCHES`] decoded batches wait in memory.

use super::{preprocess, BadImage, EmbedOptions, EmbedStats, ImageFolder};
use crate::error::{Error, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use tch::{CModule, Kind, Tensor};

/// Decoded batches allowed to wait for the model.
const QUEUED_BATCHES: usize = 2;

/// One batch from the decoder: the preprocessed images that decoded, packed `[n, 3, crop, crop]`,
/// their positions, and the positions that did not decode, with the error.
struct Decoded {
    data: Vec<f32>,
    positions: Vec<usize>,
    failed: Vec<(usize, Error)>,
}

/// Runs a TorchScript backbone over an [`ImageFolder`]; a [`RowSource`](crate::RowSource) of
/// one feature row per image, in the folder's order.
pub struct Embedder {
    model: CModule,
    model_path: PathBuf,
    folder: Arc<ImageFolder>,
    opts: EmbedOptions,
    dim: usize,
    batches: Option<Receiver<Decoded>>,
    decoder: Option<JoinHandle<()>>,
    decode_nanos: Arc<AtomicU64>,
    /// Features computed but not yet handed out.
    pending: Vec<f32>,
    pending_from: usize,
    bad: Vec<BadImage>,
    skipped: Vec<usize>,
    stats: EmbedStats,
}

/// The first line of a libtorch error (the rest is a C++ backtrace).
fn torch_message(e: &tch::TchError) -> String {
    let text = e.to_string();
    let text = text
        .split("\nException raised from")
        .next()
        .unwrap_or(&text);
    text.trim().to_string()
}

impl Embedder {
    /// Load the TorchScript module at `model` (on the CPU, in eval mode), check with one forward
    /// pass on a blank image that it maps `[B, 3, crop, crop]` to `[B, D]` or `[B, D, 1, 1]`, set
    /// libtorch's thread count and start decoding `folder`.
    pub fn new(model: &Path, folder: ImageFolder, opts: EmbedOptions) -> Result<Self> {
        opts.validate()?;
        let threads =
            i32::try_from(opts.threads).map_err(|_| Error::invalid("too many threads"))?;
        tch::set_num_threads(threads);
        if !model.is_file() {
            return Err(Error::input(model, "model file not found"));
        }
        let mut module = CModule::load(model).map_err(|e| {
            Error::input(
                model,
                format!("cannot load a TorchScript module: {}", torch_message(&e)),
            )
        })?;
        module
            .f_set_eval()
            .map_err(|e| Error::input(model, torch_message(&e)))?;
        let mut embedder = Embedder {
            model: module,
            model_path: model.to_path_buf(),
            folder: Arc::new(folder),
            opts,
            dim: 0,
            batches: None,
            decoder: None,
            decode_nanos: Arc::new(AtomicU64::new(0)),
            pending: Vec::new(),
            pending_from: 0,
            bad: Vec::new(),
            skipped: Vec::new(),
            stats: EmbedStats::default(),
        };
        let side = embedder.opts.crop as usize;
        embedder.dim = embedder.forward(&vec![0.0; 3 * side * side], 1)?.len();
        embedder.start_decoder()?;
        Ok(embedder)
    }

    /// The images being embedded.
    pub fn folder(&self) -> &ImageFolder {
        &self.folder
    }

    /// Feature dimension of the model.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Images skipped so far (with [`EmbedOptions::skip_bad`]).
    pub fn bad(&self) -> &[BadImage] {
        &self.bad
    }

    /// Timings so far.
    pub fn stats(&self) -> EmbedStats {
        EmbedStats {
            decode_seconds: self.decode_nanos.load(Ordering::Relaxed) as f64 * 1e-9,
            ..self.stats
        }
    }

    fn start_decoder(&mut self) -> Result<()> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.opts.threads)
            .thread_name(|i| format!("ptsel-decode-{i}"))
            .build()
            .map_err(|e| Error::invalid(format!("cannot start the decoding threads: {e}")))?;
        let (tx, rx) = sync_channel(QUEUED_BATCHES);
        let (folder, opts, nanos) = (
            Arc::clone(&self.folder),
            self.opts.clone(),
            Arc::clone(&self.decode_nanos),
        );
        let handle = std::thread::Builder::new()
            .name("ptsel-decoder".into())
            .spawn(move || {
                let side = opts.crop as usize;
                let item = 3 * side * side;
                for start in (0..folder.len()).step_by(opts.batch) {
                    let n = opts.batch.min(folder.len() - start);
                    let mut data = vec![0f32; n * item];
                    let results: Vec<Result<()>> = pool.install(|| {
                        data.par_chunks_exact_mut(item)
                            .enumerate()
                            .map(|(k, out)| {
                                let t = Instant::now();
                                let r = preprocess::load(
                                    &folder.path(start + k),
                                    opts.resize,
                                    opts.crop,
                                    out,
                                );
                                nanos.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                                r
                            })
                            .collect()
                    });
                    let batch = pack(data, item, start, results);
                    // The receiver is gone when the consumer stopped (an error, or dropped early).
                    if tx.send(batch).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| Error::invalid(format!("cannot start the decoding thread: {e}")))?;
        self.batches = Some(rx);
        self.decoder = Some(handle);
        Ok(())
    }

    /// Run the model on `rows` preprocessed images; returns `rows * D` finite values.
    fn forward(&mut self, data: &[f32], rows: usize) -> Result<Vec<f32>> {
        let side = i64::from(self.opts.crop);
        let model_err = |what: &str, e: tch::TchError| {
            Error::input(&self.model_path, format!("{what}: {}", torch_message(&e)))
        };
        let t = Instant::now();
        let input = Tensor::f_from_data_size(
            bytemuck::cast_slice(data),
            &[rows as i64, 3, side, side],
            Kind::Float,
        )
        .map_err(|e| model_err("cannot make the input tensor", e))?;
        let output = tch::no_grad(|| self.model.forward_ts(&[input]))
            .map_err(|e| model_err("forward pass failed", e))?;
        let size = output.size();
        let dim = match size[..] {
            [b, d] | [b, d, 1, 1] if b == rows as i64 && d > 0 => d as usize,
            _ => {
                return Err(Error::input(
                    &self.model_path,
                    format!("model output has shape {size:?} for an input of [{rows}, 3, {side}, {side}]; expected [{rows}, D] or [{rows}, D, 1, 1]"),
                ))
            }
        };
        if self.dim != 0 && dim != self.dim {
            return Err(Error::input(
                &self.model_path,
                format!("model output dimension changed from {} to {dim}", self.dim),
            ));
        }
        let mut values = vec![0f32; rows * dim];
        output
            .f_to_kind(Kind::Float)
            .and_then(|t| t.f_contiguous())
            .and_then(|t| t.f_copy_data(&mut values, rows * dim))
            .map_err(|e| model_err("cannot read the model output", e))?;
        self.stats.model_seconds += t.elapsed().as_secs_f64();
        Ok(values)
    }

    /// Receive the next decoded batch and embed it into `pending`; false at the end.
    fn next_batch(&mut self) -> Result<bool> {
        let Some(rx) = &self.batches else {
            return Ok(false);
        };
        let t = Instant::now();
        let Ok(batch) = rx.recv() else {
            // The decoder sent every batch and hung up.
            self.finish_decoder()?;
            return Ok(false);
        };
        self.stats.wait_seconds += t.elapsed().as_secs_f64();
        for (position, error) in batch.failed {
            if !self.opts.skip_bad {
                return Err(error);
            }
            let problem = match error {
                Error::Input { problem, .. } => problem,
                Error::Io { error, .. } => error.to_string(),
                e => e.to_string(),
            };
            self.bad.push(BadImage {
                position,
                id: self.folder.ids()[position].clone(),
                problem,
            });
            self.skipped.push(position);
        }
        self.stats.skipped = self.bad.len();
        let rows = batch.positions.len();
        if rows > 0 {
            let values = self.forward(&batch.data, rows)?;
            if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
                let position = batch.positions[bad / self.dim];
                return Err(Error::input(
                    self.folder.path(position),
                    format!("model output is {} (not finite)", values[bad]),
                ));
            }
            self.pending = values;
            self.pending_from = 0;
            self.stats.images += rows;
        }
        Ok(true)
    }

    fn finish_decoder(&mut self) -> Result<()> {
        self.batches = None;
        if let Some(h) = self.decoder.take() {
            h.join()
                .map_err(|_| Error::invalid("the image decoding thread panicked"))?;
        }
        Ok(())
    }
}

/// Move the images that decoded to the front of `data` and list the others.
fn pack(mut data: Vec<f32>, item: usize, start: usize, results: Vec<Result<()>>) -> Decoded {
    let mut positions = Vec::with_capacity(results.len());
    let mut failed = Vec::new();
    for (k, r) in results.into_iter().enumerate() {
        match r {
            Ok(()) => {
                let row = positions.len();
                if row != k {
                    data.copy_within(k * item..(k + 1) * item, row * item);
                }
                positions.push(start + k);
            }
            Err(e) => failed.push((start + k, e)),
        }
    }
    data.truncate(positions.len() * item);
    Decoded {
        data,
        positions,
        failed,
    }
}

impl crate::RowSource for Embedder {
    fn rows(&self) -> usize {
        self.folder.len()
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn read_rows(&mut self, out: &mut [f32]) -> Result<usize> {
        if out.len() < self.dim {
            return Err(Error::invalid(format!(
                "read_rows needs room for a row of {} values",
                self.dim
            )));
        }
        while self.pending_from == self.pending.len() {
            if !self.next_batch()? {
                return Ok(0);
            }
        }
        let available = &self.pending[self.pending_from..];
        let n = (out.len() / self.dim).min(available.len() / self.dim);
        out[..n * self.dim].copy_from_slice(&available[..n * self.dim]);
        self.pending_from += n * self.dim;
        Ok(n)
    }

    fn origin(&self) -> String {
        format!(
            "{} over {}",
            self.model_path.display(),
            self.folder.root().display()
        )
    }

    fn skipped(&self) -> &[usize] {
        &self.skipped
    }
}

impl Drop for Embedder {
    fn drop(&mut self) {
        // Close the channel first so a decoder blocked on a full queue stops, then wait for it.
        self.batches = None;
        if let Some(h) = self.decoder.take() {
            let _ = h.join();
        }
    }
}
