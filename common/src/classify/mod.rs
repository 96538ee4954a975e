//! The payload classifier: plain functions over the first bytes of one direction of a flow,
//! run by the kernel on its [`crate::CLASSIFY_WINDOW`] and by user space on larger samples.
//!
//! Detectors decide by protocol structure, never by port. Each family lives in its own module
//! with a `detect(window) -> Option<Verdict>` function; adding a protocol is adding a module and
//! one line in [`classify_payload`], or in `services` for the service protocols (databases,
//! mail, directory, caches, VPN), which [`classify_payload`] runs after the core families.
//!
//! This code runs inside BPF programs, so it must never panic (the verifier rejects the panic
//! path's endless loop) and never call `memcmp`: it matches with slice patterns and
//! [`has_prefix`], and the lints below keep it that way. Reads at offsets the payload decides
//! (lengths, scan positions) go through [`byte_at`], [`be16_at`], [`bytes_at`] and
//! [`prefix_at`], which the verifier can bound.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::panic,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::arithmetic_side_effects
    )
)]

mod apps;
mod dns;

mod dtls;
mod http;
mod ike;
mod ipsec;

mod ntp;
mod preamble;
pub use preamble::{Preamble, client_preamble};

mod quic;
mod randomness;
pub use randomness::framed_in_clear;
mod services;

use randomness::ByteStats;

mod ssdp;
mod ssh;
mod tls;
mod wireguard;

use crate::net::{
    IPPROTO_AH, IPPROTO_ESP, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_IGMP, IPPROTO_TCP, IPPROTO_UDP,
};

/// Protocol family of a flow; the `u8` value is what the flow table stores.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Unknown = 0,
    Tls = 1,
    Ssh = 2,
    Http = 3,
    Dns = 4,
    Quic = 5,
    Dtls = 6,
    Ike = 7,
    Wireguard = 8,
    Ssdp = 9,
    Dnscrypt = 10,
    Ntp = 11,
    Redis = 12,
    Mongodb = 13,
    Mqtt = 14,
    Amqp = 15,
    Http2 = 16,
    IpsecEsp = 17,
    IpsecAh = 18,
    Openvpn = 19,
    Postgresql = 20,
    Mysql = 21,
    Smtp = 22,
    Imap = 23,
    Pop3 = 24,
    Ftp = 25,
    Telnet = 26,
    Ldap = 27,
    Memcached = 28,
    Kafka = 29,
    Snmp = 30,
    Syslog = 31,
    Xmpp = 32,
    Stun = 33,
    Icmp = 34,
    Igmp = 35,
    Sip = 36,
    Rtp = 37,
}

impl Protocol {
    /// Every protocol, for iteration in tests and reports.
    pub const ALL: [Protocol; 38] = [
        Protocol::Unknown,
        Protocol::Tls,
        Protocol::Ssh,
        Protocol::Http,
        Protocol::Dns,
        Protocol::Quic,
        Protocol::Dtls,
        Protocol::Ike,
        Protocol::Wireguard,
        Protocol::Ssdp,
        Protocol::Dnscrypt,
        Protocol::Ntp,
        Protocol::Redis,
        Protocol::Mongodb,
        Protocol::Mqtt,
        Protocol::Amqp,
        Protocol::Http2,
        Protocol::IpsecEsp,
        Protocol::IpsecAh,
        Protocol::Openvpn,
        Protocol::Postgresql,
        Protocol::Mysql,
        Protocol::Smtp,
        Protocol::Imap,
        Protocol::Pop3,
        Protocol::Ftp,
        Protocol::Telnet,
        Protocol::Ldap,
        Protocol::Memcached,
        Protocol::Kafka,
        Protocol::Snmp,
        Protocol::Syslog,
        Protocol::Xmpp,
        Protocol::Stun,
        Protocol::Icmp,
        Protocol::Igmp,
        Protocol::Sip,
        Protocol::Rtp,
    ];

    /// Lower-case family name, the `network.protocol.name` of events.
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Unknown => "unknown",
            Protocol::Tls => "tls",
            Protocol::Ssh => "ssh",
            Protocol::Http => "http",
            Protocol::Dns => "dns",
            Protocol::Quic => "quic",
            Protocol::Dtls => "dtls",
            Protocol::Ike => "ike",
            Protocol::Wireguard => "wireguard",
            Protocol::Ssdp => "ssdp",
            Protocol::Dnscrypt => "dnscrypt",
            Protocol::Ntp => "ntp",
            Protocol::Redis => "redis",
            Protocol::Mongodb => "mongodb",
            Protocol::Mqtt => "mqtt",
            Protocol::Amqp => "amqp",
            Protocol::Http2 => "http2",
            Protocol::IpsecEsp => "ipsec-esp",
            Protocol::IpsecAh => "ipsec-ah",
            Protocol::Openvpn => "openvpn",
            Protocol::Postgresql => "postgresql",
            Protocol::Mysql => "mysql",
            Protocol::Smtp => "smtp",
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
            Protocol::Ftp => "ftp",
            Protocol::Telnet => "telnet",
            Protocol::Ldap => "ldap",
            Protocol::Memcached => "memcached",
            Protocol::Kafka => "kafka",
            Protocol::Snmp => "snmp",
            Protocol::Syslog => "syslog",
            Protocol::Xmpp => "xmpp",
            Protocol::Stun => "stun",
            Protocol::Icmp => "icmp",
            Protocol::Igmp => "igmp",
            Protocol::Sip => "sip",
            Protocol::Rtp => "rtp",
        }
    }

    pub const fn from_u8(value: u8) -> Protocol {
        match value {
            1 => Protocol::Tls,
            2 => Protocol::Ssh,
            3 => Protocol::Http,
            4 => Protocol::Dns,
            5 => Protocol::Quic,
            6 => Protocol::Dtls,
            7 => Protocol::Ike,
            8 => Protocol::Wireguard,
            9 => Protocol::Ssdp,
            10 => Protocol::Dnscrypt,
            11 => Protocol::Ntp,
            12 => Protocol::Redis,
            13 => Protocol::Mongodb,
            14 => Protocol::Mqtt,
            15 => Protocol::Amqp,
            16 => Protocol::Http2,
            17 => Protocol::IpsecEsp,
            18 => Protocol::IpsecAh,
            19 => Protocol::Openvpn,
            20 => Protocol::Postgresql,
            21 => Protocol::Mysql,
            22 => Protocol::Smtp,
            23 => Protocol::Imap,
            24 => Protocol::Pop3,
            25 => Protocol::Ftp,
            26 => Protocol::Telnet,
            27 => Protocol::Ldap,
            28 => Protocol::Memcached,
            29 => Protocol::Kafka,
            30 => Protocol::Snmp,
            31 => Protocol::Syslog,
            32 => Protocol::Xmpp,
            33 => Protocol::Stun,
            34 => Protocol::Icmp,
            35 => Protocol::Igmp,
            36 => Protocol::Sip,
            37 => Protocol::Rtp,
            _ => Protocol::Unknown,
        }
    }
}

/// Whether a flow's payload is protected; the `u8` value is what the flow table stores.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Encryption {
    Unknown = 0,
    Plaintext = 1,
    Encrypted = 2,
}

impl Encryption {
    /// The `sealwatch.encryption` value of events.
    pub const fn name(self) -> &'static str {
        match self {
            Encryption::Unknown => "unknown",
            Encryption::Plaintext => "plaintext",
            Encryption::Encrypted => "encrypted",
        }
    }

    pub const fn from_u8(value: u8) -> Encryption {
        match value {
            1 => Encryption::Plaintext,
            2 => Encryption::Encrypted,
            _ => Encryption::Unknown,
        }
    }
}

/// What the classifier concluded about one direction's first payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub protocol: Protocol,
    pub encryption: Encryption,
}

impl Verdict {
    pub const UNKNOWN: Verdict = Verdict::new(Protocol::Unknown, Encryption::Unknown);

    pub const fn new(protocol: Protocol, encryption: Encryption) -> Verdict {
        Verdict {
            protocol,
            encryption,
        }
    }

    pub const fn is_known(self) -> bool {
        !matches!(self.protocol, Protocol::Unknown)
    }

    /// No protocol named, but the payload is indistinguishable from random.
    pub const fn is_fully_encrypted(self) -> bool {
        matches!(self.protocol, Protocol::Unknown)
            && matches!(self.encryption, Encryption::Encrypted)
    }

    /// Two sides' judgements of a flow no detector named: plaintext on either side makes the
    /// flow plaintext; otherwise random on either side makes it encrypted.
    pub const fn merge_unnamed(self, other: Verdict) -> Verdict {
        let encryption = match (self.encryption, other.encryption) {
            (Encryption::Plaintext, _) | (_, Encryption::Plaintext) => Encryption::Plaintext,
            (Encryption::Encrypted, _) | (_, Encryption::Encrypted) => Encryption::Encrypted,
            _ => Encryption::Unknown,
        };
        Verdict::new(Protocol::Unknown, encryption)
    }
}

/// What the classifier knows about the packet besides its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    /// IP protocol number (TCP or UDP).
    pub transport: u8,
    /// The packet's whole L4 payload length (the window may be shorter).
    pub payload_len: u32,
    /// The flow was seen from its start (a SYN, or any UDP flow). When it was not, a TLS
    /// record header alone is accepted: the handshake happened before we looked.
    pub start_seen: bool,
}

impl Context {
    pub const fn tcp(payload_len: u32, start_seen: bool) -> Context {
        Context {
            transport: IPPROTO_TCP,
            payload_len,
            start_seen,
        }
    }

    pub const fn udp(payload_len: u32) -> Context {
        Context {
            transport: IPPROTO_UDP,
            payload_len,
            start_seen: true,
        }
    }

    pub const fn is_udp(&self) -> bool {
        self.transport == IPPROTO_UDP
    }
}

/// Classifies the first payload bytes of one direction of a flow. `window` may be a prefix of
/// the payload and may be zero-padded past it (the kernel passes exactly
/// [`crate::CLASSIFY_WINDOW`] bytes); `ctx.payload_len` says how many bytes are real, and
/// detectors whose structure zeros could imitate check it.
#[inline(always)]
pub fn classify_payload(window: &[u8], ctx: &Context) -> Verdict {
    if ctx.payload_len == 0 {
        return Verdict::UNKNOWN;
    }
    if ctx.transport == IPPROTO_ESP || ctx.transport == IPPROTO_AH {
        return ipsec::detect(window, ctx);
    }
    // Control messages carry no encryption of their own.
    if ctx.transport == IPPROTO_ICMP || ctx.transport == IPPROTO_ICMPV6 {
        return Verdict::new(Protocol::Icmp, Encryption::Plaintext);
    }
    if ctx.transport == IPPROTO_IGMP {
        return Verdict::new(Protocol::Igmp, Encryption::Plaintext);
    }
    if ctx.transport != IPPROTO_TCP && ctx.transport != IPPROTO_UDP {
        return Verdict::UNKNOWN;
    }
    if let Some(v) = dns::dnscrypt_response(window, ctx) {
        return v;
    }
    if ctx.is_udp() {
        if dns::query_header(window, ctx) {
            // Read afresh for the name walk, as for the late `dns::detect` below.
            // SAFETY: reads a local.
            let window = unsafe { core::ptr::read_volatile(&window) };
            if let Some(v) = dns::detect(window, ctx) {
                return v;
            }
        }
        if let Some(v) = quic::detect(window, ctx) {
            return v;
        }
        if let Some(v) = dtls::detect(window, ctx) {
            return v;
        }
        if let Some(v) = ike::detect(window, ctx) {
            return v;
        }
        if let Some(v) = wireguard::detect(window, ctx) {
            return v;
        }
        if let Some(v) = ntp::detect(window, ctx) {
            return v;
        }
        if let Some(v) = ssdp::detect(window) {
            return v;
        }
    } else {
        if let Some(v) = tls::detect(window, ctx) {
            return v;
        }
        if let Some(v) = http::certain(window) {
            return v;
        }
        if let Some(v) = ssh::detect(window) {
            return v;
        }
        if let Some(v) = apps::redis(window) {
            return v;
        }
        if let Some(v) = apps::mongodb(window) {
            return v;
        }
        if let Some(v) = apps::mqtt(window) {
            return v;
        }
        if let Some(v) = apps::amqp(window, ctx) {
            return v;
        }
        if let Some(v) = apps::h2c(window) {
            return v;
        }
    }
    let service = if ctx.is_udp() {
        services::detect_udp(window, ctx)
    } else {
        services::detect_tcp(window, ctx)
    };
    if let Some(v) = service {
        return v;
    }
    // HTTP and DNS read the window afresh instead of reusing the bytes the core detectors
    // loaded: kept in registers across the service calls, those bytes carry what each core
    // detector learned about them, and the verifier would walk every service detector once per
    // path through the core ones. (A volatile reload of the slice hides that it is the same.)
    // SAFETY: reads a local.
    let window = unsafe { core::ptr::read_volatile(&window) };
    if let Some(v) = http::detect(window) {
        return v;
    }
    if let Some(v) = dns::detect(window, ctx) {
        return v;
    }
    Verdict::UNKNOWN
}

/// Names the service protocols of [`services`] (databases, mail, directory, caches, queues,
/// management, VPN) alone, without the core detectors. [`classify_payload`] runs them too, in
/// the kernel and in user space; this is for user space to ask about payloads the kernel did
/// not classify (a side it gave up on, an SNMP datagram after the first). Returns
/// [`Verdict::UNKNOWN`] when nothing matches.
pub fn classify_services(window: &[u8], ctx: &Context) -> Verdict {
    let named = if ctx.is_udp() {
        services::detect_udp(window, ctx)
    } else if ctx.transport == IPPROTO_TCP {
        services::detect_tcp(window, ctx)
    } else {
        None
    };
    named.unwrap_or(Verdict::UNKNOWN)
}

/// Big-endian u16 at `at`, if the window holds it.
#[inline(always)]
pub(crate) fn be16(w: &[u8], at: usize) -> Option<u16> {
    match (w.get(at), w.get(at.wrapping_add(1))) {
        (Some(&a), Some(&b)) => Some(u16::from_be_bytes([a, b])),
        _ => None,
    }
}

/// Big-endian u32 at `at`, if the window holds it.
#[inline(always)]
pub(crate) fn be32(w: &[u8], at: usize) -> Option<u32> {
    let hi = be16(w, at)?;
    let lo = be16(w, at.wrapping_add(2))?;
    Some((u32::from(hi) << 16) | u32::from(lo))
}

/// For a payload no detector named: plaintext if readable or low-entropy structured, encrypted
/// (`is_fully_encrypted`) if indistinguishable from random, unknown if too short to tell. See
/// `randomness.rs`.
pub fn judge_unnamed(window: &[u8], ctx: &Context) -> Verdict {
    randomness::judge(window, ctx, &ByteStats::of(window, ctx.payload_len))
}

/// `i`, read back from memory: a value LLVM cannot reuse or fold, for the accessors below.
///
/// Why they exist: for a read at an offset computed from the payload (a BER length, a scan
/// position), LLVM computes `window + i` once and reuses it for later reads at `i + 1`, `i + 2`,
/// or bounds-checks one copy of `i` and indexes with another. The BPF verifier bounds a pointer
/// into the window only from a check on the very register that went into it, so it sees an
/// offset it cannot bound and rejects the program (`invalid access to map value, value_size=64
/// off=259`). A volatile reload gives a fresh register right before the one bounds check, and
/// that register is the one added to the window pointer. Constant offsets need none of this.
#[inline(always)]
fn reloaded(i: usize) -> usize {
    // SAFETY: reads a local.
    unsafe { core::ptr::read_volatile(&i) }
}

/// The `N` bytes at `at`, if the window holds them all; one bounds check on a reloaded `at`
/// (see [`reloaded`]), so it is safe in the kernel at offsets the payload decides.
#[inline(always)]
pub(crate) fn bytes_at<const N: usize>(w: &[u8], at: usize) -> Option<[u8; N]> {
    let at = reloaded(at);
    if at > w.len().checked_sub(N)? {
        return None;
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = *w.get(at.wrapping_add(i))?;
    }
    Some(out)
}

/// The byte at `i`, if the window holds it: `w.get(i)` for an `i` the payload decides.
#[inline(always)]
pub(crate) fn byte_at(w: &[u8], i: usize) -> Option<u8> {
    w.get(reloaded(i)).copied()
}

/// [`be16`] for an `at` the payload decides.
#[inline(always)]
pub(crate) fn be16_at(w: &[u8], at: usize) -> Option<u16> {
    bytes_at(w, at).map(u16::from_be_bytes)
}

/// [`be32`] for an `at` the payload decides.
#[inline(always)]
pub(crate) fn be32_at(w: &[u8], at: usize) -> Option<u32> {
    bytes_at(w, at).map(u32::from_be_bytes)
}

/// `w[at..]` starts with `prefix`, for an `at` the payload decides: what
/// `has_prefix(w.get(at..)?, prefix)` says, without a slice whose start the verifier cannot
/// relate to its length.
#[inline(always)]
pub(crate) fn prefix_at(w: &[u8], at: usize, prefix: &[u8]) -> bool {
    prefix_at_by(w, at, prefix, |b, expected| b == expected)
}

/// [`prefix_at`] with `eq(byte, expected)` as the byte comparison.
#[inline(always)]
pub(crate) fn prefix_at_by(
    w: &[u8],
    at: usize,
    prefix: &[u8],
    eq: impl Fn(u8, u8) -> bool,
) -> bool {
    let at = reloaded(at);
    match w.len().checked_sub(prefix.len()) {
        Some(last) if at <= last => {}
        _ => return false,
    }
    for (i, &expected) in prefix.iter().enumerate() {
        match w.get(at.wrapping_add(i)) {
            Some(&b) if eq(b, expected) => {}
            _ => return false,
        }
    }
    true
}

/// `window` starts with `prefix`. A hand-written loop because slice equality lowers to `bcmp`,
/// which BPF programs cannot call; with a constant `prefix` it unrolls to byte compares.
#[inline(always)]
pub(crate) fn has_prefix(window: &[u8], prefix: &[u8]) -> bool {
    for (i, expected) in prefix.iter().enumerate() {
        if window.get(i) != Some(expected) {
            return false;
        }
    }
    true
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Test fixtures are hex strings copied from captures.
    pub(crate) fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(s.get(i..i + 2).unwrap_or("zz"), 16)
                    .unwrap_or_else(|e| panic!("{s}: {e}"))
            })
            .collect()
    }

    #[test]
    fn protocol_and_encryption_round_trip_through_u8() {
        for p in Protocol::ALL {
            assert_eq!(Protocol::from_u8(p as u8), p);
        }
        for e in [
            Encryption::Unknown,
            Encryption::Plaintext,
            Encryption::Encrypted,
        ] {
            assert_eq!(Encryption::from_u8(e as u8), e);
        }
    }

    #[test]
    fn unnamed_sides_merge_towards_plaintext() {
        let readable = Verdict::new(Protocol::Unknown, Encryption::Plaintext);
        let random = Verdict::new(Protocol::Unknown, Encryption::Encrypted);
        assert_eq!(random.merge_unnamed(readable), readable);
        assert_eq!(Verdict::UNKNOWN.merge_unnamed(random), random);
        assert_eq!(
            Verdict::UNKNOWN.merge_unnamed(Verdict::UNKNOWN),
            Verdict::UNKNOWN
        );
        assert!(random.is_fully_encrypted() && !readable.is_fully_encrypted());
    }

    #[test]
    fn prefix_needs_every_byte() {
        assert!(has_prefix(b"SSH-2.0-x", b"SSH-"));
        assert!(!has_prefix(b"SSH", b"SSH-"));
        assert!(!has_prefix(b"SSX-", b"SSH-"));
        assert!(has_prefix(b"", b""));
    }

    /// `http::certain` runs before the TCP detectors that follow TLS; none of them may claim
    /// what it names, or the shortcut would change verdicts. Request lines of every method,
    /// status lines, with tails of every byte value and at every length a window can have.
    #[test]
    fn http_shortcut_takes_nothing_from_the_detectors_it_skips() {
        let heads: &[&[u8]] = &[
            b"GET /",
            b"POST /api",
            b"PUT /k",
            b"PATCH /",
            b"HEAD /",
            b"DELETE /x",
            b"OPTIONS *",
            b"CONNECT /",
            b"TRACE /",
            b"HTTP/1.0 200",
            b"HTTP/1.1 404",
        ];
        let mut named = 0;
        for head in heads {
            for fill in 0..=255u8 {
                for len in head.len()..=crate::CLASSIFY_WINDOW {
                    let mut w = head.to_vec();
                    w.resize(len, fill);
                    for payload_len in [len as u32, 1400, 65_000] {
                        let ctx = Context::tcp(payload_len, true);
                        if http::certain(&w).is_none() {
                            continue;
                        }
                        named += 1;
                        let skipped = [
                            ssh::detect(&w),
                            apps::redis(&w),
                            apps::mongodb(&w),
                            apps::mqtt(&w),
                            apps::amqp(&w, &ctx),
                            apps::h2c(&w),
                            services::detect_tcp(&w, &ctx),
                        ];
                        assert!(
                            skipped.iter().all(Option::is_none),
                            "{:?} claimed by {skipped:?}",
                            String::from_utf8_lossy(&w)
                        );
                    }
                }
            }
        }
        assert!(named > 100_000, "{named} windows named");
    }

    /// Stub-resolver queries, with every transaction id, names of every label layout the
    /// window holds, the EDNS record or not, cut at every length, are DNS. With DNS last, NTP's
    /// loose header check claimed the ones whose id and flags read as an NTP header (id
    /// 0x0906 with RD set: version 1, mode 1, stratum 6, poll 1), about one in 200.
    #[test]
    fn dns_queries_are_dns_whatever_their_id() {
        let names: &[&[&[u8]]] = &[
            &[],
            &[b"db"],
            &[b"redis", b"cache", b"svc", b"cluster", b"local"],
            &[b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h", b"i", b"j"],
            &[b"_grpc", b"_tcp", b"x-1"],
            &[b"ip-10-0-3-17", b"ec2", b"internal"],
            &[b"0123456789abcdef0123456789abcdef0123456789abcdef"],
        ];
        let dns = Verdict::new(Protocol::Dns, Encryption::Plaintext);
        let mut checked = 0u32;
        for id in (0..=u16::MAX).step_by(7) {
            for (n, labels) in names.iter().enumerate() {
                let mut w = id.to_be_bytes().to_vec();
                // RD set, or not; one question; the EDNS record on odd names.
                let flags: u16 = if id & 1 == 0 { 0x0100 } else { 0x0000 };
                w.extend_from_slice(&flags.to_be_bytes());
                w.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, (n & 1) as u8]);
                for label in *labels {
                    w.push(label.len() as u8);
                    w.extend_from_slice(label);
                }
                w.extend_from_slice(&[0, 0, 28, 0, 1]);
                let full = w.len();
                for len in 13..=full.min(crate::CLASSIFY_WINDOW) {
                    let ctx = Context::udp(full as u32);
                    let window = &w[..len];
                    assert_eq!(classify_payload(window, &ctx), dns, "{window:02x?}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 1_000_000, "{checked} windows checked");
    }

    #[test]
    fn empty_and_random_payloads_are_unknown() {
        let noise = [0x8f, 0x11, 0xe2, 0x00, 0x7a, 0x33, 0x90];
        for ctx in [
            Context::tcp(7, true),
            Context::tcp(7, false),
            Context::udp(7),
        ] {
            assert_eq!(classify_payload(b"", &ctx), Verdict::UNKNOWN);
            assert_eq!(classify_payload(&noise, &ctx), Verdict::UNKNOWN);
            assert_eq!(classify_payload(b"hello there\n", &ctx), Verdict::UNKNOWN);
        }
    }
}
