//! No input makes the inspector panic: every fixture cut at every length, mutated, and random
//! bytes, through every entry point; for QUIC also packets that open but hold garbage, and
//! inputs built to make the work grow.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "tests panic with a message"
)]

mod support;

use sealwatch_inspect::quic::inspect_quic;
use sealwatch_inspect::tls::{inspect_dtls, inspect_quic_crypto, inspect_tls};
use support::quic::{
    CLIENT_DCID, CLIENT_SCID, DRAFT_29, SERVER_SCID, Sealer, T050, V1, V2, chrome_like_flight,
    initial_packet,
};

const TCP_FIXTURES: [&str; 5] = [
    include_str!("fixtures/tls13.hex"),
    include_str!("fixtures/tls12_ecdhe.hex"),
    include_str!("fixtures/tls10.hex"),
    include_str!("fixtures/null.hex"),
    include_str!("fixtures/hrr.hex"),
];
const DTLS_FIXTURE: &str = include_str!("fixtures/dtls12.hex");

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

fn lines(text: &str, side: &str) -> Vec<Vec<u8>> {
    text.lines()
        .filter_map(|l| l.strip_prefix(side))
        .map(|hex| unhex(hex.trim()))
        .collect()
}

/// xorshift64*: reproducible pseudo-random bytes without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Every entry point on one pair of byte strings.
fn all(c: &[u8], s: &[u8]) {
    let _ = inspect_tls(c, s);
    let _ = inspect_tls(s, c);
    let _ = inspect_quic_crypto(c, s);
    let _ = inspect_dtls(&[c], &[s]);
    let _ = inspect_quic(&[c], &[s]);
}

/// Strips record headers so the QUIC entry point sees real handshake messages too.
fn handshake_payload(stream: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = stream;
    while rest.len() >= 5 && rest[0] == 22 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        let end = (5 + len).min(rest.len());
        out.extend_from_slice(&rest[5..end]);
        rest = &rest[end..];
    }
    out
}

#[test]
fn every_truncation_of_every_fixture() {
    for text in TCP_FIXTURES {
        let c = lines(text, "client ").concat();
        let s = lines(text, "server ").concat();
        for n in 0..=c.len() {
            let _ = inspect_tls(&c[..n], &s);
        }
        for n in 0..=s.len() {
            let _ = inspect_tls(&c, &s[..n]);
        }
        let (hc, hs) = (handshake_payload(&c), handshake_payload(&s));
        for n in 0..=hc.len().max(hs.len()) {
            let _ = inspect_quic_crypto(&hc[..n.min(hc.len())], &hs[..n.min(hs.len())]);
        }
    }
    let client = lines(DTLS_FIXTURE, "client ");
    let server = lines(DTLS_FIXTURE, "server ");
    for side in [&client, &server] {
        for (i, datagram) in side.iter().enumerate() {
            for n in 0..=datagram.len() {
                let mut cut: Vec<&[u8]> = side.iter().map(Vec::as_slice).collect();
                cut[i] = &datagram[..n];
                let other: Vec<&[u8]> = if std::ptr::eq(side, &client) {
                    server.iter().map(Vec::as_slice).collect()
                } else {
                    client.iter().map(Vec::as_slice).collect()
                };
                let _ = inspect_dtls(&cut, &other);
                let _ = inspect_dtls(&other, &cut);
            }
        }
    }
}

#[test]
fn mutated_fixtures() {
    let mut rng = Rng(0x5ea1_3a7c_u64);
    for text in TCP_FIXTURES.iter().chain([&DTLS_FIXTURE]) {
        let c = lines(text, "client ").concat();
        let s = lines(text, "server ").concat();
        for _ in 0..2000 {
            let (mut c, mut s) = (c.clone(), s.clone());
            for buf in [&mut c, &mut s] {
                // Mostly the first bytes: that is where lengths and types are.
                for _ in 0..=rng.below(4) {
                    let limit = if rng.below(2) == 0 { 64 } else { buf.len() };
                    let at = rng.below(limit.min(buf.len()));
                    if let Some(b) = buf.get_mut(at) {
                        *b = rng.next() as u8;
                    }
                }
            }
            all(&c, &s);
            let (hc, hs) = (handshake_payload(&c), handshake_payload(&s));
            let _ = inspect_quic_crypto(&hc, &hs);
        }
    }
}

#[test]
fn random_bytes() {
    let mut rng = Rng(0x0dd_ba11);
    for i in 0..5000 {
        let len = rng.below(3000);
        let mut c = rng.bytes(len);
        let s_len = rng.below(3000);
        let s = rng.bytes(s_len);
        // Give half of them a plausible start so the parsers go deep.
        match i % 4 {
            0 if c.len() > 9 => c[..9].copy_from_slice(&[22, 3, 1, 0xff, 0xff, 1, 0, 0xff, 0xff]),
            1 if c.len() > 3 => c[..3].copy_from_slice(&[0x80, 0xff, 1]),
            2 if c.len() > 25 => {
                c[..3].copy_from_slice(&[22, 0xfe, 0xfd]);
                c[13] = 1;
            }
            _ => {}
        }
        all(&c, &s);
    }
    for fill in [0x00, 0x16, 0x80, 0xff] {
        for len in [1, 5, 9, 64, 4096] {
            let v = vec![fill; len];
            all(&v, &v);
        }
    }
}

#[test]
fn many_tiny_records_stay_cheap() {
    // 64 KB of one-byte handshake records, and as many DTLS fragments as datagrams allow.
    let mut c = Vec::new();
    for b in std::iter::repeat_n([1u8, 0, 0, 0xff], 3300).flatten() {
        c.extend_from_slice(&[22, 3, 1, 0, 1, b]);
    }
    let start = std::time::Instant::now();
    let d = inspect_tls(&c, &[]).expect("TLS");
    assert!(!d.client_hello_complete);
    let mut datagram = Vec::new();
    for off in 0..1000u32 {
        datagram.extend_from_slice(&[22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 13]);
        datagram.extend_from_slice(&[1, 0, 4, 0, 0, 0]);
        datagram.extend_from_slice(&off.to_be_bytes()[1..]);
        datagram.extend_from_slice(&[0, 0, 1, 7]);
    }
    let datagrams: Vec<&[u8]> = vec![&datagram; 64];
    let _ = inspect_dtls(&datagrams, &datagrams);
    assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
}

// ---- QUIC ----

type Flight = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// The RFC packets and the Chrome-like flights of tests/quic.rs.
fn quic_flights() -> Vec<Flight> {
    let mut flights: Vec<Flight> = [
        include_str!("fixtures/rfc9001_initial.hex"),
        include_str!("fixtures/rfc9369_initial.hex"),
    ]
    .iter()
    .map(|text| (lines(text, "client "), lines(text, "server ")))
    .collect();
    for version in [V1, V2, DRAFT_29] {
        let f = chrome_like_flight(version);
        flights.push((f.client, f.server));
    }
    flights
}

fn slices(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(Vec::as_slice).collect()
}

fn quic_both_ways(c: &[&[u8]], s: &[&[u8]]) {
    let _ = inspect_quic(c, s);
    let _ = inspect_quic(s, c);
}

#[test]
fn quic_every_truncation() {
    for (client, server) in quic_flights() {
        for (which, datagrams) in [(0, &client), (1, &server)] {
            for (i, datagram) in datagrams.iter().enumerate() {
                // Every length through the headers, then every 11th (each call decrypts).
                let lengths = (0..=80.min(datagram.len())).chain((81..datagram.len()).step_by(11));
                for n in lengths {
                    let mut cut = slices(datagrams);
                    cut[i] = &datagram[..n];
                    let other = slices(if which == 0 { &server } else { &client });
                    if which == 0 {
                        quic_both_ways(&cut, &other);
                    } else {
                        quic_both_ways(&other, &cut);
                    }
                }
            }
        }
    }
}

#[test]
fn quic_mutated_flights() {
    let mut rng = Rng(0x091c_00ff);
    for (client, server) in quic_flights() {
        for _ in 0..250 {
            let (mut c, mut s) = (client.clone(), server.clone());
            for side in [&mut c, &mut s] {
                for datagram in side.iter_mut() {
                    for _ in 0..rng.below(3) {
                        // Mostly the headers: lengths, versions, connection IDs.
                        let limit = if rng.below(3) > 0 { 64 } else { datagram.len() };
                        let at = rng.below(limit.min(datagram.len()));
                        if let Some(b) = datagram.get_mut(at) {
                            *b = rng.next() as u8;
                        }
                    }
                }
                // Lost, repeated and reordered datagrams.
                match rng.below(4) {
                    0 if !side.is_empty() => {
                        side.remove(rng.below(side.len()));
                    }
                    1 if !side.is_empty() => {
                        let d = side[rng.below(side.len())].clone();
                        side.push(d);
                    }
                    2 => side.reverse(),
                    _ => {}
                }
            }
            quic_both_ways(&slices(&c), &slices(&s));
        }
    }
}

/// Frames the parser can reach only inside a packet that opens: random bytes, and frames of
/// the right types with random fields, under every key family (T050 has Google's frames).
#[test]
fn quic_packets_that_open_but_hold_garbage() {
    let mut rng = Rng(0x06a2_ba6e);
    for version in [V1, V2, T050] {
        let client_keys = Sealer::initial(version, CLIENT_DCID, false);
        let server_keys = Sealer::initial(version, CLIENT_DCID, true);
        for i in 0..300 {
            let payload_len = 20 + rng.below(1400);
            let mut payload = rng.bytes(payload_len);
            // Give most a plausible frame type, and some a CRYPTO frame at a random offset.
            let ty = [
                0x00, 0x01, 0x02, 0x03, 0x06, 0x08, 0x1c, 0x1d, 0x40, 0x63, 0x7f,
            ];
            payload[0] = ty[rng.below(ty.len())];
            if i % 3 == 0 {
                payload[..4].copy_from_slice(&[0x06, 0x00, 0x44, 0x00]);
                payload[4] = 1;
            }
            let pn = rng.below(1 << 16) as u16;
            let c = initial_packet(
                &client_keys,
                version,
                CLIENT_DCID,
                CLIENT_SCID,
                pn,
                &payload,
            );
            let s = initial_packet(
                &server_keys,
                version,
                CLIENT_SCID,
                SERVER_SCID,
                pn,
                &payload,
            );
            quic_both_ways(&[&c, &c], &[&s]);
        }
    }
}

#[test]
fn quic_random_datagrams() {
    let mut rng = Rng(0x51ac_c0de);
    let versions = [1u32, V2, DRAFT_29, T050, 0xff00_0017, 0, 0x0a0a_0a0a];
    for _ in 0..3000 {
        let mut datagrams = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let len = rng.below(1500);
            let mut d = rng.bytes(len);
            if d.len() > 7 {
                d[0] |= 0x80;
                let v = versions[rng.below(versions.len())];
                d[1..5].copy_from_slice(&v.to_be_bytes());
                d[5] = rng.below(24) as u8;
            }
            datagrams.push(d);
        }
        let half = datagrams.len() / 2;
        quic_both_ways(&slices(&datagrams[..half]), &slices(&datagrams[half..]));
    }
}

#[test]
fn quic_work_stays_bounded() {
    let start = std::time::Instant::now();
    // Datagrams of nothing but tiny Initial packets that each get a decryption attempt, with
    // more distinct connection IDs than are tried.
    let mut datagram = Vec::new();
    for i in 0..2000u32 {
        datagram.extend([0xc0, 0, 0, 0, 1, 4]);
        datagram.extend(i.to_be_bytes());
        datagram.extend([0, 0, 24]);
        datagram.extend([0x5a; 24]);
    }
    let many: Vec<&[u8]> = vec![&datagram; 1000];
    assert_eq!(inspect_quic(&many, &many), None);
    // Packets that open and hold the most frames a packet can: 1,150 PINGs, or CRYPTO frames
    // one byte each, or CRYPTO frames far past the 16 KB kept.
    let keys = Sealer::initial(V1, CLIENT_DCID, false);
    let pings = initial_packet(&keys, V1, CLIENT_DCID, CLIENT_SCID, 0, &[0x01; 1150]);
    let mut tiny = Vec::new();
    for off in 0..280u16 {
        tiny.extend([0x06, 0x40 | (off >> 8) as u8, off as u8, 1, 0x01]);
    }
    let tiny = initial_packet(&keys, V1, CLIENT_DCID, CLIENT_SCID, 1, &tiny);
    let mut far = Vec::new();
    for k in 0..4u8 {
        far.extend([0x06, 0x80, 0x01, k, 0x00, 0x41, 0x00]);
        far.extend([0x01; 256]);
    }
    let far = initial_packet(&keys, V1, CLIENT_DCID, CLIENT_SCID, 2, &far);
    let flights: Vec<&[u8]> = [&pings, &tiny, &far]
        .repeat(20)
        .into_iter()
        .map(|p| p.as_slice())
        .collect();
    let _ = inspect_quic(&flights, &flights);
    assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
}
