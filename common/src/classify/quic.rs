//! QUIC: IETF long-header packets (RFC 9000 section 17.2: v1, v2, drafts, mvfst, and Google's
//! Q046-Q050/T050-T051 which use the same layout) and Google QUIC's older public header (Q024 to
//! Q043: public flags with the version bit, an 8-byte connection id, then `Q0nn`). Short-header
//! packets carry nothing recognisable; they continue flows already classified.

use super::{Context, Encryption, Protocol, Verdict, be32};

const QUIC: Verdict = Verdict::new(Protocol::Quic, Encryption::Encrypted);
/// RFC 9000: connection ids are at most 20 bytes in v1.
const MAX_CID_LEN: u8 = 20;
/// Smallest long-header packet: flags, version, two CID lengths, a packet number, a 16-byte
/// tag. Also keeps zero padding from completing a header.
const MIN_LONG_HEADER_PACKET: u32 = 24;
/// Public flags, 8-byte CID, version.
const MIN_PUBLIC_HEADER_PACKET: u32 = 13;

#[inline(always)]
pub(super) fn detect(w: &[u8], ctx: &Context) -> Option<Verdict> {
    let &first = w.first()?;
    let min = if first & 0xc0 == 0xc0 {
        MIN_LONG_HEADER_PACKET
    } else {
        MIN_PUBLIC_HEADER_PACKET
    };
    if ctx.payload_len < min {
        return None;
    }
    if first & 0xc0 == 0xc0 {
        return long_header(w);
    }
    google_public_header(w)
}

#[inline(always)]
fn long_header(w: &[u8]) -> Option<Verdict> {
    let version = be32(w, 1)?;
    if google_version(version) {
        // Q046 packs both connection-id lengths into one byte of nibbles: the ASCII version
        // is the signal.
        return Some(QUIC);
    }
    let dcid_len = *w.get(5)?;
    if !known_version(version) || dcid_len > MAX_CID_LEN {
        return None;
    }
    let scid_len = *w.get(6usize.checked_add(usize::from(dcid_len))?)?;
    (scid_len <= MAX_CID_LEN).then_some(QUIC)
}

#[inline(always)]
fn known_version(v: u32) -> bool {
    // 0x?a?a?a?a: reserved to exercise version negotiation (RFC 9000 section 15); 0: a
    // version negotiation packet.
    v & 0x0f0f_0f0f == 0x0a0a_0a0a
        || v == 0
        || matches!(v,
            0x0000_0001                 // v1
            | 0x6b33_43cf               // v2
            | 0x709a_50c4               // v2 draft
            | 0xff00_0000..=0xff00_00ff // IETF drafts
            | 0xface_b000..=0xface_b0ff // mvfst
        )
}

/// `Q0nn` / `T0nn` in ASCII.
#[inline(always)]
fn google_version(v: u32) -> bool {
    let [a, b, c, d] = v.to_be_bytes();
    matches!(a, b'Q' | b'T') && b == b'0' && c.is_ascii_digit() && d.is_ascii_digit()
}

#[inline(always)]
fn google_public_header(w: &[u8]) -> Option<Verdict> {
    let &[flags, ..] = w else { return None };
    // Version present (0x01) and an 8-byte connection id (0x08); the top bits are reserved.
    if flags & 0x09 != 0x09 || flags & 0xc0 != 0 {
        return None;
    }
    google_version(be32(w, 9)?).then_some(QUIC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::tests::hex;

    const CTX: Context = Context::udp(1350);

    #[test]
    fn google_quic_public_header_q024_q033() {
        // Chrome Initial with public flags 0x0d, CID, "Q024", then the CHLO.
        let q024 = hex(
            "0db2de5df14f5545eb51303234013b6e8986f83cf3b7a6ab5d0501a001000443484c4f18000000504144008701000053",
        );
        assert_eq!(detect(&q024, &CTX), Some(QUIC));
        let q033 = hex(
            "09fadeb0e557e692a05130333301da93cceca77d08f6aebdf08200a001140543484c4f0d000000504144004c04000056",
        );
        assert_eq!(detect(&q033, &CTX), Some(QUIC));
        // The server side of that flow carries no version: nothing to go on.
        let server = hex(
            "000103ef25ce9f07bba450c37de91c289477272daca8ef8eac430192b9a5039e3ad0f2d2b1058bc503f7a2263977c53d",
        );
        assert_eq!(detect(&server, &CTX), None);
    }

    #[test]
    fn long_header_q046_from_both_sides() {
        let client = hex(
            "c35130343650b4a4f9f5f42edd39000000019993d3b3cdfe6d824e9945e5a001040043484c4f1900000050414400f001",
        );
        let server = hex(
            "d35130343605b4a4f9f5f42edd3900000001f16e2f0977403cb2fc9c5fbe761734d833bb139b99b575492ce6701231d5",
        );
        assert_eq!(detect(&client, &CTX), Some(QUIC));
        assert_eq!(detect(&server, &CTX), Some(QUIC));
    }

    #[test]
    fn ietf_v1_initial() {
        // v1 Initial: 0xc3, version 1, 8-byte DCID, empty SCID, token length 0, length, ...
        let v1 = hex("c3000000010883947d0e2ffa6a8d0000449e7bd7cce1a3fa4b7c1d5ef1f37b8b17a4d3a6");
        assert_eq!(detect(&v1, &CTX), Some(QUIC));
    }

    #[test]
    fn reserved_versions_force_negotiation() {
        // Interop runner client offering 0x0a0a0a0a first.
        let greased = hex("c60a0a0a0a08c18ef59ef8c3c544000044be009f20b0020a108cbd60f8a0d446");
        assert_eq!(detect(&greased, &Context::udp(1232)), Some(QUIC));
    }

    #[test]
    fn look_alikes_are_rejected() {
        // Unknown version, over-long connection id, DNS.
        assert_eq!(detect(&hex("c3123456780883947d0e2ffa6a8d00"), &CTX), None);
        assert_eq!(detect(&hex("c30000000119"), &CTX), None);
        // A header prefix padded with zeros is not a packet.
        assert_eq!(
            detect(&hex("c3000000010800000000000000000000"), &Context::udp(6)),
            None
        );
        assert_eq!(
            detect(
                &hex("bc1f0100000100000000000003777777076578616d706c6503636f6d00001c0001"),
                &CTX
            ),
            None
        );
    }
}
