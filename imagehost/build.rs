//! Builds the AVIF encoder shim (`csrc/avif_encode.c`) against the system's libavif (Debian's
//! `libavif-dev`, with libaom), found through pkg-config.

fn main() {
    println!("cargo:rerun-if-changed=csrc/avif_encode.c");
    let avif = match pkg_config::Config::new().atleast_version("0.11").probe("libavif") {
        Ok(lib) => lib,
        Err(e) => {
            println!("cargo:warning=libavif (0.11 or later) not found: install libavif-dev. {e}");
            std::process::exit(1);
        }
    };
    let mut build = cc::Build::new();
    build
        .file("csrc/avif_encode.c")
        .warnings(true)
        .extra_warnings(true);
    for dir in &avif.include_paths {
        build.include(dir);
    }
    build.compile("hive_avif");
}
