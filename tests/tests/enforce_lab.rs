//! Enforce mode against real Debian servers and clients in the namespace lab, beyond HTTP:
//! redis commands that never reach redis-server (IPv4 and IPv6) while redis over TLS passes; a
//! TLS 1.0 handshake stopped at its ServerHello while TLS 1.2 and 1.3 pass; SMTP STARTTLS let
//! through its preamble while a plaintext mail is stopped before MAIL FROM; process exclusions
//! by cgroup (a departing connection) and by listening port (an arriving one); policy reloads
//! that change decisions without disturbing an established flow, and an invalid policy that
//! changes nothing.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "privileged tests panic with a message"
)]

use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Output, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use sealwatch_tests::{Agent, Lab, agent_binary, require_root, verdict};
use serde_json::Value;

/// Upper bound for any client; a blocked one must fail far sooner (see [`FAIL_FAST`]).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);
/// A blocked client fails on the reset of its destroyed peer, not on a timeout of its own.
const FAIL_FAST: Duration = Duration::from_secs(5);
/// How long events may take to show up once their flow has happened (held verdicts wait up to
/// 2 s for the bytes that settle them).
const EVENTS_WAIT: Duration = Duration::from_secs(10);
/// The agent looks the cgroups of excluded processes up again this often (run.rs).
const CGROUP_REFRESH: Duration = Duration::from_secs(2);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

/// Runs a client in the client namespace and times it.
fn timed(lab: &Lab, argv: &[&str]) -> (Output, Duration) {
    let start = Instant::now();
    let out = lab
        .client(argv, None, CLIENT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    (out, start.elapsed())
}

/// The client must have succeeded.
fn passed(what: &str, (out, _): &(Output, Duration)) {
    assert!(
        out.status.success(),
        "{what} must pass: exit {:?}, stdout {:?}, stderr {:?}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The client must have failed, and fast: from a reset, not from a timeout (`timeout` exits
/// 124, curl's own timeout is 28).
fn blocked(what: &str, (out, took): &(Output, Duration)) {
    assert!(
        !out.status.success(),
        "{what} must fail: stdout {:?}, stderr {:?}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        *took < FAIL_FAST && !matches!(out.status.code(), Some(124 | 28)),
        "{what} must fail fast, not time out: {took:?}, exit {:?}, stderr {:?}",
        out.status.code(),
        text(&out.stderr)
    );
    eprintln!(
        "{what}: failed after {} ms (exit {:?}: {})",
        took.as_millis(),
        out.status.code(),
        text(&out.stderr)
    );
}

/// The `flow` verdict events of flows to `server_port` (and from `client_port` when given).
fn flows(evs: &[Value], server_port: u16, client_port: Option<u16>) -> Vec<Value> {
    evs.iter()
        .filter(|e| {
            e["event"] == "flow"
                && e["server.port"] == server_port
                && client_port.is_none_or(|c| e["client.port"] == c)
        })
        .cloned()
        .collect()
}

/// The one `flow` event of a flow.
fn flow(evs: &[Value], server_port: u16, client_port: Option<u16>) -> Value {
    let found = flows(evs, server_port, client_port);
    assert_eq!(
        found.len(),
        1,
        "one flow to port {server_port} from {client_port:?}: {found:?}"
    );
    found.into_iter().next().unwrap()
}

/// What the agent finally says about a flow: the action of its `flow.end` event, which carries
/// the kernel's last decision (a flow can be dropped after its verdict was reported, on its
/// ServerHello or its preamble; the agent then adds a `drop` event).
fn final_action(evs: &[Value], server_port: u16, client_port: Option<u16>) -> Value {
    let ends: Vec<&Value> = evs
        .iter()
        .filter(|e| {
            e["event"] == "flow.end"
                && e["server.port"] == server_port
                && client_port.is_none_or(|c| e["client.port"] == c)
        })
        .collect();
    assert_eq!(
        ends.len(),
        1,
        "one end of the flow to {server_port}: {ends:?}"
    );
    ends[0]["sealwatch.action"].clone()
}

fn has_flow(evs: &[Value], server_port: u16, client_port: Option<u16>) -> bool {
    !flows(evs, server_port, client_port).is_empty()
}

fn wait_flows(agent: &Agent, wanted: &[(u16, Option<u16>)]) {
    agent
        .wait_for(EVENTS_WAIT, |evs| {
            wanted.iter().all(|&(s, c)| has_flow(evs, s, c))
        })
        .unwrap_or_else(|e| panic!("flows {wanted:?} reported: {e}"));
}

fn agent_state(evs: &[Value], state: &str) -> usize {
    evs.iter()
        .filter(|e| e["event"] == "agent" && e["sealwatch.agent.state"] == state)
        .count()
}

/// Stops the agent and returns every event and the kernel's drop counter.
fn stop(agent: Agent) -> (Vec<Value>, u64) {
    let stopped = agent.stop().expect("stop");
    assert!(
        stopped.status.success(),
        "agent exit: {:?}: {}",
        stopped.status,
        stopped.stderr
    );
    let dropped = stopped
        .events
        .iter()
        .find(|e| e["sealwatch.agent.state"] == "stopped")
        .and_then(|e| e["sealwatch.kernel.dropped"].as_u64())
        .expect("the stopped event counts dropped packets");
    (stopped.events, dropped)
}

fn write_policy(path: &Path, yaml: &str) {
    // Replaced, not rewritten in place: the agent never reads a half-written file.
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, yaml).expect("policy");
    fs::rename(&tmp, path).expect("policy in place");
}

fn start_agent(lab: &Lab, policy: &Path) -> Agent {
    let policy = policy.to_string_lossy().into_owned();
    lab.start_agent(&["--idle-timeout", "3s", "--policy", &policy])
        .expect("agent")
}

/// A process of the test's own, outside the lab's server list: killed with its process group
/// when dropped.
struct Background {
    child: Child,
}

impl Background {
    fn spawn(mut cmd: Command) -> Background {
        let child = cmd
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        Background { child }
    }

    fn stdin(&mut self) -> ChildStdin {
        self.child.stdin.take().expect("piped stdin")
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on the group this child leads.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Waits until `port` listens (TCP) in namespace `ns`.
fn wait_listening_in(ns: &str, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let out = Lab::in_ns(ns, &["ss", "-ltnH"]).output().expect("ss");
        if text(&out.stdout).lines().any(|l| {
            l.split_whitespace()
                .nth(3)
                .is_some_and(|a| a.ends_with(&format!(":{port}")))
        }) {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on port {port} in {ns}");
}

/// Asks redis-server over loopback inside the server namespace, where the agent does not
/// watch, how many SET commands it executed.
fn redis_sets(lab: &Lab, port: u16) -> u64 {
    let port = port.to_string();
    let out = Lab::in_ns(
        &lab.server_ns,
        &[
            "timeout",
            "5",
            "redis-cli",
            "-p",
            &port,
            "INFO",
            "commandstats",
        ],
    )
    .output()
    .expect("redis-cli INFO");
    assert!(out.status.success(), "INFO: {}", text(&out.stderr));
    let stats = text(&out.stdout);
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_set:calls="))
        .map_or(0, |rest| {
            rest.split(',')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("calls count")
        })
}

/// Starts a redis-server (or a copy of it under another name) in the server namespace, in
/// `cgroup` when given, and waits until it listens.
fn redis_server(
    lab: &mut Lab,
    program: &str,
    port: u16,
    tls_port: Option<u16>,
    cgroup: Option<&Cgroup>,
) {
    let mut argv: Vec<String> = [
        program,
        "--port",
        &port.to_string(),
        "--bind",
        "0.0.0.0",
        "::",
        "--protected-mode",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        ".",
    ]
    .map(str::to_owned)
    .to_vec();
    if let Some(tls) = tls_port {
        argv.extend(
            [
                "--tls-port",
                &tls.to_string(),
                "--tls-cert-file",
                "tls.crt",
                "--tls-key-file",
                "tls.key",
                "--tls-ca-cert-file",
                "tls.crt",
                "--tls-auth-clients",
                "no",
            ]
            .map(str::to_owned),
        );
    }
    match cgroup {
        Some(cgroup) => {
            let quoted: Vec<String> = argv.iter().map(|a| format!("'{a}'")).collect();
            lab.spawn_server(&["sh", "-c", &cgroup.sh(&quoted.join(" "))])
        }
        None => lab.spawn_server(&argv.iter().map(String::as_str).collect::<Vec<_>>()),
    }
    .expect("redis-server");
    lab.wait_listening(port, false).expect("redis listening");
    if let Some(tls) = tls_port {
        lab.wait_listening(tls, false).expect("redis tls listening");
    }
}

#[test]
fn redis_commands_never_reach_the_server_and_redis_over_tls_passes() {
    if !require_root("redis_commands_never_reach_the_server_and_redis_over_tls_passes") {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    lab.make_keys().expect("keys");
    redis_server(&mut lab, "redis-server", 6379, Some(6380), None);
    let policy = lab.dir.join("policy.yaml");
    write_policy(&policy, "mode: enforce\n");
    let agent = start_agent(&lab, &policy);
    let s4 = lab.server_v4.to_string();
    let s6 = lab.server_v6.to_string();

    let set = timed(
        &lab,
        &["redis-cli", "-h", &s4, "-p", "6379", "SET", "k", "v"],
    );
    blocked("redis SET over IPv4", &set);
    assert_ne!(text(&set.0.stdout), "OK", "redis-server answered");
    let set6 = timed(
        &lab,
        &["redis-cli", "-h", &s6, "-p", "6379", "SET", "k6", "v"],
    );
    blocked("redis SET over IPv6", &set6);
    assert_eq!(
        redis_sets(&lab, 6379),
        0,
        "redis-server executed a blocked SET"
    );

    let tls = timed(
        &lab,
        &[
            "redis-cli",
            "--tls",
            "--insecure",
            "-h",
            &s4,
            "-p",
            "6380",
            "SET",
            "k2",
            "v2",
        ],
    );
    passed("redis SET over TLS", &tls);
    assert_eq!(text(&tls.0.stdout), "OK");
    assert_eq!(redis_sets(&lab, 6379), 1, "the TLS SET, and only it");

    agent
        .wait_for(EVENTS_WAIT, |evs| {
            flows(evs, 6379, None).len() >= 2 && has_flow(evs, 6380, None)
        })
        .expect("three flows reported");
    let (evs, dropped) = stop(agent);
    let plain = flows(&evs, 6379, None);
    assert_eq!(plain.len(), 2, "{plain:?}");
    for family in ["ipv4", "ipv6"] {
        let f = plain
            .iter()
            .find(|e| e["network.type"] == family)
            .unwrap_or_else(|| panic!("a {family} redis flow: {plain:?}"));
        assert_eq!(verdict(f), ["redis", "plaintext", "drop"], "{f}");
    }
    let tls = flow(&evs, 6380, None);
    assert_eq!(verdict(&tls), ["tls", "encrypted", "allow"], "{tls}");
    assert_eq!(tls["tls.protocol.version"], "1.3", "{tls}");
    assert!(dropped >= 2, "both SETs dropped in the kernel: {dropped}");
}

/// `curl` over TLS with a chosen local port and protocol range.
fn curl_tls(lab: &Lab, port: u16, local_port: u16, versions: &[&str]) -> (Output, Duration) {
    let url = format!("https://{}:{port}/", lab.server_v4);
    let local = local_port.to_string();
    let mut argv = vec![
        "curl",
        "-sS",
        "-k",
        "-o",
        "/dev/null",
        "--max-time",
        "15",
        "--local-port",
        &local,
    ];
    argv.extend_from_slice(versions);
    argv.push(&url);
    timed(lab, &argv)
}

/// A TLS 1.0 handshake, as an old client would do it. Debian's OpenSSL refuses TLS 1.0 at its
/// default security level 2; level 0 lets the SHA-1 handshake signatures through.
const TLS_1_0_ONLY: [&str; 5] = [
    "--tlsv1.0",
    "--tls-max",
    "1.0",
    "--ciphers",
    "DEFAULT@SECLEVEL=0",
];

#[test]
fn tls_below_the_minimum_version_is_dropped_at_the_server_hello() {
    if !require_root("tls_below_the_minimum_version_is_dropped_at_the_server_hello") {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    lab.make_keys().expect("keys");
    lab.spawn_server(&[
        "openssl", "s_server", "-accept", "8443", "-cert", "tls.crt", "-key", "tls.key", "-www",
        "-quiet",
    ])
    .expect("s_server");
    // A server that speaks TLS 1.0 and nothing newer.
    lab.spawn_server(&[
        "openssl",
        "s_server",
        "-accept",
        "8444",
        "-cert",
        "tls.crt",
        "-key",
        "tls.key",
        "-tls1",
        "-cipher",
        "ALL:@SECLEVEL=0",
        "-www",
        "-quiet",
    ])
    .expect("s_server tls1");
    for port in [8443, 8444] {
        lab.wait_listening(port, false).expect("listening");
    }
    let policy = lab.dir.join("policy.yaml");
    write_policy(
        &policy,
        "mode: enforce\nrequire: {min_tls_version: \"1.2\"}\n",
    );
    let agent = start_agent(&lab, &policy);

    let old = curl_tls(&lab, 8444, 43101, &TLS_1_0_ONLY);
    blocked("TLS 1.0 handshake", &old);
    let tls12 = curl_tls(&lab, 8443, 43102, &["--tls-max", "1.2"]);
    passed("TLS 1.2", &tls12);
    let tls13 = curl_tls(&lab, 8443, 43103, &["--tlsv1.3"]);
    passed("TLS 1.3", &tls13);
    wait_flows(
        &agent,
        &[
            (8444, Some(43101)),
            (8443, Some(43102)),
            (8443, Some(43103)),
        ],
    );

    // Monitor mode, by reloading the file: the same handshake passes and is alerted.
    write_policy(
        &policy,
        "mode: monitor\nrequire: {min_tls_version: \"1.2\"}\n",
    );
    agent
        .wait_for(EVENTS_WAIT, |evs| agent_state(evs, "policy_reloaded") == 1)
        .expect("policy reloaded");
    let monitored = curl_tls(&lab, 8444, 43104, &TLS_1_0_ONLY);
    passed("TLS 1.0 in monitor mode", &monitored);
    wait_flows(&agent, &[(8444, Some(43104))]);
    // The flow's end carries the kernel's last word.
    thread::sleep(Duration::from_secs(2));
    let (evs, dropped) = stop(agent);

    let old = flow(&evs, 8444, Some(43101));
    assert_eq!(
        (&old["tls.protocol.version"], &old["sealwatch.action"]),
        (&Value::from("1.0"), &Value::from("drop")),
        "{old}"
    );
    let weak = old["sealwatch.weak"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(weak.contains(&Value::from("tls<1.2")), "{old}");
    assert_eq!(final_action(&evs, 8444, Some(43101)), "drop");
    for (port, version) in [(43102, "1.2"), (43103, "1.3")] {
        let f = flow(&evs, 8443, Some(port));
        assert_eq!(
            (&f["tls.protocol.version"], &f["sealwatch.action"]),
            (&Value::from(version), &Value::from("allow")),
            "{f}"
        );
        assert!(f.get("sealwatch.weak").is_none(), "{f}");
    }
    let monitored = flow(&evs, 8444, Some(43104));
    assert_eq!(
        (
            &monitored["tls.protocol.version"],
            &monitored["sealwatch.action"]
        ),
        (&Value::from("1.0"), &Value::from("alert")),
        "{monitored}"
    );
    assert_eq!(monitored["sealwatch.weak"], old["sealwatch.weak"]);
    assert!(dropped >= 1, "the ServerHello was dropped in the kernel");
}

/// A minimal SMTP server with STARTTLS, logging every line it receives as `plain ...` or
/// `tls ...`: enough for curl to send a mail.
const SMTP_SERVER: &str = r#"
import socketserver, ssl, sys

port, log_path = int(sys.argv[1]), sys.argv[2]
tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain("tls.crt", "tls.key")

def log(layer, line):
    with open(log_path, "a") as f:
        f.write(f"{layer} {line}\n")

class Smtp(socketserver.StreamRequestHandler):
    def handle(self):
        conn, rfile, wfile, layer = self.connection, self.rfile, self.wfile, "plain"
        def say(line):
            wfile.write(line.encode() + b"\r\n")
            wfile.flush()
        say("220 lab.sealwatch.test ESMTP")
        while True:
            line = rfile.readline()
            if not line:
                return
            line = line.decode(errors="replace").rstrip("\r\n")
            log(layer, line)
            verb = line.split(" ")[0].upper()
            if verb in ("EHLO", "HELO"):
                if layer == "plain":
                    say("250-lab.sealwatch.test")
                    say("250 STARTTLS")
                else:
                    say("250 lab.sealwatch.test")
            elif verb == "STARTTLS" and layer == "plain":
                say("220 go ahead")
                conn = tls.wrap_socket(conn, server_side=True)
                rfile, wfile, layer = conn.makefile("rb"), conn.makefile("wb"), "tls"
            elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                say("250 OK")
            elif verb == "DATA":
                say("354 end with .")
                while True:
                    body = rfile.readline()
                    if body in (b"", b".\r\n", b".\n"):
                        break
                    log(layer, "body " + body.decode(errors="replace").rstrip("\r\n"))
                say("250 queued")
            elif verb == "QUIT":
                say("221 bye")
                return
            else:
                say("502 not here")

class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

Server(("0.0.0.0", port), Smtp).serve_forever()
"#;

#[test]
fn starttls_preamble_passes_and_plaintext_mail_is_stopped_before_mail_from() {
    if !require_root("starttls_preamble_passes_and_plaintext_mail_is_stopped_before_mail_from") {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    lab.make_keys().expect("keys");
    fs::write(lab.dir.join("smtp.py"), SMTP_SERVER).expect("smtp script");
    fs::write(
        lab.dir.join("mail.txt"),
        "Subject: lab\r\n\r\nsecret-body-line\r\n",
    )
    .expect("mail");
    let log = lab.dir.join("smtp.log");
    let log_s = log.to_string_lossy().into_owned();
    lab.spawn_server(&["python3", "smtp.py", "2525", &log_s])
        .expect("smtp server");
    lab.wait_listening(2525, false).expect("smtp listening");
    let policy = lab.dir.join("policy.yaml");
    write_policy(&policy, "mode: enforce\n");
    let agent = start_agent(&lab, &policy);
    let url = format!("smtp://{}:2525", lab.server_v4);
    let mail = lab.dir.join("mail.txt").to_string_lossy().into_owned();
    let smtp = |local_port: &str, extra: &[&str]| {
        let mut argv = vec![
            "curl",
            "-sS",
            "--max-time",
            "15",
            "--local-port",
            local_port,
        ];
        argv.extend_from_slice(extra);
        argv.extend_from_slice(&[
            &url,
            "--mail-from",
            "a@lab.test",
            "--mail-rcpt",
            "b@lab.test",
            "-T",
            &mail,
        ]);
        timed(&lab, &argv)
    };

    let plain = smtp("43201", &[]);
    blocked("plaintext SMTP", &plain);
    let seen = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        seen.contains("plain EHLO"),
        "the preamble reached the server: {seen:?}"
    );
    assert!(
        !seen.contains("MAIL") && !seen.contains("secret-body-line"),
        "the server received a blocked MAIL: {seen:?}"
    );

    let upgraded = smtp("43202", &["--ssl-reqd", "-k"]);
    passed("SMTP with STARTTLS", &upgraded);
    let seen = fs::read_to_string(&log).unwrap_or_default();
    assert!(seen.contains("plain STARTTLS"), "{seen:?}");
    assert!(seen.contains("tls MAIL FROM:<a@lab.test>"), "{seen:?}");
    assert!(seen.contains("tls body secret-body-line"), "{seen:?}");
    assert!(!seen.contains("plain MAIL"), "{seen:?}");

    wait_flows(&agent, &[(2525, Some(43201)), (2525, Some(43202))]);
    thread::sleep(Duration::from_secs(2));
    let (evs, dropped) = stop(agent);
    let plain = flow(&evs, 2525, Some(43201));
    assert_eq!(verdict(&plain), ["smtp", "plaintext", "drop"], "{plain}");
    assert_eq!(final_action(&evs, 2525, Some(43201)), "drop");
    let upgraded = flow(&evs, 2525, Some(43202));
    assert_eq!(
        (
            &upgraded["network.protocol.name"],
            &upgraded["sealwatch.encryption"],
            &upgraded["sealwatch.starttls"],
            &upgraded["sealwatch.action"]
        ),
        (
            &Value::from("smtp"),
            &Value::from("encrypted"),
            &Value::from(true),
            &Value::from("allow")
        ),
        "{upgraded}"
    );
    assert_eq!(final_action(&evs, 2525, Some(43202)), "allow");
    assert!(dropped >= 1, "MAIL FROM dropped in the kernel");
}

static CGROUP_SEQ: AtomicU32 = AtomicU32::new(0);

/// A cgroup v2 child of our own, emptied (its processes killed) and removed when dropped.
struct Cgroup {
    dir: PathBuf,
}

impl Cgroup {
    fn new() -> Cgroup {
        let mounts = fs::read_to_string("/proc/mounts").expect("mounts");
        let root = mounts
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
            })
            .expect("a cgroup2 mount");
        let seq = CGROUP_SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = root.join(format!("sealwatch-lab-{}-{seq}", std::process::id()));
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        Cgroup { dir }
    }

    /// `sh -c` that moves itself into this cgroup, then runs `command` there.
    fn sh(&self, command: &str) -> String {
        format!(
            "echo $$ > {}/cgroup.procs && exec {command}",
            self.dir.display()
        )
    }

    fn pids(&self) -> Vec<i32> {
        fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = self.pids();
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in pids {
                // SAFETY: plain kill(2) on processes this test put in its own cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            thread::sleep(Duration::from_millis(20));
        }
        if let Err(e) = fs::remove_dir(&self.dir) {
            eprintln!("cannot remove {}: {e}", self.dir.display());
        }
    }
}

#[test]
fn process_exclusions_match_by_cgroup_leaving_and_by_listening_port_arriving() {
    if !require_root("process_exclusions_match_by_cgroup_leaving_and_by_listening_port_arriving") {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    // A legacy server under a name of its own: the exclusion names the process, not the port.
    // In a cgroup of its own, as a service would be: an exclusion covers its whole cgroup, and
    // the test's own (where the other clients run) must stay enforced.
    let kv_cgroup = Cgroup::new();
    let legacy_kv = lab.dir.join("legacy-kv");
    fs::copy("/usr/bin/redis-server", &legacy_kv).expect("copy redis-server");
    redis_server(
        &mut lab,
        &legacy_kv.to_string_lossy(),
        6390,
        None,
        Some(&kv_cgroup),
    );
    redis_server(&mut lab, "redis-server", 6391, None, None);
    // The HTTP server for departing connections lives in the client namespace.
    let http_log = lab.dir.join("http.log");
    let c4 = lab.client_v4.to_string();
    let _http = Background::spawn({
        let mut cmd = Lab::in_ns(
            &lab.client_ns,
            &[
                "sh",
                "-c",
                &format!(
                    "exec python3 -m http.server 8090 --bind {c4} 2> {}",
                    http_log.display()
                ),
            ],
        );
        cmd.current_dir(&lab.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    });
    wait_listening_in(&lab.client_ns, 8090);
    let policy = lab.dir.join("policy.yaml");
    write_policy(
        &policy,
        "mode: enforce\nexclusions:\n  - {process: legacy-sync, reason: nightly sync job}\n  - {process: legacy-kv, reason: legacy key-value store}\n",
    );
    let agent = start_agent(&lab, &policy);

    // The excluded program starts after the agent: found by the periodic lookup.
    let cgroup = Cgroup::new();
    let legacy_sync = lab.dir.join("legacy-sync");
    fs::copy("/bin/sleep", &legacy_sync).expect("copy sleep");
    let _sync = Background::spawn({
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &cgroup.sh(&format!("{} 600", legacy_sync.display()))])
            .stdin(Stdio::null());
        cmd
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while cgroup.pids().is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(cgroup.pids().len(), 1, "legacy-sync in its cgroup");
    thread::sleep(2 * CGROUP_REFRESH);

    let curl_from_server = |local_port: &str, path: &str, in_cgroup: bool| {
        let url = format!("http://{c4}:8090/{path}");
        let curl = format!("curl -sS -o /dev/null --max-time 15 --local-port {local_port} {url}");
        let command = if in_cgroup { cgroup.sh(&curl) } else { curl };
        let start = Instant::now();
        let out = Lab::in_ns(
            &lab.server_ns,
            &["timeout", "-k", "1", "20", "sh", "-c", &command],
        )
        .output()
        .expect("curl");
        (out, start.elapsed())
    };
    let inside = curl_from_server("43401", "from-legacy-sync", true);
    passed("curl in legacy-sync's cgroup", &inside);
    let outside = curl_from_server("43402", "from-elsewhere", false);
    blocked("curl outside the cgroup", &outside);
    let served = fs::read_to_string(&http_log).unwrap_or_default();
    assert!(served.contains("GET /from-legacy-sync"), "{served:?}");
    assert!(!served.contains("from-elsewhere"), "{served:?}");

    let s4 = lab.server_v4.to_string();
    let kv = timed(
        &lab,
        &["redis-cli", "-h", &s4, "-p", "6390", "SET", "k", "v"],
    );
    passed("redis SET to legacy-kv", &kv);
    assert_eq!(text(&kv.0.stdout), "OK");
    assert_eq!(redis_sets(&lab, 6390), 1);
    let plain = timed(
        &lab,
        &["redis-cli", "-h", &s4, "-p", "6391", "SET", "k", "v"],
    );
    blocked("redis SET to redis-server", &plain);
    assert_eq!(redis_sets(&lab, 6391), 0);

    wait_flows(
        &agent,
        &[
            (8090, Some(43401)),
            (8090, Some(43402)),
            (6390, None),
            (6391, None),
        ],
    );
    let (evs, _) = stop(agent);
    let expect = [
        (
            flow(&evs, 8090, Some(43401)),
            "excluded",
            Some("nightly sync job (process legacy-sync)"),
        ),
        (flow(&evs, 8090, Some(43402)), "drop", None),
        (
            flow(&evs, 6390, None),
            "excluded",
            Some("legacy key-value store (process legacy-kv)"),
        ),
        (flow(&evs, 6391, None), "drop", None),
    ];
    for (f, action, exclusion) in expect {
        assert_eq!(f["sealwatch.action"], action, "{f}");
        assert_eq!(f["sealwatch.encryption"], "plaintext", "{f}");
        assert_eq!(f["sealwatch.exclusion"].as_str(), exclusion, "{f}");
    }
    drop(cgroup);
    drop(kv_cgroup);
}

/// `openssl s_client` kept open to an `s_server -rev`, which sends every line back reversed.
struct TlsSession {
    process: Background,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl TlsSession {
    fn open(lab: &Lab, port: u16) -> TlsSession {
        let mut cmd = Lab::in_ns(
            &lab.client_ns,
            &[
                "timeout",
                "120",
                "openssl",
                "s_client",
                "-quiet",
                "-connect",
                &format!("{}:{port}", lab.server_v4),
            ],
        );
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut process = Background::spawn(cmd);
        let stdin = process.stdin();
        let stdout = process.child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        TlsSession {
            process,
            stdin,
            lines,
        }
    }

    /// Sends a line and waits for it to come back reversed: bytes crossed both ways.
    fn round_trip(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to s_client");
        self.stdin.flush().expect("flush");
        let want: String = line.chars().rev().collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(got) if got.trim_end() == want => return,
                Ok(_) => {}
                Err(e) => panic!("no echo of {line:?} over the long-lived TLS flow: {e}"),
            }
        }
    }
}

#[test]
fn policy_reloads_change_decisions_without_disturbing_established_flows() {
    if !require_root("policy_reloads_change_decisions_without_disturbing_established_flows") {
        return;
    }
    let mut lab = Lab::new().expect("lab");
    lab.make_keys().expect("keys");
    lab.spawn_server(&[
        "openssl", "s_server", "-accept", "8445", "-cert", "tls.crt", "-key", "tls.key", "-rev",
        "-quiet",
    ])
    .expect("s_server -rev");
    for port in [8081, 8083] {
        lab.spawn_server(&[
            "python3",
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "0.0.0.0",
        ])
        .expect("http server");
    }
    for port in [8445, 8081, 8083] {
        lab.wait_listening(port, false).expect("listening");
    }
    let policy = lab.dir.join("policy.yaml");
    write_policy(&policy, "mode: enforce\n");
    let agent = start_agent(&lab, &policy);
    let s4 = lab.server_v4.to_string();
    let curl = |port: u16, local_port: u16| {
        let url = format!("http://{s4}:{port}/");
        let local = local_port.to_string();
        timed(
            &lab,
            &[
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                "--max-time",
                "15",
                "--local-port",
                &local,
                &url,
            ],
        )
    };

    let mut session = TlsSession::open(&lab, 8445);
    session.round_trip("before-reload");
    blocked("HTTP to 8081 before the reload", &curl(8081, 43501));

    write_policy(
        &policy,
        "mode: enforce\nexclusions:\n  - {port: 8081, transport: tcp, reason: reload test}\n",
    );
    agent
        .wait_for(EVENTS_WAIT, |evs| agent_state(evs, "policy_reloaded") == 1)
        .expect("policy reloaded");
    passed("HTTP to 8081 after the reload", &curl(8081, 43502));
    session.round_trip("after-reload");

    // An invalid file: `policy check` says where, the agent keeps the policy it has.
    let invalid = "mode: enforce\nexclusions:\n  - {port: 8081, transport: tcp, colour: red}\n";
    write_policy(&policy, invalid);
    let check = Command::new(agent_binary())
        .args(["policy", "check"])
        .arg(&policy)
        .output()
        .expect("policy check");
    let complaint = text(&check.stderr);
    assert_eq!(check.status.code(), Some(2), "{complaint}");
    assert!(
        complaint.contains("policy.yaml:3:") && complaint.contains("colour"),
        "names the line and the field: {complaint}"
    );
    agent
        .wait_for(EVENTS_WAIT, |evs| agent_state(evs, "policy_rejected") == 1)
        .expect("policy rejected");
    let rejected = agent
        .events()
        .into_iter()
        .find(|e| e["sealwatch.agent.state"] == "policy_rejected")
        .unwrap();
    let error = rejected["sealwatch.policy.error"].as_str().unwrap_or("");
    assert!(
        error.contains(":3:") && error.contains("colour"),
        "{rejected}"
    );
    passed("HTTP to 8081 after the rejected file", &curl(8081, 43503));
    blocked("HTTP to 8083 after the rejected file", &curl(8083, 43504));
    session.round_trip("after-rejected-file");
    assert!(session.process.running(), "the TLS session stayed up");

    wait_flows(
        &agent,
        &[
            (8445, None),
            (8081, Some(43501)),
            (8081, Some(43502)),
            (8081, Some(43503)),
            (8083, Some(43504)),
        ],
    );
    drop(session);
    let (evs, _) = stop(agent);
    assert_eq!(agent_state(&evs, "policy_reloaded"), 1);
    assert_eq!(agent_state(&evs, "policy_rejected"), 1);
    let session = flow(&evs, 8445, None);
    assert_eq!(session["sealwatch.action"], "allow", "{session}");
    assert!(
        !evs.iter()
            .any(|e| e["event"] == "drop" && e["server.port"] == 8445),
        "the TLS session was never dropped"
    );
    for (port, local, action) in [
        (8081, 43501, "drop"),
        (8081, 43502, "excluded"),
        (8081, 43503, "excluded"),
        (8083, 43504, "drop"),
    ] {
        let f = flow(&evs, port, Some(local));
        assert_eq!(f["sealwatch.action"], action, "{f}");
        if action == "excluded" {
            assert_eq!(
                f["sealwatch.exclusion"],
                "reload test (port 8081, transport tcp)"
            );
        }
    }
}
