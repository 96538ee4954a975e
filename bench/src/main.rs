//! `sealwatch-bench`: the measurements behind `cargo xtask bench` that need the kernel or the
//! namespace lab. Each subcommand prints one JSON document on stdout; xtask runs them, keeps the
//! JSON and prints the tables. Needs root.

mod agent;
mod kernel;
mod live;
mod packets;
mod replica;
mod scale;
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
        /// Attach modes to measure (comma-separated: tc, xdp), e.g. one alone under `perf`.
        #[arg(long, value_delimiter = ',', default_values_t = ["tc".to_string(), "xdp".to_string()])]
        modes: Vec<String>,
    },
    /// Kernel bytes per flow entry and new-flow cost, for flow tables of these sizes.
    FlowTable {
        #[arg(long, value_delimiter = ',', default_values_t = [100_000, 1_000_000])]
        sizes: Vec<u32>,
    },
    /// A running agent's memory with this many live flows (ascending, comma-separated).
    AgentMemory {
        /// The agent binary.
        #[arg(long)]
        agent: std::path::PathBuf,
        #[arg(long, value_delimiter = ',', default_values_t = [100_000, 1_000_000])]
        flows: Vec<u32>,
    },
    /// Writes the corpus's Ethernet captures replicated to at least this many packets, each
    /// replica's addresses rewritten (see replica.rs), as one pcap; prints what was written.
    Replica {
        #[arg(long)]
        corpus: std::path::PathBuf,
        #[arg(long)]
        out: std::path::PathBuf,
        #[arg(long)]
        min_packets: u64,
    },
    /// iperf3 throughput and CPU without the agent, in monitor and in enforce mode.
    Throughput {
        #[arg(long)]
        agent: std::path::PathBuf,
        #[arg(long, default_value_t = 10)]
        seconds: u32,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Time from a flow's first payload to its event, and to a blocked client's failure.
    Latency {
        #[arg(long)]
        agent: std::path::PathBuf,
        #[arg(long, default_value_t = 200)]
        flows: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let report = match cli.command {
        Command::Kernel {
            repeat,
            rounds,
            new_flows,
            modes,
        } => kernel::run(&kernel::Options {
            repeat,
            rounds,
            new_flows,
            modes,
        })?,
        Command::FlowTable { sizes } => scale::kernel_table(&sizes)?,
        Command::AgentMemory { agent, flows } => scale::agent_memory(&agent, &flows)?,
        Command::Throughput {
            agent,
            seconds,
            rounds,
        } => live::throughput(&agent, seconds, rounds)?,
        Command::Latency { agent, flows } => live::latency(&agent, flows)?,
        Command::Replica {
            corpus,
            out,
            min_packets,
        } => replica::write(&corpus, &out, min_packets)?.to_json(),
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
