//! Plaintext application protocols that have no in-band upgrade to TLS (their TLS variants
//! start with a TLS handshake), so naming them on the first payload is final: Redis (RESP
//! command arrays), MongoDB wire protocol, MQTT CONNECT, AMQP 0-9-1 (protocol header and
//! frames), and HTTP/2 with prior knowledge (h2c, gRPC without TLS).

use super::{Context, Encryption, Protocol, Verdict, be32, has_prefix};

#[inline(always)]
fn plaintext(p: Protocol) -> Verdict {
    Verdict::new(p, Encryption::Plaintext)
}

/// `*<count>\r\n$<len>\r\n`: how every Redis client sends a command (RESP array of bulk
/// strings). Server replies (`+OK`, `:1`) are left alone: POP3 and others start alike.
#[inline(always)]
pub(super) fn redis(w: &[u8]) -> Option<Verdict> {
    let digit = |i: usize| w.get(i).is_some_and(u8::is_ascii_digit);
    let at = |i: usize, b: u8| w.get(i) == Some(&b);
    if !at(0, b'*') || !digit(1) {
        return None;
    }
    // One or two count digits, then CRLF and a bulk-string length.
    let ok = if digit(2) {
        at(3, b'\r') && at(4, b'\n') && at(5, b'$') && digit(6)
    } else {
        at(2, b'\r') && at(3, b'\n') && at(4, b'$') && digit(5)
    };
    ok.then(|| plaintext(Protocol::Redis))
}

/// MongoDB message header: little-endian length, request id, response-to and a known opcode.
#[inline(always)]
pub(super) fn mongodb(w: &[u8]) -> Option<Verdict> {
    let length = be32(w, 0)?.swap_bytes();
    let opcode = be32(w, 12)?.swap_bytes();
    // OP_REPLY, the legacy 2001-2007 range (OP_QUERY is 2004), OP_COMPRESSED, OP_MSG.
    let known = matches!(opcode, 1 | 2001..=2007 | 2012 | 2013);
    // Server limit: 48 MB messages.
    (known && (16..=48_000_000).contains(&length)).then(|| plaintext(Protocol::Mongodb))
}

/// MQTT CONNECT: packet type 1, a 1- or 2-byte remaining length, then the protocol name
/// `MQTT` (3.1.1, 5) or `MQIsdp` (3.1).
#[inline(always)]
pub(super) fn mqtt(w: &[u8]) -> Option<Verdict> {
    if w.first() != Some(&0x10) {
        return None;
    }
    let name_at = |off: usize| {
        let rest = w.get(off..).unwrap_or(&[]);
        has_prefix(rest, b"\x00\x04MQTT") || has_prefix(rest, b"\x00\x06MQIsdp")
    };
    (name_at(2) || name_at(3)).then(|| plaintext(Protocol::Mqtt))
}

/// AMQP 0-9-1: the `AMQP` protocol header a client opens with, or a frame (method, header,
/// body or heartbeat) whose frame-end octet 0xCE sits where its size says.
#[inline(always)]
pub(super) fn amqp(w: &[u8], ctx: &Context) -> Option<Verdict> {
    if has_prefix(w, b"AMQP\x00") || has_prefix(w, b"AMQP\x01") || has_prefix(w, b"AMQP\x03") {
        return Some(plaintext(Protocol::Amqp));
    }
    let &[kind, _, _, s0, s1, s2, s3, ..] = w else {
        return None;
    };
    let size = u32::from_be_bytes([s0, s1, s2, s3]);
    if !matches!(kind, 1 | 2 | 3 | 8) || size.checked_add(8)? > ctx.payload_len {
        return None;
    }
    let end = usize::try_from(size).ok()?.checked_add(7)?;
    (w.get(end) == Some(&0xce)).then(|| plaintext(Protocol::Amqp))
}

/// The HTTP/2 connection preface sent in the clear (RFC 9113 section 3.4).
#[inline(always)]
pub(super) fn h2c(w: &[u8]) -> Option<Verdict> {
    has_prefix(w, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").then(|| plaintext(Protocol::Http2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::tests::hex;

    #[test]
    fn redis_cli_commands() {
        assert_eq!(
            redis(b"*1\r\n$4\r\nPING\r\n"),
            Some(plaintext(Protocol::Redis))
        );
        assert_eq!(
            redis(b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"),
            Some(plaintext(Protocol::Redis))
        );
        assert_eq!(
            redis(b"*12\r\n$5\r\nRPUSH\r\n"),
            Some(plaintext(Protocol::Redis))
        );
        assert_eq!(redis(b"+OK\r\n"), None);
        assert_eq!(redis(b"* OK IMAP4rev1 ready\r\n"), None);
    }

    #[test]
    fn mongodb_queries_from_a_capture() {
        // OP_QUERY admin.$cmd (opcode 2004) from two clients.
        let a =
            hex("f700000098366e4d00000000d40700000000000061646d696e2e24636d640000000000ffffffffd0");
        let b =
            hex("3b0000000000000000000000d4070000000000006162746573742e24636d640000000000ffffffff");
        assert_eq!(mongodb(&a), Some(plaintext(Protocol::Mongodb)));
        assert_eq!(mongodb(&b), Some(plaintext(Protocol::Mongodb)));
        let mut bad = a.clone();
        bad[12] = 0x99;
        assert_eq!(mongodb(&bad), None);
    }

    #[test]
    fn mqtt_connect() {
        // CONNECT, MQTT 3.1.1, clean session, keep-alive 60 s, client id "sw".
        let connect = hex("100e00044d5154540402003c000273770a");
        assert_eq!(mqtt(&connect), Some(plaintext(Protocol::Mqtt)));
        // PINGREQ: two bytes, nothing to go on.
        assert_eq!(mqtt(&hex("c000")), None);
    }

    #[test]
    fn amqp_frames_from_a_capture() {
        // basic.publish method frame (class 60, method 40), size 0x21, frame end 0xCE.
        let mut publish =
            hex("01000100000021003c002800000863656c657279657610776f726b65722e68656172746265617400");
        publish.resize(41, 0);
        publish[40] = 0xce;
        assert_eq!(
            amqp(&publish, &Context::tcp(41, false)),
            Some(plaintext(Protocol::Amqp))
        );
        assert_eq!(
            amqp(b"AMQP\x00\x00\x09\x01", &Context::tcp(8, true)),
            Some(plaintext(Protocol::Amqp))
        );
        let mut no_end = publish.clone();
        no_end[40] = 0;
        assert_eq!(amqp(&no_end, &Context::tcp(41, false)), None);
    }

    #[test]
    fn h2c_preface() {
        assert_eq!(
            h2c(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04"),
            Some(plaintext(Protocol::Http2))
        );
        assert_eq!(h2c(b"PRI * HTTP/1.1\r\n"), None);
    }
}
