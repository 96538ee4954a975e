//! Frames of a decrypted Initial packet (RFC 9000 section 19) and the CRYPTO stream they carry.
//!
//! An Initial packet may only hold PADDING, PING, ACK, CRYPTO and CONNECTION_CLOSE (RFC 9000
//! section 12.4). Reading stops at anything else: after a frame we cannot size, nothing that
//! follows can be found. Google's T05x versions number and encode some of these frames the
//! Google QUIC way, see [`read_google_frame`].

use super::packet::Cursor;
use super::version::Family;

const PADDING: u64 = 0x00;
const PING: u64 = 0x01;
const ACK: u64 = 0x02;
const ACK_ECN: u64 = 0x03;
const CRYPTO: u64 = 0x06;
const CONNECTION_CLOSE: u64 = 0x1c;
const CONNECTION_CLOSE_APP: u64 = 0x1d;

/// CRYPTO stream bytes kept per direction: a ClientHello with a post-quantum key share and
/// Encrypted Client Hello fits in 3 KB, a ServerHello in a few hundred bytes.
pub(super) const MAX_CRYPTO: usize = 16 * 1024;
/// Frames read per packet, runs of PADDING not counted. Chrome splits its ClientHello into a
/// dozen or so CRYPTO frames interleaved with PING and PADDING; a packet holds 1,200 bytes.
const MAX_FRAMES: usize = 256;

/// Reads the frames of one decrypted Initial payload into `stream`.
pub(super) fn read_frames(payload: &[u8], family: Family, stream: &mut CryptoStream) {
    let mut r = Cursor::new(payload);
    let mut frames = 0;
    while frames < MAX_FRAMES && !r.rest().is_empty() {
        // Google QUIC frame types are one byte: 0x40 and up are ACKs, not two-byte varints.
        let ty = match family {
            Family::V1 | Family::V2 => r.varint(),
            Family::Google => r.u8().map(u64::from),
        };
        let Some(ty) = ty else {
            return;
        };
        if ty == PADDING {
            let zeros = r.rest().iter().take_while(|&&b| b == 0).count();
            r.take(zeros);
            continue;
        }
        let read = match family {
            Family::V1 | Family::V2 => read_frame(&mut r, ty, stream),
            Family::Google => read_google_frame(&mut r, ty, stream),
        };
        if read.is_none() {
            return;
        }
        frames += 1;
    }
}

/// One frame after its type; `None` for a frame that does not belong in an Initial packet or
/// does not parse.
fn read_frame(r: &mut Cursor<'_>, ty: u64, stream: &mut CryptoStream) -> Option<()> {
    match ty {
        PING => {}
        ACK | ACK_ECN => {
            // Largest acknowledged, ACK delay, then the ranges.
            r.varint()?;
            r.varint()?;
            let ranges = r.varint()?;
            r.varint()?;
            // Each range takes at least two bytes, so a forged count runs out of payload fast.
            for _ in 0..ranges {
                r.varint()?;
                r.varint()?;
            }
            if ty == ACK_ECN {
                for _ in 0..3 {
                    r.varint()?;
                }
            }
        }
        CRYPTO => {
            let offset = r.varint()?;
            let len = r.varint_usize()?;
            stream.insert(offset, r.take(len)?);
        }
        CONNECTION_CLOSE | CONNECTION_CLOSE_APP => {
            r.varint()?;
            if ty == CONNECTION_CLOSE {
                // The type of the frame that caused the error.
                r.varint()?;
            }
            let reason_len = r.varint_usize()?;
            r.take(reason_len)?;
        }
        _ => return None,
    }
    Some(())
}

/// Google QUIC frame types, as Chrome's T050 and T051 put them in Initial packets: the CRYPTO
/// frame is IETF-shaped under type 0x08, PING is 0x07, and ACK is Google's (Chromium's
/// `QuicFramer::ProcessAckFrame`): type bits `01nullmm`, a largest-acked number of `ll` and block
/// lengths of `mm` (1, 2, 4 or 6 bytes), a 16-bit delay, blocks if `n`, then timestamps.
fn read_google_frame(r: &mut Cursor<'_>, ty: u64, stream: &mut CryptoStream) -> Option<()> {
    const GOOGLE_PING: u64 = 0x07;
    const GOOGLE_CRYPTO: u64 = 0x08;
    let width = |bits: u64| {
        [1, 2, 4, 6]
            .get(usize::try_from(bits & 0x03).ok()?)
            .copied()
    };
    match ty {
        GOOGLE_PING => {}
        GOOGLE_CRYPTO => {
            let offset = r.varint()?;
            let len = r.varint_usize()?;
            stream.insert(offset, r.take(len)?);
        }
        0x40..=0x7f => {
            let block = width(ty)?;
            r.take(width(ty >> 2)?)?;
            r.take(2)?;
            let blocks = if ty & 0x20 != 0 { r.u8()? } else { 0 };
            r.take(block)?;
            for _ in 0..blocks {
                r.take(1 + block)?;
            }
            let timestamps = r.u8()?;
            if timestamps > 0 {
                r.take(1 + 4)?;
                for _ in 1..timestamps {
                    r.take(1 + 2)?;
                }
            }
        }
        _ => return None,
    }
    Some(())
}

/// The Initial-level CRYPTO stream of one direction, rebuilt by offset: clients send CRYPTO
/// frames out of order and spread over packets and datagrams (Chrome does so on purpose, to
/// keep middleboxes from relying on the ClientHello being in one piece), and retransmit them.
/// Bytes past [`MAX_CRYPTO`] are dropped.
#[derive(Debug, Default)]
pub(super) struct CryptoStream {
    bytes: Vec<u8>,
    filled: Vec<bool>,
}

impl CryptoStream {
    pub(super) fn insert(&mut self, offset: u64, data: &[u8]) {
        let Ok(start) = usize::try_from(offset) else {
            return;
        };
        if start >= MAX_CRYPTO {
            return;
        }
        let end = start.saturating_add(data.len()).min(MAX_CRYPTO);
        if end > self.bytes.len() {
            self.bytes.resize(end, 0);
            self.filled.resize(end, false);
        }
        if let (Some(dst), Some(src), Some(filled)) = (
            self.bytes.get_mut(start..end),
            data.get(..end - start),
            self.filled.get_mut(start..end),
        ) {
            dst.copy_from_slice(src);
            filled.fill(true);
        }
    }

    /// The bytes from offset 0 up to the first gap: what a TLS stack would have received.
    pub(super) fn prefix(&self) -> &[u8] {
        let n = self.filled.iter().take_while(|&&f| f).count();
        self.bytes.get(..n).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypto_frames_in_any_order() {
        let mut payload = vec![0x01, 0x00, 0x00];
        // Offset 4 first, then 0, then a retransmission of 2..6, with PING and PADDING between.
        payload.extend([CRYPTO as u8, 4, 3, b'e', b'f', b'g', 0x01]);
        payload.extend([CRYPTO as u8, 0x40, 0x00, 2, b'a', b'b', 0, 0, 0]);
        payload.extend([0x02, 9, 0, 1, 0, 3, 1]);
        payload.extend([CRYPTO as u8, 2, 4, b'c', b'd', b'e', b'f']);
        let mut stream = CryptoStream::default();
        read_frames(&payload, Family::V1, &mut stream);
        assert_eq!(stream.prefix(), b"abcdefg");
    }

    #[test]
    fn a_gap_ends_the_prefix() {
        let mut stream = CryptoStream::default();
        stream.insert(0, b"ab");
        stream.insert(3, b"de");
        assert_eq!(stream.prefix(), b"ab");
        stream.insert(2, b"c");
        assert_eq!(stream.prefix(), b"abcde");
        stream.insert(u64::MAX, b"x");
        stream.insert((MAX_CRYPTO - 1) as u64, b"yz");
        assert_eq!(stream.bytes.len(), MAX_CRYPTO);
        assert_eq!(stream.prefix(), b"abcde");
    }

    #[test]
    fn reading_stops_at_frames_an_initial_cannot_hold() {
        let mut stream = CryptoStream::default();
        // A STREAM frame (0x08), then a CRYPTO frame that is never reached.
        read_frames(
            &[0x08, 0, 1, b'x', CRYPTO as u8, 0, 1, b'a'],
            Family::V1,
            &mut stream,
        );
        assert_eq!(stream.prefix(), b"");
        // CONNECTION_CLOSE is read past.
        read_frames(
            &[0x1c, 0x01, 0x06, 2, b'n', b'o', CRYPTO as u8, 0, 1, b'a'],
            Family::V1,
            &mut stream,
        );
        assert_eq!(stream.prefix(), b"a");
        // A CRYPTO frame longer than the payload, and an ACK with a forged range count.
        let mut stream = CryptoStream::default();
        read_frames(
            &[CRYPTO as u8, 0, 0x50, 0x00, b'a'],
            Family::V1,
            &mut stream,
        );
        read_frames(
            &[0x02, 0, 0, 0xbf, 0xff, 0xff, 0xff, 0],
            Family::V1,
            &mut stream,
        );
        assert_eq!(stream.prefix(), b"");
    }

    #[test]
    fn google_frames() {
        // The start of a T051 server's Initial (quic_t51.pcap): ACK 0x40, then CRYPTO 0x08.
        let mut stream = CryptoStream::default();
        let payload = [
            0x40, 0x01, 0x00, 0x00, 0x01, 0x00, 0x08, 0x00, 0x02, b'h', b'i', 0x07,
        ];
        read_frames(&payload, Family::Google, &mut stream);
        assert_eq!(stream.prefix(), b"hi");
        // An ACK with blocks of 2 bytes, two more blocks and two timestamps: 0x40 | n | mm=01.
        let mut stream = CryptoStream::default();
        let mut payload = vec![0x61, 9, 0, 0, 2, 0, 1, 1, 0, 2, 1, 0, 3];
        payload.extend([2, 1, 0, 0, 0, 0, 1, 0, 0]);
        payload.extend([0x08, 0x00, 0x01, b'x']);
        read_frames(&payload, Family::Google, &mut stream);
        assert_eq!(stream.prefix(), b"x");
        // The IETF CRYPTO type means something else there.
        let mut stream = CryptoStream::default();
        read_frames(&[CRYPTO as u8, 0, 1, b'a'], Family::Google, &mut stream);
        assert_eq!(stream.prefix(), b"");
    }
}
