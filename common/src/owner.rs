//! Who owns a socket, captured in the kernel at the moment it is true: in the process that calls
//! `connect`, `sendmsg` or `bind` (cgroup socket programs run in that process), and when a TCP
//! connection is established (sock_ops, which sees both ends' addresses). A process that exits
//! 10 ms later is still named, and pods behind a veth are too, although their packets reach the
//! host's TC hooks without a socket.

use crate::flow::FlowKey;

/// Socket cookie -> [`Owner`]: filled on `connect`, unconnected `sendmsg` and `bind`.
pub const SOCK_OWNERS_MAP: &str = "SOCK_OWNERS";
/// [`ListenKey`] -> [`Owner`]: who bound a local port, for the sockets `accept` hands out
/// (created in softirq, with nobody's process context).
pub const LISTENERS_MAP: &str = "LISTENERS";
/// [`FlowKey`] -> [`FlowOwners`]: both ends of TCP connections established on this host, in
/// any network namespace.
pub const FLOW_OWNERS_MAP: &str = "FLOW_OWNERS";

/// tgid -> [`ExecArgs`]: the arguments of each process's latest `execve`, so a client that
/// exits 10 ms after its request still has a command line when its flow is reported.
pub const EXEC_ARGS_MAP: &str = "EXEC_ARGS";
pub const MAX_EXEC_ARGS: u32 = 8_192;
/// Bytes of arguments recorded: arguments are copied while fewer than half are used, each at
/// most half long, so every copy stays inside the buffer the verifier knows.
pub const EXEC_ARGS_BYTES: usize = 512;
/// Arguments recorded at most.
pub const MAX_EXEC_ARGV: usize = 16;

pub const MAX_SOCK_OWNERS: u32 = 65_536;
pub const MAX_LISTENERS: u32 = 16_384;
pub const MAX_FLOW_OWNERS: u32 = 65_536;

/// The process behind a socket. `tgid == 0`: unknown.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    /// Process id (the kernel's tgid).
    pub tgid: u32,
    pub uid: u32,
    /// cgroup v2 id of the process: the container and pod it belongs to.
    pub cgroup_id: u64,
    /// The socket's network namespace (`bpf_get_netns_cookie`).
    pub netns: u64,
    /// The task's `comm` (executable name, NUL-padded, at most 15 bytes).
    pub comm: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<Owner>() == 40);

impl Owner {
    pub fn known(&self) -> bool {
        self.tgid != 0
    }
}

/// NUL-separated arguments, as in `/proc/PID/cmdline`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecArgs {
    pub len: u32,
    pub _pad: u32,
    pub bytes: [u8; EXEC_ARGS_BYTES],
}
const _: () = assert!(core::mem::size_of::<ExecArgs>() == 8 + EXEC_ARGS_BYTES);

impl ExecArgs {
    pub fn args(&self) -> &[u8] {
        &self.bytes[..(self.len as usize).min(EXEC_ARGS_BYTES)]
    }
}

/// A bound local port in one network namespace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ListenKey {
    pub netns: u64,
    /// Host order.
    pub port: u16,
    pub proto: u8,
    pub _pad: [u8; 5],
}
const _: () = assert!(core::mem::size_of::<ListenKey>() == 16);

impl ListenKey {
    pub fn new(netns: u64, proto: u8, port: u16) -> ListenKey {
        ListenKey {
            netns,
            port,
            proto,
            _pad: [0; 5],
        }
    }
}

/// The owners of a flow's two ends, indexed by [`crate::flow::Side`] of its [`FlowKey`]. Both
/// are known when both ends live on this host (two pods on one node).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowOwners {
    pub side: [Owner; 2],
}
const _: () = assert!(core::mem::size_of::<FlowOwners>() == 80);

/// The [`FlowKey`] of an established TCP connection as sock_ops reports it, and which side of
/// the key the local socket is. Addresses are network-order words, ports host order; IPv4
/// addresses in the first word, as the packet parser builds them.
#[inline(always)]
pub fn established_key(
    family: u8,
    local: &[u32; 4],
    local_port: u16,
    remote: &[u32; 4],
    remote_port: u16,
) -> (FlowKey, crate::flow::Side) {
    FlowKey::canonical(
        family,
        crate::net::IPPROTO_TCP,
        *local,
        local_port,
        *remote,
        remote_port,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{FAMILY_IPV4, IPPROTO_TCP};

    #[test]
    fn an_established_key_matches_the_packets_key_from_either_end() {
        let client = [u32::from_ne_bytes([10, 0, 0, 2]), 0, 0, 0];
        let server = [u32::from_ne_bytes([10, 0, 0, 1]), 0, 0, 0];
        let (from_packet, _) = FlowKey::ipv4(IPPROTO_TCP, [10, 0, 0, 2], 40000, [10, 0, 0, 1], 80);
        let (client_end, client_side) = established_key(FAMILY_IPV4, &client, 40000, &server, 80);
        let (server_end, server_side) = established_key(FAMILY_IPV4, &server, 80, &client, 40000);
        assert_eq!(client_end, from_packet);
        assert_eq!(server_end, from_packet);
        assert_ne!(client_side, server_side);
        assert_eq!(from_packet.endpoint(client_side), (client, 40000));
    }
}
