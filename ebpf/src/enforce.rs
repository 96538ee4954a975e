//! The decide programs, tail-called by the observers: classification of the first payload of
//! each side of a flow, the policy's decision on a flow's verdict, taken on the packet that
//! revealed it, and the two follow-ups a verdict can leave open: the ServerHello of a TLS flow
//! (minimum version, forbidden suites) and the preamble of a protocol that may still upgrade to
//! TLS in-band. They start from the observer's parse of the packet (`track::hand_over`), so the
//! verifier walks the classifier once, not once for each way a packet can be parsed.

use core::ffi::c_void;

use aya_ebpf::maps::lpm_trie::Key;
use sealwatch_common::{
    Encryption, Preamble, Protocol, client_preamble,
    event::{HOOK_TC_EGRESS, KIND_DROP, KIND_VERDICT},
    flow::{FLOW_CHECK_HELLO, FLOW_DECIDING, FLOW_DROP, FLOW_PREAMBLE, FLOW_VERDICT, FlowState},
    net::FAMILY_IPV4,
    policy::{
        ACTION_ALLOW, ACTION_DROP, ACTION_NONE, Facts, KernelPolicy, NET_KEY_HEADER_BITS, NetKey,
        NetValue, decide, forbidden, needs_facts, port_key, slot_port_key, upgradable,
    },
    stats::Stat,
};

use crate::{
    atomic::{fetch_and_u64, fetch_or_u64, load_u64},
    maps::{
        EXEMPT_CGROUPS, EXEMPT_PORTS, FLOWS, NETS, POLICY, POLICY_ACTIVE, PORTS, WEAK_SUITES, count,
    },
    packet::{Packet, Parsed},
    track::{Seen, load_window, notify},
};

/// Whether the packet being looked at goes on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Pass,
    Drop,
    /// The enforce program decides (a verdict to settle, a follow-up to check).
    Decide,
}

/// The decide program's work on a packet the observer handed over: classify a side's first
/// payload, settle a verdict just reached, or check a follow-up. The packet's parse comes with
/// it (see `track::hand_over`).
#[inline(always)]
pub fn enforce<P: Packet>(pkt: &P, hook: u8) -> Fate {
    let Some(h) = crate::track::handed_over() else {
        count(Stat::EnforceUnreachable);
        return Fate::Pass;
    };
    let parsed = &h.parsed;
    let Some(state) = FLOWS.get_ptr_mut(&parsed.key) else {
        count(Stat::EnforceUnreachable);
        return Fate::Pass;
    };
    // SAFETY: as in `track`: a map value valid for this run; shared fields are atomic.
    let state = unsafe { &mut *state };
    let mut flags = load_u64(&state.flags);
    // The first payload of a side, handed over to be classified.
    if flags & (FLOW_VERDICT | FLOW_DECIDING) == 0 {
        match crate::track::classify(pkt, state, parsed, h.fresh_ns) {
            Ok(true) => flags = load_u64(&state.flags),
            Ok(false) => return Fate::Pass,
            Err(stat) => {
                count(stat);
                return Fate::Pass;
            }
        }
    }
    let settling = flags & FLOW_VERDICT == 0 && flags & FLOW_DECIDING != 0;
    // A verdict being settled was reached on this very packet, at the time it recorded.
    let now = if settling && state.verdict_ns != 0 {
        state.verdict_ns
    } else {
        crate::track::tick_now().max(state.first_ns)
    };
    let seen = Seen {
        hook,
        ifindex: pkt.ifindex(),
        now,
    };
    let fate = if settling {
        settle(pkt, state, parsed, &seen)
    } else if flags & (FLOW_CHECK_HELLO | FLOW_PREAMBLE) != 0 {
        follow_up(pkt, state, parsed, &seen, flags).unwrap_or_else(|stat| {
            count(stat);
            Fate::Pass
        })
    } else {
        Fate::Pass
    };
    if fate == Fate::Drop {
        count(Stat::Dropped);
    }
    fate
}

/// The policy's decision on the verdict just recorded, then the verdict bit (with the
/// decision's own bits, so no packet sees the verdict without them) and the notice.
#[inline(never)]
fn settle<P: Packet>(pkt: &P, state: &mut FlowState, p: &Parsed, seen: &Seen) -> Fate {
    let bits = judge(pkt, state, p, seen);
    let before = fetch_or_u64(&mut state.flags, FLOW_VERDICT | bits);
    if before & FLOW_VERDICT == 0
        && let Err(stat) = notify(KIND_VERDICT, state, p, seen)
    {
        // User space recovers the verdict from the table; the drop must still happen.
        count(stat);
    }
    if bits & FLOW_DROP != 0 {
        Fate::Drop
    } else {
        Fate::Pass
    }
}

/// Client payload packets a preamble may take before it must have upgraded (SMTP needs three:
/// EHLO, STARTTLS, then the ClientHello).
const MAX_PREAMBLE_PACKETS: u8 = 8;

/// TLS record and handshake bytes the ServerHello check reads.
const TLS_HANDSHAKE: u8 = 0x16;
const SERVER_HELLO: u8 = 2;
const TLS_1_0: u16 = 0x0301;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
/// Offsets in a record that starts with a ServerHello: version, session id length, and the
/// fields after a session id of `n` bytes.
const HELLO_VERSION_AT: u32 = 9;
const HELLO_SID_LEN_AT: u32 = 43;
const HELLO_AFTER_SID: u32 = 44;
/// Extensions walked looking for supported_versions (servers send a handful).
const MAX_HELLO_EXTENSIONS: usize = 8;

/// The policy in force and its slot.
#[inline(always)]
fn active() -> Option<(&'static KernelPolicy, u32)> {
    let slot = *POLICY_ACTIVE.get(0)? & 1;
    POLICY.get(slot).map(|p| (p, slot))
}

/// Takes the policy's decision on the verdict just recorded in `state` (protocol, encryption).
/// Records it in the flow and returns the
/// flag bits to set with the verdict: `FLOW_DROP` to drop this packet and every later one,
/// `FLOW_CHECK_HELLO` or `FLOW_PREAMBLE` for a follow-up.
#[inline(always)]
fn judge<P: Packet>(pkt: &P, state: &mut FlowState, p: &Parsed, seen: &Seen) -> u64 {
    let Some((policy, slot)) = active() else {
        return 0;
    };
    let protocol = state.protocol;
    let encryption = state.encryption;
    let Some(forbid) = forbidden(policy, encryption) else {
        state.action = ACTION_ALLOW;
        if encryption == Encryption::Encrypted as u8 && checks_hellos(policy, protocol) {
            return FLOW_CHECK_HELLO;
        }
        return 0;
    };
    let facts = facts(pkt, state, p, seen, policy, slot, protocol);
    let d = decide(policy, &facts, forbid);
    state.rule = d.rule;
    if d.action != ACTION_DROP {
        state.action = d.action;
        return 0;
    }
    // Held open only while every client byte so far merely negotiates an upgrade.
    if upgradable(protocol)
        && (!from_client(state, p) || negotiates(pkt, p) == Preamble::Negotiation)
    {
        state.action = ACTION_NONE;
        return FLOW_PREAMBLE;
    }
    state.action = ACTION_DROP;
    count(Stat::FlowsDropped);
    FLOW_DROP
}

/// Follow-ups of flows that have a verdict: a preamble's client packets, a TLS flow's
/// ServerHello. `flags` has `FLOW_PREAMBLE` or `FLOW_CHECK_HELLO` set.
#[inline(never)]
fn follow_up<P: Packet>(
    pkt: &P,
    state: &mut FlowState,
    p: &Parsed,
    seen: &Seen,
    flags: u64,
) -> Result<Fate, Stat> {
    let client = from_client(state, p);
    if flags & FLOW_PREAMBLE != 0 {
        return if client {
            preamble(pkt, state, p, seen)
        } else {
            Ok(Fate::Pass)
        };
    }
    if client || fetch_and_u64(&mut state.flags, !FLOW_CHECK_HELLO) & FLOW_CHECK_HELLO == 0 {
        return Ok(Fate::Pass);
    }
    let Some((policy, slot)) = active() else {
        return Ok(Fate::Pass);
    };
    let mut hello = [0u16; 2];
    let read = server_hello(pkt, p, &mut hello);
    match read.then_some((hello[0], hello[1])) {
        Some((version, suite)) if weak_hello(policy, version, suite) => {
            let facts = facts(pkt, state, p, seen, policy, slot, state.protocol);
            let d = decide(policy, &facts, true);
            state.rule = d.rule;
            state.action = d.action;
            if d.action == ACTION_DROP {
                return start_dropping(state, p, seen);
            }
            Ok(Fate::Pass)
        }
        Some(_) => Ok(Fate::Pass),
        None => {
            count(Stat::HelloUnchecked);
            Ok(Fate::Pass)
        }
    }
}

/// A client packet of an upgradable flow still in its preamble.
#[inline(always)]
fn preamble<P: Packet>(
    pkt: &P,
    state: &mut FlowState,
    p: &Parsed,
    seen: &Seen,
) -> Result<Fate, Stat> {
    let side = usize::from(p.side & 1);
    let sent = state.payload_packets[side].saturating_add(1);
    state.payload_packets[side] = sent;
    match negotiates(pkt, p) {
        Preamble::Upgrade => {
            state.action = ACTION_ALLOW;
            let mut bits = 0;
            if let Some((policy, _)) = active()
                && checks_hellos(policy, Protocol::Tls as u8)
            {
                bits = FLOW_CHECK_HELLO;
            }
            fetch_or_u64(&mut state.flags, bits);
            fetch_and_u64(&mut state.flags, !FLOW_PREAMBLE);
            Ok(Fate::Pass)
        }
        Preamble::Negotiation if sent < MAX_PREAMBLE_PACKETS => Ok(Fate::Pass),
        _ => {
            fetch_and_u64(&mut state.flags, !FLOW_PREAMBLE);
            state.action = ACTION_DROP;
            start_dropping(state, p, seen)
        }
    }
}

/// Marks the flow dropped, tells user space, and drops this packet.
#[inline(always)]
fn start_dropping(state: &mut FlowState, p: &Parsed, seen: &Seen) -> Result<Fate, Stat> {
    count(Stat::FlowsDropped);
    if fetch_or_u64(&mut state.flags, FLOW_DROP) & FLOW_DROP == 0
        && let Err(stat) = notify(KIND_DROP, state, p, seen)
    {
        count(stat);
    }
    Ok(Fate::Drop)
}

#[inline(always)]
fn checks_hellos(policy: &KernelPolicy, protocol: u8) -> bool {
    policy.enforce != 0
        && protocol == Protocol::Tls as u8
        && (policy.min_tls_minor > 0 || policy.weak_suites != 0)
}

#[inline(always)]
fn weak_hello(policy: &KernelPolicy, version: u16, suite: u16) -> bool {
    version < TLS_1_0 + u16::from(policy.min_tls_minor)
                // SAFETY: the value is a plain byte, read once; user space only inserts and removes.
        || (policy.weak_suites != 0 && unsafe { WEAK_SUITES.get(&suite) }.is_some_and(|w| *w != 0))
}

#[inline(always)]
fn from_client(state: &FlowState, p: &Parsed) -> bool {
    p.side & 1 == state.client_side & 1
}

/// Judges this client packet as part of a preamble.
#[inline(always)]
fn negotiates<P: Packet>(pkt: &P, p: &Parsed) -> Preamble {
    match load_window(pkt, p) {
        Some(window) => client_preamble(window, p.payload_len),
        None => Preamble::Data,
    }
}

/// Reads the negotiated version and cipher suite of a ServerHello at the start of this packet's
/// payload into `out`; false when the payload does not start with one (or it is cut short).
/// An out-parameter, not an `Option` of a pair: LLVM packs the pair into one register with
/// shifts that the verifier refuses on the path where that register still holds the context.
#[inline(never)]
fn server_hello<P: Packet>(pkt: &P, p: &Parsed, out: &mut [u16; 2]) -> bool {
    match read_server_hello(pkt, p) {
        Some((version, suite)) => {
            out[0] = version;
            out[1] = suite;
            true
        }
        None => false,
    }
}

#[inline(always)]
fn read_server_hello<P: Packet>(pkt: &P, p: &Parsed) -> Option<(u16, u16)> {
    let base = p.payload_off;
    // Zeroed as one word: `[0u8; 6]` is zeroed through a `memset` call, which BPF lowers to a
    // loop storing a byte at a time.
    let mut word = 0u64;
    // SAFETY: a `u64` is 8 initialised bytes, aligned for a `[u8; 6]`.
    let head = unsafe { &mut *(&raw mut word).cast::<[u8; 6]>() };
    load(pkt, base, head)?;
    if head[0] != TLS_HANDSHAKE || head[5] != SERVER_HELLO {
        return None;
    }
    let mut two = [0u8; 2];
    load(pkt, base + HELLO_VERSION_AT, &mut two)?;
    let legacy = u16::from_be_bytes(two);
    let mut one = [0u8; 1];
    load(pkt, base + HELLO_SID_LEN_AT, &mut one)?;
    let sid = u32::from(one[0] & 0x3f);
    let at = base + HELLO_AFTER_SID + sid;
    load(pkt, at, &mut two)?;
    let suite = u16::from_be_bytes(two);
    // Suite (2), compression (1), extensions length (2).
    load(pkt, at + 3, &mut two)?;
    let end = at + 5 + u32::from(u16::from_be_bytes(two));
    let mut ext = at + 5;
    let mut i = 0;
    while i < MAX_HELLO_EXTENSIONS {
        let mut hdr = [0u8; 4];
        if ext + 4 > end || load(pkt, ext, &mut hdr).is_none() {
            break;
        }
        let kind = u16::from_be_bytes([hdr[0], hdr[1]]);
        let len = u32::from(u16::from_be_bytes([hdr[2], hdr[3]]));
        if kind == EXT_SUPPORTED_VERSIONS && len == 2 {
            load(pkt, ext + 4, &mut two)?;
            return Some((u16::from_be_bytes(two), suite));
        }
        ext += 4 + len;
        i += 1;
    }
    Some((legacy, suite))
}

#[inline(always)]
fn load<P: Packet, const N: usize>(pkt: &P, offset: u32, dst: &mut [u8; N]) -> Option<()> {
    (pkt.load_bytes(offset, dst.as_mut_ptr().cast::<c_void>(), N as u32) == 0).then_some(())
}

#[allow(clippy::too_many_arguments, reason = "inline; the decision's inputs")]
#[inline(always)]
fn facts<P: Packet>(
    pkt: &P,
    state: &FlowState,
    p: &Parsed,
    seen: &Seen,
    policy: &KernelPolicy,
    slot: u32,
    protocol: u8,
) -> Facts {
    if !needs_facts(policy, p.key.proto, protocol) {
        return Facts::unlooked(p.key.proto, protocol);
    }
    let client = state.client_side & 1;
    let (client_addr, _) = p.key.endpoint(client);
    let (server_addr, server_port) = p.key.endpoint(client ^ 1);
    let c = net(slot, p.key.family, &client_addr);
    let s = net(slot, p.key.family, &server_addr);
    // SAFETY: a plain u64 read once; user space only inserts and removes.
    let port_rules = unsafe { PORTS.get(&slot_port_key(slot, server_port)) }.map_or(0, |r| *r);
    let cgroup_rules = if policy.by_cgroup == 0 {
        0
    } else if seen.hook == HOOK_TC_EGRESS {
        let id = pkt.departing_socket_cgroup();
        // SAFETY: read once, copied out; user space rewrites whole values.
        unsafe { EXEMPT_CGROUPS.get(&id) }.map_or(0, |rules| rules[(slot & 1) as usize])
    } else {
        // Arriving: the local end is the server when a named process listens on its port.
        let key = port_key(p.key.proto, server_port);
        // SAFETY: as above.
        unsafe { EXEMPT_PORTS.get(&key) }.map_or(0, |rules| rules[(slot & 1) as usize])
    };
    Facts {
        transport: p.key.proto,
        protocol,
        east_west: c.internal != 0 && s.internal != 0,
        net_rules: c.rules | s.rules,
        port_rules,
        cgroup_rules,
    }
}

/// The longest network of this slot holding `addr`: inside or not, and the exclusions naming it.
#[inline(always)]
fn net(slot: u32, family: u8, addr: &[u32; 4]) -> NetValue {
    let mut key = Key::new(
        NET_KEY_HEADER_BITS + if family == FAMILY_IPV4 { 32 } else { 128 },
        NetKey {
            slot: slot as u8,
            family,
            addr: [0; 16],
        },
    );
    let mut i = 0;
    while i < 4 {
        let b = addr[i].to_ne_bytes();
        key.data.addr[4 * i] = b[0];
        key.data.addr[4 * i + 1] = b[1];
        key.data.addr[4 * i + 2] = b[2];
        key.data.addr[4 * i + 3] = b[3];
        i += 1;
    }
    NETS.get(&key).copied().unwrap_or_default()
}
