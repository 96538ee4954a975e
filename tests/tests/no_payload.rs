//! Payload bytes never appear in any output (../shared/CONTRACT.md): real plaintext HTTP and
//! Redis traffic carries unique sentinel strings (URL path, a header, a request body, Redis key
//! and value) past an agent with every output on (JSON events, flow log, OTLP, Prometheus, its
//! log at debug level), and `analyze` reads a capture of the same; no output may hold a
//! sentinel, in clear, hex or base64. The traffic must be seen (flow events, alerts, flow-log
//! records and metrics for it), so the test cannot pass by seeing nothing.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "privileged tests panic with a message"
)]

use std::{process::Command, time::Duration};

use etherparse::PacketBuilder;
use sealwatch_tests::{Agent, Lab, agent_binary, otlp::OtlpReceiver, require_root};
use serde_json::Value;

const HTTP_PORT: u16 = 8080;
const REDIS_PORT: u16 = 6379;
const METRICS_PORT: u16 = 19_470;

/// Unique per run, so a match cannot come from anything but this run's traffic.
fn sentinels() -> Vec<String> {
    let tag = format!("{:x}{:x}", std::process::id(), unique());
    ["PATH", "HDR", "BODY", "RKEY", "RVAL"]
        .iter()
        .map(|w| format!("swsentinel{w}{tag}"))
        .collect()
}

fn unique() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Every form a sentinel could leak in: as is, hex (both cases, with and without separators),
/// and base64 at each of the three byte alignments (the quads that only the sentinel's own
/// bytes make up, the same wherever it sits in an encoded payload).
fn forms(sentinel: &str) -> Vec<String> {
    let bytes = sentinel.as_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut forms = vec![
        sentinel.to_owned(),
        hex.clone(),
        hex.to_uppercase(),
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" "),
        bytes
            .iter()
            .map(|b| format!("\\x{b:02x}"))
            .collect::<String>(),
    ];
    for k in 0..3usize {
        let mut shifted = vec![0u8; k];
        shifted.extend_from_slice(bytes);
        let enc = base64(&shifted);
        let first = k.div_ceil(3);
        let last = (k + bytes.len()) / 3;
        forms.push(enc[4 * first..4 * last].to_owned());
    }
    forms
}

/// Panics naming the output and the form when any sentinel appears in `text`.
fn assert_clean(output: &str, text: &str, sentinels: &[String]) {
    for s in sentinels {
        for form in forms(s) {
            if let Some(at) = text.find(&form) {
                let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
                panic!(
                    "payload bytes in {output}: {form:?} (sentinel {s}) in: {}",
                    &text[line_start..line_end]
                );
            }
        }
    }
}

fn redis_server(lab: &mut Lab) {
    lab.spawn_server(&[
        "redis-server",
        "--port",
        &REDIS_PORT.to_string(),
        "--bind",
        "0.0.0.0",
        "--protected-mode",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        ".",
    ])
    .expect("redis-server");
    lab.wait_listening(REDIS_PORT, false)
        .expect("redis listens");
}

fn flows_to(evs: &[Value], port: u16) -> Vec<&Value> {
    evs.iter()
        .filter(|e| e["event"] == "flow" && e["server.port"] == port)
        .collect()
}

#[test]
fn no_output_carries_payload_bytes() {
    if !require_root("no_output_carries_payload_bytes") {
        return;
    }
    let s = sentinels();
    let (path, header, body, key, value) = (&s[0], &s[1], &s[2], &s[3], &s[4]);
    let mut lab = Lab::new().expect("lab");
    lab.spawn_server(&["python3", "-m", "http.server", &HTTP_PORT.to_string()])
        .expect("http server");
    lab.wait_listening(HTTP_PORT, false).expect("http listens");
    redis_server(&mut lab);
    let receiver = OtlpReceiver::in_netns(&lab.server_ns).expect("otlp receiver");
    let flow_log = lab.dir.join("flows.jsonl");

    let bin = agent_binary();
    let (endpoint, metrics_addr) = (receiver.endpoint(), METRICS_PORT.to_string());
    let argv = [
        bin.to_str().unwrap(),
        "run",
        "--iface",
        &lab.server_if,
        "--output",
        "json",
        "--flow-log",
        flow_log.to_str().unwrap(),
        "--flow-log-interval",
        "1s",
        "--otlp-endpoint",
        &endpoint,
        "--otlp-protocol",
        "http/protobuf",
        "--otlp-metrics-interval",
        "1s",
        "--alert-interval",
        "1s",
        "--metrics-addr",
        &metrics_addr,
        "--idle-timeout",
        "2s",
    ];
    let mut cmd = Lab::in_ns(&lab.server_ns, &argv);
    cmd.env("RUST_LOG", "debug");
    let agent = Agent::spawn(&mut cmd).expect("agent");
    agent.wait_attached().expect("attached");

    let server = lab.server_v4.to_string();
    // The sentinels travel only in payload, never on a command line (flow events carry the
    // client's `process.command_line` by design): curl reads them from a config file and
    // redis-cli from its standard input.
    // HTTP: the sentinel in the path, a header and a form body (python answers 501 to POST,
    // echoing the method and path in its error page: more payload to keep out).
    let url = format!("http://{server}:{HTTP_PORT}/{path}");
    let get = lab.dir.join("get.curlrc");
    let post = lab.dir.join("post.curlrc");
    std::fs::write(
        &get,
        format!("url = \"{url}\"\nheader = \"X-Trace: {header}\"\n"),
    )
    .unwrap();
    std::fs::write(&post, format!("url = \"{url}\"\ndata = \"q={body}\"\n")).unwrap();
    for config in [&get, &post] {
        let out = lab
            .client(
                &[
                    "curl",
                    "-s",
                    "-o",
                    "/dev/null",
                    "-K",
                    config.to_str().unwrap(),
                ],
                None,
                Duration::from_secs(20),
            )
            .expect("curl");
        assert!(out.status.success(), "{out:?}");
    }
    for command in [format!("SET {key} {value}\n"), format!("GET {key}\n")] {
        let out = lab
            .client(
                &["redis-cli", "-h", &server],
                Some(command.as_bytes()),
                Duration::from_secs(20),
            )
            .expect("redis-cli");
        assert!(out.status.success(), "{out:?}");
        if command.starts_with("GET") {
            // The server really received and answered with our value.
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), value);
        }
    }

    agent
        .wait_for(Duration::from_secs(30), |evs| {
            flows_to(evs, HTTP_PORT).len() >= 2 && flows_to(evs, REDIS_PORT).len() >= 2
        })
        .expect("the four flows are reported");
    assert!(
        receiver.wait_for(Duration::from_secs(20), |r| {
            let logs = r.log_records();
            [HTTP_PORT, REDIS_PORT].iter().all(|p| {
                logs.iter()
                    .any(|l| l.attributes.get("server.port") == Some(&Value::from(*p)))
            })
        }),
        "alerts for both services reach the collector"
    );
    let metrics = Lab::in_ns(
        &lab.server_ns,
        &[
            "curl",
            "-sS",
            "-m",
            "5",
            &format!("http://127.0.0.1:{METRICS_PORT}/metrics"),
        ],
    )
    .output()
    .expect("scrape");
    let metrics = String::from_utf8_lossy(&metrics.stdout).into_owned();
    for protocol in ["http", "redis"] {
        assert!(
            metrics.contains(&format!("network_protocol_name=\"{protocol}\"")),
            "metrics name {protocol} flows:\n{metrics}"
        );
    }
    // Let the flows end, so flow.end and the flow log's last records are written too.
    std::thread::sleep(Duration::from_secs(4));
    let stopped = agent.stop().expect("stop");
    assert!(stopped.status.success(), "{}", stopped.stderr);

    let events: Vec<String> = stopped.events.iter().map(Value::to_string).collect();
    let events = events.join("\n");
    for (protocol, port) in [("http", HTTP_PORT), ("redis", REDIS_PORT)] {
        let flows = flows_to(&stopped.events, port);
        assert!(
            flows.iter().all(|f| f["network.protocol.name"] == protocol
                && f["sealwatch.encryption"] == "plaintext"),
            "{flows:?}"
        );
    }
    assert!(
        stopped.stderr.contains("DEBUG"),
        "the agent logged at debug level"
    );
    let log = std::fs::read_to_string(&flow_log).expect("flow log");
    let records = log
        .lines()
        .filter(|l| l.contains("\"flow.record\""))
        .count();
    assert!(records >= 4, "{records} flow-log records");
    let otlp = format!(
        "{:?}\n{:?}",
        receiver.log_records(),
        receiver.metric_points()
    );

    assert_clean("stdout events", &events, &s);
    assert_clean("stderr (RUST_LOG=debug)", &stopped.stderr, &s);
    assert_clean("flow log", &log, &s);
    assert_clean("OTLP logs and metrics", &otlp, &s);
    assert_clean("Prometheus /metrics", &metrics, &s);
    eprintln!(
        "clean: {} events, {} flow-log records, {} OTLP records, {} metric lines, {} stderr lines; {} sentinels x {} forms",
        stopped.events.len(),
        records,
        receiver.log_records().len(),
        metrics.lines().count(),
        stopped.stderr.lines().count(),
        s.len(),
        forms(&s[0]).len()
    );

    // The same payloads in a capture, through `analyze` (JSON, text, flow log).
    let capture = lab.dir.join("sentinels.pcap");
    std::fs::write(&capture, sentinel_capture(&s)).expect("capture");
    let analyze_log = lab.dir.join("analyze.jsonl");
    for format in ["json", "text"] {
        let out = Command::new(agent_binary())
            .args(["analyze", capture.to_str().unwrap(), "--output", format])
            .args(["--flow-log", analyze_log.to_str().unwrap()])
            .env("RUST_LOG", "debug")
            .output()
            .expect("analyze");
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let named = |p: &str| {
            if format == "json" {
                stdout.contains(&format!("\"network.protocol.name\":\"{p}\""))
            } else {
                stdout.contains(p)
            }
        };
        assert!(named("http") && named("redis"), "{stdout}");
        assert_clean(&format!("analyze --output {format}"), &stdout, &s);
        assert_clean("analyze stderr", &String::from_utf8_lossy(&out.stderr), &s);
    }
    assert_clean(
        "analyze flow log",
        &std::fs::read_to_string(&analyze_log).expect("analyze flow log"),
        &s,
    );
}

/// A pcap of an HTTP request and a Redis command carrying the sentinels.
fn sentinel_capture(s: &[String]) -> Vec<u8> {
    let http = format!(
        "POST /{} HTTP/1.1\r\nHost: shop\r\nX-Trace: {}\r\nContent-Length: {}\r\n\r\nq={}",
        s[0],
        s[1],
        s[2].len() + 2,
        s[2]
    );
    let redis = format!(
        "*3\r\n$3\r\nSET\r\n${}\r\n{}\r\n${}\r\n{}\r\n",
        s[3].len(),
        s[3],
        s[4].len(),
        s[4]
    );
    let mut pcap = Vec::new();
    for word in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65_535, 1] {
        pcap.extend_from_slice(&word.to_le_bytes());
    }
    for (i, (port, payload)) in [(HTTP_PORT, http), (REDIS_PORT, redis)].iter().enumerate() {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
            .ipv4([10, 79, 0, 2], [10, 79, 0, 1], 64)
            .tcp(41_000 + i as u16, *port, 1, 64_240)
            .ack(1)
            .psh()
            .write(&mut frame, payload.as_bytes())
            .expect("frame");
        let len = frame.len() as u32;
        for word in [1_700_000_000 + i as u32, 0, len, len] {
            pcap.extend_from_slice(&word.to_le_bytes());
        }
        pcap.extend_from_slice(&frame);
    }
    pcap
}

#[test]
fn base64_forms_match_an_encoded_payload() {
    // The check above is only as good as its encodings: each base64 form must be found in
    // the encoding of a payload that holds the sentinel at any offset.
    let sentinel = "swsentinelPATHabc123";
    for prefix in ["", "a", "ab", "abc", "GET /"] {
        let payload = format!("{prefix}{sentinel} HTTP/1.1");
        let encoded = base64(payload.as_bytes());
        assert!(
            forms(sentinel).iter().any(|f| encoded.contains(f.as_str())),
            "{prefix:?}: {encoded}"
        );
    }
    assert_eq!(base64(b"Man"), "TWFu");
    assert_eq!(base64(b"Ma"), "TWE");
}
