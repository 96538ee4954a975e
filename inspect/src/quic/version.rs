//! The QUIC versions whose Initial packets we can open, and what differs between them: the
//! salt of the Initial secret, the HKDF labels, and the packet-type bits of the long header.

/// How a version lays out what matters here. Drafts share v1's layout and labels; only their
/// salts differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    /// RFC 9000/9001 and the drafts before it.
    V1,
    /// RFC 9369: packet types rotated by one and `quicv2` labels, so that middleboxes that
    /// ossified on v1 do not mistake one for the other.
    V2,
    /// Google's T050/T051 (Chrome 85-86, 2020): v1's packets and keys, but Google QUIC's frame
    /// types inside (CRYPTO is 0x08, ACK 0x40-0x7f).
    Google,
}

/// Long-header packet types (RFC 9000 section 17.2, RFC 9369 section 3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PacketType {
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Version {
    pub(super) family: Family,
    pub(super) salt: &'static [u8; 20],
}

/// RFC 9001 section 5.2; also drafts 33 and 34, which already used it.
const SALT_V1: [u8; 20] = hex20(b"38762cf7f55934b34d179ae6a4c80cadccbb7f0a");
/// RFC 9369 section 3.3.1.
const SALT_V2: [u8; 20] = hex20(b"0dede3def700a6db819381be6e269dcbf9bd2ed9");
/// draft-ietf-quic-tls-29 to -32.
const SALT_DRAFT_29: [u8; 20] = hex20(b"afbfec289993d24c9e9786f19c6111e04390a899");
/// draft-ietf-quic-tls-23 to -28, and Facebook's mvfst versions of draft 27 (as Wireshark has
/// them). Not draft 22 and mvfst's first version: nothing here could check that salt (the
/// corpus's one capture of it fails to open in Wireshark too).
const SALT_DRAFT_23: [u8; 20] = hex20(b"c3eef712c72ebb5a11a7d2432bb46365bef9f502");
/// Google's T050 and T051: TLS 1.3 inside QUIC packets of Chrome 85/86 (Wireshark's values).
const SALT_T050: [u8; 20] = hex20(b"7ff579e5acd072915580304c43a2367c60488310");
const SALT_T051: [u8; 20] = hex20(b"7a4edef4e7ccee5fa4506c19124fc8ccda6e033d");

/// The wire value of QUIC v2.
pub(super) const V2: u32 = 0x6b33_43cf;

impl Version {
    /// The versions we can open. Anything else (Version Negotiation, greased versions, Google's
    /// QUIC-crypto Qxxx, unknown drafts) has a header whose layout after the connection IDs is
    /// not known to us, so the rest of its datagram is skipped.
    pub(super) fn from_wire(wire: u32) -> Option<Version> {
        let (family, salt) = match wire {
            0x0000_0001 | 0xff00_0021 | 0xff00_0022 => (Family::V1, &SALT_V1),
            V2 => (Family::V2, &SALT_V2),
            0xff00_001d..=0xff00_0020 => (Family::V1, &SALT_DRAFT_29),
            0xff00_0017..=0xff00_001c | 0xface_b002 | 0xface_b00e => (Family::V1, &SALT_DRAFT_23),
            0x5430_3530 => (Family::Google, &SALT_T050),
            0x5430_3531 => (Family::Google, &SALT_T051),
            _ => return None,
        };
        Some(Version { family, salt })
    }

    /// The type of a long-header packet from its first byte (bits 4-5, not header-protected).
    pub(super) fn packet_type(self, first: u8) -> PacketType {
        let bits = (first >> 4) & 0x03;
        match (self.family, bits) {
            (Family::V2, 1) | (Family::V1 | Family::Google, 0) => PacketType::Initial,
            (Family::V2, 2) | (Family::V1 | Family::Google, 1) => PacketType::ZeroRtt,
            (Family::V2, 3) | (Family::V1 | Family::Google, 2) => PacketType::Handshake,
            _ => PacketType::Retry,
        }
    }

    /// HKDF-Expand-Label labels for the packet protection key, IV and header protection key.
    pub(super) fn labels(self) -> [&'static [u8]; 3] {
        match self.family {
            Family::V1 | Family::Google => [b"quic key", b"quic iv", b"quic hp"],
            Family::V2 => [b"quicv2 key", b"quicv2 iv", b"quicv2 hp"],
        }
    }
}

/// Compile-time hex for the salts, so they read as in the specifications; a malformed literal
/// fails the build.
const fn hex20(text: &[u8; 40]) -> [u8; 20] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not a lower-case hex digit"),
        }
    }
    let mut out = [0u8; 20];
    let mut i = 0;
    while i < 20 {
        out[i] = (nibble(text[2 * i]) << 4) | nibble(text[2 * i + 1]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_types_per_family() {
        let v1 = Version::from_wire(1).unwrap();
        let v2 = Version::from_wire(V2).unwrap();
        let types = |v: Version| [0xc0, 0xd0, 0xe0, 0xf0].map(|b| v.packet_type(b));
        use PacketType::*;
        assert_eq!(types(v1), [Initial, ZeroRtt, Handshake, Retry]);
        assert_eq!(types(v2), [Retry, Initial, ZeroRtt, Handshake]);
    }

    #[test]
    fn salts_and_unknown_versions() {
        assert_eq!(SALT_V1[..3], [0x38, 0x76, 0x2c]);
        assert_eq!(SALT_V1[19], 0x0a);
        assert_eq!(Version::from_wire(0), None);
        assert_eq!(Version::from_wire(0x0a0a_0a0a), None);
        assert_eq!(Version::from_wire(0x5130_3530), None);
    }
}
