//! Every map and load-time global of the kernel programs, in one place.

use aya_ebpf::{
    Global,
    macros::map,
    maps::{LruHashMap, PerCpuArray, RingBuf},
};
use sealwatch_common::{
    CLASSIFY_WINDOW, DEFAULT_FLOW_CAPACITY, DEFAULT_SAMPLE_BYTES, EVENTS_RING_BYTES,
    event::PayloadSample,
    flow::{FlowKey, FlowState},
    stats::{STAT_COUNT, Stat},
};

/// The flow table. User space may resize it before load (`EbpfLoader::map_max_entries`).
#[map]
pub static FLOWS: LruHashMap<FlowKey, FlowState> =
    LruHashMap::with_max_entries(DEFAULT_FLOW_CAPACITY, 0);

/// Verdict/close notices and payload samples for user space.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RING_BYTES, 0);

/// Per-CPU counters, indexed by [`Stat`].
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_COUNT, 0);

/// Per-CPU scratch space for the classifier's window: 64 bytes the BPF stack cannot spare.
#[map]
pub static WINDOW: PerCpuArray<[u8; CLASSIFY_WINDOW]> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch record for payload samples: filled here, then only its used part is copied
/// to the ring (`bpf_ringbuf_output`), so a 60-byte packet does not take a 2 KB slot.
#[map]
pub static SAMPLE_SCRATCH: PerCpuArray<PayloadSample> = PerCpuArray::with_max_entries(1, 0);

/// Payload bytes to sample per flow direction; set by user space at load time.
#[unsafe(no_mangle)]
pub static SAMPLE_BYTES: Global<u16> = Global::new(DEFAULT_SAMPLE_BYTES);

#[inline(always)]
pub fn count(stat: Stat) {
    if let Some(counter) = STATS.get_ptr_mut(stat as u32) {
        // SAFETY: per-CPU slot, and programs do not migrate CPUs while running.
        unsafe { *counter += 1 };
    }
}
