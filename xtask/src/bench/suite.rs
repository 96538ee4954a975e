//! The sections measured by `sealwatch-bench` (kernel programs, flow table, agent memory,
//! throughput, latency), and the summary table of every section against the targets.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::Section;

/// Runs one `sealwatch-bench` section with the sizes `quick` asks for; returns its JSON.
pub fn run(tool: &Path, agent: &Path, section: Section, quick: bool) -> anyhow::Result<Value> {
    let agent = agent.to_string_lossy().into_owned();
    let args: Vec<String> = match (section, quick) {
        (Section::Kernel, false) => words("kernel --repeat 1000000 --rounds 7 --new-flows 2000"),
        (Section::Kernel, true) => words("kernel --repeat 100000 --rounds 3 --new-flows 300"),
        (Section::FlowTable, false) => words("flow-table --sizes 100000,1000000"),
        (Section::FlowTable, true) => words("flow-table --sizes 100000"),
        (Section::AgentMemory, q) => {
            let flows = if q { "20000,100000" } else { "100000,1000000" };
            [
                words("agent-memory --flows"),
                vec![flows.into(), "--agent".into(), agent],
            ]
            .concat()
        }
        (Section::Throughput, q) => {
            let shape = if q {
                "--seconds 2 --rounds 1"
            } else {
                // Ten short rounds rather than five long ones: one stream's rate swings by a
                // few percent per run here, and the ratio is a median of rounds.
                "--seconds 5 --rounds 10"
            };
            [
                words("throughput"),
                words(shape),
                vec!["--agent".into(), agent],
            ]
            .concat()
        }
        (Section::Latency, q) => {
            let flows = if q { "30" } else { "300" };
            [
                words("latency --flows"),
                vec![flows.into(), "--agent".into(), agent],
            ]
            .concat()
        }
        (Section::Analyze, _) => bail!("analyze is measured by xtask itself"),
    };
    tool_json(tool, &args)
}

/// Runs `sealwatch-bench ARGS`; returns the JSON it printed.
pub fn tool_json(tool: &Path, args: &[String]) -> anyhow::Result<Value> {
    let out = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {} {}", tool.display(), args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{} {} failed ({})",
            tool.display(),
            args.join(" "),
            out.status
        );
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{} {} printed no JSON", tool.display(), args.join(" ")))
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// One line of the summary: what was measured, the number, the target and whether it is met.
struct Line {
    what: String,
    measured: String,
    target: &'static str,
    met: Option<bool>,
}

/// The summary table (markdown) of whatever sections ran.
pub fn summary(reports: &[(Section, Value)]) -> String {
    let mut lines = Vec::new();
    for (section, r) in reports {
        match section {
            Section::Kernel => kernel_lines(r, &mut lines),
            Section::FlowTable => {
                for t in r["tables"].as_array().into_iter().flatten() {
                    let per = f(&t["kernel_bytes_per_entry"]);
                    lines.push(Line {
                        what: format!(
                            "kernel bytes per flow entry, {} flows (key {} + value {} B + map overhead)",
                            t["capacity"], t["key_bytes"], t["value_bytes"]
                        ),
                        measured: format!("{per:.0} B"),
                        target: "≤ 128 B",
                        met: Some(per <= 128.0),
                    });
                    lines.push(Line {
                        what: format!(
                            "new flows per second, one core (kernel path, {} flows)",
                            t["capacity"]
                        ),
                        measured: format!(
                            "{:.2} M/s ({:.0} ns each)",
                            f(&t["new_flows_per_core_s"]) / 1e6,
                            f(&t["new_flow_ns"])
                        ),
                        target: "",
                        met: None,
                    });
                }
            }
            Section::AgentMemory => {
                for c in r["checkpoints"].as_array().into_iter().flatten() {
                    let mib = f(&c["rss_mib"]);
                    let flows = f(&c["flows"]);
                    lines.push(Line {
                        what: format!(
                            "agent RSS with {flows:.0} live flows (idle {:.0} MiB)",
                            f(&r["idle_rss_kb"]) / 1024.0
                        ),
                        measured: format!(
                            "{mib:.0} MiB ({:.0} B per flow), peak {:.0} MiB",
                            f(&c["bytes_per_flow_above_idle"]),
                            f(&c["hwm_mib"])
                        ),
                        target: if flows >= 1e6 { "≤ 64 MiB" } else { "" },
                        met: (flows >= 1e6).then_some(mib <= 64.0),
                    });
                }
            }
            Section::Throughput => {
                for c in r["configs"].as_array().into_iter().flatten() {
                    let ratio = f(&c["vs_no_agent"]);
                    let config = c["config"].as_str().unwrap_or("");
                    // The baselines (no agent, empty programs, the flow-table floor at TC)
                    // carry no target.
                    let agent = c["baseline"] == Value::Bool(false);
                    let beside_floor = if agent {
                        format!(", {:.3} of empty TC programs", f(&c["vs_empty_tc"]))
                    } else {
                        String::new()
                    };
                    lines.push(Line {
                        what: format!("iperf3 TCP throughput, {config}"),
                        measured: format!(
                            "{:.2} Gbit/s median ({ratio:.3} of no agent{beside_floor}; medians of rounds), {:.3} CPU s per Gbit",
                            f(&c["gbit_per_s"]),
                            f(&c["cpu_s_per_gbit"])
                        ),
                        target: if agent { "≥ 0.97 of no agent" } else { "" },
                        met: agent.then_some(ratio >= 0.97),
                    });
                }
            }
            Section::Latency => {
                let p = |k: &str| {
                    format!(
                        "p50 {:.2} ms, p99 {:.2} ms ({} flows)",
                        f(&r[k]["p50"]),
                        f(&r[k]["p99"]),
                        r[k]["n"]
                    )
                };
                lines.push(Line {
                    what: "time to verdict: first payload byte sent → flow event out of the agent"
                        .into(),
                    measured: p("time_to_verdict_ms"),
                    target: "",
                    met: None,
                });
                lines.push(Line {
                    what: "enforce: first payload byte sent → blocked client sees the failure"
                        .into(),
                    measured: p("blocked_client_failure_ms"),
                    target: "",
                    met: None,
                });
            }
            Section::Analyze => {
                super::analyze_lines(r)
                    .into_iter()
                    .for_each(|(what, measured, target, met)| {
                        lines.push(Line {
                            what,
                            measured,
                            target,
                            met,
                        })
                    })
            }
        }
    }
    let mut out = String::from("| measure | result | target | met |\n|---|---|---|---|\n");
    for l in lines {
        let met = match l.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {met} |\n",
            l.what, l.measured, l.target
        ));
    }
    out
}

fn kernel_lines(r: &Value, lines: &mut Vec<Line>) {
    if let Some(progs) = r["verified_instructions"]
        .as_object()
        .filter(|p| !p.is_empty())
    {
        let mut walked: Vec<String> = progs
            .iter()
            .map(|(name, n)| format!("{name} {}k", f(n) as u64 / 1000))
            .collect();
        walked.sort();
        lines.push(Line {
            what: "instructions the verifier walked, per program (limit 1000k)".to_string(),
            measured: walked.join(", "),
            target: "",
            met: None,
        });
    }
    for m in r["modes"].as_array().into_iter().flatten() {
        let mode = m["mode"].as_str().unwrap_or("").to_uppercase();
        let case = |name: &str| {
            m["cases"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["name"] == name)
                .cloned()
                .unwrap_or(Value::Null)
        };
        for (name, label, target, limit) in [
            (
                "fast_path",
                "fast path (established flow with a verdict)",
                "≤ 2× empty",
                Some(2.0),
            ),
            (
                "fast_path_single",
                "fast path, one run per call",
                "≤ 2× empty",
                Some(2.0),
            ),
            (
                "first_payload_tcp",
                "first payload of a TCP flow (classification)",
                "≤ 8× empty",
                Some(8.0),
            ),
            (
                "new_flow_udp",
                "first datagram of a new UDP flow (entry + classification)",
                "≤ 8× empty",
                Some(8.0),
            ),
            ("non_ip", "non-IP packet (ARP)", "", None),
            ("other_transport", "IPv4, not TCP/UDP (OSPF)", "", None),
            (
                "floor_lookup",
                "flow-table floor: LRU hash lookup (40 B key) + 2 counter adds, nothing else",
                "",
                None,
            ),
            (
                "floor_lookup_single",
                "flow-table floor, one run per call",
                "",
                None,
            ),
            (
                "floor_array",
                "array floor: a table of our own at its least (slot by multiply-xor hash, key compare, 2 counter adds)",
                "",
                None,
            ),
            (
                "floor_array_single",
                "array floor, one run per call",
                "",
                None,
            ),
            (
                "floor_new_single",
                "new-entry floor: clock + LRU insert + lookup, one run per call",
                "",
                None,
            ),
        ] {
            let c = case(name);
            let ratio = f(&c["vs_empty"]);
            // The empty program timed the way this case was (batched, or one run per call).
            let floor = f(&c["empty_ns"]);
            lines.push(Line {
                what: format!("{mode} {label}"),
                measured: format!(
                    "{:.0} ns, {ratio:.1}× empty ({floor:.0} ns)",
                    f(&c["ns_per_packet"])
                ),
                target,
                met: limit.map(|l| ratio <= l),
            });
        }
        // How much of each cost is ours rather than the flow table's.
        let ns = |name: &str| f(&case(name)["ns_per_packet"]);
        for (ours, floor, label) in [
            (
                "fast_path_single",
                "floor_lookup_single",
                "fast path over its flow-table floor, one run per call",
            ),
            (
                "new_flow_udp",
                "floor_new_single",
                "new UDP flow over its new-entry floor, one run per call",
            ),
        ] {
            if ns(floor) > 0.0 {
                lines.push(Line {
                    what: format!("{mode} {label}"),
                    measured: format!(
                        "{:.2}× ({:.0} ns of ours above the floor)",
                        ns(ours) / ns(floor),
                        ns(ours) - ns(floor)
                    ),
                    target: "",
                    met: None,
                });
            }
        }
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}
