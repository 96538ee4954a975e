//! The packet parser (`common/src/parse.rs`) on arbitrary frames: the code the kernel programs
//! run over packet memory, here over a heap copy of exactly the frame's bytes so AddressSanitizer
//! catches any read past its end. It must return `Ok` or a `Skip`, never read out of bounds.
//!
//! Input: byte 0 picks the entry point (Ethernet, or L3 with IPv4/IPv6/MPLS EtherType as the
//! cooked and raw-IP captures use) and whether the wire length exceeds the captured bytes
//! (non-linear skbs, snap lengths), the rest is the frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealwatch_common::{
    net::{ETH_P_IP, ETH_P_IPV6, ETH_P_MPLS_UC},
    parse::{Parsed, parse_ethernet, parse_l3},
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, frame)) = data.split_first() else {
        return;
    };
    // An exact-size allocation: one byte past the frame is a heap overflow ASan reports.
    let frame: Box<[u8]> = frame.into();
    let start = frame.as_ptr() as usize;
    let end = start + frame.len();
    let wire_len = if mode & 0x80 != 0 {
        (frame.len() as u32).saturating_mul(u32::from(mode & 0x0f) + 1)
    } else {
        frame.len() as u32
    };
    let mut out = Parsed::default();
    // SAFETY: `[start, end)` is `frame`, alive for the call.
    let result = unsafe {
        match mode & 3 {
            0 => parse_ethernet(start, end, wire_len, &mut out),
            1 => parse_l3(ETH_P_IP, start, end, 0, wire_len, &mut out),
            2 => parse_l3(ETH_P_IPV6, start, end, 0, wire_len, &mut out),
            _ => parse_l3(ETH_P_MPLS_UC, start, end, 0, wire_len, &mut out),
        }
    };
    if result.is_ok() {
        // What the trackers then do with it: the payload they copy must lie inside the packet
        // the wire length describes, and no IP length may claim less than its headers.
        let off = out.payload_off as u64;
        assert!(
            off + u64::from(out.payload_len) <= u64::from(wire_len).max(off),
            "payload [{off}, +{}) past wire length {wire_len}",
            out.payload_len
        );
    }
});
