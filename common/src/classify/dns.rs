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
/// Labels walked to find the end of a question name.
const MAX_NAME_LABELS: usize = 8;
const TYPE_TXT: u16 = 16;

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

/// A UDP query's header as stub resolvers send them: opcode QUERY, one question, no answer or
/// authority records, at most the EDNS record. No other UDP detector claims a message with
/// that header and a question name [`detect`] accepts, so [`super::classify_payload`] asks
/// this first: every pod's lookups are new flows, and they would otherwise walk every other UDP
/// detector before DNS, whose looser shapes stay last.
#[inline(always)]
pub(super) fn query_header(w: &[u8], ctx: &Context) -> bool {
    let field = |i: usize| be16(w, i);
    // QR 0, opcode QUERY, Z 0.
    let query = field(2).is_some_and(|flags| flags & 0xf840 == 0);
    ctx.is_udp()
        && query
        && field(4) == Some(1)
        && field(6) == Some(0)
        && field(8) == Some(0)
        && field(10).is_some_and(|ar| ar <= 1)
}

/// A DNSCrypt client fetching its resolver's certificate: a TXT question for the provider
/// name, which by the protocol's convention starts with the certificate version label `1.` or
/// `2.` (`2.dnscrypt-cert.example.`, `2.securedns.example.`; any letter case, resolvers
/// randomise it). The TXT type matters: `2.pool.ntp.org`-style A queries are plain DNS.
#[inline(always)]
fn dnscrypt_cert_query(m: &[u8], start: usize) -> bool {
    let name = start.saturating_add(HEADER_LEN);
    let version = (m.get(name), m.get(name.saturating_add(1)));
    if !matches!(version, (Some(1), Some(b'1' | b'2'))) {
        return false;
    }
    let provider = name.saturating_add(2);
    if !m
        .get(provider.saturating_add(1))
        .is_some_and(u8::is_ascii_alphabetic)
    {
        return false;
    }
    dnscrypt_cert_label(m, provider) || question_type(m, name) == Some(TYPE_TXT)
}

/// The QTYPE after the question name at `name`, if the name ends inside the window.
#[inline(always)]
fn question_type(m: &[u8], name: usize) -> Option<u16> {
    let mut at = name;
    for _ in 0..MAX_NAME_LABELS {
        let len = *m.get(at)?;
        if len == 0 {
            // Reloaded and checked right here: otherwise LLVM reuses the pointer it made for
            // `m.get(at)` above, whose bound the verifier knows only from that earlier check.
            // SAFETY: reads a local.
            let at = unsafe { core::ptr::read_volatile(&at) };
            if at >= m.len().saturating_sub(2) {
                return None;
            }
            return be16(m, at.wrapping_add(1));
        }
        if len > 63 {
            return None;
        }
        at = at.saturating_add(1).saturating_add(usize::from(len));
    }
    None
}

/// DNSCrypt v2 responses start with the constant resolver magic (after the 2-byte length on
/// TCP); the rest of the message is encrypted.
#[inline(always)]
pub(super) fn dnscrypt_response(w: &[u8], ctx: &Context) -> Option<Verdict> {
    const RESOLVER_MAGIC: &[u8; 8] = b"r6fnvWj8";
    let start = if ctx.is_udp() { 0 } else { 2 };
    let rest = w.get(start..)?;
    (ctx.payload_len > 8 && super::has_prefix(rest, RESOLVER_MAGIC))
        .then(|| Verdict::new(Protocol::Dnscrypt, Encryption::Encrypted))
}

/// The provider label is the conventional `dnscrypt-cert`.
#[inline(always)]
fn dnscrypt_cert_label(m: &[u8], label: usize) -> bool {
    const CERT_LABEL: &[u8; 14] = b"\x0ddnscrypt-cert";
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
            Some(Verdict::new(Protocol::Dnscrypt, Encryption::Encrypted)),
            "a TXT question for another `2.` provider name"
        );
        // The same name asked as type A is an ordinary lookup.
        other[0x2c] = 0x01;
        assert_eq!(detect(&other, &Context::udp(512)), DNS);
    }

    /// Avast SecureDNS fetching its certificate: TXT `2.SeCURednS.aVasT.CoM` (avast_securedns
    /// capture of the corpus).
    const PROVIDER_QUERY: &str =
        "48c401000001000000000000013209536543555265646e5305615661735403436f4d0000100001";

    #[test]
    fn provider_certificate_queries_but_not_lookalikes() {
        let dnscrypt = Some(Verdict::new(Protocol::Dnscrypt, Encryption::Encrypted));
        assert_eq!(detect(&hex(PROVIDER_QUERY), &Context::udp(39)), dnscrypt);
        // `2.pool.ntp.org` type A, and a DNS blocklist TXT lookup `2.0.0.127.zen.spamhaus.org`.
        let ntp = hex("123401000001000000000000013204706f6f6c036e7470036f72670000010001");
        assert_eq!(detect(&ntp, &Context::udp(32)), DNS);
        let dnsbl = hex(
            "12340100000100000000000001320130013003313237037a656e087370616d68617573036f72670000100001",
        );
        assert_eq!(detect(&dnsbl, &Context::udp(44)), DNS);
    }

    #[test]
    fn resolver_magic_starts_dnscrypt_responses() {
        // Start of a DNSCrypt v2 response (dnscrypt-v1-and-resolver-pings capture).
        let reply = hex("7236666e76576a38ee94820de238d992cb31419a920c05262a97dde3d0453dc5");
        let dnscrypt = Some(Verdict::new(Protocol::Dnscrypt, Encryption::Encrypted));
        assert_eq!(dnscrypt_response(&reply, &Context::udp(368)), dnscrypt);
        let mut tcp = vec![0x01, 0x70];
        tcp.extend(&reply);
        assert_eq!(dnscrypt_response(&tcp, &Context::tcp(370, true)), dnscrypt);
        assert_eq!(dnscrypt_response(&reply[1..], &Context::udp(367)), None);
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
