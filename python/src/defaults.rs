//! The library's defaults as Python sees them: `ptsel.defaults()`, and the parameters of
//! `Index.select`, `Index.search`, `Index.near_duplicates` and `ptsel.build` resolved from them.
//! Every tunable argument of the binding is `None` by default and takes its value here, from
//! the library's constants ([`SelectParams::DEFAULT`], [`ptsel::engine::DEFAULT_K`],
//! [`BuildOptions::default`], ...): the CLI's `--help` shows the same ones.

use crate::errors::{bad_arg, OrRaise};
use ptsel::engine::{DEFAULT_EF, DEFAULT_K};
use ptsel::select::{Method, SelectParams, DEFAULT_CLASSES, DEFAULT_EXCLUDE_THRESHOLD};
use ptsel::{hnsw, kmeans, partitions, BuildOptions, SearchOpts};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use serde_json::{json, Value};
use std::fmt::Debug;
use std::str::FromStr;

/// The kinds `ptsel.defaults(kind)` knows, in the order of the full dict.
const KINDS: [&str; 4] = ["select", "search", "near_duplicates", "build"];

/// The library's name of `value`: the one it parses back from (its variant in lower case, as the
/// CLI's `--help` shows it).
pub fn name_of<T: Debug + FromStr + PartialEq>(value: T) -> PyResult<String> {
    let name = format!("{value:?}").to_lowercase();
    match name.parse::<T>() {
        Ok(back) if back == value => Ok(name),
        _ => Err(PyRuntimeError::new_err(format!(
            "no name parses back to {value:?} (internal error)"
        ))),
    }
}

/// The name of a selection method (`"uot"`, `"knn"`, ...), as the library serialises it.
pub fn method_name(method: Method) -> PyResult<String> {
    match serde_json::to_value(method) {
        Ok(Value::String(s)) => Ok(s),
        _ => Err(PyRuntimeError::new_err(format!(
            "method {method:?} has no name (internal error)"
        ))),
    }
}

/// `x` as the decimal it was written as (`0.95f32` is `0.95`, not `0.949999988079071`).
fn decimal(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

/// The parameter `name` parsed from its Python string, or `default` when `None`.
pub fn parsed<T: FromStr<Err = ptsel::Error>>(value: Option<&str>, default: T) -> PyResult<T> {
    value.map_or(Ok(default), |v| v.parse().or_raise())
}

/// The defaults of a selection with `method`: [`SelectParams::DEFAULT`] with that method, or the
/// method's own where the library has some.
pub fn select_params(method: Method) -> SelectParams {
    SelectParams::for_method(method)
}

/// `Index.select`'s keyword arguments with the library's defaults (those of `method`, the
/// default method's when `None`).
fn select(method: Option<&str>) -> PyResult<Value> {
    let method = parsed(method, SelectParams::DEFAULT.method)?;
    let d = select_params(method);
    Ok(json!({
        "method": method_name(d.method)?,
        // Class-level methods keep this many classes when neither classes nor a budget is
        // given (kNN needs a budget).
        "classes": DEFAULT_CLASSES,
        "budget": null,
        "p_m": d.p_m,
        "eps": d.uot.eps,
        "tau_source": d.uot.tau_source,
        "tau_target": d.uot.tau_target,
        "max_iter": d.uot.max_iter,
        "tol": d.uot.tol,
        "uot_domain": name_of(d.uot.domain)?,
        "per_target": d.per_target,
        "exact": d.exact,
        // None: resolved from per_target (Index.knn_search shows the value).
        "ef": d.ef,
        "probes": d.probes,
        "seed": d.seed,
        "pseudo_classes": d.pseudo_classes,
        "graph_k": d.graph_k,
        "reverse_k": d.reverse_k,
        "draw": name_of(d.draw)?,
        "exclude_threshold": decimal(DEFAULT_EXCLUDE_THRESHOLD),
        "device": name_of(d.device)?,
    }))
}

/// `Index.search`'s keyword arguments with the library's defaults.
fn search() -> PyResult<Value> {
    let d = SearchOpts::default();
    Ok(json!({
        "k": DEFAULT_K,
        "ef": d.ef.unwrap_or(DEFAULT_EF),
        "exact": d.exact,
        "probes": d.probes,
        "threads": d.threads,
        "device": name_of(d.device)?,
    }))
}

/// `ptsel.build`'s keyword arguments with the library's defaults.
fn build() -> PyResult<Value> {
    let d = BuildOptions::default();
    let graph = d.hnsw.unwrap_or(hnsw::Params::DEFAULT);
    let parts = partitions::Params::DEFAULT;
    Ok(json!({
        "dtype": d.dtype.name(),
        "metric": d.metric.name(),
        "hnsw": d.hnsw.is_some(),
        "m": graph.m,
        "ef_construction": graph.ef_construction,
        "graph_layout": graph.layout.name(),
        "seed": graph.seed,
        "kmeans": d.kmeans.map(|k| k.k),
        "kmeans_iters": d.kmeans.map_or(kmeans::DEFAULT_ITERS, |k| k.iters),
        // None: no partitions; "auto" (or a count) builds them, "auto" 2 sqrt(rows) of them.
        "partitions": d.partitions.map(|p| p.partitions),
        "partition_codes": d.partitions.unwrap_or(parts).codes.name(),
    }))
}

/// `Index.near_duplicates`'s keyword arguments with the library's defaults.
fn near_duplicates() -> Value {
    json!({ "threshold": decimal(DEFAULT_EXCLUDE_THRESHOLD) })
}

fn of_kind(kind: &str, method: Option<&str>) -> PyResult<Value> {
    match kind {
        "select" => select(method),
        _ if method.is_some() => Err(bad_arg("method", "only for the kind \"select\"")),
        "search" => search(),
        "near_duplicates" => Ok(near_duplicates()),
        "build" => build(),
        _ => Err(bad_arg(
            "kind",
            format!(
                "unknown kind {kind:?} (expected one of: {})",
                KINDS.join(", ")
            ),
        )),
    }
}

/// The library's defaults of the Python arguments that are `None` by default, which the CLI's
/// `--help` shows too: `{"select": {...}, "search": {...}, "near_duplicates": {...},
/// "build": {...}}`, each keyed by the keyword argument's name; or one of them with `kind`.
/// `method` gives the defaults of that selection method (`kind="select"`).
///
/// A value of None means "not used unless given" (`budget`, `probes`, `kmeans`, ...), except
/// `select`'s `ef`, which `per_target` decides (`Index.knn_search` shows it).
#[pyfunction]
#[pyo3(signature = (kind=None, *, method=None))]
pub fn defaults<'py>(
    py: Python<'py>,
    kind: Option<&str>,
    method: Option<&str>,
) -> PyResult<Bound<'py, PyAny>> {
    let value = match kind {
        Some(kind) => of_kind(kind, method)?,
        None => {
            let mut all = serde_json::Map::new();
            for kind in KINDS {
                let m = if kind == "select" { method } else { None };
                all.insert(kind.to_string(), of_kind(kind, m)?);
            }
            Value::Object(all)
        }
    };
    crate::selection::json_to_py(py, &value)
}
