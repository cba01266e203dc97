//! The paper's selection on real MoCo-v2 class means (`data/classmeans-moco128`, shipped with
//! the project): CUB's most important ImageNet classes must be mostly birds, Stanford Dogs'
//! nearly all dogs. The data is part of every clone, so its absence is a failure.

use ptsel::uot::{class_importance, UotParams};
use std::path::{Path, PathBuf};

fn data_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/classmeans-moco128");
    assert!(
        dir.join("imagenet.npy").is_file(),
        "no real class means in {} (they ship with the project)",
        dir.display()
    );
    dir
}

fn means(path: PathBuf) -> (Vec<f64>, usize) {
    let m = ptsel::npy::read_matrix(&path).unwrap();
    (m.data.iter().map(|&x| f64::from(x)).collect(), m.dim)
}

/// Concept (column 3 of imagenet_classes.tsv) of each of the 100 most important classes.
fn top_concepts(dir: &Path, target: &str) -> Vec<String> {
    let (source, dim) = means(dir.join("imagenet.npy"));
    let (tgt, tdim) = means(dir.join(format!("{target}.npy")));
    assert_eq!((source.len() / dim, tdim), (1000, dim));
    let (importance, plan) =
        class_importance(&source, &tgt, dim, 0.1, &UotParams::default()).unwrap();
    assert!(
        plan.converged && !plan.log_domain,
        "{target}: {} iterations",
        plan.iterations
    );
    assert!(
        plan.marginal_error < 0.05,
        "{target}: marginal error {}",
        plan.marginal_error
    );
    let concepts: Vec<String> = std::fs::read_to_string(dir.join("imagenet_classes.tsv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split('\t').nth(2).unwrap().to_string())
        .collect();
    let mut order: Vec<usize> = (0..1000).collect();
    order.sort_by(|&a, &b| importance[b].total_cmp(&importance[a]));
    order[..100].iter().map(|&c| concepts[c].clone()).collect()
}

#[test]
fn cub_selects_mostly_birds() {
    let dir = data_dir();
    let birds = top_concepts(&dir, "cub")
        .iter()
        .filter(|c| *c == "bird")
        .count();
    // ImageNet has 59 bird classes; a random 100 would hold about 6.
    assert!(birds > 50, "only {birds} birds among CUB's top 100 classes");
}

#[test]
fn dogs_selects_nearly_all_dogs() {
    let dir = data_dir();
    let dogs = top_concepts(&dir, "dogs")
        .iter()
        .filter(|c| *c == "dog")
        .count();
    assert!(
        dogs >= 95,
        "only {dogs} dogs among Stanford Dogs' top 100 classes"
    );
}

/// Nothing the project runs or tests reads from a `shared` folder beside the clone, which a
/// user's clone does not have.
#[test]
fn nothing_reads_data_from_outside_the_clone() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stack: Vec<PathBuf> = ["src", "tests", "benches", "scripts", "examples"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    let needle = ["..", "shared"].join("/");
    let mut offenders = Vec::new();
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if std::fs::read(&p)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
        {
            offenders.push(p);
        }
    }
    assert!(offenders.is_empty(), "{offenders:?} refer to {needle}");
    let readme = std::fs::read_to_string(data_dir().join("README.md")).unwrap();
    assert!(
        readme.contains("Apache License 2.0") && readme.contains("Liu et al."),
        "the data's README must keep its attribution and licence"
    );
}
