//! Soak: new flows without pause for a bounded time (40 s by default, `SEALWATCH_SOAK_SECS` (30 or more) for
//! longer runs), plaintext UDP datagrams from ever new client ports and HTTP requests over new
//! TCP connections to python's http.server. The agent's resident memory and the kernel flow
//! table's occupancy are sampled every 2 s and recorded (printed, and written to
//! `soak.tsv` under cargo's target tmpdir); the test asserts that every flow was reported and
//! ended once, that nothing was lost on the way, that the table stays within its capacity and
//! empties when traffic stops, and that memory does not grow once warm.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "privileged tests panic with a message"
)]

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use sealwatch_tests::{Lab, metric_total, require_root};
use serde_json::Value;

/// For `secs` seconds: each 10 ms, `udp_per_tick` datagrams from new client ports (counting up
/// from `first`) to `udp_port`, and every `tcp_every` ticks one HTTP request over a new
/// connection to `tcp_port`. Prints the datagrams and the completed requests.
const LOAD: &str = r#"
import socket, sys, time
server, udp_port, tcp_port, first, secs, udp_per_tick, tcp_every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
body = b"GET /soak HTTP/1.1\r\nHost: lab\r\n\r\n"
udp = tcp = tick = 0
end = time.monotonic() + secs
while time.monotonic() < end:
    for _ in range(udp_per_tick):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # Ports come round again after 40000 flows, long after the first one ended.
        s.bind(("0.0.0.0", first + udp % 40000))
        s.sendto(body, (server, udp_port))
        s.close()
        udp += 1
    if tick % tcp_every == 0:
        c = socket.create_connection((server, tcp_port), timeout=5)
        c.sendall(b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n")
        while c.recv(65536):
            pass
        c.close()
        tcp += 1
    tick += 1
    time.sleep(0.01)
print(udp, tcp)
"#;

const UDP_PORT: u16 = 7300;
const TCP_PORT: u16 = 7301;
const CAPACITY: u64 = 8192;

fn count(evs: &[Value], event: &str, transport: &str, port: u16) -> u64 {
    evs.iter()
        .filter(|e| {
            e["event"] == event && e["network.transport"] == transport && e["server.port"] == port
        })
        .count() as u64
}

struct Sample {
    at: Duration,
    rss_kib: u64,
    entries: u64,
}

#[test]
fn a_soak_of_new_flows_keeps_memory_flat_and_the_table_bounded() {
    if !require_root("a_soak_of_new_flows_keeps_memory_flat_and_the_table_bounded") {
        return;
    }
    let secs: u64 = std::env::var("SEALWATCH_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40)
        .max(30);
    let mut lab = Lab::new().expect("lab");
    let dir = lab.dir.to_string_lossy().into_owned();
    lab.spawn_server(&[
        "python3",
        "-m",
        "http.server",
        &TCP_PORT.to_string(),
        "--bind",
        "0.0.0.0",
        "--directory",
        &dir,
    ])
    .expect("http server");
    lab.wait_listening(TCP_PORT, false).expect("listening");
    let addr = "127.0.0.1:19468";
    let agent = lab
        .start_agent(&[
            "--flow-capacity",
            &CAPACITY.to_string(),
            "--idle-timeout",
            "3s",
            "--metrics-addr",
            addr,
        ])
        .expect("agent");

    // 4 datagrams a tick (up to 400 new UDP flows a second) and a request every 5th tick.
    let script = lab.dir.join("load.py");
    std::fs::write(&script, LOAD).expect("script");
    let load = Lab::in_ns(
        &lab.client_ns,
        &[
            "python3",
            &script.to_string_lossy(),
            &lab.server_v4.to_string(),
            &UDP_PORT.to_string(),
            &TCP_PORT.to_string(),
            "20000",
            &secs.to_string(),
            "4",
            "5",
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("load");

    let start = Instant::now();
    let mut samples = Vec::new();
    // Through the load, and on until the table is swept empty after it.
    let quiet_until = Duration::from_secs(secs + 15);
    while start.elapsed() < quiet_until {
        std::thread::sleep(Duration::from_secs(2));
        samples.push(Sample {
            at: start.elapsed(),
            rss_kib: agent.memory_kib("VmRSS"),
            entries: metric_total(&lab.scrape(addr), "sealwatch_flow_table_entries"),
        });
    }
    let out = load.wait_with_output().expect("load ran");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|n| n.parse().expect("counts"))
        .collect();
    let (udp, tcp) = (sent[0], sent[1]);
    let hwm = agent.memory_kib("VmHWM");
    let stopped = agent.stop().expect("stop");
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let evs = &stopped.events;

    let mut table = String::from("seconds\trss_kib\tflow_table_entries\n");
    for s in &samples {
        let _ = writeln!(table, "{}\t{}\t{}", s.at.as_secs(), s.rss_kib, s.entries);
    }
    let record = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("soak.tsv");
    std::fs::write(&record, &table).expect("record");
    eprintln!(
        "soak {secs} s: {udp} UDP flows, {tcp} TCP connections, peak RSS {} MiB; recorded in {}\n{table}",
        hwm / 1024,
        record.display()
    );

    // Events in, events out: every flow reported and ended exactly once.
    assert!(
        udp >= secs * 100 && tcp >= secs * 5,
        "the load ran: {udp} {tcp}"
    );
    assert_eq!(
        count(evs, "flow", "udp", UDP_PORT),
        udp,
        "UDP flows reported"
    );
    assert_eq!(
        count(evs, "flow.end", "udp", UDP_PORT),
        udp,
        "UDP flows ended"
    );
    assert_eq!(
        count(evs, "flow", "tcp", TCP_PORT),
        tcp,
        "TCP flows reported"
    );
    assert_eq!(
        count(evs, "flow.end", "tcp", TCP_PORT),
        tcp,
        "TCP flows ended"
    );
    let c = evs
        .iter()
        .rfind(|e| e["event"] == "agent" && e["sealwatch.agent.state"] == "stopped")
        .expect("stopped event");
    for lost in [
        "sealwatch.kernel.notices_lost",
        "sealwatch.kernel.samples_lost",
        "sealwatch.kernel.flow_insert_failed",
        "sealwatch.agent.flows_evicted",
    ] {
        assert_eq!(c[lost], 0, "{lost}: {c}");
    }

    // The table: within capacity throughout, busy under load, swept empty once it stops. The
    // gauge refreshes every 5 s, so "under load" starts at 10 s.
    let under_load: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= Duration::from_secs(10) && s.at < Duration::from_secs(secs - 2))
        .collect();
    let peak = samples.iter().map(|s| s.entries).max().unwrap_or(0);
    assert!(peak <= CAPACITY, "occupancy {peak} of {CAPACITY}");
    assert!(
        under_load.iter().all(|s| s.entries >= 100),
        "flows in the table under load: {table}"
    );
    let last = samples.last().expect("samples");
    assert!(
        last.entries <= 10,
        "the table empties after the load: {table}"
    );

    // Memory: flat once warm. The last third of the load may not exceed the first third's peak
    // by more than 4 MiB: the ~9000 flows between them would if each leaked half a kilobyte
    // (longer runs catch smaller leaks).
    let third = under_load.len() / 3;
    let early = under_load[..third].iter().map(|s| s.rss_kib).max().unwrap();
    let late = under_load[under_load.len() - third..]
        .iter()
        .map(|s| s.rss_kib)
        .max()
        .unwrap();
    assert!(
        late <= early + 4096,
        "RSS grew from {early} KiB to {late} KiB: {table}"
    );
    assert!(hwm < 96 * 1024, "peak RSS {hwm} KiB");
}
