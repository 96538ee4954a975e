//! NTP (RFC 5905 section 7.3): a 48-byte header (plus extension fields or a MAC) whose first
//! byte holds version 1-4 and a mode, with a plausible stratum, poll interval and precision.
//! The timestamps that fill most of it look random, so NTP needs naming before the
//! randomness judgement sees it.

use super::{Context, Encryption, Protocol, Verdict};

const HEADER_LEN: u32 = 48;

#[inline(always)]
pub(super) fn detect(w: &[u8], ctx: &Context) -> Option<Verdict> {
    let &[flags, stratum, poll, precision, ..] = w else {
        return None;
    };
    let version = (flags >> 3) & 0x7;
    let mode = flags & 0x7;
    // Precision is a signed power of two: from 2^-32 up to 2^0 seconds.
    let precision_ok = precision == 0 || precision >= 0xe0;
    let ok = ctx.payload_len >= HEADER_LEN
        && (1..=4).contains(&version)
        && (1..=5).contains(&mode)
        && stratum <= 16
        && poll <= 17
        && precision_ok;
    ok.then_some(Verdict::new(Protocol::Ntp, Encryption::Plaintext))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::tests::hex;

    const NTP: Option<Verdict> = Some(Verdict::new(Protocol::Ntp, Encryption::Plaintext));

    #[test]
    fn ntpv4_symmetric_and_client_server() {
        // Two NTPv4 servers' packets (mode 3 = client, stratum 2).
        let a = hex(
            "230207eb00000450000003ab83bc03dfd94f51c33165b860d944575530336fd0d944575531b4e978d94f51f42d26e2f4",
        );
        let b = hex(
            "230206ec000026200000f6c911fd1a7ddb4a7e8f3d3ee739db4a8184a643c768db4a8184b424877edb4a81ec3f779f2c",
        );
        assert_eq!(detect(&a, &Context::udp(48)), NTP);
        assert_eq!(detect(&b, &Context::udp(48)), NTP);
        assert_eq!(detect(&a, &Context::udp(40)), None, "shorter than a header");
    }

    #[test]
    fn wrong_version_mode_or_precision() {
        let mut v = hex("230207eb00000450000003ab83bc03df");
        v[0] = 0x3b; // version 7
        assert_eq!(detect(&v, &Context::udp(48)), None);
        v[0] = 0x20; // mode 0
        assert_eq!(detect(&v, &Context::udp(48)), None);
        v[0] = 0x23;
        v[3] = 0x10; // precision 2^16 s
        assert_eq!(detect(&v, &Context::udp(48)), None);
    }
}
