//! Least privilege of a running agent: after attaching it holds exactly the capabilities it
//! uses at run time (README, "Privileges"), in every thread; the metrics endpoint given a port
//! alone listens on loopback only; the pins and the flow log it creates are not writable by
//! other users. And it still does its work with what is left.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "privileged tests panic with a message"
)]

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use sealwatch::privileges::{parse_status, runtime_mask};
use sealwatch_tests::{Lab, require_root};

const METRICS_PORT: u16 = 19_471;

/// CAP_DAC_READ_SEARCH, CAP_NET_ADMIN, CAP_SYS_PTRACE, CAP_BPF: spelled out so that a change
/// to the set is a change to this test too.
const EXPECTED: u64 = 1 << 2 | 1 << 12 | 1 << 19 | 1 << 39;

/// Removes the pins a keep-enforcing agent leaves, also when the test fails.
struct PinGuard(PathBuf);

impl Drop for PinGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn running_agent_holds_only_its_runtime_capabilities_and_private_files() {
    if !require_root("running_agent_holds_only_its_runtime_capabilities_and_private_files") {
        return;
    }
    assert_eq!(runtime_mask(), EXPECTED);
    let mut lab = Lab::new().expect("lab");
    lab.spawn_server(&["python3", "-m", "http.server", "8080"])
        .expect("http server");
    lab.wait_listening(8080, false).expect("listening");
    let ino = std::fs::metadata(format!("/run/netns/{}", lab.server_ns))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .expect("netns inode");
    let pins = PinGuard(PathBuf::from(format!("/sys/fs/bpf/sealwatch/net-{ino}")));
    let flow_log = lab.dir.join("flows.jsonl");
    let agent = lab
        .start_agent(&[
            "--metrics-addr",
            &METRICS_PORT.to_string(),
            "--flow-log",
            flow_log.to_str().unwrap(),
            "--on-exit",
            "keep-enforcing",
        ])
        .expect("agent");

    // 1. Capabilities, thread by thread.
    let tasks = PathBuf::from(format!("/proc/{}/task", agent.pid()));
    let mut threads = 0;
    for task in std::fs::read_dir(&tasks).expect("tasks").flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).expect("status");
        let caps = parse_status(&status);
        let name = status.lines().next().unwrap_or_default().to_owned();
        assert_eq!(
            (
                caps.effective,
                caps.permitted,
                caps.bounding,
                caps.inheritable,
                caps.ambient
            ),
            (EXPECTED, EXPECTED, EXPECTED, 0, 0),
            "thread {} ({name}): CapEff/CapPrm/CapBnd/CapInh/CapAmb",
            task.file_name().to_string_lossy()
        );
        threads += 1;
    }
    assert!(threads >= 2, "the agent has its worker threads ({threads})");

    // 2. `--metrics-addr PORT` is loopback only: answered inside the agent's namespace on
    // 127.0.0.1, refused from the client's side of the veth.
    let listening = Lab::in_ns(
        &lab.server_ns,
        &["ss", "-Hltn", "sport", "=", &format!(":{METRICS_PORT}")],
    )
    .output()
    .expect("ss");
    let listening = String::from_utf8_lossy(&listening.stdout).into_owned();
    assert!(
        listening.contains(&format!("127.0.0.1:{METRICS_PORT}")) && listening.lines().count() == 1,
        "one listener, on loopback: {listening}"
    );
    let local = Lab::in_ns(
        &lab.server_ns,
        &[
            "curl",
            "-sS",
            "-m",
            "5",
            &format!("http://127.0.0.1:{METRICS_PORT}/readyz"),
        ],
    )
    .output()
    .expect("curl");
    assert!(local.status.success(), "{local:?}");
    let remote = lab
        .client(
            &[
                "curl",
                "-sS",
                "-m",
                "5",
                &format!("http://{}:{METRICS_PORT}/healthz", lab.server_v4),
            ],
            None,
            Duration::from_secs(10),
        )
        .expect("curl");
    assert_eq!(
        remote.status.code(),
        Some(7),
        "connection refused from another host: {}",
        String::from_utf8_lossy(&remote.stderr)
    );

    // 3. Still working with what is left: a flow is classified and logged.
    let out = lab
        .client(
            &[
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                &format!("http://{}:8080/", lab.server_v4),
            ],
            None,
            Duration::from_secs(20),
        )
        .expect("curl");
    assert!(out.status.success(), "{out:?}");
    agent
        .wait_for(Duration::from_secs(15), |evs| {
            evs.iter()
                .any(|e| e["event"] == "flow" && e["network.protocol.name"] == "http")
        })
        .expect("flow after the capabilities were dropped");

    // 4. Files: the pin directories 0700, the pins 0600, the flow log not writable by others.
    assert_eq!(mode(&pins.0), 0o700, "{}", pins.0.display());
    let links = pins.0.join("links");
    assert_eq!(mode(&links), 0o700);
    let mut pinned = 0;
    for dir in std::fs::read_dir(&pins.0).expect("pin dir").flatten() {
        let path = dir.path();
        if path.is_dir() {
            assert_eq!(mode(&path), 0o700, "{}", path.display());
            for pin in std::fs::read_dir(&path).expect("pins").flatten() {
                assert_eq!(mode(&pin.path()), 0o600, "{}", pin.path().display());
                pinned += 1;
            }
        }
    }
    assert!(pinned >= 3, "links and maps pinned ({pinned})");
    assert_eq!(
        mode(&flow_log),
        0o640,
        "flow log: owner writes, group reads, others nothing"
    );

    let stopped = agent.stop().expect("stop");
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert!(
        stopped.stderr.contains("capabilities dropped"),
        "{}",
        stopped.stderr
    );
    drop(pins);
}
