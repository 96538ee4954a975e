//! sealwatch kernel programs: TC ingress/egress and XDP ingress entry points. Each one parses
//! the packet, tracks its flow, and always lets it through (monitor mode); anything skipped or
//! failed bumps a counter in STATS.
#![no_std]
#![no_main]
// Atomic RMW intrinsics (see atomic.rs); this crate is always built with RUSTC_BOOTSTRAP=1.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod atomic;
mod maps;
mod packet;
mod track;

use aya_ebpf::{
    bindings::{TC_ACT_UNSPEC, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use sealwatch_common::{
    event::{HOOK_TC_EGRESS, HOOK_TC_INGRESS, HOOK_XDP_INGRESS},
    stats::Stat,
};

use crate::{
    maps::count,
    packet::{Packet, Parsed, Skip, parse},
};

/// Headers we want in the linear area of an skb before parsing: Ethernet, two VLAN tags, IPv6
/// with a few extension headers, TCP with options.
const LINEAR_HEADERS: u32 = 128;

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
    observe(&ctx, HOOK_XDP_INGRESS);
    xdp_action::XDP_PASS
}

#[inline(always)]
fn observe_tc(ctx: &TcContext, hook: u8) -> i32 {
    let want = ctx.len().min(LINEAR_HEADERS);
    if ((ctx.data_end() - ctx.data()) as u32) < want && ctx.pull_data(want).is_err() {
        count(Stat::Malformed);
    }
    observe(ctx, hook);
    // UNSPEC (TCX_NEXT): let the next program on the hook, e.g. a CNI's, have its say.
    TC_ACT_UNSPEC
}

#[inline(always)]
fn observe<P: Packet>(pkt: &P, hook: u8) {
    count(Stat::Packets);
    let mut parsed = Parsed::default();
    match parse(pkt, &mut parsed) {
        Ok(()) => {
            if let Err(stat) = track::track(pkt, &parsed, hook) {
                count(stat);
            }
        }
        Err(Skip::NonIp) => count(Stat::NonIp),
        Err(Skip::Fragment) => count(Stat::Fragments),
        Err(Skip::OtherTransport) => count(Stat::OtherTransport),
        Err(Skip::Malformed) => count(Stat::Malformed),
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
