//! A network-namespace lab for sealwatch's integration tests and `cargo xtask demo`: a server
//! and a client namespace joined by a veth pair with IPv4 and IPv6 addresses of their own, real
//! servers and clients from Debian packages, and the agent running on the server side.
//!
//! Everything a [`Lab`] creates (namespaces, processes, files) is removed when it is dropped,
//! also when a test panics; [`cleanup_stale`] removes what an interrupted run left behind.

use std::{
    fs,
    io::{BufRead, BufReader, Read},
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use std::os::unix::process::CommandExt as _;

use anyhow::{Context as _, bail};
use serde_json::Value;

/// How long the agent may take to load, verify and attach its programs: 12-13 s on an idle
/// 2-CPU machine, over 20 s while builds compete for the CPUs.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);

/// Every lab namespace starts with this, followed by the owning process id.
const NS_PREFIX: &str = "swlab-";
static LAB_SEQ: AtomicU32 = AtomicU32::new(0);

pub mod kustomize;
pub mod otlp;
pub mod standing;
pub mod tools;

/// True when running as root (namespaces and BPF need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// For privileged tests: returns false (and says so) when they cannot run here. Under CI they
/// must run, so a missing privilege is a failure there, not a skip.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: CI must run privileged tests as root"
    );
    eprintln!("SKIPPED {test}: needs root (network namespaces, BPF)");
    false
}

/// The agent binary under test: `SEALWATCH_BIN`, else the workspace's debug build.
pub fn agent_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SEALWATCH_BIN") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/sealwatch")
}

/// A lab peer built from `tests/peers` (next to the agent binary).
pub fn peer_binary(name: &str) -> PathBuf {
    agent_binary().with_file_name(name)
}

pub struct Lab {
    pub server_ns: String,
    pub client_ns: String,
    /// Veth end in the server namespace (where the agent attaches) and in the client namespace.
    pub server_if: String,
    pub client_if: String,
    pub server_v4: Ipv4Addr,
    pub client_v4: Ipv4Addr,
    pub server_v6: Ipv6Addr,
    pub client_v6: Ipv6Addr,
    /// Scratch directory for certificates, keys and served files.
    pub dir: PathBuf,
    servers: Vec<Child>,
}

impl Lab {
    /// Creates the two namespaces and the veth pair between them.
    pub fn new() -> anyhow::Result<Lab> {
        cleanup_stale();
        let pid = std::process::id();
        let seq = LAB_SEQ.fetch_add(1, Ordering::Relaxed);
        let id = format!("{pid}-{seq}");
        // Interface names are at most 15 bytes: keep them short and unique per lab.
        let tag = (pid % 10_000) * 100 + seq % 100;
        let octet = (seq % 250) as u8 + 1;
        let dir = std::env::temp_dir().join(format!("{NS_PREFIX}{id}"));
        let lab = Lab {
            server_ns: format!("{NS_PREFIX}{id}-srv"),
            client_ns: format!("{NS_PREFIX}{id}-cli"),
            server_if: format!("sws{tag}"),
            client_if: format!("swc{tag}"),
            server_v4: Ipv4Addr::new(10, 231, octet, 1),
            client_v4: Ipv4Addr::new(10, 231, octet, 2),
            server_v6: Ipv6Addr::new(0xfd00, 0x5ea1, 0, u16::from(octet), 0, 0, 0, 1),
            client_v6: Ipv6Addr::new(0xfd00, 0x5ea1, 0, u16::from(octet), 0, 0, 0, 2),
            dir,
            servers: Vec::new(),
        };
        // From here on, Drop cleans up whatever part of the setup succeeded.
        lab.setup()
            .with_context(|| format!("setting up lab {id}"))?;
        Ok(lab)
    }

    fn setup(&self) -> anyhow::Result<()> {
        fs::create_dir_all(&self.dir)?;
        for ns in [&self.server_ns, &self.client_ns] {
            run(&["ip", "netns", "add", ns])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        self.connect()
    }

    /// Creates the veth pair between the namespaces, addressed and up: at setup, or again
    /// after a test deleted it.
    pub fn connect(&self) -> anyhow::Result<()> {
        run(&[
            "ip",
            "link",
            "add",
            &self.server_if,
            "netns",
            &self.server_ns,
            "type",
            "veth",
            "peer",
            "name",
            &self.client_if,
            "netns",
            &self.client_ns,
        ])?;
        let sides = [
            (
                &self.server_ns,
                &self.server_if,
                self.server_v4.to_string(),
                self.server_v6.to_string(),
            ),
            (
                &self.client_ns,
                &self.client_if,
                self.client_v4.to_string(),
                self.client_v6.to_string(),
            ),
        ];
        for (ns, ifname, v4, v6) in sides {
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
            run(&["ip", "-n", ns, "link", "set", ifname, "up"])?;
        }
        Ok(())
    }

    /// `nsenter` prefix for a command in `ns` (keeps /sys and tracefs visible, unlike
    /// `ip netns exec`).
    pub fn in_ns(ns: &str, argv: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{ns}")).args(argv);
        cmd
    }

    /// Starts a long-running server in the server namespace; it is killed when the lab drops.
    pub fn spawn_server(&mut self, argv: &[&str]) -> anyhow::Result<()> {
        let child = Lab::in_ns(&self.server_ns, argv)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {argv:?}"))?;
        self.servers.push(child);
        Ok(())
    }

    /// Waits until something listens on `port` (TCP, or UDP with `udp`) in the server namespace.
    pub fn wait_listening(&self, port: u16, udp: bool) -> anyhow::Result<()> {
        wait_listening(&self.server_ns, port, udp)
    }

    /// Runs a client command in the client namespace, bounded by `timeout`.
    pub fn client(
        &self,
        argv: &[&str],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> anyhow::Result<Output> {
        let secs = format!("{}", timeout.as_secs().max(1));
        let mut full = vec!["timeout", "-k", "1", &secs];
        full.extend_from_slice(argv);
        let mut child = Lab::in_ns(&self.client_ns, &full)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting client {argv:?}"))?;
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            use std::io::Write as _;
            pipe.write_all(data)?;
        }
        Ok(child.wait_with_output()?)
    }

    /// A self-signed certificate and key for TLS servers, and an SSH host key.
    pub fn make_keys(&self) -> anyhow::Result<()> {
        make_keys(&self.dir)
    }

    /// Starts the sshd from Debian's openssh-server on port 22 with the lab's host key.
    pub fn spawn_sshd(&mut self) -> anyhow::Result<()> {
        let argv = sshd_argv(&self.dir, 22)?;
        self.spawn_server(&argv.iter().map(String::as_str).collect::<Vec<_>>())?;
        self.wait_listening(22, false)
    }

    /// The servers every lab scenario uses: python http.server on 8080 (dual stack),
    /// `openssl s_server` on 8443, sshd on 22, and a netcat sink on TCP 9000 for bytes no
    /// detector names. Returns once all of them listen.
    pub fn spawn_standard_servers(&mut self) -> anyhow::Result<()> {
        self.make_keys()?;
        // python binds IPv4 only unless told `::`.
        self.spawn_server(&["python3", "-m", "http.server", "8080", "--bind", "::"])?;
        self.spawn_server(&[
            "openssl", "s_server", "-accept", "8443", "-cert", "tls.crt", "-key", "tls.key",
            "-www", "-quiet",
        ])?;
        self.spawn_sshd()?;
        self.spawn_server(&["nc", "-l", "9000"])?;
        for port in [8080, 8443, 9000] {
            self.wait_listening(port, false)?;
        }
        Ok(())
    }

    /// An ssh client command that completes the handshake and key exchange with the lab's
    /// sshd, then fails authentication (there is no account to log into).
    pub fn ssh_probe(&self) -> Vec<String> {
        [
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            &format!("nobody@{}", self.server_v4),
            "true",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// Starts the agent on the server side of the lab and waits until it has attached.
    pub fn start_agent(&self, args: &[&str]) -> anyhow::Result<Agent> {
        let bin = agent_binary();
        let bin = bin.to_string_lossy();
        let mut argv = vec![
            bin.as_ref(),
            "run",
            "--iface",
            &self.server_if,
            "--output",
            "json",
        ];
        argv.extend_from_slice(args);
        let mut cmd = Lab::in_ns(&self.server_ns, &argv);
        let agent = Agent::spawn(&mut cmd)?;
        agent.wait_attached()?;
        Ok(agent)
    }

    /// The Prometheus text an agent in the server namespace serves on `addr` (empty when it
    /// does not answer).
    pub fn scrape(&self, addr: &str) -> String {
        let out = Lab::in_ns(
            &self.server_ns,
            &["curl", "-sS", "-m", "5", &format!("http://{addr}/metrics")],
        )
        .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

/// The sum of every series of metric `name` in Prometheus text (the value, for one series).
pub fn metric_total(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

/// A self-signed certificate and key for TLS servers (`tls.crt`, `tls.key`) and an SSH host key
/// (`ssh_host_ed25519_key`), written to `dir`.
pub fn make_keys(dir: &Path) -> anyhow::Result<()> {
    let d = |f: &str| dir.join(f).to_string_lossy().into_owned();
    run(&[
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &d("tls.key"),
        "-out",
        &d("tls.crt"),
        "-days",
        "2",
        "-subj",
        "/CN=lab.sealwatch.test",
    ])?;
    run(&[
        "ssh-keygen",
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        &d("ssh_host_ed25519_key"),
    ])?;
    Ok(())
}

/// The sshd of Debian's openssh-server in the foreground on `port`, with the host key that
/// [`make_keys`] wrote to `dir`.
pub fn sshd_argv(dir: &Path, port: u16) -> anyhow::Result<Vec<String>> {
    // sshd refuses to start without its privilege-separation directory.
    fs::create_dir_all("/run/sshd")?;
    let key = dir.join("ssh_host_ed25519_key");
    Ok([
        "/usr/sbin/sshd",
        "-D",
        "-e",
        "-p",
        &port.to_string(),
        "-h",
        &key.to_string_lossy(),
        "-o",
        "PidFile=none",
    ]
    .map(str::to_owned)
    .to_vec())
}

/// Debian 12's PostgreSQL server binaries.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Creates a throwaway PostgreSQL cluster in `data`, owned by the `postgres` user, trusting
/// every client, with TLS on the certificate [`make_keys`] wrote to `keys`; returns the
/// command that serves it on `port` (plain and SSL on the same port, as PostgreSQL does).
pub fn postgres_cluster(data: &Path, keys: &Path, port: u16) -> anyhow::Result<Vec<String>> {
    let d = data.to_string_lossy().into_owned();
    fs::create_dir_all(data)?;
    run(&["chown", "postgres:postgres", &d])?;
    run(&[
        "runuser",
        "-u",
        "postgres",
        "--",
        &format!("{PG_BIN}/initdb"),
        "-D",
        &d,
        "-A",
        "trust",
        "-U",
        "postgres",
    ])?;
    fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhost all all 0.0.0.0/0 trust\nhost all all ::/0 trust\n",
    )?;
    for (from, to) in [("tls.crt", "server.crt"), ("tls.key", "server.key")] {
        use std::os::unix::fs::PermissionsExt as _;
        let path = data.join(to);
        fs::copy(keys.join(from), &path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        run(&["chown", "postgres:postgres", &path.to_string_lossy()])?;
    }
    Ok([
        "runuser",
        "-u",
        "postgres",
        "--",
        &format!("{PG_BIN}/postgres"),
        "-D",
        &d,
        "-c",
        "listen_addresses=*",
        "-c",
        &format!("port={port}"),
        "-c",
        &format!("unix_socket_directories={d}"),
        "-c",
        "ssl=on",
    ]
    .map(str::to_owned)
    .to_vec())
}

/// Waits until something listens on `port` (TCP, or UDP with `udp`) in namespace `ns`.
pub fn wait_listening(ns: &str, port: u16, udp: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if listening(ns, port, udp)? {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on port {port} in {ns}")
}

/// Whether something listens on `port` (TCP, or UDP with `udp`) in namespace `ns`.
pub fn listening(ns: &str, port: u16, udp: bool) -> anyhow::Result<bool> {
    let flag = if udp { "-lun" } else { "-ltn" };
    let out = Lab::in_ns(ns, &["ss", flag]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().any(|l| {
        l.split_whitespace()
            .nth(3)
            .is_some_and(|a| a.ends_with(&format!(":{port}")))
    }))
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.servers {
            kill_group(child);
        }
        for ns in [&self.server_ns, &self.client_ns] {
            remove_ns(ns);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A running agent and the events it printed.
pub struct Agent {
    child: Child,
    events: Arc<(Mutex<Vec<Value>>, Condvar)>,
    reader: Option<thread::JoinHandle<()>>,
    stderr: Option<thread::JoinHandle<String>>,
}

/// What a stopped agent left behind.
pub struct Stopped {
    pub status: ExitStatus,
    pub events: Vec<Value>,
    pub stderr: String,
}

impl Agent {
    /// Starts `cmd` (an agent's `run --output json`) and collects the events it prints.
    pub fn spawn(cmd: &mut Command) -> anyhow::Result<Agent> {
        let mut child = cmd
            // Lab traffic stays in the lab: no instance metadata service is asked.
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting agent {cmd:?}"))?;
        let events = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let stdout = child.stdout.take().context("agent stdout")?;
        let sink = Arc::clone(&events);
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let (lock, cv) = &*sink;
                let value = serde_json::from_str::<Value>(&line).unwrap_or_else(|e| {
                    panic!("agent printed a line that is not JSON ({e}): {line}")
                });
                lock.lock().unwrap_or_else(|p| p.into_inner()).push(value);
                cv.notify_all();
            }
        });
        let stderr = child.stderr.take().context("agent stderr")?;
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut s);
            s
        });
        Ok(Agent {
            child,
            events,
            reader: Some(reader),
            stderr: Some(stderr),
        })
    }

    /// Waits until the agent reports its first attachment.
    pub fn wait_attached(&self) -> anyhow::Result<()> {
        self.wait_for(ATTACH_TIMEOUT, |evs| {
            evs.iter()
                .any(|e| e["event"] == "agent" && e["sealwatch.agent.state"] == "attached")
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A memory figure of the running agent from /proc/PID/status, in KiB: `VmRSS`, `VmHWM`...
    /// (0 once it is gone).
    pub fn memory_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits until `pred` holds for the events so far.
    pub fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&[Value]) -> bool,
    ) -> anyhow::Result<()> {
        let (lock, cv) = &*self.events;
        let deadline = Instant::now() + timeout;
        let mut evs = lock.lock().unwrap_or_else(|p| p.into_inner());
        while !pred(&evs) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "timed out after {timeout:?}; events so far: {}",
                    Value::from(evs.clone())
                );
            }
            evs = cv
                .wait_timeout(evs, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Ok(())
    }

    pub fn events(&self) -> Vec<Value> {
        self.events
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// SIGINT, then wait (bounded) for a clean exit.
    pub fn stop(self) -> anyhow::Result<Stopped> {
        self.signal(libc::SIGINT)
    }

    /// SIGKILL: the agent dies without running any of its exit path, as in a crash.
    pub fn crash(self) -> anyhow::Result<Stopped> {
        self.signal(libc::SIGKILL)
    }

    fn signal(mut self, signal: i32) -> anyhow::Result<Stopped> {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(s) = self.child.try_wait()? {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("agent did not exit within 15 s of signal {signal}");
            }
            thread::sleep(Duration::from_millis(20));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        Ok(Stopped {
            status,
            events: self.events(),
            stderr,
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Removes lab namespaces (and their processes) left by runs whose process is gone, e.g. an
/// interrupted `cargo test`.
pub fn cleanup_stale() {
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let owner = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        let alive = owner.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            remove_ns(&name);
        }
    }
}

/// BPF programs attached to an interface of a lab namespace, by program name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Attached {
    pub tc_ingress: Vec<String>,
    pub tc_egress: Vec<String>,
    pub xdp: bool,
}

/// Asks the kernel what is attached to `iface` in namespace `ns`: TCX links by query (Debian
/// 12's bpftool predates TCX), XDP through `bpftool net show`.
pub fn attached(ns: &str, iface: &str) -> anyhow::Result<Attached> {
    use std::os::fd::AsRawFd as _;

    use aya::programs::{SchedClassifier, TcAttachType};

    let ns_file = fs::File::open(format!("/run/netns/{ns}"))?;
    let iface_owned = iface.to_owned();
    // setns affects only the calling thread: do the query on a thread of its own.
    let tcx = thread::spawn(move || -> anyhow::Result<(Vec<String>, Vec<String>)> {
        // SAFETY: setns on a valid namespace fd, for this thread only.
        if unsafe { libc::setns(ns_file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        let names = |side| -> anyhow::Result<Vec<String>> {
            let (_, progs) = SchedClassifier::query_tcx(&iface_owned, side)?;
            Ok(progs
                .iter()
                .map(|p| p.name_as_str().unwrap_or("?").to_owned())
                .collect())
        };
        Ok((names(TcAttachType::Ingress)?, names(TcAttachType::Egress)?))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("tcx query thread panicked"))??;
    let out = Lab::in_ns(ns, &["bpftool", "-j", "net", "show", "dev", iface]).output()?;
    if !out.status.success() {
        bail!(
            "bpftool net show: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let net: Value = serde_json::from_slice(&out.stdout)?;
    let xdp = net[0]["xdp"].as_array().is_some_and(|a| !a.is_empty());
    Ok(Attached {
        tc_ingress: tcx.0,
        tc_egress: tcx.1,
        xdp,
    })
}

/// Kills every process in namespace `ns`, then deletes it.
pub(crate) fn remove_ns(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: plain kill(2).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stderr(Stdio::null())
        .status();
}

fn kill_group(child: &mut Child) {
    // Servers run in their own process group: take their children (sshd sessions) along.
    // SAFETY: plain kill(2) on a group we created.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
}

/// Runs a setup command; fails with its stderr.
pub fn run(argv: &[&str]) -> anyhow::Result<()> {
    let (prog, args) = argv.split_first().context("empty command")?;
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {prog}"))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A flow event's protocol family, encryption verdict and action, to compare in one assert.
pub fn verdict(e: &Value) -> [&str; 3] {
    [
        "network.protocol.name",
        "sealwatch.encryption",
        "sealwatch.action",
    ]
    .map(|k| e[k].as_str().unwrap_or_default())
}
