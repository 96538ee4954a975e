//! The user-space deep parser (`agent/src/deep.rs`): sampled payloads of both sides of a flow,
//! rebuilt into streams (`agent/src/streams.rs`) as the ring-buffer reader does, then examined
//! (upgrades, unnamed flows) and their TLS, DTLS or QUIC handshakes read (`inspect/`). Every
//! byte here comes from the network: it must never panic.
//!
//! Input: a 4-byte header (transport, client side, the kernel's protocol and encryption), then
//! samples, each `[flags, seq_delta, len (u16, little-endian)]` and `len` bytes: flags bit 0 is
//! the side, bit 1 a packet cut short (its whole length larger than what was sampled).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealwatch::{
    deep::{examine, plaintext_mid_flow},
    events::Sample,
    streams::Streams,
};
use sealwatch_common::{
    Encryption, Protocol, Verdict,
    flow::FlowKey,
    net::{IPPROTO_TCP, IPPROTO_UDP},
};
use sealwatch_inspect::{
    quic::inspect_quic,
    tls::{inspect_dtls, inspect_tls},
};

fuzz_target!(|data: &[u8]| {
    let Some((&[transport, client, protocol, encryption], mut rest)) =
        data.split_first_chunk::<4>()
    else {
        return;
    };
    let tcp = transport & 1 == 0;
    let proto = if tcp { IPPROTO_TCP } else { IPPROTO_UDP };
    let client = client & 1;
    let kernel = Verdict::new(
        Protocol::from_u8(protocol),
        Encryption::from_u8(encryption & 3),
    );

    let mut streams = Streams::new(tcp);
    let mut seq = [1000u32, 5000u32];
    let mut offset = [0u32; 2];
    while let Some((&[flags, delta, len_lo, len_hi], tail)) = rest.split_first_chunk::<4>() {
        let take = usize::from(u16::from_le_bytes([len_lo, len_hi])).min(tail.len());
        let (bytes, tail) = tail.split_at(take);
        rest = tail;
        let side = usize::from(flags & 1);
        // Mostly in order; a delta other than 0x80 moves the segment back or ahead (resent,
        // reordered, a gap).
        let shift = i32::from(delta) - 0x80;
        let s = seq[side].wrapping_add_signed(shift);
        let payload_len = if flags & 2 != 0 {
            take as u32 + u32::from(flags >> 2) * 64
        } else {
            take as u32
        };
        // Mid-flow re-samples are judged packet by packet.
        let _ = plaintext_mid_flow(bytes, proto, payload_len);
        streams.add(&Sample {
            key: FlowKey::default(),
            side: side as u8,
            ifindex: 1,
            seq: s,
            offset: offset[side],
            ts_ns: 0,
            payload_len,
            data: bytes.to_vec(),
        });
        seq[side] = s.wrapping_add(payload_len);
        offset[side] = offset[side].saturating_add(payload_len);
    }

    for budget in [4096, 64] {
        let (mut findings, _) = examine(proto, kernel, &streams, client, budget);
        findings.read_handshake(&streams, client);
    }
    // The inspectors directly too, whatever the examination decided.
    let (cs, ss) = (streams.side(client), streams.side(client ^ 1));
    let _ = inspect_tls(cs.bytes(), ss.bytes());
    let c: Vec<&[u8]> = cs.datagrams().collect();
    let s: Vec<&[u8]> = ss.datagrams().collect();
    let _ = inspect_dtls(&c, &s);
    let _ = inspect_quic(&c, &s);
});
