//! SSDP (UPnP discovery): HTTP-formatted requests over UDP, `M-SEARCH * HTTP/1.1` and
//! `NOTIFY * HTTP/1.1`. Their answers are HTTP status lines, which the HTTP detector names.

use super::{Encryption, Protocol, Verdict, has_prefix};

#[inline(always)]
pub(super) fn detect(w: &[u8]) -> Option<Verdict> {
    let ssdp = has_prefix(w, b"M-SEARCH * HTTP/1.") || has_prefix(w, b"NOTIFY * HTTP/1.");
    ssdp.then_some(Verdict::new(Protocol::Ssdp, Encryption::Plaintext))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_and_announcements() {
        let ssdp = Some(Verdict::new(Protocol::Ssdp, Encryption::Plaintext));
        assert_eq!(
            detect(
                b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n"
            ),
            ssdp
        );
        assert_eq!(
            detect(b"NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nNT: upnp:rootdevice\r\n"),
            ssdp
        );
        assert_eq!(detect(b"M-SEARCH /x HTTP/1.1\r\n"), None);
    }
}
