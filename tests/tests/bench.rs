//! `cargo xtask bench --quick`'s measurements as a check of the ratios: the same tool
//! (`sealwatch-bench`) with small sizes, and thresholds generous enough for a busy shared
//! machine that still catch a fast path that stopped being fast, a flow entry that grew, an
//! agent that stopped keeping up or a throughput collapse. The numbers to publish come from the
//! full `cargo xtask bench`, never from here.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "privileged tests panic with a message"
)]

use std::{process::Command, sync::Mutex};

use sealwatch_tests::{agent_binary, require_root};
use serde_json::Value;

/// One measurement at a time: cargo runs a file's tests in parallel, and a kernel loop beside
/// an iperf3 run would measure each other.
static SERIAL: Mutex<()> = Mutex::new(());

fn bench(args: &[&str]) -> Value {
    let tool = agent_binary().with_file_name("sealwatch-bench");
    let out = Command::new(&tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", tool.display()));
    assert!(
        out.status.success(),
        "sealwatch-bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("sealwatch-bench prints JSON")
}

fn case<'a>(mode: &'a Value, name: &str) -> &'a Value {
    mode["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no case {name}"))
}

#[test]
fn kernel_fast_path_stays_cheap_beside_an_empty_program() {
    if !require_root("kernel_fast_path_stays_cheap_beside_an_empty_program") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let r = bench(&[
        "kernel",
        "--repeat",
        "100000",
        "--rounds",
        "3",
        "--new-flows",
        "300",
    ]);
    // The verifier's walk is deterministic for a kernel and an object: the observers every
    // packet runs must stay far from its one-million-instruction limit (40-75k today, 470-500k
    // when they carried the classifier), and the decide programs with it (about 170k).
    let walked = r["verified_instructions"].as_object().unwrap();
    for program in [
        "tc_ingress",
        "tc_egress",
        "xdp_ingress",
        "tc_enforce_ingress",
        "tc_enforce_egress",
        "xdp_enforce",
    ] {
        let n = walked[program].as_u64().unwrap();
        let limit = if program.contains("enforce") {
            400_000
        } else {
            200_000
        };
        assert!(
            n <= limit,
            "{program}: the verifier walked {n} instructions"
        );
    }
    let modes = r["modes"].as_array().unwrap();
    assert_eq!(modes.len(), 2, "TC and XDP");
    for m in modes {
        let ns = |n: &str| case(m, n)["ns_per_packet"].as_f64().unwrap();
        let ratio = |n: &str| case(m, n)["vs_empty"].as_f64().unwrap();
        // Measured at 2.3-2.8x per call (target 2x, see the README); 6x means a regression.
        assert!(
            ratio("fast_path_single") <= 6.0,
            "{}: fast path {:.1}x empty",
            m["mode"],
            ratio("fast_path_single")
        );
        assert!(
            ns("fast_path") > ns("empty"),
            "the empty program is the floor"
        );
        // The fast path must stay well below what classifying a flow costs (about a third of
        // it per call today: 114 vs 349 ns on TC; per-call times swing by a third on this
        // machine, hence the margin).
        assert!(
            ns("fast_path_single") * 1.5 < ns("first_payload_tcp"),
            "{}: fast path {} ns vs classification {} ns",
            m["mode"],
            ns("fast_path_single"),
            ns("first_payload_tcp")
        );
        assert!(
            ns("non_ip") < ns("fast_path"),
            "skipping a packet costs less than tracking it"
        );
        // The floors (the benchmark already failed if they missed their entries): ours does
        // the same lookup and more, so it costs more than the flow-table floor, though not
        // many times more (1.3-1.6x per call today). The array floor skips the kernel's
        // jhash and bucket walk: 30-40% cheaper in bulk, the case that swings least.
        assert!(
            ns("fast_path") > ns("floor_lookup"),
            "{}: fast path {} ns below its own floor {} ns",
            m["mode"],
            ns("fast_path"),
            ns("floor_lookup")
        );
        assert!(
            ns("fast_path_single") <= 3.0 * ns("floor_lookup_single"),
            "{}: fast path {} ns vs its floor {} ns per call",
            m["mode"],
            ns("fast_path_single"),
            ns("floor_lookup_single")
        );
        assert!(
            ns("floor_array") < ns("floor_lookup"),
            "{}: array floor {} ns, LRU floor {} ns",
            m["mode"],
            ns("floor_array"),
            ns("floor_lookup")
        );
    }
}

#[test]
fn flow_table_entry_size_and_occupancy() {
    if !require_root("flow_table_entry_size_and_occupancy") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let r = bench(&["flow-table", "--sizes", "100000"]);
    let t = &r["tables"][0];
    assert_eq!(t["insert_failed"], 0);
    // An LRU table keeps a few entries per CPU spare: nearly all, not all, are held.
    let held = t["flows_held"].as_f64().unwrap();
    assert!(held >= 99_000.0, "held {held} of 100000 flows");
    let per = t["kernel_bytes_per_entry"].as_f64().unwrap();
    // 193-197 bytes today (target 128, see the README); growth past 256 is a regression.
    assert!(per <= 256.0, "{per} bytes per entry");
}

#[test]
fn agent_reports_every_fed_flow_and_its_memory_is_bounded() {
    if !require_root("agent_reports_every_fed_flow_and_its_memory_is_bounded") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let agent = agent_binary();
    let r = bench(&[
        "agent-memory",
        "--flows",
        "5000,20000",
        "--agent",
        agent.to_str().unwrap(),
    ]);
    for c in r["checkpoints"].as_array().unwrap() {
        let (fed, reported) = (
            c["flows"].as_u64().unwrap(),
            c["reported"].as_u64().unwrap(),
        );
        // Counted by server address: the lab's own neighbour discovery is not among them.
        assert_eq!(reported, fed, "every fed flow reported once");
    }
    let last = &r["checkpoints"][1];
    let per_flow = last["bytes_per_flow_above_idle"].as_f64().unwrap();
    // About 1 KB per flow in a release build today; a debug build more.
    assert!(per_flow < 8192.0, "{per_flow} bytes per live flow");
}

#[test]
fn throughput_with_the_agent_and_time_to_verdict() {
    if !require_root("throughput_with_the_agent_and_time_to_verdict") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let agent = agent_binary();
    let agent = agent.to_str().unwrap();
    let r = bench(&[
        "throughput",
        "--seconds",
        "2",
        "--rounds",
        "1",
        "--agent",
        agent,
    ]);
    let names: Vec<&str> = r["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["config"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "no agent",
            "empty TC programs",
            "flow-table floor at TC",
            "monitor",
            "enforce (flow allowed)"
        ]
    );
    for c in r["configs"].as_array().unwrap() {
        let run = &c["runs"][0]["iperf"];
        assert!(
            run["bytes_received"].as_f64().unwrap() > 1e8,
            "{}: {run}",
            c["config"]
        );
        // Target 0.97 on the full benchmark; a single 2-second run on a shared machine swings.
        assert!(
            c["vs_no_agent"].as_f64().unwrap() >= 0.6,
            "{}: {c}",
            c["config"]
        );
    }
    let r = bench(&["latency", "--flows", "30", "--agent", agent]);
    for k in ["time_to_verdict_ms", "blocked_client_failure_ms"] {
        assert_eq!(r[k]["n"], 30, "{k}");
        assert!(r[k]["p50"].as_f64().unwrap() < 50.0, "{k}: {}", r[k]);
        assert!(r[k]["p99"].as_f64().unwrap() < 1000.0, "{k}: {}", r[k]);
    }
}
