//! Reading the kernel's ring buffer: decode each record and hand it to the main loop over a
//! bounded channel. When user space falls behind, the ring fills and the kernel counts what it
//! could not queue (`notices_lost`, `samples_lost`); nothing is dropped silently here.

use std::os::fd::AsRawFd;

use aya::maps::{MapData, RingBuf};
use sealwatch_common::{
    event::{
        FlowNotice, KIND_CLOSE, KIND_DROP, KIND_RESAMPLE, KIND_SAMPLE, KIND_VERDICT, PayloadSample,
        SAMPLE_HEADER_LEN,
    },
    flow::FlowKey,
};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::mpsc,
    task::JoinHandle,
};
use tracing::warn;

/// A decoded ring-buffer record.
#[derive(Debug)]
pub enum KernelEvent {
    Notice(FlowNotice),
    Sample(Sample),
    /// The first bytes of a later packet of a flow judged encrypted (`KIND_RESAMPLE`).
    Resample(Sample),
}

/// A payload sample: some first bytes of one packet of one side of a flow. Owned when it comes
/// from the kernel's ring; `analyze` lends the bytes of the captured frame instead (`&[u8]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample<D = Vec<u8>> {
    pub key: FlowKey,
    pub side: u8,
    pub ifindex: u32,
    /// TCP sequence number of the first byte (0 for other transports).
    pub seq: u32,
    /// Bytes of this side sampled before this packet.
    pub offset: u32,
    pub ts_ns: u64,
    /// The packet's whole L4 payload length; `data` may hold fewer bytes.
    pub payload_len: u32,
    pub data: D,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty ring-buffer record")]
    Empty,
    #[error("record kind {kind} is {len} bytes, expected {expected}")]
    Size {
        kind: u8,
        len: usize,
        expected: usize,
    },
    #[error("unknown record kind {0}")]
    Kind(u8),
}

/// Decodes one record (copied out, since the ring slot is released after the call).
pub fn decode(record: &[u8]) -> Result<KernelEvent, DecodeError> {
    let kind = *record.first().ok_or(DecodeError::Empty)?;
    match kind {
        KIND_VERDICT | KIND_CLOSE | KIND_DROP => {
            read_record::<FlowNotice>(kind, record).map(KernelEvent::Notice)
        }
        KIND_SAMPLE => decode_sample(kind, record).map(KernelEvent::Sample),
        KIND_RESAMPLE => decode_sample(kind, record).map(KernelEvent::Resample),
        other => Err(DecodeError::Kind(other)),
    }
}

/// Sample records are a [`PayloadSample`] header followed by only the captured bytes.
fn decode_sample(kind: u8, record: &[u8]) -> Result<Sample, DecodeError> {
    let short = DecodeError::Size {
        kind,
        len: record.len(),
        expected: SAMPLE_HEADER_LEN,
    };
    if record.len() < SAMPLE_HEADER_LEN {
        return Err(short);
    }
    let mut header = std::mem::MaybeUninit::<PayloadSample>::zeroed();
    // SAFETY: copies the header bytes (checked present) into a zeroed PayloadSample, a repr(C)
    // struct of integers for which any bit pattern is valid.
    let h = unsafe {
        std::ptr::copy_nonoverlapping(
            record.as_ptr(),
            header.as_mut_ptr().cast::<u8>(),
            SAMPLE_HEADER_LEN,
        );
        header.assume_init()
    };
    let data = record
        .get(SAMPLE_HEADER_LEN..SAMPLE_HEADER_LEN + h.captured as usize)
        .ok_or(DecodeError::Size {
            kind,
            len: record.len(),
            expected: SAMPLE_HEADER_LEN + h.captured as usize,
        })?;
    Ok(Sample {
        key: h.key,
        side: h.side,
        ifindex: h.ifindex,
        seq: h.seq,
        offset: h.offset,
        ts_ns: h.ts_ns,
        payload_len: h.payload_len,
        data: data.to_vec(),
    })
}

fn read_record<T: Copy>(kind: u8, record: &[u8]) -> Result<T, DecodeError> {
    let expected = size_of::<T>();
    if record.len() < expected {
        return Err(DecodeError::Size {
            kind,
            len: record.len(),
            expected,
        });
    }
    // SAFETY: the record holds at least size_of::<T>() bytes written by the kernel as a T, and
    // T is a repr(C) struct of integers (any bit pattern is valid); read_unaligned copes with
    // the ring's 8-byte alignment.
    Ok(unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<T>()) })
}

/// Spawns the reader task. It ends when the receiver is dropped.
pub fn spawn_reader(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<KernelEvent>,
) -> std::io::Result<JoinHandle<()>> {
    let mut fd = readable(ring)?;
    Ok(tokio::spawn(async move {
        let mut bad_records = 0u64;
        loop {
            let mut guard = match fd.readable_mut().await {
                Ok(g) => g,
                Err(e) => {
                    warn!(error = %e, "ring buffer poll failed; stopping the reader");
                    return;
                }
            };
            let ring = guard.get_inner_mut();
            while let Some(record) = ring.next() {
                match decode(&record) {
                    Ok(event) => {
                        drop(record);
                        if tx.send(event).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        bad_records += 1;
                        if bad_records == 1 {
                            warn!(error = %e, "undecodable ring-buffer record (further ones counted)");
                        }
                    }
                }
            }
            guard.clear_ready();
        }
    }))
}

fn readable<T: AsRawFd>(inner: T) -> std::io::Result<AsyncFd<T>> {
    // SAFETY: `inner` owns its fd and keeps it open for as long as the AsyncFd holds it.
    unsafe { AsyncFd::register_with_interest(inner, Interest::READABLE) }
        .map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use sealwatch_common::flow::FlowKey;

    use super::*;

    fn notice_bytes(kind: u8) -> Vec<u8> {
        let n = FlowNotice {
            kind,
            hook: 1,
            side: 1,
            protocol: 3,
            encryption: 1,
            client_side: 1,
            action: 0,
            rule: 0,
            ifindex: 7,
            _pad2: 0,
            ts_ns: 42,
            key: FlowKey {
                port_lo: 80,
                port_hi: 40000,
                proto: 6,
                family: 4,
                ..Default::default()
            },
        };
        // SAFETY: FlowNotice is repr(C) plain data without implicit padding.
        unsafe {
            std::slice::from_raw_parts(
                (&n as *const FlowNotice).cast::<u8>(),
                size_of::<FlowNotice>(),
            )
        }
        .to_vec()
    }

    #[test]
    fn decodes_every_notice_kind() {
        for kind in [KIND_VERDICT, KIND_CLOSE, KIND_DROP] {
            let Ok(KernelEvent::Notice(n)) = decode(&notice_bytes(kind)) else {
                panic!("kind {kind} not decoded as a notice");
            };
            assert_eq!(
                (n.kind, n.ifindex, n.ts_ns, n.key.port_hi),
                (kind, 7, 42, 40000)
            );
        }
    }

    #[test]
    fn rejects_short_empty_and_unknown_records() {
        let bytes = notice_bytes(KIND_CLOSE);
        assert!(matches!(
            decode(&bytes[..10]),
            Err(DecodeError::Size { .. })
        ));
        assert!(matches!(decode(&[]), Err(DecodeError::Empty)));
        assert!(matches!(decode(&[99, 0, 0]), Err(DecodeError::Kind(99))));
        assert!(matches!(
            decode(&[KIND_SAMPLE; 60]),
            Err(DecodeError::Size { .. })
        ));
    }

    #[test]
    fn samples_carry_only_their_captured_bytes() {
        let mut record = vec![0u8; SAMPLE_HEADER_LEN];
        record[0] = KIND_SAMPLE;
        record[2] = 1; // side
        let captured = std::mem::offset_of!(PayloadSample, captured);
        record[captured..captured + 4].copy_from_slice(&5u32.to_ne_bytes());
        // The ring pads records to 8 bytes: trailing bytes past `captured` are ignored.
        record.extend_from_slice(b"hello\0\0\0");
        let Ok(KernelEvent::Sample(s)) = decode(&record) else {
            panic!("not decoded as a sample");
        };
        assert_eq!((s.side, s.data.as_slice()), (1, &b"hello"[..]));
        // A header claiming more bytes than the record holds is an error, not a short read.
        record[captured..captured + 4].copy_from_slice(&500u32.to_ne_bytes());
        assert!(matches!(decode(&record), Err(DecodeError::Size { .. })));
    }
}
