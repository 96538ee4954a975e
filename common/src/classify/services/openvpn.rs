//! OpenVPN: the hard-reset control packets that open every TLS-mode session, over UDP as they
//! are and over TCP behind a 2-byte packet length.
//!
//! A packet is an opcode/key-id byte, the sender's random 8-byte session id, then fields whose
//! place depends on how the control channel is protected:
//! - plain: ack count, acked packet ids and the peer's session id (server only), packet id 0;
//! - `--tls-auth`: an HMAC (16 to 64 bytes), a replay packet id of 1 and a timestamp, then the
//!   plain fields;
//! - `--tls-crypt` / `--tls-crypt-v2`: packet id 1 and a timestamp, a 32-byte tag, and the plain
//!   fields encrypted.
//!
//! Only the opening resets are named (client v2 opcode 7 or v3 opcode 10, server opcode 8, key id
//! 0): the zero packet ids, ack counts and replay ids in them are what random bytes almost never
//! reproduce. Data and later control packets look random and carry no such structure.
//! `--tls-auth` with a 64-byte HMAC (SHA-512) puts its replay id beyond the 64-byte window and is
//! not recognised; nor is static-key mode, which has no handshake at all.

use super::super::{Context, Encryption, Protocol, Verdict, be16, be32};

/// `P_CONTROL_HARD_RESET_CLIENT_V2` (7) with key id 0.
const CLIENT_RESET_V2: u8 = 7 << 3;
/// `P_CONTROL_HARD_RESET_SERVER_V2` (8) with key id 0.
const SERVER_RESET_V2: u8 = 8 << 3;
/// `P_CONTROL_HARD_RESET_CLIENT_V3` (10, `--tls-crypt-v2`) with key id 0.
const CLIENT_RESET_V3: u8 = 10 << 3;
/// Opcode and session id.
const HEADER_LEN: usize = 9;
/// tls-auth HMAC sizes whose replay id still falls inside the window: MD5, SHA-1, SHA-256,
/// SHA-384.
const HMAC_LENS: [usize; 4] = [16, 20, 32, 48];
/// Plain client reset: header, empty ack array, packet id.
const PLAIN_CLIENT_LEN: u32 = 14;
/// Plain server reset: header, one ack, the client's session id, packet id.
const PLAIN_SERVER_LEN: u32 = 26;
/// tls-crypt resets: header, packet id and time (8), tag (32), then the encrypted ack count and
/// packet id (5, and 12 more for the server's ack). The tls-crypt-v2 server in
/// openvpn-tlscrypt.pcap sends 6 bytes more.
const CRYPT_CLIENT_LEN: u32 = 54;
const CRYPT_SERVER_LENS: core::ops::RangeInclusive<u32> = 66..=72;
/// A v3 reset also carries the client's wrapped key: 256 key bytes, a tag and a length.
const CRYPT_V3_CLIENT_MIN_LEN: u32 = 300;
/// Replay timestamps before September 2014 are not believed: TLS-mode OpenVPN checks
/// certificate dates, so its peers keep real clocks.
const MIN_TIMESTAMP: u32 = 0x5400_0000;

const OPENVPN: Verdict = Verdict::new(Protocol::Openvpn, Encryption::Encrypted);

#[inline(never)]
pub(super) fn udp(w: &[u8], ctx: &Context) -> Option<Verdict> {
    reset(w, ctx.payload_len)
}

#[inline(never)]
pub(super) fn tcp(w: &[u8], ctx: &Context) -> Option<Verdict> {
    let len = u32::from(be16(w, 0)?);
    if len.checked_add(2)? > ctx.payload_len {
        return None;
    }
    reset(w.get(2..)?, len)
}

/// `p`: one packet, `len` bytes long (the window may hold less).
#[inline(always)]
fn reset(p: &[u8], len: u32) -> Option<Verdict> {
    let &opcode = p.first()?;
    // Zeros are the kernel's padding, not a peer's random session id.
    if be32(p, 1)? | be32(p, 5)? == 0 {
        return None;
    }
    // Exact lengths: the resets carry no payload, and ONC RPC or DNS messages that happen to
    // share the first bytes (an XID or id of 0x38.., zero fields) are multiples of 4 or longer.
    let ok = match opcode {
        CLIENT_RESET_V2 => {
            (len == PLAIN_CLIENT_LEN && plain_acks(p, HEADER_LEN, 0))
                || tls_auth(p, len, PLAIN_CLIENT_LEN, 0)
                || (len == CRYPT_CLIENT_LEN && tls_crypt(p))
        }
        SERVER_RESET_V2 => {
            (len == PLAIN_SERVER_LEN && plain_acks(p, HEADER_LEN, 1))
                || tls_auth(p, len, PLAIN_SERVER_LEN, 1)
                || (CRYPT_SERVER_LENS.contains(&len) && tls_crypt(p))
        }
        CLIENT_RESET_V3 => len >= CRYPT_V3_CLIENT_MIN_LEN && tls_crypt(p),
        _ => false,
    };
    ok.then_some(OPENVPN)
}

/// At `at`: the ack count (0 for the client, 1 for the server), the acked packet id 0 and the
/// peer's session id when there is an ack, then this packet's id, 0. Fields beyond the window
/// are taken on trust; `at` is never so far that none is checked.
#[inline(always)]
fn plain_acks(p: &[u8], at: usize, acks: u8) -> bool {
    let zero_at = |i: usize| be32(p, at.wrapping_add(i)).is_none_or(|id| id == 0);
    match p.get(at) {
        Some(&0) if acks == 0 => zero_at(1),
        // Acked id 0, then the client's (non-zero) session id, then packet id 0.
        Some(&1) if acks == 1 => zero_at(1) && zero_at(13),
        _ => false,
    }
}

/// tls-auth: an HMAC, then replay packet id 1 and a timestamp, then the plain fields; `plain_len`
/// is the packet's length without the 8 replay bytes and the HMAC.
#[inline(always)]
fn tls_auth(p: &[u8], len: u32, plain_len: u32, acks: u8) -> bool {
    for hmac in HMAC_LENS {
        let replay_at = HEADER_LEN.wrapping_add(hmac);
        let auth_len = plain_len.wrapping_add(8).wrapping_add(hmac as u32);
        if len == auth_len
            && be32(p, replay_at) == Some(1)
            && timestamp_ok(p, replay_at.wrapping_add(4))
            && (p.get(replay_at.wrapping_add(8)).is_none()
                || plain_acks(p, replay_at.wrapping_add(8), acks))
        {
            return true;
        }
    }
    false
}

/// tls-crypt: a packet id whose low half is 1, then a timestamp, the tag and ciphertext. The
/// high half is not checked: with tls-crypt-v2 it is not zero (`0f00` from OpenVPN 2.6.14,
/// `0a01` in openvpn-tlscrypt.pcap).
#[inline(always)]
fn tls_crypt(p: &[u8]) -> bool {
    be16(p, HEADER_LEN.wrapping_add(2)) == Some(1) && timestamp_ok(p, HEADER_LEN.wrapping_add(4))
}

/// A replay timestamp at `at`, or the window ended before it.
#[inline(always)]
fn timestamp_ok(p: &[u8], at: usize) -> bool {
    be32(p, at).is_none_or(|t| t >= MIN_TIMESTAMP)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::classify::services::tests::{Bytes::Hex, Fixture, tcp, udp};
    use crate::classify::tests::hex;

    pub(crate) const FIXTURES: &[Fixture] = &[
        // openvpn.pcap (corpus): plain resets, UDP and TCP.
        udp(
            "OpenVPN client reset v2, plain, openvpn.pcap",
            Hex("3839fded2daa10a4370000000000"),
            14,
            OPENVPN,
        ),
        udp(
            "OpenVPN server reset v2, plain, openvpn.pcap",
            Hex("409421917de7267729010000000039fded2daa10a43700000000"),
            26,
            OPENVPN,
        ),
        tcp(
            "OpenVPN client reset v2 over TCP, plain, openvpn.pcap",
            Hex("000e38507a28a78275788d0000000000"),
            16,
            OPENVPN,
        ),
        tcp(
            "OpenVPN server reset v2 over TCP, plain, openvpn.pcap",
            Hex("001a409ad747beb24d8a1b0100000000507a28a78275788d00000000"),
            28,
            OPENVPN,
        ),
        // tls-auth with HMAC-SHA1, openvpn.pcap.
        udp(
            "OpenVPN client reset v2, tls-auth SHA-1, openvpn.pcap",
            Hex(
                "38b02ccff1b5f0174fc091666e3b124bada39173317b939722d1fe63be0000000157a1c15f0000000000",
            ),
            42,
            OPENVPN,
        ),
        udp(
            "OpenVPN server reset v2, tls-auth SHA-1, openvpn.pcap",
            Hex(
                "40f77fc2efdbe23f57dec4c8d5654d0723bf8c0be54138563270cfae130000000157a1c15f0100000000b02ccff1b5f0174f",
            ),
            54,
            OPENVPN,
        ),
        tcp(
            "OpenVPN client reset v2 over TCP, tls-auth SHA-1, openvpn.pcap",
            Hex(
                "002a3892b8af4a777fc742781024c276d9a1a8c2321879a02264b3ccbc807700000001577e73b30000000000",
            ),
            44,
            OPENVPN,
        ),
        tcp(
            "OpenVPN server reset v2 over TCP, tls-auth SHA-1, openvpn.pcap",
            Hex(
                "003640d916c4860cb1d8cfa373cfd663159fc0253b52973b189f7f6cb9df8b00000001577e737d010000000092b8af4a777f",
            ),
            56,
            OPENVPN,
        ),
        // tls-crypt over TCP, openvpn.pcap.
        tcp(
            "OpenVPN client reset v2 over TCP, tls-crypt, openvpn.pcap",
            Hex(
                "0036382a56d979d99eccf40000000163cf4ff5b89824b0aa4e93c089c1e24af5443766b5cab18c23c17d51081eb196a22908",
            ),
            56,
            OPENVPN,
        ),
        tcp(
            "OpenVPN server reset v2 over TCP, tls-crypt, openvpn.pcap",
            Hex(
                "0042402f64c09039de36230000000163cf4ff53036751e70bae8a84698d78c132edcf685ea93abfb4eda16e29f47208abaee",
            ),
            68,
            OPENVPN,
        ),
        // tls-crypt-v2, openvpn-tlscrypt.pcap: a v3 client reset with its wrapped key.
        udp(
            "OpenVPN client reset v3, tls-crypt-v2, openvpn-tlscrypt.pcap",
            Hex(
                "50aae06512392a3d710a010001625a9e9785ead7700d5d18dac8f1eb9b317b46a2fc3519cab585d134a9251798df506f",
            ),
            353,
            OPENVPN,
        ),
        udp(
            "OpenVPN server reset v2, tls-crypt-v2, openvpn-tlscrypt.pcap",
            Hex(
                "4053c96dd083724fd200000001625a9e9721ea783a859f9c2d8edd04f1e1c9f78f4493a69dfacd5cf0b0c1873cf1aa7d",
            ),
            72,
            OPENVPN,
        ),
        // OpenVPN 2.6.14 (Debian 12) on loopback, --dev null: the modes the corpus lacks.
        udp(
            "OpenVPN client reset v2, tls-crypt, OpenVPN 2.6.14 on loopback",
            Hex(
                "3877ddcb2cb4f3e1c9000000016b04784624ea122c48d205b95e701c35e079966f695f7fd185d91427f6662d3252da1d22ce4d12a3d7",
            ),
            54,
            OPENVPN,
        ),
        udp(
            "OpenVPN server reset v2, tls-crypt, OpenVPN 2.6.14 on loopback",
            Hex(
                "405d7a57b5fe3dfa24000000016b04784643f5fafdf9f2572370fee0723826fe0e2229212b34426a49a217f04d93e0c3",
            ),
            66,
            OPENVPN,
        ),
        tcp(
            "OpenVPN client reset v3 over TCP, tls-crypt-v2, OpenVPN 2.6.14 on loopback",
            Hex(
                "016150c4bc35bedfb9ebb20f0000016b0478584fe0b22ee93aba15388aaff31d28f68a85f86b68e6828298b0315a6aa4",
            ),
            355,
            OPENVPN,
        ),
        tcp(
            "OpenVPN server reset v2 over TCP, tls-crypt-v2, OpenVPN 2.6.14 on loopback",
            Hex(
                "00424074068042c2edc8f00f0000016b047857cf2bda3eb8899dcb2f364abbaf6e78ba47a62cafc99f48783b7263eb3d",
            ),
            68,
            OPENVPN,
        ),
    ];

    #[test]
    fn resets_from_captures() {
        for f in FIXTURES {
            let w = f.window();
            let got = if f.udp {
                super::udp(&w, &f.ctx())
            } else {
                super::tcp(&w, &f.ctx())
            };
            assert_eq!(got, Some(f.expect), "{}", f.name);
        }
    }

    #[test]
    fn sha512_tls_auth_is_out_of_reach() {
        // NordVPN-style tls-auth with HMAC-SHA512 (openvpn.pcap): the replay id is at byte 73.
        let nord = hex(
            "388fdd2b9e41d8abeac6c37c832b64c158799064f06d18e82c26dc094d72415e0f47d882a7f8a4582cd0d9b543f6eb82440c89e3ff168dd27967b4bf6fd504",
        );
        assert_eq!(super::udp(&nord, &Context::udp(86)), None);
    }

    #[test]
    fn broken_fields_are_not_openvpn() {
        let plain = hex("3839fded2daa10a4370000000000");
        assert_eq!(
            super::udp(&plain, &Context::udp(13)),
            None,
            "shorter than a reset"
        );
        let mut key1 = plain.clone();
        key1[0] = 0x39; // key id 1: not an opening reset
        assert_eq!(super::udp(&key1, &Context::udp(14)), None);
        let mut acked = plain.clone();
        acked[9] = 1; // a client reset acknowledges nothing
        assert_eq!(super::udp(&acked, &Context::udp(14)), None);
        let mut numbered = plain.clone();
        numbered[13] = 7; // the first packet is number 0
        assert_eq!(super::udp(&numbered, &Context::udp(14)), None);
        // A lone opcode byte followed by the kernel's zero padding.
        let mut padded = [0u8; 64];
        padded[0] = CLIENT_RESET_V2;
        assert_eq!(super::udp(&padded, &Context::udp(14)), None);
        // An ONC RPC (portmap) reply, nfsv3.pcap: XID 0x38434f69, then mostly zeros.
        let rpc = hex(
            "38434f690000000100000000000000000000000000000000000000123133392e32352e32322e3130322e342e32340000",
        );
        assert_eq!(super::udp(&rpc, &Context::udp(48)), None);
        // A DNSCrypt certificate answer whose id is 0x38ed, avast_securedns.pcapng.
        let dns = hex(
            "38ed81800001000100000000013209536543555245646e7305415661537403634f4d0000100001c00c0010000100000000007d7c444e53430001000075b186ef",
        );
        assert_eq!(super::udp(&dns, &Context::udp(176)), None);
        assert_eq!(super::udp(&dns, &Context::udp(54)), None);
        // TCP length longer than the segment.
        let tcp_reset = hex("000e38507a28a78275788d0000000000");
        assert_eq!(super::tcp(&tcp_reset, &Context::tcp(15, true)), None);
    }
}
