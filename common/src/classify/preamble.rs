//! What a client may say on a plaintext connection before it upgrades to TLS in-band, so enforce
//! mode can let SMTP/IMAP/POP3/FTP/LDAP/XMPP STARTTLS and the PostgreSQL/MySQL SSL requests
//! through while dropping the first client message that carries anything else (a login, a query,
//! a mail). The server's side of a preamble (banners, capability lists, "go ahead") is not
//! judged here: it carries no client data.

use super::{byte_at, has_prefix, prefix_at};

/// One client payload packet of an upgradable flow that has not upgraded yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preamble {
    /// A TLS ClientHello: the upgrade itself.
    Upgrade,
    /// Capability discovery or the upgrade request (`EHLO`, `STARTTLS`, `SSLRequest`, ...).
    Negotiation,
    /// Anything else: application data in the clear.
    Data,
}

/// PostgreSQL SSLRequest and GSSENCRequest: length 8, then the request codes 80877103/80877104.
const PG_SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
const PG_GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
/// MySQL SSLRequest: a 32-byte handshake response cut short after its fixed fields, sequence 1,
/// with CLIENT_SSL among the capability flags.
const MYSQL_SSL_REQUEST_LEN: u32 = 4 + 32;
const MYSQL_CLIENT_SSL: u8 = 0x08;
/// The LDAP StartTLS extended operation's OID, as it appears inside the request.
const LDAP_STARTTLS_OID: &[u8] = b"1.3.6.1.4.1.1466.20037";

/// Longest IMAP tag looked past.
const MAX_TAG: usize = 16;

/// Judges one client payload packet (`window`: its first bytes; `payload_len`: its length).
#[inline(never)]
pub fn client_preamble(window: &[u8], payload_len: u32) -> Preamble {
    if tls_client_hello(window) {
        return Preamble::Upgrade;
    }
    if payload_len == PG_SSL_REQUEST.len() as u32
        && (has_prefix(window, &PG_SSL_REQUEST) || has_prefix(window, &PG_GSSENC_REQUEST))
    {
        return Preamble::Negotiation;
    }
    if payload_len == MYSQL_SSL_REQUEST_LEN
        && has_prefix(window, &[32, 0, 0, 1])
        && byte_at(window, 5).is_some_and(|flags| flags & MYSQL_CLIENT_SSL != 0)
    {
        return Preamble::Negotiation;
    }
    if has_prefix(window, b"<?xml")
        || has_prefix(window, b"<stream:")
        || has_prefix(window, b"<starttls")
    {
        return Preamble::Negotiation;
    }
    if text_command(window) || ldap_starttls(window) {
        return Preamble::Negotiation;
    }
    Preamble::Data
}

/// A TLS handshake record holding a ClientHello.
#[inline(always)]
fn tls_client_hello(w: &[u8]) -> bool {
    has_prefix(w, &[0x16, 0x03])
        && byte_at(w, 2).is_some_and(|minor| minor <= 4)
        && byte_at(w, 5) == Some(1)
}

#[inline(always)]
fn text_command(w: &[u8]) -> bool {
    if command_at_start(w) {
        return true;
    }
    // IMAP: `<tag> CAPABILITY`, `<tag> STARTTLS`; the tag is printable and has no space. The
    // loop only finds where the command starts; the command is then copied to a fixed place and
    // matched at constant offsets, so the verifier walks the matchers once per tag length
    // rather than once per tag length and command and byte.
    let mut at = 0;
    let mut i = 1;
    while i <= MAX_TAG {
        match byte_at(w, i) {
            Some(b' ') => {
                at = i.wrapping_add(1);
                break;
            }
            Some(b) if b.is_ascii_graphic() => {}
            _ => return false,
        }
        i = i.wrapping_add(1);
    }
    if at == 0 {
        return false;
    }
    let mut command = [0u8; MAX_COMMAND];
    for (k, c) in command.iter_mut().enumerate() {
        *c = byte_at(w, at.wrapping_add(k)).unwrap_or(0);
    }
    command_at_start(&command)
}

/// Longest command matched, plus the byte after it.
const MAX_COMMAND: usize = 11;

/// Text commands that only negotiate, compared case-insensitively at the start of `w`. Written
/// out one call per command: a table of byte strings would be an array of pointers, which BPF
/// programs cannot relocate.
#[inline(always)]
fn command_at_start(w: &[u8]) -> bool {
    word(w, b"EHLO ")
        || word(w, b"HELO ")
        || word(w, b"STARTTLS")
        || word(w, b"STLS")
        || word(w, b"CAPA")
        || word(w, b"CAPABILITY")
        || word(w, b"AUTH TLS")
        || word(w, b"AUTH SSL")
        || word(w, b"FEAT")
}

/// `command` as a whole word at the start of `w`: `STLS` must not accept a longer word, so a
/// line end, a space or the end must follow unless the command ends in a space.
#[inline(always)]
fn word(w: &[u8], command: &[u8]) -> bool {
    for (i, &expected) in command.iter().enumerate() {
        match w.get(i) {
            // Case folded by one OR, not `to_ascii_uppercase`: its range test forks the
            // verifier's paths at every byte. The commands are letters and spaces, which the OR
            // keeps apart from each other.
            Some(&b) if b | 0x20 == expected | 0x20 => {}
            _ => return false,
        }
    }
    command.last() == Some(&b' ')
        || matches!(w.get(command.len()), Some(b'\r' | b'\n' | b' ' | 0) | None)
}

/// An LDAP ExtendedRequest for StartTLS: `SEQUENCE { messageID, [APPLICATION 23] {
/// [0] requestName } }` with short-form lengths, as every client sends it.
#[inline(always)]
fn ldap_starttls(w: &[u8]) -> bool {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const EXTENDED_REQUEST: u8 = 0x77;
    const REQUEST_NAME: u8 = 0x80;
    if byte_at(w, 0) != Some(SEQUENCE) || byte_at(w, 2) != Some(INTEGER) {
        return false;
    }
    let id_len = match byte_at(w, 3) {
        Some(n @ 1..=4) => usize::from(n),
        _ => return false,
    };
    let op = id_len.wrapping_add(4);
    byte_at(w, op) == Some(EXTENDED_REQUEST)
        && byte_at(w, op.wrapping_add(2)) == Some(REQUEST_NAME)
        && byte_at(w, op.wrapping_add(3)) == Some(LDAP_STARTTLS_OID.len() as u8)
        && prefix_at(w, op.wrapping_add(4), LDAP_STARTTLS_OID)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::tests::hex;

    fn judge(bytes: &[u8]) -> Preamble {
        let mut w = [0u8; crate::CLASSIFY_WINDOW];
        let n = bytes.len().min(w.len());
        w[..n].copy_from_slice(&bytes[..n]);
        client_preamble(&w, bytes.len() as u32)
    }

    #[test]
    fn mail_commands_that_negotiate_pass_and_the_rest_is_data() {
        assert_eq!(judge(b"EHLO client.example\r\n"), Preamble::Negotiation);
        assert_eq!(judge(b"ehlo localhost\r\n"), Preamble::Negotiation);
        assert_eq!(judge(b"STARTTLS\r\n"), Preamble::Negotiation);
        assert_eq!(judge(b"STLS\r\n"), Preamble::Negotiation);
        assert_eq!(judge(b"CAPA\r\n"), Preamble::Negotiation);
        assert_eq!(judge(b"a001 CAPABILITY\r\n"), Preamble::Negotiation);
        assert_eq!(judge(b"a002 STARTTLS\r\n"), Preamble::Negotiation);
        assert_eq!(judge(b"AUTH TLS\r\n"), Preamble::Negotiation);
        assert_eq!(
            judge(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"),
            Preamble::Data
        );
        assert_eq!(judge(b"MAIL FROM:<a@example.com>\r\n"), Preamble::Data);
        assert_eq!(judge(b"a001 LOGIN alice secret\r\n"), Preamble::Data);
        assert_eq!(judge(b"USER alice\r\n"), Preamble::Data);
        assert_eq!(judge(b"STARTTLSX\r\n"), Preamble::Data);
    }

    #[test]
    fn database_ssl_requests_pass_and_startup_messages_do_not() {
        assert_eq!(judge(&hex("0000000804d2162f")), Preamble::Negotiation);
        // A StartupMessage (protocol 3.0, user alice).
        assert_eq!(
            judge(&hex(
                "00000021000300007573657200616c69636500646174616261736500646200"
            )),
            Preamble::Data
        );
        // MySQL SSLRequest from mysql-client 8: capabilities 0x...a68d with CLIENT_SSL.
        let mut ssl = hex("20000001058eaf0100000001ff");
        ssl.resize(36, 0);
        assert_eq!(judge(&ssl), Preamble::Negotiation);
        // A full handshake response (longer, a user name follows) is data.
        let mut login = ssl.clone();
        login[0] = 0x40;
        login.resize(68, b'a');
        assert_eq!(judge(&login), Preamble::Data);
    }

    #[test]
    fn client_hellos_upgrade() {
        assert_eq!(judge(&hex("160301020001")), Preamble::Upgrade);
        assert_eq!(judge(&hex("170303002a")), Preamble::Data);
    }

    #[test]
    fn ldap_starttls_and_xmpp_stream_negotiation() {
        // ExtendedRequest, messageID 1, requestName 1.3.6.1.4.1.1466.20037 (from ldapsearch -ZZ).
        let mut req = hex("301d02010177188016");
        req.extend_from_slice(LDAP_STARTTLS_OID);
        assert_eq!(judge(&req), Preamble::Negotiation);
        // A simple bind carries a password: data.
        assert_eq!(judge(&hex("300c020101600702010304008000")), Preamble::Data);
        assert_eq!(
            judge(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
            Preamble::Negotiation
        );
    }
}
