//! `cargo xtask`: the project's own setup, build, test and demo, runnable on a fresh Debian 12
//! machine as root.

mod bench;
mod corpus;
mod demo;
mod fuzz;
mod lab;
mod setup;

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
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
    /// Set up, build, check formatting and lints, run unit and privileged integration tests,
    /// `cargo deny` and a short fuzzing round.
    Test,
    /// Set up, build the libFuzzer targets of fuzz/ and run each from its seeds for a bounded
    /// time; fails on any crash, panic, sanitizer report or hang.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u32,
    },
    /// Set up, build, start a namespace lab with real servers and clients, and show the agent's
    /// verdicts.
    Demo,
    /// A standing namespace lab to try the agent by hand: web (HTTP, HTTPS, post-quantum TLS),
    /// Redis (plain and TLS), PostgreSQL, SSH and a client, on a bridge in a "node" namespace.
    Lab {
        #[command(subcommand)]
        action: lab::Action,
    },
    /// Build, run `sealwatch analyze` over ../shared/corpus, and print accuracy per family.
    Corpus {
        /// Fail when the encryption verdict is right for fewer than this percent of labelled
        /// flows, or when any plaintext flow is called encrypted.
        #[arg(long)]
        min_accuracy: Option<f64>,
    },
    /// Build release and measure it, each number beside its baseline from the same run: kernel
    /// per-packet cost vs an empty program, flow-table and agent memory at 100k and 1M flows,
    /// iperf3 throughput with and without the agent, time to verdict, and `analyze`
    /// throughput beside a bare read, ndpiReader and tshark. Writes
    /// target/bench/<section>.json and the summary table target/bench/summary.md (all
    /// sections when none is named).
    Bench {
        /// Sections to run (default: all).
        #[arg(value_enum)]
        sections: Vec<bench::Section>,
        /// Packets in the synthetic capture.
        #[arg(long, default_value_t = 2_000_000)]
        packets: u64,
        /// Timed runs per measurement; medians are reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Write the synthetic captures here and keep them (to profile `analyze` on them)
        /// instead of in a temporary directory removed afterwards.
        #[arg(long, value_name = "DIR")]
        capture_dir: Option<PathBuf>,
        /// Smaller sizes and fewer runs (a couple of minutes): a check of the ratios, not the
        /// numbers to publish.
        #[arg(long)]
        quick: bool,
        /// Replicate the corpus to at least this many packets and time ndpiReader and tshark
        /// on it beside `analyze` (0: skip that workload).
        #[arg(long, default_value_t = 1_000_000)]
        replica_packets: u64,
        /// tshark runs on the first replicas holding at least this many packets (it is too
        /// slow for the whole file); its rate is compared per packet.
        #[arg(long, default_value_t = 100_000)]
        tshark_packets: u64,
    },
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
        Task::Fuzz { seconds } => {
            setup::run()?;
            fuzz::run(seconds).map(|_| ())
        }
        Task::Corpus { min_accuracy } => {
            setup::run()?;
            build()?;
            corpus::run(
                &agent_binary(),
                &workspace_root().join("../shared/corpus"),
                min_accuracy,
            )
        }
        Task::Bench {
            sections,
            packets,
            runs,
            capture_dir,
            quick,
            replica_packets,
            tshark_packets,
        } => {
            setup::run()?;
            cargo(&[
                "build",
                "--release",
                "--package",
                "sealwatch",
                "--package",
                "sealwatch-bench",
            ])?;
            let root = workspace_root();
            bench::run(
                &root.join("target/release/sealwatch"),
                &bench::Options {
                    sections,
                    packets: if quick { packets.min(200_000) } else { packets },
                    runs: if quick { runs.min(1) } else { runs },
                    capture_dir,
                    corpus: root.join("../shared/corpus/pcaps"),
                    replica_packets: if quick {
                        replica_packets.min(100_000)
                    } else {
                        replica_packets
                    },
                    tshark_packets: if quick {
                        tshark_packets.min(20_000)
                    } else {
                        tshark_packets
                    },
                    out_dir: root.join("target/bench"),
                    tool: root.join("target/release/sealwatch-bench"),
                    quick,
                },
            )
        }
        Task::Lab { action } => lab::run(action),
        Task::Demo => {
            setup::run()?;
            build()?;
            demo::run(&agent_binary())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Totals;

    #[test]
    fn totals_add_up_cargo_result_lines() {
        let mut t = Totals::default();
        t.add("test result: ok. 17 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.00s");
        t.add("test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 5.52s");
        t.add("running 3 tests");
        assert_eq!((t.passed, t.failed, t.ignored), (18, 2, 2));
    }
}

/// Seconds each fuzz target runs in `cargo xtask test` (four targets; the build comes first).
const TEST_FUZZ_SECONDS: u32 = 20;

/// Percent of labelled corpus flows whose encryption verdict must be right (issue 4).
const MIN_CORPUS_ACCURACY: f64 = 98.0;

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
    cargo(&[
        "build",
        "--package",
        "sealwatch",
        "--package",
        "sealwatch-lab-peers",
        "--package",
        "sealwatch-bench",
    ])
}

fn test() -> anyhow::Result<()> {
    cargo(&["fmt", "--all", "--check"]).context("formatting differs: run `cargo fmt --all`")?;
    // fuzz/ is a workspace of its own, outside `--all`.
    cargo(&[
        "fmt",
        "--manifest-path",
        "fuzz/Cargo.toml",
        "--all",
        "--check",
    ])
    .context("formatting differs: run `cargo fmt --manifest-path fuzz/Cargo.toml --all`")?;
    cargo(&["clippy", "--all-targets", "--", "-D", "warnings"])?;
    build()?;
    let run = step("cargo test", || {
        let mut child = Command::new("cargo")
            .args(["test", "--no-fail-fast"])
            .env("SEALWATCH_BIN", agent_binary())
            .current_dir(workspace_root())
            .stdout(Stdio::piped())
            .spawn()
            .context("running cargo test")?;
        let mut totals = Totals::default();
        if let Some(out) = child.stdout.take() {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                println!("{line}");
                totals.add(&line);
            }
        }
        Ok((child.wait()?, totals))
    });
    // Tests clean up after themselves; this catches what an interrupted run left.
    sealwatch_tests::cleanup_stale();
    let (status, mut totals) = run?;
    // The accuracy gate: analyze over the labelled corpus must get the encryption verdict
    // right for at least 98% of flows and never call a plaintext flow encrypted.
    let gate = step("corpus accuracy gate", || {
        corpus::run(
            &agent_binary(),
            &workspace_root().join("../shared/corpus"),
            Some(MIN_CORPUS_ACCURACY),
        )
    });
    match gate {
        Ok(()) => totals.passed += 1,
        Err(e) => {
            eprintln!("corpus accuracy gate failed: {e:#}");
            totals.failed += 1;
        }
    }
    // Supply chain: licences, bans and sources of the dependency tree (deny.toml). Advisories
    // need the RustSec database from the network, which is not reachable here.
    match cargo(&["deny", "--locked", "check", "licenses", "bans", "sources"]) {
        Ok(()) => totals.passed += 1,
        Err(e) => {
            eprintln!("cargo deny failed: {e:#}");
            totals.failed += 1;
        }
    }
    // A short fuzzing round per target: the seeds, and whatever it reaches from them.
    match fuzz::run(TEST_FUZZ_SECONDS) {
        Ok(runs) => totals.passed += runs.len() as u64,
        Err(e) => {
            eprintln!("fuzzing failed: {e:#}");
            totals.failed += 1;
        }
    }
    // One closing line for the whole run, whatever order the test binaries ran in.
    println!(
        "tests: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if !status.success() || totals.failed > 0 {
        bail!("tests failed ({status}, {} failed)", totals.failed);
    }
    if totals.passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

/// Sums cargo's `test result:` lines.
#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    fn add(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(['.', ';']) {
            let mut words = part.split_whitespace();
            if let (Some(n), Some(what)) = (
                words.next().and_then(|n| n.parse::<u64>().ok()),
                words.next(),
            ) {
                match what {
                    "passed" => self.passed += n,
                    "failed" => self.failed += n,
                    "ignored" => self.ignored += n,
                    _ => {}
                }
            }
        }
    }
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
