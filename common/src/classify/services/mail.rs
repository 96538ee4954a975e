//! Line-based mail and file-transfer protocols: SMTP, IMAP, POP3 and FTP.
//!
//! Their servers speak first, so the greeting usually names the flow:
//! - IMAP: an untagged `* OK ` or `* PREAUTH ` (RFC 9051 section 7.1).
//! - POP3: `+OK ` (RFC 1939 section 4). Redis's `+OK\r\n` reply has no space.
//! - SMTP and FTP both greet with reply code 220 (`220 ` or the multi-line `220-`). The code alone
//!   cannot tell them apart, so the text decides: `SMTP` (which `ESMTP` and `LMTP` contain) names
//!   SMTP, as every common MTA (Postfix, Exim, Sendmail, Exchange, OpenSMTPD) puts it in its
//!   banner; otherwise `FTP` (vsFTPd, ProFTPD, Pure-FTPd, `Microsoft FTP Service`, `ftp.` host
//!   names) names FTP. A greeting with neither (FileZilla Server, or a custom banner like
//!   `220 "Authorized users only..."`) is left unnamed: the flow waits for the client's first
//!   command, which is unambiguous, instead of guessing.
//!
//! Client commands, for flows whose greeting was not named or not seen:
//! - SMTP: `EHLO `/`HELO ` (any case: Python's smtplib sends `ehlo`).
//! - FTP: `AUTH TLS`/`AUTH SSL` (RFC 4217), `FEAT`.
//! - POP3: `CAPA`, `STLS`, `APOP `, and `AUTH` with a SASL mechanism or none.
//! - IMAP: a tag of letters, digits or dots, then `CAPABILITY`, `LOGIN `, `STARTTLS`,
//!   `AUTHENTICATE `, `ID ` or `NOOP`.
//!
//! `USER ` opens both FTP and POP3 logins and is left unnamed; both servers' greetings come first
//! anyway. STARTTLS/STLS/AUTH TLS upgrades later in the flow are the TLS detector's business.

use super::super::has_prefix;
use super::super::{Protocol, Verdict};
use super::{has_prefix_ignore_case, plaintext, prefix_at_ignore_case};

/// How far into a 220 greeting to look for `SMTP`/`FTP`: most put it within the host name
/// and product that open the line.
const GREETING_SCAN: usize = 48;
/// Longest IMAP tag accepted before the command (clients use `a001`, `A1`, `.`, `1`,
/// imaplib's `ABCD12`).
const MAX_TAG_LEN: usize = 10;

#[inline(never)]
pub(super) fn detect(w: &[u8]) -> Option<Verdict> {
    let p = match w.first()? {
        b'2' => return greeting_220(w),
        b'*' if has_prefix(w, b"* OK ") || has_prefix(w, b"* PREAUTH ") => Protocol::Imap,
        b'+' if has_prefix(w, b"+OK ") => Protocol::Pop3,
        _ => return client_command(w).or_else(|| imap_command(w)),
    };
    Some(plaintext(p))
}

/// `220 ` or `220-`, then SMTP if the text says SMTP, FTP if it says FTP, else nothing.
#[inline(always)]
fn greeting_220(w: &[u8]) -> Option<Verdict> {
    if !(has_prefix(w, b"220 ") || has_prefix(w, b"220-")) {
        return None;
    }
    // `mtp` ends SMTP/ESMTP/LMTP and wins wherever it is; `ftp` is FTP.
    if says(w, b'm') {
        Some(plaintext(Protocol::Smtp))
    } else if says(w, b'f') {
        Some(plaintext(Protocol::Ftp))
    } else {
        None
    }
}

/// The greeting's text holds `<first>tp`, in any case. Only the letters' case bit is folded, so
/// no other byte can pass for a letter. One scan per word that stops at the first hit: flags
/// for both words carried through one scan would make the verifier walk each combination of
/// them at every position.
#[inline(always)]
fn says(w: &[u8], first: u8) -> bool {
    let text = w.iter().skip(4).take(GREETING_SCAN);
    let next = w.iter().skip(5);
    let after = w.iter().skip(6);
    text.zip(next)
        .zip(after)
        .any(|((&a, &b), &c)| a | 0x20 == first && b | 0x20 == b't' && c | 0x20 == b'p')
}

/// Untagged commands of SMTP, FTP and POP3 that only one of them uses.
#[inline(always)]
fn client_command(w: &[u8]) -> Option<Verdict> {
    let p = match w.first()? | 0x20 {
        b'e' | b'h'
            if has_prefix_ignore_case(w, b"ehlo ") || has_prefix_ignore_case(w, b"helo ") =>
        {
            Protocol::Smtp
        }
        b'a' if has_prefix_ignore_case(w, b"auth tls")
            || has_prefix_ignore_case(w, b"auth ssl") =>
        {
            Protocol::Ftp
        }
        b'a' if has_prefix_ignore_case(w, b"auth\r\n")
            || sasl_mechanism(w)
            || has_prefix_ignore_case(w, b"apop ") =>
        {
            Protocol::Pop3
        }
        b'f' if has_prefix_ignore_case(w, b"feat\r\n") => Protocol::Ftp,
        b'c' if has_prefix_ignore_case(w, b"capa\r\n") => Protocol::Pop3,
        b's' if has_prefix_ignore_case(w, b"stls\r\n") => Protocol::Pop3,
        _ => return None,
    };
    Some(plaintext(p))
}

/// POP3 `AUTH` with a SASL mechanism (`PLAIN`, `SCRAM-SHA-256`, `XOAUTH2`): three name bytes
/// that are not FTP's `TLS`/`SSL`.
#[inline(always)]
fn sasl_mechanism(w: &[u8]) -> bool {
    let name = |i: usize| {
        w.get(i)
            .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'-')
    };
    has_prefix_ignore_case(w, b"auth ") && name(5) && name(6) && name(7)
}

/// `<tag> <command>`: a short tag of letters, digits or dots, one space, then a command a
/// client sends before it is logged in.
#[inline(always)]
fn imap_command(w: &[u8]) -> Option<Verdict> {
    let mut space = 0;
    for (i, &b) in w.iter().enumerate().take(MAX_TAG_LEN.wrapping_add(1)) {
        if b == b' ' {
            space = i;
            break;
        }
        if !(b.is_ascii_alphanumeric() || b == b'.') {
            return None;
        }
    }
    if space == 0 {
        return None;
    }
    let command = |lower: &[u8]| prefix_at_ignore_case(w, space.wrapping_add(1), lower);
    let known = command(b"capability\r\n")
        || command(b"login ")
        || command(b"starttls\r\n")
        || command(b"authenticate ")
        || command(b"id (")
        || command(b"id nil")
        || command(b"noop\r\n");
    known.then(|| plaintext(Protocol::Imap))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::classify::services::tests::{Bytes::Text, Fixture, tcp};

    const SMTP: Verdict = plaintext(Protocol::Smtp);
    const IMAP: Verdict = plaintext(Protocol::Imap);
    const POP3: Verdict = plaintext(Protocol::Pop3);
    const FTP: Verdict = plaintext(Protocol::Ftp);

    pub(crate) const FIXTURES: &[Fixture] = &[
        tcp(
            "SMTP greeting, Sendmail, smtp.pcap",
            Text(b"220 pigeon.eyrie.af.mil ESMTP Sendmail 8.8.7/8.8.7; Sat, 7 Aug 1"),
            84,
            SMTP,
        ),
        tcp(
            "SMTP greeting, Orange submission server, emotet.pcap",
            Text(b"220 opmta1mto02nd1 smtp.orange.fr ESMTP server ready\r\n"),
            54,
            SMTP,
        ),
        tcp(
            "SMTP greeting, Python smtpd on loopback",
            Text(b"220 localhost Python SMTP proxy version 0.3\r\n"),
            45,
            SMTP,
        ),
        tcp(
            "SMTP EHLO, smtp.pcap",
            Text(b"EHLO delta.peach.mil\r\n"),
            22,
            SMTP,
        ),
        tcp(
            "SMTP ehlo, Python smtplib on loopback",
            Text(b"ehlo [127.0.0.1]\r\n"),
            18,
            SMTP,
        ),
        tcp(
            "IMAP greeting, Dovecot (Debian 12) on loopback",
            Text(b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDL"),
            121,
            IMAP,
        ),
        tcp(
            "IMAP greeting, 1&1 mail, imap-starttls.pcap",
            Text(b"* OK [CAPABILITY IMAP4rev1 CHILDREN ENABLE ID IDLE LIST-EXTENDED"),
            271,
            IMAP,
        ),
        tcp(
            "IMAP `. CAPABILITY`, imap-starttls.pcap",
            Text(b". CAPABILITY\r\n"),
            14,
            IMAP,
        ),
        tcp(
            "IMAP CAPABILITY, Python imaplib on loopback",
            Text(b"KGPP0 CAPABILITY\r\n"),
            18,
            IMAP,
        ),
        tcp(
            "POP3 greeting, Dovecot (Debian 12) on loopback",
            Text(b"+OK Dovecot (Debian) ready.\r\n"),
            29,
            POP3,
        ),
        tcp(
            "POP3 greeting, 1&1 mail, pop3.pcap",
            Text(b"+OK POP server ready H mimap4 0MHoUr-1VDxRD3Ui5-003eq2\r\n"),
            56,
            POP3,
        ),
        tcp("POP3 CAPA, pop3.pcap", Text(b"CAPA\r\n"), 6, POP3),
        tcp(
            "POP3 AUTH with no mechanism, pop3.pcap",
            Text(b"AUTH\r\n"),
            6,
            POP3,
        ),
        tcp(
            "POP3 AUTH PLAIN, pop3.pcap",
            Text(b"AUTH PLAIN\r\n"),
            12,
            POP3,
        ),
        tcp(
            "POP3 STLS, Python poplib on loopback",
            Text(b"STLS\r\n"),
            6,
            POP3,
        ),
        tcp(
            "FTP greeting, vsFTPd, ftp.pcap",
            Text(b"220 (vsFTPd 3.0.3)\r\n"),
            20,
            FTP,
        ),
        tcp(
            "FTP AUTH TLS, ftp-start-tls.pcap",
            Text(b"AUTH TLS\r\n"),
            10,
            FTP,
        ),
        tcp(
            "FTP greeting without a product name, ftp-start-tls.pcap: left to the client",
            Text(b"220 \"Authorized users only. All activity may be monitored and re"),
            73,
            Verdict::UNKNOWN,
        ),
        tcp(
            "FTP/POP3 USER, ftp.pcap: ambiguous, left unnamed",
            Text(b"USER anonymous\r\n"),
            16,
            Verdict::UNKNOWN,
        ),
    ];

    #[test]
    fn greetings_and_commands_from_captures() {
        for f in FIXTURES {
            let expect = f.expect.is_known().then_some(f.expect);
            assert_eq!(detect(&f.window()), expect, "{}", f.name);
        }
    }

    #[test]
    fn smtp_wins_when_a_banner_says_both() {
        assert_eq!(
            detect(b"220 ftp-gw.example.net ESMTP Postfix (Debian/GNU)\r\n"),
            Some(SMTP)
        );
        assert_eq!(
            detect(b"220 ProFTPD Server (Debian) [::ffff:127.0.0.1]\r\n"),
            Some(FTP)
        );
        assert_eq!(detect(b"220-FileZilla Server 1.8.0\r\n"), None);
        assert_eq!(detect(b"220"), None);
        assert_eq!(detect(b"2200 ESMTP"), None);
    }

    #[test]
    fn imap_tags_and_commands() {
        assert_eq!(detect(b"a001 LOGIN user pass\r\n"), Some(IMAP));
        assert_eq!(detect(b"1 capability\r\n"), Some(IMAP));
        assert_eq!(detect(b"A2 STARTTLS\r\n"), Some(IMAP));
        assert_eq!(detect(b"tag-1 CAPABILITY\r\n"), None, "tags have no dashes");
        assert_eq!(detect(b"averyverylongtag CAPABILITY\r\n"), None);
        assert_eq!(detect(b" CAPABILITY\r\n"), None, "empty tag");
        assert_eq!(detect(b"a1 SELECT INBOX\r\n"), None, "not a first command");
    }

    #[test]
    fn look_alikes() {
        assert_eq!(detect(b"+OK\r\n"), None, "a Redis reply");
        assert_eq!(detect(b"+PONG\r\n"), None);
        assert_eq!(detect(b"*1\r\n$4\r\nPING\r\n"), None);
        assert_eq!(detect(b"EHLO"), None);
        assert_eq!(detect(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(detect(b"AUTHORIZATION"), None);
    }
}
