//! FoxIO JA4 fingerprint of a ClientHello
//! (<https://github.com/FoxIO-LLC/ja4/blob/main/technical_details/JA4.md>).
//!
//! `t13d1516h2_8daaf6152771_e5627efa2ab1`: transport, version, SNI or not, cipher and extension
//! counts, ALPN; then a truncated SHA-256 of the sorted cipher list; then one of the sorted
//! extension list (without SNI and ALPN) followed by the signature algorithms in wire order.
//! GREASE is ignored everywhere.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use super::Transport;
use super::hello::{ClientHello, EXT_ALPN, EXT_SERVER_NAME, EXT_SUPPORTED_VERSIONS};
use super::wire::is_grease;

/// The inputs of a JA4, GREASE already removed.
#[derive(Debug)]
pub(crate) struct Ja4Input<'a> {
    pub(crate) transport: Transport,
    /// Highest supported_versions entry, else the hello's legacy_version.
    pub(crate) version: u16,
    pub(crate) has_sni: bool,
    pub(crate) ciphers: Vec<u16>,
    /// Extension types in wire order, SNI and ALPN included.
    pub(crate) extensions: Vec<u16>,
    pub(crate) first_alpn: Option<&'a [u8]>,
    pub(crate) signature_algorithms: Vec<u16>,
}

impl<'a> Ja4Input<'a> {
    /// `None` for a hello the sample cuts (a fingerprint over part of the extensions would be
    /// a different, wrong one) and for SSL 2.0-format hellos (no extensions, 3-byte kinds).
    pub(crate) fn from_hello(hello: &ClientHello<'a>, transport: Transport) -> Option<Self> {
        if !hello.complete || hello.sslv2_format {
            return None;
        }
        let extensions: Vec<u16> = hello
            .extensions()
            .map(|(ty, _, _)| ty)
            .filter(|&ty| !is_grease(ty))
            .collect();
        // The spec keys on the extension being present; the reference implementation takes the
        // numerically highest entry, which for DTLS (1.3 = 0xfefc < 1.2 = 0xfefd) is 1.2.
        let version = match hello.supported_versions {
            Some(list) if extensions.contains(&EXT_SUPPORTED_VERSIONS) => {
                list.iter().filter(|&v| !is_grease(v)).max().unwrap_or(0)
            }
            _ => hello.version,
        };
        Some(Ja4Input {
            transport,
            version,
            has_sni: extensions.contains(&EXT_SERVER_NAME),
            ciphers: hello.ciphers.iter().filter(|&c| !is_grease(c)).collect(),
            extensions,
            first_alpn: hello.alpn.and_then(|mut names| names.next()),
            signature_algorithms: hello
                .signature_algorithms
                .map(|l| l.iter().filter(|&s| !is_grease(s)).collect())
                .unwrap_or_default(),
        })
    }

    pub(crate) fn fingerprint(mut self) -> String {
        let mut out = String::with_capacity(36);
        out.push(match self.transport {
            Transport::Tcp => 't',
            Transport::Quic => 'q',
            Transport::Dtls => 'd',
        });
        out.push_str(version_code(self.version));
        out.push(if self.has_sni { 'd' } else { 'i' });
        let _ = write!(
            out,
            "{:02}{:02}",
            self.ciphers.len().min(99),
            self.extensions.len().min(99)
        );
        push_alpn(&mut out, self.first_alpn);
        out.push('_');

        self.ciphers.sort_unstable();
        push_hash12(&mut out, &hex_list(&self.ciphers));
        out.push('_');

        self.extensions
            .retain(|&e| e != EXT_SERVER_NAME && e != EXT_ALPN);
        self.extensions.sort_unstable();
        let mut exts = hex_list(&self.extensions);
        if !exts.is_empty() && !self.signature_algorithms.is_empty() {
            exts.push('_');
            exts.push_str(&hex_list(&self.signature_algorithms));
        }
        push_hash12(&mut out, &exts);
        out
    }
}

fn version_code(version: u16) -> &'static str {
    match version {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// First and last character of the first ALPN value; when either is not ASCII alphanumeric,
/// the first and last hex digits of the value instead; "00" without one.
fn push_alpn(out: &mut String, alpn: Option<&[u8]>) {
    let (Some(&first), Some(&last)) = (alpn.and_then(<[u8]>::first), alpn.and_then(<[u8]>::last))
    else {
        out.push_str("00");
        return;
    };
    if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
        out.push(char::from(first));
        out.push(char::from(last));
    } else {
        let _ = write!(out, "{:x}{:x}", first >> 4, last & 0x0f);
    }
}

/// Comma-separated four-digit lower-case hex.
fn hex_list(values: &[u16]) -> String {
    let mut s = String::with_capacity(values.len() * 5);
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        push_hex(&mut s, &v.to_be_bytes());
    }
    s
}

/// Lower-case hex of `bytes`, without `fmt` (every TLS flow's fingerprint writes a few dozen).
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

/// First 12 hex digits of SHA-256, or twelve zeros for an empty list ("JA4+ general rules").
fn push_hash12(out: &mut String, s: &str) {
    if s.is_empty() {
        out.push_str("000000000000");
        return;
    }
    let digest = Sha256::digest(s.as_bytes());
    push_hex(out, &digest[..6]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of the JA4 specification.
    fn spec_example() -> Ja4Input<'static> {
        Ja4Input {
            transport: Transport::Tcp,
            version: 0x0304,
            has_sni: true,
            ciphers: vec![
                0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
                0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
            ],
            extensions: vec![
                0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023,
                0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
            ],
            first_alpn: Some(b"h2"),
            signature_algorithms: vec![
                0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
            ],
        }
    }

    #[test]
    fn matches_the_specification_example() {
        assert_eq!(
            spec_example().fingerprint(),
            "t13d1516h2_8daaf6152771_e5627efa2ab1"
        );
    }

    #[test]
    fn without_signature_algorithms_there_is_no_underscore() {
        let mut input = spec_example();
        input.signature_algorithms.clear();
        assert!(input.fingerprint().ends_with("_6d807ffa2a79"));
    }

    #[test]
    fn empty_lists_hash_to_zeros() {
        let input = Ja4Input {
            transport: Transport::Quic,
            version: 0x0301,
            has_sni: false,
            ciphers: vec![],
            extensions: vec![0x0000],
            first_alpn: None,
            signature_algorithms: vec![],
        };
        assert_eq!(input.fingerprint(), "q10i000100_000000000000_000000000000");
    }

    #[test]
    fn alpn_characters() {
        let alpn = |v: &[u8]| {
            let mut s = String::new();
            push_alpn(&mut s, Some(v));
            s
        };
        assert_eq!(alpn(b"http/1.1"), "h1");
        assert_eq!(alpn(b"h2"), "h2");
        assert_eq!(alpn(b"h"), "hh");
        assert_eq!(alpn(b""), "00");
        // The specification's examples for non-alphanumeric values.
        assert_eq!(alpn(&[0xab]), "ab");
        assert_eq!(alpn(&[0x20]), "20");
        assert_eq!(alpn(&[0xab, 0xcd]), "ad");
        assert_eq!(alpn(&[0x20, 0x61]), "21");
        assert_eq!(alpn(&[0x30, 0xab]), "3b");
        assert_eq!(alpn(&[0x61, 0x20]), "60");
        assert_eq!(alpn(&[0x30, 0x31, 0xab, 0xcd]), "3d");
        assert_eq!(alpn(&[0x30, 0xab, 0xcd, 0x31]), "01");
    }

    #[test]
    fn version_codes() {
        assert_eq!(version_code(0xfefd), "d2");
        assert_eq!(version_code(0x0002), "s2");
        assert_eq!(version_code(0x7f1c), "00");
    }
}
