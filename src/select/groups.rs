//! The classes of a corpus for class-level methods: its labels, or its k-means pseudo-classes.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::format::NO_LABEL;
use crate::kmeans;
use rayon::prelude::*;
use std::borrow::Cow;
use std::path::Path;

/// Where class-level methods get their classes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Grouping {
    /// The index's labels.
    Labels,
    /// The index's k-means pseudo-classes.
    Kmeans,
}

/// One file's class of every row: its first global row, the values and the file (for errors).
struct Assign<'a> {
    first_row: usize,
    values: &'a [u32],
    path: &'a Path,
}

/// The classes of a corpus: labels or k-means clusters, with counts and raw-feature means.
pub struct Groups<'a> {
    pub(super) engine: &'a Engine,
    /// Labels or k-means.
    pub grouping: Grouping,
    /// Per shard, in row order.
    assign: Vec<Assign<'a>>,
    /// Samples per class.
    pub counts: Cow<'a, [u64]>,
    /// Means of the raw features, `[classes, dim]`.
    pub means: Cow<'a, [f64]>,
}

impl<'a> Groups<'a> {
    /// The labels of the index or corpus, or the k-means pseudo-classes of an index when it
    /// has no labels or when `pseudo` is set; an error when neither is available. k-means
    /// pseudo-classes are per file and not comparable across the shards of a corpus, so a
    /// corpus needs labels.
    pub fn resolve(engine: &'a Engine, pseudo: bool) -> Result<Self> {
        if !pseudo && engine.classes() > 0 {
            let assign = engine
                .shards()
                .iter()
                .map(|s| {
                    let index = s.index();
                    let values = index
                        .labels()
                        .ok_or_else(|| Error::corrupt(index.path(), "labels", "missing"))?;
                    Ok(Assign {
                        first_row: s.first_row(),
                        values,
                        path: index.path(),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let (counts, means) = engine.class_stats();
            return Ok(Groups {
                engine,
                grouping: Grouping::Labels,
                assign,
                counts: Cow::Borrowed(counts),
                means: Cow::Borrowed(means),
            });
        }
        let why = if pseudo {
            "pseudo-classes were asked for"
        } else {
            "the index has no labels"
        };
        let Ok(index) = engine.index() else {
            return Err(Error::invalid(format!(
                "{}: class-level selection needs classes, but {why}, and k-means pseudo-classes are per shard and not comparable across the shards of a corpus (build the corpus with labels, or select with kNN)",
                engine.path().display()
            )));
        };
        let Some(km) = kmeans::KmeansView::open(index)? else {
            return Err(Error::invalid(format!(
                "{}: class-level selection needs classes, but {why} and the index has no k-means pseudo-classes (rebuild it with k-means pseudo-classes, or select with kNN)",
                index.path().display()
            )));
        };
        if let Some((r, &c)) = km
            .assign
            .iter()
            .enumerate()
            .find(|(_, &c)| c as usize >= km.k)
        {
            return Err(Error::corrupt(
                index.path(),
                "kmeans_assign",
                format!(
                    "row {r} is assigned to cluster {c} but there are {} clusters",
                    km.k
                ),
            ));
        }
        let mut counts = vec![0u64; km.k];
        km.assign.iter().for_each(|&c| counts[c as usize] += 1);
        let means = match km.means {
            Some(m) => {
                if let Some(i) = m.iter().position(|x| !x.is_finite()) {
                    return Err(Error::corrupt(
                        index.path(),
                        "kmeans_means",
                        format!(
                            "cluster {} dimension {} is {} (means must be finite)",
                            i / index.dim(),
                            i % index.dim(),
                            m[i]
                        ),
                    ));
                }
                Cow::Borrowed(m)
            }
            // Written before the means were stored: computed from the rows, as the build does.
            None => Cow::Owned(kmeans::raw_means(index, &kmeans::members(km.assign, km.k))),
        };
        Ok(Groups {
            engine,
            grouping: Grouping::Kmeans,
            assign: vec![Assign {
                first_row: 0,
                values: km.assign,
                path: index.path(),
            }],
            counts: Cow::Owned(counts),
            means,
        })
    }

    /// Number of classes (some may be empty).
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether there are no classes.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Name of class `c` (labels with class names only).
    pub fn name(&self, c: u32) -> Option<&'a str> {
        match self.grouping {
            Grouping::Labels => self.engine.class_name(c as usize),
            Grouping::Kmeans => None,
        }
    }

    /// The means of `classes`, one `dim`-wide row each.
    pub fn means_of(&self, classes: &[u32]) -> Vec<f64> {
        let dim = self.engine.dim();
        classes
            .iter()
            .flat_map(|&c| {
                self.means[c as usize * dim..(c as usize + 1) * dim]
                    .iter()
                    .copied()
            })
            .collect()
    }

    /// Classes with at least one sample, in class order.
    pub fn non_empty(&self) -> Vec<u32> {
        (0..self.len() as u32)
            .filter(|&c| self.counts[c as usize] > 0)
            .collect()
    }

    /// Global rows of each of `classes` (in row order), validating every class value read; the
    /// shards are scanned in parallel.
    pub fn members_of(&self, classes: &[u32]) -> Result<Vec<Vec<u32>>> {
        let mut slot = vec![usize::MAX; self.len()];
        for (i, &c) in classes.iter().enumerate() {
            slot[c as usize] = i;
        }
        let section = match self.grouping {
            Grouping::Labels => "labels",
            Grouping::Kmeans => "kmeans_assign",
        };
        let per_shard = self
            .assign
            .par_iter()
            .map(|a| {
                let mut out = vec![Vec::new(); classes.len()];
                for (r, &c) in a.values.iter().enumerate() {
                    if c == NO_LABEL && self.grouping == Grouping::Labels {
                        continue;
                    }
                    match slot.get(c as usize) {
                        Some(&usize::MAX) => {}
                        Some(&i) => out[i].push((a.first_row + r) as u32),
                        None => {
                            return Err(Error::corrupt(
                                a.path,
                                section,
                                format!(
                                    "row {r} has class {c} but there are {} classes",
                                    self.len()
                                ),
                            ))
                        }
                    }
                }
                Ok(out)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut out = vec![Vec::new(); classes.len()];
        for shard in per_shard {
            for (all, rows) in out.iter_mut().zip(shard) {
                all.extend(rows);
            }
        }
        Ok(out)
    }
}
