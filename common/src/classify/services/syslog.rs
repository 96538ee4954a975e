//! Syslog: a `<PRI>` of one to three digits (facility * 8 + severity, at most 191), then the
//! start of a header that says which format follows:
//! - RFC 5424: version `1` and a space;
//! - RFC 3164 (BSD): a `Mmm dd` timestamp, an upper-case letter, two lower-case ones, a space,
//!   then a digit or the space that pads one-digit days;
//! - RFC 3339 timestamps in the old layout (rsyslog's high-precision format): a 4-digit year
//!   and `-`.
//!
//! Over UDP the datagram is the message. Over TCP (RFC 6587) a message is either prefixed by its
//! length in decimal and a space (octet counting) or sent as is and ended by a newline.
//! `<PRI>` followed by free text is plaintext too, but so short a pattern is left to the
//! randomness judgement rather than named.

use super::super::{Protocol, Verdict, byte_at};
use super::plaintext;

/// Highest PRI: facility local7 (23) * 8 + debug (7).
const MAX_PRI: u32 = 191;
/// Octet-counting length prefixes are at most this many digits.
const MAX_COUNT_DIGITS: usize = 5;

#[inline(never)]
pub(super) fn udp(w: &[u8]) -> Option<Verdict> {
    message(w, 0)
}

#[inline(never)]
pub(super) fn tcp(w: &[u8]) -> Option<Verdict> {
    if w.first() == Some(&b'<') {
        return message(w, 0);
    }
    // Octet counting: `NNN <PRI>...`.
    for (i, &b) in w.iter().enumerate().take(MAX_COUNT_DIGITS.wrapping_add(1)) {
        if b == b' ' && i > 0 {
            return message(w, i.wrapping_add(1));
        }
        if !b.is_ascii_digit() {
            return None;
        }
    }
    None
}

/// `<PRI>` at `at`, then a recognised header start.
#[inline(always)]
fn message(w: &[u8], at: usize) -> Option<Verdict> {
    // `at` follows the octet count's digits: reads go through `byte_at`, which the verifier can
    // bound.
    let byte = |i: usize| byte_at(w, at.wrapping_add(i)).unwrap_or(0);
    let digit = |i: usize| byte(i).is_ascii_digit();
    if byte(0) != b'<' || !digit(1) {
        return None;
    }
    let value = |i: usize| u32::from(byte(i).wrapping_sub(b'0'));
    // One to three digits, no leading zero but for `<0>`.
    let (pri, header): (u32, usize) = if byte(2) == b'>' {
        (value(1), 3)
    } else if digit(2) && byte(3) == b'>' && byte(1) != b'0' {
        (value(1).wrapping_mul(10).wrapping_add(value(2)), 4)
    } else if digit(2) && digit(3) && byte(4) == b'>' && byte(1) != b'0' {
        let tens = value(1).wrapping_mul(10).wrapping_add(value(2));
        (tens.wrapping_mul(10).wrapping_add(value(3)), 5)
    } else {
        return None;
    };
    let h = |i: usize| byte(header.wrapping_add(i));
    let rfc5424 = h(0) == b'1' && h(1) == b' ';
    let bsd = h(0).is_ascii_uppercase()
        && h(1).is_ascii_lowercase()
        && h(2).is_ascii_lowercase()
        && h(3) == b' '
        && (h(4).is_ascii_digit() || h(4) == b' ');
    let iso = (0..4).all(|i| h(i).is_ascii_digit()) && h(4) == b'-';
    (pri <= MAX_PRI && (rfc5424 || bsd || iso)).then(|| plaintext(Protocol::Syslog))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::classify::services::tests::{Bytes::Text, Fixture, tcp, udp};

    const SYSLOG: Verdict = plaintext(Protocol::Syslog);

    pub(crate) const FIXTURES: &[Fixture] = &[
        // util-linux 2.38 logger (Debian 12) on loopback.
        udp(
            "syslog RFC 5424 over UDP, logger --rfc5424",
            Text(b"<13>1 2026-11-23T17:29:47.833145+00:00 vm sealwatch - - [timeQua"),
            115,
            SYSLOG,
        ),
        udp(
            "syslog RFC 3164 over UDP, logger --rfc3164",
            Text(b"<13>Nov 23 17:29:47 vm sealwatch: test message rfc3164"),
            54,
            SYSLOG,
        ),
        tcp(
            "syslog RFC 5424 over TCP with octet counting, logger -T --octet-count",
            Text(b"112 <13>1 2026-11-23T17:29:48.345221+00:00 vm sealwatch - - [time"),
            116,
            SYSLOG,
        ),
        tcp(
            "syslog RFC 3164 over TCP, newline-framed, logger -T",
            Text(b"<13>Nov 23 17:29:48 vm sealwatch: tcp non-transparent\n"),
            54,
            SYSLOG,
        ),
        tcp(
            "syslog with an RFC 3339 timestamp over TCP, rsh-syslog-false-positive.pcap",
            Text(b"<167>2016-05-24T09:50:52.926451+02:00 ldap01 slapd[34534]: conn="),
            240,
            SYSLOG,
        ),
    ];

    #[test]
    fn messages_from_captures() {
        for f in FIXTURES {
            let w = f.window();
            let got = if f.udp {
                super::udp(&w)
            } else {
                super::tcp(&w)
            };
            assert_eq!(got, Some(f.expect), "{}", f.name);
        }
    }

    #[test]
    fn pri_range_and_headers() {
        assert_eq!(super::udp(b"<191>1 - - - - - -"), Some(SYSLOG));
        assert_eq!(
            super::udp(b"<192>1 - - - - - -"),
            None,
            "facility 24 does not exist"
        );
        assert_eq!(super::udp(b"<0>Jan  5 00:00:00 host x"), Some(SYSLOG));
        assert_eq!(super::udp(b"<013>1 -"), None, "leading zero");
        assert_eq!(
            super::udp(b"<13>hello world"),
            None,
            "free text is not named"
        );
        assert_eq!(super::udp(b"<1234>1 -"), None);
        assert_eq!(super::tcp(b"12 <13>1 -"), Some(SYSLOG));
        assert_eq!(
            super::tcp(b"123456 <13>1 -"),
            None,
            "length prefix too long"
        );
        assert_eq!(super::tcp(b" <13>1 -"), None);
        assert_eq!(super::udp(b"<html><body>"), None);
    }
}
