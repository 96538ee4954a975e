//! QUIC Initial packets built for tests: packet protection written a second time, straight from
//! RFC 9001 section 5 and RFC 9369 (it must reproduce the RFCs' protected packets byte for byte,
//! see tests/quic.rs, before it builds anything else), and handshakes shaped like real clients'.

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes_gcm::aead::AeadInPlace;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::{Aes128Gcm, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;

pub const V1: u32 = 0x0000_0001;
pub const V2: u32 = 0x6b33_43cf;
pub const DRAFT_29: u32 = 0xff00_001d;
/// Google's T050: v1 packets, Google QUIC frames.
pub const T050: u32 = 0x5430_3530;

pub fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// One direction's Initial keys.
pub struct Sealer {
    pub key: Vec<u8>,
    pub iv: Vec<u8>,
    pub hp: Vec<u8>,
}

fn expand_label(hk: &Hkdf<Sha256>, label: &str, len: usize) -> Vec<u8> {
    let full = format!("tls13 {label}");
    let mut info = (len as u16).to_be_bytes().to_vec();
    info.push(full.len() as u8);
    info.extend(full.as_bytes());
    info.push(0);
    let mut out = vec![0; len];
    hk.expand(&info, &mut out).expect("HKDF length");
    out
}

impl Sealer {
    /// The keys of the client (`server` false) or the server for a connection whose client's
    /// first Destination Connection ID was `dcid`.
    pub fn initial(version: u32, dcid: &[u8], server: bool) -> Sealer {
        let salt = match version {
            V1 => unhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"),
            V2 => unhex("0dede3def700a6db819381be6e269dcbf9bd2ed9"),
            DRAFT_29 => unhex("afbfec289993d24c9e9786f19c6111e04390a899"),
            T050 => unhex("7ff579e5acd072915580304c43a2367c60488310"),
            _ => panic!("no salt for {version:#x}"),
        };
        let (_, hk) = Hkdf::<Sha256>::extract(Some(&salt), dcid);
        let secret = expand_label(&hk, if server { "server in" } else { "client in" }, 32);
        let hk = Hkdf::<Sha256>::from_prk(&secret).expect("PRK");
        let prefix = if version == V2 { "quicv2" } else { "quic" };
        Sealer {
            key: expand_label(&hk, &format!("{prefix} key"), 16),
            iv: expand_label(&hk, &format!("{prefix} iv"), 12),
            hp: expand_label(&hk, &format!("{prefix} hp"), 16),
        }
    }

    /// Protects a packet: `header` is the plain header, ending with the packet number in as
    /// many bytes as its first byte says.
    pub fn seal(&self, header: &[u8], pn: u64, payload: &[u8]) -> Vec<u8> {
        let pn_len = usize::from(header[0] & 0x03) + 1;
        let pn_offset = header.len() - pn_len;
        let mut nonce = self.iv.clone();
        for (n, p) in nonce[4..].iter_mut().zip(pn.to_be_bytes()) {
            *n ^= p;
        }
        let mut body = payload.to_vec();
        let tag = Aes128Gcm::new_from_slice(&self.key)
            .expect("key")
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), header, &mut body)
            .expect("seal");
        let mut packet = header.to_vec();
        packet.extend(body);
        packet.extend(tag);
        let sample: [u8; 16] = packet[pn_offset + 4..pn_offset + 20]
            .try_into()
            .expect("a packet long enough to sample");
        let mut mask = GenericArray::from(sample);
        Aes128::new_from_slice(&self.hp)
            .expect("hp key")
            .encrypt_block(&mut mask);
        packet[0] ^= mask[0] & 0x0f;
        for i in 0..pn_len {
            packet[pn_offset + i] ^= mask[1 + i];
        }
        packet
    }
}

/// The long-header type bits of an Initial and a Handshake packet.
pub fn initial_type(version: u32) -> u8 {
    if version == V2 { 0xd0 } else { 0xc0 }
}

pub fn handshake_type(version: u32) -> u8 {
    if version == V2 { 0xf0 } else { 0xe0 }
}

/// A plain long header with a 2-byte packet number and a 2-byte Length covering `payload_len`
/// bytes of payload plus the tag; a token only for Initial packets.
pub fn long_header(
    version: u32,
    first: u8,
    dcid: &[u8],
    scid: &[u8],
    pn: u16,
    payload_len: usize,
) -> Vec<u8> {
    let mut h = vec![first | 0x01];
    h.extend(version.to_be_bytes());
    h.push(dcid.len() as u8);
    h.extend(dcid);
    h.push(scid.len() as u8);
    h.extend(scid);
    if first == initial_type(version) {
        h.push(0);
    }
    h.extend((0x4000 | (2 + payload_len + 16) as u16).to_be_bytes());
    h.extend(pn.to_be_bytes());
    h
}

/// A protected Initial packet.
pub fn initial_packet(
    keys: &Sealer,
    version: u32,
    dcid: &[u8],
    scid: &[u8],
    pn: u16,
    payload: &[u8],
) -> Vec<u8> {
    let header = long_header(
        version,
        initial_type(version),
        dcid,
        scid,
        pn,
        payload.len(),
    );
    keys.seal(&header, u64::from(pn), payload)
}

pub fn crypto_frame(offset: usize, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    f.extend((0x8000_0000 | offset as u32).to_be_bytes());
    f.extend((0x4000 | data.len() as u16).to_be_bytes());
    f.extend(data);
    f
}

/// Cuts `crypto` into CRYPTO frames of the given sizes (the last takes the rest) and deals them
/// out to `packets` payloads in a scrambled order, with PING and PADDING between, the way
/// Chrome does since version 117 (and its post-quantum hello needs two packets anyway). Each
/// payload is padded so its datagram reaches 1,200 bytes.
pub fn scattered_payloads(crypto: &[u8], sizes: &[usize], packets: usize) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut at = 0;
    for (i, &size) in sizes.iter().enumerate() {
        let end = if i + 1 == sizes.len() {
            crypto.len()
        } else {
            (at + size).min(crypto.len())
        };
        frames.push(crypto_frame(at, &crypto[at..end]));
        at = end;
    }
    let mut payloads = vec![Vec::new(); packets];
    // Every third frame forward, then the rest backwards: offsets arrive out of order and
    // each packet holds pieces of both halves.
    let n = frames.len();
    let order: Vec<usize> = (0..n)
        .step_by(3)
        .chain((0..n).rev().filter(|i| i % 3 != 0))
        .collect();
    for (k, &i) in order.iter().enumerate() {
        let p = &mut payloads[k % packets];
        if k % 2 == 0 {
            p.push(0x01);
        }
        p.extend(&frames[i]);
        p.extend([0; 3]);
    }
    for p in &mut payloads {
        if p.len() < 1150 {
            p.resize(1150, 0);
        }
    }
    payloads
}

// ---- Handshake messages, bare as in CRYPTO frames (no record layer). ----

pub fn u16s(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

pub fn vec16(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

pub fn ext(ty: u16, body: &[u8]) -> Vec<u8> {
    let mut v = ty.to_be_bytes().to_vec();
    v.extend(vec16(body));
    v
}

pub fn message(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let mut msg = vec![msg_type];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend_from_slice(body);
    msg
}

/// A Chrome-like QUIC ClientHello: GREASE, X25519MLKEM768 and X25519 key shares (1.2 KB of
/// ML-KEM alone), encrypted_client_hello GREASE, QUIC transport parameters. About 1.8 KB, so
/// it needs two Initial packets.
pub fn pq_client_hello(server_name: &str) -> Vec<u8> {
    let mut sni_entry = vec![0];
    sni_entry.extend(vec16(server_name.as_bytes()));
    let mut shares = Vec::new();
    for (group, len) in [(0x3a3a_u16, 1_usize), (0x11ec, 1216), (0x001d, 32)] {
        shares.extend(group.to_be_bytes());
        shares.extend(vec16(&vec![0x5a; len]));
    }
    let extensions = [
        ext(0x0a0a, &[]),
        ext(0x0000, &vec16(&sni_entry)),
        ext(0x0010, &vec16(&[2, b'h', b'3'])),
        ext(
            0x000a,
            &vec16(&u16s(&[0x3a3a, 0x11ec, 0x001d, 0x0017, 0x0018])),
        ),
        ext(0x000d, &vec16(&u16s(&[0x0403, 0x0804, 0x0401, 0x0503]))),
        ext(0x002b, &[4, 0x7a, 0x7a, 3, 4]),
        ext(0x0033, &vec16(&shares)),
        ext(0x002d, &[1, 1]),
        ext(
            0x0039,
            &[0x01, 0x04, 0x80, 0x00, 0x75, 0x30, 0x03, 0x02, 0x45, 0xc0],
        ),
        ext(0xfe0d, &[0x42; 230]),
        ext(0x4a4a, &[0]),
    ]
    .concat();
    let mut body = vec![3, 3];
    body.extend([0x11; 32]);
    body.push(0);
    body.extend(vec16(&u16s(&[0x8a8a, 0x1301, 0x1302, 0x1303])));
    body.extend([1, 0]);
    body.extend(vec16(&extensions));
    message(1, &body)
}

/// A TLS 1.3 ServerHello choosing `group` with a key share of `share_len` bytes.
pub fn server_hello(cipher: u16, group: u16, share_len: usize) -> Vec<u8> {
    let mut share = group.to_be_bytes().to_vec();
    share.extend(vec16(&vec![0x6b; share_len]));
    let extensions = [ext(0x002b, &[3, 4]), ext(0x0033, &share)].concat();
    let mut body = vec![3, 3];
    body.extend([0x33; 32]);
    body.push(0);
    body.extend(cipher.to_be_bytes());
    body.push(0);
    body.extend(vec16(&extensions));
    message(2, &body)
}

/// A whole first exchange as Chrome and a post-quantum server have it: the client's hello
/// scattered over two Initial packets in two datagrams, the second sent to the server's
/// connection ID under the first keys; the server's Initial (ACK, then its ServerHello)
/// coalesced with a Handshake packet, the rest of the ServerHello in a second datagram ending
/// in a short-header packet.
pub struct Flight {
    pub client: Vec<Vec<u8>>,
    pub server: Vec<Vec<u8>>,
    /// The CRYPTO streams in clear, for comparing with what reading them directly gives.
    pub client_hello: Vec<u8>,
    pub server_hello: Vec<u8>,
}

pub const CLIENT_DCID: &[u8] = b"\x83\x94\xc8\xf0\x3e\x51\x57\x08";
pub const CLIENT_SCID: &[u8] = b"\xc1\x1e\x47";
pub const SERVER_SCID: &[u8] = b"\x5e\x4e\x00\x01\x02\x03\x04\x05\x06\x07";

pub fn chrome_like_flight(version: u32) -> Flight {
    let client_hello = pq_client_hello("pq.svc.internal");
    let keys = Sealer::initial(version, CLIENT_DCID, false);
    let payloads = scattered_payloads(&client_hello, &[300, 120, 400, 90, 500, 60, 250], 2);
    let client = vec![
        initial_packet(&keys, version, CLIENT_DCID, CLIENT_SCID, 0, &payloads[0]),
        initial_packet(&keys, version, SERVER_SCID, CLIENT_SCID, 1, &payloads[1]),
    ];

    let server_hello = server_hello(0x1301, 0x11ec, 1088);
    let keys = Sealer::initial(version, CLIENT_DCID, true);
    let (first, second) = server_hello.split_at(700);
    let mut p0 = vec![0x02, 0x00, 0x00, 0x00, 0x00];
    p0.extend(crypto_frame(0, first));
    let mut d0 = initial_packet(&keys, version, CLIENT_SCID, SERVER_SCID, 0, &p0);
    // The Handshake packet's contents are under keys we do not have: any bytes do.
    let handshake = long_header(
        version,
        handshake_type(version),
        CLIENT_SCID,
        SERVER_SCID,
        0,
        400,
    );
    d0.extend(&handshake);
    d0.extend([0x77; 400 + 16]);
    let mut p1 = crypto_frame(700, second);
    p1.extend([0; 40]);
    let mut d1 = initial_packet(&keys, version, CLIENT_SCID, SERVER_SCID, 1, &p1);
    d1.extend([0x43, 0xc1, 0x1e, 0x47, 0x99, 0x98, 0x97]);
    d1.extend([0x55; 60]);
    Flight {
        client,
        server: vec![d0, d1],
        client_hello,
        server_hello,
    }
}
