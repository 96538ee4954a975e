//! `--on-exit`: with `keep-enforcing` the kernel programs outlive the agent, even a crash, and
//! keep blocking plaintext; the next agent takes them over (its attach says `adopted`), and a
//! `detach` agent taking them over removes every pin so that its exit opens the path again.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "privileged tests panic with a message"
)]

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::Output,
    time::Duration,
};

use sealwatch_tests::{Lab, require_root};
use serde_json::Value;

/// Removes the pins an agent of this lab left, whatever the test's outcome.
struct PinGuard(PathBuf);

impl Drop for PinGuard {
    fn drop(&mut self) {
        remove_tree(&self.0);
    }
}

fn remove_tree(path: &Path) {
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            remove_tree(&e.path());
        }
        let _ = std::fs::remove_dir(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
}

/// The default pin directory of an agent in `ns`: named after the namespace's inode, which the
/// bind mount under /run/netns shares.
fn pin_dir(ns: &str) -> PathBuf {
    let ino = std::fs::metadata(format!("/run/netns/{ns}"))
        .expect("netns")
        .ino();
    PathBuf::from(format!("/sys/fs/bpf/sealwatch/net-{ino}"))
}

fn http(lab: &Lab, path: &str, local_port: &str) -> Output {
    let url = format!("http://{}:8081/{path}", lab.server_v4);
    lab.client(
        &[
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "--max-time",
            "3",
            "--local-port",
            local_port,
            &url,
        ],
        None,
        Duration::from_secs(10),
    )
    .expect("curl")
}

fn attached(evs: &[Value]) -> Value {
    evs.iter()
        .find(|e| e["sealwatch.agent.state"] == "attached")
        .cloned()
        .expect("attached event")
}

#[test]
fn keep_enforcing_survives_a_crash_and_the_next_agent_takes_over() {
    if !require_root("keep_enforcing_survives_a_crash_and_the_next_agent_takes_over") {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let pins = PinGuard(pin_dir(&lab.server_ns));
    let log = lab.dir.join("http.log");
    let script = format!(
        "exec python3 -m http.server 8081 --bind 0.0.0.0 2> {}",
        log.display()
    );
    lab.spawn_server(&["sh", "-c", &script]).expect("http");
    lab.wait_listening(8081, false).expect("listening");
    let policy = lab.dir.join("policy.yaml");
    std::fs::write(&policy, "mode: enforce\n").expect("policy");
    let policy = policy.to_string_lossy().into_owned();
    let served = || std::fs::read_to_string(&log).expect("server log");

    // 1. A fail-closed agent, killed outright.
    let first = lab
        .start_agent(&["--policy", &policy, "--on-exit", "keep-enforcing"])
        .expect("agent");
    let a = attached(&first.events());
    assert_eq!(a["sealwatch.on_exit"], "keep-enforcing", "{a}");
    assert!(a.get("sealwatch.agent.adopted").is_none(), "{a}");
    let crashed = first.crash().expect("kill");
    assert!(!crashed.status.success());
    assert!(
        pins.0
            .join("links")
            .read_dir()
            .expect("links pinned")
            .count()
            >= 2,
        "ingress and egress links pinned under {}",
        pins.0.display()
    );
    // No agent runs, the programs still drop: the request never reaches the server, and with
    // nobody to reset the socket the client times out.
    let out = http(&lab, "while-no-agent", "43101");
    assert_eq!(
        out.status.code(),
        Some(28),
        "blocked without an agent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!served().contains("while-no-agent"), "{}", served());

    // 2. The next fail-closed agent takes the pinned links over.
    let second = lab
        .start_agent(&["--policy", &policy, "--on-exit", "keep-enforcing"])
        .expect("agent");
    assert_eq!(
        attached(&second.events())["sealwatch.agent.adopted"],
        true,
        "{:?}",
        second.events()
    );
    let out = http(&lab, "second-agent", "43102");
    assert_eq!(
        out.status.code(),
        Some(56),
        "blocked and reset by the new agent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    second
        .wait_for(Duration::from_secs(10), |evs| {
            evs.iter()
                .any(|e| e["event"] == "flow" && e["client.port"] == 43102)
        })
        .expect("flow reported");
    let flow = second
        .events()
        .into_iter()
        .find(|e| e["event"] == "flow" && e["client.port"] == 43102)
        .unwrap();
    assert_eq!(flow["sealwatch.action"], "drop", "{flow}");
    let stopped = second.stop().expect("stop");
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let last = stopped.events.last().expect("stopped event");
    assert_eq!(last["sealwatch.agent.state"], "stopped");
    assert_eq!(
        last["sealwatch.agent.pin_dir"],
        pins.0.to_string_lossy().as_ref(),
        "{last}"
    );
    assert!(!served().contains("second-agent"), "{}", served());
    // Still enforcing after a clean stop.
    assert_eq!(http(&lab, "after-stop", "43103").status.code(), Some(28));

    // 3. A fail-open agent takes over, removes the pins, and its exit detaches everything.
    let third = lab.start_agent(&["--policy", &policy]).expect("agent");
    let a = attached(&third.events());
    assert_eq!(
        (&a["sealwatch.on_exit"], &a["sealwatch.agent.adopted"]),
        (&Value::from("detach"), &Value::from(true)),
        "{a}"
    );
    assert!(!pins.0.exists(), "detach mode removes the pins");
    let stopped = third.stop().expect("stop");
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let out = http(&lab, "after-detach", "43104");
    assert!(
        out.status.success(),
        "nothing enforces after a detach: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(served().contains("GET /after-detach"), "{}", served());
    for blocked in ["while-no-agent", "second-agent", "after-stop"] {
        assert!(!served().contains(blocked), "{}", served());
    }
}

#[test]
fn detach_mode_fails_open_when_the_agent_is_killed() {
    if !require_root("detach_mode_fails_open_when_the_agent_is_killed") {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let pins = PinGuard(pin_dir(&lab.server_ns));
    let log = lab.dir.join("http.log");
    let script = format!(
        "exec python3 -m http.server 8081 --bind 0.0.0.0 2> {}",
        log.display()
    );
    lab.spawn_server(&["sh", "-c", &script]).expect("http");
    lab.wait_listening(8081, false).expect("listening");
    let served = || std::fs::read_to_string(&log).expect("server log");

    let agent = lab.start_agent(&["--mode", "enforce"]).expect("agent");
    let before = sealwatch_tests::attached(&lab.server_ns, &lab.server_if).expect("query");
    assert!(
        before.tc_ingress.iter().any(|p| p == "tc_ingress")
            && before.tc_egress.iter().any(|p| p == "tc_egress"),
        "attached while running: {before:?}"
    );
    // Enforcing while it runs.
    assert_ne!(http(&lab, "while-running", "43201").status.code(), Some(0));
    assert!(!served().contains("while-running"), "{}", served());

    let crashed = agent.crash().expect("kill");
    assert!(!crashed.status.success());
    // Its links died with its file descriptors: nothing of ours is left on the interface, no
    // pins, and plaintext passes again (fail open).
    let after = sealwatch_tests::attached(&lab.server_ns, &lab.server_if).expect("query");
    assert!(
        after.tc_ingress.is_empty() && after.tc_egress.is_empty() && !after.xdp,
        "nothing attached after SIGKILL: {after:?}"
    );
    assert!(!pins.0.exists(), "no pins in detach mode");
    let out = http(&lab, "after-kill", "43202");
    assert!(
        out.status.success(),
        "fail open after a crash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(served().contains("GET /after-kill"), "{}", served());
}
