//! Flow tracking: account every packet to its flow, classify the first payload of each side
//! until a verdict is reached, and sample the first payload bytes for user space.

use core::{
    ffi::c_void,
    mem::{MaybeUninit, size_of},
    ptr::{addr_of, addr_of_mut},
};

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
};
use aya_log_ebpf::debug;
use sealwatch_common::{
    CLASSIFY_WINDOW, Encryption, MAX_SAMPLE, MAX_SAMPLE_BYTES, Verdict, classify_payload,
    event::{
        FlowNotice, HOOK_TC_EGRESS, KIND_CLOSE, KIND_RESAMPLE, KIND_SAMPLE, SAMPLE_HEADER_LEN,
    },
    flow::{
        FLOW_CHECK_HELLO, FLOW_CLOSING, FLOW_DECIDING, FLOW_DROP, FLOW_PREAMBLE, FLOW_VERDICT,
        FlowState, PayloadStep, classified_bits, classify_context, client_side, conclude,
        payload_step, resample_bit, resample_due, tcp_flag_bits,
    },
    stats::Stat,
};

use crate::{
    atomic::{add_u64, fetch_and_u64, fetch_or_u64, load_u64},
    enforce::Fate,
    maps::{EVENTS, FLOWS, HANDOFF, SAMPLE_BYTES, SAMPLE_SCRATCH, WINDOW, count},
    packet::{Packet, Parsed},
};

/// What an observer hands the decide program it tail-calls (a tail call keeps only the
/// context): the packet's parse, and the precise clock reading taken on it if the flow started
/// with it (the verdict's time then, without a second reading), else 0.
pub struct Handoff {
    pub parsed: Parsed,
    pub fresh_ns: u64,
}

/// Where a packet came from, for records and per-hook logic.
pub struct Seen {
    pub hook: u8,
    pub ifindex: u32,
    /// [`tick_now`]: last-seen times need no better than the idle timeouts' seconds.
    pub now: u64,
}

/// CLOCK_MONOTONIC to the nanosecond, for a flow's start only: its duration and the order of
/// its records are measured from it. Reading the clocksource costs ~25 ns in a VM.
#[inline(always)]
pub fn precise_now() -> u64 {
    // SAFETY: no arguments, no memory.
    unsafe { bpf_ktime_get_ns() }
}

/// `bpf_ktime_get_coarse_ns`: CLOCK_MONOTONIC as of the last tick (1-4 ms), a few ns to read.
/// Last-seen times, notices and verdicts take it: to the millisecond is what a flow log or an
/// alert needs.
#[inline(always)]
pub fn tick_now() -> u64 {
    // SAFETY: no arguments, no memory.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// Accounts the packet to its flow and says what becomes of it; a failure is counted and the
/// packet passes. Inlined into the observers: as a BPF-to-BPF call it cost the fast path ~9 ns
/// a packet (and, returning a `Result`, came back packed in one register that LLVM filled from
/// the context pointer on a path where the error was undefined, which the verifier refuses).
#[inline(always)]
pub fn track<P: Packet>(pkt: &P, p: &Parsed, hook: u8) -> Fate {
    track_flow(pkt, p, hook).unwrap_or_else(|stat| {
        count(stat);
        Fate::Pass
    })
}

#[inline(always)]
fn track_flow<P: Packet>(pkt: &P, p: &Parsed, hook: u8) -> Result<Fate, Stat> {
    let seen = Seen {
        hook,
        ifindex: pkt.ifindex(),
        now: tick_now(),
    };
    // A flow created on this packet already read the precise clock: its verdict, if this
    // packet reaches one, takes that reading instead of a second one.
    let (state, fresh_ns) = match FLOWS.get_ptr_mut(&p.key) {
        Some(s) => (s, 0),
        None => {
            // A flow a local socket opens (a client's SYN, its first datagram) names the
            // socket, and through it the process (`SOCK_OWNERS`).
            let cookie = if hook == HOOK_TC_EGRESS {
                pkt.departing_socket_cookie()
            } else {
                0
            };
            let s = new_flow(p, &seen, cookie, pkt.segments())?;
            if s.is_null() {
                // The new entry holds all this packet does to a flow.
                return Ok(Fate::Pass);
            }
            // SAFETY: a map value, valid for this run.
            (s, unsafe { (*s).first_ns })
        }
    };
    // SAFETY: map values stay valid for the program's run; concurrent writers are other CPUs
    // updating the same flow, which is why counters and flags use atomics.
    let state = unsafe { &mut *state };
    if state.ifindex != seen.ifindex {
        // Routed or bridged between two watched interfaces: count it once, where it started.
        return Err(Stat::ForeignInterface);
    }
    let side = usize::from(p.side & 1);
    let segments = u64::from(pkt.segments());
    // Read apart from the add (a racing CPU may slip in between): it only decides a re-sample.
    let sent_before = load_u64(&state.packets[side]);
    add_u64(&mut state.packets[side], segments);
    add_u64(&mut state.bytes[side], u64::from(p.ip_len));
    // The coarse clock lags the precise one a flow started with by up to a tick.
    if seen.now > state.last_ns {
        state.last_ns = seen.now;
    }

    let flags = record_tcp_flags(state, p, &seen)?;
    // Packets without payload (handshakes, ACKs, FIN and RST) always pass: they carry no data,
    // and a blocked flow's RST must reach its ends so they fail fast.
    let resample_now = resample_due(sent_before, sent_before + segments);
    if p.payload_len == 0 {
        // Re-sample points are counted in packets, ACKs too: one that falls on an ACK moves
        // to the side's next payload packet.
        if resample_now {
            fetch_or_u64(&mut state.flags, resample_bit(p.side));
        }
        return Ok(Fate::Pass);
    }
    if flags & FLOW_DROP != 0 {
        count(Stat::Dropped);
        return Ok(Fate::Drop);
    }
    let fate = if flags & FLOW_VERDICT == 0 {
        payload_before_verdict(state, p, flags, fresh_ns)
    } else if flags & (FLOW_CHECK_HELLO | FLOW_PREAMBLE) != 0 {
        Fate::Decide
    } else {
        let owed = flags & resample_bit(p.side) != 0;
        if state.encryption == Encryption::Encrypted as u8 && (resample_now || owed) {
            if owed {
                fetch_and_u64(&mut state.flags, !resample_bit(p.side));
            }
            if let Err(stat) = resample(pkt, p, &seen) {
                count(stat);
            }
        }
        Fate::Pass
    };
    if fate == Fate::Drop {
        count(Stat::Dropped);
    }
    if fate == Fate::Decide {
        hand_over(p, fresh_ns)?;
    }
    // Checked here so established flows do not pay for a call. The packet that revealed a
    // forbidden flow is sampled too: user space names what it was, nothing reaches the peer.
    if u32::from(state.sampled[side]) < sample_limit() {
        // A lost sample must not lose the packet's fate: counted, not returned.
        if let Err(stat) = sample(pkt, state, p, &seen) {
            count(stat);
        }
    }
    Ok(fate)
}

#[inline(always)]
fn sample_limit() -> u32 {
    u32::from(SAMPLE_BYTES.load().min(MAX_SAMPLE_BYTES))
}

/// Creates the flow's entry. A first packet that carries no payload and closes nothing (a SYN,
/// the usual start) is accounted in the entry as it is inserted: its packet and bytes, its
/// TCP flags. Then there is nothing left to do with the entry and no pointer to it is needed
/// (null; an `Option` in the `Result` makes LLVM read a register the call clobbered), which
/// saves a new TCP flow the lookup that finds what was just inserted. Any other packet, or one
/// whose flow another CPU created first, gets the entry to work on.
#[inline(never)]
fn new_flow(
    p: &Parsed,
    seen: &Seen,
    local_cookie: u64,
    segments: u32,
) -> Result<*mut FlowState, Stat> {
    let first_ns = precise_now();
    let mut state = MaybeUninit::<FlowState>::uninit();
    // Zeroed in place rather than built from `..FlowState::default()`, whose zero fields LLVM
    // merges into a byte-loop `memset` call.
    // SAFETY: `FlowState` is plain data of whole 8-byte words, 8-byte aligned.
    unsafe { zero_words(state.as_mut_ptr().cast(), size_of::<FlowState>() / 8) };
    // SAFETY: every byte was just written; written in place, not moved, to keep the stack
    // small.
    let state = unsafe { state.assume_init_mut() };
    state.first_ns = first_ns;
    state.last_ns = first_ns;
    state.local_cookie = local_cookie;
    state.local_side = p.side;
    state.ifindex = seen.ifindex;
    state.client_side = client_side(p.side, p.tcp_flags, p.sport, p.dport);
    let flag_bits = p.tcp_flags.map_or(0, |tcp| tcp_flag_bits(p.side, tcp));
    let complete = p.payload_len == 0 && flag_bits & FLOW_CLOSING == 0;
    if complete {
        let side = usize::from(p.side & 1);
        let segments = u64::from(segments);
        state.packets[side] = segments;
        state.bytes[side] = u64::from(p.ip_len);
        state.flags = flag_bits;
        if resample_due(0, segments) {
            state.flags |= resample_bit(p.side);
        }
    }
    // NOEXIST: another CPU may have created it meanwhile; then use theirs.
    if FLOWS
        .insert(&p.key, &*state, u64::from(BPF_NOEXIST))
        .is_ok()
    {
        if complete {
            return Ok(core::ptr::null_mut());
        }
    } else {
        count(Stat::FlowInsertFailed);
    }
    FLOWS.get_ptr_mut(&p.key).ok_or(Stat::FlowInsertFailed)
}

/// ORs this packet's TCP flags (and the closing bit on FIN/RST) into the flow; sends the close
/// notice the first time. Returns the flags as they are now.
#[inline(always)]
fn record_tcp_flags(state: &mut FlowState, p: &Parsed, seen: &Seen) -> Result<u64, Stat> {
    let flags = load_u64(&state.flags);
    let Some(tcp) = p.tcp_flags else {
        return Ok(flags);
    };
    let bits = tcp_flag_bits(p.side, tcp);
    if flags & bits == bits {
        return Ok(flags);
    }
    let before = fetch_or_u64(&mut state.flags, bits);
    if bits & !before & FLOW_CLOSING != 0 {
        notify(KIND_CLOSE, state, p, seen)?;
    }
    Ok(before | bits)
}

/// A payload packet of a flow without a verdict. The first of each side is classified by the
/// decide program (`Fate::Decide`, see `enforce.rs`): the classifier is most of the kernel
/// code, and apart from them it leaves the observers, which every packet runs, small.
/// The flow ends as `unknown` once a side classified unknown kept talking without an answer.
#[inline(always)]
fn payload_before_verdict(state: &mut FlowState, p: &Parsed, flags: u64, fresh_ns: u64) -> Fate {
    let side = usize::from(p.side & 1);
    let sent = state.payload_packets[side].saturating_add(1);
    state.payload_packets[side] = sent;
    match payload_step(flags, p.side, sent) {
        PayloadStep::Wait => Fate::Pass,
        PayloadStep::GiveUp if set_verdict(state, Verdict::UNKNOWN, fresh_ns) => Fate::Decide,
        PayloadStep::GiveUp => Fate::Pass,
        PayloadStep::Classify => Fate::Decide,
    }
}

/// Leaves this packet's parse and clock reading in this CPU's [`HANDOFF`] slot for the
/// decide program tail-called next (a tail call keeps only the context), so they
/// do not parse the packet again.
#[inline(always)]
fn hand_over(p: &Parsed, fresh_ns: u64) -> Result<(), Stat> {
    let h = HANDOFF.get_ptr_mut(0).ok_or(Stat::EnforceUnreachable)?;
    // SAFETY: this CPU's slot, read by the tail call that runs next on this CPU; `Parsed` is
    // plain data.
    unsafe {
        addr_of_mut!((*h).parsed).write(core::ptr::read(p));
        (*h).fresh_ns = fresh_ns;
    }
    Ok(())
}

/// This CPU's [`HANDOFF`] slot, as the observer that tail-called left it.
#[inline(always)]
pub fn handed_over() -> Option<&'static Handoff> {
    // SAFETY: this CPU's slot; the program that wrote it ran just before on this CPU.
    HANDOFF.get_ptr(0).map(|h| unsafe { &*h })
}

/// Classifies the first payload packet of a side. True when this reached the flow's verdict,
/// to be settled now.
#[inline(always)]
pub fn classify<P: Packet>(
    pkt: &P,
    state: &mut FlowState,
    p: &Parsed,
    fresh_ns: u64,
) -> Result<bool, Stat> {
    // Exactly one CPU classifies each side: whoever flips the bit.
    let (mine, theirs) = classified_bits(p.side);
    let before = fetch_or_u64(&mut state.flags, mine);
    if before & mine != 0 {
        return Ok(false);
    }
    let window = load_window(pkt, p).ok_or(Stat::LoadBytesFailed)?;
    let ctx = classify_context(before, p.key.proto, p.payload_len);
    // The whole zero-padded window, not a slice of it: a constant length lets LLVM drop every
    // bounds check, where a variable one makes the verifier walk each detector per length.
    let verdict = classify_payload(window, &ctx);
    debug!(
        pkt,
        "first payload of side {}: {} bytes, protocol {}",
        p.side,
        p.payload_len,
        verdict.protocol as u8
    );
    match conclude(verdict, before & theirs != 0) {
        Some(v) => Ok(set_verdict(state, v, fresh_ns)),
        None => Ok(false),
    }
}

/// Records the verdict; true when this call reached it, so the enforce program must settle it.
/// `now_ns`: the precise reading a flow that started on this packet took, or 0. Otherwise the
/// verdict's time is the tick's, never before the flow's start (the tick lags the precise clock).
#[inline(always)]
fn set_verdict(state: &mut FlowState, v: Verdict, now_ns: u64) -> bool {
    if fetch_or_u64(&mut state.flags, FLOW_DECIDING) & (FLOW_DECIDING | FLOW_VERDICT) != 0 {
        return false;
    }
    state.protocol = v.protocol as u8;
    state.encryption = v.encryption as u8;
    state.verdict_ns = if now_ns != 0 {
        now_ns
    } else {
        tick_now().max(state.first_ns)
    };
    true
}

/// Zeroes `words` 8-byte words from `dst`, one store each. Volatile, so LLVM cannot merge them
/// into a `memset`, which the BPF target lowers to a call of a loop storing a byte at a time
/// (about 200 instructions for a flow entry, where this takes 11).
///
/// # Safety
/// `dst` must be valid for writes of `words` words and 8-byte aligned.
#[inline(always)]
pub unsafe fn zero_words(dst: *mut u64, words: usize) {
    for i in 0..words {
        // SAFETY: per the contract.
        unsafe { dst.add(i).write_volatile(0) };
    }
}

/// The packet's first payload bytes, zero-padded, in this CPU's window (the classifier reads
/// all of it; a stack temporary of 64 bytes is what the map saves).
#[inline(always)]
pub fn load_window<P: Packet>(pkt: &P, p: &Parsed) -> Option<&'static [u8; CLASSIFY_WINDOW]> {
    let window = WINDOW.get_ptr_mut(0)?;
    // The window is reused: zeroed in place.
    // SAFETY: this CPU's slot of a per-CPU array, CLASSIFY_WINDOW bytes long; map values are
    // 8-byte aligned.
    unsafe { zero_words(window.cast(), CLASSIFY_WINDOW / 8) };
    let mut n = p.payload_len;
    if n > CLASSIFY_WINDOW as u32 {
        n = CLASSIFY_WINDOW as u32;
    }
    if n == 0 || pkt.load_bytes(p.payload_off, window.cast::<c_void>(), n) != 0 {
        return None;
    }
    // SAFETY: as above; the window's one user at a time is the rest of this program run.
    Some(unsafe { &*window })
}

/// Sends the first bytes of a later packet of a flow judged encrypted (`KIND_RESAMPLE`): user
/// space checks they still look encrypted, so that a flow which turns to plaintext after a real
/// handshake does not pass as encrypted.
#[inline(never)]
fn resample<P: Packet>(pkt: &P, p: &Parsed, seen: &Seen) -> Result<(), Stat> {
    let window = load_window(pkt, p).ok_or(Stat::LoadBytesFailed)?;
    let rec = SAMPLE_SCRATCH.get_ptr_mut(0).ok_or(Stat::LoadBytesFailed)?;
    let captured = if p.payload_len < CLASSIFY_WINDOW as u32 {
        p.payload_len
    } else {
        CLASSIFY_WINDOW as u32
    };
    // SAFETY: `rec` is this CPU's scratch PayloadSample, whose `data` is far longer than the
    // window; both are 8-byte aligned map values.
    unsafe {
        (*rec).kind = KIND_RESAMPLE;
        (*rec).hook = seen.hook;
        (*rec).side = p.side;
        (*rec)._pad = 0;
        (*rec).ifindex = seen.ifindex;
        (*rec).seq = p.seq;
        (*rec).offset = 0;
        (*rec).ts_ns = seen.now;
        (*rec).key = p.key;
        (*rec).payload_len = p.payload_len;
        (*rec).captured = captured;
        let from = window.as_ptr().cast::<u64>();
        let to = addr_of_mut!((*rec).data).cast::<u64>();
        for i in 0..CLASSIFY_WINDOW / 8 {
            to.add(i).write(from.add(i).read());
        }
    }
    // SAFETY: the header and the window just copied, inside the scratch record.
    let used = unsafe {
        core::slice::from_raw_parts(rec.cast::<u8>(), SAMPLE_HEADER_LEN + CLASSIFY_WINDOW)
    };
    EVENTS
        .output::<[u8]>(used, 0)
        .map_err(|_| Stat::SamplesLost)
}

#[inline(never)]
pub fn notify(kind: u8, state: &FlowState, p: &Parsed, seen: &Seen) -> Result<(), Stat> {
    let Some(mut entry) = EVENTS.reserve::<FlowNotice>(0) else {
        return Err(Stat::NoticesLost);
    };
    let rec = entry.as_mut_ptr();
    // SAFETY: `rec` points at a reserved, writable FlowNotice; written field by field to keep
    // the record off the stack.
    unsafe {
        (*rec).kind = kind;
        (*rec).hook = seen.hook;
        (*rec).side = p.side;
        (*rec).protocol = state.protocol;
        (*rec).encryption = state.encryption;
        (*rec).client_side = state.client_side;
        (*rec).action = state.action;
        (*rec).rule = state.rule;
        (*rec).ifindex = seen.ifindex;
        (*rec)._pad2 = 0;
        (*rec).ts_ns = seen.now;
        (*rec).key = p.key;
    }
    entry.submit(0);
    Ok(())
}

/// Sends this packet's payload up while the side has sampled fewer than `SAMPLE_BYTES`.
#[inline(never)]
fn sample<P: Packet>(pkt: &P, state: &mut FlowState, p: &Parsed, seen: &Seen) -> Result<(), Stat> {
    let side = usize::from(p.side & 1);
    let limit = sample_limit();
    let done = u32::from(state.sampled[side]);
    if done >= limit {
        return Ok(());
    }
    let rec = SAMPLE_SCRATCH.get_ptr_mut(0).ok_or(Stat::LoadBytesFailed)?;
    // The copy's length comes from the payload length read back from the map, not from `p`:
    // the verifier does not track map memory, so the precision the helper's size demands stops
    // here. Derived from `p`, it would reach back through `classify` to every parsing path, and
    // the verifier would walk the whole classifier again for each payload length range.
    // SAFETY: `rec` is this CPU's scratch PayloadSample.
    let mut n = unsafe {
        (*rec).payload_len = p.payload_len;
        core::ptr::read_volatile(addr_of!((*rec).payload_len))
    };
    if n > limit - done {
        n = limit - done;
    }
    state.sampled[side] = (done + n) as u16;
    if n > MAX_SAMPLE as u32 {
        n = MAX_SAMPLE as u32;
    }
    // Reloaded from memory and checked right before use: on the arithmetic's own register
    // LLVM checks a zero-extended copy, and the verifier loses the lower bound of the value
    // actually passed (`invalid zero-sized read`).
    // SAFETY: reads a local.
    let n = unsafe { core::ptr::read_volatile(&n) };
    if n == 0 || n > MAX_SAMPLE as u32 {
        return Ok(());
    }
    // SAFETY: `rec` is this CPU's scratch PayloadSample; `n` is in 1..=MAX_SAMPLE so the copy
    // stays inside `data`.
    let copied = unsafe {
        (*rec).kind = KIND_SAMPLE;
        (*rec).hook = seen.hook;
        (*rec).side = p.side;
        (*rec)._pad = 0;
        (*rec).ifindex = seen.ifindex;
        (*rec).seq = p.seq;
        (*rec).offset = done;
        (*rec).ts_ns = seen.now;
        (*rec).key = p.key;
        (*rec).captured = n;
        pkt.load_bytes(p.payload_off, addr_of_mut!((*rec).data) as *mut c_void, n)
    };
    if copied != 0 {
        return Err(Stat::LoadBytesFailed);
    }
    // SAFETY: the header and the `n` bytes just loaded, all inside the scratch record.
    let used =
        unsafe { core::slice::from_raw_parts(rec.cast::<u8>(), SAMPLE_HEADER_LEN + n as usize) };
    EVENTS
        .output::<[u8]>(used, 0)
        .map_err(|_| Stat::SamplesLost)
}
