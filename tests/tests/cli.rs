//! Exit codes and error messages of the contract.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "privileged tests panic with a message"
)]

use std::process::Command;

use sealwatch_tests::agent_binary;

/// Runs the agent, killed after 60 s: a command that should fail fast but starts watching
/// instead (a flag value that became valid) must fail the test, not stall the whole run.
fn sealwatch(args: &[&str]) -> std::process::Output {
    Command::new("timeout")
        .args(["-k", "5", "60"])
        .arg(agent_binary())
        .args(args)
        .output()
        .expect("run sealwatch")
}

#[test]
fn missing_interface_exits_1_naming_it() {
    let out = sealwatch(&["run", "--iface", "nosuch0", "--output", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"nosuch0\" does not exist"), "{err}");
    assert!(out.stdout.is_empty(), "no events on failure");
}

#[test]
fn bad_usage_exits_2() {
    for args in [
        &["run"][..],
        &["run", "--iface", "lo", "--attach", "bogus"],
        &["run", "--iface", "lo", "--sample-bytes", "9000"],
        &["frobnicate"],
    ] {
        let out = sealwatch(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn missing_privileges_exit_1_naming_them() {
    // Root with an empty capability bounding set (or simply not root) cannot create BPF maps.
    let bin = agent_binary();
    let out = if sealwatch_tests::is_root() {
        Command::new("setpriv")
            .args(["--bounding-set=-all", "--inh-caps=-all"])
            .arg(&bin)
            .args(["run", "--iface", "lo", "--output", "json"])
            .output()
            .expect("setpriv")
    } else {
        sealwatch(&["run", "--iface", "lo", "--output", "json"])
    };
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs root, or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON"),
        "{err}"
    );
    assert!(
        err.contains("Operation not permitted"),
        "keeps the cause: {err}"
    );
}
