//! Who is behind a flow's ends, from what the kernel recorded when it was true (see
//! `sealwatch_common::owner`): the owners of established TCP connections by flow key, the
//! socket a flow's first departing packet left, and who bound a server port.

use std::{collections::HashSet, net::IpAddr, time::Instant};

use aya::maps::{HashMap, MapData, MapError};
use sealwatch_common::{
    flow::{CLIENT_UNKNOWN, FlowKey, FlowState},
    owner::{
        EXEC_ARGS_MAP, ExecArgs, FLOW_OWNERS_MAP, FlowOwners, LISTENERS_MAP, ListenKey, Owner,
        SOCK_OWNERS_MAP,
    },
};
use tracing::debug;

use crate::{
    attrib::{
        cgroups::{CgroupIndex, cgroup_id, cgroup2_mount},
        pods::{PodSnapshot, PodView},
        process::{ProcFs, SocketEntry, Transport},
        users::Users,
    },
    event::{Attribution, Endpoints, Party},
    programs::LoadError,
};

/// How long the set of this namespace's addresses is trusted before it is read again.
const LOCAL_ADDRS_TTL: std::time::Duration = std::time::Duration::from_secs(5);

pub struct OwnerMaps {
    exec_args: HashMap<MapData, u32, ExecArgs>,
    sockets: HashMap<MapData, u64, Owner>,
    listeners: HashMap<MapData, ListenKey, Owner>,
    flows: HashMap<MapData, FlowKey, FlowOwners>,
    /// This network namespace's cookie, to find who bound a port here.
    netns: Option<u64>,
    local: LocalAddrs,
}

impl OwnerMaps {
    pub fn take(programs: &mut crate::programs::Programs) -> Result<OwnerMaps, LoadError> {
        Ok(OwnerMaps {
            exec_args: programs.take_hash_map(EXEC_ARGS_MAP)?,
            sockets: programs.take_hash_map(SOCK_OWNERS_MAP)?,
            listeners: programs.take_hash_map(LISTENERS_MAP)?,
            flows: programs.take_hash_map(FLOW_OWNERS_MAP)?,
            netns: netns_cookie(),
            local: LocalAddrs::default(),
        })
    }

    /// The owners of `key`'s two ends (by side), as far as the kernel knows them. `state` is
    /// the flow's table entry, when it is still there.
    pub fn ends(&mut self, key: &FlowKey, state: Option<&FlowState>) -> [Owner; 2] {
        let mut ends = match self.flows.get(key, 0) {
            Ok(o) => o.side,
            Err(MapError::KeyNotFound) => [Owner::default(); 2],
            Err(e) => {
                debug!(error = %e, "flow owners lookup");
                [Owner::default(); 2]
            }
        };
        let Some(state) = state else {
            return ends;
        };
        // The socket that sent the flow's first packet (UDP, and TCP the agent did not see
        // established).
        let side = usize::from(state.local_side & 1);
        if !ends[side].known()
            && state.local_cookie != 0
            && let Ok(o) = self.sockets.get(&state.local_cookie, 0)
        {
            ends[side] = o;
        }
        // A server in this namespace: whoever bound its port, when its address is ours.
        if state.client_side != CLIENT_UNKNOWN
            && let Some(netns) = self.netns
        {
            let server = usize::from(1 - (state.client_side & 1));
            let (addr, port) = key.endpoint(server as u8);
            let addr = Endpoints::address(key.family, addr);
            if !ends[server].known()
                && self.local.contains(addr)
                && let Ok(o) = self
                    .listeners
                    .get(&ListenKey::new(netns, key.proto, port), 0)
            {
                ends[server] = o;
            }
        }
        ends
    }

    /// Sockets that existed before the agent started were never seen by the kernel programs:
    /// files them now, from /proc, without replacing what the programs recorded meanwhile.
    /// Each socket is duplicated from its process (`pidfd_getfd`) to ask the kernel its cookie,
    /// namespace and port, so a pre-existing server's accepted connections are attributed
    /// exactly like a new one's. Returns how many sockets were filed.
    pub fn seed_from_proc(&mut self) -> usize {
        let mut filed = 0;
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return 0;
        };
        let cgroup_root = cgroup2_mount();
        for entry in procs.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == std::process::id() {
                continue;
            }
            filed += self.seed_process(pid, cgroup_root.as_deref());
        }
        filed
    }

    fn seed_process(&mut self, pid: u32, cgroup_root: Option<&std::path::Path>) -> usize {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            return 0;
        };
        let sockets: Vec<i32> = fds
            .flatten()
            .filter(|e| {
                std::fs::read_link(e.path())
                    .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
            })
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        if sockets.is_empty() {
            return 0;
        }
        let Some(owner) = proc_owner(pid, cgroup_root) else {
            return 0;
        };
        let Some(pidfd) = pidfd_open(pid) else {
            return 0;
        };
        let mut filed = 0;
        for fd in sockets {
            let Some(sock) = pidfd_getfd(&pidfd, fd) else {
                continue;
            };
            let Some(info) = socket_info(&sock) else {
                continue;
            };
            let owner = Owner {
                netns: info.netns,
                ..owner
            };
            const NOEXIST: u64 = 1;
            if self.sockets.insert(info.cookie, owner, NOEXIST).is_ok() {
                filed += 1;
            }
            if info.serving {
                let key = ListenKey::new(info.netns, info.proto, info.port);
                let _ = self.listeners.insert(key, owner, NOEXIST);
            }
        }
        filed
    }

    /// Bound ports not listed before, with their owners.
    fn new_listeners(&mut self, seen: &mut HashSet<ListenKey>) -> Vec<(ListenKey, Owner)> {
        let mut fresh = Vec::new();
        for key in self.listeners.keys().flatten() {
            if seen.insert(key)
                && let Ok(owner) = self.listeners.get(&key, 0)
            {
                fresh.push((key, owner));
            }
        }
        fresh
    }

    /// Forgets a flow that ended: its key may be reused by an unrelated connection.
    pub fn forget(&mut self, key: &FlowKey) {
        let _ = self.flows.remove(key);
    }
}

/// Live attribution: the owner maps, and what /proc says about their processes.
pub struct Attributor {
    maps: OwnerMaps,
    /// Command lines by process (pid and comm: a reused pid is another process).
    command_lines: std::collections::HashMap<(u32, [u8; 16]), Option<String>>,
    /// Services already listed.
    services: HashSet<ListenKey>,
    users: Users,
    cgroups: CgroupIndex,
    pods: PodView,
}

pub use crate::attrib::process::MAX_COMMAND_LINE;
/// Command lines remembered; the cache starts over when full.
const MAX_PROCESSES: usize = 4096;

impl Attributor {
    pub fn new(maps: OwnerMaps, pods: PodView) -> Attributor {
        Attributor {
            maps,
            command_lines: std::collections::HashMap::new(),
            services: HashSet::new(),
            users: Users::new(),
            cgroups: CgroupIndex::new(),
            pods,
        }
    }

    /// `service` events for ports bound since the last call (all of them, the first time).
    fn list_services(&mut self, time: &str, out: &mut Vec<crate::event::Event>) -> bool {
        let local = self.maps.netns;
        if !self.pods.settled() {
            // Listed once: wait until they can carry their pods.
            return false;
        }
        let mut tables = SocketTables::default();
        let pods = self.pods.snapshot();
        for (key, owner) in self.maps.new_listeners(&mut self.services) {
            if owner.tgid == std::process::id() || !tables.serves(owner.tgid, key.proto, key.port) {
                // A client that bound its port (curl --local-port), an ephemeral UDP socket:
                // not a service.
                continue;
            }
            let transport = match key.proto {
                sealwatch_common::net::IPPROTO_TCP => "tcp",
                sealwatch_common::net::IPPROTO_UDP => "udp",
                _ => continue,
            };
            out.push(crate::event::Event::Service(crate::event::ServiceEvent {
                event: "service",
                time: time.to_owned(),
                transport,
                port: key.port,
                netns: key.netns,
                local_netns: Some(key.netns) == local,
                owner: Attribution {
                    local_side: Some("server"),
                    local: self.describe(&owner, &pods),
                    peer: Party::default(),
                },
            }));
        }
        true
    }

    fn describe(&mut self, o: &Owner, pods: &PodSnapshot) -> Party {
        if !o.known() {
            return Party::default();
        }
        let container = self.cgroups.container(o.cgroup_id);
        let pod = container.as_ref().and_then(|c| {
            c.pod_uid
                .as_deref()
                .and_then(|uid| pods.by_uid(uid))
                .or_else(|| pods.by_container(&c.id))
        });
        if container.as_ref().is_some_and(|c| c.pod_uid.is_some()) && pod.is_none() {
            self.pods.missed();
        }
        if self.command_lines.len() >= MAX_PROCESSES {
            self.command_lines.clear();
        }
        let command_line = self
            .command_lines
            .entry((o.tgid, o.comm))
            .or_insert_with(|| command_line_of(o, &self.maps.exec_args))
            .clone();
        Party {
            pid: Some(o.tgid),
            executable: Some(comm(o)),
            command_line,
            owner: Some(self.users.name(o.uid)),
            container_id: container.map(|c| c.id),
            pod: pod.map(|p| p.name.clone()),
            namespace: pod.map(|p| p.namespace.clone()),
        }
    }
}

impl crate::flows::Attribute for Attributor {
    fn attribute(
        &mut self,
        key: &FlowKey,
        client_side: u8,
        state: Option<&FlowState>,
    ) -> Attribution {
        let ends = self.maps.ends(key, state);
        let pods = self.pods.snapshot();
        let client = Endpoints::client_index(client_side);
        let [c, s] = [client, client ^ 1].map(usize::from);
        let (local, peer, side) = if ends[c].known() || !ends[s].known() {
            (c, s, "client")
        } else {
            (s, c, "server")
        };
        let mut local_party = self.describe(&ends[local], &pods);
        let mut peer_party = self.describe(&ends[peer], &pods);
        // Ends without a known socket (UDP of a pod, a connection older than the agent) may
        // still be a pod of this node, by address.
        for (party, side) in [(&mut local_party, local), (&mut peer_party, peer)] {
            if party.pod.is_none() {
                let (addr, _) = key.endpoint(side as u8);
                if let Some(pod) = pods.by_ip(Endpoints::address(key.family, addr)) {
                    party.pod = Some(pod.name.clone());
                    party.namespace = Some(pod.namespace.clone());
                }
            }
        }
        if local_party.is_empty() && peer_party.is_empty() {
            return Attribution::default();
        }
        if local_party.is_empty() {
            // Only the other end is known here: it is the local one.
            return Attribution {
                local_side: Some(if side == "client" { "server" } else { "client" }),
                local: peer_party,
                peer: local_party,
            };
        }
        Attribution {
            local_side: Some(side),
            local: local_party,
            peer: peer_party,
        }
    }

    fn forget(&mut self, key: &FlowKey) {
        self.maps.forget(key);
    }

    fn services(&mut self, time: &str, out: &mut Vec<crate::event::Event>) -> bool {
        self.list_services(time, out)
    }
}

/// The command line of `o`'s process: from /proc while it runs (same pid, same comm), else
/// as the kernel recorded it at its last execve (when its first argument names the same
/// executable).
fn command_line_of(o: &Owner, exec_args: &HashMap<MapData, u32, ExecArgs>) -> Option<String> {
    let proc = ProcFs::new();
    if proc.comm(o.tgid).is_some_and(|c| c == comm(o))
        && let Some(line) = proc.command_line(o.tgid)
    {
        return Some(line);
    }
    exec_args
        .get(&o.tgid, 0)
        .ok()
        .filter(|a| names_comm(a.args(), &comm(o)))
        .and_then(|a| crate::attrib::process::command_line(a.args()))
}

/// Whether the first argument's file name is the executable `comm` names (cut at 15 bytes).
fn names_comm(args: &[u8], comm: &str) -> bool {
    let first = args.split(|&b| b == 0).next().unwrap_or_default();
    let name = first.rsplit(|&b| b == b'/').next().unwrap_or_default();
    !comm.is_empty() && name.get(..comm.len().min(name.len())) == Some(comm.as_bytes())
}

/// The addresses of this network namespace's interfaces.
#[derive(Default)]
struct LocalAddrs {
    addrs: HashSet<IpAddr>,
    read_at: Option<Instant>,
}

impl LocalAddrs {
    fn contains(&mut self, addr: IpAddr) -> bool {
        let age = self.read_at.map(|t| t.elapsed());
        let stale = age.is_none_or(|a| a > LOCAL_ADDRS_TTL);
        // A miss reads again too (an address added a moment ago), at most once per second.
        let missed = !self.addrs.contains(&addr)
            && (age.is_none_or(|a| a >= std::time::Duration::from_secs(1))
                || self.addrs.is_empty());
        if stale || missed {
            self.addrs = interface_addrs();
            self.read_at = Some(Instant::now());
        }
        self.addrs.contains(&addr)
    }
}

/// getifaddrs(3): every address of every interface in this namespace.
fn interface_addrs() -> HashSet<IpAddr> {
    let mut out = HashSet::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: the family says which sockaddr this is.
            match i32::from(unsafe { (*ifa.ifa_addr).sa_family }) {
                libc::AF_INET => {
                    // SAFETY: as above.
                    let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    out.insert(IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes()));
                }
                libc::AF_INET6 => {
                    // SAFETY: as above.
                    let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                    out.insert(IpAddr::from(sin6.sin6_addr.s6_addr));
                }
                _ => {}
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: the list came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// Socket options libc does not name: a socket's cookie and its network namespace's.
const SO_COOKIE: libc::c_int = 57;
const SO_NETNS_COOKIE: libc::c_int = 71;

/// Lowest port of the default ephemeral range: UDP sockets bound at or above it are taken for
/// clients.
const EPHEMERAL_PORTS: u16 = 32768;

/// The socket tables of the namespaces processes are in (`/proc/PID/net/...`), read once per
/// scan and namespace.
#[derive(Default)]
struct SocketTables {
    /// netns inode -> (proto, port) served there.
    by_netns: std::collections::HashMap<u64, HashSet<(u8, u16)>>,
}

impl SocketTables {
    /// Whether `pid`'s namespace has a TCP listener, or an unconnected UDP socket on a
    /// non-ephemeral port, on `port`.
    fn serves(&mut self, pid: u32, proto: u8, port: u16) -> bool {
        let Some(ns) = ProcFs::new().netns(pid) else {
            return false;
        };
        let served = self.by_netns.entry(ns).or_insert_with(|| served_ports(pid));
        served.contains(&(proto, port))
    }
}

fn served_ports(pid: u32) -> HashSet<(u8, u16)> {
    ProcFs::new()
        .socket_tables(Some(pid))
        .iter()
        .filter(|e| is_service(e))
        .map(|e| (e.transport.proto(), e.local.port()))
        .collect()
}

/// A TCP listener, or a UDP socket with no remote end below the ephemeral range.
fn is_service(e: &SocketEntry) -> bool {
    e.serves() && (e.transport == Transport::Tcp || e.local.port() < EPHEMERAL_PORTS)
}

/// What the kernel programs would have recorded for a process: pid, uid, cgroup, comm.
fn proc_owner(pid: u32, cgroup_root: Option<&std::path::Path>) -> Option<Owner> {
    let proc = ProcFs::new();
    let uid = proc.uid(pid)?;
    let name = proc.comm(pid)?;
    let mut comm = [0u8; 16];
    let name = name.as_bytes();
    let n = name.len().min(15);
    comm[..n].copy_from_slice(&name[..n]);
    Some(Owner {
        tgid: pid,
        uid,
        cgroup_id: cgroup_root
            .zip(proc.cgroup(pid))
            .and_then(|(root, path)| cgroup_id(root, &path))
            .unwrap_or(0),
        netns: 0,
        comm,
    })
}

fn pidfd_open(pid: u32) -> Option<std::os::fd::OwnedFd> {
    // SAFETY: pidfd_open(2) with no flags; the result is a new descriptor we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    // SAFETY: a fresh descriptor.
    (fd >= 0).then(|| unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) })
}

fn pidfd_getfd(pidfd: &std::os::fd::OwnedFd, fd: i32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_getfd(2) duplicates `fd` of the process into ours; we own the result.
    let dup = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    // SAFETY: a fresh descriptor.
    (dup >= 0).then(|| unsafe { std::os::fd::FromRawFd::from_raw_fd(dup as i32) })
}

/// An inet socket as the kernel programs key it.
struct SocketInfo {
    cookie: u64,
    netns: u64,
    proto: u8,
    port: u16,
    /// A TCP listener or a bound, unconnected UDP socket: it serves a port.
    serving: bool,
}

fn socket_info(sock: &std::os::fd::OwnedFd) -> Option<SocketInfo> {
    use std::os::fd::AsRawFd;
    let fd = sock.as_raw_fd();
    let domain = getsockopt::<libc::c_int>(fd, libc::SO_DOMAIN)?;
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        return None;
    }
    let proto = getsockopt::<libc::c_int>(fd, libc::SO_PROTOCOL)?;
    let proto = u8::try_from(proto).ok()?;
    // SAFETY: a zeroed sockaddr_storage is valid; getsockname fills at most `len` bytes.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: as above.
    if unsafe {
        libc::getsockname(
            fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    } != 0
    {
        return None;
    }
    // sin_port and sin6_port sit at the same offset, in network order.
    // SAFETY: the storage holds a sockaddr_in or sockaddr_in6, both with the port first.
    let port = u16::from_be(unsafe {
        (*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()).sin_port
    });
    let listening = getsockopt::<libc::c_int>(fd, libc::SO_ACCEPTCONN).unwrap_or(0) != 0;
    let serving =
        listening || (i32::from(proto) == libc::IPPROTO_UDP && port != 0 && !connected(fd));
    Some(SocketInfo {
        cookie: getsockopt::<u64>(fd, SO_COOKIE)?,
        netns: getsockopt::<u64>(fd, SO_NETNS_COOKIE).unwrap_or(0),
        proto,
        port,
        serving,
    })
}

fn connected(fd: i32) -> bool {
    // SAFETY: as in `socket_info`.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: as above.
    unsafe {
        libc::getpeername(
            fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        ) == 0
    }
}

fn getsockopt<T: Copy + Default>(fd: i32, opt: libc::c_int) -> Option<T> {
    let mut value = T::default();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is writable for `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&mut value as *mut T).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(value)
}

/// SO_NETNS_COOKIE of any socket here: the cookie the kernel programs see for this namespace.
fn netns_cookie() -> Option<u64> {
    // An unbound socket: binding one would list the agent itself as serving a port.
    // SAFETY: plain socket(2); the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    getsockopt(std::os::fd::AsRawFd::as_raw_fd(&sock), SO_NETNS_COOKIE)
}

/// `comm` as text.
pub fn comm(o: &Owner) -> String {
    let end = o.comm.iter().position(|&b| b == 0).unwrap_or(o.comm.len());
    String::from_utf8_lossy(&o.comm[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrib::process::parse_socket_table;

    #[test]
    fn services_are_listeners_and_unconnected_udp_below_the_ephemeral_range() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41870 1 0000000000000000 100 0 0 10 0
   1: 0100007F:A8C2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 51237 1 0000000000000000 20 4 30 10 -1
";
        let served = |text: &str, transport: Transport| -> Vec<u16> {
            parse_socket_table(text, transport)
                .iter()
                .filter(|e| is_service(e))
                .map(|e| e.local.port())
                .collect()
        };
        assert_eq!(served(tcp, Transport::Tcp), vec![8080]);
        let udp = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 22110 2 0000000000000000 0
  101: 0100007F:D431 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 22111 2 0000000000000000 0
  102: 0200000A:0035 0100000A:C350 01 00000000:00000000 00:00000000 00000000     0        0 22112 2 0000000000000000 0
";
        assert_eq!(served(udp, Transport::Udp), vec![5353]);
    }

    #[test]
    fn recorded_arguments_must_name_the_owner_s_executable() {
        assert!(names_comm(b"/usr/bin/curl\0-sS\0http://x/\0", "curl"));
        assert!(names_comm(b"nc\0-q0\0", "nc"));
        // comm is cut at 15 bytes; the file name is whole.
        assert!(names_comm(
            b"/opt/a-very-long-name-indeed\0",
            "a-very-long-nam"
        ));
        assert!(!names_comm(b"/bin/sh\0-c\0", "curl"));
        assert!(!names_comm(b"", "curl"));
    }

    #[test]
    fn comm_stops_at_the_first_nul() {
        let mut o = Owner::default();
        o.comm[..4].copy_from_slice(b"curl");
        assert_eq!(comm(&o), "curl");
        o.comm = *b"a-very-long-nam\0";
        assert_eq!(comm(&o), "a-very-long-nam");
    }

    #[test]
    fn this_namespace_has_a_cookie_and_loopback() {
        assert!(netns_cookie().is_some_and(|c| c != 0));
        let addrs = interface_addrs();
        assert!(
            addrs.contains(&IpAddr::from([127, 0, 0, 1])) || addrs.is_empty(),
            "{addrs:?}"
        );
    }
}
