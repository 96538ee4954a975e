//! BER-encoded protocols: LDAP (TCP, and connectionless LDAP over UDP) and SNMP (UDP).
//!
//! Both wrap every message in a SEQUENCE (`0x30`, a short or long-form length) whose first
//! element is an INTEGER. In LDAP (RFC 4511 section 4.2) that integer is the messageID (1 to 4
//! bytes), followed by an `[APPLICATION n]` operation: bindRequest `0x60`, bindResponse `0x61`,
//! searchRequest `0x63`, searchResEntry `0x64`, searchResDone `0x65`, extendedRequest `0x77`
//! (StartTLS among them), extendedResponse `0x78`. Each operation's first field has a fixed tag
//! too (version INTEGER, baseObject or objectName OCTET STRING, resultCode ENUMERATED,
//! requestName `[0]`), which is checked as well.
//!
//! In SNMP the integer is the version, and the datagram holds exactly one message:
//! - v1 (0) and v2c (1): a community OCTET STRING of printable bytes, then a PDU tag
//!   `0xa0`-`0xa8` (get ... report). Plaintext.
//! - v3 (3, RFC 3412): a msgGlobalData SEQUENCE (msgID, msgMaxSize, 1-byte msgFlags, security
//!   model). msgFlags with the privacy bit means an encrypted scopedPDU: encrypted. With
//!   authentication but no privacy: plaintext. With neither, a message whose authoritative
//!   engine id is empty is the engine-discovery probe (RFC 3414 section 4) that opens every v3
//!   session, private ones included: SNMP with the encryption unknown, since the probe cannot
//!   say what follows. Any other noAuthNoPriv message is plaintext.

use super::super::{Context, Encryption, Protocol, Verdict, be16_at, be32_at, byte_at, bytes_at};
use super::plaintext;

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const ENUMERATED: u8 = 0x0a;
/// LDAP extendedRequest's requestName, `[0]` primitive.
const CONTEXT_0: u8 = 0x80;

const SNMP_V1: u8 = 0;
const SNMP_V2C: u8 = 1;
const SNMP_V3: u8 = 3;
/// The User-based Security Model, the only one deployed.
const SNMP_USM: u8 = 3;
const SNMP_FLAG_AUTH: u8 = 0x01;
const SNMP_FLAG_PRIV: u8 = 0x02;
/// Communities longer than this are not seen in practice; the check keeps the PDU tag in the
/// window.
const MAX_COMMUNITY_LEN: u8 = 48;

/// A BER length at `at`: its value and where the content starts. Short form, or long form with
/// 1 to 4 length bytes (Active Directory always uses 4). Offsets here and below depend on
/// earlier lengths, so every read goes through the `*_at` accessors the verifier can bound.
#[inline(always)]
fn length(w: &[u8], at: usize) -> Option<(u32, usize)> {
    let first = byte_at(w, at)?;
    let next = at.checked_add(1)?;
    let (len, bytes) = match first {
        0..=0x7f => (u32::from(first), 0),
        0x81 => (u32::from(byte_at(w, next)?), 1),
        0x82 => (u32::from(be16_at(w, next)?), 2),
        0x83 => (be32_at(w, at)? & 0x00ff_ffff, 3),
        0x84 => (be32_at(w, next)?, 4),
        _ => return None,
    };
    Some((len, next.checked_add(bytes)?))
}

/// The outer SEQUENCE and its first INTEGER.
struct Envelope {
    /// Where the SEQUENCE's content ends (header plus length), as an offset from the start.
    end: u32,
    int_len: u8,
    /// Where the INTEGER's value starts.
    int_at: usize,
}

#[inline(always)]
fn envelope(w: &[u8]) -> Option<Envelope> {
    if w.first() != Some(&SEQUENCE) {
        return None;
    }
    let (len, content) = length(w, 1)?;
    if byte_at(w, content) != Some(INTEGER) {
        return None;
    }
    Some(Envelope {
        end: u32::try_from(content).ok()?.checked_add(len)?,
        int_len: byte_at(w, content.checked_add(1)?)?,
        int_at: content.checked_add(2)?,
    })
}

#[inline(never)]
pub(super) fn ldap(w: &[u8], ctx: &Context) -> Option<Verdict> {
    let msg = envelope(w)?;
    if !(1..=4).contains(&msg.int_len) {
        return None;
    }
    let op_at = msg.int_at.checked_add(usize::from(msg.int_len))?;
    let op = byte_at(w, op_at)?;
    let (op_len, op_content) = length(w, op_at.checked_add(1)?)?;
    let first_field = match op {
        0x60 => INTEGER,
        0x63 | 0x64 => OCTET_STRING,
        0x61 | 0x65 | 0x78 => ENUMERATED,
        0x77 => CONTEXT_0,
        _ => return None,
    };
    let op_start = u32::try_from(op_content).ok()?;
    // The operation lies inside the message, its first field is real payload, and over UDP
    // the datagram is exactly the message.
    let ok = op_start.checked_add(op_len)? <= msg.end
        && op_start < ctx.payload_len
        && (!ctx.is_udp() || msg.end == ctx.payload_len)
        && byte_at(w, op_content) == Some(first_field);
    ok.then(|| plaintext(Protocol::Ldap))
}

#[inline(never)]
pub(super) fn snmp(w: &[u8], ctx: &Context) -> Option<Verdict> {
    let msg = envelope(w)?;
    // The datagram is exactly one message.
    if msg.int_len != 1 || msg.end != ctx.payload_len {
        return None;
    }
    let after = msg.int_at.checked_add(1)?;
    match byte_at(w, msg.int_at)? {
        SNMP_V1 | SNMP_V2C => community(w, after),
        SNMP_V3 => v3(w, after),
        _ => None,
    }
}

/// v1/v2c: a printable community string, then a PDU.
#[inline(always)]
fn community(w: &[u8], at: usize) -> Option<Verdict> {
    if byte_at(w, at) != Some(OCTET_STRING) {
        return None;
    }
    let community_len = byte_at(w, at.checked_add(1)?)?;
    if community_len > MAX_COMMUNITY_LEN {
        return None;
    }
    let community_at = at.checked_add(2)?;
    let pdu_at = community_at.checked_add(usize::from(community_len))?;
    // Check the community's first bytes: enough to tell text from binary, and bounded. (Bytes
    // past the window are not checked, but then the PDU tag is missing too.)
    let printable = (0..usize::from(community_len).min(8)).all(|i| {
        byte_at(w, community_at.wrapping_add(i)).is_none_or(|b| (0x20..0x7f).contains(&b))
    });
    let pdu = byte_at(w, pdu_at)?;
    (printable && (0xa0..=0xa8).contains(&pdu)).then(|| plaintext(Protocol::Snmp))
}

/// v3: msgGlobalData is `30 L 02 n <msgID> 02 m <msgMaxSize> 04 01 <flags> 02 01 03`, then the
/// security parameters: `04 L 30 L 04 e <engine id>`.
#[inline(always)]
fn v3(w: &[u8], at: usize) -> Option<Verdict> {
    if byte_at(w, at) != Some(SEQUENCE) || byte_at(w, at.checked_add(2)?) != Some(INTEGER) {
        return None;
    }
    let id_len = byte_at(w, at.checked_add(3)?)?;
    let size_at = at.checked_add(4)?.checked_add(usize::from(id_len))?;
    if id_len == 0 || id_len > 4 || byte_at(w, size_at) != Some(INTEGER) {
        return None;
    }
    let size_len = byte_at(w, size_at.checked_add(1)?)?;
    let flags_at = size_at.checked_add(2)?.checked_add(usize::from(size_len))?;
    if size_len == 0 || size_len > 4 {
        return None;
    }
    let [
        OCTET_STRING,
        1,
        flags,
        INTEGER,
        1,
        SNMP_USM,
        OCTET_STRING,
        _,
        SEQUENCE,
        _,
        OCTET_STRING,
        engine_len,
    ] = bytes_at(w, flags_at)?
    else {
        return None;
    };
    let encryption = if flags & SNMP_FLAG_PRIV != 0 {
        // Privacy without authentication is not a valid combination.
        if flags & SNMP_FLAG_AUTH == 0 {
            return None;
        }
        Encryption::Encrypted
    } else if flags & SNMP_FLAG_AUTH == 0 && engine_len == 0 {
        Encryption::Unknown
    } else {
        Encryption::Plaintext
    };
    Some(Verdict::new(Protocol::Snmp, encryption))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::classify::services::tests::{Bytes::Hex, Fixture, tcp, udp};
    use crate::classify::tests::hex;

    const LDAP: Verdict = plaintext(Protocol::Ldap);
    const SNMP: Verdict = plaintext(Protocol::Snmp);
    const SNMP_PRIV: Verdict = Verdict::new(Protocol::Snmp, Encryption::Encrypted);
    const SNMP_DISCOVERY: Verdict = Verdict::new(Protocol::Snmp, Encryption::Unknown);

    pub(crate) const FIXTURES: &[Fixture] = &[
        // OpenLDAP 2.5 (Debian 12) slapd and ldapsearch/ldapwhoami on loopback.
        tcp(
            "LDAP anonymous bindRequest, ldapsearch -x",
            Hex("300c020101600702010304008000"),
            14,
            LDAP,
        ),
        tcp(
            "LDAP bindResponse success, slapd",
            Hex("300c02010161070a010004000400"),
            14,
            LDAP,
        ),
        tcp(
            "LDAP simple bindRequest with a DN, ldapsearch -D",
            Hex("302502010160200201030414636e3d61646d696e2c64633d6e6f646f6d61696e800577726f6e67"),
            39,
            LDAP,
        ),
        tcp(
            "LDAP StartTLS extendedRequest, ldapsearch -ZZ",
            Hex("301d02010177188016312e332e362e312e342e312e313436362e3230303337"),
            31,
            LDAP,
        ),
        tcp(
            "LDAP extendedResponse (unsupported), slapd",
            Hex(
                "302a02010178250a01020400041e756e737570706f7274656420657874656e646564206f7065726174696f6e",
            ),
            44,
            LDAP,
        ),
        tcp(
            "LDAP searchRequest for the root DSE, ldapsearch",
            Hex(
                "3035020102633004000a01000a0100020100020100010100870b6f626a656374636c6173733010040e6e616d696e67436f6e7465787473",
            ),
            55,
            LDAP,
        ),
        tcp(
            "LDAP bindResponse with 4-byte lengths, Active Directory, kerberos.pcap",
            Hex(
                "3084000000cc0201036184000000c30a010004000400878200b8a181b53081b2a0030a0100a10b06092a864882f712010202a2819d04819a60819706092a8648",
            ),
            210,
            LDAP,
        ),
        // Net-SNMP 5.9.3 snmpget against snmpd on loopback.
        udp(
            "SNMPv2c get-request, community public, snmpget",
            Hex(
                "302902010104067075626c6963a01c02043602c5b6020100020100300e300c06082b060102010101000500",
            ),
            43,
            SNMP,
        ),
        udp(
            "SNMPv1 get-response, snmpd",
            Hex(
                "302b02010004067075626c6963a21e0204432e60ca0201000201003010300e06082b0601020101030043020164",
            ),
            45,
            SNMP,
        ),
        udp(
            "SNMPv2c get-next-request, snmp.pcap",
            Hex(
                "302902010104067075626c6963a11c02045067d65c020100020100300e300c06082b060102010105000500",
            ),
            43,
            SNMP,
        ),
        udp(
            "SNMPv3 engine discovery probe, snmpget -l authPriv",
            Hex(
                "303e020103301102041bdd1604020300ffe30401040201030410300e0400020100020100040004000400301404000400a00e020471b4ec620201000201003000",
            ),
            64,
            SNMP_DISCOVERY,
        ),
        udp(
            "SNMPv3 discovery report, snmpd",
            Hex(
                "3071020103301102041bdd1604020300ffe30401000201030421301f041180001f88800f98723d0678046b000000000201010201040400040004003036041180",
            ),
            115,
            SNMP,
        ),
        udp(
            "SNMPv3 authPriv get-request (msgFlags 7), snmpget",
            Hex(
                "30818a020103301102041bdd1603020300ffe3040107020103043b3039041180001f88800f98723d0678046b000000000201010201040406737775736572040c",
            ),
            141,
            SNMP_PRIV,
        ),
        udp(
            "SNMPv3 authNoPriv get-request (msgFlags 5), snmpget",
            Hex(
                "30818002010330110204251b434c020300ffe304010502010304333031041180001f88800f98723d0678046b000000000201010201040406737775736572040c",
            ),
            131,
            SNMP,
        ),
        udp(
            "SNMPv3 authPriv trap (msgFlags 3), snmp.pcap",
            Hex(
                "30820102020103300d020125020205dc040103020103043b3039040c800000090300aabbcc00010002010c020209aa040a5348413141455331323804",
            ),
            262,
            SNMP_PRIV,
        ),
    ];

    #[test]
    fn messages_from_captures() {
        for f in FIXTURES {
            let w = f.window();
            let got = if f.udp {
                snmp(&w, &f.ctx())
            } else {
                ldap(&w, &f.ctx())
            };
            assert_eq!(got, Some(f.expect), "{}", f.name);
        }
    }

    #[test]
    fn snmp_length_must_be_the_datagram() {
        let get = hex(
            "302902010104067075626c6963a01c02043602c5b6020100020100300e300c06082b060102010101000500",
        );
        assert_eq!(snmp(&get, &Context::udp(43)), Some(SNMP));
        assert_eq!(snmp(&get, &Context::udp(44)), None);
        let mut v2 = get.clone();
        v2[4] = 2;
        assert_eq!(
            snmp(&v2, &Context::udp(43)),
            None,
            "no SNMP version 2 (value 2)"
        );
        let mut binary = get.clone();
        binary[7] = 0x01;
        assert_eq!(snmp(&binary, &Context::udp(43)), None, "binary community");
        let mut pdu = get;
        pdu[13] = 0xb0;
        assert_eq!(snmp(&pdu, &Context::udp(43)), None);
    }

    #[test]
    fn ldap_operation_and_first_field() {
        let bind = hex("300c020101600702010304008000");
        let ctx = Context::tcp(14, true);
        assert_eq!(ldap(&bind, &ctx), Some(LDAP));
        let mut del = bind.clone();
        del[5] = 0x4a; // delRequest: not a first message
        assert_eq!(ldap(&del, &ctx), None);
        let mut version = bind.clone();
        version[7] = 0x04; // bindRequest must start with the version INTEGER
        assert_eq!(ldap(&version, &ctx), None);
        let mut long_id = bind.clone();
        long_id[3] = 5;
        assert_eq!(ldap(&long_id, &ctx), None);
        let mut op_too_long = bind;
        op_too_long[6] = 0x0c;
        assert_eq!(ldap(&op_too_long, &ctx), None);
    }
}
