//! TLS (and SSL 3.0) handshakes: a handshake record (content type 22, version 3.x, plausible
//! length) carrying a ClientHello or ServerHello whose body starts with a 3.x version.
//!
//! On a flow seen from its SYN only hellos count: a bare record header is five easy bytes to fake,
//! a hello with consistent lengths and versions is not. On a flow picked up mid-stream the
//! handshake is already over, so a record header (change-cipher-spec, alert, handshake or
//! application data, TLS 1.0-1.3) whose length fits the packet is accepted too.

use super::{Context, Encryption, Protocol, Verdict};

const CONTENT_HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
/// Highest minor version in record and hello headers: SSL 3.0 (0) to TLS 1.3 (4); TLS 1.3
/// itself puts 3.3 in the legacy fields and negotiates in extensions.
const MAX_MINOR: u8 = 4;
/// Hello body floor: version (2) + random (32) + session-id length (1) + at least a 3-byte tail.
const MIN_HELLO_LEN: u32 = 38;
/// A record holding the smallest hello: its 4-byte handshake header plus the body floor.
const MIN_HELLO_RECORD_LEN: u16 = 4 + MIN_HELLO_LEN as u16;
/// Record length limit: 2^14 plaintext plus the 2048 bytes RFC 8446 allows for expansion.
const MAX_RECORD_LEN: u16 = (1 << 14) + 2048;

const CONTENT_CHANGE_CIPHER_SPEC: u8 = 20;
const CONTENT_APPLICATION_DATA: u8 = 23;

#[inline(always)]
pub(super) fn detect(w: &[u8], ctx: &Context) -> Option<Verdict> {
    hello(w)
        .or_else(|| sslv2_client_hello(w, ctx))
        .or_else(|| if ctx.start_seen { None } else { record(w) })
}

/// A ClientHello in the SSL 2.0 record format (a 2-byte header with the top bit set), which
/// very old clients send and some still send for compatibility while offering SSL 3.0 to
/// TLS 1.2: message type 1, version 0.2 or 3.0-3.3, then cipher-spec, session-id and challenge
/// lengths that must add up to the record exactly (cipher specs are 3 bytes each, the session
/// id empty or 16 bytes, the challenge 16 to 32). Whether SSL 2.0 is really spoken is for the
/// deep parse to say (`sealwatch.weak`).
#[inline(always)]
fn sslv2_client_hello(w: &[u8], ctx: &Context) -> Option<Verdict> {
    let &[
        h0,
        h1,
        1,
        major,
        minor,
        cs_hi,
        cs_lo,
        sid_hi,
        sid_lo,
        ch_hi,
        ch_lo,
        ..,
    ] = w
    else {
        return None;
    };
    if h0 & 0x80 == 0 || !matches!((major, minor), (0, 2) | (3, 0..=3)) {
        return None;
    }
    let record = u32::from(u16::from_be_bytes([h0 & 0x7f, h1]));
    let specs = u32::from(u16::from_be_bytes([cs_hi, cs_lo]));
    let session = u16::from_be_bytes([sid_hi, sid_lo]);
    let challenge = u16::from_be_bytes([ch_hi, ch_lo]);
    let fields = specs
        .checked_add(u32::from(session))?
        .checked_add(u32::from(challenge))?
        .checked_add(SSLV2_HELLO_FIXED)?;
    let ok = specs > 0
        && specs % 3 == 0
        && matches!(session, 0 | 16)
        && (16..=32).contains(&challenge)
        && fields == record
        && record.checked_add(2)? <= ctx.payload_len;
    ok.then_some(Verdict::new(Protocol::Tls, Encryption::Encrypted))
}

/// SSL 2.0 ClientHello bytes counted in the record length before the three variable fields:
/// message type, version, and the three 2-byte lengths.
const SSLV2_HELLO_FIXED: u32 = 9;

/// A record header alone, for flows whose handshake we did not see.
#[inline(always)]
fn record(w: &[u8]) -> Option<Verdict> {
    let &[content, 3, minor @ 1..=4, len_hi, len_lo, ..] = w else {
        return None;
    };
    // The length is not checked against the packet: a record may span segments, or share one.
    let len = u16::from_be_bytes([len_hi, len_lo]);
    let plausible = (CONTENT_CHANGE_CIPHER_SPEC..=CONTENT_APPLICATION_DATA).contains(&content)
        && minor <= MAX_MINOR
        && (1..=MAX_RECORD_LEN).contains(&len);
    plausible.then_some(Verdict::new(Protocol::Tls, Encryption::Encrypted))
}

#[inline(always)]
fn hello(w: &[u8]) -> Option<Verdict> {
    let &[
        CONTENT_HANDSHAKE,
        3,
        record_minor,
        len_hi,
        len_lo,
        hs_type,
        hs_len0,
        hs_len1,
        hs_len2,
        3,
        hello_minor,
        ..,
    ] = w
    else {
        return None;
    };
    let record_len = u16::from_be_bytes([len_hi, len_lo]);
    let hello_len = u32::from_be_bytes([0, hs_len0, hs_len1, hs_len2]);
    let plausible = record_minor <= MAX_MINOR
        && hello_minor <= MAX_MINOR
        && matches!(hs_type, CLIENT_HELLO | SERVER_HELLO)
        && (MIN_HELLO_RECORD_LEN..=MAX_RECORD_LEN).contains(&record_len)
        && hello_len >= MIN_HELLO_LEN;
    plausible.then_some(Verdict::new(Protocol::Tls, Encryption::Encrypted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{classify_payload, tests::hex};

    const FROM_SYN: Context = Context::tcp(517, true);
    const MID_STREAM: Context = Context::tcp(517, false);

    const TLS: Option<Verdict> = Some(Verdict::new(Protocol::Tls, Encryption::Encrypted));

    /// curl 7.88 / OpenSSL 3.0 ClientHello (TLS 1.3 offer), first 48 bytes.
    const CURL_CLIENT_HELLO: &str = "1603010200010001fc0303e26edf135dc26216ec82aefa065ed38de7fdaead23704a1b1c7d1ba4cd18a390206ee1d926";
    /// `openssl s_server` ServerHello answering it.
    const OPENSSL_SERVER_HELLO: &str = "160303007a020000760303dea2c14b93317efcf9dd6af95ad6fe62804ec965e0fc9edf8f2315bf9c379113206ee1d926";
    /// `openssl s_client -tls1_2` ClientHello and its ServerHello (with the DOWNGRD sentinel).
    const TLS12_CLIENT_HELLO: &str = "16030100b7010000b30303d50ba61d321ac5573b533f4597c4db5adb06774a73ef7acd3262d25978cdfbab000038c02c";
    const TLS12_SERVER_HELLO: &str = "16030300410200003d030379382a6e850cddc495f54893a318cdc525885e4208c89232444f574e4752440100c02c0000";

    #[test]
    fn real_hellos_are_tls_in_both_directions() {
        for h in [
            CURL_CLIENT_HELLO,
            OPENSSL_SERVER_HELLO,
            TLS12_CLIENT_HELLO,
            TLS12_SERVER_HELLO,
        ] {
            assert_eq!(detect(&hex(h), &FROM_SYN), TLS, "{h}");
            assert_eq!(
                classify_payload(&hex(h), &FROM_SYN),
                TLS.unwrap_or(Verdict::UNKNOWN)
            );
        }
    }

    /// An SSL 2.0-format ClientHello offering TLS 1.0, laid out as RFC 6101 Appendix E.2 and
    /// old OpenSSL (`-ssl2` compat hellos) send it: 2 cipher specs, no session id, a 16-byte
    /// challenge. Hand-assembled: no capture of one exists in the corpus and today's OpenSSL
    /// cannot send one.
    const SSLV2_HELLO: &str = "801f0103010006000000100000040100800102030405060708090a0b0c0d0e0f10";

    #[test]
    fn sslv2_format_client_hellos() {
        let hello = hex(SSLV2_HELLO);
        assert_eq!(hello.len(), 33);
        assert_eq!(detect(&hello, &Context::tcp(33, true)), TLS);
        // Lengths that do not add up, or a packet shorter than the record.
        let mut bad = hello.clone();
        bad[10] = 0x11;
        assert_eq!(detect(&bad, &Context::tcp(33, true)), None);
        assert_eq!(detect(&hello, &Context::tcp(20, true)), None);
        // HTTP and other text never has the top bit set in its first byte.
        assert_eq!(detect(b"GET / HTTP/1.1\r\n", &FROM_SYN), None);
    }

    #[test]
    fn eleven_bytes_are_enough_and_ten_are_not() {
        let hello = hex(CURL_CLIENT_HELLO);
        assert_eq!(detect(&hello[..11], &FROM_SYN), TLS);
        assert_eq!(detect(&hello[..10], &FROM_SYN), None);
    }

    #[test]
    fn bare_record_headers_and_bad_fields_are_rejected() {
        // Application data record on a flow seen from its SYN: could be anything behind a fake header.
        assert_eq!(
            detect(
                &hex("1703030040aabbccddeeff00112233"),
                &Context::tcp(69, true)
            ),
            None
        );
        let mut hello = hex(CURL_CLIENT_HELLO);
        hello[2] = 9; // record version 3.9
        assert_eq!(detect(&hello, &FROM_SYN), None);
        let mut hello = hex(CURL_CLIENT_HELLO);
        hello[5] = 11; // Certificate, not a hello
        assert_eq!(detect(&hello, &FROM_SYN), None);
        let mut hello = hex(CURL_CLIENT_HELLO);
        hello[3] = 0x60; // record longer than TLS allows
        assert_eq!(detect(&hello, &FROM_SYN), None);
        let mut hello = hex(CURL_CLIENT_HELLO);
        hello[9] = 0x7f; // hello body version is not 3.x
        assert_eq!(detect(&hello, &FROM_SYN), None);
    }

    #[test]
    fn records_count_only_on_flows_picked_up_mid_stream() {
        // TLS 1.2 application data, 64-byte record in a 69-byte segment.
        let app = hex("1703030040aabbccddeeff00112233");
        assert_eq!(detect(&app, &Context::tcp(69, false)), TLS);
        assert_eq!(detect(&app, &Context::tcp(69, true)), None);
        // An alert and a change-cipher-spec also start mid-stream segments.
        assert_eq!(detect(&hex("15030300020230"), &Context::tcp(7, false)), TLS);
        assert_eq!(detect(&hex("140303000101"), &Context::tcp(6, false)), TLS);
        // Not TLS: SSL 3.0 records (no longer spoken), zero length, unknown content type.
        assert_eq!(detect(&hex("1703000040aabb"), &MID_STREAM), None);
        assert_eq!(detect(&hex("1703030000"), &MID_STREAM), None);
        assert_eq!(detect(&hex("1803030040aabb"), &MID_STREAM), None);
        assert_eq!(detect(b"GET / HTTP/1.1\r\n", &MID_STREAM), None);
    }
}
