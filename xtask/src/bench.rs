//! `cargo xtask bench`: how fast the release agent is, as numbers that compare across runs and
//! machines. Each section measures one part and writes `target/bench/<section>.json`; today
//! that is `analyze` (offline analysis throughput). Kernel per-packet cost would be another
//! section beside it.
//!
//! Numbers are medians over several runs, and each is also given relative to a baseline
//! measured in the same run on the same input (for `analyze`: a bare read of the capture), so
//! a slow or busy machine shows as slow absolute numbers but a steady ratio. Nothing here is a
//! pass/fail assertion: timing thresholds in tests fail on busy machines and teach people to
//! ignore failures.

mod replica;
mod synth;

use std::{
    fs::File,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::ValueEnum;
use serde_json::{Value, json};

/// A part of the agent with its own benchmark and its own JSON file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Section {
    /// `sealwatch analyze` over a synthetic capture (pcap and pcapng) and the corpus.
    Analyze,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
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
    /// noise, which the corpus itself is too small for (0: no such workload).
    pub replica_packets: u64,
    /// Where the JSON reports go.
    pub out_dir: PathBuf,
}

pub fn run(agent: &Path, opts: &Options) -> anyhow::Result<()> {
    let sections = if opts.sections.is_empty() {
        Section::value_variants().to_vec()
    } else {
        opts.sections.clone()
    };
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating {}", opts.out_dir.display()))?;
    for section in sections {
        let report = match section {
            Section::Analyze => analyze(agent, opts)?,
        };
        let path = opts.out_dir.join(format!("{}.json", section.name()));
        std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!(
            "xtask: bench {}: written to {}",
            section.name(),
            path.display()
        );
    }
    Ok(())
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
}

/// What one child process cost.
#[derive(Debug, Clone, Copy)]
struct Cost {
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
        },
        Workload {
            name: "synthetic.pcapng".into(),
            files: vec![pcapng],
        },
    ];
    let corpus = corpus_files(&opts.corpus);
    let mut replica = None;
    if !corpus.is_empty() && opts.replica_packets > 0 {
        let whole = write_replica(&scratch.dir, opts)?;
        workloads.push(Workload {
            name: format!("corpus ×{}", whole.replicas),
            files: vec![whole.path.clone()],
        });
        replica = Some(whole);
    }
    if !corpus.is_empty() {
        workloads.push(Workload {
            name: format!("corpus ({} files)", corpus.len()),
            files: corpus,
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
        // Alternating, so a change in machine load hits both alike.
        for _ in 0..runs {
            reads.push(read_only(agent, &w.files, &counts)?.0);
            let out = File::create(&events_file)
                .with_context(|| format!("creating {}", events_file.display()))?;
            let mut cmd = Command::new(agent);
            cmd.args(["analyze", "--output", "json"])
                .args(&w.files)
                .stdout(out);
            analyses.push(measure(cmd)?);
        }
        let events = count_lines(&events_file)?;
        rows.push(Row::new(w, frames, bytes, events, &reads, &analyses));
    }
    print_table(runs, &rows);
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
        "corpus_replica": replica.as_ref().map(replica_json),
        "workloads": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
    }))
}

/// The corpus replicated to `opts.replica_packets` packets.
fn write_replica(dir: &Path, opts: &Options) -> anyhow::Result<replica::Replica> {
    let started = Instant::now();
    let whole = replica::write(
        &opts.corpus,
        &dir.join("corpus-replica.pcap"),
        opts.replica_packets,
    )
    .context("replicating the corpus")?;
    println!(
        "xtask: bench analyze: corpus ×{}: {} packets ({} per replica: {} IPv4, {} IPv6, {} other) from {} files ({} skipped: other link types or unreadable), {:.0} MB, written in {:.1}s",
        whole.replicas,
        whole.packets,
        whole.packets_per_replica,
        whole.ipv4,
        whole.ipv6,
        whole.not_ip,
        whole.files_used,
        whole.files_skipped.len(),
        mb(whole.bytes),
        started.elapsed().as_secs_f64()
    );
    Ok(whole)
}

fn replica_json(r: &replica::Replica) -> Value {
    json!({
        "packets": r.packets,
        "bytes": r.bytes,
        "replicas": r.replicas,
        "packets_per_replica": r.packets_per_replica,
        "per_replica": { "ipv4": r.ipv4, "ipv6": r.ipv6, "not_ip": r.not_ip },
        "files_used": r.files_used,
        "files_skipped": r.files_skipped.iter().map(|(file, reason)| json!({
            "file": file.file_name().map(|n| n.to_string_lossy().into_owned()),
            "reason": reason,
        })).collect::<Vec<_>>(),
        "frames_skipped": r.frames_skipped,
        "files_truncated": r.files_truncated,
    })
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
        }
    }

    fn per_s(&self, n: u64, d: Duration) -> f64 {
        n as f64 / d.as_secs_f64().max(1e-9)
    }

    /// What analysis costs a core, in bare reads of the same input.
    fn ratio(&self) -> f64 {
        self.analyze.cpu.as_secs_f64() / self.read.cpu.as_secs_f64().max(1e-9)
    }

    fn to_json(&self) -> Value {
        let cost = |c: &Cost| {
            json!({
                "wall_s": c.wall.as_secs_f64(),
                "cpu_s": c.cpu.as_secs_f64(),
                "packets_per_s": self.per_s(self.packets, c.wall),
                "packets_per_cpu_s": self.per_s(self.packets, c.cpu),
                "mb_per_s": self.per_s(self.bytes, c.wall) / 1e6,
                "peak_rss_kb": c.peak_rss_kb,
            })
        };
        json!({
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
        })
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
/// after the corpus replica was built from ~14 MB of frames every child measured 20 MB, twice
/// what `analyze` really used. Hence the trim before each fork.
fn measure(mut cmd: Command) -> anyhow::Result<Cost> {
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
fn count_lines(path: &Path) -> anyhow::Result<u64> {
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
