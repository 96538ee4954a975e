//! XMPP (RFC 6120 section 4): a stream opens with `<stream:stream`, usually after an XML
//! declaration (`<?xml version='1.0'?>`). Servers send both in one segment; some clients send
//! the declaration alone first, which says only "XML" and is left unnamed: the server's answer
//! names the flow.

use super::super::{Protocol, Verdict, byte_at, has_prefix, prefix_at};
use super::plaintext;

const STREAM: &[u8] = b"<stream:stream";
/// How far into the window the declaration's `?>` is looked for.
const DECLARATION_SCAN: usize = 56;
/// Whitespace allowed between the declaration and the stream header.
const MAX_GAP: usize = 2;

#[inline(never)]
pub(super) fn detect(w: &[u8]) -> Option<Verdict> {
    if has_prefix(w, STREAM) {
        return Some(plaintext(Protocol::Xmpp));
    }
    if !has_prefix(w, b"<?xml ") {
        return None;
    }
    let end = w
        .iter()
        .zip(w.iter().skip(1))
        .take(DECLARATION_SCAN)
        .position(|(&a, &b)| a == b'?' && b == b'>')?;
    let mut at = end.checked_add(2)?;
    for _ in 0..MAX_GAP {
        if matches!(byte_at(w, at), Some(b' ' | b'\r' | b'\n' | b'\t')) {
            at = at.wrapping_add(1);
        }
    }
    prefix_at(w, at, STREAM).then(|| plaintext(Protocol::Xmpp))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::classify::services::tests::{Bytes::Text, Fixture, tcp};

    const XMPP: Verdict = plaintext(Protocol::Xmpp);

    pub(crate) const FIXTURES: &[Fixture] = &[
        tcp(
            "XMPP server stream header after the declaration, jabber.pcap",
            Text(b"<?xml version='1.0'?><stream:stream id='16471686341201772321' ve"),
            179,
            XMPP,
        ),
        tcp(
            "XMPP client stream header, sent after the declaration, jabber.pcap",
            Text(b"<stream:stream to='cs-xmpp.lan' xmlns='jabber:client' xmlns:stre"),
            116,
            XMPP,
        ),
        tcp(
            "XMPP client declaration alone, jabber.pcap: only says XML",
            Text(b"<?xml version='1.0' ?>"),
            22,
            Verdict::UNKNOWN,
        ),
    ];

    #[test]
    fn stream_headers_from_captures() {
        for f in FIXTURES {
            let expect = f.expect.is_known().then_some(f.expect);
            assert_eq!(detect(&f.window()), expect, "{}", f.name);
        }
    }

    #[test]
    fn other_xml_is_not_xmpp() {
        assert_eq!(
            detect(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<stream:stream to='x'>"),
            Some(XMPP)
        );
        assert_eq!(
            detect(b"<?xml version=\"1.0\"?><methodCall><methodName>"),
            None
        );
        assert_eq!(detect(b"<stream:features>"), None);
    }
}
