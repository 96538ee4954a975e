#![cfg_attr(not(test), no_std)]
//! What sealwatch's kernel programs and user space share: the `#[repr(C)]` map keys, values and
//! ring-buffer records, the map names and capacities, and the payload classifier itself, so the
//! code the kernel runs is the code the unit tests run.

pub mod classify;
pub mod event;
pub mod flow;
pub mod net;
pub mod owner;
pub mod parse;
pub mod policy;
pub mod stats;

#[cfg(feature = "user")]
mod user;

pub use classify::{
    Context, Encryption, Preamble, Protocol, Verdict, classify_payload, classify_services,
    client_preamble, judge_unnamed,
};

/// Name of the flow table (LRU hash, [`flow::FlowKey`] -> [`flow::FlowState`]).
pub const FLOWS_MAP: &str = "FLOWS";
/// Name of the ring buffer carrying [`event::FlowNotice`] and [`event::PayloadSample`] records.
pub const EVENTS_MAP: &str = "EVENTS";
/// Program arrays holding the enforce programs the observers tail-call into: the policy's
/// decision lives in programs of its own so the verifier walks it apart from the classifier.
pub const ENFORCE_TC_INGRESS_MAP: &str = "ENFORCE_TC_INGRESS";
pub const ENFORCE_TC_EGRESS_MAP: &str = "ENFORCE_TC_EGRESS";
pub const ENFORCE_XDP_MAP: &str = "ENFORCE_XDP";
/// Name of the per-CPU counter array indexed by [`stats::Stat`].
pub const STATS_MAP: &str = "STATS";

/// Default flow-table capacity; user space may override it at load time.
pub const DEFAULT_FLOW_CAPACITY: u32 = 65_536;
/// Ring-buffer size in bytes (a power of two, a multiple of the page size).
pub const EVENTS_RING_BYTES: u32 = 4 << 20;

/// Kernel global: bytes of payload to sample per flow direction (at most [`MAX_SAMPLE_BYTES`]).
pub const SAMPLE_BYTES_GLOBAL: &str = "SAMPLE_BYTES";
/// Default sample size per flow direction.
pub const DEFAULT_SAMPLE_BYTES: u16 = 4096;
/// Largest payload copy one [`event::PayloadSample`] record can hold.
pub const MAX_SAMPLE: usize = 2048;
/// Largest per-direction sample budget: a ClientHello offering a post-quantum key share is
/// about 1.8 KB, and STARTTLS protocols talk a little before theirs.
pub const MAX_SAMPLE_BYTES: u16 = 8192;
/// Payload bytes the kernel hands to [`classify_payload`]: enough for every v1 detector.
pub const CLASSIFY_WINDOW: usize = 64;
/// A direction that sent this many payload packets without a verdict ends classification as
/// `unknown`, so one-way flows do not wait forever for the other side.
pub const UNKNOWN_AFTER_PAYLOAD_PACKETS: u8 = 4;
