//! The first bytes of each side of a flow, rebuilt from payload samples: TCP in sequence order
//! (retransmissions, reordering and lost samples handled), datagrams one by one. Deep parsing
//! (TLS handshakes, STARTTLS) reads these instead of single packets, so a ClientHello split
//! over two segments reads as one.

use crate::{deep::SideMemo, events::Sample};

/// Out-of-order TCP segments kept while waiting for the gap before them to fill.
const MAX_HELD_SEGMENTS: usize = 8;
/// Datagrams kept per side (a STUN exchange before DTLS takes a few).
const MAX_DATAGRAMS: usize = 16;

/// One side of a flow.
#[derive(Debug, Default, Clone)]
pub struct SideStream {
    /// TCP: the stream's first bytes, contiguous from the first sampled byte. Other
    /// transports: the datagrams' bytes back to back (see `datagrams`).
    bytes: Vec<u8>,
    /// Where each datagram starts and ends in `bytes` (not TCP).
    datagrams: Vec<(usize, usize)>,
    /// Sequence number of `bytes[0]` (TCP).
    base_seq: Option<u32>,
    held: Vec<(usize, Vec<u8>)>,
    /// Payload bytes the kernel counted as sampled for this side (its budget is spent when
    /// this reaches the sample size).
    sampled: u64,
    /// A packet was cut short (its tail was not sampled): nothing after it is contiguous.
    cut: bool,
    /// Payload length of the side's first sampled packet.
    first_len: u32,
    /// What deep parsing concluded from these bytes so far.
    memo: SideMemo,
}

impl SideStream {
    /// The contiguous first bytes (TCP) or all datagrams' bytes back to back.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Each datagram's bytes, in arrival order (empty for TCP).
    pub fn datagrams(&self) -> impl Iterator<Item = &[u8]> {
        self.datagrams
            .iter()
            .filter_map(|&(start, end)| self.bytes.get(start..end))
    }

    pub fn memo(&self) -> &SideMemo {
        &self.memo
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The side's first message as the kernel classified it: the first datagram, or for TCP the
    /// first packet's payload (its length, and the bytes of it we have).
    pub fn first_message(&self) -> Option<(u32, &[u8])> {
        match self.datagrams().next() {
            Some(d) => Some((d.len() as u32, d)),
            None => self.first_packet(),
        }
    }

    /// The side's first packet's payload: its length, and the bytes of it we have.
    pub fn first_packet(&self) -> Option<(u32, &[u8])> {
        if self.bytes.is_empty() {
            return None;
        }
        let have = (self.first_len as usize).min(self.bytes.len());
        Some((self.first_len, &self.bytes[..have]))
    }

    /// Whether more bytes of this side may still arrive within `budget` sampled bytes.
    pub fn may_grow(&self, budget: u64) -> bool {
        !self.cut && self.sampled < budget
    }

    fn add<D: AsRef<[u8]>>(&mut self, tcp: bool, s: &Sample<D>) {
        self.sampled = self
            .sampled
            .max(u64::from(s.offset) + u64::from(s.payload_len));
        if s.offset == 0 {
            self.first_len = s.payload_len;
        }
        let data = s.data.as_ref();
        if !tcp {
            if self.datagrams.len() < MAX_DATAGRAMS {
                let start = self.bytes.len();
                self.bytes.extend_from_slice(data);
                self.datagrams.push((start, self.bytes.len()));
            }
            return;
        }
        let base = *self.base_seq.get_or_insert(s.seq);
        // Segments before the first sampled byte wrap to huge offsets and are dropped.
        let pos = s.seq.wrapping_sub(base) as usize;
        if pos > u32::MAX as usize / 2 {
            return;
        }
        let whole = data.len() as u32 == s.payload_len;
        if pos <= self.bytes.len() {
            self.append(pos, data, whole);
            self.drain_held();
        } else if self.held.len() < MAX_HELD_SEGMENTS && whole {
            self.held.push((pos, data.to_vec()));
        }
    }

    fn append(&mut self, pos: usize, data: &[u8], whole: bool) {
        if self.cut {
            return;
        }
        let end = pos + data.len();
        if end > self.bytes.len() {
            self.bytes
                .extend_from_slice(&data[self.bytes.len() - pos..]);
        }
        if !whole {
            self.cut = true;
        }
    }

    fn drain_held(&mut self) {
        while let Some(i) = self.held.iter().position(|(p, _)| *p <= self.bytes.len()) {
            let (pos, data) = self.held.swap_remove(i);
            self.append(pos, &data, true);
        }
    }
}

/// Both sides of a flow, indexed by the flow key's side (not client/server).
#[derive(Debug, Default, Clone)]
pub struct Streams {
    pub sides: [SideStream; 2],
    tcp: bool,
}

impl Streams {
    pub fn new(tcp: bool) -> Streams {
        Streams {
            tcp,
            ..Streams::default()
        }
    }

    pub fn add<D: AsRef<[u8]>>(&mut self, s: &Sample<D>) {
        let tcp = self.tcp;
        self.sides[usize::from(s.side & 1)].add(tcp, s);
    }

    pub fn side(&self, side: u8) -> &SideStream {
        &self.sides[usize::from(side & 1)]
    }
}

#[cfg(test)]
mod tests {
    use sealwatch_common::flow::FlowKey;

    use super::*;

    fn seg(seq: u32, offset: u32, data: &[u8]) -> Sample {
        Sample {
            key: FlowKey::default(),
            side: 1,
            ifindex: 0,
            seq,
            offset,
            ts_ns: 0,
            payload_len: data.len() as u32,
            data: data.to_vec(),
        }
    }

    #[test]
    fn tcp_segments_join_in_sequence_order() {
        let mut s = Streams::new(true);
        s.add(&seg(1000, 0, b"hello "));
        // Out of order: "there" arrives before "big ".
        s.add(&seg(1010, 6, b"there"));
        s.add(&seg(1006, 11, b"big "));
        // A retransmission overlapping what we have, with a little more.
        s.add(&seg(1008, 15, b"g there!"));
        // A segment from before the first one sampled.
        s.add(&seg(990, 23, b"0123456789"));
        assert_eq!(s.side(1).bytes(), b"hello big there!");
        assert!(s.side(0).is_empty());
        assert!(s.side(1).may_grow(2048));
        assert!(!s.side(1).may_grow(20));
    }

    #[test]
    fn a_cut_packet_ends_the_contiguous_bytes() {
        let mut s = Streams::new(true);
        let mut cut = seg(1, 0, b"abcd");
        cut.payload_len = 1400;
        s.add(&cut);
        s.add(&seg(1401, 1400, b"later"));
        assert_eq!(s.side(1).bytes(), b"abcd");
        assert!(!s.side(1).may_grow(u64::MAX));
    }

    #[test]
    fn datagrams_stay_apart() {
        let mut s = Streams::new(false);
        s.add(&seg(0, 0, b"one"));
        s.add(&seg(0, 3, b"two!"));
        let d: Vec<&[u8]> = s.side(1).datagrams().collect();
        assert_eq!(d, [&b"one"[..], &b"two!"[..]]);
        assert_eq!(s.side(1).bytes(), b"onetwo!");
    }
}
