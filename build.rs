//! Build script: gives the C shared library (the cdylib) its SONAME.
//!
//! The SONAME carries the ABI major version, which is independent of the crate
//! version: it changes only when the C ABI breaks (see bindings/c/README.md,
//! "ABI policy"). bindings/c/install.sh reads it back from the built library.

/// Major version of the C ABI. Bump on any ABI break.
const ABI_MAJOR: u32 = 0;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    // ELF platforms whose linkers take -soname (GNU ld, gold, lld, mold).
    if matches!(
        os.as_str(),
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd" | "dragonfly"
    ) {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libfal_realtime.so.{ABI_MAJOR}");
    }
}
