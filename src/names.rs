//! Parsing of the option enums from their lower-case names, for callers without clap (the
//! Python package, configuration files).

/// Implements `FromStr` for a unit enum from its names (case-insensitive); an unknown name is
/// an [`Error::Invalid`](crate::Error::Invalid) that lists the valid ones.
macro_rules! parse_by_name {
    ($ty:ty, $what:literal, { $($name:literal => $variant:expr),+ $(,)? }) => {
        impl std::str::FromStr for $ty {
            type Err = crate::Error;

            fn from_str(s: &str) -> crate::Result<Self> {
                match s.to_ascii_lowercase().as_str() {
                    $($name => Ok($variant),)+
                    _ => Err(crate::Error::invalid(format!(
                        concat!("unknown ", $what, " {:?} (expected one of: {})"),
                        s,
                        [$($name),+].join(", ")
                    ))),
                }
            }
        }
    };
}
