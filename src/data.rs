//! The MoCo-v2 class means shipped with ptsel in `data/classmeans-moco128`: ImageNet's 1000
//! classes and 8 fine-tuning target sets (see that folder's README for their origin and
//! licence). They are built into the library, so that `ptsel demo --real`, the tests and the
//! benchmarks run from any directory; [`ClassMeans::Dir`] reads a folder of the same layout.

use crate::error::{Error, Result};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// The target sets, in the paper's order: CUB-200, Stanford Cars, FGVC Aircraft, Stanford Dogs,
/// Oxford Pets, Caltech-101, DTD, SUN397.
pub const TARGETS: [&str; 8] = [
    "cub", "cars", "aircraft", "dogs", "pets", "caltech", "dtd", "sun",
];

/// The files built in, by name.
const BUILT_IN: [(&str, &[u8]); 10] = [
    (
        "imagenet.npy",
        include_bytes!("../data/classmeans-moco128/imagenet.npy"),
    ),
    (
        "imagenet_classes.tsv",
        include_bytes!("../data/classmeans-moco128/imagenet_classes.tsv"),
    ),
    (
        "cub.npy",
        include_bytes!("../data/classmeans-moco128/cub.npy"),
    ),
    (
        "cars.npy",
        include_bytes!("../data/classmeans-moco128/cars.npy"),
    ),
    (
        "aircraft.npy",
        include_bytes!("../data/classmeans-moco128/aircraft.npy"),
    ),
    (
        "dogs.npy",
        include_bytes!("../data/classmeans-moco128/dogs.npy"),
    ),
    (
        "pets.npy",
        include_bytes!("../data/classmeans-moco128/pets.npy"),
    ),
    (
        "caltech.npy",
        include_bytes!("../data/classmeans-moco128/caltech.npy"),
    ),
    (
        "dtd.npy",
        include_bytes!("../data/classmeans-moco128/dtd.npy"),
    ),
    (
        "sun.npy",
        include_bytes!("../data/classmeans-moco128/sun.npy"),
    ),
];

/// An ImageNet class as `imagenet_classes.tsv` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagenetClass {
    /// WordNet id (`n01440764`).
    pub wnid: String,
    /// Coarse concept (`animal`, `bird`, `dog`, ...).
    pub concept: String,
    /// The first of its names (`tench`).
    pub name: String,
}

/// Where the class means come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassMeans {
    /// The copy built into the library.
    BuiltIn,
    /// A folder in the layout of `data/classmeans-moco128`.
    Dir(PathBuf),
}

impl ClassMeans {
    /// Where the files come from, for messages.
    pub fn origin(&self) -> PathBuf {
        match self {
            ClassMeans::Dir(d) => d.clone(),
            ClassMeans::BuiltIn => PathBuf::from("data/classmeans-moco128 (built in)"),
        }
    }

    fn bytes(&self, name: &str) -> Result<Cow<'static, [u8]>> {
        match self {
            ClassMeans::Dir(d) => {
                let path = d.join(name);
                std::fs::read(&path)
                    .map(Cow::Owned)
                    .map_err(|e| Error::io(path, e))
            }
            ClassMeans::BuiltIn => BUILT_IN
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, b)| Cow::Borrowed(*b))
                .ok_or_else(|| Error::invalid(format!("no built-in class means named {name}"))),
        }
    }

    /// The class means of `set` (`imagenet` or one of [`TARGETS`]) widened to f64, row-major,
    /// with their dimension.
    pub fn means(&self, set: &str) -> Result<(Vec<f64>, usize)> {
        let file = format!("{set}.npy");
        let m = crate::npy::read_matrix_bytes(&self.origin().join(&file), &self.bytes(&file)?)?;
        Ok((m.data.iter().map(|&x| f64::from(x)).collect(), m.dim))
    }

    /// ImageNet's classes in class order.
    pub fn imagenet_classes(&self) -> Result<Vec<ImagenetClass>> {
        let name = "imagenet_classes.tsv";
        let path = self.origin().join(name);
        let text = String::from_utf8(self.bytes(name)?.into_owned())
            .map_err(|_| Error::input(&path, "not UTF-8 text"))?;
        // Columns: index, wnid, concept, names (comma-separated); the first line is a header.
        text.lines()
            .skip(1)
            .enumerate()
            .map(|(i, line)| {
                let f: Vec<&str> = line.split('\t').collect();
                let [_, wnid, concept, names] = f[..] else {
                    return Err(Error::input(
                        &path,
                        format!("line {}: want 4 tab-separated columns", i + 2),
                    ));
                };
                Ok(ImagenetClass {
                    wnid: wnid.into(),
                    concept: concept.into(),
                    name: names.split(',').next().unwrap_or("").trim().into(),
                })
            })
            .collect()
    }
}

impl From<&Path> for ClassMeans {
    fn from(dir: &Path) -> Self {
        ClassMeans::Dir(dir.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_sets_have_the_paper_shapes() {
        let data = ClassMeans::BuiltIn;
        let (imagenet, dim) = data.means("imagenet").unwrap();
        assert_eq!((imagenet.len() / dim, dim), (1000, 128));
        let (sun, d) = data.means("sun").unwrap();
        assert_eq!((sun.len() / d, d), (397, 128));
        let classes = data.imagenet_classes().unwrap();
        assert_eq!(classes.len(), 1000);
        assert_eq!(classes[0].name, "tench");
        assert_eq!(classes[0].wnid, "n01440764");
        for t in TARGETS {
            assert_eq!(data.means(t).unwrap().1, 128, "{t}");
        }
    }

    #[test]
    fn a_folder_without_the_files_names_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = ClassMeans::from(dir.path()).means("cub").unwrap_err();
        assert!(err.to_string().contains("cub.npy"), "{err}");
        std::fs::write(
            dir.path().join("imagenet_classes.tsv"),
            "h\n0\tn0\tonly three\n",
        )
        .unwrap();
        let err = ClassMeans::from(dir.path()).imagenet_classes().unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
