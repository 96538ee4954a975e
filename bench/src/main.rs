//! `sealwatch-bench`: the measurements behind `cargo xtask bench` that need the kernel or the
//! namespace lab. Each subcommand prints one JSON document on stdout; xtask runs them, keeps the
//! JSON and prints the tables. Needs root.

mod kernel;
mod packets;
mod sys;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about, version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Per-packet cost of the observer programs vs an empty program (BPF_PROG_TEST_RUN).
    Kernel {
        #[arg(long, default_value_t = 1_000_000)]
        repeat: u32,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        #[arg(long, default_value_t = 2000)]
        new_flows: u32,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let report = match cli.command {
        Command::Kernel {
            repeat,
            rounds,
            new_flows,
        } => kernel::run(&kernel::Options {
            repeat,
            rounds,
            new_flows,
        })?,
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
