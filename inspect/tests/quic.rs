//! QUIC Initial packets: the RFC 9001 and RFC 9369 test vectors, and flights built the way real
//! clients and servers send them (scattered CRYPTO frames, a post-quantum hello over two
//! datagrams, coalesced packets, Retry, compatible version negotiation).
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "tests panic with a message"
)]

mod support;

use sealwatch_inspect::quic::{MAX_DATAGRAMS, inspect_quic};
use sealwatch_inspect::tls::{TlsDetails, TlsVersion, Transport, inspect_quic_crypto};
use support::quic::{
    CLIENT_DCID, CLIENT_SCID, DRAFT_29, SERVER_SCID, Sealer, V1, V2, chrome_like_flight,
    crypto_frame, handshake_type, initial_packet, long_header, server_hello, unhex,
};

const RFC9001: &str = include_str!("fixtures/rfc9001_initial.hex");
const RFC9369: &str = include_str!("fixtures/rfc9369_initial.hex");

fn side(text: &str, prefix: &str) -> Vec<u8> {
    let line = text.lines().find_map(|l| l.strip_prefix(prefix));
    unhex(line.expect("a fixture line"))
}

/// The CRYPTO frame of the RFCs' client Initial: the whole ClientHello (appendix A.2 of both).
const RFC_CLIENT_CRYPTO: &str = "
    060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868
    04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578
    616d706c652e636f6dff01000100000a00080006001d00170018001000070005
    04616c706e000500050100000000003300260024001d00209370b2c9caa47fba
    baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400
    0d0010000e0403050306030203080408050806002d00020101001c0002400100
    3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000
    75300901100f088394c8f03e51570806048000ffff";
/// The server Initial's frames: an ACK and the ServerHello (appendix A.3 of both).
const RFC_SERVER_FRAMES: &str = "
    02000000000600405a020000560303eefce7f7b37ba1d1632e96677825ddf739
    88cfc79825df566dc5430b9a045a1200130100002e00330024001d00209d3c94
    0d89690b84d08a60993c144eca684d1081287c834d5311bcf32bb9da1a002b00
    020304";

/// The RFCs' plain client and server Initial packets: header (ending in the packet number) and
/// payload, as appendix A.2 and A.3 give them.
fn rfc_plain(version: u32) -> [(Vec<u8>, u64, Vec<u8>); 2] {
    let (client_header, server_header) = match version {
        V1 => (
            "c300000001088394c8f03e5157080000449e00000002",
            "c1000000010008f067a5502a4262b50040750001",
        ),
        _ => (
            "d36b3343cf088394c8f03e5157080000449e00000002",
            "d16b3343cf0008f067a5502a4262b50040750001",
        ),
    };
    let mut client_payload = unhex(RFC_CLIENT_CRYPTO);
    client_payload.resize(client_payload.len() + 917, 0);
    [
        (unhex(client_header), 2, client_payload),
        (unhex(server_header), 1, unhex(RFC_SERVER_FRAMES)),
    ]
}

#[test]
fn the_test_sealer_reproduces_the_rfc_packets() {
    for (version, text) in [(V1, RFC9001), (V2, RFC9369)] {
        let [(ch, cpn, cp), (sh, spn, sp)] = rfc_plain(version);
        let dcid = unhex("8394c8f03e515708");
        let client = Sealer::initial(version, &dcid, false).seal(&ch, cpn, &cp);
        assert_eq!(client, side(text, "client "), "{version:#x} client");
        let server = Sealer::initial(version, &dcid, true).seal(&sh, spn, &sp);
        assert_eq!(server, side(text, "server "), "{version:#x} server");
    }
}

/// The ClientHello of RFC 9001 appendix A.2, read from the protected packet.
fn check_rfc_client_hello(d: &TlsDetails) {
    assert_eq!(d.transport, Transport::Quic);
    assert!(d.client_hello_seen && d.client_hello_complete);
    assert_eq!(d.server_name.as_deref(), Some("example.com"));
    assert_eq!(
        (d.alpn.as_deref(), d.alpn_negotiated),
        (Some("alpn"), false)
    );
    assert_eq!(d.offered_versions, [TlsVersion::Tls13]);
    assert_eq!(d.offered_groups, [0x001d, 0x0017, 0x0018]);
    assert_eq!(d.key_share_groups, [0x001d]);
    // Worked out by hand from the hello (Python's hashlib for the two hashes).
    assert_eq!(
        d.ja4.as_deref(),
        Some("q13d0211an_62ed6f6ca7ad_4d634acda6c0")
    );
}

#[test]
fn rfc_client_initials_v1_and_v2() {
    let hello = &unhex(RFC_CLIENT_CRYPTO)[4..];
    for text in [RFC9001, RFC9369] {
        let client = side(text, "client ");
        let d = inspect_quic(&[&client], &[]).expect("the client Initial opens");
        check_rfc_client_hello(&d);
        assert_eq!(d.pq, Some(false));
        assert!(!d.server_hello_seen);
        assert_eq!(Some(d), inspect_quic_crypto(hello, &[]));
    }
}

#[test]
fn rfc_server_initials_v1_and_v2() {
    for text in [RFC9001, RFC9369] {
        let (client, server) = (side(text, "client "), side(text, "server "));
        let d = inspect_quic(&[&client], &[&server]).expect("both open");
        check_rfc_client_hello(&d);
        assert!(d.server_hello_seen);
        assert_eq!(d.version, Some(TlsVersion::Tls13));
        assert_eq!(d.cipher_name, Some("TLS_AES_128_GCM_SHA256"));
        assert_eq!((d.group, d.group_name), (Some(0x001d), Some("x25519")));
        assert_eq!(d.pq, Some(false));
        // The server's keys come from the client's connection ID: alone, it opens nothing,
        // and neither do the sides swapped.
        assert_eq!(inspect_quic(&[], &[&server]), None);
        assert_eq!(inspect_quic(&[&server], &[&client]), None);
    }
    // Each version's packet is opened with its own salt and labels, not the other's.
    let v1 = side(RFC9001, "client ");
    let mut v1_as_v2 = v1.clone();
    v1_as_v2[1..5].copy_from_slice(&V2.to_be_bytes());
    v1_as_v2[0] = (v1_as_v2[0] & 0xcf) | 0x10;
    assert_eq!(inspect_quic(&[&v1_as_v2], &[]), None);
}

#[test]
fn chrome_like_post_quantum_flights() {
    for version in [V1, V2, DRAFT_29] {
        let f = chrome_like_flight(version);
        assert!(f.client_hello.len() > 1500, "{}", f.client_hello.len());
        let client: Vec<&[u8]> = f.client.iter().map(Vec::as_slice).collect();
        let server: Vec<&[u8]> = f.server.iter().map(Vec::as_slice).collect();
        let d = inspect_quic(&client, &server).expect("the flight opens");
        // Exactly what reading the CRYPTO streams in clear gives.
        assert_eq!(
            Some(&d),
            inspect_quic_crypto(&f.client_hello, &f.server_hello).as_ref(),
            "{version:#x}"
        );
        assert_eq!(d.server_name.as_deref(), Some("pq.svc.internal"));
        assert_eq!(d.alpn.as_deref(), Some("h3"));
        assert_eq!(d.offered_groups, [0x11ec, 0x001d, 0x0017, 0x0018]);
        assert_eq!(d.key_share_groups, [0x11ec, 0x001d]);
        assert_eq!(
            (d.group, d.group_name, d.pq),
            (Some(0x11ec), Some("X25519MLKEM768"), Some(true))
        );
        assert!(
            d.ja4
                .as_deref()
                .is_some_and(|j| j.starts_with("q13d0309h3_"))
        );
        assert!(d.client_hello_complete && d.server_hello_seen);

        // Without the second datagram the hello is cut: what its first part holds (SNI, the
        // post-quantum offer) is still reported, the JA4 is not.
        let d = inspect_quic(&client[..1], &[]).expect("the first datagram opens");
        assert!(d.client_hello_seen && !d.client_hello_complete);
        assert_eq!(d.server_name.as_deref(), Some("pq.svc.internal"));
        assert_eq!((d.pq, d.ja4), (Some(true), None));
        // Without the first one, the stream has no start.
        assert_eq!(inspect_quic(&client[1..], &[]), None);
        // Datagrams in the other order read the same.
        let swapped = [client[1], client[0]];
        assert_eq!(
            inspect_quic(&swapped, &server).map(|d| d.ja4),
            Some(inspect_quic_crypto(&f.client_hello, &[]).and_then(|d| d.ja4))
        );
    }
}

#[test]
fn retry_starts_over_under_new_keys() {
    let hello = support::quic::pq_client_hello("retry.svc.internal");
    let retried_dcid = b"\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b";
    let first_keys = Sealer::initial(V1, CLIENT_DCID, false);
    let retry_keys = Sealer::initial(V1, retried_dcid, false);
    let payload = |data: &[u8], at: usize| {
        let mut p = crypto_frame(at, data);
        p.resize(1150, 0);
        p
    };
    let (a, b) = hello.split_at(1000);
    let client = [
        initial_packet(&first_keys, V1, CLIENT_DCID, CLIENT_SCID, 0, &payload(a, 0)),
        initial_packet(
            &first_keys,
            V1,
            CLIENT_DCID,
            CLIENT_SCID,
            1,
            &payload(b, 1000),
        ),
        // After the Retry: the same hello again from offset 0, to the server's new ID.
        initial_packet(
            &retry_keys,
            V1,
            retried_dcid,
            CLIENT_SCID,
            2,
            &payload(a, 0),
        ),
        initial_packet(
            &retry_keys,
            V1,
            retried_dcid,
            CLIENT_SCID,
            3,
            &payload(b, 1000),
        ),
    ];
    let mut retry = vec![0xf0];
    retry.extend(V1.to_be_bytes());
    retry.push(u8::try_from(CLIENT_SCID.len()).unwrap());
    retry.extend(CLIENT_SCID);
    retry.push(u8::try_from(retried_dcid.len()).unwrap());
    retry.extend(retried_dcid);
    retry.extend([0x70; 40]);
    let server_keys = Sealer::initial(V1, retried_dcid, true);
    let sh = server_hello(0x1302, 0x001d, 32);
    let mut p = vec![0x02, 0x03, 0x00, 0x00, 0x00];
    p.extend(crypto_frame(0, &sh));
    let server = [
        retry,
        initial_packet(&server_keys, V1, CLIENT_SCID, SERVER_SCID, 0, &p),
    ];
    let client: Vec<&[u8]> = client.iter().map(Vec::as_slice).collect();
    let server: Vec<&[u8]> = server.iter().map(Vec::as_slice).collect();
    let d = inspect_quic(&client, &server).expect("opens");
    assert_eq!(d.server_name.as_deref(), Some("retry.svc.internal"));
    assert!(d.client_hello_complete && d.server_hello_seen);
    assert_eq!(d.cipher_name, Some("TLS_AES_256_GCM_SHA384"));
    // A capture that starts after the Retry still opens, with the new ID's keys.
    let d = inspect_quic(&client[2..], &server).expect("opens");
    assert!(d.client_hello_complete && d.server_hello_seen);
}

#[test]
fn compatible_version_negotiation_answers_v1_in_v2() {
    let f = chrome_like_flight(V1);
    let keys = Sealer::initial(V2, CLIENT_DCID, true);
    let sh = server_hello(0x1301, 0x001d, 32);
    let server = initial_packet(
        &keys,
        V2,
        CLIENT_SCID,
        SERVER_SCID,
        0,
        &crypto_frame(0, &sh),
    );
    let client: Vec<&[u8]> = f.client.iter().map(Vec::as_slice).collect();
    let d = inspect_quic(&client, &[&server]).expect("opens");
    assert!(d.client_hello_complete && d.server_hello_seen);
    assert_eq!((d.group_name, d.pq), (Some("x25519"), Some(false)));
}

#[test]
fn only_initial_packets_are_read() {
    // A 0-RTT packet coalesced after the client's Initial, and one before it that the walk
    // cannot get past: a datagram that starts with a short header holds nothing for us.
    let f = chrome_like_flight(V1);
    let mut first = f.client[0].clone();
    let zero_rtt = long_header(V1, 0xd0, SERVER_SCID, CLIENT_SCID, 2, 30);
    first.extend(&zero_rtt);
    first.extend([0x11; 30 + 16]);
    let d = inspect_quic(&[&first, &f.client[1]], &[]).expect("opens");
    assert!(d.client_hello_complete);
    let mut short_first = vec![0x41, 1, 2, 3, 4];
    short_first.extend(&f.client[0]);
    assert_eq!(inspect_quic(&[&short_first, &f.client[1]], &[]), None);
    // A Handshake packet is not opened with Initial keys even when it would open: its
    // CRYPTO data belongs to another stream.
    let keys = Sealer::initial(V1, CLIENT_DCID, false);
    let header = long_header(V1, handshake_type(V1), CLIENT_DCID, CLIENT_SCID, 0, 1150);
    let mut payload = crypto_frame(0, &f.client_hello);
    payload.resize(1150, 0);
    let handshake = keys.seal(&header, 0, &payload);
    assert_eq!(inspect_quic(&[&handshake], &[]), None);
}

#[test]
fn only_the_first_datagrams_count() {
    let f = chrome_like_flight(V1);
    // ACK-only Initials first, the hello after them.
    let keys = Sealer::initial(V1, CLIENT_DCID, false);
    let mut ack = vec![0x02, 0x00, 0x00, 0x00, 0x00];
    ack.resize(1150, 0);
    let filler = initial_packet(&keys, V1, CLIENT_DCID, CLIENT_SCID, 9, &ack);
    let mut client: Vec<&[u8]> = vec![&filler; MAX_DATAGRAMS - 2];
    client.extend(f.client.iter().map(Vec::as_slice));
    assert!(inspect_quic(&client, &[]).is_some_and(|d| d.client_hello_complete));
    client.insert(0, &filler);
    let d = inspect_quic(&client, &[]).expect("the first part still opens");
    assert!(!d.client_hello_complete);
}
