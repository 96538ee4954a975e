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

fn policy_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("sealwatch-{}-{name}.yaml", std::process::id()));
    std::fs::write(&path, text).expect("write policy");
    path
}

#[test]
fn policy_check_accepts_the_contract_example_and_names_the_first_error() {
    let good = policy_file(
        "good",
        "mode: monitor\ninternal_cidrs: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fd00::/8]\nrequire:\n  min_tls_version: \"1.2\"\n  unknown: alert\nexclusions:\n  - {cidr: 169.254.169.254/32, reason: instance metadata}\n  - {port: 53, transport: udp, reason: DNS}\n  - {process: chronyd}\n  - {namespace: kube-system, pod: \"coredns-*\"}\n",
    );
    let out = sealwatch(&["policy", "check", "--explain", &good.to_string_lossy()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("built-in: link-local") && stdout.contains("DNS (port 53, transport udp)"),
        "{stdout}"
    );

    let bad = policy_file(
        "bad",
        "mode: monitor\nexclusions:\n  - {port: 53}\n  - {prot: 5}\n",
    );
    let out = sealwatch(&["policy", "check", &bad.to_string_lossy()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:4:6: exclusions[1]: unknown field `prot`",
            bad.display()
        )),
        "{stderr}"
    );
    let missing = sealwatch(&["policy", "check", "/nonexistent/policy.yaml"]);
    assert_eq!(missing.status.code(), Some(2));
    for p in [good, bad] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn analyze_applies_the_policy_and_says_what_enforce_mode_would_drop() {
    let capture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus/pcaps/http-crash-content-disposition.pcap");
    let capture = capture.to_string_lossy();
    let excluded = policy_file(
        "exclude-http",
        "internal_cidrs: [0.0.0.0/0]\nexclusions:\n  - {port: 80, protocol: http, reason: legacy web}\n",
    );
    let out = sealwatch(&[
        "analyze",
        "--output",
        "json",
        "--policy",
        &excluded.to_string_lossy(),
        &capture,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flow: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|e: &serde_json::Value| e["event"] == "flow")
        .expect("a flow event");
    assert_eq!(flow["sealwatch.action"], "excluded", "{flow}");
    assert_eq!(
        flow["sealwatch.exclusion"],
        "legacy web (port 80, protocol http)"
    );
    assert_eq!(
        flow["sealwatch.direction"], "east-west",
        "0.0.0.0/0 is all internal"
    );

    // Offline, an enforce-mode policy says which flows enforce mode would drop.
    let enforce = policy_file("enforce", "mode: enforce\ninternal_cidrs: [0.0.0.0/0]\n");
    let out = sealwatch(&[
        "analyze",
        "--output",
        "json",
        "--policy",
        &enforce.to_string_lossy(),
        &capture,
    ]);
    assert_eq!(out.status.code(), Some(0));
    let flow: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|e: &serde_json::Value| e["event"] == "flow")
        .expect("a flow event");
    assert_eq!(flow["sealwatch.action"], "drop", "{flow}");
    for p in [excluded, enforce] {
        let _ = std::fs::remove_file(p);
    }
}

/// Monitor, suggest, re-run: the suggested policy lets today's plaintext services pass.
#[test]
fn suggested_policy_lets_todays_plaintext_pass() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/pcaps");
    let captures: Vec<String> = ["pgsql.pcap", "smtp.pcap"]
        .iter()
        .map(|c| corpus.join(c).to_string_lossy().into_owned())
        .collect();
    let alerts = |policy: Option<&str>| {
        let mut args = vec!["analyze", "--output", "json"];
        if let Some(p) = policy {
            args.extend(["--policy", p]);
        }
        args.extend(captures.iter().map(String::as_str));
        let out = sealwatch(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let n = text
            .lines()
            .filter(|l| {
                l.contains(r#""event":"flow","#) && l.contains(r#""sealwatch.action":"alert""#)
            })
            .count();
        (text, n)
    };
    let (log, before) = alerts(None);
    assert!(before >= 2, "plaintext SMTP and PostgreSQL alerted: {log}");
    let log_path = policy_file("monitor-log", &log);
    let out = sealwatch(&["policy", "suggest", &log_path.to_string_lossy()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let suggested = policy_file("suggested", &String::from_utf8_lossy(&out.stdout));
    let (_, after) = alerts(Some(&suggested.to_string_lossy()));
    assert_eq!(after, 0, "{}", String::from_utf8_lossy(&out.stdout));
    for p in [log_path, suggested] {
        let _ = std::fs::remove_file(p);
    }
}

/// `run` enforces its policy, so it refuses one that a user other than root could have
/// written (exit 2, naming what is open); `analyze` and `policy check` only read it.
#[test]
fn run_refuses_a_policy_other_users_can_change() {
    use std::os::unix::fs::{PermissionsExt, chown};
    if !sealwatch_tests::require_root("run_refuses_a_policy_other_users_can_change") {
        return;
    }
    let base = std::env::temp_dir().join(format!("sealwatch-policy-{}", std::process::id()));
    let (closed, open) = (base.join("closed"), base.join("open"));
    for (dir, mode) in [(&base, 0o755), (&closed, 0o755), (&open, 0o777)] {
        std::fs::create_dir_all(dir).expect("dir");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let write = |path: &std::path::Path, mode: u32| {
        std::fs::write(path, "mode: monitor\n").expect("policy");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path.to_string_lossy().into_owned()
    };
    let fine = write(&closed.join("fine.yaml"), 0o644);
    let group = write(&closed.join("group.yaml"), 0o664);
    chown(&group, None, Some(100)).expect("chgrp");
    let anyone = write(&closed.join("anyone.yaml"), 0o646);
    let owned = write(&closed.join("owned.yaml"), 0o644);
    chown(&owned, Some(65534), None).expect("chown");
    let in_open_dir = write(&open.join("policy.yaml"), 0o644);
    // Through a symlink the file it points at is what counts.
    let link = closed.join("link.yaml");
    std::os::unix::fs::symlink(&anyone, &link).expect("symlink");
    let link = link.to_string_lossy().into_owned();

    // A policy that passes reaches the next check: the missing interface (exit 1).
    let out = sealwatch(&["run", "--iface", "nosuch0", "--policy", &fine]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (path, why) in [
        (
            &group,
            "group.yaml is writable by group 100 (mode 0664)".to_owned(),
        ),
        (
            &anyone,
            "anyone.yaml is writable by anyone (mode 0646)".to_owned(),
        ),
        (&owned, "owned.yaml is owned by uid 65534".to_owned()),
        (
            &in_open_dir,
            format!("{} is writable by anyone (mode 0777)", open.display()),
        ),
        (
            &link,
            "anyone.yaml is writable by anyone (mode 0646)".to_owned(),
        ),
    ] {
        let out = sealwatch(&["run", "--iface", "nosuch0", "--policy", path]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{path}: {err}");
        assert!(err.contains(&why), "{path}: {err}");
        assert!(err.contains("writable by root only"), "{err}");
        assert!(out.stdout.is_empty());
    }
    // Reading a policy to see what it would do is not enforcing it.
    let out = sealwatch(&["policy", "check", &anyone]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&base).expect("clean up");
}
