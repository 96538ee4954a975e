//! Flow-table scale: what one flow costs the kernel (bytes per table entry, new flows per second
//! a core sustains) and what a running agent's memory is with 100k and 1M live flows.
//!
//! The agent part feeds a real agent, attached in a lab namespace, through its own loaded
//! program: `BPF_PROG_TEST_RUN` on the agent's `tc_ingress` runs with the agent's maps and event
//! ring, so every crafted flow reaches its flow table and its user space exactly as a flow on
//! the wire would, at a rate no packet generator on this machine could sustain for a million
//! handshakes.

use std::{
    os::fd::AsFd as _,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use aya::{maps::MapInfo, programs::loaded_programs};
use sealwatch::programs::{LoadOptions, Programs};
use sealwatch_common::stats::Stat;
use sealwatch_tests::Lab;
use serde_json::{Value, json};

use crate::{agent::Agent, packets::Endpoints, sys};

const SERVER: (std::net::Ipv4Addr, u16) = (std::net::Ipv4Addr::new(10, 202, 0, 1), 8080);

/// Kernel bytes per flow entry and the new-flow rate, for a table of each size.
pub fn kernel_table(sizes: &[u32]) -> anyhow::Result<Value> {
    let mut rows = Vec::new();
    for &size in sizes {
        let mut programs = Programs::load(
            LoadOptions {
                sample_bytes: sealwatch_common::DEFAULT_SAMPLE_BYTES,
                flow_capacity: size,
                kernel_log_level: 0,
                ingress: Some(sealwatch::cli::AttachMode::Tc),
            },
            None,
        )
        .context("loading the kernel programs")?;
        let program = programs
            .ebpf_mut()
            .program("tc_ingress")
            .context("program tc_ingress")?;
        let table = flow_table_of(&program.info()?)?;
        let prog = program.fd()?.try_clone()?;
        // One SYN per flow: the cost of creating an entry, without classification.
        let mut ns = 0u64;
        let started = Instant::now();
        for i in 0..size {
            let syn = Endpoints::nth(i, SERVER).tcp(true, "S", &[]);
            ns += u64::from(sys::test_run(prog.as_fd(), &syn, 1)?.ns);
        }
        let wall = started.elapsed();
        let flows = programs.take_flows()?;
        let held = flows.keys().filter(Result::is_ok).count() as u64;
        let stats = programs.take_stats()?;
        let failed: u64 = stats
            .get(&(Stat::FlowInsertFailed as u32), 0)
            .map(|v| v.iter().sum())
            .unwrap_or(0);
        let per_flow_ns = ns as f64 / f64::from(size.max(1));
        rows.push(json!({
            "capacity": size,
            "key_bytes": table.key_size,
            "value_bytes": table.value_size,
            "memlock_bytes": table.memlock,
            "kernel_bytes_per_entry": table.memlock as f64 / f64::from(table.max_entries.max(1)),
            "flows_inserted": size,
            "flows_held": held,
            "insert_failed": failed,
            "new_flow_ns": per_flow_ns,
            "new_flows_per_core_s": 1e9 / per_flow_ns.max(1e-9),
            "insert_wall_s": wall.as_secs_f64(),
        }));
    }
    Ok(json!({ "section": "flow_table", "tables": rows }))
}

struct Table {
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    memlock: u64,
}

/// The `FLOWS` map a program uses, and what the kernel charges for it (`memlock` in fdinfo:
/// the preallocated entries, buckets and LRU lists, the map's real footprint).
fn flow_table_of(info: &aya::programs::ProgramInfo) -> anyhow::Result<Table> {
    for id in info.map_ids()?.unwrap_or_default() {
        let map = MapInfo::from_id(id)?;
        if map.name_as_str() != Some("FLOWS") {
            continue;
        }
        let fd = map.fd()?;
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd.as_fd());
        let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{raw}"))?;
        let memlock = fdinfo
            .lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse().ok())
            .context("no memlock line in the map's fdinfo")?;
        return Ok(Table {
            key_size: map.key_size(),
            value_size: map.value_size(),
            max_entries: map.max_entries(),
            memlock,
        });
    }
    bail!("the program uses no map named FLOWS")
}

/// A running agent's resident memory with `checkpoints` live flows (ascending), fed through
/// its own program.
pub fn agent_memory(agent: &Path, checkpoints: &[u32]) -> anyhow::Result<Value> {
    let most = checkpoints.iter().copied().max().unwrap_or(0);
    let lab = Lab::new()?;
    let capacity = (most + most / 4).next_power_of_two().max(1024);
    let capacity = capacity.to_string();
    let reported = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&reported);
    // Only the fed flows: the lab's own neighbour discovery makes a few flows of its own.
    let ours = format!(
        r#""server.address":"{}","server.port":{}"#,
        SERVER.0, SERVER.1
    );
    let running = Agent::start(
        &lab,
        agent,
        // Nothing ends while we count.
        &["--flow-capacity", &capacity, "--idle-timeout", "1h"],
        move |line, _| {
            // A cheap check: a million lines go through here.
            if line.starts_with(r#"{"event":"flow","#) && line.contains(&ours) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        },
    )?;
    let pid = running.pid();
    let program = agent_program(pid)?;
    let table = flow_table_of(&program)?;
    let prog = program.fd()?;
    let idle_rss = rss_kb(pid)?;
    let mut rows = Vec::new();
    let mut fed = 0u32;
    let started = Instant::now();
    for &target in checkpoints {
        while fed < target {
            // At most this many flows ahead of what the agent reported: the event ring holds
            // about ten thousand flows' notices and samples.
            while u64::from(fed) > reported.load(Ordering::Relaxed) + 4000 {
                wait_for_progress(&reported, fed)?;
            }
            for packet in Endpoints::nth(fed, SERVER).http_exchange() {
                sys::test_run(prog.as_fd(), &packet, 1)?;
            }
            fed += 1;
        }
        // Every flow reported, then a few seconds for the sweep that reads the table.
        while reported.load(Ordering::Relaxed) < u64::from(fed) {
            wait_for_progress(&reported, fed)?;
        }
        thread::sleep(Duration::from_secs(3));
        let rss = rss_kb(pid)?;
        let hwm = hwm_kb(pid)?;
        let cpu = cpu_s(pid)?;
        rows.push(json!({
            "flows": fed,
            "reported": reported.load(Ordering::Relaxed),
            "rss_kb": rss,
            "rss_mib": rss as f64 / 1024.0,
            // The peak so far: what a sweep's or a burst's transient memory adds to it.
            "hwm_kb": hwm,
            "hwm_mib": hwm as f64 / 1024.0,
            "bytes_per_flow_above_idle": (rss.saturating_sub(idle_rss) * 1024) as f64 / f64::from(fed.max(1)),
            "agent_cpu_s": cpu,
            "elapsed_s": started.elapsed().as_secs_f64(),
        }));
    }
    drop(running);
    drop(lab);
    Ok(json!({
        "section": "agent_memory",
        "idle_rss_kb": idle_rss,
        "flow_capacity": capacity,
        "kernel_table_memlock_bytes": table.memlock,
        "checkpoints": rows,
    }))
}

/// Sleeps a little; fails when the agent stopped reporting flows for 30 s.
fn wait_for_progress(reported: &AtomicU64, fed: u32) -> anyhow::Result<()> {
    let before = reported.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(30);
    while reported.load(Ordering::Relaxed) == before {
        if Instant::now() > deadline {
            bail!("the agent reported {before} of {fed} flows and no more for 30 s");
        }
        thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// The `tc_ingress` program the agent with `pid` loaded, found among the programs its file
/// descriptors hold (other tests or agents may load programs of the same name meanwhile).
pub fn agent_program(pid: u32) -> anyhow::Result<aya::programs::ProgramInfo> {
    let mut ids = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))?.filter_map(Result::ok) {
        let is_prog = std::fs::read_link(fd.path())
            .is_ok_and(|l| l.to_string_lossy() == "anon_inode:bpf-prog");
        if !is_prog {
            continue;
        }
        let fdinfo = format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy());
        let info = std::fs::read_to_string(fdinfo).unwrap_or_default();
        ids.extend(
            info.lines()
                .filter_map(|l| l.strip_prefix("prog_id:"))
                .filter_map(|v| v.trim().parse::<u32>().ok()),
        );
    }
    loaded_programs()
        .filter_map(Result::ok)
        .find(|p| ids.contains(&p.id()) && p.name_as_str() == Some("tc_ingress"))
        .with_context(|| format!("process {pid} holds no tc_ingress program"))
}

pub fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    status_kb(pid, "VmRSS:")
}

/// Peak resident memory of the process so far.
pub fn hwm_kb(pid: u32) -> anyhow::Result<u64> {
    status_kb(pid, "VmHWM:")
}

fn status_kb(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} for process {pid}"))
}

/// User plus system CPU seconds a process has used.
pub fn cpu_s(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((ticks(11) + ticks(12)) as f64 / hz)
}
