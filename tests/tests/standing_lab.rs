//! `cargo xtask lab`'s standing lab, end to end: `up` starts every service, each answers its
//! real client from the client namespace, `status` lists them and its printed monitor and
//! enforce commands work as printed (an HTTP flow reported plaintext; plaintext Redis dropped
//! while Redis over TLS passes), and `down` leaves no namespace, process or file behind.
//!
//! The lab runs under a namespace prefix of this test process (`swlab-PID-`), so a user's lab
//! is untouched and an interrupted run is removed by the next one (`cleanup_stale`).
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "privileged tests panic with a message"
)]

use std::{path::Path, time::Duration};

use sealwatch_tests::{
    Agent, agent_binary, peer_binary, require_root,
    standing::{self, Binaries, HOSTS, LabSpec, NODE, SERVICES},
};
use serde_json::Value;

/// Takes the lab down however the test ends.
struct Down(LabSpec);

impl Drop for Down {
    fn drop(&mut self) {
        if let Err(e) = standing::down(&self.0) {
            eprintln!("lab down: {e:#}");
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

/// Runs a client from the lab's client namespace and returns stdout, stderr and success.
fn client(spec: &LabSpec, argv: &[&str]) -> (String, String, bool) {
    let out = standing::client(spec, argv, 10).expect("client");
    (text(&out.stdout), text(&out.stderr), out.status.success())
}

/// The command `status` printed whose line starts with `nsenter --net=.../NODE` and that has
/// (or lacks) `--mode enforce`, split into words.
fn printed_agent_command(status: &str, node_ns: &str, enforce: bool) -> Vec<String> {
    let prefix = format!("nsenter --net=/run/netns/{node_ns} ");
    let line = status
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(&prefix) && l.contains("--mode enforce") == enforce)
        .unwrap_or_else(|| panic!("status prints no agent command (enforce {enforce}):\n{status}"));
    line.split_whitespace().map(str::to_owned).collect()
}

fn start_printed(argv: &[String]) -> Agent {
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]).args(["--output", "json"]);
    let agent = Agent::spawn(&mut cmd).expect("agent");
    agent.wait_attached().expect("attached");
    agent
}

fn flow_to<'a>(evs: &'a [Value], addr: &str, port: u16) -> Option<&'a Value> {
    evs.iter()
        .find(|e| e["event"] == "flow" && e["server.address"] == addr && e["server.port"] == port)
}

#[test]
fn lab_up_serves_every_service_and_down_leaves_nothing() {
    if !require_root("lab_up_serves_every_service_and_down_leaves_nothing") {
        return;
    }
    sealwatch_tests::cleanup_stale();
    let spec = LabSpec {
        prefix: format!("swlab-{}-s", std::process::id()),
        state_dir: std::env::temp_dir().join(format!("swlab-{}-standing", std::process::id())),
        net: 233,
    };
    let guard = Down(spec.clone());
    let agent_bin = agent_binary();
    standing::up(
        &spec,
        &Binaries {
            pq_tls: peer_binary("pq-tls"),
            agent: agent_bin.clone(),
        },
    )
    .expect("lab up");

    // status: every namespace and every service, listening.
    let status = standing::status(&spec).expect("status");
    let mut want: Vec<String> = HOSTS
        .iter()
        .chain([&NODE])
        .map(|h| spec.ns(h.name))
        .collect();
    want.sort();
    assert_eq!(status.namespaces, want, "{}", status.text);
    assert_eq!(status.services.len(), SERVICES.len());
    for s in &status.services {
        assert!(
            s.listening,
            "{} on {}:{} is down:\n{}",
            s.service.name, s.address, s.service.port, status.text
        );
        let row = format!("{}:{}", s.address, s.service.port);
        assert!(
            status.text.contains(&row),
            "{row} missing:\n{}",
            status.text
        );
    }

    // Each service answers its real client.
    let ip = |host: &str| {
        spec.v4(HOSTS.iter().find(|h| h.name == host).unwrap())
            .to_string()
    };
    let (web, cache, db, ssh) = (ip("web"), ip("cache"), ip("db"), ip("ssh"));
    let code = ["-o", "/dev/null", "-w", "%{http_code}"];
    let http = format!("http://{web}/");
    let (out, err, ok) = client(&spec, &[&["curl", "-sS", &http][..], &code].concat());
    assert!(ok && out == "200", "http: {out} {err}");
    let https = format!("https://{web}/");
    let (out, err, ok) = client(&spec, &[&["curl", "-sSk", &https][..], &code].concat());
    assert!(ok && out == "200", "https: {out} {err}");
    let pq = peer_binary("pq-tls");
    let (out, err, ok) = client(
        &spec,
        &[&pq.to_string_lossy(), "client", &web, "8443", "web.lab"],
    );
    assert!(
        ok && out.starts_with("group=X25519MLKEM768 ") && out.contains("hello from the pq server"),
        "pq-tls: {out} {err}"
    );
    let (out, err, ok) = client(&spec, &["redis-cli", "-h", &cache, "PING"]);
    assert!(ok && out == "PONG", "redis: {out} {err}");
    let (out, err, ok) = client(
        &spec,
        &[
            "redis-cli",
            "-h",
            &cache,
            "-p",
            "6380",
            "--tls",
            "--insecure",
            "PING",
        ],
    );
    assert!(ok && out == "PONG", "redis tls: {out} {err}");
    let pg = |mode: &str| format!("host={db} user=postgres dbname=postgres sslmode={mode}");
    let (out, err, ok) = client(&spec, &["psql", &pg("disable"), "-Atc", "select 6*7"]);
    assert!(ok && out == "42", "psql: {out} {err}");
    let (out, err, ok) = client(
        &spec,
        &[
            "psql",
            &pg("require"),
            "-Atc",
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
        ],
    );
    assert!(ok && out == "t", "psql over SSL: {out} {err}");
    // The key exchange completes; there is no account to log into.
    let (_, err, _) = client(
        &spec,
        &[
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            &format!("nobody@{ssh}"),
            "true",
        ],
    );
    assert!(err.contains("Permission denied (publickey"), "ssh: {err}");

    // The monitor command, as printed: it reports the HTTP flow from the client's veth.
    let node = spec.ns(NODE.name);
    let monitor = printed_agent_command(&status.text, &node, false);
    assert_eq!(monitor[2], agent_bin.to_string_lossy(), "{monitor:?}");
    let agent = start_printed(&monitor);
    let (out, _, _) = client(&spec, &[&["curl", "-sS", &http][..], &code].concat());
    assert_eq!(out, "200");
    agent
        .wait_for(Duration::from_secs(20), |evs| {
            flow_to(evs, &web, 80).is_some()
        })
        .expect("http flow reported");
    let evs = agent.events();
    let stopped = agent.stop().expect("stop");
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let f = flow_to(&evs, &web, 80).unwrap();
    assert_eq!(
        sealwatch_tests::verdict(f),
        ["http", "plaintext", "alert"],
        "{f}"
    );
    assert_eq!(f["interface"], "veth-client", "{f}");

    // The enforce command, as printed, with the lab's policy file: plaintext Redis is dropped,
    // Redis over TLS passes.
    let enforce = printed_agent_command(&status.text, &node, true);
    let policy = spec.policy_file();
    assert!(
        enforce.iter().any(|a| Path::new(a) == policy),
        "{enforce:?}"
    );
    let agent = start_printed(&enforce);
    let out = standing::client(&spec, &["redis-cli", "-h", &cache, "PING"], 3).expect("client");
    assert_ne!(
        text(&out.stdout),
        "PONG",
        "plaintext redis passed in enforce mode"
    );
    let (out, err, ok) = client(
        &spec,
        &[
            "redis-cli",
            "-h",
            &cache,
            "-p",
            "6380",
            "--tls",
            "--insecure",
            "PING",
        ],
    );
    assert!(
        ok && out == "PONG",
        "redis tls in enforce mode: {out} {err}"
    );
    agent
        .wait_for(Duration::from_secs(20), |evs| {
            flow_to(evs, &cache, 6379).is_some() && flow_to(evs, &cache, 6380).is_some()
        })
        .expect("redis flows reported");
    let evs = agent.events();
    let stopped = agent.stop().expect("stop");
    assert!(stopped.status.success(), "{}", stopped.stderr);
    let plain = flow_to(&evs, &cache, 6379).unwrap();
    assert_eq!(
        sealwatch_tests::verdict(plain),
        ["redis", "plaintext", "drop"],
        "{plain}"
    );
    let tls = flow_to(&evs, &cache, 6380).unwrap();
    assert_eq!(
        sealwatch_tests::verdict(tls),
        ["tls", "encrypted", "allow"],
        "{tls}"
    );

    // down: no namespace, no state, no server left; status says so.
    let lab_netns: Vec<u64> = spec
        .namespaces()
        .iter()
        .map(|ns| netns_inode(&format!("/run/netns/{ns}")).expect("netns inode"))
        .collect();
    let before = processes_in(&lab_netns);
    assert!(
        before.len() >= SERVICES.len() - 1,
        "servers in the lab: {before:?}"
    );
    drop(guard);
    assert!(spec.namespaces().is_empty(), "{:?}", spec.namespaces());
    let netns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    assert!(
        !text(&netns.stdout).contains(&spec.prefix),
        "{}",
        text(&netns.stdout)
    );
    assert!(!spec.state_dir.exists());
    let left = processes_in(&lab_netns);
    assert!(left.is_empty(), "lab processes still running: {left:?}");
    let after = standing::status(&spec).expect("status");
    assert!(
        after.namespaces.is_empty() && after.text.contains("down"),
        "{}",
        after.text
    );
}

/// The inode that identifies a network namespace (a /run/netns file or /proc/PID/ns/net).
fn netns_inode(path: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Processes whose network namespace is one of `inodes`.
fn processes_in(inodes: &[u64]) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            netns_inode(&format!("/proc/{pid}/ns/net")).is_some_and(|i| inodes.contains(&i))
        })
        .collect()
}
