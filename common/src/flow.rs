//! The flow table: a canonical 5-tuple key (both directions of a connection map to one entry)
//! and the per-flow state the kernel keeps.

use core::ptr::addr_of_mut;

use crate::net::{TCP_ACK, TCP_SYN};

/// Canonical bidirectional 5-tuple. The endpoint that sorts lower (address, then port) is side
/// 0 (`addr_lo`/`port_lo`), the other side 1, whichever direction the packet went. Addresses are
/// the raw network-order words; IPv4 uses `[addr, 0, 0, 0]`. Ports are in host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct FlowKey {
    pub addr_lo: [u32; 4],
    pub addr_hi: [u32; 4],
    pub port_lo: u16,
    pub port_hi: u16,
    /// IP protocol number (TCP, UDP).
    pub proto: u8,
    /// [`crate::net::FAMILY_IPV4`] or [`crate::net::FAMILY_IPV6`].
    pub family: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);

/// Three wide words, where the derived impl hashes field by field with length prefixes (ten
/// calls into the hasher): user space looks a key up for every packet `analyze` reads. `_pad`
/// is left out; keys that are equal agree on everything else too.
impl core::hash::Hash for FlowKey {
    #[inline]
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        let wide = |a: &[u32; 4]| {
            a.iter()
                .enumerate()
                .fold(0u128, |w, (i, &x)| w | (u128::from(x) << (32 * i)))
        };
        state.write_u128(wide(&self.addr_lo));
        state.write_u128(wide(&self.addr_hi));
        state.write_u64(
            u64::from(self.port_lo)
                | (u64::from(self.port_hi) << 16)
                | (u64::from(self.proto) << 32)
                | (u64::from(self.family) << 40),
        );
    }
}

/// Which side of a [`FlowKey`] sent a packet: 0 for the `lo` endpoint, 1 for `hi`.
pub type Side = u8;

impl FlowKey {
    /// Builds the canonical key for a packet from `src` to `dst` and returns the sending side.
    #[inline(always)]
    pub fn canonical(
        family: u8,
        proto: u8,
        src: [u32; 4],
        sport: u16,
        dst: [u32; 4],
        dport: u16,
    ) -> (FlowKey, Side) {
        let mut key = FlowKey::default();
        let side = key.set_canonical(family, proto, &src, sport, &dst, dport);
        (key, side)
    }

    /// [`FlowKey::canonical`] written in place, for the kernel's tight stack.
    #[inline(always)]
    pub fn set_canonical(
        &mut self,
        family: u8,
        proto: u8,
        src: &[u32; 4],
        sport: u16,
        dst: &[u32; 4],
        dport: u16,
    ) -> Side {
        // SAFETY: `self` is a valid, writable key.
        unsafe { FlowKey::write_canonical(self, family, proto, src, sport, dst, dport) }
    }

    /// [`FlowKey::set_canonical`] through a pointer to memory that may be uninitialised: every
    /// field is written, none read.
    ///
    /// # Safety
    /// `key` must be valid for writes of a `FlowKey` and aligned.
    #[inline(always)]
    pub unsafe fn write_canonical(
        key: *mut FlowKey,
        family: u8,
        proto: u8,
        src: &[u32; 4],
        sport: u16,
        dst: &[u32; 4],
        dport: u16,
    ) -> Side {
        let src_first = endpoint_le(src, sport, dst, dport);
        let (lo, port_lo, hi, port_hi, side) = if src_first {
            (src, sport, dst, dport, 0)
        } else {
            (dst, dport, src, sport, 1)
        };
        // SAFETY: per the contract; plain-data fields, written whole.
        // Field by field, as the old in-place assignments did: a whole `FlowKey` value could
        // be built on the BPF stack and copied.
        unsafe {
            addr_of_mut!((*key).addr_lo).write(*lo);
            addr_of_mut!((*key).addr_hi).write(*hi);
            addr_of_mut!((*key).port_lo).write(port_lo);
            addr_of_mut!((*key).port_hi).write(port_hi);
            addr_of_mut!((*key).proto).write(proto);
            addr_of_mut!((*key).family).write(family);
            addr_of_mut!((*key)._pad).write([0; 2]);
        }
        side
    }

    /// [`FlowKey::canonical`] for an IPv4 packet from `src` to `dst` (octets as on the wire).
    pub fn ipv4(proto: u8, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> (FlowKey, Side) {
        let word = |a: [u8; 4]| [u32::from_ne_bytes(a), 0, 0, 0];
        FlowKey::canonical(
            crate::net::FAMILY_IPV4,
            proto,
            word(src),
            sport,
            word(dst),
            dport,
        )
    }

    /// Address and port of one side.
    pub fn endpoint(&self, side: Side) -> ([u32; 4], u16) {
        if side == 0 {
            (self.addr_lo, self.port_lo)
        } else {
            (self.addr_hi, self.port_hi)
        }
    }
}

/// `(a, ap) <= (b, bp)`, word by word; written out because the BPF target has no `memcmp`.
#[inline(always)]
fn endpoint_le(a: &[u32; 4], ap: u16, b: &[u32; 4], bp: u16) -> bool {
    let mut i = 0;
    while i < 4 {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
        i += 1;
    }
    ap <= bp
}

/// `FlowState::flags` layout: TCP flags seen from side 0 in bits 0-7, from side 1 in bits 8-15,
/// and sealwatch's own state bits from 16 up. One word so the kernel can update it with a single
/// atomic OR and learn what was set before; 64 bits because BPF's generic CPU target has no
/// 32-bit atomics.
pub const FLAGS_SIDE_SHIFT: u32 = 8;
/// A verdict (`protocol`/`encryption`) is final; later packets take the fast path.
pub const FLOW_VERDICT: u64 = 1 << 16;
/// The kernel sent the close notice (first FIN or RST).
pub const FLOW_CLOSING: u64 = 1 << 17;
/// A first-payload packet from side 0 / side 1 has been classified.
pub const FLOW_CLASSIFIED_SIDE0: u64 = 1 << 18;
pub const FLOW_CLASSIFIED_SIDE1: u64 = 1 << 19;
/// Enforce mode forbade the flow: every later packet carrying payload is dropped.
pub const FLOW_DROP: u64 = 1 << 20;
/// A TLS flow whose ServerHello the kernel still has to check (minimum version, weak suites).
pub const FLOW_CHECK_HELLO: u64 = 1 << 21;
/// An upgradable plaintext protocol (STARTTLS and the like) in enforce mode: its preamble is
/// let through while the client only negotiates; a TLS ClientHello makes it encrypted.
pub const FLOW_PREAMBLE: u64 = 1 << 22;
/// A verdict was recorded and the enforce program is taking the policy's decision on it (the
/// verdict bit follows, with the decision's bits).
pub const FLOW_DECIDING: u64 = 1 << 23;
/// A side's packet count reached a re-sample point ([`resample_due`]) on a packet without
/// payload: its next payload packet is re-sampled.
pub const FLOW_RESAMPLE_SIDE0: u64 = 1 << 24;
pub const FLOW_RESAMPLE_SIDE1: u64 = 1 << 25;

/// The [`FLOW_RESAMPLE_SIDE0`] bit of `side`.
#[inline(always)]
pub const fn resample_bit(side: Side) -> u64 {
    if side & 1 == 0 {
        FLOW_RESAMPLE_SIDE0
    } else {
        FLOW_RESAMPLE_SIDE1
    }
}

/// `FlowState::client_side` when neither SYN nor ports told which side opened the flow.
pub const CLIENT_UNKNOWN: u8 = 0xff;

/// Per-flow state. Counters are indexed by sending side and updated with atomic adds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowState {
    /// `bpf_ktime_get_ns` of the first and latest packet.
    pub first_ns: u64,
    pub last_ns: u64,
    pub packets: [u64; 2],
    /// IP-layer bytes (header included), as AWS flow logs count them.
    pub bytes: [u64; 2],
    /// See [`FLAGS_SIDE_SHIFT`] and the `FLOW_*` bits.
    pub flags: u64,
    /// `bpf_ktime_get_ns` when the verdict was reached.
    pub verdict_ns: u64,
    /// Interface that owns the flow: packets of it seen elsewhere are not counted twice.
    pub ifindex: u32,
    /// [`crate::Protocol`] and [`crate::Encryption`] as `u8`.
    pub protocol: u8,
    pub encryption: u8,
    /// Side that opened the flow, or [`CLIENT_UNKNOWN`].
    pub client_side: u8,
    /// What the policy decided on the verdict (`policy::ACTION_*`).
    pub action: u8,
    /// Payload-carrying packets seen per side (saturating).
    pub payload_packets: [u8; 2],
    /// Payload bytes already sent to user space as samples, per side.
    pub sampled: [u16; 2],
    /// For `ACTION_EXCLUDED`, the index of the exclusion that matched.
    pub rule: u8,
    /// The side of the key whose local socket `local_cookie` names.
    pub local_side: u8,
    /// Cookie of the local socket that sent the flow's first packet (TC egress), or 0: the key
    /// to [`crate::owner::SOCK_OWNERS_MAP`].
    pub local_cookie: u64,
}
const _: () = assert!(core::mem::size_of::<FlowState>() == 88);

impl FlowState {
    /// TCP flags seen from `side`.
    pub fn tcp_flags(&self, side: Side) -> u8 {
        (self.flags >> (FLAGS_SIDE_SHIFT * u32::from(side & 1))) as u8
    }
}

/// A side's packet count from which flows judged encrypted are re-sampled: past the handshakes,
/// where a flow that switched to plaintext after a real TLS handshake would show it.
pub const RESAMPLE_FIRST: u64 = 16;
/// The count past which they are not: at most 21 re-samples a side (2^4 .. 2^24).
pub const RESAMPLE_LAST: u64 = 1 << 24;

/// Whether a side whose packet count went from `before` to `after` (GSO packets count as
/// several) re-samples this packet: each time the count reaches a new power of two between
/// [`RESAMPLE_FIRST`] and [`RESAMPLE_LAST`]. A few packets per flow, ever; spread over its life
/// so a switch to plaintext at any point is seen within twice the packets sent before it.
#[inline(always)]
pub const fn resample_due(before: u64, after: u64) -> bool {
    after >= RESAMPLE_FIRST && before < RESAMPLE_LAST && (before ^ after) > before
}

/// The classified-bit of `side` and of the other side.
#[inline(always)]
pub const fn classified_bits(side: Side) -> (u64, u64) {
    if side & 1 == 0 {
        (FLOW_CLASSIFIED_SIDE0, FLOW_CLASSIFIED_SIDE1)
    } else {
        (FLOW_CLASSIFIED_SIDE1, FLOW_CLASSIFIED_SIDE0)
    }
}

/// What a payload packet of a flow without a verdict calls for. Shared by the kernel programs
/// and offline analysis so both reach the same verdicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadStep {
    /// First payload of this side: classify it (then see [`conclude`]).
    Classify,
    /// This side was classified `unknown` and kept talking without an answer: give up.
    GiveUp,
    /// Nothing to do until the other side speaks.
    Wait,
}

/// `flags`: the flow's flags before this packet; `sent`: payload packets this side has sent,
/// this one included.
#[inline(always)]
pub fn payload_step(flags: u64, side: Side, sent: u8) -> PayloadStep {
    let (mine, _) = classified_bits(side);
    if flags & mine == 0 {
        PayloadStep::Classify
    } else if sent >= crate::UNKNOWN_AFTER_PAYLOAD_PACKETS {
        PayloadStep::GiveUp
    } else {
        PayloadStep::Wait
    }
}

/// The flow verdict after classifying one side's first payload: a recognised protocol is final;
/// `unknown` is final only once the other side was classified (unknown) too.
#[inline(always)]
pub fn conclude(
    side_verdict: crate::Verdict,
    other_side_classified: bool,
) -> Option<crate::Verdict> {
    (side_verdict.is_known() || other_side_classified).then_some(side_verdict)
}

/// Flag bits a TCP packet from `side` adds: its TCP flags, and [`FLOW_CLOSING`] on FIN/RST.
#[inline(always)]
pub fn tcp_flag_bits(side: Side, tcp_flags: u8) -> u64 {
    let mut bits = u64::from(tcp_flags) << (FLAGS_SIDE_SHIFT * u32::from(side & 1));
    if tcp_flags & (crate::net::TCP_FIN | crate::net::TCP_RST) != 0 {
        bits |= FLOW_CLOSING;
    }
    bits
}

/// The classifier's context for a payload packet of this flow: whether its start was seen
/// (a SYN from either side; UDP flows have no start to miss) decides how much TLS evidence counts.
#[inline(always)]
pub fn classify_context(flags: u64, proto: u8, payload_len: u32) -> crate::classify::Context {
    let syn = u64::from(TCP_SYN) | (u64::from(TCP_SYN) << FLAGS_SIDE_SHIFT);
    crate::classify::Context {
        transport: proto,
        payload_len,
        start_seen: proto != crate::net::IPPROTO_TCP || flags & syn != 0,
    }
}

/// Decides which side opened a flow from its first observed packet. A SYN says it outright;
/// without one (the agent started mid-connection, or UDP) a service port on one end and a client
/// port on the other decides; failing that, the first sender is the client.
#[inline(always)]
pub fn client_side(
    sender: Side,
    tcp_flags: Option<u8>,
    sender_port: u16,
    receiver_port: u16,
) -> u8 {
    let receiver = sender ^ 1;
    if let Some(flags) = tcp_flags
        && flags & TCP_SYN != 0
    {
        return if flags & TCP_ACK != 0 {
            receiver
        } else {
            sender
        };
    }
    match (port_rank(sender_port), port_rank(receiver_port)) {
        (s, r) if s < r => receiver,
        (s, r) if s > r => sender,
        _ => sender,
    }
}

/// How "server-like" a port is: system ports (below 1024) rank lowest, the Linux/IANA ephemeral
/// ranges highest. Port 0 (no ports) ranks like an ephemeral port so it never wins.
#[inline(always)]
const fn port_rank(port: u16) -> u8 {
    match port {
        0 => 2,
        1..=1023 => 0,
        1024..=32767 => 1,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::resample_due;

    #[test]
    fn resamples_at_each_power_of_two_within_bounds() {
        let due: Vec<u64> = (0..(1u64 << 25))
            .filter(|&n| resample_due(n, n + 1))
            .map(|n| n + 1)
            .collect();
        let expected: Vec<u64> = (4..=24).map(|k| 1u64 << k).collect();
        assert_eq!(due, expected);
        // A GSO packet of 3 segments that jumps over 32 still counts.
        assert!(resample_due(30, 33));
        assert!(!resample_due(33, 36));
    }

    use super::*;
    use crate::net::{IPPROTO_TCP, TCP_FIN};

    fn v4(a: u8, b: u8, c: u8, d: u8) -> [u32; 4] {
        [u32::from_ne_bytes([a, b, c, d]), 0, 0, 0]
    }

    #[test]
    fn both_directions_share_one_key() {
        let (a, sa) = FlowKey::ipv4(IPPROTO_TCP, [10, 0, 0, 2], 40000, [10, 0, 0, 1], 80);
        let (b, sb) = FlowKey::ipv4(IPPROTO_TCP, [10, 0, 0, 1], 80, [10, 0, 0, 2], 40000);
        assert_eq!(a, b);
        assert_ne!(sa, sb);
        assert_eq!(a.endpoint(sa), (v4(10, 0, 0, 2), 40000));
        assert_eq!(a.endpoint(sb), (v4(10, 0, 0, 1), 80));
    }

    #[test]
    fn same_address_orders_by_port() {
        let (k, side) = FlowKey::ipv4(IPPROTO_TCP, [127, 0, 0, 1], 9000, [127, 0, 0, 1], 80);
        assert_eq!((k.port_lo, k.port_hi, side), (80, 9000, 1));
    }

    #[test]
    fn syn_sender_is_client_even_on_a_low_port() {
        assert_eq!(client_side(1, Some(TCP_SYN), 22, 50000), 1);
        assert_eq!(client_side(0, Some(TCP_SYN | TCP_ACK), 443, 40000), 1);
    }

    #[test]
    fn without_syn_the_service_port_is_the_server() {
        // Mid-flow data from the server (port 6379) to an ephemeral client port.
        assert_eq!(client_side(0, Some(TCP_ACK), 6379, 51000), 1);
        // DNS reply seen first: the port-53 side is the server.
        assert_eq!(client_side(1, None, 53, 33000), 0);
        assert_eq!(client_side(0, Some(TCP_FIN | TCP_ACK), 40000, 443), 0);
    }

    #[test]
    fn equal_rank_falls_back_to_first_sender() {
        assert_eq!(client_side(1, None, 5000, 6000), 1);
        assert_eq!(client_side(0, None, 0, 0), 0);
    }

    #[test]
    fn classification_steps() {
        use crate::{Encryption, Protocol, Verdict};
        assert_eq!(payload_step(0, 1, 1), PayloadStep::Classify);
        assert_eq!(payload_step(FLOW_CLASSIFIED_SIDE1, 1, 2), PayloadStep::Wait);
        assert_eq!(
            payload_step(FLOW_CLASSIFIED_SIDE1, 0, 1),
            PayloadStep::Classify
        );
        assert_eq!(
            payload_step(FLOW_CLASSIFIED_SIDE0, 0, 4),
            PayloadStep::GiveUp
        );
        let http = Verdict::new(Protocol::Http, Encryption::Plaintext);
        assert_eq!(conclude(http, false), Some(http));
        assert_eq!(conclude(Verdict::UNKNOWN, false), None);
        assert_eq!(conclude(Verdict::UNKNOWN, true), Some(Verdict::UNKNOWN));
    }

    #[test]
    fn start_is_seen_with_a_syn_or_for_udp() {
        use crate::net::IPPROTO_UDP;
        assert!(
            classify_context(u64::from(TCP_SYN) << FLAGS_SIDE_SHIFT, IPPROTO_TCP, 10).start_seen
        );
        assert!(!classify_context(u64::from(TCP_ACK), IPPROTO_TCP, 10).start_seen);
        assert!(classify_context(0, IPPROTO_UDP, 10).start_seen);
    }

    #[test]
    fn fin_and_rst_mark_closing() {
        assert_eq!(
            tcp_flag_bits(1, TCP_FIN | TCP_ACK),
            (u64::from(TCP_FIN | TCP_ACK) << 8) | FLOW_CLOSING
        );
        assert_eq!(tcp_flag_bits(0, TCP_ACK), u64::from(TCP_ACK));
    }

    #[test]
    fn flags_are_split_per_side() {
        let s = FlowState {
            flags: u64::from(TCP_SYN)
                | (u64::from(TCP_SYN | TCP_ACK) << FLAGS_SIDE_SHIFT)
                | FLOW_VERDICT,
            ..Default::default()
        };
        assert_eq!(s.tcp_flags(0), TCP_SYN);
        assert_eq!(s.tcp_flags(1), TCP_SYN | TCP_ACK);
    }
}
