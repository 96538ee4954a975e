//! `cargo xtask bench`: how fast the release agent is, as numbers that compare across runs and
//! machines. Each section ([`Section`]: kernel per-packet cost, flow-table scale, agent memory,
//! live throughput, time to verdict, offline analysis) measures one part and writes
//! `target/bench/<section>.json`; `summary.md` gathers their rows.
//!
//! Numbers are medians over several runs, and each is also given relative to a baseline
//! measured in the same run on the same input (an empty program of the same type, the lab
//! without the agent; for `analyze`: a bare read of the capture, and on the corpus replicated
//! to a million packets, ndpiReader and tshark), so a slow or busy machine shows as slow
//! absolute numbers but a steady ratio. Nothing here fails on a number: timing thresholds fail
//! on busy machines and teach people to ignore failures. (`tests/bench.rs` checks a `--quick`
//! run's ratios, with bounds far wider than the targets, and the deterministic counts.)

mod rivals;
mod suite;
mod synth;

use std::{
    fs::File,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    rc::Rc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::ValueEnum;
use serde_json::{Value, json};

/// A part of the agent with its own benchmark and its own JSON file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Section {
    /// Per-packet cost of the kernel programs vs an empty program (BPF_PROG_TEST_RUN).
    Kernel,
    /// Kernel bytes per flow entry and new-flow rate, 100k and 1M flows.
    FlowTable,
    /// A running agent's memory with 100k and 1M live flows.
    AgentMemory,
    /// iperf3 throughput and CPU without the agent, in monitor and in enforce mode.
    Throughput,
    /// Time to verdict, and to a blocked client's failure.
    Latency,
    /// `sealwatch analyze` over a synthetic capture (pcap and pcapng) and the corpus.
    Analyze,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::Kernel => "kernel",
            Section::FlowTable => "flow-table",
            Section::AgentMemory => "agent-memory",
            Section::Throughput => "throughput",
            Section::Latency => "latency",
            Section::Analyze => "analyze",
        }
    }
}

pub struct Options {
    pub sections: Vec<Section>,
    /// Packets in the synthetic capture.
    pub packets: u64,
    /// Timed runs per measurement; the median is reported.
    pub runs: usize,
    /// Keep the synthetic captures here (else a temporary directory, removed afterwards).
    pub capture_dir: Option<PathBuf>,
    /// The labelled corpus (measured too when present).
    pub corpus: PathBuf,
    /// Packets in the capture replicated from the corpus: enough that process start-up is
    /// noise, which the corpus itself is too small for; ndpiReader and tshark are timed on it
    /// too (0: no such workload).
    pub replica_packets: u64,
    /// tshark is slow enough that a million packets would take minutes per run: it gets the
    /// first replicas that hold at least this many packets, and rates are compared per packet.
    pub tshark_packets: u64,
    /// Where the JSON reports go.
    pub out_dir: PathBuf,
    /// `sealwatch-bench`, which measures the kernel and lab sections.
    pub tool: PathBuf,
    /// Smaller sizes and fewer runs: a couple of minutes, for a check of the ratios.
    pub quick: bool,
}

pub fn run(agent: &Path, opts: &Options) -> anyhow::Result<()> {
    let sections = if opts.sections.is_empty() {
        Section::value_variants().to_vec()
    } else {
        opts.sections.clone()
    };
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating {}", opts.out_dir.display()))?;
    let mut reports = Vec::new();
    for section in sections {
        let report = match section {
            Section::Analyze => analyze(agent, opts)?,
            other => {
                println!("xtask: bench {}", other.name());
                suite::run(&opts.tool, agent, other, opts.quick)?
            }
        };
        let path = opts.out_dir.join(format!("{}.json", section.name()));
        std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!(
            "xtask: bench {}: written to {}",
            section.name(),
            path.display()
        );
        reports.push((section, report));
    }
    let host = host();
    let table = format!(
        "{}\nMeasured on {} ({} CPUs, load {} at the end), `cargo xtask bench{}`.\n",
        suite::summary(&reports),
        host["cpu"].as_str().unwrap_or("?"),
        host["cpus"],
        host["loadavg_1m"].as_str().unwrap_or("?"),
        if opts.quick { " --quick" } else { "" },
    );
    let path = opts.out_dir.join("summary.md");
    std::fs::write(&path, &table).with_context(|| format!("writing {}", path.display()))?;
    println!(
        "\n{table}\nxtask: bench summary: written to {}",
        path.display()
    );
    Ok(())
}

/// Summary lines of the `analyze` section: (measure, result, target, met).
fn analyze_lines(r: &Value) -> Vec<(String, String, &'static str, Option<bool>)> {
    let mut lines: Vec<(String, String, &'static str, Option<bool>)> = Vec::new();
    for w in r["workloads"].as_array().into_iter().flatten() {
        for c in w["compared_with"].as_array().into_iter().flatten() {
            let target = c["target"].as_f64().unwrap_or(0.0);
            let by_wall = c["sealwatch_vs"]["by_wall"].as_f64().unwrap_or(0.0);
            lines.push((
                format!(
                    "`sealwatch analyze` vs {} {} on {} ({} packets{})",
                    c["tool"].as_str().unwrap_or(""),
                    // "Welcome to nDPI 4.2.0", "TShark (Wireshark) 4.0.17 (Git ...)": the number.
                    c["version"]
                        .as_str()
                        .unwrap_or("")
                        .split_whitespace()
                        .find(|t| t.starts_with(|ch: char| ch.is_ascii_digit()))
                        .unwrap_or(""),
                    w["name"].as_str().unwrap_or(""),
                    w["packets"],
                    if c["input"]["whole_file"] == true {
                        String::new()
                    } else {
                        format!(
                            "; {} on the first {}",
                            c["tool"].as_str().unwrap_or(""),
                            c["input"]["packets"]
                        )
                    }
                ),
                format!(
                    "{by_wall:.1}× by wall time ({:.1}× by CPU); {:.0}k vs {:.0}k packets/s",
                    c["sealwatch_vs"]["by_cpu"].as_f64().unwrap_or(0.0),
                    w["analyze"]["packets_per_s"].as_f64().unwrap_or(0.0) / 1e3,
                    c["cost"]["packets_per_s"].as_f64().unwrap_or(0.0) / 1e3,
                ),
                if target >= 50.0 {
                    "≥ 50×"
                } else {
                    "≥ 5×"
                },
                Some(by_wall >= target),
            ));
        }
    }
    lines.extend(r["workloads"].as_array().into_iter().flatten().map(|w| {
        (
            format!(
                "`sealwatch analyze`, {} ({} packets)",
                w["name"].as_str().unwrap_or(""),
                w["packets"]
            ),
            format!(
                "{:.2} M packets/s, {:.1}× a bare read of the file",
                w["analyze"]["packets_per_s"].as_f64().unwrap_or(0.0) / 1e6,
                w["analyze_cpu_vs_read"].as_f64().unwrap_or(0.0)
            ),
            "",
            None,
        )
    }));
    lines
}

/// A working directory, removed when dropped (also when a run fails halfway) unless the user
/// asked to keep it.
struct Scratch {
    dir: PathBuf,
    keep: bool,
}

impl Scratch {
    fn new(keep: Option<&Path>) -> anyhow::Result<Scratch> {
        let (dir, keep) = match keep {
            Some(dir) => (dir.to_path_buf(), true),
            None => (
                std::env::temp_dir().join(format!("sealwatch-bench-{}", std::process::id())),
                false,
            ),
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch { dir, keep })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One input of the `analyze` section: a capture, or several analysed in one run.
struct Workload {
    name: String,
    files: Vec<PathBuf>,
    /// Other analyzers timed on it too, each with its own input (the same file, or for tshark
    /// a prefix of it).
    rivals: Vec<(rivals::Installed, Rc<Replica>)>,
}

/// What one child process cost.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cost {
    wall: Duration,
    /// User plus system time: what the work cost a core, whatever else the machine runs.
    cpu: Duration,
    peak_rss_kb: u64,
}

fn analyze(agent: &Path, opts: &Options) -> anyhow::Result<Value> {
    let scratch = Scratch::new(opts.capture_dir.as_deref())?;
    let (pcap, pcapng) = (
        scratch.dir.join("synthetic.pcap"),
        scratch.dir.join("synthetic.pcapng"),
    );
    let started = Instant::now();
    let written =
        synth::write(&pcap, &pcapng, opts.packets).context("writing the synthetic capture")?;
    println!(
        "xtask: bench analyze: synthetic capture of {} packets in {} flows ({:.0} MB pcap, {:.0} MB pcapng) written in {:.1}s",
        written.packets,
        written.flows,
        mb(written.pcap_bytes),
        mb(written.pcapng_bytes),
        started.elapsed().as_secs_f64()
    );
    let mut workloads = vec![
        Workload {
            name: "synthetic.pcap".into(),
            files: vec![pcap],
            rivals: Vec::new(),
        },
        Workload {
            name: "synthetic.pcapng".into(),
            files: vec![pcapng],
            rivals: Vec::new(),
        },
    ];
    let corpus = corpus_files(&opts.corpus);
    let mut replica = None;
    if !corpus.is_empty() && opts.replica_packets > 0 {
        let (whole, prefix) = write_replicas(&scratch.dir, opts)?;
        let mut rivals = Vec::new();
        for tool in rivals::Tool::ALL {
            if let Some(installed) = rivals::find(tool) {
                let input = match (tool, &prefix) {
                    (rivals::Tool::Tshark, Some(prefix)) => Rc::clone(prefix),
                    _ => Rc::clone(&whole),
                };
                rivals.push((installed, input));
            }
        }
        workloads.push(Workload {
            name: format!("corpus ×{}", whole.replicas),
            files: vec![whole.path.clone()],
            rivals,
        });
        replica = Some(whole);
    }
    if !corpus.is_empty() {
        workloads.push(Workload {
            name: format!("corpus ({} files)", corpus.len()),
            files: corpus,
            rivals: Vec::new(),
        });
    }

    let (events_file, counts) = (
        scratch.dir.join("events.json"),
        scratch.dir.join("counts.json"),
    );
    let runs = opts.runs.max(1);
    let mut rows = Vec::new();
    for w in &workloads {
        // Also brings the files into the page cache, so every timed run reads from memory.
        let (frames, bytes) = read_only(agent, &w.files, &counts)?.1;
        let (mut reads, mut analyses) = (Vec::new(), Vec::new());
        let mut rival_runs = vec![Vec::new(); w.rivals.len()];
        // Alternating, so a change in machine load hits all alike.
        for _ in 0..runs {
            reads.push(read_only(agent, &w.files, &counts)?.0);
            let out = File::create(&events_file)
                .with_context(|| format!("creating {}", events_file.display()))?;
            let mut cmd = Command::new(agent);
            cmd.args(["analyze", "--output", "json"])
                .args(&w.files)
                .stdout(out);
            analyses.push(measure(cmd)?);
            for ((tool, input), runs) in w.rivals.iter().zip(&mut rival_runs) {
                let run = rivals::run(tool, &input.path, &scratch.dir)
                    .with_context(|| format!("timing {} on {}", tool.tool.program(), w.name))?;
                runs.push(run);
            }
        }
        let events = count_lines(&events_file)?;
        let mut row = Row::new(w, frames, bytes, events, &reads, &analyses);
        row.rivals = w
            .rivals
            .iter()
            .zip(&rival_runs)
            .map(|((tool, input), runs)| RivalRow::new(tool, input, runs))
            .collect();
        rows.push(row);
    }
    print_table(runs, &rows);
    for row in rows.iter().filter(|r| !r.rivals.is_empty()) {
        print_rivals(runs, row);
    }
    Ok(json!({
        "section": "analyze",
        "schema": 1,
        "agent": agent.display().to_string(),
        "host": host(),
        "runs": runs,
        "synthetic": {
            "packets": written.packets,
            "flows": written.flows,
        },
        "corpus_replica": replica.as_deref().map(|r| r.report.clone()),
        "workloads": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
    }))
}

/// A capture replicated from the corpus by `sealwatch-bench replica` (which reads captures with
/// the agent's own reader), and its report.
struct Replica {
    path: PathBuf,
    packets: u64,
    replicas: u64,
    report: Value,
}

impl Replica {
    fn write(opts: &Options, out: &Path, min_packets: u64) -> anyhow::Result<Replica> {
        let args = [
            "replica".to_owned(),
            "--corpus".to_owned(),
            opts.corpus.to_string_lossy().into_owned(),
            "--out".to_owned(),
            out.to_string_lossy().into_owned(),
            "--min-packets".to_owned(),
            min_packets.to_string(),
        ];
        let report = suite::tool_json(&opts.tool, &args)?;
        let n = |k: &str| report[k].as_u64().unwrap_or(0);
        Ok(Replica {
            path: out.to_path_buf(),
            packets: n("packets"),
            replicas: n("replicas"),
            report,
        })
    }
}

/// The corpus replicated to `opts.replica_packets` packets, and for tshark, when that is
/// fewer, the first replicas holding `opts.tshark_packets`: written the same way, so they are
/// exactly the whole file's first packets and its rate per packet compares.
fn write_replicas(
    dir: &Path,
    opts: &Options,
) -> anyhow::Result<(Rc<Replica>, Option<Rc<Replica>>)> {
    let started = Instant::now();
    let whole = Replica::write(opts, &dir.join("corpus-replica.pcap"), opts.replica_packets)
        .context("replicating the corpus")?;
    let r = &whole.report;
    println!(
        "xtask: bench analyze: corpus ×{}: {} packets ({} per replica: {} IPv4, {} IPv6, {} other) from {} files ({} skipped: other link types or unreadable), {:.0} MB, written in {:.1}s",
        whole.replicas,
        whole.packets,
        r["packets_per_replica"],
        r["per_replica"]["ipv4"],
        r["per_replica"]["ipv6"],
        r["per_replica"]["not_ip"],
        r["files_used"],
        r["files_skipped"].as_array().map_or(0, Vec::len),
        mb(r["bytes"].as_u64().unwrap_or(0)),
        started.elapsed().as_secs_f64()
    );
    let prefix = if opts.tshark_packets < whole.packets {
        let head = Replica::write(
            opts,
            &dir.join("corpus-replica-head.pcap"),
            opts.tshark_packets,
        )
        .context("writing the first replicas of the corpus for tshark")?;
        Some(Rc::new(head))
    } else {
        None
    };
    Ok((Rc::new(whole), prefix))
}

/// A workload's medians.
struct Row {
    name: String,
    files: usize,
    packets: u64,
    bytes: u64,
    events: u64,
    read: Cost,
    analyze: Cost,
    read_walls: Vec<f64>,
    analyze_walls: Vec<f64>,
    rivals: Vec<RivalRow>,
}

/// Another analyzer's medians on a workload.
struct RivalRow {
    tool: rivals::Installed,
    input: Rc<Replica>,
    cost: Cost,
    walls: Vec<f64>,
    /// What it said it saw, in its last run.
    reported_packets: Option<u64>,
    flows: Option<u64>,
}

impl RivalRow {
    fn new(tool: &rivals::Installed, input: &Rc<Replica>, runs: &[rivals::Run]) -> Self {
        let costs: Vec<Cost> = runs.iter().map(|r| r.cost).collect();
        RivalRow {
            tool: tool.clone(),
            input: Rc::clone(input),
            cost: median(&costs),
            walls: costs.iter().map(|c| c.wall.as_secs_f64()).collect(),
            reported_packets: runs.last().and_then(|r| r.packets),
            flows: runs.last().and_then(|r| r.flows),
        }
    }

    fn per_s(&self, d: Duration) -> f64 {
        self.input.packets as f64 / d.as_secs_f64().max(1e-9)
    }
}

impl Row {
    fn new(
        w: &Workload,
        packets: u64,
        bytes: u64,
        events: u64,
        reads: &[Cost],
        analyses: &[Cost],
    ) -> Row {
        let walls = |c: &[Cost]| c.iter().map(|c| c.wall.as_secs_f64()).collect::<Vec<_>>();
        Row {
            name: w.name.clone(),
            files: w.files.len(),
            packets,
            bytes,
            events,
            read: median(reads),
            analyze: median(analyses),
            read_walls: walls(reads),
            analyze_walls: walls(analyses),
            rivals: Vec::new(),
        }
    }

    /// sealwatch's packets per second over `r`'s, by wall time and by CPU time. Per packet, so
    /// it holds when `r` ran on a prefix of the file.
    fn vs(&self, r: &RivalRow) -> (f64, f64) {
        (
            self.per_s(self.packets, self.analyze.wall) / r.per_s(r.cost.wall).max(1e-9),
            self.per_s(self.packets, self.analyze.cpu) / r.per_s(r.cost.cpu).max(1e-9),
        )
    }

    fn rival_json(&self, r: &RivalRow) -> Value {
        let (by_wall, by_cpu) = self.vs(r);
        let whole_file = r.input.packets == self.packets;
        json!({
            "tool": r.tool.tool.program(),
            "version": r.tool.version,
            "command": rivals::command_line(r.tool.tool, &r.input.path),
            "input": {
                "packets": r.input.packets,
                "replicas": r.input.replicas,
                "whole_file": whole_file,
            },
            "cost": cost_json(&r.cost, r.input.packets, None),
            "reported_packets": r.reported_packets,
            "flows": r.flows,
            "wall_s_all_runs": r.walls,
            "sealwatch_vs": { "by_wall": by_wall, "by_cpu": by_cpu },
            "target": r.tool.tool.target(),
        })
    }

    fn per_s(&self, n: u64, d: Duration) -> f64 {
        n as f64 / d.as_secs_f64().max(1e-9)
    }

    /// What analysis costs a core, in bare reads of the same input.
    fn ratio(&self) -> f64 {
        self.analyze.cpu.as_secs_f64() / self.read.cpu.as_secs_f64().max(1e-9)
    }

    fn to_json(&self) -> Value {
        let cost = |c: &Cost| cost_json(c, self.packets, Some(self.bytes));
        let mut v = json!({
            "name": self.name,
            "files": self.files,
            "packets": self.packets,
            "bytes": self.bytes,
            "events": self.events,
            "read_only": cost(&self.read),
            "analyze": cost(&self.analyze),
            "analyze_cpu_vs_read": self.ratio(),
            "wall_s_all_runs": {
                "read_only": self.read_walls,
                "analyze": self.analyze_walls,
            },
        });
        if !self.rivals.is_empty() {
            v["compared_with"] = self.rivals.iter().map(|r| self.rival_json(r)).collect();
        }
        v
    }
}

/// A run's cost, and rates over `packets` (and `bytes`, when known: the rivals' inputs are
/// counted in packets only).
fn cost_json(c: &Cost, packets: u64, bytes: Option<u64>) -> Value {
    let per_s = |n: u64, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    let mut v = json!({
        "wall_s": c.wall.as_secs_f64(),
        "cpu_s": c.cpu.as_secs_f64(),
        "packets_per_s": per_s(packets, c.wall),
        "packets_per_cpu_s": per_s(packets, c.cpu),
        "peak_rss_kb": c.peak_rss_kb,
    });
    if let Some(bytes) = bytes {
        v["mb_per_s"] = json!(per_s(bytes, c.wall) / 1e6);
    }
    v
}

/// sealwatch beside the other analyzers on one workload.
fn print_rivals(runs: usize, row: &Row) {
    println!(
        "{}: sealwatch analyze beside other analyzers, median of {runs} runs; \"sealwatch ×\" is its packets/s over theirs",
        row.name
    );
    println!(
        "{:<11} {:>18} {:>10} {:>8} {:>13} {:>10} {:>12} {:>11} {:>7}",
        "analyzer",
        "input",
        "packets",
        "Mpps",
        "Mpps per core",
        "peak RSS",
        "sealwatch ×",
        "per core",
        "target"
    );
    let line = |name: &str, input: String, packets: u64, c: &Cost, vs: Option<(f64, f64, f64)>| {
        let per_s = |d: Duration| packets as f64 / d.as_secs_f64().max(1e-9) / 1e6;
        let vs = vs.map_or_else(String::new, |(wall, cpu, target)| {
            format!("{wall:>11.1}× {cpu:>10.1}× {target:>6.0}×")
        });
        let text = format!(
            "{:<11} {:>18} {:>10} {:>8.3} {:>13.3} {:>7.1} MB {}",
            name,
            input,
            packets,
            per_s(c.wall),
            per_s(c.cpu),
            c.peak_rss_kb as f64 / 1024.0,
            vs
        );
        println!("{}", text.trim_end());
    };
    line(
        "sealwatch",
        "whole file".into(),
        row.packets,
        &row.analyze,
        None,
    );
    for r in &row.rivals {
        let (wall, cpu) = row.vs(r);
        let input = if r.input.packets == row.packets {
            "whole file".to_owned()
        } else {
            format!("first {}", replicas(r.input.replicas))
        };
        line(
            r.tool.tool.program(),
            input,
            r.input.packets,
            &r.cost,
            Some((wall, cpu, r.tool.tool.target())),
        );
    }
    for r in &row.rivals {
        if r.input.packets != row.packets {
            println!(
                "  {} ran on the first {} ({} packets, the same traffic as the whole file's first packets, in a file of their own): rates compared per packet",
                r.tool.tool.program(),
                replicas(r.input.replicas),
                r.input.packets
            );
        }
        if let Some(seen) = r.reported_packets.filter(|&n| n != r.input.packets) {
            println!(
                "  {} reported {seen} packets of {}",
                r.tool.tool.program(),
                r.input.packets
            );
        }
        if let Some(flows) = r.flows {
            println!(
                "  {} counted {flows} flows in {}",
                r.tool.tool.program(),
                replicas(r.input.replicas)
            );
        }
    }
    println!();
}

fn replicas(n: u64) -> String {
    if n == 1 {
        "replica".to_owned()
    } else {
        format!("{n} replicas")
    }
}

fn print_table(runs: usize, rows: &[Row]) {
    println!("\nanalyze: median of {runs} runs; per core = packets per CPU second (user + system)");
    println!(
        "{:<20} {:>10} {:>9} {:>11} {:>11} {:>10} {:>13} {:>8} {:>9}",
        "workload",
        "packets",
        "MB",
        "read Mpps",
        "analyze",
        "MB/s",
        "Mpps per core",
        "× read",
        "peak RSS"
    );
    for r in rows {
        println!(
            "{:<20} {:>10} {:>9.1} {:>11.2} {:>11.2} {:>10.0} {:>13.2} {:>7.1}× {:>6.1} MB",
            r.name,
            r.packets,
            mb(r.bytes),
            r.per_s(r.packets, r.read.wall) / 1e6,
            r.per_s(r.packets, r.analyze.wall) / 1e6,
            r.per_s(r.bytes, r.analyze.wall) / 1e6,
            r.per_s(r.packets, r.analyze.cpu) / 1e6,
            r.ratio(),
            r.analyze.peak_rss_kb as f64 / 1024.0,
        );
    }
    println!();
}

/// A bare read of the captures (`analyze --read-only`): its cost, and the frames and bytes it
/// counted. `counts` is a scratch file for its stdout (a file, not a pipe to drain while the
/// child is timed).
fn read_only(agent: &Path, files: &[PathBuf], counts: &Path) -> anyhow::Result<(Cost, (u64, u64))> {
    let out = File::create(counts).with_context(|| format!("creating {}", counts.display()))?;
    let mut cmd = Command::new(agent);
    cmd.args(["analyze", "--read-only"]).args(files).stdout(out);
    let cost = measure(cmd)?;
    let text =
        std::fs::read_to_string(counts).with_context(|| format!("reading {}", counts.display()))?;
    let v: Value = serde_json::from_str(text.trim())
        .with_context(|| format!("`analyze --read-only` printed {text:?}"))?;
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    Ok((cost, (n("frames"), n("bytes"))))
}

/// Runs `cmd` to completion and reads its resource usage. `wait4` rather than `Child::wait`:
/// it gives this child's own peak RSS and CPU time (RUSAGE_CHILDREN would mix in earlier
/// children).
///
/// A child's peak RSS as the kernel reports it is at least the memory of what it was before
/// `exec`: with `vfork` (what `Command` uses by default) that is this process's own peak, with
/// `fork` only its current size. So the child is forked (a `pre_exec` hook makes `Command` fork),
/// and this process keeps little in memory between runs. Little in use is not enough: glibc
/// keeps freed heap memory resident (its trim threshold grows with the largest block freed), so
/// after a capture was built in this process (the corpus replica was, once: ~14 MB of frames)
/// every child measured 20 MB, twice what `analyze` really used. Hence the trim before each fork.
pub(super) fn measure(mut cmd: Command) -> anyhow::Result<Cost> {
    // SAFETY: returns free heap pages to the system; touches no memory in use.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0)
    };
    // SAFETY: the hook does nothing, so it is trivially async-signal-safe.
    unsafe { cmd.pre_exec(|| Ok(())) };
    let started = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("running {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: plain C struct of integers; zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our unwaited child; both out-pointers are valid for the call.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    if rc != pid {
        return Err(std::io::Error::last_os_error()).context("wait4");
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{cmd:?} failed (wait status {status:#x})");
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Cost {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        peak_rss_kb: usage.ru_maxrss as u64,
    })
}

/// Lines in a file, read in small pieces: this process's memory bounds what the children's
/// peak RSS can be measured as (see [`measure`]).
pub(super) fn count_lines(path: &Path) -> anyhow::Result<u64> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; 64 << 10];
    let mut lines = 0u64;
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)?;
        if n == 0 {
            return Ok(lines);
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
}

/// Median of each measure separately.
fn median(costs: &[Cost]) -> Cost {
    fn mid<T: Copy + Ord>(mut v: Vec<T>) -> T {
        v.sort();
        v[v.len() / 2]
    }
    Cost {
        wall: mid(costs.iter().map(|c| c.wall).collect()),
        cpu: mid(costs.iter().map(|c| c.cpu).collect()),
        peak_rss_kb: mid(costs.iter().map(|c| c.peak_rss_kb).collect()),
    }
}

fn corpus_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.extension()
                        .is_some_and(|e| e == "pcap" || e == "pcapng" || e == "cap")
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn host() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default();
    json!({ "cpu": cpu, "cpus": cpus, "loadavg_1m": load })
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}
