//! `cargo xtask fuzz`: builds the libFuzzer targets of `fuzz/` with cargo-fuzz and runs each for
//! a bounded time from its checked-in seeds; any crash, panic, sanitizer report or hang fails.
//!
//! cargo-fuzz passes `-Z` flags (sanitizers, coverage instrumentation): the pinned 1.95.0
//! toolchain takes them with RUSTC_BOOTSTRAP=1. Never a nightly toolchain (see setup.rs).

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use crate::{step, workspace_root};

/// Every target in fuzz/fuzz_targets, with what it covers.
pub const TARGETS: &[(&str, &str)] = &[
    (
        "classify",
        "payload classifier (common/src/classify) on any window and context",
    ),
    (
        "parse",
        "packet parser (common/src/parse.rs) on any frame, bounds checked by ASan",
    ),
    (
        "deep",
        "stream rebuild and deep parsing (agent/src/streams.rs, deep.rs, inspect/)",
    ),
    (
        "capture",
        "capture reader (agent/src/capture.rs) and all of `analyze` on any file",
    ),
];

/// A single input taking longer than this is a hang, reported as a failure.
const INPUT_TIMEOUT_SECS: u32 = 25;

/// Runs every target for `seconds` each; returns the executions per target.
pub fn run(seconds: u32) -> anyhow::Result<Vec<(&'static str, u64)>> {
    let root = workspace_root();
    step("cargo fuzz build", || {
        let status = cargo_fuzz(&root)
            .arg("build")
            .status()
            .context("running cargo fuzz build (run `cargo xtask setup`)")?;
        if !status.success() {
            bail!("cargo fuzz build failed ({status})");
        }
        Ok(())
    })?;
    let mut runs = Vec::new();
    let mut failed = Vec::new();
    for (target, what) in TARGETS {
        let result = step(&format!("fuzz {target} for {seconds}s ({what})"), || {
            fuzz_one(&root, target, seconds)
        });
        match result {
            Ok(n) => {
                println!("  {target}: {n} inputs in {seconds}s, no crash");
                runs.push((*target, n));
            }
            Err(e) => {
                eprintln!("  {target}: {e:#}");
                failed.push(*target);
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "fuzz targets failed: {failed:?}; the crashing inputs are in fuzz/artifacts/<target>/ \
             (reproduce with `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <file>`)"
        );
    }
    Ok(runs)
}

fn cargo_fuzz(root: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("fuzz")
        .current_dir(root)
        .env("RUSTC_BOOTSTRAP", "1");
    cmd
}

/// Runs one target; the new inputs it finds go to fuzz/corpus/TARGET (not checked in), the
/// seeds in fuzz/seeds/TARGET are only read.
fn fuzz_one(root: &Path, target: &str, seconds: u32) -> anyhow::Result<u64> {
    let corpus = root.join("fuzz/corpus").join(target);
    let seeds = root.join("fuzz/seeds").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    if !seeds.is_dir() {
        bail!("no seed corpus at {}", seeds.display());
    }
    let mut child = cargo_fuzz(root)
        .args(["run", target])
        .arg(&corpus)
        .arg(&seeds)
        .args([
            "--",
            &format!("-max_total_time={seconds}"),
            &format!("-timeout={INPUT_TIMEOUT_SECS}"),
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .context("running cargo fuzz run (run `cargo xtask setup`)")?;
    let mut executed = None;
    let mut tail: Vec<String> = Vec::new();
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if let Some(n) = line
                .strip_prefix("stat::number_of_executed_units:")
                .and_then(|n| n.trim().parse::<u64>().ok())
            {
                executed = Some(n);
            }
            // libFuzzer's progress lines are many; keep the end for a failure's report.
            tail.push(line);
            if tail.len() > 60 {
                tail.remove(0);
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        for line in &tail {
            eprintln!("    {line}");
        }
        bail!("{target} failed ({status})");
    }
    match executed {
        Some(0) | None => bail!("{target} ran no input: {}", tail.join("\n")),
        Some(n) => Ok(n),
    }
}
