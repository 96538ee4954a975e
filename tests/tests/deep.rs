//! What the agent reads from handshakes on live traffic: TLS details from a real curl/openssl
//! exchange, a TLS 1.0 handshake reported weak, SMTP upgraded with STARTTLS (openssl s_client
//! against a small SMTP server that switches to TLS with Python's ssl module), and a TLS 1.3
//! key exchange over X25519MLKEM768 between rustls peers (`tests/peers`).

use std::time::Duration;

use sealwatch_tests::{Lab, peer_binary, require_root};
use serde_json::Value;

const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A minimal SMTP server: greeting, EHLO advertising STARTTLS, then TLS on the same socket,
/// then QUIT. One connection at a time, forever (the lab kills it).
const SMTP_SERVER: &str = r#"
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("tls.crt", "tls.key")
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1])))
srv.listen(4)
while True:
    c, _ = srv.accept()
    try:
        f = c.makefile("rb")
        c.sendall(b"220 lab.test ESMTP sealwatch-lab\r\n")
        while True:
            line = f.readline()
            if not line:
                break
            cmd = line.strip().upper()
            if cmd.startswith(b"EHLO") or cmd.startswith(b"HELO"):
                c.sendall(b"250-lab.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
            elif cmd == b"STARTTLS":
                c.sendall(b"220 2.0.0 Ready to start TLS\r\n")
                t = ctx.wrap_socket(c, server_side=True)
                tf = t.makefile("rb")
                t.sendall(b"220 lab.test ESMTP sealwatch-lab\r\n")
                while True:
                    l2 = tf.readline()
                    if not l2 or l2.strip().upper() == b"QUIT":
                        break
                    t.sendall(b"250 ok\r\n")
                break
            elif cmd == b"QUIT":
                c.sendall(b"221 bye\r\n")
                break
            else:
                c.sendall(b"250 ok\r\n")
    except Exception as e:
        print(e, file=sys.stderr)
    finally:
        c.close()
"#;

fn flow(evs: &[Value], port: u16) -> Option<&Value> {
    evs.iter()
        .find(|e| e["event"] == "flow" && e["server.port"] == port)
}

#[test]
fn handshakes_are_read_on_live_traffic() {
    if !require_root("handshakes_are_read_on_live_traffic") {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    lab.spawn_standard_servers().expect("servers");
    // TLS 1.0 only, with the legacy suites it needs.
    lab.spawn_server(&[
        "openssl",
        "s_server",
        "-accept",
        "8444",
        "-cert",
        "tls.crt",
        "-key",
        "tls.key",
        "-www",
        "-quiet",
        "-tls1",
        "-cipher",
        "DEFAULT:@SECLEVEL=0",
    ])
    .expect("tls1 server");
    std::fs::write(lab.dir.join("smtpd.py"), SMTP_SERVER).expect("smtpd script");
    lab.spawn_server(&["python3", "smtpd.py", "2525"])
        .expect("smtp server");
    let pq = peer_binary("pq-tls");
    let pq = pq.to_string_lossy();
    lab.spawn_server(&[&pq, "server", "8445", "tls.crt", "tls.key"])
        .expect("pq server");
    for port in [8444, 2525, 8445] {
        lab.wait_listening(port, false).expect("listening");
    }
    let agent = lab.start_agent(&["--idle-timeout", "3s"]).expect("agent");
    let s4 = lab.server_v4.to_string();

    // TLS 1.3 with SNI and ALPN: curl names the server `lab.test`.
    let out = lab
        .client(
            &[
                "curl",
                "-sSk",
                "-o",
                "/dev/null",
                "--resolve",
                &format!("lab.test:8443:{s4}"),
                "https://lab.test:8443/",
            ],
            None,
            CLIENT_TIMEOUT,
        )
        .expect("curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // TLS 1.0.
    let out = lab
        .client(
            &[
                "openssl",
                "s_client",
                "-tls1",
                "-cipher",
                "DEFAULT:@SECLEVEL=0",
                "-connect",
                &format!("{s4}:8444"),
            ],
            Some(b"Q\n"),
            CLIENT_TIMEOUT,
        )
        .expect("s_client tls1");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("TLSv1"),
        "TLS 1.0 handshake: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // SMTP, then STARTTLS.
    let out = lab
        .client(
            &[
                "openssl",
                "s_client",
                "-starttls",
                "smtp",
                "-crlf",
                "-connect",
                &format!("{s4}:2525"),
            ],
            Some(b"QUIT\n"),
            CLIENT_TIMEOUT,
        )
        .expect("s_client starttls");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("BEGIN CERTIFICATE")
            || String::from_utf8_lossy(&out.stdout).contains("Server certificate"),
        "STARTTLS handshake: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // TLS 1.3 over the X25519MLKEM768 hybrid.
    let out = lab
        .client(
            &[&pq, "client", &s4, "8445", "pq.lab.test"],
            None,
            CLIENT_TIMEOUT,
        )
        .expect("pq client");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("group=X25519MLKEM768") && said.contains("hello from the pq server"),
        "pq handshake: {said} {}",
        String::from_utf8_lossy(&out.stderr)
    );

    agent
        .wait_for(Duration::from_secs(15), |evs| {
            [8443, 8444, 2525, 8445]
                .iter()
                .all(|&p| flow(evs, p).is_some())
        })
        .expect("the four flows reported");
    let evs = agent.events();
    agent.stop().expect("stop");

    let tls13 = flow(&evs, 8443).expect("tls 1.3 flow");
    assert_eq!(tls13["network.protocol.name"], "tls");
    assert_eq!(tls13["tls.protocol.version"], "1.3", "{tls13}");
    assert!(
        tls13["tls.cipher"]
            .as_str()
            .is_some_and(|c| c.starts_with("TLS_AES_") || c.starts_with("TLS_CHACHA20_")),
        "{tls13}"
    );
    assert_eq!(tls13["tls.server.name"], "lab.test");
    assert!(
        tls13["tls.alpn"]
            .as_str()
            .is_some_and(|a| a.contains("http/1.1")),
        "{tls13}"
    );
    assert_eq!(tls13["tls.key_exchange.group"], "x25519");
    assert_eq!(tls13["sealwatch.pq"], false);
    assert!(
        tls13["tls.client.ja4"]
            .as_str()
            .is_some_and(|j| j.starts_with("t13d") && j.len() == 36),
        "{tls13}"
    );
    assert!(tls13.get("sealwatch.weak").is_none(), "{tls13}");
    assert_eq!(tls13["sealwatch.action"], "allow");

    let tls10 = flow(&evs, 8444).expect("tls 1.0 flow");
    assert_eq!(tls10["tls.protocol.version"], "1.0", "{tls10}");
    assert!(
        tls10["sealwatch.weak"]
            .as_array()
            .is_some_and(|w| w.iter().any(|r| r == "tls<1.2")),
        "{tls10}"
    );
    assert_eq!(tls10["sealwatch.encryption"], "encrypted");
    assert_eq!(tls10["sealwatch.action"], "alert", "weak encryption alerts");

    let pq = flow(&evs, 8445).expect("post-quantum flow");
    assert_eq!(pq["tls.protocol.version"], "1.3", "{pq}");
    assert_eq!(pq["tls.key_exchange.group"], "X25519MLKEM768", "{pq}");
    assert_eq!(pq["sealwatch.pq"], true, "{pq}");
    assert_eq!(pq["tls.server.name"], "pq.lab.test", "{pq}");
    assert!(
        pq["tls.client.ja4"]
            .as_str()
            .is_some_and(|j| j.starts_with("t13d")),
        "the whole ClientHello, key share included, was read: {pq}"
    );

    let smtp = flow(&evs, 2525).expect("smtp flow");
    assert_eq!(smtp["network.protocol.name"], "smtp", "{smtp}");
    assert_eq!(smtp["sealwatch.encryption"], "encrypted", "{smtp}");
    assert_eq!(smtp["sealwatch.starttls"], true, "{smtp}");
    assert!(smtp["tls.protocol.version"].is_string(), "{smtp}");
}
