//! The payload classifier (`common/src/classify`) over arbitrary windows and contexts, the way
//! the kernel calls it (exactly `CLASSIFY_WINDOW` bytes, zero-padded) and the way user space does
//! (any length). It runs inside BPF programs, so it must never panic on any input.
//!
//! Input: byte 0 picks the transport and `start_seen`, bytes 1..5 the claimed payload length,
//! the rest is the payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealwatch_common::{
    CLASSIFY_WINDOW, Context,
    classify::framed_in_clear,
    classify_payload, classify_services, client_preamble, judge_unnamed,
    net::{IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
};

fuzz_target!(|data: &[u8]| {
    let Some((&[mode, l0, l1, l2, l3], payload)) = data.split_first_chunk::<5>() else {
        return;
    };
    let transport = match mode & 3 {
        0 => IPPROTO_TCP,
        1 => IPPROTO_UDP,
        2 => IPPROTO_ICMP,
        _ => mode,
    };
    // Mostly the truth (the window is the payload's prefix), sometimes any claim at all: the
    // kernel's length comes from headers a sender controls.
    let payload_len = if mode & 4 == 0 {
        payload.len() as u32
    } else {
        u32::from_le_bytes([l0, l1, l2, l3])
    };
    let ctx = Context {
        transport,
        payload_len,
        start_seen: mode & 8 != 0,
    };

    let mut window = [0u8; CLASSIFY_WINDOW];
    let n = payload.len().min(CLASSIFY_WINDOW);
    window[..n].copy_from_slice(&payload[..n]);

    // The same bytes give the same verdict: the kernel and `analyze` must agree. (A padded
    // window and the bare payload need not: a DNS name that runs past the payload ends at the
    // padding's zeros, and every caller passes the padded window.)
    let kernel = classify_payload(&window, &ctx);
    assert_eq!(kernel, classify_payload(&window, &ctx));
    let _ = classify_payload(payload, &ctx);
    let _ = classify_services(&window, &ctx);
    let _ = classify_services(payload, &ctx);
    let _ = judge_unnamed(&window, &ctx);
    let _ = judge_unnamed(payload, &ctx);
    let _ = client_preamble(payload, payload_len);
    let _ = framed_in_clear(payload, payload_len);
});
