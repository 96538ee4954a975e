//! Live measurements in the namespace lab: TCP throughput and CPU with and without the agent
//! (iperf3 from Debian's package), and how long the agent takes to report a new flow or to make
//! a forbidden one fail.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::{AsFd as _, AsRawFd as _, OwnedFd},
    path::Path,
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use sealwatch_tests::Lab;
use serde_json::{Value, json};

use crate::{
    agent::Agent,
    packets::{HTTP_REQUEST, HTTP_RESPONSE},
    sys,
};

const IPERF_PORT: u16 = 5201;

/// The agent configurations compared.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Config {
    None,
    /// Empty TC programs (`r0 = TCX_NEXT; exit`) on the server interface's ingress and egress:
    /// what attaching at TC costs before a program does anything, the floor of any TC observer.
    EmptyTc,
    /// The flow-table floor program (one LRU lookup of a 40-byte key, two counter adds) at the
    /// same hooks: what any TC observer that counts flows pays before parsing a byte.
    FloorTc,
    Monitor,
    /// Enforce mode, with the measured flow allowed by an exclusion.
    EnforceAllowed,
}

impl Config {
    fn name(self) -> &'static str {
        match self {
            Config::None => "no agent",
            Config::EmptyTc => "empty TC programs",
            Config::FloorTc => "flow-table floor at TC",
            Config::Monitor => "monitor",
            Config::EnforceAllowed => "enforce (flow allowed)",
        }
    }

    /// What the agent's configurations are measured against, not an agent.
    fn baseline(self) -> bool {
        matches!(self, Config::None | Config::EmptyTc | Config::FloorTc)
    }
}

/// How long every throughput run waits before it starts.
const SETTLE: Duration = Duration::from_secs(1);

/// iperf3 throughput and machine CPU per gigabit, each configuration measured `rounds` times,
/// interleaved.
pub fn throughput(agent: &Path, seconds: u32, rounds: usize) -> anyhow::Result<Value> {
    let mut lab = Lab::new()?;
    let port = IPERF_PORT.to_string();
    lab.spawn_server(&["iperf3", "-s", "-p", &port])?;
    lab.wait_listening(IPERF_PORT, false)?;
    let policy = lab.dir.join("iperf-allowed.yaml");
    std::fs::write(
        &policy,
        format!(
            "mode: enforce\nexclusions:\n  - port: {IPERF_PORT}\n    reason: throughput benchmark\n"
        ),
    )?;
    let policy = policy.to_string_lossy().into_owned();
    let configs = [
        Config::None,
        Config::EmptyTc,
        Config::FloorTc,
        Config::Monitor,
        Config::EnforceAllowed,
    ];
    let mut runs: Vec<(Config, Vec<Value>)> = configs.iter().map(|c| (*c, Vec::new())).collect();
    // One run first, not recorded: the lab's first seconds of traffic (fresh sockets, page
    // and slab caches) were the slowest of every round in earlier runs, whatever came first.
    thread::sleep(SETTLE);
    iperf(&lab, seconds)?;
    for round in 0..rounds {
        // Each round starts with a different configuration, so none always runs right after
        // an agent's teardown or always first.
        let n = runs.len();
        for i in 0..n {
            let (config, results) = &mut runs[(round + i) % n];
            let mut tc_links = None;
            let running = match config {
                Config::None => None,
                Config::EmptyTc | Config::FloorTc => {
                    tc_links = Some(attach_at_tc(&lab, *config == Config::FloorTc)?);
                    None
                }
                Config::Monitor => Some(start_agent(&lab, agent, &[])?),
                Config::EnforceAllowed => Some(start_agent(
                    &lab,
                    agent,
                    &["--mode", "enforce", "--policy", &policy],
                )?),
            };
            // The same pause before every configuration's run: the kernel frees the previous
            // agent's programs and preallocated tables after it exits, and a fresh one's
            // start may still be settling; neither is the cost measured here.
            thread::sleep(SETTLE);
            let result = iperf(&lab, seconds)?;
            drop(tc_links);
            if let Some(a) = running {
                let (cpu, rss) = (a.cpu_s()?, crate::scale::rss_kb(a.pid())?);
                drop(a);
                results.push(json!({ "iperf": result, "agent_cpu_s": cpu, "agent_rss_kb": rss }));
            } else {
                results.push(json!({ "iperf": result }));
            }
        }
    }
    let median = |v: &[Value], key: &str| -> f64 {
        let mut xs: Vec<f64> = v.iter().filter_map(|r| r["iperf"][key].as_f64()).collect();
        xs.sort_by(f64::total_cmp);
        xs.get(xs.len() / 2).copied().unwrap_or(0.0)
    };
    // Each round's configurations ran one after the other, so their ratio to that round's
    // run without the agent is what drifts least as the machine's load changes over the
    // minutes of the benchmark; the median of those ratios is reported.
    let gbps_of = |r: &Value| r["iperf"]["gbit_per_s"].as_f64().unwrap_or(0.0);
    let ratios_to = |results: &[Value], base: &[Value]| -> (f64, Vec<f64>) {
        let mut ratios: Vec<f64> = results
            .iter()
            .zip(base)
            .map(|(r, base)| gbps_of(r) / gbps_of(base).max(1e-9))
            .collect();
        ratios.sort_by(f64::total_cmp);
        (ratios.get(ratios.len() / 2).copied().unwrap_or(0.0), ratios)
    };
    let empty_tc_runs = runs
        .iter()
        .find(|(c, _)| *c == Config::EmptyTc)
        .map_or(&[][..], |(_, r)| r.as_slice());
    let rows: Vec<Value> = runs
        .iter()
        .map(|(config, results)| {
            let gbps = median(results, "gbit_per_s");
            let (ratio, ratios) = ratios_to(results, &runs[0].1);
            // Against the hook's own floor: what our programs and agent add to it.
            let (vs_empty_tc, _) = ratios_to(results, empty_tc_runs);
            json!({
                "config": config.name(),
                "baseline": config.baseline(),
                "gbit_per_s": gbps,
                "vs_no_agent": ratio,
                "vs_no_agent_by_round": ratios,
                "vs_empty_tc": vs_empty_tc,
                "cpu_s_per_gbit": median(results, "cpu_s_per_gbit"),
                "retransmits": median(results, "retransmits"),
                "runs": results,
            })
        })
        .collect();
    Ok(json!({
        "section": "throughput",
        "tool": "iperf3, one TCP stream, client and server in two namespaces over a veth pair; the agent on the server side",
        "seconds": seconds,
        "rounds": rounds,
        "configs": rows,
    }))
}

/// Attaches empty programs, or the flow-table floor program with its map (`floor`), at TCX
/// ingress and egress of the lab's server interface, where the agent attaches; they stay
/// attached while the returned links are open.
fn attach_at_tc(lab: &Lab, floor: bool) -> anyhow::Result<Vec<OwnedFd>> {
    let iface = std::ffi::CString::new(lab.server_if.clone())?;
    in_netns(&lab.server_ns, move || {
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(iface.as_ptr()) };
        if ifindex == 0 {
            bail!(
                "no interface {iface:?}: {}",
                std::io::Error::last_os_error()
            );
        }
        // TCX_NEXT: what our programs return for a packet they let through.
        let prog = if floor {
            // The program holds the map: the returned map handle may go.
            let (_map, prog) = sys::lookup_floor(
                sys::ProgType::SchedCls,
                -1,
                sealwatch_common::DEFAULT_FLOW_CAPACITY,
                crate::kernel::FLOOR_KEY,
            )?;
            prog
        } else {
            sys::load_empty(sys::ProgType::SchedCls, -1)?
        };
        let mut links = Vec::new();
        for hook in [sys::TcxHook::Ingress, sys::TcxHook::Egress] {
            links.push(
                sys::attach_tcx(prog.as_fd(), ifindex, hook)
                    .with_context(|| format!("attaching a baseline program at {hook:?}"))?,
            );
        }
        Ok(links)
    })
}

/// One iperf3 run: throughput, retransmits, and the machine's busy CPU time per gigabit
/// received (softirq included: that is where the programs run).
fn iperf(lab: &Lab, seconds: u32) -> anyhow::Result<Value> {
    let secs = seconds.to_string();
    let server = lab.server_v4.to_string();
    let port = IPERF_PORT.to_string();
    let before = busy_cpu_s()?;
    let out = lab.client(
        &["iperf3", "-c", &server, "-p", &port, "-t", &secs, "-J"],
        None,
        Duration::from_secs(u64::from(seconds) + 20),
    )?;
    let busy = busy_cpu_s()? - before;
    if !out.status.success() {
        bail!(
            "iperf3 failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("iperf3 -J output")?;
    let end = &v["end"];
    let bits = end["sum_received"]["bytes"].as_f64().unwrap_or(0.0) * 8.0;
    let bps = end["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0);
    if bits <= 0.0 {
        bail!("iperf3 delivered no bytes");
    }
    Ok(json!({
        "gbit_per_s": bps / 1e9,
        "bytes_received": bits / 8.0,
        "retransmits": end["sum_sent"]["retransmits"].as_f64().unwrap_or(0.0),
        "cpu_busy_s": busy,
        "cpu_s_per_gbit": busy / (bits / 1e9),
    }))
}

/// CPU seconds all CPUs spent not idle, from /proc/stat.
fn busy_cpu_s() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = f
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .take(6)
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(busy as f64 / hz)
}

/// An agent on the lab's server side whose flow events are timestamped as they arrive.
struct Running {
    agent: Agent,
    /// (client port, arrival) of every `flow` event.
    flows: Arc<Mutex<Vec<(u16, Instant)>>>,
}

impl Running {
    fn pid(&self) -> u32 {
        self.agent.pid()
    }

    fn cpu_s(&self) -> anyhow::Result<f64> {
        crate::scale::cpu_s(self.pid())
    }

    fn arrival(&self, client_port: u16) -> Option<Instant> {
        self.flows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(p, _)| *p == client_port)
            .map(|(_, t)| *t)
    }
}

fn start_agent(lab: &Lab, agent: &Path, extra: &[&str]) -> anyhow::Result<Running> {
    let flows = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&flows);
    let agent = Agent::start(lab, agent, extra, move |line, at| {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return;
        };
        if v["event"] == "flow"
            && let Some(port) = v["client.port"].as_u64()
        {
            sink.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((port as u16, at));
        }
    })?;
    Ok(Running { agent, flows })
}

/// Runs `f` on a thread inside network namespace `ns` (sockets it creates stay there).
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        // SAFETY: setns on this thread only; the descriptor is open for the call.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns {path}: {}", std::io::Error::last_os_error());
        }
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
}

/// Time to verdict (monitor mode: from the client's first payload byte to the flow event
/// leaving the agent) and time to failure (enforce mode: from the first payload byte to the
/// blocked client seeing its connection fail).
pub fn latency(agent: &Path, flows: usize) -> anyhow::Result<Value> {
    let lab = Lab::new()?;
    const PORT: u16 = 8088;
    let listener = in_netns(&lab.server_ns, || Ok(TcpListener::bind(("0.0.0.0", PORT))?))?;
    // An HTTP responder that answers at once, so the reply's bytes come right after the
    // request's, as from a fast service.
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            thread::spawn(move || {
                let mut buf = [0u8; 1024];
                if matches!(conn.read(&mut buf), Ok(n) if n > 0) {
                    let _ = conn.write_all(HTTP_RESPONSE);
                }
                let _ = conn.read(&mut buf);
            });
        }
    });
    let server = SocketAddr::from((lab.server_v4, PORT));

    let monitor = start_agent(&lab, agent, &[])?;
    let sent = in_netns(&lab.client_ns, move || {
        let mut sent = Vec::new();
        for _ in 0..flows {
            let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let port = s.local_addr()?.port();
            let t0 = Instant::now();
            s.write_all(HTTP_REQUEST)?;
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf)?;
            sent.push((port, t0));
            drop(s);
            // Paced like a service calling another, not a flood.
            thread::sleep(Duration::from_millis(5));
        }
        Ok(sent)
    })?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut verdict_ms = Vec::new();
    for (port, t0) in &sent {
        let at = loop {
            if let Some(at) = monitor.arrival(*port) {
                break at;
            }
            if Instant::now() > deadline {
                bail!("no flow event for client port {port}");
            }
            thread::sleep(Duration::from_millis(5));
        };
        verdict_ms.push(at.saturating_duration_since(*t0).as_secs_f64() * 1e3);
    }
    drop(monitor);

    let enforce = start_agent(&lab, agent, &["--mode", "enforce"])?;
    let blocked_ms = in_netns(&lab.client_ns, move || {
        let mut times = Vec::new();
        for _ in 0..flows.min(50) {
            let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            let t0 = Instant::now();
            s.write_all(HTTP_REQUEST)?;
            let mut buf = [0u8; 256];
            match s.read(&mut buf) {
                Ok(n) if n > 0 => bail!("a forbidden plaintext request got {n} bytes of answer"),
                // EOF or reset: the agent ended the flow.
                Ok(_) | Err(_) => {}
            }
            times.push(t0.elapsed().as_secs_f64() * 1e3);
            thread::sleep(Duration::from_millis(5));
        }
        Ok(times)
    })?;
    drop(enforce);
    Ok(json!({
        "section": "latency",
        "flows": flows,
        "time_to_verdict_ms": percentiles(&verdict_ms),
        "blocked_client_failure_ms": percentiles(&blocked_ms),
    }))
}

fn percentiles(xs: &[f64]) -> Value {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if v.is_empty() {
            0.0
        } else {
            v[((v.len() - 1) as f64 * q).round() as usize]
        }
    };
    json!({ "n": v.len(), "p50": at(0.5), "p99": at(0.99), "max": at(1.0) })
}
