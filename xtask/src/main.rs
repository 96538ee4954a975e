//! `cargo xtask`: the project's own setup, build, test and demo, runnable on a fresh Debian 12
//! machine as root.

mod demo;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the build and tests need (Debian packages, the LLVM-22 Rust toolchain,
    /// bpf-linker, bpffs/tracefs mounts); fast when already done.
    Setup,
    /// Set up, then build the agent (kernel programs included).
    Build,
    /// Set up, build, check formatting and lints, run unit and privileged integration tests.
    Test,
    /// Set up, build, start a namespace lab with real servers and clients, and show the agent's
    /// verdicts.
    Demo,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Task::Setup => setup::run(),
        Task::Build => {
            setup::run()?;
            build()
        }
        Task::Test => {
            setup::run()?;
            test()
        }
        Task::Demo => {
            setup::run()?;
            build()?;
            demo::run(&agent_binary())
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn agent_binary() -> PathBuf {
    workspace_root().join("target/debug/sealwatch")
}

fn build() -> anyhow::Result<()> {
    cargo(&["build", "--package", "sealwatch"])
}

fn test() -> anyhow::Result<()> {
    cargo(&["fmt", "--all", "--check"]).context("formatting differs: run `cargo fmt --all`")?;
    cargo(&["clippy", "--all-targets", "--", "-D", "warnings"])?;
    build()?;
    let result = step("cargo test", || {
        let status = Command::new("cargo")
            .args(["test", "--no-fail-fast"])
            .env("SEALWATCH_BIN", agent_binary())
            .current_dir(workspace_root())
            .status()
            .context("running cargo test")?;
        if !status.success() {
            bail!("tests failed ({status})");
        }
        Ok(())
    });
    // Tests clean up after themselves; this catches what an interrupted run left.
    sealwatch_tests::cleanup_stale();
    result
}

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    step(&format!("cargo {}", args.join(" ")), || {
        let status = Command::new("cargo")
            .args(args)
            .current_dir(workspace_root())
            .status()
            .with_context(|| format!("running cargo {}", args.join(" ")))?;
        if !status.success() {
            bail!("cargo {} failed ({status})", args.join(" "));
        }
        Ok(())
    })
}

/// Runs one named step, printing what it does and how long it took.
fn step<T>(name: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    println!("xtask: {name}");
    let start = std::time::Instant::now();
    let out = f()?;
    println!(
        "xtask: {name}: done in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    Ok(out)
}
