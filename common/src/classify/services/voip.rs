//! Real-time communication signalling: STUN/TURN and SIP, over UDP and TCP.
//!
//! STUN (RFC 8489 section 5): a 20-byte header, message type with the top two bits clear, the
//! attributes' length, the magic cookie `0x2112A442`, a 12-byte transaction id. Over UDP the
//! datagram holds exactly the header and attributes; over TCP the message may share a segment.
//! The length is not required to be a multiple of 4: WhatsApp's allocations are not. Classic
//! RFC 3489 STUN has no cookie; only its binding request and responses over UDP are named, with
//! a 4-aligned length equal to the datagram's and a first attribute from RFC 3489's list whose
//! own length fits (the `stun` client sends a CHANGE-REQUEST). STUN is signalling in the clear;
//! the flow may carry DTLS or SRTP next, which the agent notices later.
//!
//! SIP (RFC 3261 section 7.1): a request line, an upper-case method, one space and a `sip:`,
//! `sips:` or `tel:` URI; or a status line, `SIP/2.0 ` and a three-digit code.

use super::super::{Context, Protocol, Verdict, be16, be32, has_prefix, prefix_at};
use super::plaintext;

const MAGIC_COOKIE: u32 = 0x2112_a442;
const HEADER_LEN: u32 = 20;
const CLASSIC_BINDING_REQUEST: u16 = 0x0001;
const CLASSIC_BINDING_RESPONSE: u16 = 0x0101;
const CLASSIC_BINDING_ERROR: u16 = 0x0111;
/// RFC 3489 attributes: MAPPED-ADDRESS (1) to REFLECTED-FROM (11).
const CLASSIC_MAX_ATTRIBUTE: u16 = 0x000b;
/// Longest method (`SUBSCRIBE`).
const MAX_METHOD_LEN: usize = 9;
/// Shortest methods (`ACK`, `BYE`).
const MIN_METHOD_LEN: usize = 3;

#[inline(never)]
pub(super) fn stun(w: &[u8], ctx: &Context) -> Option<Verdict> {
    let msg_type = be16(w, 0)?;
    let len = u32::from(be16(w, 2)?);
    let total = len.checked_add(HEADER_LEN)?;
    if msg_type & 0xc000 != 0 {
        return None;
    }
    let sized = if ctx.is_udp() {
        total == ctx.payload_len
    } else {
        total <= ctx.payload_len
    };
    let ok = sized && (be32(w, 4)? == MAGIC_COOKIE || (ctx.is_udp() && classic(w, msg_type, len)));
    ok.then(|| plaintext(Protocol::Stun))
}

#[inline(always)]
fn classic(w: &[u8], msg_type: u16, len: u32) -> bool {
    let (Some(attribute), Some(attribute_len)) = (be16(w, 20), be16(w, 22)) else {
        return false;
    };
    let attribute_end = u32::from(attribute_len).wrapping_add(4);
    matches!(
        msg_type,
        CLASSIC_BINDING_REQUEST | CLASSIC_BINDING_RESPONSE | CLASSIC_BINDING_ERROR
    ) && len.is_multiple_of(4)
        && (1..=CLASSIC_MAX_ATTRIBUTE).contains(&attribute)
        && attribute_len.is_multiple_of(4)
        && attribute_end <= len
}

#[inline(never)]
pub(super) fn sip(w: &[u8]) -> Option<Verdict> {
    if has_prefix(w, b"SIP/2.0 ") {
        let code = w.get(8..11)?;
        let ok = matches!(code.first(), Some(b'1'..=b'6')) && code.iter().all(u8::is_ascii_digit);
        return ok.then(|| plaintext(Protocol::Sip));
    }
    let mut space = 0;
    for (i, &b) in w.iter().enumerate().take(MAX_METHOD_LEN.wrapping_add(1)) {
        if b == b' ' {
            space = i;
            break;
        }
        if !b.is_ascii_uppercase() {
            return None;
        }
    }
    if space < MIN_METHOD_LEN {
        return None;
    }
    let uri = |scheme: &[u8]| prefix_at(w, space.wrapping_add(1), scheme);
    let ok = uri(b"sip:") || uri(b"sips:") || uri(b"tel:");
    ok.then(|| plaintext(Protocol::Sip))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::classify::services::tests::{
        Bytes::{Hex, Text},
        Fixture, tcp, udp,
    };
    use crate::classify::tests::hex;

    const STUN: Verdict = plaintext(Protocol::Stun);
    const SIP: Verdict = plaintext(Protocol::Sip);

    pub(crate) const FIXTURES: &[Fixture] = &[
        udp(
            "STUN binding request (ICE, USERNAME), Google Meet, stun_dtls_rtp.pcapng",
            Hex(
                "000100602112a4426f3653685355524a684e466b0006001f65613357745f396141536f6f65676f4b4141694b4169414445413a386a623600c05700040003000a",
            ),
            116,
            STUN,
        ),
        udp(
            "STUN binding success response, Google Meet, stun_dtls_rtp.pcapng",
            Hex(
                "010100502112a4426f3653685355524a684e466b0006001f65613357745f396141536f6f65676f4b4141694b4169414445413a386a623600002000080001d172",
            ),
            100,
            STUN,
        ),
        tcp(
            "TURN allocate request over TCP, Google Meet, stun_dtls_rtp.pcapng",
            Hex("000300082112a4424d7a4a354c76737264656c630019000411000000"),
            28,
            STUN,
        ),
        tcp(
            "TURN allocate error response over TCP, stun_dtls_rtp.pcapng",
            Hex(
                "0113003c2112a4424d7a4a354c76737264656c630009000400000401001400117475726e2e6c2e676f6f676c652e636f6d000000001500184374475347773363",
            ),
            80,
            STUN,
        ),
        udp(
            "TURN allocate with an unaligned length, WhatsApp, whatsapp_login_call.pcap",
            Hex(
                "0003006a2112a44200007510f843431fd05e2379400000660100a9f60dfaaa48953ad2d0af75625fa16c6c36178c427d406022bed8dba2b1882db68b15472daa",
            ),
            126,
            STUN,
        ),
        udp(
            "STUN binding request, Zoom, stun_zoom.pcapng",
            Hex(
                "000100882112a442092d7333917218496a2bdcdf0006004945303444393433462d433237312d433936412d433237442d4443424430393737383638303a323034",
            ),
            156,
            STUN,
        ),
        udp(
            "Classic RFC 3489 binding request with CHANGE-REQUEST, stun-client 0.97 on loopback",
            Hex("0001000801de240b48666b327e07437dcc69401d0003000400000000"),
            28,
            STUN,
        ),
        udp(
            "SIP REGISTER, sip.pcap",
            Text(b"REGISTER sip:sip.cybercity.dk SIP/2.0\r\nVia: SIP/2.0/UDP 192.168."),
            467,
            SIP,
        ),
        udp(
            "SIP INVITE, sip.pcap",
            Text(b"INVITE sip:97239287044@voip.brujula.net SIP/2.0\r\nVia: SIP/2.0/UD"),
            822,
            SIP,
        ),
        udp(
            "SIP 401 response, sip.pcap",
            Text(b"SIP/2.0 401 Unauthorized\r\nCall-ID: 578222729-4665d775@578222732-"),
            486,
            SIP,
        ),
    ];

    #[test]
    fn messages_from_captures() {
        for f in FIXTURES {
            let w = f.window();
            let got = stun(&w, &f.ctx()).or_else(|| sip(&w));
            assert_eq!(got, Some(f.expect), "{}", f.name);
        }
    }

    #[test]
    fn stun_lengths_and_cookie() {
        let binding = hex(
            "000100182112a44236c4db491bdb2e7bcb08334100080014e46d68c33ce7f60d3b0e08d7d2adc25a4181580d",
        );
        assert_eq!(stun(&binding, &Context::udp(44)), Some(STUN));
        assert_eq!(
            stun(&binding, &Context::udp(48)),
            None,
            "datagram longer than the message"
        );
        assert_eq!(
            stun(&binding, &Context::tcp(48, true)),
            Some(STUN),
            "TCP segments may hold more"
        );
        let mut no_cookie = binding.clone();
        no_cookie[4] = 0x22;
        assert_eq!(stun(&no_cookie, &Context::tcp(44, true)), None);
        // Over UDP the same bytes are a well-formed RFC 3489 request (MESSAGE-INTEGRITY first).
        assert_eq!(stun(&no_cookie, &Context::udp(44)), Some(STUN));
        let mut top_bits = binding;
        top_bits[0] = 0x40; // a TURN ChannelData header
        assert_eq!(stun(&top_bits, &Context::udp(44)), None);
        // Classic: its attribute must be a known one that fits.
        let classic = hex("0001000801de240b48666b327e07437dcc69401d0003000400000000");
        let mut unknown_attribute = classic.clone();
        unknown_attribute[21] = 0x20;
        assert_eq!(stun(&unknown_attribute, &Context::udp(28)), None);
        let mut long_attribute = classic.clone();
        long_attribute[23] = 0x08;
        assert_eq!(stun(&long_attribute, &Context::udp(28)), None);
        assert_eq!(
            stun(&classic, &Context::tcp(28, true)),
            None,
            "classic STUN is UDP only here"
        );
    }

    #[test]
    fn sip_request_and_status_lines() {
        assert_eq!(sip(b"OPTIONS sip:carol@chicago.com SIP/2.0\r\n"), Some(SIP));
        assert_eq!(
            sip(b"SUBSCRIBE sips:bob@example.com SIP/2.0\r\n"),
            Some(SIP)
        );
        assert_eq!(sip(b"ACK tel:+15551234 SIP/2.0\r\n"), Some(SIP));
        assert_eq!(sip(b"OPTIONS * HTTP/1.1\r\n"), None);
        assert_eq!(sip(b"GET /sip:x HTTP/1.1\r\n"), None);
        assert_eq!(sip(b"SIP/2.0 9xx\r\n"), None);
        assert_eq!(sip(b"SIP/2.0 200"), Some(SIP));
        assert_eq!(sip(b"invite sip:x"), None);
    }
}
