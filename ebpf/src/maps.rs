//! Every map and load-time global of the kernel programs, in one place.

use aya_ebpf::{
    Global,
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use sealwatch_common::{
    CLASSIFY_WINDOW, DEFAULT_FLOW_CAPACITY, DEFAULT_SAMPLE_BYTES, EVENTS_RING_BYTES,
    event::PayloadSample,
    flow::{FlowKey, FlowState},
    owner::{
        ExecArgs, FlowOwners, ListenKey, MAX_EXEC_ARGS, MAX_FLOW_OWNERS, MAX_LISTENERS,
        MAX_SOCK_OWNERS, Owner,
    },
    policy::{
        CgroupRules, KernelPolicy, MAX_EXEMPT_CGROUPS, MAX_NETS, MAX_PORT_ENTRIES, MAX_WEAK_SUITES,
        NetKey, NetValue,
    },
    stats::{STAT_COUNT, Stat},
};

use crate::track::Handoff;

/// The flow table. User space may resize it before load (`EbpfLoader::map_max_entries`).
#[map]
pub static FLOWS: LruHashMap<FlowKey, FlowState> =
    LruHashMap::with_max_entries(DEFAULT_FLOW_CAPACITY, 0);

/// Verdict/close notices and payload samples for user space.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RING_BYTES, 0);

/// Socket cookie -> the process that connected, sent or bound it.
#[map]
pub static SOCK_OWNERS: LruHashMap<u64, Owner> = LruHashMap::with_max_entries(MAX_SOCK_OWNERS, 0);

/// Bound ports -> the process that bound them, for the sockets `accept` returns.
#[map]
pub static LISTENERS: LruHashMap<ListenKey, Owner> = LruHashMap::with_max_entries(MAX_LISTENERS, 0);

/// Established TCP connections -> the owners of their local ends.
#[map]
pub static FLOW_OWNERS: LruHashMap<FlowKey, FlowOwners> =
    LruHashMap::with_max_entries(MAX_FLOW_OWNERS, 0);

/// tgid -> arguments of its latest execve.
#[map]
pub static EXEC_ARGS: LruHashMap<u32, ExecArgs> = LruHashMap::with_max_entries(MAX_EXEC_ARGS, 0);

/// Where an execve's arguments are gathered before they are filed.
#[map]
pub static EXEC_SCRATCH: PerCpuArray<ExecArgs> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU counters, indexed by [`Stat`].
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_COUNT, 0);

/// Per-CPU scratch space for the classifier's window: 64 bytes the BPF stack cannot spare.
#[map]
pub static WINDOW: PerCpuArray<[u8; CLASSIFY_WINDOW]> = PerCpuArray::with_max_entries(1, 0);

/// Per CPU, what an observer hands the decide program it tail-calls.
#[map]
pub static HANDOFF: PerCpuArray<Handoff> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch record for payload samples: filled here, then only its used part is copied
/// to the ring (`bpf_ringbuf_output`), so a 60-byte packet does not take a 2 KB slot.
#[map]
pub static SAMPLE_SCRATCH: PerCpuArray<PayloadSample> = PerCpuArray::with_max_entries(1, 0);

/// The enforce programs, one per observer type and side, tail-called when a packet needs the
/// policy's decision.
#[map]
pub static ENFORCE_TC_INGRESS: ProgramArray = ProgramArray::with_max_entries(1, 0);
#[map]
pub static ENFORCE_TC_EGRESS: ProgramArray = ProgramArray::with_max_entries(1, 0);
#[map]
pub static ENFORCE_XDP: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Two policy slots; [`POLICY_ACTIVE`] says which one is in force. User space writes the other
/// one and flips, so a reload is atomic for the programs.
#[map]
pub static POLICY: Array<KernelPolicy> = Array::with_max_entries(2, 0);

/// The active slot of [`POLICY`] (0 or 1).
#[map]
pub static POLICY_ACTIVE: Array<u32> = Array::with_max_entries(1, 0);

/// Internal networks and exclusion networks, per slot (see `policy::NetKey`).
#[map]
pub static NETS: LpmTrie<NetKey, NetValue> = LpmTrie::with_max_entries(MAX_NETS, 0);

/// Server ports exclusions name, per slot (see `policy::slot_port_key`).
#[map]
pub static PORTS: HashMap<u32, u64> = HashMap::with_max_entries(MAX_PORT_ENTRIES, 0);

/// Cgroups of the processes and pods that exclusions name, resolved by user space.
#[map]
pub static EXEMPT_CGROUPS: HashMap<u64, CgroupRules> =
    HashMap::with_max_entries(MAX_EXEMPT_CGROUPS, 0);

/// Local ports the processes that exclusions name listen on (see `policy::port_key`).
#[map]
pub static EXEMPT_PORTS: HashMap<u32, CgroupRules> =
    HashMap::with_max_entries(MAX_EXEMPT_CGROUPS, 0);

/// TLS cipher suites the policy forbids (value nonzero).
#[map]
pub static WEAK_SUITES: HashMap<u16, u8> = HashMap::with_max_entries(MAX_WEAK_SUITES, 0);

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
