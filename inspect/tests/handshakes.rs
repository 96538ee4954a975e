//! Handshakes captured from real clients and servers (tests/fixtures, see the comment at the
//! top of each file for how), and hand-built hellos for what OpenSSL 3.0 cannot produce.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "tests panic with a message"
)]

use sealwatch_inspect::tls::{
    TlsDetails, TlsVersion, Transport, inspect_dtls, inspect_quic_crypto, inspect_tls,
};

/// A fixture: the client's and the server's bytes, one entry per `client`/`server` line (TCP
/// fixtures have one line per direction, DTLS ones one per datagram).
struct Fixture {
    client: Vec<Vec<u8>>,
    server: Vec<Vec<u8>>,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

fn fixture(text: &str) -> Fixture {
    let mut f = Fixture {
        client: Vec::new(),
        server: Vec::new(),
    };
    for line in text.lines() {
        if let Some(hex) = line.strip_prefix("client ") {
            f.client.push(unhex(hex));
        } else if let Some(hex) = line.strip_prefix("server ") {
            f.server.push(unhex(hex));
        }
    }
    f
}

const TLS13: &str = include_str!("fixtures/tls13.hex");
const TLS12_ECDHE: &str = include_str!("fixtures/tls12_ecdhe.hex");
const TLS10: &str = include_str!("fixtures/tls10.hex");
const NULL_CIPHER: &str = include_str!("fixtures/null.hex");
const HELLO_RETRY: &str = include_str!("fixtures/hrr.hex");
const DTLS12: &str = include_str!("fixtures/dtls12.hex");

fn tcp(text: &str) -> (Vec<u8>, Vec<u8>) {
    let f = fixture(text);
    (f.client.concat(), f.server.concat())
}

fn inspect_fixture(text: &str) -> TlsDetails {
    let (c, s) = tcp(text);
    inspect_tls(&c, &s).expect("a TLS handshake")
}

fn datagrams(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(Vec::as_slice).collect()
}

#[test]
fn tls13_x25519_with_sni_and_alpn() {
    let d = inspect_fixture(TLS13);
    assert_eq!(d.transport, Transport::Tcp);
    assert_eq!(d.version, Some(TlsVersion::Tls13));
    assert_eq!(d.version.map(TlsVersion::name), Some("1.3"));
    assert_eq!(
        d.offered_versions,
        [
            TlsVersion::Tls13,
            TlsVersion::Tls12,
            TlsVersion::Tls11,
            TlsVersion::Tls10
        ]
    );
    assert_eq!(d.cipher, Some(0x1302));
    assert_eq!(d.cipher_name, Some("TLS_AES_256_GCM_SHA384"));
    assert_eq!(d.server_name.as_deref(), Some("api.svc.internal"));
    // TLS 1.3 sends the server's choice encrypted: the offer is what we can tell.
    assert_eq!(d.alpn.as_deref(), Some("h2,http/1.1"));
    assert!(!d.alpn_negotiated);
    assert_eq!(d.offered_groups, [0x001d]);
    assert_eq!(d.key_share_groups, [0x001d]);
    assert_eq!((d.group, d.group_name), (Some(0x001d), Some("x25519")));
    assert_eq!(d.pq, Some(false));
    // Reference value from FoxIO's own ja4.py over the same capture.
    assert_eq!(
        d.ja4.as_deref(),
        Some("t13d3111h2_e8f1e7e78f70_1f22a2ca17c4")
    );
    assert!(d.weak.is_empty());
    assert!(d.client_hello_complete && d.server_hello_seen && !d.hello_retry);
}

#[test]
fn tls12_ecdhe_curve_comes_from_the_server_key_exchange() {
    let d = inspect_fixture(TLS12_ECDHE);
    assert_eq!(d.version, Some(TlsVersion::Tls12));
    assert_eq!(d.offered_versions, [TlsVersion::Tls12]);
    assert_eq!(
        d.cipher_name,
        Some("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
    );
    assert_eq!(d.server_name.as_deref(), Some("db.svc.internal"));
    // The server did not take up ALPN: the offer stays an offer.
    assert_eq!(
        (d.alpn.as_deref(), d.alpn_negotiated),
        (Some("http/1.1"), false)
    );
    assert_eq!(d.offered_groups, [0x0018, 0x0017]);
    assert_eq!((d.group, d.group_name), (Some(0x0018), Some("secp384r1")));
    assert_eq!(d.pq, Some(false));
    assert_eq!(
        d.ja4.as_deref(),
        Some("t12d0208h1_6d4732649639_e7e480e5a997")
    );
    assert!(d.weak.is_empty());

    // A sample that ends inside the certificate does not reach the curve.
    let (c, s) = tcp(TLS12_ECDHE);
    let d = inspect_tls(&c, &s[..200]).expect("TLS");
    assert_eq!((d.version, d.group), (Some(TlsVersion::Tls12), None));
    assert_eq!(d.pq, Some(false), "no TLS 1.2 group is post-quantum");
}

#[test]
fn tls10_is_weak() {
    let d = inspect_fixture(TLS10);
    assert_eq!(d.version.map(TlsVersion::name), Some("1.0"));
    assert_eq!(d.cipher_name, Some("TLS_RSA_WITH_AES_128_CBC_SHA"));
    assert_eq!(d.server_name, None);
    assert_eq!(d.weak, ["tls<1.2"]);
    assert_eq!(
        d.ja4.as_deref(),
        Some("t10i020300_a5878986a7c9_23f7d3b00788")
    );
    // Without the server's answer the client's best offer is the ceiling.
    let (c, _) = tcp(TLS10);
    let d = inspect_tls(&c, &[]).expect("TLS");
    assert_eq!((d.version, d.server_hello_seen), (None, false));
    assert_eq!(d.weak, ["tls<1.2"]);
}

#[test]
fn null_cipher_is_weak() {
    let d = inspect_fixture(NULL_CIPHER);
    assert_eq!(d.version, Some(TlsVersion::Tls12));
    assert_eq!(
        (d.cipher, d.cipher_name),
        (Some(0x0002), Some("TLS_RSA_WITH_NULL_SHA"))
    );
    assert_eq!(d.server_name.as_deref(), Some("legacy.svc.internal"));
    assert_eq!(d.weak, ["null-cipher"]);
    assert_eq!(
        d.ja4.as_deref(),
        Some("t12d020500_a0f473027383_dd2006f5fa1e")
    );
}

#[test]
fn hello_retry_request() {
    let d = inspect_fixture(HELLO_RETRY);
    assert!(d.hello_retry && d.server_hello_seen);
    assert_eq!(d.version, Some(TlsVersion::Tls13));
    assert_eq!(d.offered_groups, [0x0017, 0x001d]);
    assert_eq!(d.key_share_groups, [0x0017], "the first hello's share");
    assert_eq!(d.group_name, Some("x25519"));
    // The first ClientHello's fingerprint (FoxIO's ja4.py gives the second the same one).
    assert_eq!(
        d.ja4.as_deref(),
        Some("t13d311000_e8f1e7e78f70_1f22a2ca17c4")
    );

    // Cut after the HelloRetryRequest record: it already names version, suite and group.
    let (c, s) = tcp(HELLO_RETRY);
    let hrr_record = 5 + usize::from(u16::from_be_bytes([s[3], s[4]]));
    let d = inspect_tls(&c, &s[..hrr_record]).expect("TLS");
    assert!(d.hello_retry && !d.server_hello_seen);
    assert_eq!(d.version, Some(TlsVersion::Tls13));
    assert_eq!(d.cipher_name, Some("TLS_AES_256_GCM_SHA384"));
    assert_eq!(d.group, Some(0x001d));
}

#[test]
fn dtls12_with_hello_verify_request() {
    let f = fixture(DTLS12);
    let d = inspect_dtls(&datagrams(&f.client), &datagrams(&f.server)).expect("DTLS");
    assert_eq!(d.transport, Transport::Dtls);
    assert_eq!(d.version, Some(TlsVersion::Tls12));
    assert_eq!(
        d.cipher_name,
        Some("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384")
    );
    assert_eq!(d.server_name.as_deref(), Some("media.svc.internal"));
    assert_eq!(d.offered_groups, [0x001d, 0x0017]);
    assert_eq!(d.group_name, Some("x25519"));
    assert_eq!(
        d.ja4.as_deref(),
        Some("dd2d280700_d943125447b4_e7e480e5a997")
    );
    // TCP bytes are no DTLS, and DTLS datagrams are no TLS stream.
    let (c, s) = tcp(TLS13);
    assert_eq!(inspect_dtls(&[&c], &[&s]), None);
    assert_eq!(inspect_tls(&f.client[0], &f.server[0]), None);
}

#[test]
fn a_cut_hello_still_yields_what_it_holds() {
    let (c, s) = tcp(TLS13);
    let record = 5 + usize::from(u16::from_be_bytes([c[3], c[4]]));
    // Cut inside the last extension (the key share): SNI, ALPN and groups are there.
    let d = inspect_tls(&c[..record - 1], &[]).expect("TLS");
    assert!(d.client_hello_seen && !d.client_hello_complete);
    assert_eq!(d.server_name.as_deref(), Some("api.svc.internal"));
    assert_eq!(d.alpn.as_deref(), Some("h2,http/1.1"));
    assert_eq!(d.offered_versions[0], TlsVersion::Tls13);
    assert_eq!(d.key_share_groups, [0x001d]);
    assert_eq!(
        d.ja4, None,
        "a fingerprint over part of a hello would be a wrong one"
    );
    assert_eq!(
        d.pq, None,
        "the cut part could have offered a post-quantum group"
    );
    // Cut inside the cipher list: nothing about versions can be told (a TLS 1.3 client says
    // 1.2 in its legacy version).
    let d = inspect_tls(&c[..60], &[]).expect("TLS");
    assert_eq!(
        (d.server_name.as_ref(), d.offered_versions.len()),
        (None, 0)
    );
    assert!(d.weak.is_empty());
    // Only the server side.
    let d = inspect_tls(&[], &s).expect("TLS");
    assert!(!d.client_hello_seen && d.server_hello_seen);
    assert_eq!(d.version, Some(TlsVersion::Tls13));
    assert_eq!(d.ja4, None);
}

#[test]
fn a_hello_split_over_two_records_reads_the_same() {
    let (c, s) = tcp(TLS13);
    let record = 5 + usize::from(u16::from_be_bytes([c[3], c[4]]));
    let payload = &c[5..record];
    let mut split = Vec::new();
    for part in [&payload[..100], &payload[100..]] {
        split.extend_from_slice(&[22, 3, 1]);
        split.extend_from_slice(&(part.len() as u16).to_be_bytes());
        split.extend_from_slice(part);
    }
    split.extend_from_slice(&c[record..]);
    assert_eq!(inspect_tls(&split, &s), inspect_tls(&c, &s));
}

#[test]
fn quic_crypto_frames_carry_bare_handshake_messages() {
    let (c, s) = tcp(TLS13);
    let body = |b: &[u8]| b[5..5 + usize::from(u16::from_be_bytes([b[3], b[4]]))].to_vec();
    let d = inspect_quic_crypto(&body(&c), &body(&s)).expect("QUIC");
    assert_eq!(d.transport, Transport::Quic);
    assert_eq!(
        d.ja4.as_deref(),
        Some("q13d3111h2_e8f1e7e78f70_1f22a2ca17c4")
    );
    assert_eq!(d.group_name, Some("x25519"));
    assert_eq!(inspect_quic_crypto(b"\x06\x00", b""), None);
}

#[test]
fn not_tls() {
    assert_eq!(inspect_tls(b"", b""), None);
    assert_eq!(
        inspect_tls(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200 OK\r\n"),
        None
    );
    assert_eq!(
        inspect_tls(b"SSH-2.0-OpenSSH_9.2\r\n", b"SSH-2.0-OpenSSH_9.2\r\n"),
        None
    );
    assert_eq!(inspect_tls(&[23, 3, 3, 0, 16, 1, 2, 3], &[]), None);
}

// ---- Hand-built hellos, for what OpenSSL 3.0 cannot send. ----

fn u16s(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn vec16(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

fn ext(ty: u16, body: &[u8]) -> Vec<u8> {
    let mut v = ty.to_be_bytes().to_vec();
    v.extend(vec16(body));
    v
}

fn sni(name: &str) -> Vec<u8> {
    let mut entry = vec![0];
    entry.extend(vec16(name.as_bytes()));
    ext(0x0000, &vec16(&entry))
}

fn alpn(names: &[&str]) -> Vec<u8> {
    let list: Vec<u8> = names
        .iter()
        .flat_map(|n| std::iter::once(n.len() as u8).chain(n.bytes()))
        .collect();
    ext(0x0010, &vec16(&list))
}

fn key_shares(shares: &[(u16, usize)]) -> Vec<u8> {
    let list: Vec<u8> = shares
        .iter()
        .flat_map(|&(group, len)| {
            let mut e = group.to_be_bytes().to_vec();
            e.extend((len as u16).to_be_bytes());
            e.extend(std::iter::repeat_n(0x5a, len));
            e
        })
        .collect();
    ext(0x0033, &vec16(&list))
}

/// The ServerHello key_share: a single entry, no list.
fn server_key_share(group: u16, len: usize) -> Vec<u8> {
    let mut e = group.to_be_bytes().to_vec();
    e.extend(vec16(&vec![0x6b; len]));
    ext(0x0033, &e)
}

/// A handshake message in one TLS record (records hold up to 16 KB, more than we build).
fn record(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let mut msg = vec![msg_type];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend_from_slice(body);
    let mut rec = vec![22, 3, 1];
    rec.extend(vec16(&msg));
    rec
}

fn client_hello(ciphers: &[u16], extensions: &[Vec<u8>]) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend([0x11; 32]);
    body.push(32);
    body.extend([0x22; 32]);
    body.extend(vec16(&u16s(ciphers)));
    body.extend([1, 0]);
    body.extend(vec16(&extensions.concat()));
    record(1, &body)
}

fn server_hello(cipher: u16, extensions: &[Vec<u8>]) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend([0x33; 32]);
    body.push(32);
    body.extend([0x22; 32]);
    body.extend(cipher.to_be_bytes());
    body.push(0);
    body.extend(vec16(&extensions.concat()));
    let mut out = record(2, &body);
    out.extend([20, 3, 3, 0, 1, 1]); // middlebox-compatibility ChangeCipherSpec
    out.extend([23, 3, 3, 0, 4, 9, 9, 9, 9]); // encrypted from here on
    out
}

/// A browser-like hello offering X25519MLKEM768 first, about 1.9 KB like Chrome's with its
/// encrypted_client_hello GREASE and padding.
fn pq_client_hello() -> Vec<u8> {
    client_hello(
        &[0x4a4a, 0x1301, 0x1302, 0x1303, 0xc02b],
        &[
            ext(0x0a0a, &[]),
            sni("pq.svc.internal"),
            alpn(&["h2", "http/1.1"]),
            ext(0x000a, &vec16(&u16s(&[0x2a2a, 0x11ec, 0x001d, 0x0017]))),
            ext(0x000d, &vec16(&u16s(&[0x0403, 0x0804, 0x0401]))),
            ext(0x002b, &[6, 0x3a, 0x3a, 3, 4, 3, 3]),
            key_shares(&[(0x2a2a, 1), (0x11ec, 1216), (0x001d, 32)]),
            ext(0xfe0d, &[0u8; 250]),
            ext(0x0015, &[0u8; 200]),
        ],
    )
}

#[test]
fn x25519mlkem768_is_post_quantum() {
    let c = pq_client_hello();
    assert!((1800..2048).contains(&c.len()), "{}", c.len());
    let s = server_hello(
        0x1301,
        &[ext(0x002b, &[3, 4]), server_key_share(0x11ec, 1120)],
    );
    let d = inspect_tls(&c, &s).expect("TLS");
    assert_eq!(d.offered_groups, [0x11ec, 0x001d, 0x0017]);
    assert_eq!(d.key_share_groups, [0x11ec, 0x001d]);
    assert_eq!(d.offered_versions, [TlsVersion::Tls13, TlsVersion::Tls12]);
    assert_eq!(
        (d.group, d.group_name),
        (Some(0x11ec), Some("X25519MLKEM768"))
    );
    assert_eq!(d.pq, Some(true));
    let ja4 = d.ja4.expect("a whole hello");
    assert!(ja4.starts_with("t13d0408h2_"), "{ja4}");

    // Cut inside the ML-KEM key share, both sides.
    let d = inspect_tls(&c[..1024], &s[..600]).expect("TLS");
    assert_eq!(d.server_name.as_deref(), Some("pq.svc.internal"));
    assert_eq!(d.key_share_groups, [0x11ec]);
    assert_eq!(d.group_name, Some("X25519MLKEM768"));
    assert_eq!(d.pq, Some(true));
    assert_eq!(d.ja4, None);

    // No answer seen: whether the client offered one.
    let d = inspect_tls(&c[..1024], &[]).expect("TLS");
    assert_eq!((d.group, d.pq), (None, Some(true)));

    // A server that prefers classical x25519.
    let s = server_hello(
        0x1301,
        &[ext(0x002b, &[3, 4]), server_key_share(0x001d, 32)],
    );
    let d = inspect_tls(&c, &s).expect("TLS");
    assert_eq!((d.group_name, d.pq), (Some("x25519"), Some(false)));

    // The Kyber draft Chrome shipped before ML-KEM.
    let s = server_hello(
        0x1301,
        &[ext(0x002b, &[3, 4]), server_key_share(0x6399, 1120)],
    );
    let d = inspect_tls(&c, &s).expect("TLS");
    assert_eq!(
        (d.group_name, d.pq),
        (Some("X25519Kyber768Draft00"), Some(true))
    );
}

#[test]
fn negotiated_alpn_and_sanitised_names() {
    let c = client_hello(
        &[0xc02f],
        &[sni("Web.SVC.internal\u{7}"), alpn(&["h2", "http/1.1"])],
    );
    let s = server_hello(0xc02f, &[alpn(&["h2"])]);
    let d = inspect_tls(&c, &s).expect("TLS");
    assert_eq!(d.version, Some(TlsVersion::Tls12));
    assert_eq!((d.alpn.as_deref(), d.alpn_negotiated), (Some("h2"), true));
    assert_eq!(d.server_name.as_deref(), Some("web.svc.internal?"));
    assert_eq!(d.offered_versions, [TlsVersion::Tls12]);
}

/// SSL 2.0-format CLIENT-HELLO: two-byte header with the high bit set, message type 1, version,
/// cipher-spec, session-id and challenge lengths, then 3-byte cipher kinds and the challenge.
fn sslv2_client_hello(version: u16, kinds: &[[u8; 3]]) -> Vec<u8> {
    let mut body = vec![1];
    body.extend(version.to_be_bytes());
    body.extend(((kinds.len() * 3) as u16).to_be_bytes());
    body.extend([0, 0, 0, 16]);
    body.extend(kinds.concat());
    body.extend([0x77; 16]);
    let mut out = (0x8000 | body.len() as u16).to_be_bytes().to_vec();
    out.extend(body);
    out
}

#[test]
fn sslv2_hellos() {
    // SSL 2.0 kinds: RC4_128_WITH_MD5, DES_192_EDE3_CBC_WITH_MD5.
    let v2_only = sslv2_client_hello(0x0002, &[[1, 0, 0x80], [7, 0, 0xc0]]);
    let d = inspect_tls(&v2_only, &[]).expect("SSL");
    assert_eq!(d.offered_versions, [TlsVersion::Ssl2]);
    assert_eq!(d.weak, ["ssl2", "tls<1.2"]);
    assert!(d.client_hello_complete);
    assert_eq!(d.ja4, None, "JA4 is defined over TLS hellos");

    // The compatibility format of an old TLS 1.0 client offering only TLS suites: not SSL 2.0.
    let compat = sslv2_client_hello(0x0301, &[[0, 0, 0x2f], [0, 0, 0x35]]);
    let d = inspect_tls(&compat, &[]).expect("SSL");
    assert_eq!(d.offered_versions, [TlsVersion::Tls10]);
    assert_eq!(d.weak, ["tls<1.2"]);

    // ... with SSL 2.0 kinds too, answered in SSL 2.0.
    let both = sslv2_client_hello(0x0301, &[[0, 0, 0x2f], [1, 0, 0x80]]);
    let v2_server_hello = [0x80, 0x0b, 4, 0, 1, 0, 2, 0, 0, 0, 3, 0, 0x10, 1, 0, 0x80];
    let d = inspect_tls(&both, &v2_server_hello).expect("SSL");
    assert_eq!(d.offered_versions, [TlsVersion::Tls10, TlsVersion::Ssl2]);
    assert_eq!(d.version, Some(TlsVersion::Ssl2));
    assert!(d.server_hello_seen);
    assert_eq!(d.weak, ["ssl2", "tls<1.2"]);

    // The same client answered in TLS 1.0.
    let s = server_hello(0x002f, &[]);
    let mut s10 = s.clone();
    s10[9..11].copy_from_slice(&[3, 1]); // ServerHello version
    let d = inspect_tls(&both, &s10).expect("SSL");
    assert_eq!(d.version, Some(TlsVersion::Tls10));
    assert_eq!(d.weak, ["tls<1.2"]);
}

#[test]
fn ssl3_negotiated() {
    let mut c = client_hello(&[0x000a, 0x002f], &[]);
    c[9..11].copy_from_slice(&[3, 0]); // ClientHello version: SSL 3.0
    let mut s = server_hello(0x000a, &[]);
    s[9..11].copy_from_slice(&[3, 0]);
    let d = inspect_tls(&c, &s).expect("SSL");
    assert_eq!(d.offered_versions, [TlsVersion::Ssl3]);
    assert_eq!(d.version.map(TlsVersion::name), Some("ssl3"));
    assert_eq!(d.cipher_name, Some("TLS_RSA_WITH_3DES_EDE_CBC_SHA"));
    assert_eq!(d.weak, ["ssl3", "tls<1.2", "3des"]);
    assert_eq!(d.ja4.as_deref().map(|j| &j[..10]), Some("ts3i020000"));
}
