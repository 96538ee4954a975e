//! The last word on payload no detector named: is it readable, or indistinguishable from
//! random? Adapted from the tests the Great Firewall of China was found to apply to spot fully
//! encrypted protocols (Wu et al., "How the Great Firewall of China Detects and Blocks Fully
//! Encrypted Traffic", USENIX Security 2023): a payload is *not* random when its average set
//! bits per byte fall outside 3.4-4.6, its first six bytes are printable, more than half of it
//! is printable, or it holds a run of more than 20 printable bytes.
//!
//! Readable or low-entropy structured payload (text protocols, most industrial, RPC and
//! file-sharing protocols) is plaintext with no protocol named; random-looking payload is
//! encrypted (`sealwatch.fully_encrypted`): DNSCrypt, SRTP, obfuscated VPNs, custom encrypted
//! protocols. Too few bytes to judge stays unknown, and so does anything shaped like RTP, which
//! carries compressed media in the clear exactly as SRTP carries ciphertext.
//!
//! This runs in user space, for flows the kernel's detectors left unnamed, on the same first 64
//! bytes of each side (the kernel's payload sample live, the captured frame offline). In the
//! kernel, this loop on top of every detector exceeded the verifier's one million instructions.

use super::{Context, Encryption, Protocol, Verdict};

/// Fewer real bytes than this: no judgement at all.
const MIN_BYTES: usize = 8;
/// Set bits per byte, in hundredths, inside which bytes look random (3.4 to 4.6).
const RANDOM_POPCOUNT: core::ops::RangeInclusive<usize> = 340..=460;
/// Bytes needed to call structured binary plaintext by its bit counts alone.
const MIN_BYTES_FOR_POPCOUNT: usize = 16;
/// Bytes needed to call a payload random: below this, chance makes bit counts unreliable.
const MIN_BYTES_FOR_RANDOM: usize = 32;
const PRINTABLE_PREFIX: usize = 6;
const PRINTABLE_RUN: usize = 20;
const RTP_HEADER_LEN: u32 = 12;

/// What the judgement needs to know about the window's real bytes, gathered in one pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct ByteStats {
    /// Real bytes (the payload may be shorter than the window).
    pub len: u32,
    pub printable: u32,
    pub longest_printable_run: u32,
    pub set_bits: u32,
    /// Printable bytes among the first [`PRINTABLE_PREFIX`].
    pub printable_prefix: u32,
}

impl ByteStats {
    /// One pass over the first `payload_len` bytes of `w`.
    ///
    /// Branch-free, so it stays cheap wherever it runs (BPF has no conditional moves).
    #[inline(always)]
    pub(super) fn of(w: &[u8], payload_len: u32) -> ByteStats {
        let limit = (payload_len as usize).min(w.len()) as u32;
        let mut s = ByteStats {
            len: limit,
            ..ByteStats::default()
        };
        let mut run = 0u32;
        for (i, &b) in w.iter().enumerate() {
            // 1 while i < len: the sign bit of i - len.
            let real = (i as u32).wrapping_sub(limit) >> 31;
            let p = is_printable(b) & real;
            s.printable = s.printable.wrapping_add(p);
            s.set_bits = s.set_bits.wrapping_add(b.count_ones().wrapping_mul(real));
            run = run.wrapping_add(1).wrapping_mul(p);
            s.longest_printable_run = max(s.longest_printable_run, run);
            if i < PRINTABLE_PREFIX {
                s.printable_prefix = s.printable_prefix.wrapping_add(p);
            }
        }
        s
    }
}

#[inline(always)]
pub(super) fn judge(w: &[u8], ctx: &Context, s: &ByteStats) -> Verdict {
    let n = s.len as usize;
    if n < MIN_BYTES {
        return Verdict::UNKNOWN;
    }
    let plaintext = Verdict::new(Protocol::Unknown, Encryption::Plaintext);
    let prefix_printable = s.printable_prefix == PRINTABLE_PREFIX as u32;
    // At most 64 bytes here, so these products cannot wrap; `saturating_mul` would lower to a
    // 128-bit multiply, which BPF programs cannot call.
    if prefix_printable
        || s.printable.wrapping_mul(2) > s.len
        || s.longest_printable_run > PRINTABLE_RUN as u32
    {
        return plaintext;
    }
    let popcount_x100 = s.set_bits.wrapping_mul(100).checked_div(s.len).unwrap_or(0) as usize;
    if !RANDOM_POPCOUNT.contains(&popcount_x100) {
        return if n >= MIN_BYTES_FOR_POPCOUNT {
            plaintext
        } else {
            Verdict::UNKNOWN
        };
    }
    if n < MIN_BYTES_FOR_RANDOM || rtp_shaped(w, ctx) {
        return Verdict::UNKNOWN;
    }
    if compressed_near_start(w, n) || framed_in_clear(w, ctx.payload_len) {
        return plaintext;
    }
    Verdict::new(Protocol::Unknown, Encryption::Encrypted)
}

/// A length field in the clear at the start that matches the packet: the payload has a visible
/// header, so it is not the uniformly random stream a fully encrypted protocol sends (those hide
/// their framing, e.g. Shadowsocks encrypts its length field). What follows may well be
/// ciphertext, but nothing proves it, so the flow is not called encrypted. A random payload
/// matches by chance about once in 4,000.
#[inline(always)]
pub fn framed_in_clear(w: &[u8], payload_len: u32) -> bool {
    for off in 0..4usize {
        let (Some(&a), Some(&b)) = (w.get(off), w.get(off.wrapping_add(1))) else {
            return false;
        };
        let after = payload_len.wrapping_sub(off as u32).wrapping_sub(2);
        for v in [
            u32::from(u16::from_be_bytes([a, b])),
            u32::from(u16::from_le_bytes([a, b])),
        ] {
            if v >= 8 && (v == payload_len || v == after) {
                return true;
            }
        }
    }
    false
}

/// Bytes at the start searched for a compression header behind a protocol's own header.
const COMPRESSION_HEADER_SEARCH: usize = 16;

/// A zlib (RFC 1950: deflate, window up to 32K, header checksum) or gzip header within the
/// first bytes: compressed data in the clear (Zabbix, compressed RPC and HTTP bodies) looks as
/// random as ciphertext, and its header is what gives it away. A random payload holds one by
/// chance about once in 700.
#[inline(always)]
fn compressed_near_start(w: &[u8], n: usize) -> bool {
    for i in 0..COMPRESSION_HEADER_SEARCH.min(n.saturating_sub(2)) {
        let (Some(&a), Some(&b), Some(&c)) =
            (w.get(i), w.get(i.wrapping_add(1)), w.get(i.wrapping_add(2)))
        else {
            return false;
        };
        let zlib = a == 0x78 && (u16::from(a) << 8 | u16::from(b)) % 31 == 0 && b & 0x20 == 0;
        let gzip = a == 0x1f && b == 0x8b && c == 0x08;
        if zlib || gzip {
            return true;
        }
    }
    false
}

/// 1 for bytes 0x20-0x7e, else 0, without a branch: both `b - 0x20` and `0x7e - b` must be
/// non-negative, so the sign bit of their OR is clear.
#[inline(always)]
fn is_printable(b: u8) -> u32 {
    let low = i32::from(b).wrapping_sub(0x20);
    let high = 0x5e_i32.wrapping_sub(low);
    1 ^ ((low | high) as u32 >> 31)
}

/// `max(a, b)` without a branch (both are at most 64 here).
#[inline(always)]
fn max(a: u32, b: u32) -> u32 {
    let d = (a as i32).wrapping_sub(b as i32);
    // d >> 31 is all ones when a < b: subtract the (negative) difference to get b.
    (a as i32).wrapping_sub(d & (d >> 31)) as u32
}

/// RTP version 2 with a payload type that audio/video calls use.
#[inline(always)]
fn rtp_shaped(w: &[u8], ctx: &Context) -> bool {
    let (Some(&b0), Some(&b1)) = (w.first(), w.get(1)) else {
        return false;
    };
    let payload_type = b1 & 0x7f;
    ctx.is_udp()
        && ctx.payload_len >= RTP_HEADER_LEN
        && b0 >> 6 == 2
        && matches!(payload_type, 0 | 3 | 4 | 8 | 9 | 18 | 26 | 31..=34 | 96..=127)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::tests::hex;

    const PLAINTEXT: Verdict = Verdict::new(Protocol::Unknown, Encryption::Plaintext);

    fn judge(w: &[u8], ctx: &Context) -> Verdict {
        super::judge(w, ctx, &ByteStats::of(w, ctx.payload_len))
    }
    const RANDOM: Verdict = Verdict::new(Protocol::Unknown, Encryption::Encrypted);

    /// xorshift bytes: deterministic, and as random as these tests need.
    fn noise(n: usize, mut x: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn text_protocols_are_readable() {
        let zabbix = b"ZBXD\x01\x1b\x00\x00\x00\x00\x00\x00\x00agent.ping";
        assert_eq!(judge(zabbix, &Context::tcp(27, true)), PLAINTEXT);
        let fix = b"8=FIX.4.2\x019=65\x0135=A\x0134=1\x0149=SERVER\x0152=20240101-00:00:00";
        assert_eq!(judge(fix, &Context::tcp(57, true)), PLAINTEXT);
    }

    #[test]
    fn compressed_payload_behind_a_header_is_plaintext() {
        // Zabbix 4 compressed request: `ZBXD`, flags 0x03, lengths, then zlib (zabbix capture).
        let zabbix = hex(
            "5a42584403f4000000ee010000789c8cd14d6ac3301005e0ab94b7568546d28c7e8ed2d28564abad69ead0d80985",
        );
        assert_eq!(judge(&zabbix, &Context::tcp(257, true)), PLAINTEXT);
        let mut gzip = noise(64, 11);
        gzip[4..7].copy_from_slice(&[0x1f, 0x8b, 0x08]);
        assert_eq!(judge(&gzip, &Context::tcp(300, true)), PLAINTEXT);
        // Random payloads rarely hold a header by chance.
        let hits = (1..5000)
            .filter(|&seed| compressed_near_start(&noise(64, seed), 64))
            .count();
        assert!(hits < 15, "{hits} of 5000 random payloads hold a header");
    }

    #[test]
    fn a_clear_length_header_is_not_fully_encrypted() {
        // A proprietary messaging protocol: type 0x25, big-endian length 0x45 of the 69-byte
        // payload, then ciphertext (jabber capture, port 5223).
        let msg = hex("25004514" /* type, length, ... */);
        let mut framed = msg.clone();
        framed.extend(noise(65, 7));
        assert_eq!(judge(&framed, &Context::tcp(69, true)), PLAINTEXT);
        // The same bytes with a length that does not match stay random.
        assert_eq!(judge(&framed, &Context::tcp(400, true)), RANDOM);
        let hits = (1..5000)
            .filter(|&seed| framed_in_clear(&noise(64, seed), 64 + seed as u32 % 1400))
            .count();
        assert!(hits < 10, "{hits} of 5000 random payloads look framed");
    }

    #[test]
    fn structured_binary_is_readable() {
        // Modbus/TCP read-holding-registers request: mostly zero bytes.
        let modbus = hex("000100000006010300000064000100000006010300000064");
        assert_eq!(judge(&modbus, &Context::tcp(24, true)), PLAINTEXT);
    }

    #[test]
    fn random_payload_is_fully_encrypted() {
        for seed in 1..50 {
            let bytes = noise(64, seed);
            assert_eq!(
                judge(&bytes, &Context::tcp(200, true)),
                RANDOM,
                "seed {seed}: {bytes:02x?}"
            );
        }
    }

    #[test]
    fn too_little_to_judge_is_unknown() {
        assert_eq!(judge(&noise(7, 3), &Context::udp(7)), Verdict::UNKNOWN);
        assert_eq!(
            judge(&noise(20, 3), &Context::udp(20)),
            Verdict::UNKNOWN,
            "random-ish but short"
        );
        // Zero padding beyond the payload does not count.
        let mut padded = noise(10, 5);
        padded.resize(64, 0);
        assert_eq!(judge(&padded, &Context::udp(10)), Verdict::UNKNOWN);
    }

    #[test]
    fn branch_free_helpers() {
        for b in 0..=255u8 {
            assert_eq!(
                is_printable(b),
                u32::from((0x20..=0x7e).contains(&b)),
                "{b:#x}"
            );
        }
        for (a, b) in [(0, 0), (3, 9), (9, 3), (64, 63), (0, 64)] {
            assert_eq!(max(a, b), a.max(b));
        }
    }

    #[test]
    fn rtp_is_left_unknown() {
        let mut rtp = noise(160, 9);
        rtp[0] = 0x80;
        rtp[1] = 0x08; // PCMA
        assert_eq!(judge(&rtp, &Context::udp(172)), Verdict::UNKNOWN);
        assert_eq!(
            judge(&rtp, &Context::tcp(172, true)),
            RANDOM,
            "RTP is a UDP thing"
        );
    }
}
