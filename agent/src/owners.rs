//! Who is behind a flow's ends, from what the kernel recorded when it was true (see
//! `sealwatch_common::owner`): the owners of established TCP connections by flow key, the
//! socket a flow's first departing packet left, and who bound a server port.

use std::{collections::HashSet, net::IpAddr, time::Instant};

use aya::maps::{HashMap, MapData, MapError};
use sealwatch_common::{
    flow::{CLIENT_UNKNOWN, FlowKey, FlowState},
    owner::{FLOW_OWNERS_MAP, FlowOwners, LISTENERS_MAP, ListenKey, Owner, SOCK_OWNERS_MAP},
};
use tracing::debug;

use crate::{
    event::{Attribution, Endpoints, Party},
    programs::LoadError,
};

/// How long the set of this namespace's addresses is trusted before it is read again.
const LOCAL_ADDRS_TTL: std::time::Duration = std::time::Duration::from_secs(5);

pub struct OwnerMaps {
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

    /// Forgets a flow that ended: its key may be reused by an unrelated connection.
    pub fn forget(&mut self, key: &FlowKey) {
        let _ = self.flows.remove(key);
    }
}

/// Live attribution: the owner maps, and what /proc says about their processes.
pub struct Attributor {
    maps: OwnerMaps,
    processes: std::collections::HashMap<(u32, [u8; 16]), Process>,
}

/// What /proc said about a process while it ran (nothing once it has exited).
#[derive(Clone, Default)]
struct Process {
    command_line: Option<String>,
}

/// Longest `process.command_line` reported; longer ones are cut and end with "...".
pub const MAX_COMMAND_LINE: usize = 1024;
/// Processes remembered; the cache starts over when full.
const MAX_PROCESSES: usize = 4096;

impl Attributor {
    pub fn new(maps: OwnerMaps) -> Attributor {
        Attributor {
            maps,
            processes: std::collections::HashMap::new(),
        }
    }

    fn describe(&mut self, o: &Owner) -> Party {
        if !o.known() {
            return Party::default();
        }
        if self.processes.len() >= MAX_PROCESSES {
            self.processes.clear();
        }
        let process = self
            .processes
            .entry((o.tgid, o.comm))
            .or_insert_with(|| read_process(o))
            .clone();
        Party {
            pid: Some(o.tgid),
            executable: Some(comm(o)),
            command_line: process.command_line,
            owner: Some(o.uid.to_string()),
            ..Party::default()
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
        let client = usize::from(Endpoints::client_index(client_side));
        let (local, peer, side) = if ends[client].known() {
            (ends[client], ends[client ^ 1], "client")
        } else if ends[client ^ 1].known() {
            (ends[client ^ 1], Owner::default(), "server")
        } else {
            return Attribution::default();
        };
        Attribution {
            local_side: Some(side),
            local: self.describe(&local),
            peer: self.describe(&peer),
        }
    }

    fn forget(&mut self, key: &FlowKey) {
        self.maps.forget(key);
    }
}

/// The command line of `o`'s process, if it still runs (same pid, same comm).
fn read_process(o: &Owner) -> Process {
    let dir = std::path::PathBuf::from(format!("/proc/{}", o.tgid));
    let same = std::fs::read_to_string(dir.join("comm"))
        .is_ok_and(|c| c.trim_end_matches('\n') == comm(o));
    if !same {
        return Process::default();
    }
    let Ok(raw) = std::fs::read(dir.join("cmdline")) else {
        return Process::default();
    };
    Process {
        command_line: command_line(&raw),
    }
}

/// NUL-separated argv as one line, cut at [`MAX_COMMAND_LINE`] bytes.
fn command_line(raw: &[u8]) -> Option<String> {
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
        let mut cut = MAX_COMMAND_LINE - 3;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str("...");
    }
    Some(line)
}

/// The addresses of this network namespace's interfaces.
#[derive(Default)]
struct LocalAddrs {
    addrs: HashSet<IpAddr>,
    read_at: Option<Instant>,
}

impl LocalAddrs {
    fn contains(&mut self, addr: IpAddr) -> bool {
        if self.read_at.is_none_or(|t| t.elapsed() > LOCAL_ADDRS_TTL) || !self.addrs.contains(&addr)
        {
            // A miss reads again too, at most once per second: an address added a moment ago.
            let fresh = self
                .read_at
                .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1));
            if !fresh || self.addrs.is_empty() {
                self.addrs = interface_addrs();
                self.read_at = Some(Instant::now());
            }
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

/// SO_NETNS_COOKIE of any socket here: the cookie the kernel programs see for this namespace.
fn netns_cookie() -> Option<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")
        .or_else(|_| std::net::UdpSocket::bind("[::1]:0"))
        .ok()?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: a valid socket, and a buffer of the size we pass.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(cookie)
}

/// `comm` as text.
pub fn comm(o: &Owner) -> String {
    let end = o.comm.iter().position(|&b| b == 0).unwrap_or(o.comm.len());
    String::from_utf8_lossy(&o.comm[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_are_joined_and_bounded() {
        assert_eq!(
            command_line(b"curl\0-sS\0http://10.0.0.1/\0").as_deref(),
            Some("curl -sS http://10.0.0.1/")
        );
        assert_eq!(command_line(b""), None);
        let long = [b'a'; 3000];
        let line = command_line(&long).expect("line");
        assert_eq!(line.len(), MAX_COMMAND_LINE);
        assert!(line.ends_with("..."));
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
