//! DNS (RFC 1035 section 4.1) over UDP, and over TCP behind its 2-byte length prefix: a header
//! whose opcode, counts and flags are plausible, then a question name made of short labels of
//! printable bytes. mDNS, LLMNR and NetBIOS name service share the format and are named DNS.

use super::{Context, Encryption, Protocol, Verdict, be16};

const HEADER_LEN: usize = 12;
/// Header, the root name (1 byte) and QTYPE/QCLASS: the smallest message with a question.
const MIN_MESSAGE_LEN: u32 = HEADER_LEN as u32 + 5;
/// Labels checked in the window (most names have fewer; the window may end before).
const LABELS_CHECKED: usize = 3;
/// Bytes checked per label: enough to tell a name from binary, and bounded for the verifier.
const LABEL_BYTES_CHECKED: usize = 16;

#[inline(always)]
pub(super) fn detect(w: &[u8], ctx: &Context) -> Option<Verdict> {
    // Offsets into the window rather than a re-slice: BPF subprograms may not hand a stack
    // pointer back to their caller.
    let start = if ctx.is_udp() {
        if ctx.payload_len < MIN_MESSAGE_LEN {
            return None;
        }
        0
    } else {
        // TCP: a length prefix covering at least a minimal message; the message may continue
        // in later segments.
        let len = u32::from(be16(w, 0)?);
        if len < MIN_MESSAGE_LEN || ctx.payload_len < MIN_MESSAGE_LEN.saturating_add(2) {
            return None;
        }
        2
    };
    if !(header_ok(w, start)? && question_ok(w, start)) {
        return None;
    }
    if dnscrypt_cert_query(w, start) {
        return Some(Verdict::new(Protocol::Dnscrypt, Encryption::Encrypted));
    }
    Some(Verdict::new(Protocol::Dns, Encryption::Plaintext))
}

/// The question is `1.dnscrypt-cert.` or `2.dnscrypt-cert.` (any letter case: resolvers
/// randomise it).
#[inline(always)]
fn dnscrypt_cert_query(m: &[u8], start: usize) -> bool {
    const CERT_LABEL: &[u8; 14] = b"\x0ddnscrypt-cert";
    let name = start.saturating_add(HEADER_LEN);
    let version = (m.get(name), m.get(name.saturating_add(1)));
    if !matches!(version, (Some(1), Some(b'1' | b'2'))) {
        return false;
    }
    let label = name.saturating_add(2);
    for (i, want) in CERT_LABEL.iter().enumerate() {
        match m.get(label.saturating_add(i)) {
            Some(b) if b.to_ascii_lowercase() == *want => {}
            _ => return false,
        }
    }
    true
}

#[inline(always)]
fn header_ok(m: &[u8], start: usize) -> Option<bool> {
    let field = |i: usize| be16(m, start.saturating_add(i));
    let flags = field(2)?;
    let opcode = (flags >> 11) & 0xf;
    let z = flags & 0x0040;
    let (qd, an, ns, ar) = (field(4)?, field(6)?, field(8)?, field(10)?);
    Some(
        matches!(opcode, 0 | 1 | 2 | 4 | 5)
            && z == 0
            && (1..=4).contains(&qd)
            && an <= 100
            && ns <= 100
            && ar <= 100,
    )
}

/// The question name's first labels: lengths 1-63, printable bytes, in order.
#[inline(always)]
fn question_ok(m: &[u8], start: usize) -> bool {
    let name = start.saturating_add(HEADER_LEN);
    let mut at = name;
    for _ in 0..LABELS_CHECKED {
        let Some(&len) = m.get(at) else {
            // The window ended: what we saw was fine.
            return at > name;
        };
        if len == 0 {
            // End of the name (the root name "." alone is a valid question too).
            return true;
        }
        if len > 63 {
            return false;
        }
        let first = at.saturating_add(1);
        for i in 0..usize::from(len).min(LABEL_BYTES_CHECKED) {
            match m.get(first.saturating_add(i)) {
                Some(b) if b.is_ascii_graphic() => {}
                Some(_) => return false,
                None => return true,
            }
        }
        at = first.saturating_add(usize::from(len));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::tests::hex;

    const DNS: Option<Verdict> = Some(Verdict::new(Protocol::Dns, Encryption::Plaintext));
    /// `AAAA? www.example.com.` from a Linux resolver, and an answer for www.l.google.com.
    const QUERY: &str = "bc1f0100000100000000000003777777076578616d706c6503636f6d00001c0001";
    const ANSWER: &str = "dca28180000100000000000003777777016c06676f6f676c6503636f6d00001c0001";

    #[test]
    fn udp_query_and_answer() {
        assert_eq!(detect(&hex(QUERY), &Context::udp(33)), DNS);
        assert_eq!(detect(&hex(ANSWER), &Context::udp(34)), DNS);
    }

    #[test]
    fn tcp_query_behind_its_length() {
        let mut tcp = vec![0, 33];
        tcp.extend(hex(QUERY));
        assert_eq!(detect(&tcp, &Context::tcp(35, true)), DNS);
        assert_eq!(
            detect(&hex(QUERY), &Context::tcp(33, true)),
            None,
            "no length prefix"
        );
    }

    #[test]
    fn dnscrypt_certificate_query() {
        // dnscrypt-proxy asking for `2.dnscrypt-cert.ca-2` (TXT), 512-byte padded query.
        let q = hex(
            "7f470100000100000000000101320d646e7363727970742d6365727408646e7363727970740463612d32000010000100000000000000000001c6000c01c20000",
        );
        assert_eq!(
            detect(&q, &Context::udp(512)),
            Some(Verdict::new(Protocol::Dnscrypt, Encryption::Encrypted))
        );
        let mut upper = q.clone();
        upper[15] = b'D';
        assert_eq!(
            detect(&upper, &Context::udp(512)),
            Some(Verdict::new(Protocol::Dnscrypt, Encryption::Encrypted))
        );
        let mut other = q;
        other[16] = b'x';
        assert_eq!(
            detect(&other, &Context::udp(512)),
            DNS,
            "any other name is plain DNS"
        );
    }

    #[test]
    fn random_and_text_are_not_dns() {
        assert_eq!(
            detect(
                &hex("8f11e2007a3390015566778899aabbccddeeff"),
                &Context::udp(19)
            ),
            None
        );
        assert_eq!(
            detect(b"hello there, this is text\n", &Context::udp(26)),
            None
        );
        let mut binary_label = hex(QUERY);
        binary_label[13] = 0x01;
        assert_eq!(detect(&binary_label, &Context::udp(33)), None);
    }
}
