//! Deep TLS/DTLS handshake inspection over sampled byte streams.
//!
//! [`inspect_tls`] takes each direction's first bytes of a TCP stream (a reassembled prefix,
//! usually cut somewhere, e.g. at 2 KB), [`inspect_dtls`] each direction's first datagrams, and
//! [`inspect_quic_crypto`] the CRYPTO stream of QUIC Initial packets. All three return a
//! [`TlsDetails`] with whatever the bytes reveal, and never panic on any input.
//!
//! Choices worth knowing (each repeated where it applies):
//! - `version`, `cipher` and `group` are what the server chose; without a ServerHello they are
//!   `None` and only the client's offer is reported.
//! - `alpn` is the negotiated protocol when the server's choice is visible (TLS 1.2 ServerHello),
//!   else the client's offered list joined by `,` (TLS 1.3 hides the choice in the encrypted
//!   EncryptedExtensions); `alpn_negotiated` tells which.
//! - `weak` lists [`WEAK_REASONS`]; version reasons use the negotiated version, or the client's
//!   highest offer when no ServerHello is seen (the connection cannot end up better than that).
//! - SSL 2.0: a client that uses the SSL 2.0 hello format only for compatibility, offering
//!   3.x, is not weak by itself; `ssl2` is reported when the server answers in SSL 2.0, or when
//!   the client offers nothing but SSL 2.0 and no answer is seen.

mod hello;
mod ja4;
mod record;
mod registry;
mod wire;

pub use registry::{WEAK_REASONS, cipher_name, group_name, is_pq_group, weak_suites};

use hello::{
    ClientHello, HS_CLIENT_HELLO, HS_SERVER_HELLO, HS_SERVER_HELLO_DONE, HS_SERVER_KEY_EXCHANGE,
    ServerHello, server_key_exchange_curve,
};
use ja4::Ja4Input;
use record::{HandshakeStream, Messages, Start};
use tls_parser::{TlsCipherAu, TlsCipherKx, TlsCipherSuite};
use wire::{Reader, is_grease};

/// Longest SNI we keep: a DNS name is at most 253 characters.
const MAX_SERVER_NAME: usize = 253;
/// Longest ALPN string we keep (all offered names joined).
const MAX_ALPN: usize = 128;

/// A protocol version, TLS and DTLS alike (DTLS 1.0 maps to `Tls10`, DTLS 1.2 to `Tls12`,
/// DTLS 1.3 to `Tls13`; [`TlsDetails::transport`] says which family).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    Ssl2,
    Ssl3,
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl TlsVersion {
    /// The contract's `tls.protocol.version` value: `ssl2`, `ssl3`, `1.0` ... `1.3`.
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Ssl2 => "ssl2",
            TlsVersion::Ssl3 => "ssl3",
            TlsVersion::Tls10 => "1.0",
            TlsVersion::Tls11 => "1.1",
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        }
    }

    /// Maps a wire version. TLS 1.3 drafts (`0x7fxx`) and Facebook's Fizz experiments
    /// (`0xfbxx`) count as 1.3: they are 1.3 in all that matters here.
    pub fn from_wire(v: u16) -> Option<TlsVersion> {
        Some(match v {
            0x0002 => TlsVersion::Ssl2,
            0x0300 => TlsVersion::Ssl3,
            0x0301 | 0xfeff => TlsVersion::Tls10,
            0x0302 => TlsVersion::Tls11,
            0x0303 | 0xfefd => TlsVersion::Tls12,
            0x0304 | 0xfefc | 0x7f00..=0x7fff | 0xfb00..=0xfbff => TlsVersion::Tls13,
            _ => return None,
        })
    }
}

/// What carried the handshake; also the first character of the JA4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TLS over TCP (`t`).
    Tcp,
    /// DTLS (`d`).
    Dtls,
    /// QUIC's CRYPTO frames (`q`).
    Quic,
}

/// What a handshake sample reveals. See the module documentation for the choices made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsDetails {
    pub transport: Transport,
    /// Negotiated: the ServerHello's supported_versions (TLS 1.3), else its version; `None`
    /// without a ServerHello (or HelloRetryRequest).
    pub version: Option<TlsVersion>,
    /// From the ClientHello's supported_versions, else its legacy version (the highest it
    /// speaks, so the only entry then); GREASE and unknown values dropped. Empty when a cut
    /// hello says 1.2 and the cut may have hidden a supported_versions listing 1.3. An SSL
    /// 2.0-format hello adds `Ssl2` when it offers SSL 2.0-only cipher kinds.
    pub offered_versions: Vec<TlsVersion>,
    /// Negotiated cipher suite.
    pub cipher: Option<u16>,
    /// Its IANA name, e.g. `TLS_AES_128_GCM_SHA256`.
    pub cipher_name: Option<&'static str>,
    /// SNI host name, lower-cased (DNS names are case-insensitive), printable ASCII only
    /// (anything else becomes `?`), at most 253 characters.
    pub server_name: Option<String>,
    /// Negotiated ALPN protocol when visible, else the offered list joined by `,`; sanitised like
    /// the SNI.
    pub alpn: Option<String>,
    /// Whether `alpn` is the server's choice rather than the client's offer.
    pub alpn_negotiated: bool,
    /// supported_groups of the ClientHello, GREASE dropped.
    pub offered_groups: Vec<u16>,
    /// Groups the client sent key shares for, GREASE dropped.
    pub key_share_groups: Vec<u16>,
    /// Negotiated key-exchange group: TLS 1.3 ServerHello key share (or the group a
    /// HelloRetryRequest asks for); TLS 1.2 (EC)DHE: the named curve of the ServerKeyExchange
    /// when the sample reaches it.
    pub group: Option<u16>,
    pub group_name: Option<&'static str>,
    /// Whether the key exchange is post-quantum (see [`is_pq_group`]): of the negotiated group
    /// when known; `false` when the server picked a version or exchange without one; without a
    /// ServerHello, whether the client offered one. `None` when the sample does not tell.
    pub pq: Option<bool>,
    /// JA4 of the (first) ClientHello; `None` unless the whole hello is in the sample.
    pub ja4: Option<String>,
    /// Reasons the encryption is weak, from [`WEAK_REASONS`]; empty when none is known.
    pub weak: Vec<&'static str>,
    pub client_hello_seen: bool,
    /// The whole ClientHello, up to its last extension, was in the sample.
    pub client_hello_complete: bool,
    /// A ServerHello (not only a HelloRetryRequest) was seen.
    pub server_hello_seen: bool,
    /// The server sent a HelloRetryRequest.
    pub hello_retry: bool,
}

/// Inspects a TLS-over-TCP handshake. `client` and `server` are each direction's stream bytes
/// from its first TLS record on (reassembled, possibly cut anywhere). `None` only when neither
/// starts with a TLS or SSL handshake.
pub fn inspect_tls(client: &[u8], server: &[u8]) -> Option<TlsDetails> {
    let client_start = record::stream_start(client);
    let server_start = record::stream_start(server);
    if client_start.is_none() && server_start.is_none() {
        return None;
    }
    let client_stream = match client_start {
        Some(Start::Handshake) => record::tls_handshake_stream(client),
        _ => HandshakeStream::default(),
    };
    let hello = match client_start {
        Some(Start::Sslv2ClientHello) => {
            let (body, cut) = record::sslv2_body(client);
            ClientHello::parse_sslv2(body, cut)
        }
        _ => first_client_hello(&client_stream.bytes, false),
    };
    let facts = match server_start {
        Some(Start::Handshake) => read_server(&record::tls_handshake_stream(server)),
        Some(Start::Sslv2ServerHello) => ServerFacts {
            sslv2: true,
            ..ServerFacts::default()
        },
        _ => ServerFacts::default(),
    };
    Some(details(hello.as_ref(), &facts, Transport::Tcp))
}

/// Inspects a DTLS 1.0/1.2/1.3 handshake from each direction's first datagrams, in arrival
/// order. Fragmented and retransmitted handshake messages are reassembled; the JA4 is that of
/// the first ClientHello (before any HelloVerifyRequest cookie). `None` when neither side holds
/// a DTLS handshake record.
pub fn inspect_dtls(client_datagrams: &[&[u8]], server_datagrams: &[&[u8]]) -> Option<TlsDetails> {
    let client_stream = record::dtls_handshake_stream(client_datagrams);
    let server_stream = record::dtls_handshake_stream(server_datagrams);
    if client_stream.bytes.is_empty() && server_stream.bytes.is_empty() {
        return None;
    }
    let hello = first_client_hello(&client_stream.bytes, true);
    let facts = read_server(&server_stream);
    Some(details(hello.as_ref(), &facts, Transport::Dtls))
}

/// Inspects the handshake carried in QUIC CRYPTO frames: `client_crypto` and `server_crypto`
/// are the (decrypted, reassembled) CRYPTO stream data of each side's Initial packets, that is
/// bare handshake messages without a record layer; [`crate::quic::inspect_quic`] gets them from
/// the datagrams. `None` unless one side starts with a ClientHello or ServerHello.
pub fn inspect_quic_crypto(client_crypto: &[u8], server_crypto: &[u8]) -> Option<TlsDetails> {
    let starts_with = |bytes: &[u8], msg_type| bytes.first() == Some(&msg_type);
    if !starts_with(client_crypto, HS_CLIENT_HELLO) && !starts_with(server_crypto, HS_SERVER_HELLO)
    {
        return None;
    }
    let hello = first_client_hello(client_crypto, false);
    let facts = read_server(&HandshakeStream {
        bytes: server_crypto.into(),
        ccs_at: None,
    });
    Some(details(hello.as_ref(), &facts, Transport::Quic))
}

/// The first handshake message, if a ClientHello. Only the first counts: after a
/// HelloRetryRequest the client's second hello follows the server's wishes, not its own.
fn first_client_hello(bytes: &[u8], dtls: bool) -> Option<ClientHello<'_>> {
    let msg = Messages::new(bytes).next()?;
    (msg.msg_type == HS_CLIENT_HELLO)
        .then(|| ClientHello::parse(msg.body, msg.cut, dtls))
        .flatten()
}

/// What the server side revealed, owned so the handshake buffer can go.
#[derive(Debug, Default)]
struct ServerFacts {
    hello: Option<ServerSummary>,
    retry: Option<ServerSummary>,
    /// Named curve from a TLS 1.2 ServerKeyExchange.
    key_exchange_curve: Option<u16>,
    /// The server answered with an SSL 2.0 SERVER-HELLO.
    sslv2: bool,
}

#[derive(Debug)]
struct ServerSummary {
    version: Option<TlsVersion>,
    cipher: Option<u16>,
    key_share_group: Option<u16>,
    alpn: Option<String>,
    complete: bool,
}

impl ServerSummary {
    fn new(hello: &ServerHello<'_>) -> Self {
        ServerSummary {
            version: hello
                .selected_version
                .and_then(TlsVersion::from_wire)
                .or_else(|| TlsVersion::from_wire(hello.version)),
            cipher: hello.cipher,
            key_share_group: hello.key_share_group,
            alpn: hello.alpn.map(|a| sanitize(a, MAX_ALPN, false)),
            complete: hello.complete,
        }
    }
}

/// Walks the server's handshake messages up to where they turn encrypted or stop mattering:
/// after a TLS 1.3 ServerHello, at ServerHelloDone, or past a ChangeCipherSpec that follows the
/// ServerHello (a resumed TLS 1.2 session).
fn read_server(stream: &HandshakeStream<'_>) -> ServerFacts {
    let mut facts = ServerFacts::default();
    for msg in Messages::new(&stream.bytes) {
        if facts.hello.is_some() && stream.ccs_at.is_some_and(|at| msg.offset >= at) {
            break;
        }
        match msg.msg_type {
            HS_SERVER_HELLO => {
                let Some(hello) = ServerHello::parse(msg.body, msg.cut) else {
                    break;
                };
                let summary = ServerSummary::new(&hello);
                if hello.hello_retry {
                    facts.retry.get_or_insert(summary);
                } else {
                    let tls13 = summary.version == Some(TlsVersion::Tls13);
                    facts.hello = Some(summary);
                    if tls13 {
                        break;
                    }
                }
            }
            HS_SERVER_KEY_EXCHANGE => {
                let cipher = facts.hello.as_ref().and_then(|h| h.cipher);
                facts.key_exchange_curve = cipher.and_then(|c| ecdh_curve(c, msg.body));
            }
            HS_SERVER_HELLO_DONE => break,
            _ => {}
        }
        if msg.cut {
            break;
        }
    }
    facts
}

/// The curve of a ServerKeyExchange, for the suites whose ServerKeyExchange carries ECDH
/// parameters (ECDHE, anonymous ECDH; ECDHE_PSK after its identity hint).
fn ecdh_curve(cipher: u16, body: &[u8]) -> Option<u16> {
    let suite = TlsCipherSuite::from_id(cipher)?;
    match (suite.kx, suite.au) {
        (TlsCipherKx::Ecdhe, TlsCipherAu::Psk) => {
            let mut r = Reader::new(body);
            let hint_len = r.u16()?;
            r.skip(usize::from(hint_len))?;
            server_key_exchange_curve(body.get(2 + usize::from(hint_len)..)?)
        }
        (TlsCipherKx::Ecdhe, _) | (TlsCipherKx::Ecdh, TlsCipherAu::Null) => {
            server_key_exchange_curve(body)
        }
        _ => None,
    }
}

fn details(
    hello: Option<&ClientHello<'_>>,
    facts: &ServerFacts,
    transport: Transport,
) -> TlsDetails {
    // The HelloRetryRequest stands in for a ServerHello the sample does not reach: it already
    // fixes version, suite and group.
    let server = facts.hello.as_ref().or(facts.retry.as_ref());
    let version = if facts.sslv2 {
        Some(TlsVersion::Ssl2)
    } else {
        server.and_then(|s| s.version)
    };
    let cipher = server.and_then(|s| s.cipher);
    let group = match version {
        Some(TlsVersion::Tls13) => facts
            .hello
            .as_ref()
            .and_then(|s| s.key_share_group)
            .or_else(|| facts.retry.as_ref().and_then(|s| s.key_share_group)),
        _ => facts.key_exchange_curve,
    };

    let offered_versions = hello.map(offered_versions).unwrap_or_default();
    let offered_groups: Vec<u16> = hello
        .and_then(|h| h.groups)
        .map(|l| l.iter().filter(|&g| !is_grease(g)).collect())
        .unwrap_or_default();
    let key_share_groups: Vec<u16> = hello
        .and_then(|h| h.key_shares)
        .map(|k| k.filter(|&g| !is_grease(g)).collect())
        .unwrap_or_default();

    let pq = match (group, version) {
        (Some(g), _) => Some(is_pq_group(g)),
        // The hybrid groups exist for TLS 1.3 only.
        (None, Some(v)) if v < TlsVersion::Tls13 => Some(false),
        // A whole 1.3 ServerHello without a key share: PSK-only resumption.
        (None, Some(_)) if facts.hello.as_ref().is_some_and(|h| h.complete) => Some(false),
        (None, Some(_)) => None,
        (None, None) => {
            let offered = offered_groups.iter().chain(&key_share_groups);
            if offered.clone().any(|&g| is_pq_group(g)) {
                Some(true)
            } else if hello.is_some_and(|h| h.complete) {
                Some(false)
            } else {
                None
            }
        }
    };

    let (alpn, alpn_negotiated) = match server.and_then(|s| s.alpn.clone()) {
        Some(chosen) => (Some(chosen), true),
        None => (hello.and_then(offered_alpn), false),
    };

    let mut weak = Vec::new();
    let ceiling = version.or_else(|| offered_versions.iter().copied().max());
    match ceiling {
        Some(TlsVersion::Ssl2) => weak.extend(["ssl2", "tls<1.2"]),
        Some(TlsVersion::Ssl3) => weak.extend(["ssl3", "tls<1.2"]),
        Some(TlsVersion::Tls10 | TlsVersion::Tls11) => weak.push("tls<1.2"),
        _ => {}
    }
    if let Some(c) = cipher {
        registry::cipher_weaknesses(c, &mut weak);
    }

    TlsDetails {
        transport,
        version,
        offered_versions,
        cipher,
        cipher_name: cipher.and_then(cipher_name),
        server_name: hello
            .and_then(|h| h.server_name)
            .map(|n| sanitize(n, MAX_SERVER_NAME, true)),
        alpn,
        alpn_negotiated,
        offered_groups,
        key_share_groups,
        group,
        group_name: group.and_then(group_name),
        pq,
        ja4: hello
            .and_then(|h| Ja4Input::from_hello(h, transport))
            .map(Ja4Input::fingerprint),
        weak,
        client_hello_seen: hello.is_some(),
        client_hello_complete: hello.is_some_and(|h| h.complete),
        server_hello_seen: facts.hello.is_some() || facts.sslv2,
        hello_retry: facts.retry.is_some(),
    }
}

fn offered_versions(hello: &ClientHello<'_>) -> Vec<TlsVersion> {
    let mut out: Vec<TlsVersion> = match hello.supported_versions {
        Some(list) if !list.is_empty() => list
            .iter()
            .filter(|&v| !is_grease(v))
            .filter_map(TlsVersion::from_wire)
            .collect(),
        // Without supported_versions the legacy version is the highest the client speaks;
        // but a TLS 1.3 client also writes 1.2 there, so a hello cut before its extensions
        // tells nothing when it says 1.2.
        _ if hello.complete || hello.version < 0x0303 || hello.sslv2_format => {
            TlsVersion::from_wire(hello.version).into_iter().collect()
        }
        _ => Vec::new(),
    };
    if hello.offers_sslv2_kinds && !out.contains(&TlsVersion::Ssl2) {
        out.push(TlsVersion::Ssl2);
    }
    out
}

fn offered_alpn(hello: &ClientHello<'_>) -> Option<String> {
    let mut joined = Vec::new();
    for name in hello.alpn? {
        if !joined.is_empty() {
            joined.push(b',');
        }
        joined.extend_from_slice(name);
        if joined.len() >= MAX_ALPN {
            break;
        }
    }
    (!joined.is_empty()).then(|| sanitize(&joined, MAX_ALPN, false))
}

/// Printable ASCII only, bounded: these strings end up in logs and dashboards.
fn sanitize(bytes: &[u8], max: usize, lowercase: bool) -> String {
    bytes
        .iter()
        .take(max)
        .map(|&b| match b {
            b'!'..=b'~' if lowercase => char::from(b.to_ascii_lowercase()),
            b'!'..=b'~' => char::from(b),
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            TlsVersion::from_wire(0x0303).map(TlsVersion::name),
            Some("1.2")
        );
        assert_eq!(TlsVersion::from_wire(0xfeff), Some(TlsVersion::Tls10));
        assert_eq!(TlsVersion::from_wire(0xfefd), Some(TlsVersion::Tls12));
        assert_eq!(TlsVersion::from_wire(0xfefc), Some(TlsVersion::Tls13));
        assert_eq!(TlsVersion::from_wire(0x7f1c), Some(TlsVersion::Tls13));
        assert_eq!(TlsVersion::from_wire(0x0a0a), None);
        assert!(TlsVersion::Ssl3 < TlsVersion::Tls10 && TlsVersion::Tls12 < TlsVersion::Tls13);
        let names: Vec<&str> = [
            TlsVersion::Ssl2,
            TlsVersion::Ssl3,
            TlsVersion::Tls10,
            TlsVersion::Tls11,
            TlsVersion::Tls12,
            TlsVersion::Tls13,
        ]
        .map(TlsVersion::name)
        .to_vec();
        assert_eq!(names, ["ssl2", "ssl3", "1.0", "1.1", "1.2", "1.3"]);
    }

    #[test]
    fn sanitised_strings() {
        assert_eq!(sanitize(b"A.b\x00c d", 253, true), "a.b?c?d");
        assert_eq!(sanitize(&[0x41, 0x00, 0xff], 253, false), "A??");
        assert_eq!(sanitize(&[b'a'; 300], 253, true).len(), 253);
    }
}
