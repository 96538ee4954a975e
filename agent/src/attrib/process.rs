//! What `/proc` says about a process, and which processes serve which ports.
//!
//! Process details are read while the process runs; the kernel programs record pid, uid,
//! cgroup and `comm` when a socket is used, and this fills in the rest. The listener scan is
//! for sockets the kernel programs never saw (opened before the agent started) and for a
//! service inventory.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    io::{self, Read},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use sealwatch_common::net::{IPPROTO_TCP, IPPROTO_UDP};
use tracing::debug;

/// Longest `process.command_line` reported; longer ones are cut and end with [`CUT_MARKER`].
pub const MAX_COMMAND_LINE: usize = 1024;
/// What ends a command line that was cut.
pub const CUT_MARKER: &str = "...";
/// How much of `/proc/PID/cmdline` is read: enough for [`MAX_COMMAND_LINE`] after empty
/// arguments are dropped, without reading megabytes of arguments.
const CMDLINE_READ_LIMIT: u64 = 64 * 1024;

/// TCP_LISTEN, as `/proc/net/tcp` prints the state.
const TCP_LISTEN: u8 = 0x0A;
/// TCP_CLOSE: what an unconnected (bound) UDP socket shows.
const UDP_UNCONNECTED: u8 = 0x07;

/// Why a process could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The process exited (or never was), or `/proc` is not readable.
    #[error("cannot read process {pid} under {root}")]
    Gone {
        pid: u32,
        root: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What `/proc/PID` says about a running process. Fields the agent may not read (another
/// user's `exe` without CAP_SYS_PTRACE, a kernel thread's) are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    /// `comm`: the executable name as the kernel keeps it, cut at 15 bytes.
    pub comm: Option<String>,
    /// The target of `exe`, with the kernel's ` (deleted)` suffix removed.
    pub exe: Option<PathBuf>,
    /// argv joined with spaces, at most [`MAX_COMMAND_LINE`] bytes.
    pub command_line: Option<String>,
    /// The real uid (`Uid:` first field): the one the kernel programs record.
    pub uid: Option<u32>,
    /// The cgroup v2 path (`0::` line), relative to the cgroup2 mount.
    pub cgroup: Option<String>,
}

impl ProcessInfo {
    /// `process.executable.name`: the file name of `exe`, whole, else `comm`.
    pub fn executable_name(&self) -> Option<String> {
        self.exe
            .as_deref()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .or_else(|| self.comm.clone())
    }
}

/// The transports the socket tables list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }

    /// The IP protocol number.
    pub fn proto(self) -> u8 {
        match self {
            Transport::Tcp => IPPROTO_TCP,
            Transport::Udp => IPPROTO_UDP,
        }
    }
}

/// One row of `/proc/net/{tcp,tcp6,udp,udp6}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketEntry {
    pub transport: Transport,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The kernel's TCP state number (UDP sockets use TCP_CLOSE/TCP_ESTABLISHED too).
    pub state: u8,
    pub inode: u64,
}

impl SocketEntry {
    /// A TCP listener, or a bound UDP socket with no remote end: something that serves `local`.
    pub fn serves(&self) -> bool {
        match self.transport {
            Transport::Tcp => self.state == TCP_LISTEN,
            Transport::Udp => self.state == UDP_UNCONNECTED && self.remote.port() == 0,
        }
    }
}

/// The rows of one socket table. Addresses are printed as the kernel's 32-bit words in host
/// order, which `from_str_radix` + `to_ne_bytes` undoes on the host that printed them.
pub fn parse_socket_table(text: &str, transport: Transport) -> Vec<SocketEntry> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let local = socket_addr(cols.nth(1)?)?;
            let remote = socket_addr(cols.next()?)?;
            let state = u8::from_str_radix(cols.next()?, 16).ok()?;
            // tx_queue:rx_queue, tr:tm->when, retrnsmt, uid, timeout, then the inode.
            let inode = cols.nth(5)?.parse().ok()?;
            Some(SocketEntry {
                transport,
                local,
                remote,
                state,
                inode,
            })
        })
        .collect()
}

fn socket_addr(field: &str) -> Option<SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = addr.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// NUL-separated argv as one line, cut at [`MAX_COMMAND_LINE`] bytes (on a character
/// boundary) with [`CUT_MARKER`] at the end. Empty arguments (the padding some programs leave
/// after rewriting their title) are dropped; `None` when nothing is left (kernel threads,
/// zombies).
pub fn command_line(raw: &[u8]) -> Option<String> {
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if args.is_empty() {
        return None;
    }
    let mut line = args.join(" ");
    if line.len() > MAX_COMMAND_LINE {
        let mut cut = MAX_COMMAND_LINE - CUT_MARKER.len();
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str(CUT_MARKER);
    }
    Some(line)
}

/// A port served on this host and the process that holds its socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub transport: Transport,
    /// The bound address (unspecified for all addresses).
    pub addr: IpAddr,
    pub port: u16,
    pub pid: u32,
    /// The executable's file name (else `comm`).
    pub exe: Option<String>,
    /// The inode of the process's network namespace (`/proc/PID/ns/net`): the same port in two
    /// pods is two listeners.
    pub netns: Option<u64>,
}

/// A `/proc` tree: the host's, or a fixture's in tests.
#[derive(Debug, Clone)]
pub struct ProcFs {
    root: PathBuf,
}

impl Default for ProcFs {
    fn default() -> ProcFs {
        ProcFs::new()
    }
}

impl ProcFs {
    pub fn new() -> ProcFs {
        ProcFs::at("/proc")
    }

    pub fn at(root: impl Into<PathBuf>) -> ProcFs {
        ProcFs { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, pid: u32) -> PathBuf {
        self.root.join(pid.to_string())
    }

    /// The pids of running processes (thread-group leaders: `/proc` lists no other threads).
    pub fn pids(&self) -> Vec<u32> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) => {
                debug!(root = %self.root.display(), error = %e, "cannot list processes");
                return Vec::new();
            }
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                // u32's parser takes a leading '+'; /proc has no such names, but be exact.
                name.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
                name.parse().ok()
            })
            .collect()
    }

    /// Everything this module reads about `pid`. Fails only when the process is not there;
    /// what is not readable is left `None`.
    pub fn process(&self, pid: u32) -> Result<ProcessInfo, ProcessError> {
        std::fs::metadata(self.dir(pid)).map_err(|source| ProcessError::Gone {
            pid,
            root: self.root.clone(),
            source,
        })?;
        Ok(ProcessInfo {
            pid,
            comm: self.comm(pid),
            exe: self.exe(pid),
            command_line: self.command_line(pid),
            uid: self.uid(pid),
            cgroup: self.cgroup(pid),
        })
    }

    /// `comm`, without its newline.
    pub fn comm(&self, pid: u32) -> Option<String> {
        let text = std::fs::read_to_string(self.dir(pid).join("comm")).ok()?;
        Some(text.trim_end_matches('\n').to_owned())
    }

    /// The executable's path, without the ` (deleted)` the kernel appends once the file is
    /// replaced (an upgraded package, a rebuilt binary).
    pub fn exe(&self, pid: u32) -> Option<PathBuf> {
        let target = std::fs::read_link(self.dir(pid).join("exe")).ok()?;
        Some(match target.to_str() {
            Some(t) => PathBuf::from(t.strip_suffix(" (deleted)").unwrap_or(t)),
            None => target,
        })
    }

    pub fn command_line(&self, pid: u32) -> Option<String> {
        let file = std::fs::File::open(self.dir(pid).join("cmdline")).ok()?;
        let mut raw = Vec::new();
        file.take(CMDLINE_READ_LIMIT).read_to_end(&mut raw).ok()?;
        command_line(&raw)
    }

    /// The real uid, from `status`.
    pub fn uid(&self, pid: u32) -> Option<u32> {
        let status = std::fs::read_to_string(self.dir(pid).join("status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// The cgroup v2 path of `pid` (`0::` line of `cgroup`).
    pub fn cgroup(&self, pid: u32) -> Option<String> {
        let text = std::fs::read_to_string(self.dir(pid).join("cgroup")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(str::to_owned)
    }

    /// The inode of `pid`'s network namespace.
    pub fn netns(&self, pid: u32) -> Option<u64> {
        std::fs::metadata(self.dir(pid).join("ns/net"))
            .ok()
            .map(|m| m.ino())
    }

    /// Inodes of the sockets `pid` holds open (`fd/N -> socket:[inode]`). Reading another
    /// user's descriptors needs root or CAP_SYS_PTRACE; without, the list is empty.
    pub fn socket_inodes(&self, pid: u32) -> Vec<u64> {
        let Ok(fds) = std::fs::read_dir(self.dir(pid).join("fd")) else {
            return Vec::new();
        };
        fds.flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .filter_map(|target| {
                let t = target.to_str()?;
                t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
            })
            .collect()
    }

    /// The TCP and UDP socket tables (v4 and v6) of `pid`'s network namespace, or of this
    /// process's (`/proc/net`) for `None`.
    pub fn socket_tables(&self, pid: Option<u32>) -> Vec<SocketEntry> {
        let net = match pid {
            Some(pid) => self.dir(pid).join("net"),
            None => self.root.join("net"),
        };
        let mut out = Vec::new();
        for (file, transport) in [
            ("tcp", Transport::Tcp),
            ("tcp6", Transport::Tcp),
            ("udp", Transport::Udp),
            ("udp6", Transport::Udp),
        ] {
            // A host without IPv6 has no tcp6/udp6.
            if let Ok(text) = std::fs::read_to_string(net.join(file)) {
                out.extend(parse_socket_table(&text, transport));
            }
        }
        out
    }

    /// Every port served on this host, in every network namespace a process is in, with the
    /// process holding it. A socket shared by several processes (a pre-forking server's
    /// workers) is listed once, under its lowest pid: usually the parent that opened it.
    pub fn listeners(&self) -> Vec<Listener> {
        let pids = self.pids();
        // Each namespace's tables are read once, through the first process found in it.
        let mut tables_read: HashSet<Option<u64>> = HashSet::new();
        let mut serving: HashMap<u64, SocketEntry> = HashMap::new();
        let mut holders: BTreeMap<u64, (u32, Option<u64>)> = BTreeMap::new();
        for &pid in &pids {
            let sockets = self.socket_inodes(pid);
            if sockets.is_empty() {
                continue;
            }
            let netns = self.netns(pid);
            if tables_read.insert(netns) {
                serving.extend(
                    self.socket_tables(Some(pid))
                        .into_iter()
                        .filter(|e| e.serves() && e.local.port() != 0)
                        .map(|e| (e.inode, e)),
                );
            }
            for inode in sockets {
                let holder = holders.entry(inode).or_insert((pid, netns));
                if pid < holder.0 {
                    *holder = (pid, netns);
                }
            }
        }
        let mut exes: HashMap<u32, Option<String>> = HashMap::new();
        let mut out: Vec<Listener> = holders
            .into_iter()
            .filter_map(|(inode, (pid, netns))| {
                let entry = serving.get(&inode)?;
                let exe = exes
                    .entry(pid)
                    .or_insert_with(|| {
                        self.exe(pid)
                            .as_deref()
                            .and_then(Path::file_name)
                            .map(|n| n.to_string_lossy().into_owned())
                            .or_else(|| self.comm(pid))
                    })
                    .clone();
                Some(Listener {
                    transport: entry.transport,
                    addr: entry.local.ip(),
                    port: entry.local.port(),
                    pid,
                    exe,
                    netns,
                })
            })
            .collect();
        out.sort_by_key(|l| (l.netns, l.transport, l.port, l.addr, l.pid));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrib::testdir::TestDir;

    /// Rows as Linux prints them (x86-64, little-endian words).
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41870 1 0000000000000000 100 0 0 10 0
   1: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000   114        0 23911 1 0000000000000000 100 0 0 10 0
   2: 0100007F:A8C2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 51237 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 19855 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0277 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:D2E4 01 00000000:00000000 00:00000000 00000000     0        0 51240 1 0000000000000000 20 4 29 10 -1
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000   104        0 22110 2 0000000000000000 0
  101: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 22111 2 0000000000000000 0
  102: 0200000A:D431 0100000A:0035 01 00000000:00000000 00:00000000 00000000  1000        0 22112 2 0000000000000000 0
  103: 00000000:0000 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 22113 2 0000000000000000 0
";

    #[test]
    fn socket_tables_are_parsed_with_their_addresses() {
        let tcp = parse_socket_table(TCP, Transport::Tcp);
        assert_eq!(tcp.len(), 3);
        assert_eq!(tcp[0].local, "0.0.0.0:8080".parse().expect("addr"));
        assert!(tcp[0].serves());
        assert_eq!(tcp[1].local, "127.0.0.1:6379".parse().expect("addr"));
        assert_eq!(tcp[1].inode, 23911);
        assert_eq!(tcp[2].remote, "127.0.0.1:8080".parse().expect("addr"));
        assert!(!tcp[2].serves(), "an established connection");

        let tcp6 = parse_socket_table(TCP6, Transport::Tcp);
        assert_eq!(tcp6[0].local, "[::]:22".parse().expect("addr"));
        assert_eq!(tcp6[1].local, "[::1]:631".parse().expect("addr"));
        assert_eq!(
            tcp6[2].local,
            "[::ffff:127.0.0.1]:8080".parse().expect("addr")
        );

        let udp = parse_socket_table(UDP, Transport::Udp);
        let served: Vec<u16> = udp
            .iter()
            .filter(|e| e.serves())
            .map(|e| e.local.port())
            .collect();
        // The unbound socket (port 0) also shows as unconnected: callers drop port 0.
        assert_eq!(served, vec![5353, 53, 0]);
        assert_eq!(
            udp[1].local.ip(),
            "127.0.0.53".parse::<IpAddr>().expect("ip")
        );
        // Headers, blank and short lines are not rows.
        assert!(parse_socket_table("header\n\n   0: 00000000:1F90\n", Transport::Tcp).is_empty());
    }

    #[test]
    fn command_lines_are_joined_and_bounded() {
        assert_eq!(
            command_line(b"curl\0-sS\0http://10.0.0.1/\0").as_deref(),
            Some("curl -sS http://10.0.0.1/")
        );
        // A rewritten title padded with NULs (nginx, postgres).
        assert_eq!(
            command_line(b"nginx: master process /usr/sbin/nginx\0\0\0\0").as_deref(),
            Some("nginx: master process /usr/sbin/nginx")
        );
        assert_eq!(command_line(b""), None);
        assert_eq!(command_line(b"\0\0"), None);
        let long = [b'a'; 3000];
        let line = command_line(&long).expect("line");
        assert_eq!(line.len(), MAX_COMMAND_LINE);
        assert!(line.ends_with(CUT_MARKER));
        // Cut on a character boundary.
        let wide = "é".repeat(1000);
        let line = command_line(wide.as_bytes()).expect("line");
        assert!(line.len() <= MAX_COMMAND_LINE && line.ends_with(CUT_MARKER));
        assert_eq!(
            command_line(&[b'x'; MAX_COMMAND_LINE]).map(|l| l.len()),
            Some(MAX_COMMAND_LINE),
            "exactly the limit is not cut"
        );
    }

    /// A `/proc` with one process, as the kernel lays it out.
    fn fixture(tree: &TestDir, pid: u32, comm: &str, exe: &str, sockets: &[u64]) {
        let dir = format!("{pid}");
        tree.write(&format!("{dir}/comm"), format!("{comm}\n"));
        tree.write(
            &format!("{dir}/cmdline"),
            format!("/usr/sbin/{comm}\0-c\0/etc/{comm}.conf\0"),
        );
        tree.write(
            &format!("{dir}/status"),
            format!("Name:\t{comm}\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t{pid}\nPid:\t{pid}\nPPid:\t1\nUid:\t101\t102\t101\t101\nGid:\t101\t101\t101\t101\n"),
        );
        tree.write(
            &format!("{dir}/cgroup"),
            "0::/system.slice/redis-server.service\n",
        );
        std::os::unix::fs::symlink(exe, tree.path().join(format!("{dir}/exe"))).expect("exe");
        tree.mkdir(&format!("{dir}/fd"));
        tree.write(&format!("{dir}/fd/0"), "");
        for (n, inode) in sockets.iter().enumerate() {
            std::os::unix::fs::symlink(
                format!("socket:[{inode}]"),
                tree.path().join(format!("{dir}/fd/{}", n + 3)),
            )
            .expect("fd");
        }
        tree.write(&format!("{dir}/net/tcp"), TCP);
        tree.write(&format!("{dir}/net/tcp6"), TCP6);
        tree.write(&format!("{dir}/net/udp"), UDP);
        // One network namespace for all: the host's.
        let netns = tree.path().join("netns");
        if !netns.exists() {
            tree.write("netns", "");
        }
        tree.mkdir(&format!("{dir}/ns"));
        std::fs::hard_link(&netns, tree.path().join(format!("{dir}/ns/net"))).expect("netns");
    }

    #[test]
    fn a_process_is_read_from_its_proc_directory() {
        let tree = TestDir::new("proc");
        fixture(
            &tree,
            4242,
            "redis-server",
            "/usr/bin/redis-server (deleted)",
            &[],
        );
        tree.mkdir("self");
        tree.mkdir("acpi");
        let proc = ProcFs::at(tree.path());
        assert_eq!(proc.pids(), vec![4242]);
        let p = proc.process(4242).expect("process");
        assert_eq!(
            p,
            ProcessInfo {
                pid: 4242,
                comm: Some("redis-server".into()),
                exe: Some("/usr/bin/redis-server".into()),
                command_line: Some("/usr/sbin/redis-server -c /etc/redis-server.conf".into()),
                uid: Some(101),
                cgroup: Some("/system.slice/redis-server.service".into()),
            }
        );
        assert_eq!(p.executable_name().as_deref(), Some("redis-server"));
        let err = proc.process(4243).expect_err("no such process");
        assert!(matches!(err, ProcessError::Gone { pid: 4243, .. }), "{err}");
        // A kernel thread: no exe, empty cmdline; the name comes from comm.
        tree.write("2/comm", "kthreadd\n");
        tree.write("2/cmdline", "");
        let k = proc.process(2).expect("kthread");
        assert_eq!((k.exe.as_deref(), k.command_line.as_deref()), (None, None));
        assert_eq!(k.executable_name().as_deref(), Some("kthreadd"));
    }

    #[test]
    fn listeners_are_found_through_socket_inodes() {
        let tree = TestDir::new("listeners");
        // 41870 is 0.0.0.0:8080 (TCP), 22110 *:5353 (UDP), 51237 a connection, 19855 [::]:22.
        fixture(&tree, 300, "web", "/usr/bin/web", &[41870, 51237]);
        // A pre-forked worker sharing the parent's listener, and the parent listed later.
        fixture(&tree, 301, "web", "/usr/bin/web", &[41870]);
        fixture(
            &tree,
            120,
            "avahi-daemon",
            "/usr/sbin/avahi-daemon",
            &[22110, 19855],
        );
        let proc = ProcFs::at(tree.path());
        let found: Vec<(Transport, String, u32, Option<String>)> = proc
            .listeners()
            .into_iter()
            .map(|l| {
                (
                    l.transport,
                    SocketAddr::new(l.addr, l.port).to_string(),
                    l.pid,
                    l.exe,
                )
            })
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    Transport::Tcp,
                    "[::]:22".into(),
                    120,
                    Some("avahi-daemon".into())
                ),
                (
                    Transport::Tcp,
                    "0.0.0.0:8080".into(),
                    300,
                    Some("web".into())
                ),
                (
                    Transport::Udp,
                    "0.0.0.0:5353".into(),
                    120,
                    Some("avahi-daemon".into())
                ),
            ]
        );
    }

    #[test]
    fn this_process_is_read_and_its_listener_found() {
        let proc = ProcFs::new();
        let me = proc.process(std::process::id()).expect("self");
        assert_eq!(me.exe, std::env::current_exe().ok());
        assert!(me.uid.is_some() && me.cgroup.is_some() && me.comm.is_some());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let port = listener.local_addr().expect("addr").port();
        let own = ProcFs::new()
            .listeners()
            .into_iter()
            .find(|l| l.port == port && l.transport == Transport::Tcp)
            .expect("own listener");
        assert_eq!(own.pid, std::process::id());
        assert_eq!(own.addr, IpAddr::from([127, 0, 0, 1]));
    }
}
