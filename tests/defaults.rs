//! The library owns every default: what `ptsel CMD --help` shows as `[default: ...]` is the
//! library's value, for every parameter of `select`, `search`, `build`, `partition` and `bench`
//! that has one. (python/tests/test_defaults.py holds the Python side to the same values.)

use ptsel::engine::{DEFAULT_EF, DEFAULT_EF_SWEEP, DEFAULT_K, DEFAULT_THREADS};
use ptsel::select::knn::{EF_PER_NEIGHBOUR, MIN_DEFAULT_EF};
use ptsel::select::{Method, SelectParams, DEFAULT_CLASSES, DEFAULT_EXCLUDE_THRESHOLD};
use ptsel::synth::Spec;
use ptsel::{hnsw, kmeans, partitions, BuildOptions, SearchOpts};
use std::collections::BTreeMap;
use std::process::Command;

/// `--flag` -> the `[default: ...]` text of its help, for every option of `ptsel args --help`
/// that shows one.
fn help_defaults(args: &[&str]) -> BTreeMap<String, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_ptsel"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut defaults = BTreeMap::new();
    let mut flag = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("--").or_else(|| {
            line.strip_prefix("-")
                .and_then(|l| l.split_once(", --").map(|(_, r)| r))
        }) {
            flag = rest.split([' ', '[', '<']).next().map(String::from);
        }
        if let (Some(f), Some(at)) = (&flag, line.find("[default: ")) {
            let value = &line[at + "[default: ".len()..];
            defaults.insert(f.clone(), value.trim_end_matches(']').to_string());
        }
    }
    defaults
}

fn check(args: &[&str], want: &[(&str, String)]) {
    let shown = help_defaults(args);
    let want: BTreeMap<String, String> = want
        .iter()
        .map(|(f, v)| (f.to_string(), v.clone()))
        .collect();
    assert_eq!(
        shown,
        want,
        "ptsel {} --help (left) vs the library (right)",
        args.join(" ")
    );
}

fn name<T: clap::ValueEnum>(v: T) -> String {
    v.to_possible_value().unwrap().get_name().to_string()
}

#[test]
fn select_help_shows_the_library_defaults() {
    let d = SelectParams::DEFAULT;
    assert_eq!(d.method, Method::Uot);
    // uot-knn's own defaults: the sample-level eps and neighbours, the rest shared.
    let u = SelectParams::UOT_KNN;
    assert_eq!(
        SelectParams::for_method(Method::UotKnn).per_target,
        u.per_target
    );
    assert_eq!((u.uot.eps, u.per_target, u.p_m), (0.1, 64, d.p_m));
    assert_eq!((u.uot.tau_source, u.uot.tau_target), (1.0, 100.0));
    check(
        &["select"],
        &[
            ("method", name(d.method)),
            (
                "classes",
                format!("{DEFAULT_CLASSES} for class-level methods"),
            ),
            ("seed", d.seed.to_string()),
            ("p-m", d.p_m.to_string()),
            ("eps", format!("{}; {} for uot-knn", d.uot.eps, u.uot.eps)),
            ("tau-source", d.uot.tau_source.to_string()),
            ("tau-target", d.uot.tau_target.to_string()),
            ("max-iter", d.uot.max_iter.to_string()),
            ("tol", d.uot.tol.to_string()),
            ("uot-domain", name(d.uot.domain)),
            (
                "per-target",
                format!("{}; {} for uot-knn", d.per_target, u.per_target),
            ),
            ("draw", name(d.draw)),
            (
                "ef",
                format!("{EF_PER_NEIGHBOUR} x --per-target, at least {MIN_DEFAULT_EF}"),
            ),
            ("exclude-threshold", DEFAULT_EXCLUDE_THRESHOLD.to_string()),
            ("device", name(d.device)),
        ],
    );
    assert_eq!(
        d.ef(),
        (d.per_target * EF_PER_NEIGHBOUR).max(MIN_DEFAULT_EF)
    );
}

#[test]
fn search_bench_build_and_partition_help_show_the_library_defaults() {
    let search = SearchOpts::default();
    check(
        &["search"],
        &[
            ("k", DEFAULT_K.to_string()),
            ("ef", DEFAULT_EF.to_string()),
            ("device", name(search.device)),
        ],
    );
    let sweep: Vec<String> = DEFAULT_EF_SWEEP.iter().map(|e| e.to_string()).collect();
    check(
        &["bench"],
        &[
            ("k", DEFAULT_K.to_string()),
            ("ef", sweep.join(" ")),
            ("threads", DEFAULT_THREADS.to_string()),
            ("device", name(search.device)),
        ],
    );
    let build = BuildOptions::default();
    let graph = hnsw::Params::DEFAULT;
    assert_eq!(build.hnsw, Some(graph));
    let parts = partitions::Params::DEFAULT;
    let mut want = vec![
        ("dtype", name(build.dtype)),
        ("metric", name(build.metric)),
        ("kmeans-iters", kmeans::DEFAULT_ITERS.to_string()),
        ("seed", graph.seed.to_string()),
        ("partition-codes", name(parts.codes)),
        ("hnsw-m", graph.m.to_string()),
        ("ef-construction", graph.ef_construction.to_string()),
        ("graph-layout", name(graph.layout)),
    ];
    // The embedding options (`build --images`) come from `EmbedOptions::default()` too.
    let embed = ptsel::embed::EmbedOptions::default();
    want.extend([
        ("batch", embed.batch.to_string()),
        ("resize", embed.resize.to_string()),
        ("crop", embed.crop.to_string()),
    ]);
    let shown = help_defaults(&["build"]);
    for (flag, value) in &want {
        assert_eq!(shown.get(*flag), Some(value), "build --{flag}");
    }
    check(
        &["partition"],
        &[
            ("partitions", "2 sqrt(rows)".to_string()),
            ("seed", parts.seed.to_string()),
            ("codes", name(parts.codes)),
        ],
    );
    let demo = help_defaults(&["demo"]);
    for (flag, value) in [
        ("rows", Spec::DEMO.rows),
        ("dim", Spec::DEMO.dim),
        ("classes", Spec::DEMO.classes),
    ] {
        assert_eq!(demo.get(flag), Some(&value.to_string()), "demo --{flag}");
    }
    assert_eq!(demo.get("seed"), Some(&Spec::DEMO.seed.to_string()));
}
