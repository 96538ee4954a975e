//! HTTP/1.x: a request line (known method, one space, then the start of a request target) or a
//! status line (`HTTP/1.0` or `HTTP/1.1`, a space, a three-digit status).

use super::{Encryption, Protocol, Verdict, has_prefix};

const HTTP: Verdict = Verdict::new(Protocol::Http, Encryption::Plaintext);

#[inline(always)]
pub(super) fn detect(w: &[u8]) -> Option<Verdict> {
    if let Some(target_at) = method_len(w) {
        // origin-form "/x", asterisk-form "*", absolute-form "http://", authority-form "host:443"
        let target_starts = matches!(w.get(target_at), Some(b'/' | b'*'))
            || w.get(target_at).is_some_and(u8::is_ascii_alphanumeric);
        return target_starts.then_some(HTTP);
    }
    is_status_line(w).then_some(HTTP)
}

/// The shapes of HTTP/1.x no other detector claims: a request whose target is a path (`GET /`,
/// `OPTIONS *`) or a status line. [`super::classify_payload`] asks this first, so the most
/// common plaintext protocol between services is named without walking every other detector;
/// other request targets (`OPTIONS sip:`, `GET key`) still wait for [`detect`], after the
/// protocols that share HTTP's methods.
#[inline(always)]
pub(super) fn certain(w: &[u8]) -> Option<Verdict> {
    if let Some(target_at) = method_len(w) {
        return matches!(w.get(target_at), Some(b'/' | b'*')).then_some(HTTP);
    }
    is_status_line(w).then_some(HTTP)
}

/// Length of the method and its trailing space, if `w` starts with a registered method.
#[inline(always)]
fn method_len(w: &[u8]) -> Option<usize> {
    let len = match w.first()? {
        b'G' if has_prefix(w, b"GET ") => 4,
        b'P' if has_prefix(w, b"POST ") => 5,
        b'P' if has_prefix(w, b"PUT ") => 4,
        b'P' if has_prefix(w, b"PATCH ") => 6,
        b'H' if has_prefix(w, b"HEAD ") => 5,
        b'D' if has_prefix(w, b"DELETE ") => 7,
        b'O' if has_prefix(w, b"OPTIONS ") => 8,
        b'C' if has_prefix(w, b"CONNECT ") => 8,
        b'T' if has_prefix(w, b"TRACE ") => 6,
        _ => return None,
    };
    Some(len)
}

#[inline(always)]
fn is_status_line(w: &[u8]) -> bool {
    let &[
        b'H',
        b'T',
        b'T',
        b'P',
        b'/',
        b'1',
        b'.',
        b'0' | b'1',
        b' ',
        d0,
        d1,
        d2,
        ..,
    ] = w
    else {
        return false;
    };
    matches!(d0, b'1'..=b'5') && d1.is_ascii_digit() && d2.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_request_and_python_response() {
        assert_eq!(
            detect(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:18080\r\nUser-Agen"),
            Some(HTTP)
        );
        assert_eq!(
            detect(b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3"),
            Some(HTTP)
        );
        assert_eq!(
            detect(b"HTTP/1.1 404 Not Found\r\nServer: nginx/1.22.1\r\n"),
            Some(HTTP)
        );
    }

    #[test]
    fn every_method_and_target_form() {
        for line in [
            &b"POST /api/v1/orders HTTP/1.1\r\n"[..],
            b"PUT /k HTTP/1.1\r\n",
            b"PATCH /k HTTP/1.1\r\n",
            b"HEAD / HTTP/1.0\r\n",
            b"DELETE /k/1 HTTP/1.1\r\n",
            b"OPTIONS * HTTP/1.1\r\n",
            b"CONNECT ledger.internal:443 HTTP/1.1\r\n",
            b"TRACE / HTTP/1.1\r\n",
            b"GET http://proxy.example/ HTTP/1.1\r\n",
        ] {
            assert_eq!(
                detect(line),
                Some(HTTP),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn look_alikes_are_not_http() {
        assert_eq!(detect(b"GET"), None);
        assert_eq!(detect(b"GET "), None, "no target byte yet");
        assert_eq!(detect(b"GETS /x"), None);
        assert_eq!(detect(b"GET  /double-space"), None);
        assert_eq!(detect(b"get / HTTP/1.1\r\n"), None);
        assert_eq!(detect(b"HTTP/2.0 200 OK\r\n"), None);
        assert_eq!(detect(b"HTTP/1.1 2x0 OK\r\n"), None);
        assert_eq!(detect(b"HTTP/1.1 200"), Some(HTTP));
        assert_eq!(
            detect(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            None,
            "h2c preface is not HTTP/1.x"
        );
    }
}
