use which::which;

/// Rebuild the kernel crate when bpf-linker changes: it does the final codegen (aya-template).
fn main() {
    if let Ok(linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
