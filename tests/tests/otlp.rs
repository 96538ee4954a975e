//! OpenTelemetry export from a live lab run: what a collector receives (log records and
//! metrics, over gRPC and HTTP, with TLS), and what happens without one.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "privileged tests panic with a message"
)]

use std::time::{Duration, Instant};

use sealwatch_tests::{Lab, metric_total, require_root};

/// Plaintext UDP datagrams from the client to `ports` distinct server ports: one offence each.
const BURST: &str = r#"
import socket, sys
server, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for port in range(first, first + count):
    s.sendto(b"GET /index.html HTTP/1.1\r\nHost: lab\r\n\r\n", (server, port))
"#;

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
    burst(&lab, 20000, OFFENCES);
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
        let m = lab.scrape(addr);
        let alerts = metric_total(&m, "sealwatch_alerts_total");
        let dropped = metric_total(&m, "sealwatch_alerts_dropped_total");
        if (alerts >= OFFENCES && dropped == alerts) || Instant::now() > deadline {
            assert!(
                metric_total(&m, "sealwatch_export_failures_total") > 0,
                "{m}"
            );
            break (alerts, dropped);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        alerts >= OFFENCES,
        "one alert per offence at least: {alerts}"
    );
    assert_eq!(dropped, alerts, "every undelivered alert is counted");
    let hwm = agent.memory_kib("VmHWM");
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

/// Sends `count` offences (one datagram each to its own port) from the client.
fn burst(lab: &Lab, first: u64, count: u64) {
    let script = lab.dir.join("burst.py");
    std::fs::write(&script, BURST).expect("script");
    let out = lab
        .client(
            &[
                "python3",
                &script.to_string_lossy(),
                &lab.server_v4.to_string(),
                &first.to_string(),
                &count.to_string(),
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
}

/// A collector that accepts everything but answers each request only after 1.5 s (under
/// load, say) while 3000 offences arrive at once: the agent's export queue fills, what does not
/// fit is dropped and counted, memory stays bounded, classification does not wait, and every
/// alert is either received or counted as dropped. Once the collector is fast again, a new
/// offence reaches it promptly.
#[test]
fn a_slow_collector_costs_counted_alerts_not_memory() {
    use sealwatch_tests::otlp::OtlpReceiver;
    if !require_root("a_slow_collector_costs_counted_alerts_not_memory") {
        return;
    }
    const OFFENCES: u64 = 3000;
    const FIRST: u64 = 21000;
    let lab = Lab::new().expect("lab");
    let addr = "127.0.0.1:19467";
    let receiver = OtlpReceiver::in_netns(&lab.server_ns).expect("receiver");
    receiver.set_delay(Duration::from_millis(1500));
    let agent = lab
        .start_agent(&[
            "--otlp-endpoint",
            &receiver.endpoint(),
            "--otlp-protocol",
            "http/protobuf",
            "--otlp-queue",
            "500",
            "--metrics-addr",
            addr,
        ])
        .expect("agent");
    let ours = |e: &serde_json::Value, range: std::ops::Range<u64>| {
        e["network.transport"] == "udp"
            && e["server.port"]
                .as_u64()
                .is_some_and(|p| range.contains(&p))
    };
    burst(&lab, FIRST, OFFENCES);
    agent
        .wait_for(Duration::from_secs(60), |evs| {
            evs.iter()
                .filter(|e| e["event"] == "flow" && ours(e, FIRST..FIRST + OFFENCES))
                .count() as u64
                >= OFFENCES
        })
        .expect("every flow classified while the collector is slow");
    let hwm_during = agent.memory_kib("VmHWM");

    // The collector catches up: every alert produced so far is received or counted dropped.
    receiver.set_delay(Duration::ZERO);
    let alert_records = |rx: &OtlpReceiver| {
        rx.log_records()
            .iter()
            .filter(|r| r.event_name == "sealwatch.alert")
            .count() as u64
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let (alerts, dropped, received) = loop {
        let m = lab.scrape(addr);
        let alerts = metric_total(&m, "sealwatch_alerts_total");
        let dropped = metric_total(&m, "sealwatch_alerts_dropped_total");
        let received = alert_records(&receiver);
        if (alerts >= OFFENCES && received + dropped == alerts) || Instant::now() > deadline {
            break (alerts, dropped, received);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(alerts >= OFFENCES, "one alert per offence: {alerts}");
    assert_eq!(
        received + dropped,
        alerts,
        "every alert received or counted: {received} received, {dropped} dropped of {alerts}"
    );
    assert!(
        dropped > 0 && received > 0,
        "a slow collector drops some, not all: {received} received, {dropped} dropped"
    );
    // After the backlog: a new offence is exported without waiting behind old ones.
    burst(&lab, FIRST + OFFENCES, 1);
    let late = FIRST + OFFENCES;
    assert!(
        receiver.wait_for(Duration::from_secs(15), |rx| rx
            .log_records()
            .iter()
            .any(|r| r.event_name == "sealwatch.alert"
                && r.attributes.get("server.port")
                    == Some(&serde_json::Value::from(late)))),
        "the offence after the slow period reached the collector"
    );
    let hwm = agent.memory_kib("VmHWM");
    let stopped = agent.stop().expect("stop");
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert_eq!(
        stopped
            .stderr
            .matches("the alert export queue is full")
            .count(),
        1,
        "one warning, not a flood:\n{}",
        stopped.stderr
    );
    eprintln!(
        "slow collector: {alerts} alerts, {received} received, {dropped} counted as dropped, \
         agent peak RSS {} MiB during the backlog, {} MiB at the end",
        hwm_during / 1024,
        hwm / 1024
    );
    // Bounded as with no collector at all: the queue (500) and one batch (512) at most.
    assert!(hwm > 0 && hwm < 96 * 1024, "peak RSS {hwm} KiB");
}

#[test]
fn a_collector_receives_deduplicated_alerts_with_the_event_keys_and_the_metrics() {
    use sealwatch_tests::otlp::OtlpReceiver;
    if !require_root("a_collector_receives_deduplicated_alerts_with_the_event_keys_and_the_metrics")
    {
        return;
    }
    const PORT: u16 = 18580;
    const FLOWS: u64 = 20;
    let mut lab = Lab::new().expect("lab");
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
    let receiver = OtlpReceiver::in_netns(&lab.server_ns).expect("receiver");
    let agent = lab
        .start_agent(&[
            "--otlp-endpoint",
            &receiver.endpoint(),
            "--otlp-protocol",
            "http/protobuf",
            "--otlp-metrics-interval",
            "1s",
            "--alert-interval",
            "3s",
        ])
        .expect("agent");
    let url = format!("http://{}:{PORT}/", lab.server_v4);
    for _ in 0..FLOWS {
        let out = lab
            .client(
                &["curl", "-sS", "-o", "/dev/null", &url],
                None,
                Duration::from_secs(10),
            )
            .expect("curl");
        assert!(out.status.success());
    }
    let offence = |r: &sealwatch_tests::otlp::LogRecord| {
        r.attributes.get("server.port") == Some(&serde_json::Value::from(PORT))
    };
    let counted = |rx: &OtlpReceiver| -> u64 {
        rx.log_records()
            .iter()
            .filter(|r| offence(r))
            .filter_map(|r| r.attributes.get("sealwatch.alert.count")?.as_u64())
            .sum()
    };
    assert!(
        receiver.wait_for(Duration::from_secs(30), |rx| counted(rx) >= FLOWS),
        "alert counts: {} of {FLOWS}; records {:?}",
        counted(&receiver),
        receiver.log_records()
    );
    let records: Vec<_> = receiver.log_records().into_iter().filter(offence).collect();
    assert_eq!(counted(&receiver), FLOWS, "the counts add up to the flows");
    assert!(
        records.len() <= 4,
        "{FLOWS} reconnections are a few records, not {FLOWS}: {}",
        records.len()
    );
    let first = &records[0];
    assert_eq!(
        (first.severity_number, first.severity_text.as_str()),
        (13, "WARN")
    );
    assert_eq!(first.event_name, "sealwatch.alert");
    assert_eq!(first.attributes["sealwatch.alert.count"], 1);
    assert_eq!(first.attributes["sealwatch.alert.kind"], "plaintext");
    assert_eq!(first.resource["service.name"], "sealwatch");
    assert!(
        first.resource.contains_key("host.name"),
        "{:?}",
        first.resource
    );
    let client_port = first.attributes["client.port"]
        .as_u64()
        .expect("client.port");
    assert!(
        first
            .body
            .starts_with(&format!("plaintext http from {} (curl pid ", lab.client_v4))
            && first
                .body
                .contains(&format!("to {}:{PORT}/tcp (python3 pid ", lab.server_v4))
            && first
                .body
                .ends_with("): allowed (monitor mode or not enforceable)"),
        "{}",
        first.body
    );
    // Attributes: exactly the flow event's keys and values, plus the alert's own.
    let events = agent.events();
    let event = events
        .iter()
        .find(|e| e["event"] == "flow" && e["client.port"] == client_port)
        .expect("the alerted flow's event");
    let mut attrs: serde_json::Map<String, serde_json::Value> = first
        .attributes
        .iter()
        .filter(|(k, _)| !k.starts_with("sealwatch.alert."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    attrs.sort_keys();
    let mut expected = event.as_object().cloned().expect("object");
    expected.sort_keys();
    assert_eq!(
        serde_json::Value::Object(attrs),
        serde_json::Value::Object(expected)
    );

    // Metrics: the same flows, over OTLP.
    let http = [
        ("network.protocol.name", "http"),
        ("sealwatch.encryption", "plaintext"),
        ("sealwatch.action", "alert"),
    ];
    assert!(
        receiver.wait_for(Duration::from_secs(15), |rx| rx
            .latest("sealwatch.flows", &http)
            == Some(FLOWS as f64)),
        "sealwatch.flows: {:?}",
        receiver.latest("sealwatch.flows", &http)
    );
    assert_eq!(
        receiver.latest("sealwatch.flow_table.capacity", &[]),
        Some(65536.0)
    );

    // The collector refuses for a while: exports are retried with backoff, counted as
    // failures, and resume once it accepts again.
    receiver.set_refusing(true);
    let before = receiver.requests();
    std::thread::sleep(Duration::from_secs(4));
    let during = receiver.requests() - before;
    assert!(during >= 2, "retried while refused: {during} requests");
    assert!(
        during < 40,
        "backoff, not a flood: {during} requests in 4 s"
    );
    receiver.set_refusing(false);
    assert!(
        receiver.wait_for(Duration::from_secs(20), |rx| rx
            .latest("sealwatch.export.failures", &[("signal", "metrics")])
            .is_some_and(|n| n >= 1.0)),
        "the failures are counted and reported after recovery"
    );
    let stopped = agent.stop().expect("stop");
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert_eq!(
        stopped
            .stderr
            .matches("cannot export to the OpenTelemetry collector")
            .count(),
        1,
        "{}",
        stopped.stderr
    );
    assert!(
        stopped
            .stderr
            .contains("OpenTelemetry collector reachable again")
    );
}
