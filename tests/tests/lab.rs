//! The agent on real traffic: real servers and clients from Debian packages in a two-namespace
//! lab, the agent attached to the server's veth, assertions on its JSON events.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "privileged tests panic with a message"
)]

use std::time::Duration;

use sealwatch_tests::{Agent, Attached, Lab, agent_binary, attached, require_root};
use serde_json::Value;

const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Size of the file the HTTP server hands out, to check byte counters against.
const BLOB_BYTES: usize = 100_000;

/// One flow the test generates and what the agent must say about it.
struct Expect {
    what: &'static str,
    transport: &'static str,
    network_type: &'static str,
    /// Client port, when the client lets us choose it.
    client_port: Option<u16>,
    server_port: u16,
    protocol: &'static str,
    encryption: &'static str,
    action: &'static str,
    end_reason: &'static str,
}

fn start_servers(lab: &mut Lab) {
    lab.spawn_standard_servers().expect("servers");
    std::fs::write(lab.dir.join("blob.bin"), vec![b'x'; BLOB_BYTES]).expect("blob");
    // A UDP sink as well, for datagrams no detector names.
    lab.spawn_server(&["nc", "-u", "-l", "9001"])
        .expect("nc udp");
    lab.wait_listening(9001, true).expect("udp sink up");
}

/// Runs every client once and returns what each flow must look like.
fn run_clients(lab: &Lab) -> Vec<Expect> {
    let s4 = lab.server_v4.to_string();
    let s6 = lab.server_v6.to_string();
    let ok = |out: std::process::Output, what: &str| {
        assert!(
            out.status.success(),
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let blob = ok(
        lab.client(
            &[
                "curl",
                "-sS",
                "--local-port",
                "41001",
                &format!("http://{s4}:8080/blob.bin"),
            ],
            None,
            CLIENT_TIMEOUT,
        )
        .expect("curl"),
        "curl http",
    );
    assert_eq!(blob.stdout.len(), BLOB_BYTES, "the whole file crossed");
    ok(
        lab.client(
            &[
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                "-g",
                "--local-port",
                "41002",
                &format!("http://[{s6}]:8080/"),
            ],
            None,
            CLIENT_TIMEOUT,
        )
        .expect("curl v6"),
        "curl http ipv6",
    );
    ok(
        lab.client(
            &[
                "curl",
                "-sSk",
                "-o",
                "/dev/null",
                "--local-port",
                "41003",
                &format!("https://{s4}:8443/"),
            ],
            None,
            CLIENT_TIMEOUT,
        )
        .expect("curl tls"),
        "curl https",
    );
    let ssh = lab.ssh_probe();
    let ssh: Vec<&str> = ssh.iter().map(String::as_str).collect();
    lab.client(&ssh, None, CLIENT_TIMEOUT).expect("ssh");
    // What a custom encrypted protocol looks like on the wire: bytes indistinguishable from
    // random (xorshift, fixed seed so the run is repeatable).
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..300)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    // And an unnamed protocol in the clear: plain-text telemetry.
    let telemetry = b"sensor=boiler-3 temp=71.5 unit=C status=ok seq=18211\n";
    ok(
        lab.client(
            &["nc", "-q", "1", "-p", "41004", &s4, "9000"],
            Some(&noise),
            CLIENT_TIMEOUT,
        )
        .expect("nc"),
        "nc tcp",
    );
    ok(
        lab.client(
            &["nc", "-u", "-q", "1", "-p", "41005", &s4, "9001"],
            Some(telemetry),
            CLIENT_TIMEOUT,
        )
        .expect("nc"),
        "nc udp",
    );

    let tcp = |what, v, cport, sport, protocol, encryption, action| Expect {
        what,
        transport: "tcp",
        network_type: v,
        client_port: cport,
        server_port: sport,
        protocol,
        encryption,
        action,
        end_reason: "fin",
    };
    vec![
        tcp(
            "http",
            "ipv4",
            Some(41001),
            8080,
            "http",
            "plaintext",
            "alert",
        ),
        tcp(
            "http over ipv6",
            "ipv6",
            Some(41002),
            8080,
            "http",
            "plaintext",
            "alert",
        ),
        tcp(
            "tls",
            "ipv4",
            Some(41003),
            8443,
            "tls",
            "encrypted",
            "allow",
        ),
        tcp("ssh", "ipv4", None, 22, "ssh", "encrypted", "allow"),
        tcp(
            "random bytes",
            "ipv4",
            Some(41004),
            9000,
            "unknown",
            "encrypted",
            "allow",
        ),
        Expect {
            what: "telemetry datagram",
            transport: "udp",
            network_type: "ipv4",
            client_port: Some(41005),
            server_port: 9001,
            protocol: "unknown",
            encryption: "plaintext",
            action: "alert",
            end_reason: "idle",
        },
    ]
}

fn matches(e: &Value, x: &Expect) -> bool {
    e["server.port"] == x.server_port
        && e["network.transport"] == x.transport
        && e["network.type"] == x.network_type
        && x.client_port.is_none_or(|p| e["client.port"] == p)
}

fn attached_programs(lab: &Lab) -> Value {
    let out = Lab::in_ns(
        &lab.server_ns,
        &["bpftool", "-j", "net", "show", "dev", &lab.server_if],
    )
    .output()
    .expect("bpftool");
    assert!(
        out.status.success(),
        "bpftool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("bpftool json");
    v[0].clone()
}

fn classifies_real_traffic(attach: &str) {
    let mut lab = Lab::new().expect("lab");
    start_servers(&mut lab);
    let agent: Agent = lab
        .start_agent(&["--attach", attach, "--idle-timeout", "3s"])
        .expect("agent");

    let progs = attached(&lab.server_ns, &lab.server_if).expect("query attachments");
    let expected_progs = match attach {
        "tc" => Attached {
            tc_ingress: vec!["tc_ingress".into()],
            tc_egress: vec!["tc_egress".into()],
            xdp: false,
        },
        _ => Attached {
            tc_ingress: vec![],
            tc_egress: vec!["tc_egress".into()],
            xdp: true,
        },
    };
    assert_eq!(progs, expected_progs, "attached in {attach} mode");

    let expected = run_clients(&lab);
    // Every flow ends: TCP by FIN, the UDP one by the 3 s idle timeout.
    agent
        .wait_for(Duration::from_secs(20), |evs| {
            expected.iter().all(|x| {
                evs.iter()
                    .any(|e| e["event"] == "flow.end" && matches(e, x))
            })
        })
        .expect("every flow reported and ended");
    let stopped = agent.stop().expect("stop");
    assert!(
        stopped.status.success(),
        "agent exit {:?}: {}",
        stopped.status,
        stopped.stderr
    );
    let events = stopped.events;
    let iface = lab.server_if.as_str();

    for x in &expected {
        let verdicts: Vec<&Value> = events
            .iter()
            .filter(|e| e["event"] == "flow" && matches(e, x))
            .collect();
        assert_eq!(
            verdicts.len(),
            1,
            "{}: exactly one verdict, got {verdicts:?}",
            x.what
        );
        let v = verdicts[0];
        let (client, server) = match x.network_type {
            "ipv4" => (lab.client_v4.to_string(), lab.server_v4.to_string()),
            _ => (lab.client_v6.to_string(), lab.server_v6.to_string()),
        };
        assert_eq!(v["client.address"], client.as_str(), "{}: {v}", x.what);
        assert_eq!(v["server.address"], server.as_str(), "{}: {v}", x.what);
        assert_eq!(v["network.protocol.name"], x.protocol, "{}: {v}", x.what);
        assert_eq!(v["sealwatch.encryption"], x.encryption, "{}: {v}", x.what);
        assert_eq!(v["sealwatch.action"], x.action, "{}: {v}", x.what);
        assert_eq!(v["interface"], iface, "{}: {v}", x.what);
        let fully_encrypted = x.protocol == "unknown" && x.encryption == "encrypted";
        assert_eq!(
            v.get("sealwatch.fully_encrypted").and_then(Value::as_bool),
            fully_encrypted.then_some(true),
            "{}: {v}",
            x.what
        );
        assert!(
            v["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{}: {v}",
            x.what
        );

        let ends: Vec<&Value> = events
            .iter()
            .filter(|e| e["event"] == "flow.end" && matches(e, x))
            .collect();
        assert_eq!(ends.len(), 1, "{}: exactly one end, got {ends:?}", x.what);
        let end = ends[0];
        assert_eq!(
            end["sealwatch.end_reason"], x.end_reason,
            "{}: {end}",
            x.what
        );
        assert!(
            end["sealwatch.client.packets"].as_u64() >= Some(1),
            "{}: {end}",
            x.what
        );
        assert!(
            end["sealwatch.client.bytes"].as_u64() > Some(0),
            "{}: {end}",
            x.what
        );
    }

    // Byte counters: the 100 kB download is all there (plus headers), and not counted twice.
    let blob = events
        .iter()
        .find(|e| e["event"] == "flow.end" && e["client.port"] == 41001)
        .expect("blob flow end");
    let server_bytes = blob["sealwatch.server.bytes"].as_u64().unwrap_or(0);
    assert!(
        (BLOB_BYTES as u64..2 * BLOB_BYTES as u64).contains(&server_bytes),
        "server->client bytes {server_bytes} for a {BLOB_BYTES}-byte file"
    );
    assert!(
        blob["sealwatch.server.packets"].as_u64() >= Some(3),
        "{blob}"
    );

    let stop = events
        .iter()
        .find(|e| e["sealwatch.agent.state"] == "stopped")
        .expect("stopped event");
    let n = |k: &str| {
        stop[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} missing: {stop}"))
    };
    assert!(n("sealwatch.kernel.packets") > 20, "{stop}");
    assert!(
        n("sealwatch.kernel.non_ip") > 0,
        "ARP counted as non-IP: {stop}"
    );
    // IPv6 neighbour discovery between the two ends: a port-less ICMPv6 flow, in the clear.
    assert!(
        events.iter().any(|e| e["event"] == "flow"
            && e["network.transport"] == "icmpv6"
            && e["network.protocol.name"] == "icmp"
            && e["sealwatch.encryption"] == "plaintext"),
        "ICMPv6 neighbour discovery reported as a flow"
    );
    assert_eq!(n("sealwatch.kernel.malformed"), 0, "{stop}");
    assert_eq!(n("sealwatch.kernel.notices_lost"), 0, "{stop}");
    assert_eq!(n("sealwatch.kernel.samples_lost"), 0, "{stop}");
    // Every client flow, plus the ICMPv6 control flows the two ends exchanged on their own.
    let control = events
        .iter()
        .filter(|e| e["event"] == "flow" && e["network.transport"] == "icmpv6")
        .count();
    assert_eq!(
        n("sealwatch.agent.flows_reported"),
        (expected.len() + control) as u64,
        "{stop}"
    );
    // The blob response alone fills the default 2048-byte sample of its direction.
    assert!(n("sealwatch.agent.sample_bytes") >= 2048, "{stop}");

    let progs = attached_programs(&lab);
    let left = progs["tc"].as_array().map(Vec::len).unwrap_or(0)
        + progs["xdp"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(left, 0, "programs detached on SIGINT: {progs}");
}

#[test]
fn tc_mode_classifies_http_tls_ssh_and_unknown() {
    if require_root("tc_mode_classifies_http_tls_ssh_and_unknown") {
        classifies_real_traffic("tc");
    }
}

#[test]
fn xdp_mode_classifies_http_tls_ssh_and_unknown() {
    if require_root("xdp_mode_classifies_http_tls_ssh_and_unknown") {
        classifies_real_traffic("xdp");
    }
}

#[test]
fn text_output_is_one_readable_line_per_event_and_logs_stay_on_stderr() {
    if !require_root("text_output_is_one_readable_line_per_event_and_logs_stay_on_stderr") {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    lab.spawn_server(&["python3", "-m", "http.server", "8080", "--bind", "::"])
        .expect("http");
    lab.wait_listening(8080, false).expect("up");
    let bin = agent_binary();
    let child = Lab::in_ns(
        &lab.server_ns,
        &[
            &bin.to_string_lossy(),
            "run",
            "--iface",
            &lab.server_if,
            "--output",
            "text",
        ],
    )
    .env("RUST_LOG", "warn,sealwatch=debug,sealwatch_ebpf=debug")
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("agent");
    // Wait for the programs, not for a guess at how long verification takes.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while attached(&lab.server_ns, &lab.server_if)
        .map(|a| a.tc_ingress.is_empty())
        .unwrap_or(true)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "agent did not attach within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = format!("http://{}:8080/", lab.server_v4);
    lab.client(
        &[
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "--local-port",
            "41011",
            &url,
        ],
        None,
        CLIENT_TIMEOUT,
    )
    .expect("curl");
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().expect("agent output");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let flow = format!(
        "tcp {}:41011 -> {}:8080  action=alert iface={}",
        lab.client_v4, lab.server_v4, lab.server_if
    );
    let line = text
        .lines()
        .find(|l| l.contains(&flow))
        .unwrap_or_else(|| panic!("no flow line in:\n{text}"));
    assert!(
        line.contains("PLAINTEXT") && line.contains(" http "),
        "{line}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains(" end ") && l.contains(":41011 ") && l.contains("fin after")),
        "{text}"
    );
    assert!(!text.contains('{'), "no JSON in text mode:\n{text}");
    // The kernel programs' aya-log records reach the agent's log (stderr), never stdout.
    let log = String::from_utf8_lossy(&out.stderr);
    let kernel_line = "first payload of side";
    assert!(
        log.contains(kernel_line),
        "kernel debug log forwarded with RUST_LOG=debug:\n{log}"
    );
    assert!(!text.contains(kernel_line), "no log on stdout:\n{text}");
}
