//! Inputs the fuzzers (fuzz/) found to crash, replayed through the same entry points on every
//! test run. Each is also a seed of its target, so the fuzzers start from it.

use std::{path::PathBuf, sync::Arc, time::Duration};

use sealwatch::{cli::OutputFormat, offline::analyze, policy::Policy};

/// Runs `analyze` in-process (debug build: arithmetic overflow panics) on `bytes` as a capture.
fn analyze_bytes(name: &str, bytes: &[u8]) -> Result<u64, String> {
    let path: PathBuf = std::env::temp_dir().join(format!(
        "sealwatch-fuzz-regression-{}-{name}",
        std::process::id()
    ));
    std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let result = analyze(
        std::slice::from_ref(&path),
        Duration::from_secs(60),
        OutputFormat::Json,
        Arc::new(Policy::default()),
        None,
        &mut out,
    );
    std::fs::remove_file(&path).ok();
    result
        .map(|_| out.iter().filter(|b| **b == b'\n').count() as u64)
        .map_err(|e| e.to_string())
}

/// fuzz target `capture`: a BSD-loopback capture with an IP-in-IP packet whose outer header
/// length points past the captured bytes; `analyze` computed the inner packet's length as
/// `captured - offset` and overflowed (a panic in debug builds, a huge length in release)
/// instead of finding the inner packet missing. GRE had the same subtraction.
#[test]
fn tunnel_header_past_the_captured_bytes_is_malformed_not_a_panic() {
    let capture = include_bytes!("../../fuzz/seeds/capture/regress-tunnel-past-capture.pcap");
    // Three frames are read (their tunnels found broken), then the fourth record claims more
    // than any block may hold: exit 2 material, never a panic.
    let result = analyze_bytes("tunnel", capture);
    assert_eq!(
        result
            .map_err(|e| e.ends_with("is corrupt at packet 3: a block larger than 1048576 bytes")),
        Err(true)
    );
}
