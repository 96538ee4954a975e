//! What user space adds to the kernel's verdict once it has each side's first bytes: the TLS
//! handshake's details, in-band upgrades to TLS (STARTTLS, PostgreSQL SSLRequest, proxies and
//! tunnels that carry TLS after a plaintext preamble, STUN before DTLS), and a judgement of
//! flows no detector named.

use sealwatch_common::{
    Context, Encryption, Protocol, Verdict,
    classify::framed_in_clear,
    classify_payload, classify_services, judge_unnamed,
    net::{IPPROTO_TCP, IPPROTO_UDP},
};

use sealwatch_inspect::{
    quic::inspect_quic,
    tls::{TlsDetails, inspect_dtls, inspect_tls},
};

use std::cell::Cell;

use crate::streams::{SideStream, Streams};

/// Bytes the kernel classifier sees of a side's first payload.
const WINDOW: usize = sealwatch_common::CLASSIFY_WINDOW;
/// A client's first segment this short, unnamed, is a first message cut into pieces.
const TINY_SEGMENT: usize = 8;

/// The verdict as reported, with what deep parsing found.
#[derive(Debug, Clone, PartialEq)]
pub struct Findings {
    pub protocol: Protocol,
    pub encryption: Encryption,
    /// A plaintext protocol switched to TLS in-band.
    pub starttls: bool,
    /// Where each side's TLS (or DTLS) starts in its stream, when it does.
    pub tls_start: [Option<usize>; 2],
    /// The handshake's details (TLS, DTLS, or TLS after an upgrade).
    pub tls: Option<Box<TlsDetails>>,
    /// Judged encrypted first, then a later packet showed plaintext ([`plaintext_mid_flow`]).
    pub plaintext_after_encryption: bool,
}

impl Findings {
    /// The kernel's verdict, nothing added.
    pub fn plain(v: Verdict) -> Findings {
        Findings {
            protocol: v.protocol,
            encryption: v.encryption,
            starttls: false,
            tls_start: [None, None],
            tls: None,
            plaintext_after_encryption: false,
        }
    }

    /// Reads the handshake the findings point at. Runs once, when the flow is reported.
    pub fn read_handshake(&mut self, streams: &Streams, client: u8) {
        let (cs, ss) = (streams.side(client), streams.side(client ^ 1));
        let [c, s] = {
            let i = usize::from(client & 1);
            [self.tls_start[i], self.tls_start[i ^ 1]]
        };
        // QUIC Initial packets are encrypted with keys anyone can derive from the client's
        // connection ID: decrypted, they hold the same hellos as TLS.
        let datagram_inspector = match self.protocol {
            Protocol::Dtls => Some(inspect_dtls as fn(&[&[u8]], &[&[u8]]) -> _),
            Protocol::Quic => Some(inspect_quic as fn(&[&[u8]], &[&[u8]]) -> _),
            _ => None,
        };
        self.tls = match datagram_inspector {
            Some(inspect) => {
                let c: Vec<&[u8]> = cs.datagrams().collect();
                let s: Vec<&[u8]> = ss.datagrams().collect();
                inspect(&c, &s)
            }
            None if c.is_some() => {
                fn from(b: &[u8], at: Option<usize>) -> &[u8] {
                    at.and_then(|at| b.get(at..)).unwrap_or(&[])
                }
                inspect_tls(from(cs.bytes(), c), from(ss.bytes(), s))
            }
            None => None,
        }
        .map(Box::new);
    }
}

/// Whether the findings can still change as more bytes arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Yes,
    /// More bytes could change the findings; report when they come or the hold expires.
    Waiting,
}

/// Protocols that can switch to TLS (or DTLS) later in the same flow, so their plaintext
/// verdict holds only once the upgrade did not come.
pub const fn may_upgrade(p: Protocol) -> bool {
    matches!(
        p,
        Protocol::Smtp
            | Protocol::Imap
            | Protocol::Pop3
            | Protocol::Ftp
            | Protocol::Ldap
            | Protocol::Postgresql
            | Protocol::Mysql
            | Protocol::Xmpp
            | Protocol::Stun
            | Protocol::Http
            | Protocol::Unknown
    )
}

/// What [`examine`] concluded from one side's first bytes, kept with them (in the side's
/// [`SideStream`]): a flow held for more bytes is examined again on every sample, and by then
/// its sides' first bytes seldom change. What a conclusion reads ([`first_bytes`]) only grows,
/// so one drawn from `n` bytes holds for as long as there are still exactly `n`.
#[derive(Debug, Default, Clone)]
pub struct SideMemo {
    /// [`classify_services`] over the side's first message, and (its length, the bytes of it
    /// there were).
    service: Cell<Option<((u32, usize), Verdict)>>,
    /// [`classify_payload`] over the first window of a TCP side, and the length it saw.
    named: Cell<Option<(usize, Verdict)>>,
    /// [`judge_unnamed`] over the side's first window, and the length it saw.
    judged: Cell<Option<(usize, Verdict)>>,
    /// Datagrams at the start of the side that are not DTLS (none before them is).
    not_dtls: Cell<usize>,
}

impl SideMemo {
    fn judged_at(&self, len: usize) -> bool {
        self.judged.get().is_some_and(|(at, _)| at == len)
    }
}

/// `f`'s answer for a side whose bytes measure `len`, from `cell` if it was asked at that
/// length.
fn memo<L: Copy + PartialEq>(
    cell: &Cell<Option<(L, Verdict)>>,
    len: L,
    f: impl FnOnce() -> Verdict,
) -> Verdict {
    if let Some((at, v)) = cell.get()
        && at == len
    {
        return v;
    }
    let v = f();
    cell.set(Some((len, v)));
    v
}

/// Examines a flow. `client` is the flow-key side of the client; `budget` the per-side sample
/// size (a side that reached it will not grow).
pub fn examine(
    proto: u8,
    kernel: Verdict,
    streams: &Streams,
    client: u8,
    budget: u64,
) -> (Findings, Settled) {
    let mut f = Findings::plain(kernel);
    let (cs, ss) = (streams.side(client), streams.side(client ^ 1));
    let server_may_grow = ss.may_grow(budget);

    match kernel.protocol {
        Protocol::Tls => {
            f.tls_start = [Some(0), Some(0)];
            // The ServerHello fixes version and cipher.
            let settled = server_hello_at(ss.bytes()).is_some() || !server_may_grow;
            return (
                f,
                if settled {
                    Settled::Yes
                } else {
                    Settled::Waiting
                },
            );
        }
        // The server answers once the client's whole hello (maybe two datagrams) is in.
        Protocol::Dtls | Protocol::Quic => {
            let settled = !ss.is_empty() || !server_may_grow;
            return (
                f,
                if settled {
                    Settled::Yes
                } else {
                    Settled::Waiting
                },
            );
        }
        _ => {}
    }

    let mut kernel = kernel;
    if kernel.protocol == Protocol::Unknown
        && let Some(named) = name_service(cs, ss, proto)
    {
        kernel = named;
        f.protocol = named.protocol;
        f.encryption = named.encryption;
    }
    // Named, but its first message cannot say whether the rest is encrypted (an SNMPv3 engine
    // discovery precedes both authPriv and authNoPriv sessions): the later datagrams decide.
    if kernel.is_known() && kernel.encryption == Encryption::Unknown && proto == IPPROTO_UDP {
        let later = [cs, ss].iter().find_map(|s| {
            s.datagrams().skip(1).find_map(|d| {
                let v = classify_services(&window_of(d), &Context::udp(d.len() as u32));
                (v.protocol == kernel.protocol && v.encryption != Encryption::Unknown).then_some(v)
            })
        });
        if let Some(v) = later {
            f.encryption = v.encryption;
            return (f, Settled::Yes);
        }
        let settled = !(cs.may_grow(budget) || ss.may_grow(budget));
        return (
            f,
            if settled {
                Settled::Yes
            } else {
                Settled::Waiting
            },
        );
    }
    // The kernel names a side from its first segment and gives up after a few unnamed ones:
    // a first message cut into tiny segments (an evasion, or a chatty client) is named here
    // from the joined stream.
    let mut split = false;
    if kernel.protocol == Protocol::Unknown && proto == IPPROTO_TCP {
        let named = [cs, ss].iter().find_map(|s| {
            let v = memo(&s.memo().named, first_bytes(s, proto).len(), || {
                first_window(s, proto).map_or(Verdict::UNKNOWN, |(window, len)| {
                    classify_payload(&window, &Context::tcp(len, true))
                })
            });
            v.is_known().then_some(v)
        });
        match named {
            Some(v) => {
                kernel = v;
                f.protocol = v.protocol;
                f.encryption = v.encryption;
            }
            None => {
                split = cs
                    .first_packet()
                    .is_some_and(|(_, first)| first.len() < TINY_SEGMENT)
                    && cs.bytes().len() < WINDOW
                    && cs.may_grow(budget);
            }
        }
    }
    if kernel.protocol == Protocol::Unknown {
        // Nothing named either side: judge each side's first bytes.
        // Either side judged plaintext makes the flow so: a side already judged at its
        // length goes first, and the other is judged only if it can still matter.
        let mut sides = [cs, ss];
        sides.sort_by_key(|s| !s.memo().judged_at(first_bytes(s, proto).len()));
        let mut judged = Verdict::UNKNOWN;
        for s in sides.iter().filter(|s| !s.is_empty()) {
            if judged.encryption == Encryption::Plaintext {
                break;
            }
            let len = first_bytes(s, proto).len();
            judged = judged.merge_unnamed(memo(&s.memo().judged, len, || judge_first(s, proto)));
        }
        f.encryption = judged.encryption;
        if f.encryption == Encryption::Encrypted
            && [cs, ss].iter().any(|s| first_packet_framed(s, proto))
        {
            f.encryption = Encryption::Plaintext;
        }
        // Judged, but wait for more of a first message that came in tiny pieces: it may still
        // name itself (the deadline reports the judgement).
        if split {
            return (f, Settled::Waiting);
        }
    }

    if !(may_upgrade(kernel.protocol) && f.encryption != Encryption::Encrypted) {
        return (f, Settled::Yes);
    }
    let client_may_grow = cs.may_grow(budget);
    // The notice of a packet comes before its sample: wait for the first bytes.
    if cs.is_empty() && client_may_grow {
        return (f, Settled::Waiting);
    }
    // Of HTTP, only a proxy tunnel (CONNECT) goes on to carry TLS.
    if kernel.protocol == Protocol::Http && !cs.bytes().starts_with(b"CONNECT ") {
        return (f, Settled::Yes);
    }
    match proto {
        IPPROTO_TCP => {
            let hello = client_hello_after_preamble(cs.bytes());
            match hello {
                Some(at) => {
                    let answer = server_hello_at(ss.bytes());
                    if answer.is_none() && server_may_grow {
                        return (f, Settled::Waiting);
                    }
                    // A ClientHello answered by a ServerHello is an upgrade; an unanswered one
                    // was refused (or answered beyond the sample: calling a plaintext flow
                    // encrypted is the worse mistake).
                    if answer.is_some() {
                        f.encryption = Encryption::Encrypted;
                        f.starttls = true;
                        if f.protocol == Protocol::Unknown || f.protocol == Protocol::Http {
                            f.protocol = Protocol::Tls;
                        }
                        let client_index = usize::from(client & 1);
                        f.tls_start[client_index] = Some(at);
                        f.tls_start[client_index ^ 1] = answer;
                    }
                    (f, Settled::Yes)
                }
                None if client_may_grow => (f, Settled::Waiting),
                None => (f, Settled::Yes),
            }
        }
        IPPROTO_UDP => {
            // STUN (or anything unnamed) first, then DTLS on the same 5-tuple. Every datagram
            // counts, each side's first too: the kernel names the flow from whichever side
            // spoke first, so the other side's first datagram may be the DTLS one.
            let dtls = [cs, ss].iter().any(|s| has_dtls_datagram(s));
            if dtls {
                f.protocol = Protocol::Dtls;
                f.encryption = Encryption::Encrypted;
                return (f, Settled::Yes);
            }
            // STUN checks can go on for a while before DTLS starts (ICE tries its candidate
            // pairs first): wait while either side may still send, the hold bounds it.
            if client_may_grow || server_may_grow {
                return (f, Settled::Waiting);
            }
            (f, Settled::Yes)
        }
        _ => (f, Settled::Yes),
    }
}

/// The service detectors over each side's first packet, the client's first. The kernel runs
/// them too (they are part of `classify_payload`), but never on a side it did not classify: one
/// that first spoke after the other had given up (`UNKNOWN_AFTER_PAYLOAD_PACKETS`). What it
/// left unnamed may still be a database, mail, directory, cache, queue, management or VPN
/// protocol.
fn name_service(cs: &SideStream, ss: &SideStream, proto: u8) -> Option<Verdict> {
    [cs, ss].iter().find_map(|s| {
        let (len, bytes) = s.first_message()?;
        let v = memo(&s.memo().service, (len, bytes.len()), || {
            let ctx = Context {
                transport: proto,
                payload_len: len,
                start_seen: true,
            };
            classify_services(&window_of(bytes), &ctx)
        });
        v.is_known().then_some(v)
    })
}

/// [`judge_unnamed`] over a side's first payload (a side with none is `UNKNOWN`).
fn judge_first(s: &SideStream, proto: u8) -> Verdict {
    first_window(s, proto).map_or(Verdict::UNKNOWN, |(window, len)| {
        let ctx = Context {
            transport: proto,
            payload_len: len,
            start_seen: true,
        };
        judge_unnamed(&window, &ctx)
    })
}

/// Whether any of a side's datagrams is DTLS. Datagrams only arrive, so each is classified
/// once: later calls start after those already found not to be.
fn has_dtls_datagram(s: &SideStream) -> bool {
    let checked = s.memo().not_dtls.get();
    let is_dtls = |d: &[u8]| {
        classify_payload(&window_of(d), &Context::udp(d.len() as u32)).protocol == Protocol::Dtls
    };
    let found = s.datagrams().skip(checked).position(is_dtls);
    let total = s.datagrams().count();
    s.memo().not_dtls.set(found.map_or(total, |i| checked + i));
    found.is_some()
}

/// A side's first payload as the kernel's classifier window, and its length.
/// For TCP the stream's first bytes (a first packet of a few bytes says little), for
/// datagrams the first one.
fn first_window(s: &SideStream, proto: u8) -> Option<([u8; WINDOW], u32)> {
    let first = first_bytes(s, proto);
    if first.is_empty() {
        return None;
    }
    Some((window_of(first), first.len() as u32))
}

/// The bytes [`first_window`] reads: all of a TCP side, a datagram side's first datagram.
fn first_bytes(s: &SideStream, proto: u8) -> &[u8] {
    if proto == IPPROTO_TCP {
        s.bytes()
    } else {
        s.first_message().map_or(&[], |(_, first)| first)
    }
}

/// A TCP side whose first packet starts with a length field matching it shows its framing in
/// the clear (see `framed_in_clear`): the judgement over the joined stream cannot see that.
fn first_packet_framed(s: &SideStream, proto: u8) -> bool {
    proto == IPPROTO_TCP
        && s.first_packet()
            .is_some_and(|(len, bytes)| framed_in_clear(&window_of(bytes), len))
}

/// Whether a later packet of a flow judged encrypted shows plaintext: the kernel re-samples a
/// few packets a flow ([`sealwatch_common::flow::resample_due`]) and sends their first bytes.
/// A TLS record header (content type 20-23, version 3.1-3.4) says the record layer goes on;
/// otherwise the bytes must name a plaintext protocol (the classifier, as on a first packet) or
/// read as text (at least 95% printable over 16 bytes or more). Ciphertext, including a segment
/// that starts inside a record, is random, and 16 random bytes are all printable about once in
/// 6 * 10^6; a protocol's binary framing in clear (SSH's packet length) is not text either.
/// Returns the plaintext verdict (the protocol when named).
pub fn plaintext_mid_flow(bytes: &[u8], proto: u8, payload_len: u32) -> Option<Verdict> {
    const MIN_TEXT: usize = 16;
    if let [content, 3, minor, ..] = bytes
        && (20..=23).contains(content)
        && (1..=4).contains(minor)
    {
        return None;
    }
    let ctx = Context {
        transport: proto,
        payload_len,
        // Later packets: a bare record header does not count as TLS.
        start_seen: true,
    };
    let named = classify_payload(&window_of(bytes), &ctx);
    if named.encryption == Encryption::Plaintext && named.protocol != Protocol::Unknown {
        return Some(named);
    }
    let text = bytes
        .iter()
        .filter(|&&b| (0x20..0x7f).contains(&b) || matches!(b, b'\r' | b'\n' | b'\t'))
        .count();
    (bytes.len() >= MIN_TEXT && text * 100 >= bytes.len() * 95)
        .then_some(Verdict::new(Protocol::Unknown, Encryption::Plaintext))
}

fn window_of(bytes: &[u8]) -> [u8; WINDOW] {
    let mut w = [0u8; WINDOW];
    let n = bytes.len().min(WINDOW);
    w[..n].copy_from_slice(&bytes[..n]);
    w
}

/// A TLS handshake record carrying a message of `msg_type` starts at `b[i..]`: content type 22,
/// version 3.x, a record length that fits a handshake, the message type, and a 3.x hello
/// version. Eleven constrained bytes: plaintext rarely looks like this by chance.
fn handshake_at(b: &[u8], i: usize, msg_type: u8) -> bool {
    let Some(h) = b.get(i..i + 11) else {
        return false;
    };
    let record_len = u16::from_be_bytes([h[3], h[4]]);
    let msg_len = u32::from_be_bytes([0, h[6], h[7], h[8]]);
    h[0] == TLS_HANDSHAKE
        && h[1] == 0x03
        && h[2] <= 0x04
        && (4..=16_384 + 2048).contains(&record_len)
        && h[5] == msg_type
        && msg_len > 0
        && msg_len < 1 << 20
        && h[9] == 0x03
        && h[10] <= 0x04
}

/// Offset of a ClientHello that follows some plaintext (a STARTTLS command, an SSLRequest, a
/// proxy header), if any.
fn client_hello_after_preamble(b: &[u8]) -> Option<usize> {
    handshake_from(b, 1, 1)
}

/// Offset of the first ServerHello in `b`, at its start or after a preamble.
fn server_hello_at(b: &[u8]) -> Option<usize> {
    handshake_from(b, 0, 2)
}

/// The first offset from `from` on where [`handshake_at`] holds. Only a handshake content
/// type byte can start one: the search jumps from one to the next rather than checking the
/// eleven bytes at every offset (held verdicts look again at each new sample).
fn handshake_from(b: &[u8], from: usize, msg_type: u8) -> Option<usize> {
    let mut i = from;
    while let Some(skip) = memchr::memchr(TLS_HANDSHAKE, b.get(i..)?) {
        i += skip;
        if handshake_at(b, i, msg_type) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The content type of TLS handshake records.
const TLS_HANDSHAKE: u8 = 0x16;

#[cfg(test)]
mod tests {
    use sealwatch_common::flow::FlowKey;

    use super::*;
    use crate::events::Sample;

    /// The first bytes of a TLS 1.2 ClientHello and ServerHello record.
    const CLIENT_HELLO: &[u8] = &[
        0x16, 0x03, 0x01, 0x00, 0xf4, 0x01, 0x00, 0x00, 0xf0, 0x03, 0x03, 0x11, 0x22,
    ];
    const SERVER_HELLO: &[u8] = &[
        0x16, 0x03, 0x03, 0x00, 0x5a, 0x02, 0x00, 0x00, 0x56, 0x03, 0x03, 0x33, 0x44,
    ];

    fn streams(tcp: bool, sides: [&[&[u8]]; 2]) -> Streams {
        let mut s = Streams::new(tcp);
        for (side, packets) in sides.iter().enumerate() {
            let mut offset = 0;
            for p in packets.iter() {
                s.add(&sample(side as u8, offset, p));
                offset += p.len();
            }
        }
        s
    }

    /// A STUN binding request.
    const STUN_BINDING: &[u8] = &[
        0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ];

    /// A DTLS 1.2 ClientHello record, its body filler.
    fn dtls_client_hello() -> Vec<u8> {
        let mut dtls = vec![
            0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x8c, 0x01, 0, 0, 0x80, 0, 0, 0, 0, 0, 0,
            0, 0x80, 0xfe, 0xfd,
        ];
        dtls.resize(0x8c + 13, 0x55);
        dtls
    }

    /// A sample of `data` at `offset` in `side`'s stream (sequence numbers from 1000).
    fn sample(side: u8, offset: usize, data: &[u8]) -> Sample {
        Sample {
            key: FlowKey::default(),
            side,
            ifindex: 0,
            seq: 1000 + offset as u32,
            offset: offset as u32,
            ts_ns: 0,
            payload_len: data.len() as u32,
            data: data.to_vec(),
        }
    }

    fn smtp() -> Verdict {
        Verdict::new(Protocol::Smtp, Encryption::Plaintext)
    }

    #[test]
    fn smtp_starttls_is_an_upgrade() {
        let client: &[&[u8]] = &[b"EHLO client\r\n", b"STARTTLS\r\n", CLIENT_HELLO];
        let server: &[&[u8]] = &[
            b"220 mx ESMTP\r\n",
            b"250-mx\r\n250 STARTTLS\r\n",
            b"220 2.0.0 Ready to start TLS\r\n",
            SERVER_HELLO,
        ];
        let s = streams(true, [client, server]);
        let (f, settled) = examine(IPPROTO_TCP, smtp(), &s, 0, 2048);
        assert_eq!(settled, Settled::Yes);
        assert_eq!(
            (f.protocol, f.encryption, f.starttls),
            (Protocol::Smtp, Encryption::Encrypted, true)
        );
        assert_eq!(f.tls_start, [Some(23), Some(66)]);
    }

    #[test]
    fn smtp_without_upgrade_waits_then_stays_plaintext() {
        let client: &[&[u8]] = &[b"EHLO client\r\n", b"MAIL FROM:<a@b>\r\n"];
        let server: &[&[u8]] = &[b"220 mx ESMTP\r\n"];
        let s = streams(true, [client, server]);
        let (f, settled) = examine(IPPROTO_TCP, smtp(), &s, 0, 2048);
        assert_eq!(settled, Settled::Waiting);
        assert_eq!(f.encryption, Encryption::Plaintext);
        // Once the client side's sample budget is spent, no upgrade is coming.
        let (f, settled) = examine(IPPROTO_TCP, smtp(), &s, 0, 20);
        assert_eq!(
            (settled, f.encryption, f.starttls),
            (Settled::Yes, Encryption::Plaintext, false)
        );
    }

    #[test]
    fn a_refused_upgrade_stays_plaintext() {
        // PostgreSQL SSLRequest answered 'N', then a ClientHello-looking message nobody answers.
        let client: &[&[u8]] = &[&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f], CLIENT_HELLO];
        let server: &[&[u8]] = &[b"N", b"E\0\0\0\x10SFATAL\0\0"];
        let s = streams(true, [client, server]);
        let pg = Verdict::new(Protocol::Postgresql, Encryption::Plaintext);
        let (f, settled) = examine(IPPROTO_TCP, pg, &s, 0, 14);
        assert_eq!(
            (settled, f.encryption, f.starttls),
            (Settled::Yes, Encryption::Plaintext, false)
        );
    }

    #[test]
    fn hellos_are_found_where_a_check_at_every_offset_finds_them() {
        let naive = |b: &[u8], from: usize, t: u8| (from..b.len()).find(|&i| handshake_at(b, i, t));
        // Preambles full of record-type bytes, hellos at every offset, cut hellos.
        for hello in [CLIENT_HELLO, SERVER_HELLO] {
            for pad in 0..24 {
                let mut b: Vec<u8> = (0..pad)
                    .map(|i| if i % 3 == 0 { 0x16 } else { 0x03 })
                    .collect();
                b.extend_from_slice(hello);
                for cut in [b.len(), b.len() - 1, pad + 3] {
                    let b = &b[..cut];
                    for (from, t) in [(0, 1), (1, 1), (0, 2)] {
                        assert_eq!(handshake_from(b, from, t), naive(b, from, t), "{pad} {cut}");
                    }
                }
            }
        }
    }

    #[test]
    fn tls_waits_for_the_server_hello() {
        let hello = Verdict::new(Protocol::Tls, Encryption::Encrypted);
        let s = streams(true, [&[CLIENT_HELLO], &[]]);
        assert_eq!(examine(IPPROTO_TCP, hello, &s, 0, 2048).1, Settled::Waiting);
        let s = streams(true, [&[CLIENT_HELLO], &[SERVER_HELLO]]);
        assert_eq!(examine(IPPROTO_TCP, hello, &s, 0, 2048).1, Settled::Yes);
    }

    #[test]
    fn stun_then_dtls_is_dtls() {
        let (stun, dtls) = (STUN_BINDING, dtls_client_hello());
        let s = streams(false, [&[stun, &dtls], &[stun]]);
        let v = Verdict::new(Protocol::Stun, Encryption::Plaintext);
        let (f, settled) = examine(IPPROTO_UDP, v, &s, 0, 2048);
        assert_eq!(settled, Settled::Yes);
        assert_eq!(
            (f.protocol, f.encryption),
            (Protocol::Dtls, Encryption::Encrypted)
        );
    }

    #[test]
    fn unnamed_flows_are_judged_from_their_first_bytes() {
        let text: &[u8] = b"HELLO this is a readable protocol message\r\n";
        let s = streams(true, [&[text], &[text]]);
        let (f, _) = examine(IPPROTO_TCP, Verdict::UNKNOWN, &s, 0, 2048);
        assert_eq!(
            (f.protocol, f.encryption),
            (Protocol::Unknown, Encryption::Plaintext)
        );
    }

    #[test]
    fn later_packets_of_encrypted_flows_are_checked_for_plaintext() {
        use super::plaintext_mid_flow;
        // TLS 1.3 application data, and a segment that starts inside a record (random bytes
        // from a fixed xorshift, not all printable).
        let mut record = vec![23, 3, 3, 0x40, 0];
        record.extend([0x9c; 59]);
        assert_eq!(plaintext_mid_flow(&record, IPPROTO_TCP, 1400), None);
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let random: Vec<u8> = (0..64)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert_eq!(plaintext_mid_flow(&random, IPPROTO_TCP, 1400), None);
        // SSH's binary packet: its length in clear, then ciphertext.
        let mut ssh = vec![0, 0, 0, 0x2c];
        ssh.extend(&random[..60]);
        assert_eq!(plaintext_mid_flow(&ssh, IPPROTO_TCP, 48), None);

        let http = b"GET /after-the-handshake HTTP/1.1\r\nHost: svc\r\n\r\n";
        assert_eq!(
            plaintext_mid_flow(http, IPPROTO_TCP, http.len() as u32),
            Some(Verdict::new(Protocol::Http, Encryption::Plaintext))
        );
        let text = b"user=alice;balance=1200;note=transfer approved\n";
        assert_eq!(
            plaintext_mid_flow(text, IPPROTO_TCP, text.len() as u32),
            Some(Verdict::new(Protocol::Unknown, Encryption::Plaintext))
        );
        // Too short to call text.
        assert_eq!(plaintext_mid_flow(b"ok\n", IPPROTO_TCP, 3), None);
    }

    /// Feeds `packets` (side, bytes) one by one and examines after each: a flow examined all
    /// along (its memo warm) must read exactly as one examined once over the same bytes.
    fn examined_as_fresh(tcp: bool, kernel: Verdict, packets: &[(u8, &[u8])]) -> Findings {
        let proto = if tcp { IPPROTO_TCP } else { IPPROTO_UDP };
        let nth = |i: usize| {
            let (side, data) = packets[i];
            let offset = packets[..i]
                .iter()
                .filter(|(s, _)| *s == side)
                .map(|(_, d)| d.len())
                .sum();
            sample(side, offset, data)
        };
        let mut warm = Streams::new(tcp);
        let mut last = None;
        for i in 0..packets.len() {
            warm.add(&nth(i));
            let mut fresh = Streams::new(tcp);
            for j in 0..=i {
                fresh.add(&nth(j));
            }
            let seen = examine(proto, kernel, &warm, 0, 2048);
            assert_eq!(
                seen,
                examine(proto, kernel, &fresh, 0, 2048),
                "after packet {i}"
            );
            last = Some(seen.0);
        }
        last.expect("packets")
    }

    #[test]
    fn a_flow_examined_on_every_sample_reads_as_one_examined_once() {
        let (stun, dtls) = (STUN_BINDING, dtls_client_hello());
        // DTLS after a few STUN checks each way: found on the datagram that brings it.
        let stun_v = Verdict::new(Protocol::Stun, Encryption::Plaintext);
        let f = examined_as_fresh(
            false,
            stun_v,
            &[(0, stun), (1, stun), (0, stun), (1, stun), (0, &dtls)],
        );
        assert_eq!(
            (f.protocol, f.encryption),
            (Protocol::Dtls, Encryption::Encrypted)
        );

        // Unnamed TCP: random-looking bytes from the server, then a client whose first message
        // comes in tiny pieces and turns out to be HTTP.
        let noise: Vec<u8> = (0u32..200)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let f = examined_as_fresh(
            true,
            Verdict::UNKNOWN,
            &[
                (1, &noise[..90]),
                (0, b"GE"),
                (0, b"T /i"),
                (1, &noise[90..]),
                (0, b"ndex.html HTTP/1.1\r\nHost: a\r\n\r\n"),
            ],
        );
        assert_eq!(
            (f.protocol, f.encryption),
            (Protocol::Http, Encryption::Plaintext)
        );

        // Unnamed on both sides: each side's judgement follows its bytes as they grow.
        let text: &[u8] = b"HELLO this is a readable protocol message\r\n";
        let f = examined_as_fresh(
            true,
            Verdict::UNKNOWN,
            &[
                (1, &noise[..40]),
                (0, &noise[40..120]),
                (1, text),
                (0, text),
            ],
        );
        assert_eq!(f.protocol, Protocol::Unknown);
    }
}
