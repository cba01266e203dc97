//! The paper's selection on real MoCo-v2 class means (`data/classmeans-moco128`, shipped with
//! the project): CUB's most important ImageNet classes must be mostly birds, Stanford Dogs'
//! nearly all dogs. The data is part of every clone, so its absence is a failure.

use ptsel::data::ClassMeans;
use ptsel::uot::{class_importance, UotParams};
use std::path::{Path, PathBuf};

/// The shipped folder (the library builds the same files in, so a clone without them does not
/// compile; this checks the folder users see).
fn data_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/classmeans-moco128");
    assert!(
        dir.join("imagenet.npy").is_file(),
        "no real class means in {} (they ship with the project)",
        dir.display()
    );
    dir
}

/// Concept of each of the 100 most important ImageNet classes for `target`, from the folder
/// and from the built-in copy (which must agree).
fn top_concepts(target: &str) -> Vec<String> {
    let tops: Vec<Vec<String>> = [ClassMeans::from(data_dir().as_path()), ClassMeans::BuiltIn]
        .iter()
        .map(|data| {
            let (source, dim) = data.means("imagenet").unwrap();
            let (tgt, tdim) = data.means(target).unwrap();
            assert_eq!((source.len() / dim, tdim), (1000, dim));
            let (importance, plan) =
                class_importance(&source, &tgt, None, dim, 0.1, &UotParams::default()).unwrap();
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
            let classes = data.imagenet_classes().unwrap();
            let mut order: Vec<usize> = (0..1000).collect();
            order.sort_by(|&a, &b| importance[b].total_cmp(&importance[a]));
            order[..100]
                .iter()
                .map(|&c| classes[c].concept.clone())
                .collect()
        })
        .collect();
    assert_eq!(tops[0], tops[1], "built-in and shipped files differ");
    tops[0].clone()
}

#[test]
fn cub_selects_mostly_birds() {
    let birds = top_concepts("cub").iter().filter(|c| *c == "bird").count();
    // ImageNet has 59 bird classes; a random 100 would hold about 6.
    assert!(birds > 50, "only {birds} birds among CUB's top 100 classes");
}

#[test]
fn dogs_selects_nearly_all_dogs() {
    let dogs = top_concepts("dogs").iter().filter(|c| *c == "dog").count();
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
