//! Long-header packets of a UDP datagram (RFC 9000 section 17.2). A datagram may hold several
//! coalesced packets (an Initial, then a Handshake, then a 1-RTT one is the usual server
//! flight); each long header says how long it is, a short header runs to the datagram's end.

use super::protection::Protected;
use super::version::{PacketType, Version};

/// Longest connection ID QUIC v1 and v2 allow (RFC 9000 section 17.2); longer ones are only
/// legal in versions we cannot open anyway.
const MAX_CID_LEN: usize = 20;

/// A bounds-checked reader over a packet or a payload.
pub(super) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    pub(super) fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    /// A variable-length integer (RFC 9000 section 16): the top two bits of the first byte give
    /// its length, 1, 2, 4 or 8 bytes.
    pub(super) fn varint(&mut self) -> Option<u64> {
        let first = self.u8()?;
        let extra = (1usize << (first >> 6)) - 1;
        let mut value = u64::from(first & 0x3f);
        for &b in self.take(extra)? {
            value = (value << 8) | u64::from(b);
        }
        Some(value)
    }

    /// A varint that is a length or an offset within this process's memory.
    pub(super) fn varint_usize(&mut self) -> Option<usize> {
        usize::try_from(self.varint()?).ok()
    }
}

/// An Initial packet found in a datagram.
#[derive(Debug, Clone, Copy)]
pub(super) struct Initial<'a> {
    pub(super) version: Version,
    pub(super) dcid: &'a [u8],
    pub(super) packet: Protected<'a>,
}

/// The Initial packets of one datagram, in order. Other long-header packets are stepped over;
/// the walk ends at a short header, a Retry, a Version Negotiation packet, a version we do not
/// know, or a packet the datagram cuts: none of them says where a next packet would start.
pub(super) struct Initials<'a> {
    rest: &'a [u8],
}

impl<'a> Initials<'a> {
    pub(super) fn new(datagram: &'a [u8]) -> Self {
        Initials { rest: datagram }
    }

    /// The next long-header packet and its type; `None` where the walk ends.
    fn next_packet(&mut self) -> Option<(PacketType, Initial<'a>)> {
        let mut r = Cursor::new(self.rest);
        let first = r.u8()?;
        if first & 0x80 == 0 {
            return None;
        }
        let wire = u32::from_be_bytes(r.take(4)?.try_into().ok()?);
        let version = Version::from_wire(wire)?;
        let dcid_len = usize::from(r.u8()?);
        if dcid_len > MAX_CID_LEN {
            return None;
        }
        let dcid = r.take(dcid_len)?;
        let scid_len = usize::from(r.u8()?);
        if scid_len > MAX_CID_LEN {
            return None;
        }
        r.take(scid_len)?;
        let ty = version.packet_type(first);
        match ty {
            PacketType::Retry => return None,
            PacketType::Initial => {
                let token_len = r.varint_usize()?;
                r.take(token_len)?;
            }
            PacketType::ZeroRtt | PacketType::Handshake => {}
        }
        let length = r.varint_usize()?;
        let pn_offset = r.pos();
        let end = pn_offset.checked_add(length)?;
        let bytes = self.rest.get(..end)?;
        self.rest = self.rest.get(end..)?;
        let packet = Protected { bytes, pn_offset };
        Some((
            ty,
            Initial {
                version,
                dcid,
                packet,
            },
        ))
    }
}

impl<'a> Iterator for Initials<'a> {
    type Item = Initial<'a>;

    fn next(&mut self) -> Option<Initial<'a>> {
        // Each step consumes at least a header, so this ends within the datagram.
        loop {
            match self.next_packet() {
                Some((PacketType::Initial, initial)) => return Some(initial),
                Some(_) => continue,
                None => {
                    self.rest = &[];
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        // RFC 9000 appendix A.1's examples.
        for (bytes, value) in [
            (
                &b"\xc2\x19\x7c\x5e\xff\x14\xe8\x8c"[..],
                151_288_809_941_952_652,
            ),
            (b"\x9d\x7f\x3e\x7d", 494_878_333),
            (b"\x7b\xbd", 15_293),
            (b"\x25", 37),
            (b"\x40\x25", 37),
        ] {
            assert_eq!(Cursor::new(bytes).varint(), Some(value));
        }
        assert_eq!(Cursor::new(b"\x7b").varint(), None);
        assert_eq!(Cursor::new(b"").varint(), None);
    }

    fn long(first: u8, version: u32, dcid: &[u8], token: &[u8], body_len: usize) -> Vec<u8> {
        let mut p = vec![first];
        p.extend_from_slice(&version.to_be_bytes());
        p.push(u8::try_from(dcid.len()).unwrap());
        p.extend_from_slice(dcid);
        p.push(0);
        if first & 0x30 == 0 {
            p.push(u8::try_from(token.len()).unwrap());
            p.extend_from_slice(token);
        }
        p.extend_from_slice(&(0x4000 | u16::try_from(body_len).unwrap()).to_be_bytes());
        p.extend(std::iter::repeat_n(0xaa, body_len));
        p
    }

    #[test]
    fn coalesced_packets() {
        let mut datagram = long(0xc0, 1, b"abcd", b"tok", 40);
        datagram.extend(long(0xe0, 1, b"abcd", b"", 30));
        datagram.extend(long(0xc0, 1, b"wxyz", b"", 50));
        datagram.extend([0x40, 1, 2, 3]);
        let found: Vec<(&[u8], usize)> = Initials::new(&datagram)
            .map(|i| (i.dcid, i.packet.bytes.len()))
            .collect();
        assert_eq!(found, [(&b"abcd"[..], 57), (&b"wxyz"[..], 64)]);
        // A cut packet ends the walk.
        let cut = &datagram[..datagram.len() - 10 - 4];
        assert_eq!(Initials::new(cut).count(), 1);
        // Unknown version, Version Negotiation, Retry and short headers end it too.
        assert_eq!(
            Initials::new(&long(0xc0, 0x0a0a_0a0a, b"a", b"", 20)).count(),
            0
        );
        assert_eq!(Initials::new(&long(0xc0, 0, b"a", b"", 20)).count(), 0);
        assert_eq!(Initials::new(&long(0xf0, 1, b"a", b"", 20)).count(), 0);
        assert_eq!(Initials::new(&[0x40; 30]).count(), 0);
        // Connection IDs longer than v1 allows.
        assert_eq!(Initials::new(&long(0xc0, 1, &[7; 21], b"", 20)).count(), 0);
    }
}
