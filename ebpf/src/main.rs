//! sealwatch kernel programs: TC ingress/egress and XDP ingress entry points. Each one parses
//! the packet, tracks its flow, and lets it through unless the policy forbids the flow; anything
//! skipped or failed bumps a counter in STATS. The packets that need more than counting (the
//! first payload of each side of a flow, a verdict to settle, a follow-up to check) go on to a
//! decide program through a tail call, verified on its own: the observers every packet runs
//! stay small.
#![no_std]
#![no_main]
// Atomic RMW intrinsics (see atomic.rs); this crate is always built with RUSTC_BOOTSTRAP=1.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod atomic;
mod enforce;
mod maps;
mod owner;
mod packet;
mod track;

use core::mem::MaybeUninit;

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use sealwatch_common::{
    event::{HOOK_TC_EGRESS, HOOK_TC_INGRESS, HOOK_XDP_INGRESS},
    stats::Stat,
};

use crate::{
    enforce::Fate,
    maps::{ENFORCE_TC_EGRESS, ENFORCE_TC_INGRESS, ENFORCE_XDP, count},
    packet::{Packet, Parsed, Skip, parse},
};

#[classifier]
pub fn tc_ingress(ctx: TcContext) -> i32 {
    observe_tc(&ctx, HOOK_TC_INGRESS)
}

#[classifier]
pub fn tc_egress(ctx: TcContext) -> i32 {
    observe_tc(&ctx, HOOK_TC_EGRESS)
}

#[xdp]
pub fn xdp_ingress(ctx: XdpContext) -> u32 {
    let mut fate = observe(&ctx, HOOK_XDP_INGRESS);
    if fate == Fate::Decide {
        // SAFETY: the array holds the XDP enforce program, of the same type as this one.
        unsafe { ENFORCE_XDP.tail_call(&ctx, 0) };
        fate = unreachable_tail_call();
    }
    xdp_verdict(fate)
}

#[classifier]
pub fn tc_enforce_ingress(ctx: TcContext) -> i32 {
    tc_verdict(enforce::enforce(&ctx, HOOK_TC_INGRESS))
}

#[classifier]
pub fn tc_enforce_egress(ctx: TcContext) -> i32 {
    tc_verdict(enforce::enforce(&ctx, HOOK_TC_EGRESS))
}

#[xdp]
pub fn xdp_enforce(ctx: XdpContext) -> u32 {
    xdp_verdict(enforce::enforce(&ctx, HOOK_XDP_INGRESS))
}

#[inline(always)]
fn xdp_verdict(fate: Fate) -> u32 {
    match fate {
        Fate::Drop => xdp_action::XDP_DROP,
        Fate::Pass | Fate::Decide => xdp_action::XDP_PASS,
    }
}

#[inline(always)]
fn tc_verdict(fate: Fate) -> i32 {
    match fate {
        Fate::Drop => TC_ACT_SHOT,
        // UNSPEC (TCX_NEXT): let the next program on the hook, e.g. a CNI's, have its say.
        Fate::Pass | Fate::Decide => TC_ACT_UNSPEC,
    }
}

/// A tail call returned: the decide program is missing. Counted; the packet passes.
#[inline(always)]
fn unreachable_tail_call() -> Fate {
    count(Stat::EnforceUnreachable);
    Fate::Pass
}

#[inline(always)]
fn observe_tc(ctx: &TcContext, hook: u8) -> i32 {
    let mut fate = observe(ctx, hook);
    if fate == Fate::Decide {
        let enforcer = if hook == HOOK_TC_EGRESS {
            &ENFORCE_TC_EGRESS
        } else {
            &ENFORCE_TC_INGRESS
        };
        // SAFETY: the arrays hold TC enforce programs, of the same type as this one.
        unsafe { enforcer.tail_call(ctx, 0) };
        fate = unreachable_tail_call();
    }
    tc_verdict(fate)
}

/// Parses and tracks the packet. Only a flow the policy forbids is dropped: a packet we cannot
/// parse, or whose tracking failed, passes and is counted (enforcement is about flows we know).
#[inline(always)]
fn observe<P: Packet>(pkt: &P, hook: u8) -> Fate {
    count(Stat::Packets);
    let mut parsed = MaybeUninit::<Parsed>::uninit();
    let mut parsing = parse(pkt, &mut parsed).map(|_| ());
    // Headers past the linear area: pulled in only then. Pulling every packet's first 128 bytes
    // (most TCP segments keep only their headers linear, the payload in pages) cost ~350 ns a
    // packet in a live iperf3 run, far more than the rest of the program.
    if matches!(parsing, Err(Skip::Malformed)) && pkt.pull_headers() {
        parsing = parse(pkt, &mut parsed).map(|_| ());
    }
    match parsing {
        // SAFETY: the parse succeeded, so it wrote every field.
        Ok(()) => return track::track(pkt, unsafe { parsed.assume_init_ref() }, hook),
        Err(Skip::NonIp) => count(Stat::NonIp),
        Err(Skip::Fragment) => count(Stat::Fragments),
        Err(Skip::OtherTransport) => count(Stat::OtherTransport),
        Err(Skip::Malformed) => count(Stat::Malformed),
    }
    Fate::Pass
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
