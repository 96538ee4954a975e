//! IANA names and properties of cipher suites and key-exchange groups, and the weakness verdicts
//! built on them.

use tls_parser::{TlsCipherAu, TlsCipherEnc, TlsCipherMac, TlsCipherSuite};

/// IANA name of a cipher suite, e.g. `TLS_AES_128_GCM_SHA256`, from tls-parser's copy of the
/// IANA registry. `None` for unassigned or private values (and GREASE).
pub fn cipher_name(id: u16) -> Option<&'static str> {
    TlsCipherSuite::from_id(id).map(|c| c.name)
}

/// IANA name of a supported group (TLS `NamedGroup`), e.g. `x25519`, `X25519MLKEM768`; the
/// pre-standard Kyber drafts keep the names browsers shipped them under.
pub fn group_name(id: u16) -> Option<&'static str> {
    Some(match id {
        0x0001 => "sect163k1",
        0x0002 => "sect163r1",
        0x0003 => "sect163r2",
        0x0004 => "sect193r1",
        0x0005 => "sect193r2",
        0x0006 => "sect233k1",
        0x0007 => "sect233r1",
        0x0008 => "sect239k1",
        0x0009 => "sect283k1",
        0x000a => "sect283r1",
        0x000b => "sect409k1",
        0x000c => "sect409r1",
        0x000d => "sect571k1",
        0x000e => "sect571r1",
        0x000f => "secp160k1",
        0x0010 => "secp160r1",
        0x0011 => "secp160r2",
        0x0012 => "secp192k1",
        0x0013 => "secp192r1",
        0x0014 => "secp224k1",
        0x0015 => "secp224r1",
        0x0016 => "secp256k1",
        0x0017 => "secp256r1",
        0x0018 => "secp384r1",
        0x0019 => "secp521r1",
        0x001a => "brainpoolP256r1",
        0x001b => "brainpoolP384r1",
        0x001c => "brainpoolP512r1",
        0x001d => "x25519",
        0x001e => "x448",
        0x001f => "brainpoolP256r1tls13",
        0x0020 => "brainpoolP384r1tls13",
        0x0021 => "brainpoolP512r1tls13",
        0x0022 => "GC256A",
        0x0023 => "GC256B",
        0x0024 => "GC256C",
        0x0025 => "GC256D",
        0x0026 => "GC512A",
        0x0027 => "GC512B",
        0x0028 => "GC512C",
        0x0029 => "curveSM2",
        0x0100 => "ffdhe2048",
        0x0101 => "ffdhe3072",
        0x0102 => "ffdhe4096",
        0x0103 => "ffdhe6144",
        0x0104 => "ffdhe8192",
        0x0200 => "MLKEM512",
        0x0201 => "MLKEM768",
        0x0202 => "MLKEM1024",
        0x11eb => "SecP256r1MLKEM768",
        0x11ec => "X25519MLKEM768",
        0x11ed => "SecP384r1MLKEM1024",
        0x6399 => "X25519Kyber768Draft00",
        0x639a => "SecP256r1Kyber768Draft00",
        0xff01 => "arbitrary_explicit_prime_curves",
        0xff02 => "arbitrary_explicit_char2_curves",
        _ => return None,
    })
}

/// Whether a group resists a quantum adversary: pure ML-KEM, the standard hybrids, and the
/// Kyber drafts that Chrome and Cloudflare deployed before ML-KEM was final.
pub fn is_pq_group(id: u16) -> bool {
    matches!(
        id,
        0x0200..=0x0202 | 0x11eb..=0x11ed | 0x6399 | 0x639a
    )
}

/// Every reason [`super::TlsDetails::weak`] can hold, for documentation and for consumers that
/// want to validate policy files:
///
/// | reason | when |
/// |---|---|
/// | `ssl2` | SSL 2.0 negotiated, or (no server reply seen) the client offers nothing newer |
/// | `ssl3` | SSL 3.0 negotiated, or (no server reply seen) the client offers nothing newer |
/// | `tls<1.2` | anything below TLS 1.2 (also SSL, and DTLS 1.0), same rule |
/// | `null-cipher` | negotiated suite does not encrypt (`*_WITH_NULL_*`) |
/// | `export` | negotiated suite is a 40/56-bit export suite |
/// | `anon` | negotiated suite does not authenticate the server (`DH_anon`, `ECDH_anon`) |
/// | `rc4` | RC4 stream cipher (RFC 7465 forbids it) |
/// | `rc2` | RC2 block cipher |
/// | `des` | single DES (56-bit or less) |
/// | `3des` | triple DES (64-bit block: Sweet32) |
/// | `md5` | HMAC-MD5 record MAC |
///
/// Cipher reasons are only given for the suite the server chose: a client that merely offers an
/// old suite among modern ones is not weak.
pub const WEAK_REASONS: [&str; 11] = [
    "ssl2",
    "ssl3",
    "tls<1.2",
    "null-cipher",
    "export",
    "anon",
    "rc4",
    "rc2",
    "des",
    "3des",
    "md5",
];

/// Every cipher suite a server could negotiate that has at least one weakness: what enforce
/// mode hands the kernel to check ServerHellos against.
pub fn weak_suites() -> Vec<u16> {
    let mut reasons = Vec::new();
    (0..=u16::MAX)
        .filter(|&id| {
            reasons.clear();
            cipher_weaknesses(id, &mut reasons);
            !reasons.is_empty()
        })
        .collect()
}

/// Appends the weaknesses of a negotiated cipher suite to `out`.
pub(crate) fn cipher_weaknesses(id: u16, out: &mut Vec<&'static str>) {
    let Some(suite) = TlsCipherSuite::from_id(id) else {
        return;
    };
    // Signalling values (renegotiation info, fallback) are not suites a server can pick.
    if suite.name.ends_with("_SCSV") {
        return;
    }
    if suite.enc == TlsCipherEnc::Null {
        out.push("null-cipher");
    }
    if suite.name.contains("_EXPORT") {
        out.push("export");
    }
    if suite.au == TlsCipherAu::Null {
        out.push("anon");
    }
    match suite.enc {
        TlsCipherEnc::Rc4 => out.push("rc4"),
        TlsCipherEnc::Rc2 => out.push("rc2"),
        TlsCipherEnc::Des => out.push("des"),
        TlsCipherEnc::TripleDes => out.push("3des"),
        _ => {}
    }
    if suite.mac == TlsCipherMac::HmacMd5 {
        out.push("md5");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weak(id: u16) -> Vec<&'static str> {
        let mut v = Vec::new();
        cipher_weaknesses(id, &mut v);
        v
    }

    #[test]
    fn names() {
        assert_eq!(cipher_name(0x1301), Some("TLS_AES_128_GCM_SHA256"));
        assert_eq!(cipher_name(0x002f), Some("TLS_RSA_WITH_AES_128_CBC_SHA"));
        assert_eq!(
            cipher_name(0xc02f),
            Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
        );
        assert_eq!(cipher_name(0x0a0a), None);
        assert_eq!(group_name(0x001d), Some("x25519"));
        assert_eq!(group_name(0x11ec), Some("X25519MLKEM768"));
        assert_eq!(group_name(0x0a0a), None);
    }

    #[test]
    fn pq_groups() {
        for g in [0x11ec, 0x11eb, 0x11ed, 0x6399, 0x0200, 0x0201, 0x0202] {
            assert!(is_pq_group(g), "{g:#06x}");
        }
        for g in [0x001d, 0x0017, 0x0100, 0x0203] {
            assert!(!is_pq_group(g), "{g:#06x}");
        }
    }

    #[test]
    fn the_weak_suite_list_has_the_old_ones_and_no_modern_one() {
        let all = super::weak_suites();
        for old in [0x0001, 0x0004, 0x000a, 0x0005, 0xc011] {
            assert!(all.contains(&old), "{old:#06x}");
        }
        for modern in [
            0x1301, 0x1302, 0x1303, 0xc02f, 0xc030, 0xcca8, 0x00ff, 0x5600,
        ] {
            assert!(!all.contains(&modern), "{modern:#06x}");
        }
        // The kernel map holds 1024 (sealwatch_common::policy::MAX_WEAK_SUITES).
        assert!(all.len() < 1024, "{}", all.len());
    }

    #[test]
    fn weak_suites() {
        assert_eq!(weak(0x1301), Vec::<&str>::new());
        assert_eq!(weak(0xc02f), Vec::<&str>::new());
        assert_eq!(weak(0x0002), ["null-cipher"]); // TLS_RSA_WITH_NULL_SHA
        assert_eq!(weak(0x0001), ["null-cipher", "md5"]); // TLS_RSA_WITH_NULL_MD5
        assert_eq!(weak(0x0004), ["rc4", "md5"]); // TLS_RSA_WITH_RC4_128_MD5
        assert_eq!(weak(0x0003), ["export", "rc4", "md5"]);
        assert_eq!(weak(0x000a), ["3des"]);
        assert_eq!(weak(0x0009), ["des"]);
        assert_eq!(weak(0x0018), ["anon", "rc4", "md5"]); // TLS_DH_anon_WITH_RC4_128_MD5
        assert_eq!(weak(0x00ff), Vec::<&str>::new()); // SCSV
        for reasons in [weak(0x0003), weak(0x0001), weak(0x0018), weak(0x0009)] {
            assert!(reasons.iter().all(|r| WEAK_REASONS.contains(r)));
        }
    }
}
