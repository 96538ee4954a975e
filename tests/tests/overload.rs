//! Overload: more flows than the flow table holds, and more kernel events than the ring to
//! user space holds. Nothing may be lost silently: what is lost is counted, warned about and
//! exported, flows are still reported, and enforcement still fails closed.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "privileged tests panic with a message"
)]

use std::time::{Duration, Instant};

use sealwatch_tests::{Lab, metric_total, require_root};
use serde_json::Value;

/// One datagram from each of `count` client ports from `first` on (so `count` distinct flows:
/// ephemeral ports would repeat, and a repeated 5-tuple is the same flow) to one server port,
/// then prints how many went out.
const FLOWS_BY_CLIENT_PORT: &str = r#"
import socket, sys, time
server, port, first, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
body = (b"GET /index.html HTTP/1.1\r\nHost: lab\r\nX-Fill: " + b"a" * size)[:size]
sent = 0
for i in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", first + i))
    s.sendto(body, (server, port))
    s.close()
    sent += 1
    # Paced below what the veth's backlog (netdev_max_backlog) holds, so that every datagram
    # reaches the programs: losses there would be the network's, not the agent's.
    if i % 200 == 199:
        time.sleep(0.01)
print(sent)
"#;

/// A UDP sink: counts datagrams and bytes, rewriting the count to a file after each.
const SINK: &str = r#"
import socket, sys
port, out = int(sys.argv[1]), sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", port))
n = b = 0
while True:
    d = s.recv(65536)
    n += 1
    b += len(d)
    with open(out, "w") as f:
        f.write("%d %d\n" % (n, b))
"#;

fn udp_flows(evs: &[Value], event: &str, server_port: u16) -> usize {
    evs.iter()
        .filter(|e| {
            e["event"] == event
                && e["network.transport"] == "udp"
                && e["server.port"] == server_port
        })
        .count()
}

fn stopped_counters(evs: &[Value]) -> Value {
    evs.iter()
        .rfind(|e| e["event"] == "agent" && e["sealwatch.agent.state"] == "stopped")
        .cloned()
        .expect("the agent's stopped event")
}

fn send_flows(lab: &Lab, port: u16, first_client_port: u16, count: usize, size: usize) {
    let script = lab.dir.join("flows.py");
    std::fs::write(&script, FLOWS_BY_CLIENT_PORT).expect("script");
    let out = lab
        .client(
            &[
                "python3",
                &script.to_string_lossy(),
                &lab.server_v4.to_string(),
                &port.to_string(),
                &first_client_port.to_string(),
                &count.to_string(),
                &size.to_string(),
            ],
            None,
            Duration::from_secs(60),
        )
        .expect("flows");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        count.to_string()
    );
}

/// The agent is stopped (SIGSTOP) while 6000 flows of 1400-byte datagrams arrive: their notices
/// and samples (about 1.5 KB a flow) overflow the 4 MiB ring. Once it runs again, the loss is a
/// metric and a warning, and every flow is still reported, from the flow table.
#[test]
fn ring_overflow_is_counted_warned_and_every_flow_still_reported() {
    if !require_root("ring_overflow_is_counted_warned_and_every_flow_still_reported") {
        return;
    }
    const FLOWS: usize = 6000;
    const PORT: u16 = 7100;
    let lab = Lab::new().expect("lab");
    let addr = "127.0.0.1:19466";
    let agent = lab
        .start_agent(&["--idle-timeout", "4s", "--metrics-addr", addr])
        .expect("agent");
    // SAFETY: plain kill(2) on the agent we started.
    unsafe { libc::kill(agent.pid() as i32, libc::SIGSTOP) };
    send_flows(&lab, PORT, 20000, FLOWS, 1400);
    // SAFETY: as above.
    unsafe { libc::kill(agent.pid() as i32, libc::SIGCONT) };

    // Bounded waits that end in the count assertions below (not in a dump of every event).
    let _ = agent.wait_for(Duration::from_secs(60), |evs| {
        udp_flows(evs, "flow", PORT) >= FLOWS
    });
    // The metric, once the agent refreshed it (every 5 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    let lost_metric = loop {
        let lost = metric_total(&lab.scrape(addr), "sealwatch_ringbuf_lost_total");
        if lost > 0 || Instant::now() > deadline {
            break lost;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let stopped = agent.stop().expect("stop");
    let evs = &stopped.events;
    assert_eq!(
        udp_flows(evs, "flow", PORT),
        FLOWS,
        "each flow reported once"
    );
    assert_eq!(
        udp_flows(evs, "flow.end", PORT),
        FLOWS,
        "each flow ended once"
    );

    let c = stopped_counters(evs);
    let lost = c["sealwatch.kernel.notices_lost"].as_u64().unwrap()
        + c["sealwatch.kernel.samples_lost"].as_u64().unwrap();
    assert!(lost > 0, "the ring overflowed: {c}");
    assert!(
        c["sealwatch.agent.verdicts_recovered"].as_u64().unwrap() > 0,
        "flows whose verdict notice was lost were reported from the table: {c}"
    );
    assert!(lost_metric > 0, "sealwatch_ringbuf_lost_total > 0");
    assert!(
        lost_metric <= lost,
        "the metric counts no more than the kernel lost"
    );
    assert!(
        stopped
            .stderr
            .contains("the ring buffer to user space was full"),
        "warned while running: {}",
        stopped.stderr
    );
    eprintln!(
        "ring overflow: {FLOWS} flows, {lost} events lost, {} verdicts recovered, all reported",
        c["sealwatch.agent.verdicts_recovered"]
    );
}

/// Enforce mode with the smallest flow table (1024) and 5000 new plaintext flows in a burst:
/// the table evicts, the agent counts it and keeps reporting, and not one datagram of a
/// forbidden flow reaches the server. A flow after the burst is still judged and dropped.
#[test]
fn a_burst_larger_than_the_flow_table_is_evicted_counted_and_still_enforced() {
    if !require_root("a_burst_larger_than_the_flow_table_is_evicted_counted_and_still_enforced") {
        return;
    }
    const FLOWS: usize = 5000;
    const CAPACITY: usize = 1024;
    const PORT: u16 = 7200;
    let mut lab = Lab::new().expect("lab");
    let sink = lab.dir.join("sink.py");
    let got = lab.dir.join("got");
    std::fs::write(&sink, SINK).expect("sink script");
    lab.spawn_server(&[
        "python3",
        &sink.to_string_lossy(),
        &PORT.to_string(),
        &got.to_string_lossy(),
    ])
    .expect("sink");
    lab.wait_listening(PORT, true).expect("sink up");
    let agent = lab
        .start_agent(&[
            "--mode",
            "enforce",
            "--flow-capacity",
            &CAPACITY.to_string(),
            "--idle-timeout",
            "4s",
        ])
        .expect("agent");
    send_flows(&lab, PORT, 20000, FLOWS, 200);
    let _ = agent.wait_for(Duration::from_secs(60), |evs| {
        udp_flows(evs, "flow", PORT) >= FLOWS
    });
    // After the burst: one more forbidden flow, still judged and dropped.
    send_flows(&lab, PORT, 30000, 1, 200);
    let _ = agent.wait_for(Duration::from_secs(20), |evs| {
        udp_flows(evs, "flow", PORT) > FLOWS
    });
    let stopped = agent.stop().expect("stop");
    let evs = &stopped.events;

    let flows: Vec<&Value> = evs
        .iter()
        .filter(|e| e["event"] == "flow" && e["server.port"] == PORT)
        .collect();
    assert_eq!(flows.len(), FLOWS + 1, "each flow reported once");
    assert!(
        flows.iter().all(|e| e["sealwatch.action"] == "drop"),
        "every one dropped: {:?}",
        flows.iter().find(|e| e["sealwatch.action"] != "drop")
    );
    // Nothing crossed: the sink never wrote its count.
    let received = std::fs::read_to_string(&got).unwrap_or_default();
    assert_eq!(received, "", "datagrams that reached the server");

    let c = stopped_counters(evs);
    let evicted = c["sealwatch.agent.flows_evicted"].as_u64().unwrap();
    let unread = c["sealwatch.agent.flows_evicted_unread"].as_u64().unwrap();
    assert!(
        evicted >= (FLOWS - CAPACITY) as u64,
        "flows the full table evicted are counted: {evicted} of {FLOWS} in a table of {CAPACITY}"
    );
    // Every flow is accounted for: it ended with its totals, or it is counted among those a
    // burst evicted before a sweep could read them (and the agent said so while running).
    let ends = udp_flows(evs, "flow.end", PORT);
    assert_eq!(ends as u64 + unread, (FLOWS + 1) as u64, "{c}");
    if unread > 0 {
        assert!(
            stopped.stderr.contains("the flow table was full"),
            "warned: {}",
            stopped.stderr
        );
    }
    assert_eq!(c["sealwatch.kernel.flow_insert_failed"], 0, "{c}");
    eprintln!(
        "burst: {FLOWS} flows in a table of {CAPACITY}: {evicted} evicted ({unread} before their \
         totals were read), {ends} flow.end, all dropped"
    );
}
