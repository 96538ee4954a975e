//! No input makes the inspector panic: every fixture cut at every length, mutated, and random
//! bytes, through every entry point.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "tests panic with a message"
)]

use sealwatch_inspect::tls::{inspect_dtls, inspect_quic_crypto, inspect_tls};

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
