//! OpenTelemetry export from a live lab run: what a collector receives (log records and
//! metrics, over gRPC and HTTP, with TLS), and what happens without one.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "privileged tests panic with a message"
)]

use std::time::{Duration, Instant};

use sealwatch_tests::{Lab, require_root};

/// Plaintext UDP datagrams from the client to `ports` distinct server ports: one offence each.
const BURST: &str = r#"
import socket, sys
server, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for port in range(first, first + count):
    s.sendto(b"GET /index.html HTTP/1.1\r\nHost: lab\r\n\r\n", (server, port))
"#;

fn metrics(lab: &Lab, addr: &str) -> String {
    let out = Lab::in_ns(
        &lab.server_ns,
        &["curl", "-sS", "-m", "5", &format!("http://{addr}/metrics")],
    )
    .output()
    .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sum of every series of `name`.
fn total(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn without_a_collector_classification_goes_on_and_every_alert_is_accounted_for() {
    if !require_root("without_a_collector_classification_goes_on_and_every_alert_is_accounted_for")
    {
        return;
    }
    const OFFENCES: u64 = 3000;
    let lab = Lab::new().expect("lab");
    let addr = "127.0.0.1:19465";
    // Port 9 in the agent's namespace: nothing listens, every export is refused.
    let agent = lab
        .start_agent(&[
            "--otlp-endpoint",
            "http://127.0.0.1:9",
            "--otlp-queue",
            "500",
            "--metrics-addr",
            addr,
        ])
        .expect("agent");
    let script = lab.dir.join("burst.py");
    std::fs::write(&script, BURST).expect("script");
    let out = lab
        .client(
            &[
                "python3",
                &script.to_string_lossy(),
                &lab.server_v4.to_string(),
                "20000",
                &OFFENCES.to_string(),
            ],
            None,
            Duration::from_secs(30),
        )
        .expect("burst");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flows = |evs: &[serde_json::Value]| {
        evs.iter()
            .filter(|e| {
                e["event"] == "flow"
                    && e["network.transport"] == "udp"
                    && e["server.port"]
                        .as_u64()
                        .is_some_and(|p| (20000..20000 + OFFENCES).contains(&p))
            })
            .count() as u64
    };
    agent
        .wait_for(Duration::from_secs(60), |evs| flows(evs) >= OFFENCES)
        .expect("every flow classified while the collector is absent");
    // Every alert produced is either delivered (none: nothing listens) or counted as dropped,
    // once the queue has drained through its failed exports.
    let deadline = Instant::now() + Duration::from_secs(90);
    let (alerts, dropped) = loop {
        let m = metrics(&lab, addr);
        let alerts = total(&m, "sealwatch_alerts_total");
        let dropped = total(&m, "sealwatch_alerts_dropped_total");
        if (alerts >= OFFENCES && dropped == alerts) || Instant::now() > deadline {
            assert!(total(&m, "sealwatch_export_failures_total") > 0, "{m}");
            break (alerts, dropped);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        alerts >= OFFENCES,
        "one alert per offence at least: {alerts}"
    );
    assert_eq!(dropped, alerts, "every undelivered alert is counted");
    let hwm = vm_hwm_kib(agent.pid());
    let stopped = agent.stop().expect("stop");
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let warnings = stopped
        .stderr
        .matches("cannot export to the OpenTelemetry collector")
        .count();
    assert_eq!(warnings, 1, "one warning, not a flood:\n{}", stopped.stderr);
    eprintln!(
        "collector absent: {alerts} alerts, {dropped} counted as dropped, agent peak RSS {} MiB",
        hwm / 1024
    );
    // The queue holds at most 500 records and a batch 512: the agent stays near its usual
    // size (about 45 MiB here, debug build) instead of growing with the backlog.
    assert!(hwm > 0 && hwm < 96 * 1024, "peak RSS {hwm} KiB");
}
