//! Builds the kernel crate (`ebpf/`) for bpfel-unknown-none with aya-build and leaves the object
//! in OUT_DIR for `include_bytes_aligned!`.
//!
//! The kernel crate must be compiled by a rustc whose LLVM matches bpf-linker's (Debian's LLVM
//! 22): the pinned 1.95.0 toolchain with RUSTC_BOOTSTRAP=1, so aya-build may pass
//! `-Z build-std=core`. Never "nightly": today's nightly is LLVM 23 and the link fails with
//! `Invalid record`. Override with SEALWATCH_EBPF_TOOLCHAIN.

use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

const EBPF_PACKAGE: &str = "sealwatch-ebpf";
const DEFAULT_TOOLCHAIN: &str = "1.95.0";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=SEALWATCH_EBPF_TOOLCHAIN");
    let toolchain =
        std::env::var("SEALWATCH_EBPF_TOOLCHAIN").unwrap_or_else(|_| DEFAULT_TOOLCHAIN.into());
    if !toolchain.starts_with("nightly") {
        // SAFETY: build scripts are single-threaded; the nested cargo inherits this.
        unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    }
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("reading workspace metadata")?;
    let package = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == EBPF_PACKAGE)
        .ok_or_else(|| anyhow!("package {EBPF_PACKAGE} not in the workspace"))?;
    let root_dir = package
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", package.manifest_path))?;
    let ebpf = aya_build::Package {
        name: EBPF_PACKAGE,
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], Toolchain::Custom(&toolchain))
        .context("building the kernel programs (is `cargo xtask setup` done?)")
}
