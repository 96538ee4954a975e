//! SSH: the identification string both sides send first (RFC 4253 section 4.2),
//! `SSH-protoversion-softwareversion`. Versions 2.0, 1.99 (2.0 with v1 fallback) and 1.x.

use super::{Encryption, Protocol, Verdict, has_prefix};

#[inline(always)]
pub(super) fn detect(w: &[u8]) -> Option<Verdict> {
    let versioned =
        has_prefix(w, b"SSH-2.0-") || has_prefix(w, b"SSH-1.99-") || has_prefix(w, b"SSH-1.5-");
    versioned.then_some(Verdict::new(Protocol::Ssh, Encryption::Encrypted))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSH: Option<Verdict> = Some(Verdict::new(Protocol::Ssh, Encryption::Encrypted));

    #[test]
    fn openssh_banner_from_either_side() {
        // Debian 12's OpenSSH client and server send the same banner.
        assert_eq!(detect(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n"), SSH);
        assert_eq!(detect(b"SSH-2.0-dropbear_2022.83\r\n"), SSH);
        assert_eq!(detect(b"SSH-1.99-Cisco-1.25\r\n"), SSH);
    }

    #[test]
    fn near_misses_are_not_ssh() {
        assert_eq!(detect(b"SSH-"), None);
        assert_eq!(detect(b"SSH-3.0-future\r\n"), None);
        assert_eq!(detect(b"ssh-2.0-lowercase\r\n"), None);
        assert_eq!(detect(b"GET /SSH-2.0- HTTP/1.1\r\n"), None);
    }
}
