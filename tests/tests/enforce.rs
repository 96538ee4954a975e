//! Enforce mode with real servers and clients in the namespace lab: a plaintext HTTP request
//! never reaches the server and its client fails fast; TLS to the same host passes; an excluded
//! port passes; monitor mode passes everything and says `alert` where enforce mode drops.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "privileged tests panic with a message"
)]

use std::time::{Duration, Instant};

use sealwatch_tests::{Lab, require_root};
use serde_json::Value;

const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A plain HTTP server whose request log is a file: what it received, if anything.
fn spawn_logged_http(lab: &mut Lab, port: u16) -> std::path::PathBuf {
    let log = lab.dir.join(format!("http-{port}.log"));
    let script = format!(
        "exec python3 -m http.server {port} --bind 0.0.0.0 2> {}",
        log.display()
    );
    lab.spawn_server(&["sh", "-c", &script])
        .expect("http server");
    lab.wait_listening(port, false).expect("listening");
    log
}

fn curl(lab: &Lab, url: &str, local_port: &str) -> (std::process::Output, Duration) {
    let start = Instant::now();
    let out = lab
        .client(
            &[
                "curl",
                "-sS",
                "-k",
                "-o",
                "/dev/null",
                "--max-time",
                "20",
                "--local-port",
                local_port,
                url,
            ],
            None,
            CLIENT_TIMEOUT,
        )
        .expect("curl");
    (out, start.elapsed())
}

fn flow_from(evs: &[Value], port: u16) -> Option<Value> {
    evs.iter()
        .find(|e| e["event"] == "flow" && e["client.port"] == port)
        .cloned()
}

#[test]
fn enforce_mode_blocks_plaintext_before_the_server_sees_a_byte() {
    if !require_root("enforce_mode_blocks_plaintext_before_the_server_sees_a_byte") {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    lab.spawn_standard_servers().expect("servers");
    let blocked_log = spawn_logged_http(&mut lab, 8081);
    let excluded_log = spawn_logged_http(&mut lab, 8082);
    let policy = lab.dir.join("policy.yaml");
    std::fs::write(
        &policy,
        "mode: enforce\nexclusions:\n  - {port: 8082, transport: tcp, reason: legacy admin UI}\n",
    )
    .expect("policy");
    let policy_arg = policy.to_string_lossy().into_owned();
    let agent = lab
        .start_agent(&["--idle-timeout", "3s", "--policy", &policy_arg])
        .expect("agent");
    let s4 = lab.server_v4.to_string();

    // Plaintext HTTP: dropped on the request packet, the server's socket destroyed.
    let (out, took) = curl(&lab, &format!("http://{s4}:8081/secret-path"), "43001");
    assert!(!out.status.success(), "blocked request must fail");
    let code = out.status.code();
    assert_ne!(
        code,
        Some(28),
        "the client must see a reset, not time out: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "blocked client failed after {} ms (curl exit {code:?}: {})",
        took.as_millis(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    // TLS to the same host passes.
    let (tls, _) = curl(&lab, &format!("https://{s4}:8443/"), "43002");
    assert!(
        tls.status.success(),
        "TLS passes: {}",
        String::from_utf8_lossy(&tls.stderr)
    );
    // An excluded port passes, in the clear.
    let (excluded, _) = curl(&lab, &format!("http://{s4}:8082/allowed-path"), "43003");
    assert!(
        excluded.status.success(),
        "excluded port passes: {}",
        String::from_utf8_lossy(&excluded.stderr)
    );

    agent
        .wait_for(Duration::from_secs(10), |evs| {
            [43001, 43002, 43003]
                .iter()
                .all(|p| flow_from(evs, *p).is_some())
        })
        .expect("three flows reported");
    let evs = agent.events();
    let blocked = flow_from(&evs, 43001).unwrap();
    assert_eq!(
        (
            &blocked["network.protocol.name"],
            &blocked["sealwatch.action"]
        ),
        (&Value::from("http"), &Value::from("drop")),
        "{blocked}"
    );
    assert_eq!(flow_from(&evs, 43002).unwrap()["sealwatch.action"], "allow");
    let excluded = flow_from(&evs, 43003).unwrap();
    assert_eq!(excluded["sealwatch.action"], "excluded", "{excluded}");
    assert_eq!(
        excluded["sealwatch.exclusion"],
        "legacy admin UI (port 8082, transport tcp)"
    );

    let stopped = agent.stop().expect("stop");
    assert!(stopped.status.success());
    let dropped = stopped
        .events
        .iter()
        .find(|e| e["sealwatch.agent.state"] == "stopped")
        .and_then(|e| e["sealwatch.kernel.dropped"].as_u64())
        .expect("dropped counter");
    assert!(dropped >= 1, "the request packet was dropped in the kernel");
    let served = std::fs::read_to_string(&blocked_log).expect("log");
    assert!(
        !served.contains("secret-path"),
        "the server received the blocked request: {served}"
    );
    let served = std::fs::read_to_string(&excluded_log).expect("log");
    assert!(served.contains("GET /allowed-path"), "{served}");
}

#[test]
fn monitor_mode_passes_everything_and_marks_what_enforce_would_drop() {
    if !require_root("monitor_mode_passes_everything_and_marks_what_enforce_would_drop") {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    lab.spawn_standard_servers().expect("servers");
    let log = spawn_logged_http(&mut lab, 8081);
    let policy = lab.dir.join("policy.yaml");
    std::fs::write(&policy, "mode: enforce\n").expect("policy");
    let policy_arg = policy.to_string_lossy().into_owned();
    // --mode overrides the file's mode.
    let agent = lab
        .start_agent(&["--policy", &policy_arg, "--mode", "monitor"])
        .expect("agent");
    let s4 = lab.server_v4.to_string();
    let (out, _) = curl(&lab, &format!("http://{s4}:8081/monitored"), "43011");
    assert!(
        out.status.success(),
        "monitor mode never drops: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    agent
        .wait_for(Duration::from_secs(10), |evs| {
            flow_from(evs, 43011).is_some()
        })
        .expect("flow");
    let flow = flow_from(&agent.events(), 43011).unwrap();
    assert_eq!(flow["sealwatch.action"], "alert", "{flow}");
    let stopped = agent.stop().expect("stop");
    assert!(stopped.status.success());
    let attached = stopped
        .events
        .iter()
        .find(|e| e["sealwatch.agent.state"] == "attached")
        .expect("attached");
    assert_eq!(attached["sealwatch.mode"], "monitor");
    assert!(
        std::fs::read_to_string(&log)
            .expect("log")
            .contains("GET /monitored")
    );
}
