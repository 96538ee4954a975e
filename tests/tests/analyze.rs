//! `sealwatch analyze` on capture files: real captures from ../shared/corpus, captures written
//! here to cover link types and timestamp formats, and bad input.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "tests panic with a message"
)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use etherparse::PacketBuilder;
use sealwatch_tests::agent_binary;
use serde_json::Value;

fn corpus(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus/pcaps")
        .join(name);
    assert!(
        p.exists(),
        "{} missing: the corpus lives in ../shared beside the repository",
        p.display()
    );
    p
}

fn analyze(files: &[&Path]) -> (Output, Vec<Value>) {
    let out = Command::new(agent_binary())
        .args(["analyze", "--output", "json"])
        .args(files)
        .output()
        .expect("run sealwatch analyze");
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (out, events)
}

/// A file path in the temp dir, removed when dropped (also when the test fails).
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    Scratch(std::env::temp_dir().join(format!("sealwatch-analyze-{}-{name}", std::process::id())))
}

#[test]
fn http_capture_gives_the_events_run_would() {
    let (out, events) = analyze(&[&corpus("http-crash-content-disposition.pcap")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(events.len(), 2, "{events:?}");
    let (flow, end) = (&events[0], &events[1]);
    assert_eq!(flow["event"], "flow");
    assert_eq!(flow["time"], "2017-04-18T12:26:05.809Z");
    assert_eq!(flow["client.address"], "192.168.0.103");
    assert_eq!(flow["client.port"], 51171);
    assert_eq!(flow["server.address"], "174.129.0.10");
    assert_eq!(flow["server.port"], 80);
    assert_eq!(flow["network.transport"], "tcp");
    assert_eq!(flow["network.protocol.name"], "http");
    assert_eq!(flow["sealwatch.encryption"], "plaintext");
    assert_eq!(flow["sealwatch.action"], "alert");
    assert_eq!(flow["interface"], "http-crash-content-disposition.pcap");
    assert_eq!(end["event"], "flow.end");
    assert_eq!(end["sealwatch.end_reason"], "capture_end");
    assert_eq!(end["sealwatch.client.bytes"], 691);
    assert_eq!(end["sealwatch.server.bytes"], 2637);
    assert_eq!(
        (
            end["sealwatch.client.packets"].as_u64(),
            end["sealwatch.server.packets"].as_u64()
        ),
        (Some(4), Some(5))
    );
}

/// Handshake details read offline match what nDPI printed for the same flows (its
/// `ndpi_out/*.out`), except JA4's ALPN characters, where nDPI takes the first two and the FoxIO
/// spec the first and last (`ht` there, `h1` here; `h3` there, `h2` here).
#[test]
fn handshake_details_of_tls_ftp_starttls_and_quic() {
    let (out, events) = analyze(&[
        &corpus("tls_verylong_certificate.pcap"),
        &corpus("ftp-start-tls.pcap"),
        &corpus("quic-23.pcap"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flow = |sni_or_port: &str| {
        events
            .iter()
            .find(|e| {
                e["event"] == "flow"
                    && (e["tls.server.name"] == sni_or_port
                        || sni_or_port
                            .parse::<u16>()
                            .is_ok_and(|port| e["server.port"] == port))
            })
            .unwrap_or_else(|| panic!("no flow for {sni_or_port}: {events:?}"))
    };
    let tls = flow("feodotracker.abuse.ch");
    assert_eq!(tls["tls.protocol.version"], "1.2");
    assert_eq!(tls["tls.cipher"], "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
    assert_eq!(
        tls["tls.client.ja4"],
        "t12d6707h1_2955a3196ffa_c83f907a73d3"
    );

    let ftp = flow("21");
    assert_eq!(ftp["network.protocol.name"], "ftp", "{ftp}");
    assert_eq!(ftp["sealwatch.encryption"], "encrypted");
    assert_eq!(ftp["sealwatch.starttls"], true);
    assert_eq!(ftp["tls.protocol.version"], "1.0");
    assert!(
        ftp["sealwatch.weak"]
            .as_array()
            .is_some_and(|w| w.iter().any(|r| r == "tls<1.2") && w.iter().any(|r| r == "3des")),
        "{ftp}"
    );

    let quic = flow("quic.aiortc.org");
    assert_eq!(quic["network.protocol.name"], "quic");
    assert_eq!(quic["tls.alpn"], "h3-22");
    assert_eq!(
        quic["tls.client.ja4"],
        "q13d0308h2_55b375c5d22e_23ed935430f2"
    );
}

#[test]
fn several_captures_in_one_run() {
    let (out, events) = analyze(&[
        &corpus("443-curl.pcap"),
        &corpus("http-crash-content-disposition.pcap"),
    ]);
    assert!(out.status.success());
    let verdicts: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["event"] == "flow")
        .map(|e| {
            (
                e["interface"].as_str().unwrap(),
                e["network.protocol.name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("443-curl.pcap", "tls"),
            ("http-crash-content-disposition.pcap", "http")
        ]
    );
}

#[test]
fn bad_captures_exit_2_with_a_reason() {
    let empty = scratch("empty.pcap");
    std::fs::write(&*empty, b"").unwrap();
    let junk = scratch("junk.pcap");
    std::fs::write(&*junk, b"this is a text file, not a capture\n".repeat(50)).unwrap();
    let missing = scratch("missing.pcap");
    for (file, reason) in [
        (&empty, "is empty"),
        (&junk, "is not a pcap or pcapng capture"),
        (&missing, "cannot open"),
    ] {
        let (out, events) = analyze(&[file]);
        assert_eq!(out.status.code(), Some(2), "{}", file.display());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(reason),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(events.is_empty());
    }
}

#[test]
fn truncated_capture_reports_what_was_read_and_warns() {
    let whole = std::fs::read(corpus("443-curl.pcap")).unwrap();
    let cut = scratch("cut.pcap");
    std::fs::write(&*cut, &whole[..whole.len() - 700]).unwrap();
    let (out, events) = analyze(&[&cut]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("capture ends inside a packet"));
    assert_eq!(
        events
            .iter()
            .filter(|e| e["network.protocol.name"] == "tls")
            .count(),
        2,
        "flow and flow.end"
    );
}

/// IPv4 TCP packet without a link layer.
fn ip_packet(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    flags: &str,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4(src, dst, 64).tcp(sport, dport, 1, 1000);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(1),
            'P' => b.psh(),
            'F' => b.fin(),
            _ => b,
        };
    }
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

const C: [u8; 4] = [10, 1, 0, 2];
const S: [u8; 4] = [10, 1, 0, 1];

fn conversation() -> Vec<Vec<u8>> {
    vec![
        ip_packet(C, 40000, S, 22, "S", b""),
        ip_packet(S, 22, C, 40000, "SA", b""),
        ip_packet(
            S,
            22,
            C,
            40000,
            "PA",
            b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n",
        ),
        ip_packet(
            C,
            40000,
            S,
            22,
            "PA",
            b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n",
        ),
    ]
}

fn legacy_pcap(linktype: u32, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut f = Vec::new();
    for v in [
        0xa1b2_c3d4u32.to_le_bytes(),
        [2, 0, 4, 0],
        [0; 4],
        [0; 4],
        65535u32.to_le_bytes(),
        linktype.to_le_bytes(),
    ] {
        f.extend_from_slice(&v);
    }
    for (i, frame) in frames.iter().enumerate() {
        let len = frame.len() as u32;
        for v in [
            1_700_000_000u32.to_le_bytes(),
            (i as u32 * 1000).to_le_bytes(),
            len.to_le_bytes(),
            len.to_le_bytes(),
        ] {
            f.extend_from_slice(&v);
        }
        f.extend_from_slice(frame);
    }
    f
}

#[test]
fn large_capture_off_a_terminal_shows_no_progress() {
    // Over the 20 MB from which a terminal gets a progress line; stderr here is a pipe.
    let mut frames = conversation();
    // SSH's encrypted packets: bytes that look random (a fixed xorshift), as ciphertext does;
    // a repeated letter would rightly read as plaintext to the agent's mid-flow re-samples.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let ciphertext: Vec<u8> = (0..1400)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let bulk = ip_packet(C, 40000, S, 22, "A", &ciphertext);
    frames.extend(std::iter::repeat_n(bulk, 15_000));
    let path = scratch("large.pcap");
    std::fs::write(&*path, legacy_pcap(101, &frames)).unwrap();
    assert!(std::fs::metadata(&*path).unwrap().len() > 20_000_000);
    let (out, events) = analyze(&[&path]);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(events.len(), 2, "flow and flow.end: {events:?}");
}

#[test]
fn linux_cooked_and_raw_ip_captures() {
    // SLL: 16-byte header, protocol (0x0800) in its last two bytes.
    let sll: Vec<Vec<u8>> = conversation()
        .into_iter()
        .map(|p| {
            let mut h = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
            h.extend_from_slice(&p);
            h
        })
        .collect();
    for (name, bytes) in [
        ("sll.pcap", legacy_pcap(113, &sll)),
        ("raw.pcap", legacy_pcap(101, &conversation())),
    ] {
        let path = scratch(name);
        std::fs::write(&*path, bytes).unwrap();
        let (out, events) = analyze(&[&path]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let flow = events
            .iter()
            .find(|e| e["event"] == "flow")
            .unwrap_or_else(|| panic!("{name}: {events:?}"));
        assert_eq!(flow["network.protocol.name"], "ssh", "{name}");
        assert_eq!(
            flow["client.port"], 40000,
            "{name}: the SYN sender is the client"
        );
        assert_eq!(
            flow["time"], "2023-11-14T22:13:20.002Z",
            "{name}: verdict on the third frame"
        );
    }
}

#[test]
fn pcapng_with_nanosecond_timestamps() {
    let block = |kind: u32, body: &[u8]| {
        let len = (12 + body.len().div_ceil(4) * 4) as u32;
        let mut b = Vec::new();
        b.extend_from_slice(&kind.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(body);
        b.resize(len as usize - 4, 0);
        b.extend_from_slice(&len.to_le_bytes());
        b
    };
    let mut file = block(
        0x0A0D_0D0A,
        &[
            0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
    );
    // IDB: raw IP (101), snaplen, if_tsresol = 9 (nanoseconds), end of options.
    file.extend(block(
        1,
        &[
            101, 0, 0, 0, 0xff, 0xff, 0, 0, 9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0,
        ],
    ));
    let base: u64 = 1_700_000_000_123_456_789;
    for (i, p) in conversation().iter().enumerate() {
        let ts = base + i as u64;
        let mut body = Vec::new();
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(ts as u32).to_le_bytes());
        body.extend_from_slice(&(p.len() as u32).to_le_bytes());
        body.extend_from_slice(&(p.len() as u32).to_le_bytes());
        body.extend_from_slice(p);
        file.extend(block(6, &body));
    }
    let path = scratch("ns.pcapng");
    std::fs::write(&*path, file).unwrap();
    let (out, events) = analyze(&[&path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flow = events
        .iter()
        .find(|e| e["event"] == "flow")
        .unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(flow["network.protocol.name"], "ssh");
    assert_eq!(flow["time"], "2023-11-14T22:13:20.123Z");
}

/// `--flow-log` in `analyze`: records by capture time, whose bytes add up to each flow's
/// `flow.end` totals; stdout keeps its events and gets no records.
#[test]
fn flow_log_records_add_up_to_each_flows_totals() {
    let log = scratch("flows.jsonl");
    let capture = corpus("1kxun.pcap");
    let out = Command::new(agent_binary())
        .args([
            "analyze",
            "--output",
            "json",
            "--flow-log-interval",
            "10s",
            "--flow-log",
        ])
        .arg(&*log)
        .arg(&capture)
        .output()
        .expect("run sealwatch analyze");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert!(!events.iter().any(|e| e["event"] == "flow.record"));
    let records: Vec<Value> = std::fs::read_to_string(&*log)
        .expect("flow log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let key = |e: &Value| {
        format!(
            "{} {}:{} {}:{} {}",
            e["network.transport"],
            e["client.address"],
            e["client.port"],
            e["server.address"],
            e["server.port"],
            e["sealwatch.flow.start"]
        )
    };
    let bytes = |e: &Value| {
        e["sealwatch.client.bytes"].as_u64().unwrap_or(0)
            + e["sealwatch.server.bytes"].as_u64().unwrap_or(0)
    };
    let mut recorded = std::collections::HashMap::<String, (u64, usize)>::new();
    for r in records.iter().filter(|r| r["event"] == "flow.record") {
        let entry = recorded.entry(key(r)).or_default();
        entry.0 += bytes(r);
        entry.1 += 1;
    }
    let ends: Vec<&Value> = events.iter().filter(|e| e["event"] == "flow.end").collect();
    assert!(ends.len() > 20, "{} flows", ends.len());
    assert_eq!(recorded.len(), ends.len(), "every ended flow has records");
    for end in &ends {
        let (sum, _) = recorded.get(&key(end)).copied().unwrap_or_default();
        assert_eq!(sum, bytes(end), "records of {}", key(end));
    }
    assert!(
        recorded.values().any(|(_, n)| *n > 1),
        "flows longer than the interval have several records"
    );
}
