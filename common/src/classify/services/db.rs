//! Database wire protocols: PostgreSQL and MySQL/MariaDB, from either side.
//!
//! PostgreSQL (frontend/backend protocol 3.0). A client opens with a length-prefixed message
//! whose second word is a code: protocol 3.0 (`00 03 00 00`) for a startup message, followed by
//! lower-case parameter names (`user`, `database`, ...); or one of the special codes
//! `04 d2 16 2f` (SSLRequest), `04 d2 16 30` (GSSENCRequest), `04 d2 16 2e` (CancelRequest),
//! each with its fixed length. The server speaks first only after a startup message, with an
//! Authentication message (`R`, length, a known method code with its own length) or an
//! ErrorResponse (`E`, length, the severity field `S`). The one-byte `S`/`N`/`G` answers to
//! SSLRequest/GSSENCRequest carry too little to name.
//!
//! MySQL/MariaDB (client/server protocol 4.1+). Every packet has a 3-byte little-endian length
//! and a sequence number. The server opens with sequence 0: the handshake v10 (protocol byte
//! 10, then a NUL-terminated version string starting with digits). The client answers with
//! sequence 1: a handshake response or an SSL request, both starting with capability flags
//! (CLIENT_PROTOCOL_41 set), the maximum packet size, a character set and 19 or more zero
//! filler bytes (MariaDB keeps its extended capabilities in the last four of the 23).
//!
//! Both can upgrade to TLS (SSLRequest, CLIENT_SSL) later in the flow; that is for the TLS
//! detector to see. These name the first message only.

use super::super::{Context, Protocol, Verdict, be32};
use super::plaintext;

/// PostgreSQL protocol 3.0, the only one servers still accept.
const PG_PROTOCOL_3: u32 = 0x0003_0000;
const PG_SSL_REQUEST: u32 = 80_877_103;
const PG_GSSENC_REQUEST: u32 = 80_877_104;
const PG_CANCEL_REQUEST: u32 = 80_877_102;
/// The server's own limit on a startup packet (`MAX_STARTUP_PACKET_LENGTH`).
const PG_MAX_STARTUP_LEN: u32 = 10_000;
/// Length, code, a parameter name's first letter.
const PG_MIN_STARTUP_LEN: u32 = 9;
/// Severity tag, one letter, NUL, message terminator: the smallest ErrorResponse body.
const PG_MIN_ERROR_LEN: u32 = 8;

/// MySQL protocol version byte of the v10 handshake (every server since 3.21).
const MYSQL_PROTOCOL_10: u8 = 10;
const CLIENT_PROTOCOL_41: u32 = 0x0200;
/// Length and sequence number.
const MYSQL_HEADER_LEN: u32 = 4;
/// Protocol byte, a 2-byte version, NUL, thread id, 8 scramble bytes, filler, capabilities.
const MYSQL_MIN_GREETING_LEN: u32 = 1 + 2 + 1 + 4 + 8 + 1 + 2;
const MYSQL_MAX_GREETING_LEN: u32 = 1024;
/// Capabilities, max packet size, character set, 23 reserved bytes: an SSL request entire,
/// the start of a handshake response.
const MYSQL_MIN_RESPONSE_LEN: u32 = 32;

#[inline(never)]
pub(super) fn postgresql(w: &[u8], ctx: &Context) -> Option<Verdict> {
    let ok = match w.first()? {
        b'R' => pg_authentication(w, ctx),
        b'E' => pg_error(w, ctx),
        _ => pg_client_opening(w),
    };
    ok.then_some(plaintext(Protocol::Postgresql))
}

#[inline(always)]
fn pg_client_opening(w: &[u8]) -> bool {
    let (Some(len), Some(code)) = (be32(w, 0), be32(w, 4)) else {
        return false;
    };
    match code {
        PG_PROTOCOL_3 => {
            (PG_MIN_STARTUP_LEN..=PG_MAX_STARTUP_LEN).contains(&len)
                && w.get(8).is_some_and(u8::is_ascii_lowercase)
        }
        PG_SSL_REQUEST | PG_GSSENC_REQUEST => len == 8,
        PG_CANCEL_REQUEST => len == 16,
        _ => false,
    }
}

/// `R`, length, method: Ok (0), Kerberos V5 (2), cleartext (3), GSS (7), SSPI (9) carry nothing
/// more; MD5 (5) a 4-byte salt; SASL (10) a list of mechanism names (`SCRAM-SHA-256`).
#[inline(always)]
fn pg_authentication(w: &[u8], ctx: &Context) -> bool {
    let (Some(len), Some(method)) = (be32(w, 1), be32(w, 5)) else {
        return false;
    };
    let sized = match method {
        0 | 2 | 3 | 7 | 9 => len == 8,
        5 => len == 12,
        10 => len > 10 && w.get(9).is_some_and(u8::is_ascii_uppercase),
        _ => false,
    };
    sized && len.checked_add(1).is_some_and(|end| end <= ctx.payload_len)
}

/// `E`, a length under 64 KiB, then the severity field: `S` and a non-empty value (`FATAL`,
/// or its translation).
#[inline(always)]
fn pg_error(w: &[u8], ctx: &Context) -> bool {
    let (Some(len), Some(&field), Some(&first)) = (be32(w, 1), w.get(5), w.get(6)) else {
        return false;
    };
    field == b'S'
        && first != 0
        && (PG_MIN_ERROR_LEN..=0xffff).contains(&len)
        && len.checked_add(1).is_some_and(|end| end <= ctx.payload_len)
}

#[inline(never)]
pub(super) fn mysql(w: &[u8], ctx: &Context) -> Option<Verdict> {
    let &[l0, l1, l2, sequence, first, ..] = w else {
        return None;
    };
    let len = u32::from_le_bytes([l0, l1, l2, 0]);
    if len.checked_add(MYSQL_HEADER_LEN)? > ctx.payload_len {
        return None;
    }
    let ok = match sequence {
        0 => mysql_greeting(w, len, first),
        1 => mysql_client_response(w, len, ctx),
        _ => false,
    };
    ok.then_some(plaintext(Protocol::Mysql))
}

/// Protocol 10, then a version such as `8.0.36` or `5.5.5-10.11.6-MariaDB`.
#[inline(always)]
fn mysql_greeting(w: &[u8], len: u32, protocol: u8) -> bool {
    let version_ok = w.get(5).is_some_and(u8::is_ascii_digit)
        && w.get(6).is_some_and(|&b| b == b'.' || b.is_ascii_digit());
    protocol == MYSQL_PROTOCOL_10
        && (MYSQL_MIN_GREETING_LEN..=MYSQL_MAX_GREETING_LEN).contains(&len)
        && version_ok
}

/// Capabilities with CLIENT_PROTOCOL_41, a character set, then reserved zeros at 13..32.
#[inline(always)]
fn mysql_client_response(w: &[u8], len: u32, ctx: &Context) -> bool {
    let (Some(caps), Some(&charset)) = (be32(w, 4), w.get(12)) else {
        return false;
    };
    let caps = caps.swap_bytes();
    let filler = [13, 17, 21, 25, 28]
        .iter()
        .all(|&at| be32(w, at) == Some(0));
    len >= MYSQL_MIN_RESPONSE_LEN
        && ctx.payload_len >= MYSQL_MIN_RESPONSE_LEN.wrapping_add(MYSQL_HEADER_LEN)
        && caps & CLIENT_PROTOCOL_41 != 0
        && charset != 0
        && filler
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::classify::services::tests::{Bytes::Hex, Fixture, tcp};
    use crate::classify::tests::hex;

    const PG: Verdict = plaintext(Protocol::Postgresql);
    const MYSQL: Verdict = plaintext(Protocol::Mysql);

    pub(crate) const FIXTURES: &[Fixture] = &[
        tcp(
            "PostgreSQL startup (user, database, application_name), psql 15 on loopback",
            Hex(
                "00000039000300007573657200737700646174616261736500706f737467726573006170706c69636174696f6e5f6e616d65007073716c0000",
            ),
            57,
            PG,
        ),
        tcp(
            "PostgreSQL startup, pgsql.pcap",
            Hex("000000260003000075736572006f727978006461746162617365006d61696c73746f72650000"),
            38,
            PG,
        ),
        tcp(
            "PostgreSQL SSLRequest, pgsql.pcap",
            Hex("0000000804d2162f"),
            8,
            PG,
        ),
        tcp(
            "PostgreSQL GSSENCRequest, pgsql.pcap",
            Hex("0000000804d21630"),
            8,
            PG,
        ),
        tcp(
            "PostgreSQL CancelRequest, psql 15 interrupted on loopback",
            Hex("0000001004d2162e00006c4b9d49951b"),
            16,
            PG,
        ),
        tcp(
            "PostgreSQL AuthenticationSASL (SCRAM-SHA-256), PostgreSQL 15 on loopback",
            Hex("52000000170000000a534352414d2d5348412d3235360000"),
            24,
            PG,
        ),
        tcp(
            "PostgreSQL AuthenticationMD5Password, pgsql.pcap",
            Hex("520000000c00000005ad44ff54"),
            13,
            PG,
        ),
        tcp(
            // Here it answered a failed SCRAM exchange; a pg_hba.conf rejection sends the same
            // message as the server's first.
            "PostgreSQL ErrorResponse (SFATAL VFATAL C28P01), PostgreSQL 15 on loopback",
            Hex(
                "450000006653464154414c0056464154414c00433238503031004d70617373776f72642061757468656e7469636174696f6e206661696c656420666f72",
            ),
            103,
            PG,
        ),
        tcp(
            "MariaDB 10.11 handshake v10 greeting, on loopback",
            Hex(
                "640000000a352e352e352d31302e31312e31392d4d6172696144422d302b64656231327531000400000061477d5f4723754a00fef72d0200ff81150000000000",
            ),
            104,
            MYSQL,
        ),
        tcp(
            "MariaDB 10.11 client handshake response (user sw), mariadb client on loopback",
            Hex(
                "ce00000184a2bf000000100021000000000000000000000000000000000000001d000000737700145e5d3e884606a35bbae75bb065a1167c120c51726d797371",
            ),
            210,
            MYSQL,
        ),
        tcp(
            "MariaDB 10.11 client SSL request, mariadb --ssl on loopback",
            Hex("2000000184aabf000000100021000000000000000000000000000000000000001d000000"),
            36,
            MYSQL,
        ),
    ];

    #[test]
    fn openings_from_captures() {
        for f in FIXTURES {
            let w = f.window();
            let got = postgresql(&w, &f.ctx()).or_else(|| mysql(&w, &f.ctx()));
            assert_eq!(got, Some(f.expect), "{}", f.name);
        }
    }

    #[test]
    fn mysql_greeting_near_misses() {
        let greeting = hex(
            "640000000a352e352e352d31302e31312e31392d4d6172696144422d302b64656231327531000400000061477d5f4723754a00fef72d0200ff81150000000000",
        );
        assert_eq!(mysql(&greeting, &Context::tcp(104, true)), Some(MYSQL));
        assert_eq!(
            mysql(&greeting, &Context::tcp(100, true)),
            None,
            "longer than the segment"
        );
        let mut v9 = greeting.clone();
        v9[4] = 9;
        assert_eq!(mysql(&v9, &Context::tcp(104, true)), None);
        let mut seq2 = greeting.clone();
        seq2[3] = 2;
        assert_eq!(mysql(&seq2, &Context::tcp(104, true)), None);
        let mut no_version = greeting;
        no_version[5] = b'x';
        assert_eq!(mysql(&no_version, &Context::tcp(104, true)), None);
    }

    #[test]
    fn pg_near_misses() {
        let ctx = Context::tcp(8, true);
        assert_eq!(postgresql(&hex("0000000904d2162f"), &ctx), None);
        assert_eq!(postgresql(&hex("0000000804d21631"), &ctx), None);
        // Protocol 2.0 startup: long gone from servers.
        assert_eq!(
            postgresql(
                &hex("0000012800020000757365720000"),
                &Context::tcp(296, true)
            ),
            None
        );
        // Authentication message longer than the packet, unknown method.
        assert_eq!(
            postgresql(&hex("520000000c00000005ad44ff54"), &Context::tcp(12, true)),
            None
        );
        assert_eq!(
            postgresql(&hex("5200000008000000ff"), &Context::tcp(9, true)),
            None
        );
        // `E` with no severity field.
        assert_eq!(
            postgresql(b"E\x00\x00\x00\x10Cnothing", &Context::tcp(17, true)),
            None
        );
    }

    #[test]
    fn mysql_response_needs_its_zero_filler() {
        let mut ssl =
            hex("2000000184aabf000000100021000000000000000000000000000000000000001d000000");
        assert_eq!(mysql(&ssl, &Context::tcp(36, true)), Some(MYSQL));
        ssl[20] = 0x11;
        assert_eq!(mysql(&ssl, &Context::tcp(36, true)), None);
        // Zero padding after a short payload is not filler.
        let head = hex("2000000184aabf000000100021");
        let mut padded = [0u8; 64];
        padded[..head.len()].copy_from_slice(&head);
        assert_eq!(mysql(&padded, &Context::tcp(13, true)), None);
    }
}
