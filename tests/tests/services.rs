//! Service protocols on live traffic with their real servers and clients: redis-server in clear
//! and over TLS, PostgreSQL with `sslmode=disable` and `sslmode=require` (SSLRequest, then TLS),
//! and DNS over UDP from `dig`.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "privileged tests panic with a message"
)]

use std::time::Duration;

use sealwatch_tests::{Lab, require_root};
use serde_json::Value;

const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers every A question with 192.0.2.1: a DNS server small enough to read.
const DNS_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
while True:
    q, peer = s.recvfrom(512)
    end = 12
    while q[end] != 0:
        end += q[end] + 1
    question = q[12:end + 5]
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x01"
    s.sendto(q[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + question + answer, peer)
"#;

fn flow(evs: &[Value], port: u16, client_port: Option<u16>) -> Option<&Value> {
    evs.iter().find(|e| {
        e["event"] == "flow"
            && e["server.port"] == port
            && client_port.is_none_or(|c| e["client.port"] == c)
    })
}

/// A throwaway PostgreSQL cluster in the lab directory on port 5432, TLS on the lab certificate.
fn start_postgres(lab: &mut Lab) {
    let argv = sealwatch_tests::postgres_cluster(&lab.dir.join("pgdata"), &lab.dir, 5432)
        .expect("postgres cluster");
    lab.spawn_server(&argv.iter().map(String::as_str).collect::<Vec<_>>())
        .expect("postgres");
}

#[test]
fn databases_caches_and_dns_with_their_own_clients() {
    if !require_root("databases_caches_and_dns_with_their_own_clients") {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    lab.make_keys().expect("keys");
    for args in [
        &["--port", "6379", "--tls-port", "0"][..],
        &[
            "--port",
            "0",
            "--tls-port",
            "6380",
            "--tls-cert-file",
            "tls.crt",
            "--tls-key-file",
            "tls.key",
            "--tls-ca-cert-file",
            "tls.crt",
            "--tls-auth-clients",
            "no",
        ],
    ] {
        let mut argv = vec![
            "redis-server",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--bind",
            "0.0.0.0",
            "--dir",
            ".",
        ];
        argv.extend_from_slice(args);
        lab.spawn_server(&argv).expect("redis");
    }
    start_postgres(&mut lab);
    std::fs::write(lab.dir.join("dns.py"), DNS_SERVER).expect("dns script");
    lab.spawn_server(&["python3", "dns.py", "5353"])
        .expect("dns server");
    for port in [6379, 6380, 5432] {
        lab.wait_listening(port, false).expect("listening");
    }
    lab.wait_listening(5353, true).expect("dns listening");

    let agent = lab.start_agent(&["--idle-timeout", "3s"]).expect("agent");
    let s4 = lab.server_v4.to_string();
    let ok = |argv: &[&str], want: &str| {
        let out = lab.client(argv, None, CLIENT_TIMEOUT).expect("client");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(want),
            "{argv:?}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(&["redis-cli", "-h", &s4, "-p", "6379", "PING"], "PONG");
    ok(
        &[
            "redis-cli",
            "-h",
            &s4,
            "-p",
            "6380",
            "--tls",
            "--insecure",
            "PING",
        ],
        "PONG",
    );
    let psql =
        |mode: &str| format!("host={s4} port=5432 user=postgres dbname=postgres sslmode={mode}");
    ok(&["psql", &psql("disable"), "-Atc", "select 6*7"], "42");
    ok(
        &[
            "psql",
            &psql("require"),
            "-Atc",
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
        ],
        "t",
    );
    ok(
        &[
            "dig",
            "+tries=1",
            "+time=2",
            "-p",
            "5353",
            &format!("@{s4}"),
            "db.lab.test",
            "A",
        ],
        "192.0.2.1",
    );

    agent
        .wait_for(Duration::from_secs(20), |evs| {
            let pg = evs
                .iter()
                .filter(|e| e["event"] == "flow" && e["server.port"] == 5432)
                .count();
            [6379, 6380, 5353]
                .iter()
                .all(|&p| flow(evs, p, None).is_some())
                && pg >= 2
        })
        .expect("every flow reported");
    let evs = agent.events();
    agent.stop().expect("stop");

    let redis = flow(&evs, 6379, None).expect("redis");
    assert_eq!(
        (
            &redis["network.protocol.name"],
            &redis["sealwatch.encryption"]
        ),
        (&Value::from("redis"), &Value::from("plaintext")),
        "{redis}"
    );
    let redis_tls = flow(&evs, 6380, None).expect("redis tls");
    assert_eq!(redis_tls["network.protocol.name"], "tls", "{redis_tls}");
    assert_eq!(redis_tls["sealwatch.encryption"], "encrypted");
    assert_eq!(redis_tls["tls.protocol.version"], "1.3", "{redis_tls}");

    let pg: Vec<&Value> = evs
        .iter()
        .filter(|e| e["event"] == "flow" && e["server.port"] == 5432)
        .collect();
    let plain = pg
        .iter()
        .find(|e| e["sealwatch.encryption"] == "plaintext")
        .unwrap_or_else(|| panic!("a plaintext PostgreSQL session: {pg:?}"));
    assert_eq!(plain["network.protocol.name"], "postgresql", "{plain}");
    assert!(plain.get("sealwatch.starttls").is_none(), "{plain}");
    let upgraded = pg
        .iter()
        .find(|e| e["sealwatch.encryption"] == "encrypted")
        .unwrap_or_else(|| panic!("an SSL PostgreSQL session: {pg:?}"));
    assert_eq!(
        upgraded["network.protocol.name"], "postgresql",
        "{upgraded}"
    );
    assert_eq!(upgraded["sealwatch.starttls"], true, "{upgraded}");
    assert_eq!(upgraded["tls.protocol.version"], "1.3", "{upgraded}");

    let dns = flow(&evs, 5353, None).expect("dns");
    assert_eq!(
        (
            &dns["network.transport"],
            &dns["network.protocol.name"],
            &dns["sealwatch.encryption"]
        ),
        (
            &Value::from("udp"),
            &Value::from("dns"),
            &Value::from("plaintext")
        ),
        "{dns}"
    );
}
