//! From a direction's stream (TLS over TCP) or datagrams (DTLS) to its handshake messages.
//!
//! A hello may be split over several records (and DTLS fragments); we join the handshake
//! records' payloads into one byte stream, borrowing the input when a single record holds it
//! all, and then walk the messages in it.

use std::borrow::Cow;

use tls_parser::{parse_dtls_record_header, parse_tls_record_header};

use super::wire::Reader;

const RECORD_CHANGE_CIPHER_SPEC: u8 = 20;
const RECORD_HANDSHAKE: u8 = 22;
const TLS_RECORD_HEADER_LEN: usize = 5;
const DTLS_HANDSHAKE_HEADER_LEN: usize = 12;

/// SSL 2.0 message types (RFC 6101 appendix E / the SSL 2.0 draft).
const SSL2_CLIENT_HELLO: u8 = 1;
const SSL2_SERVER_HELLO: u8 = 4;
/// The shortest SSL 2.0 CLIENT-HELLO body: version and three lengths.
const SSL2_CLIENT_HELLO_MIN: usize = 8;

/// The handshake-layer bytes of one direction, as far as the sample goes.
#[derive(Debug, Default)]
pub(crate) struct HandshakeStream<'a> {
    pub(crate) bytes: Cow<'a, [u8]>,
    /// Where in `bytes` the first ChangeCipherSpec record stood: handshake records after it are
    /// encrypted (TLS 1.2) unless it was TLS 1.3's middlebox-compatibility one.
    pub(crate) ccs_at: Option<usize>,
}

impl<'a> HandshakeStream<'a> {
    fn append(&mut self, part: &'a [u8]) {
        if self.bytes.is_empty() {
            self.bytes = Cow::Borrowed(part);
        } else {
            self.bytes.to_mut().extend_from_slice(part);
        }
    }
}

/// How a direction's stream begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// A TLS/SSL 3.0 handshake record.
    Handshake,
    /// An SSL 2.0-format CLIENT-HELLO.
    Sslv2ClientHello,
    /// An SSL 2.0 SERVER-HELLO.
    Sslv2ServerHello,
}

/// What the first bytes of a TCP stream are, if a TLS or SSL handshake.
pub(crate) fn stream_start(stream: &[u8]) -> Option<Start> {
    let [b0, b1, b2, ..] = *stream else {
        return None;
    };
    if b0 == RECORD_HANDSHAKE && b1 == 3 && b2 <= 4 && stream.len() >= TLS_RECORD_HEADER_LEN {
        return Some(Start::Handshake);
    }
    if b0 & 0x80 != 0 {
        let len = usize::from(b0 & 0x7f) << 8 | usize::from(b1);
        let version = stream.get(3..5);
        // Versions seen in SSL 2.0-format hellos: 2.0 itself, or the highest 3.x the client
        // speaks when it only uses the format for compatibility.
        let plausible = matches!(version, Some([0, 2] | [3, 0..=4]));
        if b2 == SSL2_CLIENT_HELLO && len > SSL2_CLIENT_HELLO_MIN && plausible {
            return Some(Start::Sslv2ClientHello);
        }
        // SERVER-HELLO: session-id-hit, certificate type, then the version.
        if b2 == SSL2_SERVER_HELLO && stream.get(5..7) == Some(&[0, 2]) {
            return Some(Start::Sslv2ServerHello);
        }
    }
    None
}

/// The body of an SSL 2.0 message (after its two-byte header and type byte) and whether the
/// sample cut it.
pub(crate) fn sslv2_body(stream: &[u8]) -> (&[u8], bool) {
    let [b0, b1, ..] = *stream else {
        return (&[], true);
    };
    let len = usize::from(b0 & 0x7f) << 8 | usize::from(b1);
    let mut r = Reader::new(stream.get(3..).unwrap_or(&[]));
    let (body, whole) = r.take_up_to(len.saturating_sub(1));
    (body, !whole)
}

/// Joins the payloads of the leading handshake records of a TLS stream. Stops at the first
/// record that is neither handshake nor ChangeCipherSpec (application data, alert), at a record
/// that does not look like TLS, and after a record the sample cuts.
pub(crate) fn tls_handshake_stream(stream: &[u8]) -> HandshakeStream<'_> {
    let mut out = HandshakeStream::default();
    let mut rest = stream;
    while let Ok((after_header, header)) = parse_tls_record_header(rest) {
        if header.version.0 >> 8 != 3 {
            break;
        }
        let mut r = Reader::new(after_header);
        let (payload, whole) = r.take_up_to(usize::from(header.len));
        match header.record_type.0 {
            RECORD_HANDSHAKE => out.append(payload),
            RECORD_CHANGE_CIPHER_SPEC => {
                out.ccs_at.get_or_insert(out.bytes.len());
            }
            _ => break,
        }
        if !whole {
            break;
        }
        rest = after_header.get(payload.len()..).unwrap_or(&[]);
    }
    out
}

/// One handshake message: its type, the part of its body the sample holds, whether that is cut,
/// and where its header starts in the stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Message<'a> {
    pub(crate) msg_type: u8,
    pub(crate) body: &'a [u8],
    pub(crate) cut: bool,
    pub(crate) offset: usize,
}

/// Walks the handshake messages (type, 24-bit length, body) of a joined stream.
pub(crate) struct Messages<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Messages<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Message<'a>;

    fn next(&mut self) -> Option<Message<'a>> {
        let mut r = Reader::new(self.buf.get(self.pos..)?);
        let msg_type = r.u8()?;
        let len = r.u24()?;
        let (body, whole) = r.take_up_to(len);
        let offset = self.pos;
        // After a cut message there is nothing more to read.
        self.pos = if whole {
            self.pos + 4 + len
        } else {
            self.buf.len()
        };
        Some(Message {
            msg_type,
            body,
            cut: !whole,
            offset,
        })
    }
}

/// A DTLS handshake fragment (RFC 6347 section 4.2.2).
#[derive(Debug, Clone, Copy)]
struct Fragment<'a> {
    msg_type: u8,
    length: usize,
    message_seq: u16,
    offset: usize,
    data: &'a [u8],
}

/// Bounds the work on hostile input: a handshake has a handful of messages, each in a few
/// fragments.
const MAX_DTLS_FRAGMENTS: usize = 256;

/// Rebuilds a DTLS direction's epoch-0 handshake messages, in message_seq order, as a TLS-style
/// message stream (4-byte headers) that the TLS code can walk. Retransmitted and overlapping
/// fragments are merged; each message is kept up to the first gap, and the stream ends after
/// the first message with a gap.
pub(crate) fn dtls_handshake_stream(datagrams: &[&[u8]]) -> HandshakeStream<'static> {
    let mut fragments: Vec<Fragment<'_>> = Vec::new();
    let mut ccs_seen = false;
    'datagrams: for datagram in datagrams {
        let mut rest = *datagram;
        while let Ok((after_header, header)) = parse_dtls_record_header(rest) {
            if header.version.0 >> 8 != 0xfe {
                break;
            }
            let mut r = Reader::new(after_header);
            let (payload, whole) = r.take_up_to(usize::from(header.length));
            // Later epochs are encrypted.
            if header.epoch == 0 {
                match header.content_type.0 {
                    RECORD_HANDSHAKE if !read_fragments(payload, &mut fragments) => {
                        break 'datagrams;
                    }
                    RECORD_CHANGE_CIPHER_SPEC => ccs_seen = true,
                    _ => {}
                }
            }
            if !whole {
                break;
            }
            rest = after_header.get(payload.len()..).unwrap_or(&[]);
        }
    }
    let mut out = HandshakeStream::default();
    let mut seqs: Vec<u16> = fragments.iter().map(|f| f.message_seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    let mut bytes = Vec::new();
    for seq in seqs {
        if !append_message(&fragments, seq, &mut bytes) {
            break;
        }
    }
    if ccs_seen {
        out.ccs_at = Some(bytes.len());
    }
    out.bytes = Cow::Owned(bytes);
    out
}

/// Collects the fragments of one handshake record; false once the cap is reached.
fn read_fragments<'a>(payload: &'a [u8], out: &mut Vec<Fragment<'a>>) -> bool {
    let mut r = Reader::new(payload);
    while r.remaining() >= DTLS_HANDSHAKE_HEADER_LEN {
        if out.len() >= MAX_DTLS_FRAGMENTS {
            return false;
        }
        let header = (|| Some((r.u8()?, r.u24()?, r.u16()?, r.u24()?, r.u24()?)))();
        let Some((msg_type, length, message_seq, offset, fragment_len)) = header else {
            break;
        };
        let (data, whole) = r.take_up_to(fragment_len);
        if offset <= length {
            out.push(Fragment {
                msg_type,
                length,
                message_seq,
                offset,
                data: data.get(..length - offset).unwrap_or(data),
            });
        }
        if !whole {
            break;
        }
    }
    true
}

/// Appends message `seq` (header and the gap-free prefix of its body) to `out`; true when the
/// whole body was there.
fn append_message(fragments: &[Fragment<'_>], seq: u16, out: &mut Vec<u8>) -> bool {
    let mut parts = fragments.iter().filter(|f| f.message_seq == seq);
    let Some(first) = parts.next() else {
        return false;
    };
    let (msg_type, length) = (first.msg_type, first.length);
    let Ok(len24) = u32::try_from(length) else {
        return false;
    };
    out.push(msg_type);
    out.extend_from_slice(&len24.to_be_bytes()[1..]);
    let mut filled = 0;
    // Each pass extends the prefix by at least one fragment or stops: at most one pass per
    // fragment, over a capped fragment list.
    loop {
        let mut grew = false;
        for f in fragments
            .iter()
            .filter(|f| f.message_seq == seq && f.msg_type == msg_type && f.length == length)
        {
            let end = f.offset + f.data.len();
            if f.offset <= filled && end > filled {
                out.extend_from_slice(f.data.get(filled - f.offset..).unwrap_or(&[]));
                filled = end;
                grew = true;
            }
        }
        if !grew || filled >= length {
            break;
        }
    }
    filled >= length
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_joined_and_the_join_stops_at_application_data() {
        let stream = [
            22, 3, 1, 0, 2, 1, 0, // handshake record: 2 bytes
            22, 3, 1, 0, 3, 0, 1, 5, // handshake record: 3 bytes
            20, 3, 3, 0, 1, 1, // change cipher spec
            23, 3, 3, 0, 2, 9, 9, // application data
        ];
        let hs = tls_handshake_stream(&stream);
        assert_eq!(&*hs.bytes, &[1, 0, 0, 1, 5]);
        assert_eq!(hs.ccs_at, Some(5));
        let msgs: Vec<_> = Messages::new(&hs.bytes).collect();
        assert_eq!(msgs.len(), 1);
        assert_eq!(
            (msgs[0].msg_type, msgs[0].body, msgs[0].cut),
            (1, &[5u8][..], false)
        );
    }

    #[test]
    fn a_single_record_is_borrowed() {
        let stream = [22, 3, 1, 0, 4, 2, 0, 0, 9];
        let hs = tls_handshake_stream(&stream);
        assert!(matches!(hs.bytes, Cow::Borrowed(_)));
        let msg = Messages::new(&hs.bytes).next().expect("a message");
        assert!(msg.cut);
        assert!(msg.body.is_empty());
    }

    #[test]
    fn stream_starts() {
        assert_eq!(stream_start(&[22, 3, 1, 0, 5]), Some(Start::Handshake));
        assert_eq!(stream_start(&[22, 3, 1]), None);
        assert_eq!(stream_start(&[23, 3, 3, 0, 5]), None);
        assert_eq!(stream_start(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(
            stream_start(&[0x80, 0x2e, 1, 0, 2, 0, 0x15, 0, 0, 0, 0x10]),
            Some(Start::Sslv2ClientHello)
        );
        assert_eq!(
            stream_start(&[0x83, 0x00, 4, 0, 1, 0, 2, 3, 0]),
            Some(Start::Sslv2ServerHello)
        );
    }

    #[test]
    fn dtls_fragments_are_reassembled_out_of_order() {
        // ClientHello (type 1) of 6 bytes in two fragments, second one first, plus a
        // retransmission of the first.
        let frag = |off: u8, data: &[u8]| {
            let mut rec = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0];
            rec.push(12 + data.len() as u8);
            rec.extend_from_slice(&[1, 0, 0, 6, 0, 0, 0, 0, off, 0, 0, data.len() as u8]);
            rec.extend_from_slice(data);
            rec
        };
        let a = frag(3, &[4, 5, 6]);
        let b = frag(0, &[1, 2, 3]);
        let hs = dtls_handshake_stream(&[&a, &b, &b]);
        assert_eq!(&*hs.bytes, &[1, 0, 0, 6, 1, 2, 3, 4, 5, 6]);
        let hs = dtls_handshake_stream(&[&a]);
        assert_eq!(&*hs.bytes, &[1, 0, 0, 6]);
    }
}
