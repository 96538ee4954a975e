//! The flow log and the Prometheus endpoint on live lab traffic: every flow is recorded once
//! across rotated files with the bytes the kernel counted, and the metrics count the same
//! flows and bytes the events report.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "privileged tests panic with a message"
)]

use std::{collections::HashMap, path::Path, time::Duration};

use sealwatch_tests::{Lab, require_root};
use serde_json::Value;

const FLOWS: usize = 60;
const PORT: u16 = 18480;

fn http_lab() -> Lab {
    let mut lab = Lab::new().expect("lab");
    std::fs::write(lab.dir.join("index.html"), "x".repeat(3000)).expect("page");
    lab.spawn_server(&[
        "python3",
        "-m",
        "http.server",
        &PORT.to_string(),
        "--bind",
        "0.0.0.0",
    ])
    .expect("http server");
    lab.wait_listening(PORT, false).expect("listening");
    lab
}

fn curl(lab: &Lab, n: usize) {
    let url = format!("http://{}:{PORT}/index.html", lab.server_v4);
    for _ in 0..n {
        let out = lab
            .client(
                &["curl", "-sS", "-o", "/dev/null", &url],
                None,
                Duration::from_secs(10),
            )
            .expect("curl");
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every JSON line of FILE and FILE.1 .. FILE.n, oldest first.
fn read_log(path: &Path) -> (Vec<Value>, usize) {
    let mut files = Vec::new();
    for n in (1..=1000).rev() {
        let p = std::path::PathBuf::from(format!("{}.{n}", path.display()));
        if p.exists() {
            files.push(p);
        }
    }
    files.push(path.to_path_buf());
    let mut lines = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("flow log");
        for line in text.lines() {
            lines.push(
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", f.display())),
            );
        }
    }
    (lines, files.len())
}

fn bytes(e: &Value) -> u64 {
    e["sealwatch.client.bytes"].as_u64().unwrap_or(0)
        + e["sealwatch.server.bytes"].as_u64().unwrap_or(0)
}

/// A flow's identity across its events and records.
fn id(e: &Value) -> (String, u64) {
    (
        e["client.address"].as_str().unwrap_or_default().to_owned(),
        e["client.port"].as_u64().unwrap_or_default(),
    )
}

#[test]
fn flow_log_rotates_without_losing_a_record_and_counts_what_the_kernel_counted() {
    if !require_root("flow_log_rotates_without_losing_a_record_and_counts_what_the_kernel_counted")
    {
        return;
    }
    let lab = http_lab();
    let log = lab.dir.join("flows.jsonl");
    let agent = lab
        .start_agent(&[
            "--flow-log",
            &log.to_string_lossy(),
            "--flow-log-max-size",
            "8KiB",
            "--flow-log-keep",
            "1000",
        ])
        .expect("agent");
    curl(&lab, FLOWS);
    let ended = |evs: &[Value]| {
        evs.iter()
            .filter(|e| e["event"] == "flow.end" && e["server.port"] == PORT)
            .count()
    };
    agent
        .wait_for(Duration::from_secs(30), |evs| ended(evs) >= FLOWS)
        .expect("every flow ended");
    let stopped = agent.stop().expect("stop");
    assert!(stopped.status.success(), "{}", stopped.stderr);

    let (lines, files) = read_log(&log);
    assert!(files >= 5, "the log rotated ({files} files)");
    let records: Vec<&Value> = lines
        .iter()
        .filter(|e| e["event"] == "flow.record" && e["server.port"] == PORT)
        .collect();
    let ends: HashMap<(String, u64), &Value> = stopped
        .events
        .iter()
        .filter(|e| e["event"] == "flow.end" && e["server.port"] == PORT)
        .map(|e| (id(e), e))
        .collect();
    assert_eq!(ends.len(), FLOWS);
    // One record per flow here (each lasts milliseconds, the interval is a minute), and none
    // lost or doubled by the rotations.
    let mut per_flow: HashMap<(String, u64), u64> = HashMap::new();
    for r in &records {
        *per_flow.entry(id(r)).or_default() += bytes(r);
        assert_eq!(r["sealwatch.flow.state"], "ended");
        assert_eq!(r["sealwatch.encryption_status"], 0);
        assert_eq!(r["network.protocol.name"], "http");
        assert_eq!(r["sealwatch.encryption"], "plaintext");
        assert!(r["sealwatch.record.start"].is_string() && r["sealwatch.record.end"].is_string());
    }
    assert_eq!(
        records.len(),
        FLOWS,
        "one record per flow, in {files} files"
    );
    for (flow, end) in &ends {
        let recorded = per_flow.get(flow).copied().unwrap_or(0);
        assert_eq!(recorded, bytes(end), "flow {flow:?}: records vs flow.end");
        assert!(recorded > 3000, "the page crossed: {recorded} bytes");
    }
    assert!(
        lines
            .iter()
            .any(|e| e["event"] == "service" && e["server.port"] == PORT),
        "the server's service event is in the log"
    );
    assert!(
        lines
            .iter()
            .any(|e| e["event"] == "agent" && e["sealwatch.agent.state"] == "attached"),
        "the agent's lifecycle is in the log"
    );
    assert!(
        !stopped.events.iter().any(|e| e["event"] == "flow.record"),
        "records go to the flow log, not stdout"
    );
}

/// `/metrics` through curl in the agent's namespace.
fn get(lab: &Lab, url: &str) -> (u16, String) {
    let out = Lab::in_ns(
        &lab.server_ns,
        &["curl", "-sS", "-m", "5", "-w", "\n%{http_code}", url],
    )
    .output()
    .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
    metrics.lines().find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let rest = series.strip_prefix(name)?;
        if !(rest.is_empty() || rest.starts_with('{')) {
            return None;
        }
        labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            .then(|| value.parse().ok())?
    })
}

#[test]
fn prometheus_endpoint_counts_the_flows_and_bytes_the_events_report() {
    if !require_root("prometheus_endpoint_counts_the_flows_and_bytes_the_events_report") {
        return;
    }
    let lab = http_lab();
    let addr = "127.0.0.1:19464";
    let agent = lab.start_agent(&["--metrics-addr", addr]).expect("agent");
    let (code, _) = get(&lab, &format!("http://{addr}/readyz"));
    assert_eq!(code, 200, "ready once attached");
    assert_eq!(get(&lab, &format!("http://{addr}/healthz")).0, 200);
    curl(&lab, 10);
    agent
        .wait_for(Duration::from_secs(30), |evs| {
            evs.iter()
                .filter(|e| e["event"] == "flow.end" && e["server.port"] == PORT)
                .count()
                >= 10
        })
        .expect("flows ended");
    let events = agent.events();
    let http_bytes: u64 = events
        .iter()
        .filter(|e| e["event"] == "flow.end" && e["server.port"] == PORT)
        .map(bytes)
        .sum();
    let (code, metrics) = get(&lab, &format!("http://{addr}/metrics"));
    assert_eq!(code, 200);
    let labels = [
        ("sealwatch_encryption", "plaintext"),
        ("network_protocol_name", "http"),
        ("sealwatch_action", "alert"),
    ];
    assert_eq!(
        sample(&metrics, "sealwatch_flows_total", &labels),
        Some(10),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "sealwatch_bytes_total", &labels),
        Some(http_bytes),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE sealwatch_flow_table_capacity gauge"));
    assert_eq!(
        sample(&metrics, "sealwatch_flow_table_capacity", &[]),
        Some(65536)
    );
    assert!(
        sample(
            &metrics,
            "sealwatch_ringbuf_lost_total",
            &[("kind", "notice")]
        )
        .is_some()
    );
    let stopped = agent.stop().expect("stop");
    assert!(stopped.status.success(), "{}", stopped.stderr);
}
