//! The payload classifier: plain functions over the first bytes of one direction of a flow,
//! run by the kernel on its [`crate::CLASSIFY_WINDOW`] and by user space on larger samples.
//!
//! Detectors decide by protocol structure, never by port. Each family lives in its own module
//! with a `detect(window) -> Option<Verdict>` function; adding a protocol is adding a module and
//! one line in [`classify_payload`].
//!
//! This code runs inside BPF programs, so it must never panic (the verifier rejects the panic
//! path's endless loop) and never call `memcmp`: it matches with slice patterns and
//! [`has_prefix`], and the lints below keep it that way.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::panic,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::arithmetic_side_effects
    )
)]

mod http;
mod ssh;
mod tls;

/// Protocol family of a flow; the `u8` value is what the flow table stores.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Unknown = 0,
    Tls = 1,
    Ssh = 2,
    Http = 3,
}

impl Protocol {
    /// Every protocol, for iteration in tests and reports.
    pub const ALL: [Protocol; 4] = [
        Protocol::Unknown,
        Protocol::Tls,
        Protocol::Ssh,
        Protocol::Http,
    ];

    /// Lower-case family name, the `network.protocol.name` of events.
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Unknown => "unknown",
            Protocol::Tls => "tls",
            Protocol::Ssh => "ssh",
            Protocol::Http => "http",
        }
    }

    pub const fn from_u8(value: u8) -> Protocol {
        match value {
            1 => Protocol::Tls,
            2 => Protocol::Ssh,
            3 => Protocol::Http,
            _ => Protocol::Unknown,
        }
    }
}

/// Whether a flow's payload is protected; the `u8` value is what the flow table stores.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Encryption {
    Unknown = 0,
    Plaintext = 1,
    Encrypted = 2,
}

impl Encryption {
    /// The `sealwatch.encryption` value of events.
    pub const fn name(self) -> &'static str {
        match self {
            Encryption::Unknown => "unknown",
            Encryption::Plaintext => "plaintext",
            Encryption::Encrypted => "encrypted",
        }
    }

    pub const fn from_u8(value: u8) -> Encryption {
        match value {
            1 => Encryption::Plaintext,
            2 => Encryption::Encrypted,
            _ => Encryption::Unknown,
        }
    }
}

/// What the classifier concluded about one direction's first payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub protocol: Protocol,
    pub encryption: Encryption,
}

impl Verdict {
    pub const UNKNOWN: Verdict = Verdict::new(Protocol::Unknown, Encryption::Unknown);

    pub const fn new(protocol: Protocol, encryption: Encryption) -> Verdict {
        Verdict {
            protocol,
            encryption,
        }
    }

    pub const fn is_known(self) -> bool {
        !matches!(self.protocol, Protocol::Unknown)
    }
}

/// Classifies the first payload bytes of one direction of a flow. `window` may be a prefix of
/// the payload (the kernel passes at most [`crate::CLASSIFY_WINDOW`] bytes); detectors only need
/// their protocol's opening bytes.
#[inline(always)]
pub fn classify_payload(window: &[u8]) -> Verdict {
    if let Some(v) = tls::detect(window) {
        return v;
    }
    if let Some(v) = ssh::detect(window) {
        return v;
    }
    if let Some(v) = http::detect(window) {
        return v;
    }
    Verdict::UNKNOWN
}

/// `window` starts with `prefix`. A hand-written loop because slice equality lowers to `bcmp`,
/// which BPF programs cannot call; with a constant `prefix` it unrolls to byte compares.
#[inline(always)]
pub(crate) fn has_prefix(window: &[u8], prefix: &[u8]) -> bool {
    for (i, expected) in prefix.iter().enumerate() {
        if window.get(i) != Some(expected) {
            return false;
        }
    }
    true
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Test fixtures are hex strings copied from captures.
    pub(crate) fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(s.get(i..i + 2).unwrap_or("zz"), 16)
                    .unwrap_or_else(|e| panic!("{s}: {e}"))
            })
            .collect()
    }

    #[test]
    fn protocol_and_encryption_round_trip_through_u8() {
        for p in Protocol::ALL {
            assert_eq!(Protocol::from_u8(p as u8), p);
        }
        for e in [
            Encryption::Unknown,
            Encryption::Plaintext,
            Encryption::Encrypted,
        ] {
            assert_eq!(Encryption::from_u8(e as u8), e);
        }
    }

    #[test]
    fn prefix_needs_every_byte() {
        assert!(has_prefix(b"SSH-2.0-x", b"SSH-"));
        assert!(!has_prefix(b"SSH", b"SSH-"));
        assert!(!has_prefix(b"SSX-", b"SSH-"));
        assert!(has_prefix(b"", b""));
    }

    #[test]
    fn empty_and_random_payloads_are_unknown() {
        assert_eq!(classify_payload(b""), Verdict::UNKNOWN);
        assert_eq!(
            classify_payload(&[0x8f, 0x11, 0xe2, 0x00, 0x7a, 0x33, 0x90]),
            Verdict::UNKNOWN
        );
        assert_eq!(classify_payload(b"hello there\n"), Verdict::UNKNOWN);
    }
}
