//! Packet access shared by the TC and XDP programs, and the header parser.

use core::{ffi::c_void, mem::MaybeUninit};

use aya_ebpf::{
    EbpfContext,
    helpers::generated::{
        bpf_get_socket_cookie, bpf_skb_cgroup_id, bpf_skb_load_bytes, bpf_xdp_load_bytes,
    },
    programs::{TcContext, XdpContext},
};
use sealwatch_common::parse::parse_ethernet_into;
pub use sealwatch_common::parse::{Parsed, Skip};

/// What the TC and XDP contexts have in common for our purposes (and aya-log's context).
pub trait Packet: EbpfContext {
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
    /// Whole packet length, including data outside the linear area.
    fn len(&self) -> u32;
    fn ifindex(&self) -> u32;
    /// Wire packets this one stands for (GSO/GRO aggregates count as several).
    fn segments(&self) -> u32;
    /// Copies `len` bytes at `offset` into `dst` with the context's load-bytes helper, which also
    /// reads paged/fragmented data. Returns the helper's result (0 on success).
    fn load_bytes(&self, offset: u32, dst: *mut c_void, len: u32) -> i64;
    /// The cgroup id (v2) of the local socket a departing packet leaves, 0 when there is none
    /// (forwarded traffic) or the hook cannot tell. Arriving packets have no socket yet.
    fn departing_socket_cgroup(&self) -> u64;
    /// The cookie of the local socket a departing packet leaves, 0 when there is none.
    fn departing_socket_cookie(&self) -> u64;
    /// Brings the packet's first [`LINEAR_HEADERS`] bytes into the directly readable area when
    /// some are outside it; true if it did (packet pointers must then be read again).
    fn pull_headers(&self) -> bool;
}

/// Headers we want directly readable when a packet's are not: Ethernet, two VLAN tags, IPv6
/// with a few extension headers, TCP with options.
const LINEAR_HEADERS: u32 = 128;

impl Packet for TcContext {
    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }
    #[inline(always)]
    fn len(&self) -> u32 {
        TcContext::len(self)
    }
    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // SAFETY: the context pointer is valid for the program's run.
        unsafe { (*self.skb.skb).ifindex }
    }
    #[inline(always)]
    fn segments(&self) -> u32 {
        // SAFETY: as above.
        let segs = unsafe { (*self.skb.skb).gso_segs };
        if segs == 0 { 1 } else { segs }
    }
    #[inline(always)]
    fn load_bytes(&self, offset: u32, dst: *mut c_void, len: u32) -> i64 {
        // SAFETY: `dst` points at `len` writable bytes (checked by the verifier).
        unsafe { bpf_skb_load_bytes(self.skb.skb as *const c_void, offset, dst, len) }
    }
    #[inline(always)]
    fn departing_socket_cgroup(&self) -> u64 {
        // SAFETY: the context pointer is valid; the helper returns 0 without a socket.
        unsafe { bpf_skb_cgroup_id(self.skb.skb) }
    }
    #[inline(always)]
    fn departing_socket_cookie(&self) -> u64 {
        // SAFETY: as above; the helper returns 0 without a socket.
        unsafe { bpf_get_socket_cookie(self.skb.skb as *mut c_void) }
    }
    #[inline(always)]
    fn pull_headers(&self) -> bool {
        let want = self.len().min(LINEAR_HEADERS);
        if ((self.data_end() - self.data()) as u32) >= want {
            return false;
        }
        self.pull_data(want).is_ok()
    }
}

impl Packet for XdpContext {
    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }
    #[inline(always)]
    fn len(&self) -> u32 {
        (XdpContext::data_end(self) - XdpContext::data(self)) as u32
    }
    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // SAFETY: the context pointer is valid for the program's run.
        unsafe { (*self.ctx).ingress_ifindex }
    }
    #[inline(always)]
    fn segments(&self) -> u32 {
        1
    }
    #[inline(always)]
    fn load_bytes(&self, offset: u32, dst: *mut c_void, len: u32) -> i64 {
        // SAFETY: `dst` points at `len` writable bytes (checked by the verifier).
        unsafe { bpf_xdp_load_bytes(self.ctx, offset, dst, len) }
    }
    #[inline(always)]
    fn departing_socket_cgroup(&self) -> u64 {
        // XDP programs have no helper that reads a socket's cgroup.
        0
    }
    #[inline(always)]
    fn departing_socket_cookie(&self) -> u64 {
        // XDP sees arriving packets only.
        0
    }
    #[inline(always)]
    fn pull_headers(&self) -> bool {
        // The first buffer of an XDP packet holds at least its headers.
        false
    }
}

/// Parses the packet behind `pkt` with the shared parser, into `out` left uninitialised by the
/// caller (see [`Parsed`]).
#[inline(always)]
pub fn parse<'a, P: Packet>(
    pkt: &P,
    out: &'a mut MaybeUninit<Parsed>,
) -> Result<&'a mut Parsed, Skip> {
    // SAFETY: [data, data_end) is the packet's linear area, readable for the program's run;
    // every access inside is bounds-checked against data_end.
    unsafe { parse_ethernet_into(pkt.data(), pkt.data_end(), pkt.len(), out) }
}
