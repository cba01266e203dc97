//! Build script. With the `torch` feature, libtorch's library folder (exported by torch-sys, a
//! direct dependency, as its `links = "tch"` metadata `libtorch_lib`) becomes an rpath of every
//! binary, test and example, so they run without LD_LIBRARY_PATH. Without the feature it does
//! nothing: the default build needs no libtorch.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_TORCH").is_none() {
        return;
    }
    let windows = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "windows");
    if let (Some(lib), false) = (std::env::var_os("DEP_TCH_LIBTORCH_LIB"), windows) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.to_string_lossy());
    }
}
