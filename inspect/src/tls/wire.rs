//! A bounds-checked big-endian reader, and the list shapes TLS hellos are made of.
//!
//! Samples are usually cut somewhere in the middle of a handshake, so every read returns
//! `None` instead of failing hard, and the `*_up_to` reads hand back what is there.

/// Cursor over a byte slice; never panics, never reads past the end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(b)
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u24(&mut self) -> Option<usize> {
        let b = self.take(3)?;
        Some(usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }

    /// Exactly `n` bytes, or `None` (and nothing consumed) when fewer are left.
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    /// Up to `n` bytes: the whole field when it is there, else the part the sample holds.
    /// The flag says whether the field was whole.
    pub(crate) fn take_up_to(&mut self, n: usize) -> (&'a [u8], bool) {
        let n_avail = n.min(self.buf.len());
        let (head, rest) = self.buf.split_at(n_avail);
        self.buf = rest;
        (head, n_avail == n)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    /// A vector with a one-byte length, possibly cut short.
    pub(crate) fn vec8_up_to(&mut self) -> Option<(&'a [u8], bool)> {
        let n = self.u8()?;
        Some(self.take_up_to(usize::from(n)))
    }

    /// A vector with a two-byte length, possibly cut short.
    pub(crate) fn vec16_up_to(&mut self) -> Option<(&'a [u8], bool)> {
        let n = self.u16()?;
        Some(self.take_up_to(usize::from(n)))
    }
}

/// A list of 16-bit code points (cipher suites, groups, versions, signature schemes) as it sits
/// on the wire; an odd trailing byte, left by a cut, is ignored.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct U16List<'a>(&'a [u8]);

impl<'a> U16List<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = u16> + 'a {
        self.0
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.len() < 2
    }
}

/// GREASE values (RFC 8701): `0x?a?a` with both bytes equal. Clients sprinkle them into every
/// list to keep servers tolerant; they carry no meaning and every fingerprint drops them.
pub(crate) fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_never_reads_past_the_end() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16(), Some(0x0102));
        assert_eq!(r.u16(), None);
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.take_up_to(5), (&[3u8][..], false));
        assert!(r.is_empty());
        assert_eq!(r.u8(), None);
        assert_eq!(r.u24(), None);
    }

    #[test]
    fn cut_vectors_are_returned_partially() {
        let mut r = Reader::new(&[0, 4, 0xaa, 0xbb, 0xcc]);
        assert_eq!(r.vec16_up_to(), Some((&[0xaa, 0xbb, 0xcc][..], false)));
        let list = U16List::new(&[0x13, 0x01, 0x13]);
        assert_eq!(list.iter().collect::<Vec<_>>(), [0x1301]);
    }

    #[test]
    fn grease() {
        assert!(is_grease(0x0a0a));
        assert!(is_grease(0xfafa));
        assert!(!is_grease(0x0a1a));
        assert!(!is_grease(0x1301));
    }
}
