//! Service protocols named after the core detectors had their say: databases, mail, directory,
//! caches, queues, management and VPN protocols. Each family lives in its own module; these
//! two functions are the only dispatch points. `classify_payload` calls them after the core
//! families, so the kernel runs them on its window too. For the verifier's sake:
//! - reads at offsets an earlier field decides (BER lengths, the end of a scan) go through the
//!   accessors `byte_at`, `be16_at`, `bytes_at` and `prefix_at` (see `reloaded` for why);
//! - each detector's entry point is `#[inline(never)]`, a BPF function of its own. Inlined, the
//!   detectors share loaded bytes and what each learned about them, so the verifier walks every
//!   later detector once per path through the earlier ones (it went past its million-instruction
//!   limit); as functions, each is walked once per distinct state it is called in. Their stack
//!   frames stay small and apart, too: the kernel's 512 bytes are mostly taken by the time the
//!   classifier runs.
//!
//! Every detector here looks at the first message of one direction and names it only from
//! structure that random bytes (what encrypted traffic looks like) match with odds well below one
//! in a million: fixed magic numbers, zero fields, lengths that agree with the packet, keywords.
//! Calling encrypted traffic plaintext is the worst mistake this agent can make, so a message
//! that is shaped right but could go either way is left unnamed rather than guessed.
//!
//! RTP is deliberately absent: its 12-byte header (version 2, a payload type, sequence number,
//! timestamp, SSRC) is all SRTP shares too, so no first-packet rule tells them apart; the
//! randomness judgement leaves RTP-shaped datagrams unknown instead.

mod ber;
mod cache;
mod db;
mod mail;
mod openvpn;
mod syslog;
mod telnet;
mod voip;
mod xmpp;

use super::{Context, Encryption, Protocol, Verdict};

/// TCP first payloads.
#[inline(always)]
pub(super) fn detect_tcp(w: &[u8], ctx: &Context) -> Option<Verdict> {
    // Binary protocols with magic numbers or self-describing lengths first, text last.
    openvpn::tcp(w, ctx)
        .or_else(|| db::postgresql(w, ctx))
        .or_else(|| db::mysql(w, ctx))
        .or_else(|| ber::ldap(w, ctx))
        .or_else(|| cache::memcached_binary(w, ctx))
        .or_else(|| cache::kafka(w, ctx))
        .or_else(|| voip::stun(w, ctx))
        .or_else(|| telnet::detect(w, ctx))
        .or_else(|| mail::detect(w))
        .or_else(|| cache::memcached_text(w))
        .or_else(|| voip::sip(w))
        .or_else(|| syslog::tcp(w))
        .or_else(|| xmpp::detect(w))
}

/// UDP datagrams.
#[inline(always)]
pub(super) fn detect_udp(w: &[u8], ctx: &Context) -> Option<Verdict> {
    openvpn::udp(w, ctx)
        .or_else(|| ber::snmp(w, ctx))
        .or_else(|| ber::ldap(w, ctx))
        .or_else(|| voip::stun(w, ctx))
        .or_else(|| voip::sip(w))
        .or_else(|| cache::memcached_udp(w, ctx))
        .or_else(|| syslog::udp(w))
}

#[inline(always)]
const fn plaintext(p: Protocol) -> Verdict {
    Verdict::new(p, Encryption::Plaintext)
}

/// `w` starts with `lower`, ignoring the case of `w`'s letters. `lower` must be lower-case.
/// Byte by byte like [`super::has_prefix`], so it unrolls to compares.
#[inline(always)]
fn has_prefix_ignore_case(w: &[u8], lower: &[u8]) -> bool {
    for (i, &expected) in lower.iter().enumerate() {
        match w.get(i) {
            Some(&b) if eq_ignore_case(b, expected) => {}
            _ => return false,
        }
    }
    true
}

/// [`has_prefix_ignore_case`] at an offset `at` the payload decides (see [`super::prefix_at`]).
#[inline(always)]
fn prefix_at_ignore_case(w: &[u8], at: usize, lower: &[u8]) -> bool {
    super::prefix_at_by(w, at, lower, eq_ignore_case)
}

/// `b.to_ascii_lowercase() == lower` for a lower-case or non-letter `lower`. With a constant
/// `lower` this is one compare (of `b` with the case bit set, for a letter) instead of the
/// range checks of `to_ascii_lowercase`.
#[inline(always)]
fn eq_ignore_case(b: u8, lower: u8) -> bool {
    if lower.is_ascii_lowercase() {
        b | 0x20 == lower
    } else {
        b == lower
    }
}

/// Printable ASCII, space excluded.
#[inline(always)]
fn is_graphic(b: Option<&u8>) -> bool {
    b.is_some_and(u8::is_ascii_graphic)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::CLASSIFY_WINDOW;
    use crate::classify::{classify_payload, tests::hex};

    /// A first payload from a capture, as the kernel sees it.
    pub(crate) struct Fixture {
        /// What it is and where it came from.
        pub name: &'static str,
        pub bytes: Bytes,
        pub udp: bool,
        /// The packet's real payload length (the bytes may be only its start).
        pub payload_len: u32,
        pub expect: Verdict,
    }

    pub(crate) enum Bytes {
        Hex(&'static str),
        Text(&'static [u8]),
    }

    impl Fixture {
        pub(crate) fn ctx(&self) -> Context {
            if self.udp {
                Context::udp(self.payload_len)
            } else {
                Context::tcp(self.payload_len, true)
            }
        }

        /// The kernel's view: the first [`CLASSIFY_WINDOW`] bytes, zero-padded.
        pub(crate) fn window(&self) -> [u8; CLASSIFY_WINDOW] {
            let bytes = match self.bytes {
                Bytes::Hex(h) => hex(h),
                Bytes::Text(t) => t.to_vec(),
            };
            let real = bytes.len().min(self.payload_len as usize);
            let mut w = [0u8; CLASSIFY_WINDOW];
            for (dst, src) in w.iter_mut().zip(bytes.iter().take(real)) {
                *dst = *src;
            }
            w
        }
    }

    pub(crate) const fn tcp(
        name: &'static str,
        bytes: Bytes,
        payload_len: u32,
        expect: Verdict,
    ) -> Fixture {
        Fixture {
            name,
            bytes,
            udp: false,
            payload_len,
            expect,
        }
    }

    pub(crate) const fn udp(
        name: &'static str,
        bytes: Bytes,
        payload_len: u32,
        expect: Verdict,
    ) -> Fixture {
        Fixture {
            name,
            bytes,
            udp: true,
            payload_len,
            expect,
        }
    }

    const fn v(p: Protocol, e: Encryption) -> Verdict {
        Verdict::new(p, e)
    }

    /// Protocols named before the service detectors run, and HTTP/DNS after them, copied from
    /// those detectors' tests and from the corpus (`/work/shared/corpus/pcaps`): none of them
    /// may change name because of a service detector.
    const OTHERS: &[Fixture] = &[
        tcp(
            "TLS ClientHello, curl 7.88 / OpenSSL 3.0 (tls.rs)",
            Bytes::Hex(
                "1603010200010001fc0303e26edf135dc26216ec82aefa065ed38de7fdaead23704a1b1c7d1ba4cd18a390206ee1d926",
            ),
            517,
            v(Protocol::Tls, Encryption::Encrypted),
        ),
        tcp(
            "TLS ServerHello, openssl s_server (tls.rs)",
            Bytes::Hex(
                "160303007a020000760303dea2c14b93317efcf9dd6af95ad6fe62804ec965e0fc9edf8f2315bf9c379113206ee1d926",
            ),
            127,
            v(Protocol::Tls, Encryption::Encrypted),
        ),
        tcp(
            "SSH banner, Debian 12 OpenSSH (ssh.rs)",
            Bytes::Text(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n"),
            41,
            v(Protocol::Ssh, Encryption::Encrypted),
        ),
        tcp(
            "HTTP request, curl (http.rs)",
            Bytes::Text(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:18080\r\nUser-Agen"),
            78,
            v(Protocol::Http, Encryption::Plaintext),
        ),
        tcp(
            "HTTP response, nginx (http.rs)",
            Bytes::Text(b"HTTP/1.1 404 Not Found\r\nServer: nginx/1.22.1\r\n"),
            153,
            v(Protocol::Http, Encryption::Plaintext),
        ),
        tcp(
            "HTTP OPTIONS request (http.rs)",
            Bytes::Text(b"OPTIONS * HTTP/1.1\r\n"),
            20,
            v(Protocol::Http, Encryption::Plaintext),
        ),
        udp(
            "DNS AAAA query (dns.rs)",
            Bytes::Hex("bc1f0100000100000000000003777777076578616d706c6503636f6d00001c0001"),
            33,
            v(Protocol::Dns, Encryption::Plaintext),
        ),
        udp(
            "DNS answer (dns.rs)",
            Bytes::Hex("dca28180000100000000000003777777016c06676f6f676c6503636f6d00001c0001"),
            34,
            v(Protocol::Dns, Encryption::Plaintext),
        ),
        tcp(
            "DNS query over TCP (dns.rs)",
            Bytes::Hex("0021bc1f0100000100000000000003777777076578616d706c6503636f6d00001c0001"),
            35,
            v(Protocol::Dns, Encryption::Plaintext),
        ),
        udp(
            "QUIC v1 Initial (quic.rs)",
            Bytes::Hex("c3000000010883947d0e2ffa6a8d0000449e7bd7cce1a3fa4b7c1d5ef1f37b8b17a4d3a6"),
            1350,
            v(Protocol::Quic, Encryption::Encrypted),
        ),
        udp(
            "WireGuard transport data, mullvad_wireguard.pcap (wireguard.rs)",
            Bytes::Hex(
                "040000001576497913000000000000003bc85395c81aa144b19f96e639fb04b89c8880767cf1142a03a1ec927c93f144",
            ),
            96,
            v(Protocol::Wireguard, Encryption::Encrypted),
        ),
        udp(
            "DTLS ClientHello (dtls.rs)",
            Bytes::Hex(
                "16feff0000000000000000008e010000820000000000000082fefdceb06d2a04cb2a1517c2e266ed6db6936e6e7a5772aacdd0e2dbd068ce",
            ),
            155,
            v(Protocol::Dtls, Encryption::Encrypted),
        ),
        udp(
            "NTPv4 client (ntp.rs)",
            Bytes::Hex(
                "230207eb00000450000003ab83bc03dfd94f51c33165b860d944575530336fd0d944575531b4e978d94f51f42d26e2f4",
            ),
            48,
            v(Protocol::Ntp, Encryption::Plaintext),
        ),
        udp(
            "SSDP M-SEARCH (ssdp.rs)",
            Bytes::Text(
                b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n",
            ),
            94,
            v(Protocol::Ssdp, Encryption::Plaintext),
        ),
        tcp(
            "Redis SET from redis-cli (apps.rs)",
            Bytes::Text(b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"),
            33,
            v(Protocol::Redis, Encryption::Plaintext),
        ),
        tcp(
            "MongoDB OP_QUERY (apps.rs)",
            Bytes::Hex(
                "f700000098366e4d00000000d40700000000000061646d696e2e24636d640000000000ffffffffd0",
            ),
            247,
            v(Protocol::Mongodb, Encryption::Plaintext),
        ),
        tcp(
            "X.509 certificate continuing a TLS flight, webex.pcap",
            Bytes::Hex(
                "30820420a0030201020210513fb9743870b73440418d30930699ff300d06092a864886f70d01010b05003081ca310b3009060355040613025553311730150603",
            ),
            2579,
            Verdict::UNKNOWN,
        ),
        tcp(
            "Kerberos AS-REQ over TCP, kerberos.pcap",
            Bytes::Hex(
                "000000eb6a81e83081e5a103020105a20302010aa31530133011a10402020080a20904073005a0030101ffa481c13081",
            ),
            239,
            Verdict::UNKNOWN,
        ),
        udp(
            "ONC RPC portmap reply with XID 0x38434f69, nfsv3.pcap (OpenVPN's client opcode)",
            Bytes::Hex(
                "38434f690000000100000000000000000000000000000000000000123133392e32352e32322e3130322e342e32340000",
            ),
            48,
            Verdict::UNKNOWN,
        ),
        udp(
            "DNSCrypt certificate answer with id 0x38ed, avast_securedns.pcapng (OpenVPN's client opcode)",
            Bytes::Hex(
                "38ed81800001000100000000013209536543555245646e7305415661537403634f4d0000100001c00c0010000100000000007d7c444e53430001000075b186ef",
            ),
            176,
            v(Protocol::Dnscrypt, Encryption::Encrypted),
        ),
        tcp(
            "Proprietary protocol on 443 starting 0x80 0x02, 1kxun.pcap (memcached's magic)",
            Bytes::Hex("8002000100000013000000210000000080001ad48e03000000ffff"),
            27,
            Verdict::UNKNOWN,
        ),
        tcp(
            "IPP request body after its HTTP headers, ipp.pcap (Kafka-like size and api key)",
            Bytes::Hex(
                "0101000b0000000101470012617474726962757465732d6368617273657400057574662d3848001b617474726962757465732d6e61747572616c2d6c616e6775",
            ),
            289,
            Verdict::UNKNOWN,
        ),
        udp(
            "RTP G.711 from a SIP call, sip.pcap: left to the randomness judgement",
            Bytes::Hex(
                "80086fae000004d83796cb71d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5",
            ),
            172,
            Verdict::UNKNOWN,
        ),
    ];

    fn every_fixture() -> impl Iterator<Item = &'static Fixture> {
        OTHERS
            .iter()
            .chain(ber::tests::FIXTURES)
            .chain(cache::tests::FIXTURES)
            .chain(db::tests::FIXTURES)
            .chain(mail::tests::FIXTURES)
            .chain(openvpn::tests::FIXTURES)
            .chain(syslog::tests::FIXTURES)
            .chain(telnet::tests::FIXTURES)
            .chain(voip::tests::FIXTURES)
            .chain(xmpp::tests::FIXTURES)
    }

    #[test]
    fn every_fixture_gets_exactly_its_own_protocol() {
        let mut checked = 0;
        for f in every_fixture() {
            let got = classify_payload(&f.window(), &f.ctx());
            assert_eq!(got, f.expect, "{}", f.name);
            checked += 1;
        }
        assert!(checked > 80, "only {checked} fixtures");
    }

    /// Each named fixture cut short: the bytes a detector relies on must be real payload, not
    /// the kernel's zero padding, so no shorter prefix may be named something else. (Cutting
    /// the look-alikes proves nothing: a 14-byte prefix of an RPC reply is a well-formed OpenVPN
    /// reset.)
    #[test]
    fn truncated_fixtures_name_nothing_else() {
        for f in every_fixture().filter(|f| f.expect.is_known()) {
            for len in 1..f.payload_len.min(CLASSIFY_WINDOW as u32) {
                let cut = Fixture {
                    payload_len: len,
                    bytes: Bytes::Text(&[]),
                    ..*f
                };
                let mut w = f.window();
                for b in w.iter_mut().skip(len as usize) {
                    *b = 0;
                }
                let got = classify_payload(&w, &cut.ctx());
                // A DNSCrypt certificate exchange cut before its question type reads as DNS.
                let dns_prefix =
                    f.expect.protocol == Protocol::Dnscrypt && got.protocol == Protocol::Dns;
                assert!(
                    got == Verdict::UNKNOWN || got.protocol == f.expect.protocol || dns_prefix,
                    "{} cut to {len} bytes: {got:?}",
                    f.name
                );
            }
        }
    }

    /// xorshift64: deterministic, and as random as this test needs.
    struct Noise(u64);

    impl Noise {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Random bytes are what encrypted traffic looks like: the service detectors together
    /// must name fewer than 0.05% of random windows.
    #[test]
    fn random_windows_are_rarely_named() {
        const WINDOWS: u32 = 240_000;
        const LENGTHS: [u32; 12] = [3, 8, 14, 20, 26, 36, 42, 54, 64, 100, 517, 1400];
        let mut rng = Noise(0x5ea1_0a7c_4b1d_2f93);
        let mut named = 0u32;
        let mut examples = Vec::new();
        for i in 0..WINDOWS {
            let mut w = [0u8; CLASSIFY_WINDOW];
            for chunk in w.chunks_mut(8) {
                let bytes = rng.next().to_le_bytes();
                chunk.copy_from_slice(&bytes[..chunk.len()]);
            }
            let payload_len = LENGTHS[(i as usize) % LENGTHS.len()];
            for b in w.iter_mut().skip(payload_len as usize) {
                *b = 0;
            }
            let (hit, ctx) = if i % 2 == 0 {
                let ctx = Context::tcp(payload_len, true);
                (detect_tcp(&w, &ctx), ctx)
            } else {
                let ctx = Context::udp(payload_len);
                (detect_udp(&w, &ctx), ctx)
            };
            if let Some(v) = hit {
                named += 1;
                if examples.len() < 5 {
                    examples.push((v, ctx, w));
                }
            }
        }
        let rate = f64::from(named) / f64::from(WINDOWS);
        println!("service detectors named {named} of {WINDOWS} random windows ({rate:.6})");
        assert!(
            rate < 0.0005,
            "{named} random windows named: {examples:02x?}"
        );
    }
}
