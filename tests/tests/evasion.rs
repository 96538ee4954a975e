//! Evasion: plaintext that tries to pass as encrypted, on real sockets in a two-namespace lab.
//! A real TLS handshake followed by plaintext on the same connection (TLS shut down in-band with
//! close_notify, the socket kept), beside a TLS flow that stays TLS for as many packets; a fake
//! TLS record header in front of an HTTP request; an HTTP request cut into one-byte segments.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "privileged tests panic with a message"
)]

use std::time::Duration;

use sealwatch_tests::{Lab, require_root, verdict};
use serde_json::Value;

const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);
/// Plaintext (or TLS) messages each client sends after the handshake, one segment each: past
/// the 16th and 32nd packet of the client's side, where the kernel re-samples.
const MESSAGES: usize = 40;

/// The TLS server: handshake, one message over TLS, then (`unwrap` mode) close_notify both ways
/// and the rest of the connection in the clear; (`tls` mode) everything over TLS. Counts the
/// messages it got and prints the count per connection to its log.
const SERVER: &str = r#"
import socket, ssl, sys
port, mode, cert, key, log = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.num_tickets = 0
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", port))
srv.listen()
while True:
    conn, _ = srv.accept()
    tls = ctx.wrap_socket(conn, server_side=True)
    tls.recv(64)
    stream = tls.unwrap() if mode == "unwrap" else tls
    got = b""
    while True:
        chunk = stream.recv(65536)
        if not chunk:
            break
        got += chunk
    lines = got.count(b"\n")
    with open(log, "a") as f:
        f.write("%d\n" % lines)
    stream.close()
"#;

/// The matching client: the same two modes, MESSAGES lines each sent alone (TCP_NODELAY and a
/// pause, so each is its own segment).
const CLIENT: &str = r#"
import socket, ssl, sys, time
host, port, mode, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
raw = socket.create_connection((host, port))
raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
tls = ctx.wrap_socket(raw)
tls.sendall(b"hello\n")
stream = tls.unwrap() if mode == "unwrap" else tls
for i in range(n):
    stream.sendall(b"POST /transfer HTTP/1.1 account=alice amount=%d note=sent in the clear\n" % i)
    time.sleep(0.01)
stream.shutdown(socket.SHUT_WR)
stream.recv(1)
"#;

/// Sends `chunks` to port 8080 as separate segments (TCP_NODELAY, a pause between), then reads
/// the answer; prints the status line.
const SPLIT_CLIENT: &str = r#"
import socket, sys, time
host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
req = b"GET / HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n"
s = socket.create_connection((host, port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
if mode == "split":
    for b in req[:12]:
        s.sendall(bytes([b]))
        time.sleep(0.02)
    s.sendall(req[12:])
else:
    # a TLS handshake record header in front of the request
    s.sendall(b"\x16\x03\x01\x00\x05" + req)
answer = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    answer += chunk
print(answer.split(b"\r\n", 1)[0].decode(errors="replace"))
"#;

fn flow_to(events: &[Value], event: &str, port: u16) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["event"] == event && e["server.port"] == port)
        .cloned()
        .collect()
}

#[test]
fn plaintext_after_a_real_tls_handshake_is_reported_as_plaintext() {
    if !require_root("plaintext_after_a_real_tls_handshake_is_reported_as_plaintext") {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    lab.make_keys().expect("keys");
    let dir = lab.dir.clone();
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let server = dir.join("server.py");
    std::fs::write(&server, SERVER).expect("server script");
    std::fs::write(dir.join("client.py"), CLIENT).expect("client script");
    for (port, mode) in [(9443u16, "unwrap"), (9444, "tls")] {
        let log = dir.join(format!("got-{port}"));
        lab.spawn_server(&[
            "python3",
            &server.to_string_lossy(),
            &port.to_string(),
            mode,
            &cert.to_string_lossy(),
            &key.to_string_lossy(),
            &log.to_string_lossy(),
        ])
        .expect("tls server");
        lab.wait_listening(port, false).expect("tls server up");
    }
    let agent = lab.start_agent(&["--idle-timeout", "3s"]).expect("agent");

    let s4 = lab.server_v4.to_string();
    let client = dir.join("client.py").to_string_lossy().into_owned();
    for (port, mode) in [(9443u16, "unwrap"), (9444, "tls")] {
        let out = lab
            .client(
                &[
                    "python3",
                    &client,
                    &s4,
                    &port.to_string(),
                    mode,
                    &MESSAGES.to_string(),
                ],
                None,
                CLIENT_TIMEOUT,
            )
            .expect("client");
        assert!(
            out.status.success(),
            "{mode} client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Every message reached the server: the traffic really happened as described.
        let got = std::fs::read_to_string(dir.join(format!("got-{port}"))).expect("server log");
        assert_eq!(
            got.trim(),
            MESSAGES.to_string(),
            "{mode}: messages the server read"
        );
    }

    agent
        .wait_for(Duration::from_secs(30), |evs| {
            !flow_to(evs, "flow.end", 9443).is_empty() && !flow_to(evs, "flow.end", 9444).is_empty()
        })
        .expect("both flows ended");
    let stopped = agent.stop().expect("stop");
    let events = &stopped.events;

    // The flow that turned to plaintext: first reported as TLS, then again as plaintext with
    // the switch named, and it ends as plaintext.
    let reports = flow_to(events, "flow", 9443);
    assert_eq!(
        reports.len(),
        2,
        "two reports of the unwrapped flow: {reports:?}"
    );
    assert_eq!(
        verdict(&reports[0])[..2],
        ["tls", "encrypted"],
        "{reports:?}"
    );
    assert_eq!(
        reports[1]["sealwatch.encryption"], "plaintext",
        "{reports:?}"
    );
    assert_eq!(reports[1]["sealwatch.plaintext_after_encryption"], true);
    assert_eq!(reports[1]["sealwatch.encryption_status"], 0);
    let end = &flow_to(events, "flow.end", 9443)[0];
    assert_eq!(end["sealwatch.encryption"], "plaintext", "{end}");
    assert_eq!(end["sealwatch.plaintext_after_encryption"], true, "{end}");

    // The control: as many packets, all TLS, never reported as plaintext.
    let control = flow_to(events, "flow", 9444);
    assert_eq!(control.len(), 1, "{control:?}");
    assert_eq!(verdict(&control[0])[..2], ["tls", "encrypted"]);
    let end = &flow_to(events, "flow.end", 9444)[0];
    assert_eq!(end["sealwatch.encryption"], "encrypted", "{end}");
    assert!(end.get("sealwatch.plaintext_after_encryption").is_none());

    // The re-samples that decided it are counted on the way out: both flows were checked
    // (the client's 16th and 32nd packets, at least), and one switch was found.
    let agent_end = events
        .iter()
        .rfind(|e| e["event"] == "agent" && e["sealwatch.agent.state"] == "stopped")
        .expect("agent stopped event");
    assert!(
        agent_end["sealwatch.agent.resamples"].as_u64().unwrap() >= 4,
        "{agent_end}"
    );
    assert_eq!(agent_end["sealwatch.agent.plaintext_after_encryption"], 1);
}

#[test]
fn fake_tls_headers_and_one_byte_segments_do_not_hide_http() {
    if !require_root("fake_tls_headers_and_one_byte_segments_do_not_hide_http") {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    lab.spawn_server(&["python3", "-m", "http.server", "8080"])
        .expect("http server");
    lab.wait_listening(8080, false).expect("http up");
    let script = lab.dir.join("split.py");
    std::fs::write(&script, SPLIT_CLIENT).expect("script");
    let agent = lab.start_agent(&["--idle-timeout", "3s"]).expect("agent");
    let s4 = lab.server_v4.to_string();
    let mut answers = Vec::new();
    for mode in ["split", "fake-tls"] {
        let out = lab
            .client(
                &["python3", &script.to_string_lossy(), &s4, "8080", mode],
                None,
                CLIENT_TIMEOUT,
            )
            .expect("client");
        assert!(
            out.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        answers.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    }
    // The server read a request in both cases (behind the fake record header, an unknown
    // method to it).
    assert!(answers[0].starts_with("HTTP/1.0 200"), "{answers:?}");
    assert!(answers[1].starts_with("HTTP/1.0 501"), "{answers:?}");

    agent
        .wait_for(Duration::from_secs(20), |evs| {
            flow_to(evs, "flow", 8080).len() >= 2
        })
        .expect("both flows reported");
    let stopped = agent.stop().expect("stop");
    let flows = flow_to(&stopped.events, "flow", 8080);
    assert_eq!(flows.len(), 2, "{flows:?}");
    for f in &flows {
        // Neither passes as encrypted: the split request is reassembled from the samples and
        // named; the fake header is five bytes no hello follows, and the server's answer is
        // plain HTTP.
        assert_eq!(f["sealwatch.encryption"], "plaintext", "{f}");
        assert_eq!(f["network.protocol.name"], "http", "{f}");
    }
}
