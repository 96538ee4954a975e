//! Caches and queues: memcached (text and binary protocols, TCP and UDP) and Kafka requests.
//!
//! memcached text protocol: lower-case commands (`get `, `gets `, `set `, `add `, `replace `,
//! `append `, `prepend `, `cas `, `delete `, `incr `, `decr `, `touch `, `gat `, `gats `,
//! meta `mg `/`ms `/`md `/`ma `, `stats`, `version`, `flush_all`, `verbosity `) followed by a
//! printable key or argument; and the server's `VALUE `, `STORED\r\n`, `VERSION `, `STAT `
//! replies for flows picked up mid-stream. Redis also accepts inline `get key` commands, but its
//! clients send RESP arrays, which the Redis detector names first.
//!
//! memcached binary protocol: a 24-byte header with magic `0x80` (request) or `0x81`
//! (response), data type 0, key and extras lengths that fit inside the total body length, and
//! for requests the extras length and key presence the opcode prescribes (a get has a key and
//! no extras, a set 8 bytes of extras, a version neither); for responses a known status. Over UDP, text commands sit behind an 8-byte frame header: request
//! id, sequence 0, datagram count 1, two reserved zero bytes.
//!
//! Kafka: every request starts with its size (int32), api_key (int16, a known API),
//! api_version (int16, small), correlation_id (int32) and client_id (int16 length, then the
//! printable id: `rdkafka`, `producer-1`, `console-consumer`). A client opens with ApiVersions or
//! Metadata; the size covers the rest of the segment (or more, for a request that spans
//! segments). Responses carry only a size and a correlation id and are not named.

use super::super::{Context, Protocol, Verdict, be16, be32, byte_at, has_prefix};
use super::{is_graphic, plaintext};

const BINARY_REQUEST: u8 = 0x80;
const BINARY_RESPONSE: u8 = 0x81;
/// Response opcodes up to the SASL and range commands.
const BINARY_MAX_OPCODE: u8 = 0x48;
const BINARY_HEADER_LEN: u32 = 24;
/// The server's default item size limit is 1 MiB; 128 MiB is its hard maximum.
const BINARY_MAX_BODY: u32 = 128 << 20;

const UDP_FRAME_LEN: usize = 8;

/// Highest Kafka api_key in use (Kafka 3.x/4.x go up to the 70s).
const KAFKA_MAX_API_KEY: u16 = 80;
const KAFKA_MAX_API_VERSION: u16 = 20;
/// api_key, api_version, correlation_id, client_id length.
const KAFKA_HEADER_LEN: u32 = 10;
/// A client's opening requests (ApiVersions, Metadata, SaslHandshake) are small; 1 MiB is the
/// producer's default `max.request.size`.
const KAFKA_MAX_REQUEST: u32 = 1 << 20;
/// Client ids are short names.
const KAFKA_MAX_CLIENT_ID: u16 = 255;
const KAFKA_CLIENT_ID_AT: usize = 14;
/// Client id bytes checked for printability.
const KAFKA_CLIENT_ID_CHECKED: u16 = 4;

#[inline(never)]
pub(super) fn memcached_text(w: &[u8]) -> Option<Verdict> {
    text(w).then(|| plaintext(Protocol::Memcached))
}

#[inline(never)]
pub(super) fn memcached_udp(w: &[u8], ctx: &Context) -> Option<Verdict> {
    let framed = ctx.payload_len > UDP_FRAME_LEN as u32
        && be16(w, 2) == Some(0)
        && be16(w, 4) == Some(1)
        && be16(w, 6) == Some(0);
    (framed && text(w.get(UDP_FRAME_LEN..)?)).then(|| plaintext(Protocol::Memcached))
}

/// A command word and its separator, then a printable byte (the key or first argument).
#[inline(always)]
fn text(w: &[u8]) -> bool {
    let argument_at = match w.first() {
        Some(b'g') if has_prefix(w, b"get ") || has_prefix(w, b"gat ") => 4,
        Some(b'g') if has_prefix(w, b"gets ") || has_prefix(w, b"gats ") => 5,
        Some(b's') if has_prefix(w, b"set ") => 4,
        Some(b's') if has_prefix(w, b"stats\r\n") || has_prefix(w, b"stats ") => return true,
        Some(b'a') if has_prefix(w, b"add ") => 4,
        Some(b'a') if has_prefix(w, b"append ") => 7,
        Some(b'r') if has_prefix(w, b"replace ") => 8,
        Some(b'p') if has_prefix(w, b"prepend ") => 8,
        Some(b'c') if has_prefix(w, b"cas ") => 4,
        Some(b'd') if has_prefix(w, b"delete ") => 7,
        Some(b'd') if has_prefix(w, b"decr ") => 5,
        Some(b'i') if has_prefix(w, b"incr ") => 5,
        Some(b't') if has_prefix(w, b"touch ") => 6,
        Some(b'm')
            if matches!(w.get(1), Some(b'g' | b's' | b'd' | b'a')) && w.get(2) == Some(&b' ') =>
        {
            3
        }
        Some(b'v') if has_prefix(w, b"version\r\n") => return true,
        Some(b'v') if has_prefix(w, b"verbosity ") => 10,
        Some(b'f') if has_prefix(w, b"flush_all") => return true,
        Some(b'V') if has_prefix(w, b"VALUE ") => 6,
        Some(b'V') if has_prefix(w, b"VERSION ") => 8,
        Some(b'S') if has_prefix(w, b"STORED\r\n") => return true,
        Some(b'S') if has_prefix(w, b"STAT ") => 5,
        _ => return false,
    };
    is_graphic(w.get(argument_at))
}

/// The 24-byte binary header: magic, opcode, key length, extras length, data type, vbucket or
/// status, total body length, opaque, CAS. Each request opcode has fixed extras and needs a key
/// or has none; responses carry a known status and at most the 4 flag bytes of a get.
#[inline(never)]
pub(super) fn memcached_binary(w: &[u8], ctx: &Context) -> Option<Verdict> {
    let &[magic, opcode, _, _, extras, data_type, ..] = w else {
        return None;
    };
    let key_len = be16(w, 2)?;
    let status = be16(w, 6)?;
    let body = be32(w, 8)?;
    let key_and_extras = u32::from(key_len).checked_add(u32::from(extras))?;
    let shape_ok = match magic {
        BINARY_REQUEST => request_shape(opcode, key_len, extras),
        BINARY_RESPONSE => {
            opcode <= BINARY_MAX_OPCODE
                && matches!(extras, 0 | 4)
                && matches!(status, 0x00..=0x09 | 0x20..=0x24 | 0x81..=0x86)
        }
        _ => false,
    };
    let ok = shape_ok
        && data_type == 0
        && key_and_extras <= body
        && body <= BINARY_MAX_BODY
        // The header and the key are in this segment; a value may continue in the next.
        && BINARY_HEADER_LEN.checked_add(key_and_extras)? <= ctx.payload_len;
    ok.then(|| plaintext(Protocol::Memcached))
}

/// Extras and key a request opcode must have (memcached's `protocol_binary.h`).
#[inline(always)]
fn request_shape(opcode: u8, key_len: u16, extras: u8) -> bool {
    let keyed = key_len > 0;
    match opcode {
        // get, getq, getk, getkq, delete(q), append/prepend(q), SASL auth/step
        0x00 | 0x04 | 0x09 | 0x0c | 0x0d | 0x0e | 0x0f | 0x14 | 0x19 | 0x1a | 0x21 | 0x22 => {
            keyed && extras == 0
        }
        // set, add, replace and their quiet forms: flags and expiration
        0x01..=0x03 | 0x11..=0x13 => keyed && extras == 8,
        // incr, decr (quiet too): delta, initial value, expiration
        0x05 | 0x06 | 0x15 | 0x16 => keyed && extras == 20,
        // touch, gat, gatq: expiration
        0x1c..=0x1e => keyed && extras == 4,
        // flush(q): an optional expiration
        0x08 | 0x18 => !keyed && matches!(extras, 0 | 4),
        // quit, noop, version, quitq, SASL list mechanisms
        0x07 | 0x0a | 0x0b | 0x17 | 0x20 => !keyed && extras == 0,
        // stat, with or without a group name
        0x10 => extras == 0,
        _ => false,
    }
}

#[inline(never)]
pub(super) fn kafka(w: &[u8], ctx: &Context) -> Option<Verdict> {
    let size = be32(w, 0)?;
    let api_key = be16(w, 4)?;
    let api_version = be16(w, 6)?;
    let client_id_len = be16(w, 12)?;
    let header_ok = (KAFKA_HEADER_LEN..=KAFKA_MAX_REQUEST).contains(&size)
        && size.checked_add(4)? >= ctx.payload_len
        && api_key <= KAFKA_MAX_API_KEY
        && api_version <= KAFKA_MAX_API_VERSION
        && (1..=KAFKA_MAX_CLIENT_ID).contains(&client_id_len)
        && u32::from(client_id_len).checked_add(KAFKA_HEADER_LEN)? <= size;
    if !header_ok {
        return None;
    }
    // The client id's first bytes: printable, and real payload rather than padding. Indexed
    // one by one: an iterator over a range the id length decides compiles to a loop whose
    // count the verifier cannot tie to the window.
    let checked = usize::from(client_id_len.min(KAFKA_CLIENT_ID_CHECKED));
    let id_end = KAFKA_CLIENT_ID_AT.checked_add(checked)?;
    let printable = (0..checked).all(|i| {
        byte_at(w, KAFKA_CLIENT_ID_AT.wrapping_add(i)).is_some_and(|b| b.is_ascii_graphic())
    });
    let real = u32::try_from(id_end).ok()? <= ctx.payload_len;
    (printable && real).then(|| plaintext(Protocol::Kafka))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::classify::services::tests::{
        Bytes::{Hex, Text},
        Fixture, tcp, udp,
    };
    use crate::classify::tests::hex;

    const MEMCACHED: Verdict = plaintext(Protocol::Memcached);
    const KAFKA: Verdict = plaintext(Protocol::Kafka);

    pub(crate) const FIXTURES: &[Fixture] = &[
        // memcached 1.6.18 (Debian 12) on loopback; libmemcached-tools 1.1 clients (memccat,
        // memcstat, memccp), and the text protocol as typed by a socket client.
        tcp(
            "memcached get, memccat",
            Text(b"get sw:key\r\n"),
            12,
            MEMCACHED,
        ),
        tcp(
            "memcached set with its data block",
            Text(b"set sw:key 0 60 5\r\nhello\r\n"),
            26,
            MEMCACHED,
        ),
        tcp(
            "memcached stats, memcstat",
            Text(b"stats\r\n"),
            7,
            MEMCACHED,
        ),
        tcp("memcached version", Text(b"version\r\n"), 9, MEMCACHED),
        tcp(
            "memcached VALUE reply, memcached 1.6.18",
            Text(b"VALUE sw:key 0 5\r\nhello\r\nEND\r\n"),
            30,
            MEMCACHED,
        ),
        tcp(
            "memcached STORED reply, memcached 1.6.18",
            Text(b"STORED\r\n"),
            8,
            MEMCACHED,
        ),
        tcp(
            "memcached binary version request, memcstat --binary",
            Hex("800b00000000000000000000000100000000000000000000"),
            24,
            MEMCACHED,
        ),
        tcp(
            "memcached binary version response, memcached 1.6.18",
            Hex("810b00000000000000000006000100000000000000000000312e362e3138"),
            30,
            MEMCACHED,
        ),
        tcp(
            "memcached binary getk request, memccat --binary",
            Hex("800c0006000000000000000600010000000000000000000073773a6b6579"),
            30,
            MEMCACHED,
        ),
        tcp(
            "memcached binary set of a 1.1 kB file, memccp --binary",
            Hex(
                "80010008080000000000046b0001000000000000000000000000000000000000636572742e70656d2d2d2d2d2d424547494e2043455254494649434154452d2d",
            ),
            1155,
            MEMCACHED,
        ),
        udp(
            "memcached get over UDP behind its frame header",
            Hex("00010000000100006765742073773a6b65790d0a"),
            20,
            MEMCACHED,
        ),
        udp(
            "memcached VALUE reply over UDP, memcached 1.6.18",
            Hex("000100000001000056414c55452073773a6b6579203020350d0a68656c6c6f0d0a454e440d0a"),
            38,
            MEMCACHED,
        ),
        tcp(
            "Kafka ApiVersions v3 request, kcat 1.7 / librdkafka 2.0.2",
            Hex("000000240012000300000001000772646b61666b61000b6c696272646b61666b6106322e302e3200"),
            40,
            KAFKA,
        ),
    ];

    #[test]
    fn messages_from_captures() {
        for f in FIXTURES {
            let w = f.window();
            let ctx = f.ctx();
            let got = if f.udp {
                memcached_udp(&w, &ctx)
            } else {
                memcached_binary(&w, &ctx)
                    .or_else(|| kafka(&w, &ctx))
                    .or_else(|| memcached_text(&w))
            };
            assert_eq!(got, Some(f.expect), "{}", f.name);
        }
    }

    #[test]
    fn text_needs_a_lower_case_command_and_an_argument() {
        assert_eq!(memcached_text(b"GET /index.html HTTP/1.1\r\n"), None);
        assert_eq!(memcached_text(b"get \r\n"), None);
        assert_eq!(memcached_text(b"getaway"), None);
        assert_eq!(memcached_text(b"mg foo v\r\n"), Some(MEMCACHED));
        assert_eq!(memcached_text(b"mx foo\r\n"), None);
    }

    #[test]
    fn binary_lengths_must_agree() {
        let getk = hex("800c0006000000000000000600010000000000000000000073773a6b6579");
        assert_eq!(
            memcached_binary(&getk, &Context::tcp(30, true)),
            Some(MEMCACHED)
        );
        assert_eq!(
            memcached_binary(&getk, &Context::tcp(29, true)),
            None,
            "key cut off"
        );
        let mut body_short = getk.clone();
        body_short[11] = 5;
        assert_eq!(memcached_binary(&body_short, &Context::tcp(30, true)), None);
        let mut typed = getk.clone();
        typed[5] = 1;
        assert_eq!(memcached_binary(&typed, &Context::tcp(30, true)), None);
        let mut add_without_extras = getk.clone();
        add_without_extras[1] = 0x02;
        assert_eq!(
            memcached_binary(&add_without_extras, &Context::tcp(30, true)),
            None
        );
        // A proprietary protocol on port 443 with the same magic byte (1kxun.pcap).
        let lookalike = hex("8002000100000013000000210000000080001ad48e03000000ffff");
        assert_eq!(memcached_binary(&lookalike, &Context::tcp(27, true)), None);
        // Magic byte and zero padding only.
        let mut padded = [0u8; 64];
        padded[0] = BINARY_REQUEST;
        assert_eq!(memcached_binary(&padded, &Context::tcp(1, true)), None);
    }

    #[test]
    fn kafka_header_checks() {
        let api_versions =
            hex("000000240012000300000001000772646b61666b61000b6c696272646b61666b6106322e302e3200");
        assert_eq!(kafka(&api_versions, &Context::tcp(40, true)), Some(KAFKA));
        assert_eq!(
            kafka(&api_versions, &Context::tcp(41, true)),
            None,
            "segment longer than the request"
        );
        let mut unknown_api = api_versions.clone();
        unknown_api[5] = 0xc8;
        assert_eq!(kafka(&unknown_api, &Context::tcp(40, true)), None);
        let mut binary_id = api_versions.clone();
        binary_id[15] = 0x07;
        assert_eq!(kafka(&binary_id, &Context::tcp(40, true)), None);
        // An IPP request body after its HTTP headers (ipp.pcap): version 1.1, operation 0x0b.
        let ipp = hex(
            "0101000b0000000101470012617474726962757465732d6368617273657400057574662d3848001b617474726962757465732d6e61747572616c2d6c616e6775",
        );
        assert_eq!(kafka(&ipp, &Context::tcp(289, false)), None);
        let mut no_id = api_versions;
        no_id[13] = 0;
        assert_eq!(kafka(&no_id, &Context::tcp(40, true)), None);
    }
}
