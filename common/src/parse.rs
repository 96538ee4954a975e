//! The packet parser: Ethernet (VLAN-tagged or not), IPv4, IPv6 with a bounded extension-header
//! walk, TCP and UDP, down to what flow tracking needs. Shared by the kernel programs (over packet
//! memory, where every access is bounds-checked the way the verifier wants) and by offline
//! analysis (over captured frames), so both see the same flows and skip the same packets.

use core::{
    mem::{self, MaybeUninit},
    ptr::addr_of_mut,
};

use crate::{
    flow::{FlowKey, Side},
    net::*,
};

/// Why a packet is not tracked; each reason has its own counter.
pub enum Skip {
    NonIp,
    Fragment,
    OtherTransport,
    Malformed,
}

/// A TCP or UDP packet reduced to what flow tracking needs. Filled in place by the parsers:
/// building and moving it by value costs stack the BPF programs do not have. The kernel hands
/// them uninitialised stack ([`parse_ethernet_into`]): zeroing these 64 bytes first cost as much
/// as the rest of an established flow's packet (BPF has no wide `memset`, LLVM emits a byte
/// loop), and a successful parse writes every field anyway.
#[derive(Default)]
pub struct Parsed {
    pub key: FlowKey,
    /// Side of `key` that sent the packet.
    pub side: Side,
    pub sport: u16,
    pub dport: u16,
    /// TCP flags, `None` for UDP.
    pub tcp_flags: Option<u8>,
    pub seq: u32,
    pub payload_off: u32,
    pub payload_len: u32,
    /// IP-layer length (header included).
    pub ip_len: u32,
}

/// Writes one field of the output without reading or dropping what was there.
macro_rules! put {
    ($out:expr, $field:ident, $value:expr) => {
        // SAFETY: a field of the caller's `MaybeUninit<Parsed>`, plain data: writing it never
        // reads the old bytes.
        unsafe { addr_of_mut!((*$out.as_mut_ptr()).$field).write($value) }
    };
}

/// Bounds-checked pointer to a `T` at `off` in the linear packet data: the check the verifier
/// needs to see before every direct packet access.
#[inline(always)]
fn ptr_at<T>(start: usize, end: usize, off: usize) -> Result<*const T, Skip> {
    if start + off + mem::size_of::<T>() > end {
        return Err(Skip::Malformed);
    }
    Ok((start + off) as *const T)
}

/// The `N` header bytes at `off`, read in place (no copy onto the 512-byte BPF stack).
#[inline(always)]
fn header<'a, const N: usize>(start: usize, end: usize, off: usize) -> Result<&'a [u8; N], Skip> {
    let p = ptr_at::<[u8; N]>(start, end, off)?;
    // SAFETY: `ptr_at` checked that N bytes at `off` lie inside the packet, which outlives the
    // program run; `[u8; N]` has alignment 1.
    Ok(unsafe { &*p })
}

#[inline(always)]
fn be16(b0: u8, b1: u8) -> u16 {
    u16::from_be_bytes([b0, b1])
}

/// Parses an Ethernet frame in `[start, end)`; `wire_len` is the whole packet's length (it may
/// extend past `end` in non-linear skbs).
///
/// Inlined into the kernel's entry points on purpose: as a BPF subprogram, LLVM would pass
/// `start` and `end` as 32-bit arguments and widen them in the callee, and the verifier forbids
/// arithmetic on `pkt_end`.
///
/// # Safety
/// `[start, end)` must be readable memory for the duration of the call.
#[inline(always)]
pub unsafe fn parse_ethernet(
    start: usize,
    end: usize,
    wire_len: u32,
    out: &mut Parsed,
) -> Result<(), Skip> {
    // SAFETY: forwarded; every field of `Parsed` is plain data, so seen as `MaybeUninit` it is
    // only ever overwritten with valid values.
    unsafe { parse_ethernet_into(start, end, wire_len, as_uninit(out)) }.map(|_| ())
}

/// [`parse_ethernet`] into uninitialised memory: on success every field is written and the
/// parsed packet is returned.
///
/// # Safety
/// As [`parse_ethernet`].
#[inline(always)]
pub unsafe fn parse_ethernet_into(
    start: usize,
    end: usize,
    wire_len: u32,
    out: &mut MaybeUninit<Parsed>,
) -> Result<&mut Parsed, Skip> {
    let &[t0, t1] = header::<2>(start, end, ETH_TYPE_OFFSET)?;
    let mut ethertype = be16(t0, t1);
    let mut l3 = ETH_HDR_LEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        // The tag's inner EtherType sits after its 2-byte TCI.
        let &[_, _, i0, i1] = header::<VLAN_HDR_LEN>(start, end, l3)?;
        ethertype = be16(i0, i1);
        l3 += VLAN_HDR_LEN;
    }
    unsafe { parse_l3_into(ethertype, start, end, l3, wire_len, out) }
}

#[inline(always)]
fn as_uninit(out: &mut Parsed) -> &mut MaybeUninit<Parsed> {
    // SAFETY: same layout; the parsers only write whole, valid field values through it.
    unsafe { &mut *(out as *mut Parsed).cast::<MaybeUninit<Parsed>>() }
}

/// Parses from the network header at `l3` on, for frames whose link layer names the EtherType
/// itself (Linux cooked capture, raw IP, BSD loopback).
///
/// # Safety
/// As [`parse_ethernet`].
#[inline(always)]
pub unsafe fn parse_l3(
    ethertype: u16,
    start: usize,
    end: usize,
    l3: usize,
    wire_len: u32,
    out: &mut Parsed,
) -> Result<(), Skip> {
    // SAFETY: as in `parse_ethernet`.
    unsafe { parse_l3_into(ethertype, start, end, l3, wire_len, as_uninit(out)) }.map(|_| ())
}

/// [`parse_l3`] into uninitialised memory, as [`parse_ethernet_into`].
///
/// # Safety
/// As [`parse_ethernet`].
#[inline(always)]
pub unsafe fn parse_l3_into(
    ethertype: u16,
    start: usize,
    end: usize,
    l3: usize,
    wire_len: u32,
    out: &mut MaybeUninit<Parsed>,
) -> Result<&mut Parsed, Skip> {
    let (mut ethertype, mut l3) = (ethertype, l3);
    // MPLS: skip the label stack to its bottom entry; the IP version nibble follows.
    if ethertype == ETH_P_MPLS_UC || ethertype == ETH_P_MPLS_MC {
        let mut bottom = false;
        for _ in 0..MAX_MPLS_LABELS {
            let &[_, _, s, _] = header::<MPLS_LABEL_LEN>(start, end, l3)?;
            l3 += MPLS_LABEL_LEN;
            if s & 1 != 0 {
                bottom = true;
                break;
            }
        }
        let &[v] = header::<1>(start, end, l3)?;
        ethertype = match (bottom, v >> 4) {
            (true, 4) => ETH_P_IP,
            (true, 6) => ETH_P_IPV6,
            _ => return Err(Skip::NonIp),
        };
    }
    // SAFETY: forwarded from the caller.
    match ethertype {
        ETH_P_IP => parse_ipv4(wire_len, start, end, l3, out),
        ETH_P_IPV6 => parse_ipv6(wire_len, start, end, l3, out),
        _ => Err(Skip::NonIp),
    }
}

#[inline(always)]
fn parse_ipv4(
    wire_len: u32,
    start: usize,
    end: usize,
    l3: usize,
    out: &mut MaybeUninit<Parsed>,
) -> Result<&mut Parsed, Skip> {
    let ip = header::<IPV4_MIN_HDR_LEN>(start, end, l3)?;
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < IPV4_MIN_HDR_LEN {
        return Err(Skip::Malformed);
    }
    // A first fragment carries the transport header and the payload's first bytes, which is
    // all classification needs (a large DNSCrypt or DTLS datagram is often fragmented); later
    // fragments carry no ports and are only counted.
    if be16(ip[6], ip[7]) & IPV4_FRAG_OFFSET_MASK != 0 {
        return Err(Skip::Fragment);
    }
    // Total length 0 means a GSO packet over 64 KiB (BIG TCP): take the real length.
    let ip_len = match u32::from(be16(ip[2], ip[3])) {
        0 => wire_len.saturating_sub(l3 as u32),
        n => n,
    };
    if ip_len < ihl as u32 {
        return Err(Skip::Malformed);
    }
    let src = [
        u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]),
        0,
        0,
        0,
    ];
    let dst = [
        u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]),
        0,
        0,
        0,
    ];
    put!(out, ip_len, ip_len);
    let l4 = L4 {
        family: FAMILY_IPV4,
        proto: ip[9],
        off: l3 + ihl,
        len: ip_len - ihl as u32,
    };
    parse_l4(wire_len, start, end, &l4, src, dst, out)
}

#[inline(always)]
fn parse_ipv6(
    wire_len: u32,
    start: usize,
    end: usize,
    l3: usize,
    out: &mut MaybeUninit<Parsed>,
) -> Result<&mut Parsed, Skip> {
    let ip = header::<IPV6_HDR_LEN>(start, end, l3)?;
    if ip[0] >> 4 != 6 {
        return Err(Skip::Malformed);
    }
    let word = |i: usize| u32::from_ne_bytes([ip[i], ip[i + 1], ip[i + 2], ip[i + 3]]);
    let src = [word(8), word(12), word(16), word(20)];
    let dst = [word(24), word(28), word(32), word(36)];
    // Payload length 0 is a jumbogram/BIG TCP packet: take the real length.
    let payload = match u32::from(be16(ip[4], ip[5])) {
        0 => wire_len.saturating_sub((l3 + IPV6_HDR_LEN) as u32),
        n => n,
    };
    let mut next = ip[6];
    let mut l4 = l3 + IPV6_HDR_LEN;
    for _ in 0..MAX_IPV6_EXT_HDRS {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let &[nh, len] = header::<2>(start, end, l4)?;
                next = nh;
                l4 += (usize::from(len) + 1) * 8;
            }
            // As for IPv4: a first fragment is parsed on, later ones only counted.
            IPPROTO_FRAGMENT => {
                let &[nh, _, o0, o1] = header::<4>(start, end, l4)?;
                if be16(o0, o1) & IPV6_FRAG_OFFSET_MASK != 0 {
                    return Err(Skip::Fragment);
                }
                next = nh;
                l4 += IPV6_FRAG_HDR_LEN;
            }
            _ => break,
        }
    }
    if matches!(
        next,
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_FRAGMENT
    ) {
        return Err(Skip::Malformed);
    }
    let ext_len = (l4 - l3 - IPV6_HDR_LEN) as u32;
    if payload < ext_len {
        return Err(Skip::Malformed);
    }
    put!(out, ip_len, payload + IPV6_HDR_LEN as u32);
    let l4 = L4 {
        family: FAMILY_IPV6,
        proto: next,
        off: l4,
        len: payload - ext_len,
    };
    parse_l4(wire_len, start, end, &l4, src, dst, out)
}

/// Where the transport header is, as found by the IP parsers.
struct L4 {
    family: u8,
    proto: u8,
    /// Offset of the transport header.
    off: usize,
    /// Transport header plus payload length, per the IP header.
    len: u32,
}

#[inline(always)]
fn parse_l4<'a>(
    wire_len: u32,
    start: usize,
    end: usize,
    l4: &L4,
    src: [u32; 4],
    dst: [u32; 4],
    out: &'a mut MaybeUninit<Parsed>,
) -> Result<&'a mut Parsed, Skip> {
    let (sport, dport, tcp_flags, seq, hdr_len) = match l4.proto {
        IPPROTO_TCP => {
            let tcp = header::<TCP_MIN_HDR_LEN>(start, end, l4.off)?;
            let doff = u32::from(tcp[12] >> 4) * 4;
            if doff < TCP_MIN_HDR_LEN as u32 {
                return Err(Skip::Malformed);
            }
            let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
            (
                be16(tcp[0], tcp[1]),
                be16(tcp[2], tcp[3]),
                Some(tcp[13]),
                seq,
                doff,
            )
        }
        IPPROTO_UDP => {
            let udp = header::<UDP_HDR_LEN>(start, end, l4.off)?;
            (
                be16(udp[0], udp[1]),
                be16(udp[2], udp[3]),
                None,
                0,
                UDP_HDR_LEN as u32,
            )
        }
        // Port-less flows between two hosts, as AWS flow logs record them; the classifier reads
        // the IPsec header itself from the payload.
        IPPROTO_ESP | IPPROTO_AH => (0, 0, None, 0, 0),
        // Control messages in clear between two hosts, one flow per pair like AWS flow logs.
        IPPROTO_ICMP | IPPROTO_ICMPV6 | IPPROTO_IGMP => (0, 0, None, 0, 0),
        // Tunnels between two hosts: followed as port-less flows here; `analyze` parses the
        // packet inside instead.
        IPPROTO_GRE | IPPROTO_IPIP | IPPROTO_IPV6 => (0, 0, None, 0, 0),
        _ => return Err(Skip::OtherTransport),
    };
    let payload_off = l4.off as u32 + hdr_len;
    // Never trust header lengths beyond the bytes actually there.
    let present = wire_len.saturating_sub(payload_off);
    put!(out, payload_off, payload_off);
    put!(
        out,
        payload_len,
        l4.len.saturating_sub(hdr_len).min(present)
    );
    put!(out, sport, sport);
    put!(out, dport, dport);
    put!(out, tcp_flags, tcp_flags);
    put!(out, seq, seq);
    // SAFETY: the key field of `out`, written whole.
    let side = unsafe {
        FlowKey::write_canonical(
            addr_of_mut!((*out.as_mut_ptr()).key),
            l4.family,
            l4.proto,
            &src,
            sport,
            &dst,
            dport,
        )
    };
    put!(out, side, side);
    // SAFETY: every field is written above (`ip_len` by the IP parsers).
    Ok(unsafe { out.assume_init_mut() })
}
