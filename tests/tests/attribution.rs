//! Who is talking: flows are attributed to the processes and containers behind both ends, in
//! the namespace lab. Servers and clients run in cgroup v2 groups named like containerd and
//! Docker container scopes; the server starts before the agent, the client exits as soon as it
//! is answered, and the traffic crosses a veth created after the agent started.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "privileged tests panic with a message"
)]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use sealwatch_tests::{Lab, require_root, run};
use serde_json::Value;

/// cgroup v2 groups for the test, removed (processes killed first) on drop.
struct Cgroups {
    top: PathBuf,
    leaves: Vec<PathBuf>,
}

impl Cgroups {
    fn new(tag: &str) -> Cgroups {
        let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let root = info
            .lines()
            .find_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                (right.split_whitespace().next()? == "cgroup2")
                    .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
            })
            .expect("a cgroup v2 mount");
        Cgroups {
            top: root.join(format!("sealwatch-test-{tag}")),
            leaves: Vec::new(),
        }
    }

    /// Creates `rel` (and its parents) under the test's own group.
    fn leaf(&mut self, rel: &str) -> PathBuf {
        let dir = self.top.join(rel);
        std::fs::create_dir_all(&dir).expect("mkdir cgroup");
        self.leaves.push(dir.clone());
        dir
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for leaf in &self.leaves {
            let _ = std::fs::write(leaf.join("cgroup.kill"), "1");
        }
        std::thread::sleep(Duration::from_millis(100));
        remove_dirs(&self.top);
    }
}

fn remove_dirs(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                remove_dirs(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// A shell line that moves itself into `cgroup`, then becomes `command`.
fn in_cgroup(cgroup: &Path, command: &str) -> String {
    format!(
        "echo $$ > {}/cgroup.procs && echo $$ && exec {command}",
        cgroup.display()
    )
}

fn pids(cgroup: &Path) -> Vec<u64> {
    std::fs::read_to_string(cgroup.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn container_id(seed: u32, salt: u8) -> String {
    (0..32)
        .map(|i| {
            format!(
                "{:02x}",
                (seed as u8).wrapping_mul(31).wrapping_add(i * 7 + salt)
            )
        })
        .collect()
}

/// A pod as the kubelet lists it.
fn pod(name: &str, ns: &str, uid: &str, ip: &str, container: Option<&str>) -> Value {
    serde_json::json!({
        "metadata": {"name": name, "namespace": ns, "uid": uid, "labels": {"app": name}},
        "spec": {"containers": [{"name": "main", "image": "example"}]},
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "containerStatuses": container.map(|c| vec![serde_json::json!({
                "name": "main", "containerID": format!("containerd://{c}"), "ready": true
            })]).unwrap_or_default()
        }
    })
}

/// The kubelet's read-only pod list (`GET /pods` on port 10255), served on the server
/// namespace's loopback, where the agent runs.
fn fake_kubelet(lab: &mut Lab, pods: &[Value]) {
    let dir = lab.dir.join("kubelet");
    std::fs::create_dir_all(&dir).expect("kubelet dir");
    let list = serde_json::json!({"kind": "PodList", "apiVersion": "v1", "items": pods});
    std::fs::write(dir.join("pods"), list.to_string()).expect("pod list");
    let serve = format!(
        "cd {} && exec python3 -m http.server 10255 --bind 127.0.0.1",
        dir.display()
    );
    lab.spawn_server(&["sh", "-c", &serve]).expect("kubelet");
    lab.wait_listening(10255, false).expect("kubelet listening");
}

#[test]
fn a_pod_exclusion_lets_the_selected_pods_plaintext_through_in_enforce_mode() {
    if !require_root("a_pod_exclusion_lets_the_selected_pods_plaintext_through_in_enforce_mode") {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    lab.spawn_standard_servers().expect("servers");
    // The lab's client address is a pod of the legacy namespace; its IPv6 address is not.
    let client_v4 = lab.client_v4.to_string();
    fake_kubelet(
        &mut lab,
        &[pod(
            "billing-0",
            "legacy",
            "5e4d3c2b-1a09-4f8e-9d7c-6b5a4f3e2d1c",
            &client_v4,
            None,
        )],
    );
    let policy = lab.dir.join("policy.yaml");
    std::fs::write(
        &policy,
        "mode: enforce\nexclusions:\n  - {namespace: legacy, pod: \"billing-*\", reason: billing moves to TLS in Q3}\n",
    )
    .expect("policy");
    let policy = policy.to_string_lossy().into_owned();
    let agent = lab
        .start_agent(&["--policy", &policy, "--kubelet", "http://127.0.0.1:10255"])
        .expect("agent");
    let curl = |url: String, port: &str| {
        lab.client(
            &[
                "curl",
                "-sS",
                "-g",
                "-o",
                "/dev/null",
                "--max-time",
                "5",
                "--local-port",
                port,
                &url,
            ],
            None,
            Duration::from_secs(10),
        )
        .expect("curl")
    };
    // The pod list is read on its own thread and the addresses installed within 2 s: until
    // then the pod's plaintext is dropped like any other.
    let v4 = format!("http://{}:8080/", lab.server_v4);
    let mut passed = None;
    for (i, port) in (43301..43321).enumerate() {
        if curl(v4.clone(), &port.to_string()).status.success() {
            passed = Some(port);
            break;
        }
        assert!(i < 19, "the pod's plaintext never passed");
        std::thread::sleep(Duration::from_millis(500));
    }
    let passed = passed.unwrap();
    let v6 = format!("http://[{}]:8080/", lab.server_v6);
    let blocked = curl(v6, "43350");
    assert!(!blocked.status.success(), "not the pod: still dropped");
    let flow_of = |port: u16| move |e: &Value| e["event"] == "flow" && e["client.port"] == port;
    agent
        .wait_for(Duration::from_secs(10), |evs| {
            evs.iter().any(flow_of(passed)) && evs.iter().any(flow_of(43350))
        })
        .expect("flows");
    let evs = agent.events();
    let excluded = evs.iter().find(|e| flow_of(passed)(e)).unwrap();
    assert_eq!(excluded["sealwatch.action"], "excluded", "{excluded}");
    assert_eq!(
        excluded["sealwatch.exclusion"],
        "billing moves to TLS in Q3 (namespace legacy, pod billing-*)",
        "{excluded}"
    );
    assert_eq!(excluded["k8s.pod.name"], "billing-0", "{excluded}");
    let dropped = evs.iter().find(|e| flow_of(43350)(e)).unwrap();
    assert_eq!(dropped["sealwatch.action"], "drop", "{dropped}");
    agent.stop().expect("stop");
}

#[test]
fn flows_name_the_processes_and_containers_behind_both_ends() {
    if !require_root("flows_name_the_processes_and_containers_behind_both_ends") {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let tag = format!("{}-{}", std::process::id(), lab.server_if);
    let mut cgroups = Cgroups::new(&tag);
    let server_id = container_id(std::process::id(), 1);
    let client_id = container_id(std::process::id(), 2);
    let pod_uid = "1f0b9a7e-3c2d-4e5f-8a9b-0c1d2e3f4a5b";
    let server_cg = cgroups.leaf(&format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{server_id}.scope",
        pod_uid.replace('-', "_")
    ));
    let client_cg = cgroups.leaf(&format!("system.slice/docker-{client_id}.scope"));

    // The server starts before the agent: its listening socket predates every kernel hook.
    let server = in_cgroup(&server_cg, "python3 -m http.server 8081 --bind 0.0.0.0");
    lab.spawn_server(&["sh", "-c", &server]).expect("server");
    lab.wait_listening(8081, false).expect("listening");
    let server_pid = pids(&server_cg)[0];

    // The kubelet's read-only pod list, served on the agent's loopback.
    let octet = (std::process::id() % 200) as u8 + 20;
    let srv_addr = format!("10.233.{octet}.1");
    let cli_addr = format!("10.233.{octet}.2");
    fake_kubelet(
        &mut lab,
        &[
            pod(
                "checkout-7f9c",
                "shop",
                pod_uid,
                &srv_addr,
                Some(&server_id),
            ),
            pod(
                "web-client-1",
                "frontend",
                "9d8c7b6a-5f4e-4d3c-8b2a-1a0b9c8d7e6f",
                &cli_addr,
                None,
            ),
        ],
    );

    let agent = lab
        .start_agent(&[
            "--all-interfaces",
            "--idle-timeout",
            "3s",
            "--kubelet",
            "http://127.0.0.1:10255",
        ])
        .expect("agent");

    // A veth created after the agent started, between the same namespaces.
    let (new_srv, new_cli) = (format!("{}x", lab.server_if), format!("{}x", lab.client_if));
    run(&[
        "ip",
        "link",
        "add",
        &new_srv,
        "netns",
        &lab.server_ns,
        "type",
        "veth",
        "peer",
        "name",
        &new_cli,
        "netns",
        &lab.client_ns,
    ])
    .expect("veth");
    for (ns, dev, addr) in [
        (&lab.server_ns, &new_srv, &srv_addr),
        (&lab.client_ns, &new_cli, &cli_addr),
    ] {
        run(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            dev,
        ])
        .expect("addr");
        run(&["ip", "-n", ns, "link", "set", dev, "up"]).expect("up");
    }
    agent
        .wait_for(Duration::from_secs(10), |evs| {
            evs.iter()
                .any(|e| e["sealwatch.agent.state"] == "attached" && e["interface"] == *new_srv)
        })
        .expect("the new veth is attached");

    // A client that is gone as soon as it has its answer.
    let url = format!("http://{srv_addr}:8081/");
    let client = in_cgroup(
        &client_cg,
        &format!("curl -sS -o /dev/null --max-time 10 {url}"),
    );
    let out = lab
        .client(&["sh", "-c", &client], None, Duration::from_secs(20))
        .expect("curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let curl_pid: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("curl pid");

    let is_ours = |e: &Value| e["event"] == "flow" && e["server.address"] == *srv_addr;
    agent
        .wait_for(Duration::from_secs(10), |evs| evs.iter().any(is_ours))
        .expect("flow reported");
    let flow = agent.events().into_iter().find(is_ours).unwrap();
    let is_service = |e: &Value| e["event"] == "service" && e["server.port"] == 8081;
    agent
        .wait_for(Duration::from_secs(10), |evs| evs.iter().any(is_service))
        .expect("service listed");
    let service = agent.events().into_iter().find(is_service).unwrap();
    let stopped = agent.stop().expect("stop");
    assert!(stopped.status.success(), "{}", stopped.stderr);

    let attached = stopped
        .events
        .iter()
        .find(|e| e["sealwatch.agent.state"] == "attached")
        .unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_eq!(
        attached["host.name"],
        host.trim(),
        "node identity: {attached}"
    );
    assert!(
        attached.get("cloud.provider").is_none(),
        "IMDS disabled in the lab"
    );
    assert_eq!(flow["interface"], *new_srv, "{flow}");
    assert_eq!(flow["sealwatch.local_side"], "client", "{flow}");
    assert_eq!(flow["process.pid"], curl_pid, "{flow}");
    assert_eq!(flow["process.executable.name"], "curl", "{flow}");
    assert_eq!(flow["process.owner"], "root", "{flow}");
    assert_eq!(flow["container.id"], *client_id, "{flow}");
    assert_eq!(flow["sealwatch.peer.process.pid"], server_pid, "{flow}");
    assert_eq!(
        flow["sealwatch.peer.process.executable.name"], "python3",
        "{flow}"
    );
    assert!(
        flow["sealwatch.peer.process.command_line"]
            .as_str()
            .is_some_and(|c| c.contains("http.server 8081")),
        "{flow}"
    );
    assert_eq!(flow["sealwatch.peer.container.id"], *server_id, "{flow}");
    // The server's pod from its container's cgroup (pod uid), the client's from its address.
    assert_eq!(
        flow["sealwatch.peer.k8s.pod.name"], "checkout-7f9c",
        "{flow}"
    );
    assert_eq!(flow["sealwatch.peer.k8s.namespace.name"], "shop", "{flow}");
    assert_eq!(flow["k8s.pod.name"], "web-client-1", "{flow}");
    assert_eq!(flow["k8s.namespace.name"], "frontend", "{flow}");
    // The service inventory names the server's owner, though it started before the agent.

    assert_eq!(service["process.pid"], server_pid, "{service}");
    assert_eq!(service["container.id"], *server_id, "{service}");
    assert_eq!(service["k8s.pod.name"], "checkout-7f9c", "{service}");
}

#[test]
fn a_client_gone_before_its_flow_is_reported_keeps_its_command_line() {
    if !require_root("a_client_gone_before_its_flow_is_reported_keeps_its_command_line") {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    lab.spawn_standard_servers().expect("servers");
    let agent = lab.start_agent(&[]).expect("agent");
    // Bytes no detector names: the verdict waits (up to 2 s) for the silent server's answer,
    // long after the client has sent them and exited.
    let payload = lab.dir.join("noise.bin");
    let noise: Vec<u8> = (0..256u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&payload, noise).expect("payload");
    let script = format!(
        "echo $$; exec nc -q0 -w2 -p 43401 {} 9000 < {}",
        lab.server_v4,
        payload.display()
    );
    let out = lab
        .client(&["sh", "-c", &script], None, Duration::from_secs(10))
        .expect("nc");
    let pid: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("pid");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the client has exited"
    );
    let is_ours = |e: &Value| e["event"] == "flow" && e["client.port"] == 43401;
    agent
        .wait_for(Duration::from_secs(10), |evs| evs.iter().any(is_ours))
        .expect("flow");
    let flow = agent.events().into_iter().find(is_ours).unwrap();
    agent.stop().expect("stop");
    assert_eq!(flow["process.pid"], pid, "{flow}");
    assert_eq!(flow["process.executable.name"], "nc", "{flow}");
    let line = format!("nc -q0 -w2 -p 43401 {} 9000", lab.server_v4);
    assert_eq!(flow["process.command_line"], *line, "{flow}");
}

#[test]
fn a_udp_server_on_this_host_is_named() {
    if !require_root("a_udp_server_on_this_host_is_named") {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    let agent = lab.start_agent(&[]).expect("agent");
    // Bound after the agent started: the kernel saw the bind.
    let pid_file = lab.dir.join("udp-server.pid");
    let server = format!("echo $$ > {}; exec nc -u -l -p 5514", pid_file.display());
    lab.spawn_server(&["sh", "-c", &server])
        .expect("udp server");
    lab.wait_listening(5514, true).expect("bound");
    let server_pid: u64 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    let script = format!(
        "printf '<13>Nov 23 12:00:00 host app: plaintext syslog line' | nc -u -q0 -w1 -p 43501 {} 5514",
        lab.server_v4
    );
    lab.client(&["sh", "-c", &script], None, Duration::from_secs(10))
        .expect("udp client");
    let is_ours = |e: &Value| e["event"] == "flow" && e["client.port"] == 43501;
    agent
        .wait_for(Duration::from_secs(10), |evs| evs.iter().any(is_ours))
        .expect("flow");
    let flow = agent.events().into_iter().find(is_ours).unwrap();
    agent.stop().expect("stop");
    assert_eq!(flow["network.transport"], "udp", "{flow}");
    assert_eq!(flow["sealwatch.local_side"], "server", "{flow}");
    assert_eq!(flow["process.executable.name"], "nc", "{flow}");
    assert_eq!(flow["process.pid"], server_pid, "{flow}");
}
