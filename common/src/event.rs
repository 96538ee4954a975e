//! Ring-buffer records from the kernel to user space. Every record starts with a `kind` byte so
//! user space can tell them apart before reading the rest.

use crate::{MAX_SAMPLE, flow::FlowKey};

/// [`FlowNotice`]: the flow reached its verdict.
pub const KIND_VERDICT: u8 = 1;
/// [`FlowNotice`]: first FIN or RST of the flow.
pub const KIND_CLOSE: u8 = 2;
/// [`PayloadSample`].
pub const KIND_SAMPLE: u8 = 3;
/// [`FlowNotice`]: enforce mode started dropping a flow after its verdict (a weak ServerHello,
/// a preamble that did not upgrade).
pub const KIND_DROP: u8 = 4;
/// [`PayloadSample`] of a later packet of a flow judged encrypted: its first
/// [`crate::CLASSIFY_WINDOW`] bytes (zero-padded; `captured` says how many are real), for user
/// space to check the flow still looks encrypted. See [`crate::flow::resample_due`].
pub const KIND_RESAMPLE: u8 = 5;

/// Which program saw the packet.
pub const HOOK_TC_INGRESS: u8 = 1;
pub const HOOK_TC_EGRESS: u8 = 2;
pub const HOOK_XDP_INGRESS: u8 = 3;

/// A small record telling user space that something happened to a flow; the counters stay in the
/// flow table, where user space reads them.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FlowNotice {
    pub kind: u8,
    pub hook: u8,
    /// Side that sent the packet behind the notice.
    pub side: u8,
    pub protocol: u8,
    pub encryption: u8,
    pub client_side: u8,
    /// `policy::ACTION_*` the kernel took, and the exclusion's index for `ACTION_EXCLUDED`.
    pub action: u8,
    pub rule: u8,
    pub ifindex: u32,
    pub _pad2: u32,
    pub ts_ns: u64,
    pub key: FlowKey,
}
const _: () = assert!(core::mem::size_of::<FlowNotice>() == 64);

/// The first payload bytes of one direction of a flow, for deeper parsing in user space. A
/// direction is sampled packet by packet until [`crate::SAMPLE_BYTES_GLOBAL`] bytes have gone up.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PayloadSample {
    pub kind: u8,
    pub hook: u8,
    pub side: u8,
    pub _pad: u8,
    pub ifindex: u32,
    /// TCP sequence number of the first payload byte (0 for UDP), for reassembly.
    pub seq: u32,
    /// Payload bytes of this direction sampled before this packet.
    pub offset: u32,
    pub ts_ns: u64,
    pub key: FlowKey,
    /// L4 payload length of the packet.
    pub payload_len: u32,
    /// Valid bytes in `data`.
    pub captured: u32,
    pub data: [u8; MAX_SAMPLE],
}
const _: () = assert!(core::mem::size_of::<PayloadSample>() == SAMPLE_HEADER_LEN + MAX_SAMPLE);

/// Bytes of a [`PayloadSample`] before `data`. Records on the ring are this header plus the
/// `captured` bytes only, so small packets do not take a full record's room.
pub const SAMPLE_HEADER_LEN: usize = core::mem::offset_of!(PayloadSample, data);
const _: () = assert!(SAMPLE_HEADER_LEN == 72);
