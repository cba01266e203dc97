//! The metadata section: shape, dtype, metric, classes and creation parameters.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Label value meaning "this row has no label".
pub const NO_LABEL: u32 = u32::MAX;

/// Element type of the stored vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// IEEE half precision (default: half the size, recall within noise).
    F16,
    /// IEEE single precision.
    F32,
}

parse_by_name!(DType, "dtype", { "f16" => DType::F16, "f32" => DType::F32 });

impl DType {
    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            DType::F16 => 2,
            DType::F32 => 4,
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            DType::F16 => "f16",
            DType::F32 => "f32",
        }
    }
}

/// Similarity used for search. With `Cos` the stored vectors are unit-normalised (the raw
/// norms stay in the norms section); with `Ip` and `L2` they are stored as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Cosine similarity (higher is closer).
    Cos,
    /// Inner product (higher is closer).
    Ip,
    /// Squared Euclidean distance (lower is closer).
    L2,
}

parse_by_name!(Metric, "metric", { "cos" => Metric::Cos, "ip" => Metric::Ip, "l2" => Metric::L2 });

impl Metric {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Cos => "cos",
            Metric::Ip => "ip",
            Metric::L2 => "l2",
        }
    }

    /// The code a derived section's header stores the metric as.
    pub fn code(self) -> u32 {
        match self {
            Metric::Cos => 1,
            Metric::Ip => 2,
            Metric::L2 => 3,
        }
    }

    /// The metric of a stored [`Metric::code`]; `None` for an unknown code.
    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(Metric::Cos),
            2 => Some(Metric::Ip),
            3 => Some(Metric::L2),
            _ => None,
        }
    }
}

/// Contents of the metadata section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Number of rows (samples).
    pub rows: u64,
    /// Vector dimension.
    pub dim: u32,
    /// Element type of the vectors section.
    pub dtype: DType,
    /// Search metric; decides whether stored vectors are normalised.
    pub metric: Metric,
    /// Number of classes (labels are `0..classes`); 0 when the corpus has no labels.
    pub classes: u32,
    /// Optional class names, one per class.
    pub class_names: Vec<String>,
    /// Whether an ids section is present (otherwise a row's id is its row number).
    pub has_ids: bool,
    /// Seconds since the Unix epoch when the build finished.
    pub created_unix: u64,
    /// Seconds the build took.
    pub build_seconds: f64,
    /// ptsel version that wrote the file.
    pub writer: String,
    /// Creation parameters (input paths, HNSW and k-means settings, ...), for `info`.
    pub params: BTreeMap<String, String>,
}

impl Meta {
    /// bincode configuration used for the metadata section.
    pub fn config() -> bincode::config::Configuration<
        bincode::config::LittleEndian,
        bincode::config::Varint,
        bincode::config::Limit<{ 16 << 20 }>,
    > {
        bincode::config::standard().with_limit::<{ 16 << 20 }>()
    }

    /// Serialise with bincode; fails only past the 16 MiB limit (absurdly many class names).
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        bincode::serde::encode_to_vec(self, Self::config()).map_err(|e| e.to_string())
    }

    /// Deserialise, refusing trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let (meta, used): (Meta, usize) =
            bincode::serde::decode_from_slice(bytes, Self::config()).map_err(|e| e.to_string())?;
        if used != bytes.len() {
            return Err(format!(
                "{} trailing bytes after metadata",
                bytes.len() - used
            ));
        }
        Ok(meta)
    }
}
