//! The standing lab behind `cargo xtask lab up|down|status`: a small network of namespaces with
//! real services that stays up between commands, for trying the agent by hand in monitor and
//! enforce mode.
//!
//! One namespace plays the node (a bridge, like the host side of pod veths on a Kubernetes
//! node) and each service host is a namespace joined to it by a veth pair. The agent runs in
//! the node namespace with `--all-interfaces`, so it sees every host's traffic the way a
//! DaemonSet sees pods. Unlike [`crate::Lab`], nothing is removed when this process exits:
//! the state (keys, data, logs, process ids) lives in a directory until [`down`].

use std::{
    fs,
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    process::Stdio,
};

use std::os::unix::process::CommandExt as _;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::{Lab, listening, make_keys, postgres_cluster, run, sshd_argv, wait_listening};

/// Where one standing lab lives: its namespaces all start with `prefix`, its files are under
/// `state_dir`, and its hosts are `10.<net>.0.x` / `fd00:5ea1:<net>::x`.
#[derive(Debug, Clone)]
pub struct LabSpec {
    pub prefix: String,
    pub state_dir: PathBuf,
    pub net: u8,
}

impl LabSpec {
    /// The lab of `cargo xtask lab`.
    pub fn user() -> LabSpec {
        LabSpec {
            prefix: "swl-".into(),
            state_dir: "/run/sealwatch-lab".into(),
            net: 232,
        }
    }

    pub fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    pub fn v4(&self, host: &Host) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net, 0, host.octet)
    }

    /// The IPv6 address whose groups read like the IPv4 one: 10.232.0.11 is fd00:5ea1:232::11.
    pub fn v6(&self, host: &Host) -> Ipv6Addr {
        Ipv6Addr::new(
            0xfd00,
            0x5ea1,
            decimal_digits(self.net),
            0,
            0,
            0,
            0,
            decimal_digits(host.octet),
        )
    }

    fn state_file(&self) -> PathBuf {
        self.state_dir.join("lab.json")
    }

    pub fn policy_file(&self) -> PathBuf {
        self.state_dir.join("policy.yaml")
    }

    /// Every namespace of this lab that exists now.
    pub fn namespaces(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir("/run/netns") else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&self.prefix))
            .collect();
        names.sort();
        names
    }
}

/// `n` written in decimal and read as hex (232 becomes 0x232), so addresses are easy to read.
fn decimal_digits(n: u8) -> u16 {
    n.to_string()
        .bytes()
        .fold(0, |acc, d| acc * 16 + u16::from(d - b'0'))
}

/// A namespace of the lab: the node (bridge) or a host with services.
#[derive(Debug)]
pub struct Host {
    pub name: &'static str,
    pub octet: u8,
}

/// The namespace that holds the bridge and the host ends of every veth.
pub const NODE: Host = Host {
    name: "node",
    octet: 1,
};

/// The service hosts and the client, in the order they are brought up.
pub const HOSTS: [Host; 5] = [
    Host {
        name: "web",
        octet: 10,
    },
    Host {
        name: "cache",
        octet: 11,
    },
    Host {
        name: "db",
        octet: 12,
    },
    Host {
        name: "ssh",
        octet: 13,
    },
    Host {
        name: "client",
        octet: 100,
    },
];

/// A server of the lab and the protocol it speaks.
#[derive(Debug)]
pub struct Service {
    pub host: &'static str,
    pub port: u16,
    pub name: &'static str,
    /// What the agent should call it: plaintext, encrypted.
    pub expect: &'static str,
    pub server: &'static str,
}

pub const SERVICES: [Service; 7] = [
    Service {
        host: "web",
        port: 80,
        name: "http",
        expect: "plaintext",
        server: "python3 -m http.server",
    },
    Service {
        host: "web",
        port: 443,
        name: "https",
        expect: "encrypted",
        server: "openssl s_server (TLS 1.3)",
    },
    Service {
        host: "web",
        port: 8443,
        name: "pq-tls",
        expect: "encrypted",
        server: "pq-tls server (rustls, X25519MLKEM768)",
    },
    Service {
        host: "cache",
        port: 6379,
        name: "redis",
        expect: "plaintext",
        server: "redis-server",
    },
    Service {
        host: "cache",
        port: 6380,
        name: "redis-tls",
        expect: "encrypted",
        server: "redis-server --tls-port",
    },
    Service {
        host: "db",
        port: 5432,
        name: "postgresql",
        expect: "plaintext with sslmode=disable, encrypted with sslmode=require",
        server: "postgres (ssl=on)",
    },
    Service {
        host: "ssh",
        port: 22,
        name: "ssh",
        expect: "encrypted",
        server: "sshd",
    },
];

/// What `up` needs from the build.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub agent: PathBuf,
    pub pq_tls: PathBuf,
}

/// The policy `status` suggests for enforce mode: the lab's network is east-west, SSH and the
/// TLS services pass, plaintext HTTP, Redis and PostgreSQL without SSL are dropped.
fn lab_policy(spec: &LabSpec) -> String {
    format!(
        "# The standing lab's policy (cargo xtask lab): every lab host is inside, so all of its
# traffic is east-west; plaintext is dropped in enforce mode, TLS 1.2+ and SSH pass.
mode: monitor
internal_cidrs: [10.{net}.0.0/16, fd00:5ea1:{net}::/48]
require:
  min_tls_version: \"1.2\"
  unknown: alert
exclusions: []
",
        net = spec.net
    )
}

/// Builds the lab and starts every service; fails (leaving what was made for [`down`]) when
/// one does not come up. A lab that is already up is taken down first.
pub fn up(spec: &LabSpec, bins: &Binaries) -> anyhow::Result<()> {
    if !spec.namespaces().is_empty() || spec.state_dir.exists() {
        down(spec)?;
    }
    for bin in [&bins.agent, &bins.pq_tls] {
        if !bin.exists() {
            bail!("{} is missing: build it first", bin.display());
        }
    }
    fs::create_dir_all(spec.state_dir.join("logs"))?;
    // postgres (its own user) must reach its data directory below.
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(&spec.state_dir, fs::Permissions::from_mode(0o755))?;
    }
    fs::write(spec.policy_file(), lab_policy(spec))?;
    network(spec).context("creating the lab's namespaces")?;
    make_keys(&spec.state_dir)?;

    let mut pids = serde_json::Map::new();
    let dir = &spec.state_dir;
    let pq = bins.pq_tls.to_string_lossy().into_owned();
    let servers: Vec<(&str, &str, Vec<String>)> = vec![
        (
            "web",
            "http",
            argv(&["python3", "-m", "http.server", "80", "--bind", "::"]),
        ),
        (
            "web",
            "https",
            argv(&[
                "openssl", "s_server", "-accept", "443", "-cert", "tls.crt", "-key", "tls.key",
                "-www", "-quiet",
            ]),
        ),
        (
            "web",
            "pq-tls",
            argv(&[&pq, "server", "8443", "tls.crt", "tls.key"]),
        ),
        (
            "cache",
            "redis",
            argv(&[
                "redis-server",
                "--port",
                "6379",
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
            ]),
        ),
        (
            "db",
            "postgresql",
            postgres_cluster(&dir.join("pgdata"), dir, 5432)?,
        ),
        ("ssh", "ssh", sshd_argv(dir, 22)?),
    ];
    for (host, name, argv) in servers {
        let pid = spawn_detached(spec, host, name, &argv)?;
        pids.insert(name.to_owned(), json!({ "host": host, "pid": pid }));
    }
    for s in &SERVICES {
        wait_listening(&spec.ns(s.host), s.port, false)
            .with_context(|| format!("{} on {}:{}", s.name, s.host, s.port))?;
    }
    let state = json!({
        "agent": bins.agent,
        "pq_tls": bins.pq_tls,
        "namespaces": spec.namespaces(),
        "servers": pids,
    });
    fs::write(spec.state_file(), serde_json::to_vec_pretty(&state)?)?;
    Ok(())
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| (*s).to_owned()).collect()
}

/// The node namespace with a bridge, and one namespace per host on a veth into it.
fn network(spec: &LabSpec) -> anyhow::Result<()> {
    let node = spec.ns(NODE.name);
    run(&["ip", "netns", "add", &node])?;
    run(&["ip", "-n", &node, "link", "set", "lo", "up"])?;
    run(&["ip", "-n", &node, "link", "add", "br0", "type", "bridge"])?;
    address(&node, "br0", spec.v4(&NODE), spec.v6(&NODE))?;
    for host in &HOSTS {
        let ns = spec.ns(host.name);
        run(&["ip", "netns", "add", &ns])?;
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        // Made in the node namespace, so the names only need to be unique there and in the
        // host's own namespace.
        let veth = format!("veth-{}", host.name);
        run(&[
            "ip", "-n", &node, "link", "add", &veth, "type", "veth", "peer", "name", "eth0",
            "netns", &ns,
        ])?;
        run(&["ip", "-n", &node, "link", "set", &veth, "master", "br0"])?;
        run(&["ip", "-n", &node, "link", "set", &veth, "up"])?;
        address(&ns, "eth0", spec.v4(host), spec.v6(host))?;
    }
    Ok(())
}

fn address(ns: &str, ifname: &str, v4: Ipv4Addr, v6: Ipv6Addr) -> anyhow::Result<()> {
    run(&[
        "ip",
        "-n",
        ns,
        "addr",
        "add",
        &format!("{v4}/24"),
        "dev",
        ifname,
    ])?;
    run(&[
        "ip",
        "-n",
        ns,
        "addr",
        "add",
        &format!("{v6}/64"),
        "dev",
        ifname,
        "nodad",
    ])?;
    run(&["ip", "-n", ns, "link", "set", ifname, "up"])
}

/// Starts a server in `host`'s namespace, in its own session so that it outlives this
/// process; its output goes to `logs/NAME.log` in the state directory.
fn spawn_detached(spec: &LabSpec, host: &str, name: &str, argv: &[String]) -> anyhow::Result<u32> {
    let log = fs::File::create(spec.state_dir.join("logs").join(format!("{name}.log")))?;
    let args: Vec<&str> = argv.iter().map(String::as_str).collect();
    let child = Lab::in_ns(&spec.ns(host), &args)
        .current_dir(&spec.state_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {name}: {argv:?}"))?;
    Ok(child.id())
}

/// Stops every process of the lab and removes its namespaces and state directory. Works from
/// what exists (namespaces by prefix), so it also cleans up after a failed `up`.
pub fn down(spec: &LabSpec) -> anyhow::Result<()> {
    // The servers' process groups first (runuser's postgres children included), then
    // anything else still running in a lab namespace (an agent started by hand).
    if let Ok(text) = fs::read_to_string(spec.state_file())
        && let Ok(state) = serde_json::from_str::<Value>(&text)
        && let Some(servers) = state["servers"].as_object()
    {
        for server in servers.values() {
            if let Some(pid) = server["pid"].as_i64().and_then(|p| i32::try_from(p).ok()) {
                // SAFETY: plain kill(2) on a process group the lab created.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
        }
    }
    for ns in spec.namespaces() {
        crate::remove_ns(&ns);
    }
    let left = spec.namespaces();
    if !left.is_empty() {
        bail!("could not remove namespaces {left:?}");
    }
    if spec.state_dir.exists() {
        fs::remove_dir_all(&spec.state_dir)
            .with_context(|| format!("removing {}", spec.state_dir.display()))?;
    }
    Ok(())
}

/// One service as `status` found it.
#[derive(Debug)]
pub struct ServiceStatus {
    pub service: &'static Service,
    pub address: Ipv4Addr,
    pub listening: bool,
}

/// What `status` prints, and what it found.
#[derive(Debug)]
pub struct Status {
    pub namespaces: Vec<String>,
    pub services: Vec<ServiceStatus>,
    pub text: String,
}

/// Lists the lab's namespaces and services and prints the commands to try it.
pub fn status(spec: &LabSpec) -> anyhow::Result<Status> {
    let namespaces = spec.namespaces();
    let state: Value = fs::read_to_string(spec.state_file())
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let mut text = String::new();
    if namespaces.is_empty() {
        text.push_str("sealwatch lab: down (`cargo xtask lab up` to start it)\n");
        return Ok(Status {
            namespaces,
            services: Vec::new(),
            text,
        });
    }
    let node = spec.ns(NODE.name);
    text.push_str(&format!(
        "sealwatch lab: state in {}\n\nnamespaces:\n",
        spec.state_dir.display()
    ));
    for ns in &namespaces {
        let host = ns.strip_prefix(&spec.prefix).unwrap_or(ns);
        let addr = HOSTS
            .iter()
            .chain([&NODE])
            .find(|h| h.name == host)
            .map(|h| format!("{} {}", spec.v4(h), spec.v6(h)))
            .unwrap_or_default();
        let role = if *ns == node {
            "bridge br0; run the agent here"
        } else if host == "client" {
            "run clients here"
        } else {
            "services"
        };
        text.push_str(&format!("  {ns:<14} {addr:<36} {role}\n"));
    }
    text.push_str("\nservices:\n");
    let mut services = Vec::new();
    for s in &SERVICES {
        let host = HOSTS
            .iter()
            .find(|h| h.name == s.host)
            .context("service on an unknown host")?;
        let address = spec.v4(host);
        let up = listening(&spec.ns(s.host), s.port, false).unwrap_or(false);
        text.push_str(&format!(
            "  {:<11} {:<21} {:<5} {:<40} {}\n",
            s.name,
            format!("{address}:{}", s.port),
            if up { "up" } else { "DOWN" },
            s.server,
            s.expect
        ));
        services.push(ServiceStatus {
            service: s,
            address,
            listening: up,
        });
    }
    let agent = state["agent"].as_str().unwrap_or("sealwatch");
    let pq = state["pq_tls"].as_str().unwrap_or("pq-tls");
    let client = format!("nsenter --net=/run/netns/{}", spec.ns("client"));
    let ip = |h: &str| {
        HOSTS
            .iter()
            .find(|x| x.name == h)
            .map(|x| spec.v4(x).to_string())
            .unwrap_or_default()
    };
    let (web, cache, db, ssh) = (ip("web"), ip("cache"), ip("db"), ip("ssh"));
    text.push_str(&format!(
        "
watch every host from the node namespace (monitor: reports, never drops):
  nsenter --net=/run/netns/{node} {agent} run --all-interfaces

enforce (plaintext east-west is dropped; the policy is read again when you edit it; a
blocked client waits for its own timeout: the agent resets only sockets of its own namespace):
  nsenter --net=/run/netns/{node} {agent} run --all-interfaces --mode enforce --policy {policy}

clients, from another terminal:
  {client} curl -s http://{web}/ -o /dev/null -w '%{{http_code}}\\n'
  {client} curl -sk https://{web}/ -o /dev/null -w '%{{http_code}}\\n'
  {client} {pq} client {web} 8443 web.lab
  {client} redis-cli -h {cache} PING
  {client} redis-cli -h {cache} -p 6380 --tls --insecure PING
  {client} psql 'host={db} user=postgres sslmode=disable' -c 'select 1'
  {client} psql 'host={db} user=postgres sslmode=require' -c 'select 1'
  {client} ssh -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null nobody@{ssh}

logs of the servers: {logs}
take it down: cargo xtask lab down
",
        policy = spec.policy_file().display(),
        logs = spec.state_dir.join("logs").display(),
    ));
    Ok(Status {
        namespaces,
        services,
        text,
    })
}

/// Runs a client in the lab's client namespace, bounded by `secs`.
pub fn client(spec: &LabSpec, argv: &[&str], secs: u32) -> anyhow::Result<std::process::Output> {
    let secs = secs.to_string();
    let mut full = vec!["timeout", "-k", "1", &secs];
    full.extend_from_slice(argv);
    Lab::in_ns(&spec.ns("client"), &full)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {argv:?}"))
}
