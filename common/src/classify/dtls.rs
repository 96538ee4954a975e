//! DTLS 1.0/1.2 (RFC 6347 section 4.1) and DTLS 1.3's plaintext records: a content type, a DTLS
//! version (0xfeff, 0xfefd, 0xfefc, or 0x0100, the pre-RFC DTLS that OpenSSL still speaks as
//! `DTLS1_BAD_VER` and Cisco AnyConnect uses), a 2-byte epoch, a 6-byte sequence number and a
//! length that fits the datagram.

use super::{Context, Encryption, Protocol, Verdict, be16};

/// Content type, version, epoch, sequence number, length.
const RECORD_HEADER_LEN: u32 = 13;

#[inline(always)]
pub(super) fn detect(w: &[u8], ctx: &Context) -> Option<Verdict> {
    let content = *w.first()?;
    let version = be16(w, 1)?;
    let length = u32::from(be16(w, 11)?);
    let ok = (20..=25).contains(&content)
        && matches!(version, 0xfeff | 0xfefd | 0xfefc | 0x0100)
        && length > 0
        && length.checked_add(RECORD_HEADER_LEN)? <= ctx.payload_len;
    ok.then_some(Verdict::new(Protocol::Dtls, Encryption::Encrypted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::tests::hex;

    #[test]
    fn dtls_client_hello() {
        // DTLS 1.0 record carrying a 1.2 ClientHello (a WebRTC-style client), 155-byte datagram.
        let hello = hex(
            "16feff0000000000000000008e010000820000000000000082fefdceb06d2a04cb2a1517c2e266ed6db6936e6e7a5772aacdd0e2dbd068ce",
        );
        assert_eq!(
            detect(&hello, &Context::udp(155)),
            Some(Verdict::new(Protocol::Dtls, Encryption::Encrypted))
        );
        assert_eq!(
            detect(&hello, &Context::udp(100)),
            None,
            "record longer than the datagram"
        );
    }

    #[test]
    fn pre_rfc_dtls_application_data() {
        // AnyConnect-style DTLS1_BAD_VER record, 80 bytes of ciphertext in a 93-byte datagram
        // (dtls_mid_sessions capture).
        let record = hex("170100000100000000d415005056cb1c4eca90c45400c6be042720fc");
        assert_eq!(
            detect(&record, &Context::udp(93)),
            Some(Verdict::new(Protocol::Dtls, Encryption::Encrypted))
        );
    }

    #[test]
    fn tls_version_bytes_are_not_dtls() {
        assert_eq!(
            detect(&hex("160301020001000100fc0303e2"), &Context::udp(517)),
            None
        );
    }
}
