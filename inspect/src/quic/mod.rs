//! QUIC: the TLS handshake inside both sides' Initial packets.
//!
//! QUIC encrypts even its first packets, but with keys anyone on the path can compute: they come
//! from a salt published with each version and the Destination Connection ID the client chose
//! for its first Initial packet (RFC 9001 section 5.2). The protection keeps middleboxes from
//! ossifying on the packet layout, not secrets from observers; so we remove it, rebuild each
//! side's CRYPTO stream and read the ClientHello and ServerHello with
//! [`crate::tls::inspect_quic_crypto`], which gives SNI, ALPN, groups (post-quantum or not),
//! the server's choice of version, cipher and group, and a JA4 starting with `q`.
//!
//! What real captures throw at this, and the answer to each:
//! - Coalesced packets (a server's Initial, Handshake and 1-RTT packets in one datagram): each
//!   long header gives its length, so the walk steps over whatever is not an Initial.
//! - A ClientHello in several packets and datagrams, its CRYPTO frames out of order (Chrome
//!   shuffles them; a post-quantum key share alone fills more than one datagram): CRYPTO data is
//!   placed by offset and the contiguous prefix from 0 is read.
//! - Retry, or a client that starts over with another connection ID: every Destination
//!   Connection ID the client used is a candidate for the keys, tried in order of appearance.
//!   After the server's first Initial the client switches to the server's connection ID but
//!   keeps the first keys (RFC 9000 section 7.2), which the first candidate covers.
//! - Compatible version negotiation (RFC 9368: a v1 ClientHello answered in v2): each packet is
//!   opened with the salt and labels of its own version.
//!
//! Versions: v1, v2, drafts 23 to 34, Facebook mvfst's draft-27 versions and Google's T050/T051.
//! The rest carries no TLS we can read (Google's QUIC-crypto Qxxx) or has no known packet layout
//! (greased versions that only ask for Version Negotiation, unknown drafts).
//!
//! Bounded work on any input: the first [`MAX_DATAGRAMS`] datagrams of each side,
//! [`MAX_INITIALS`] Initial packets, [`MAX_CANDIDATES`] connection IDs, 256 frames per packet and
//! 16 KB of CRYPTO data per side.

mod frames;
mod packet;
mod protection;
mod version;

use crate::tls::{TlsDetails, inspect_quic_crypto};
use frames::{CryptoStream, read_frames};
use packet::{Initial, Initials};
use protection::{Keys, Side};
use version::Version;

/// Datagrams read per side: a client's first flight is one or two datagrams (three with a large
/// post-quantum hello and ECH), and retransmissions repeat it.
pub const MAX_DATAGRAMS: usize = 8;
/// Initial packets opened per side, each tried against every candidate key.
pub const MAX_INITIALS: usize = 32;
/// Distinct client connection IDs tried as the source of the Initial keys.
pub const MAX_CANDIDATES: usize = 4;

/// Inspects a QUIC connection's handshake from each side's first UDP payloads, in arrival order.
/// `None` unless an Initial packet of the client or the server opens and its CRYPTO data starts
/// with a ClientHello or ServerHello. Never panics; the work is bounded as the module
/// documentation says.
///
/// The client is whoever sent the first Initial: its Destination Connection ID keys both
/// directions. Passing the sides swapped opens nothing, so a caller that does not know which
/// side is the client can try both orders.
pub fn inspect_quic(client_datagrams: &[&[u8]], server_datagrams: &[&[u8]]) -> Option<TlsDetails> {
    let client = initial_packets(client_datagrams);
    let server = initial_packets(server_datagrams);
    let mut candidates: Vec<&[u8]> = Vec::new();
    for initial in &client {
        if candidates.len() < MAX_CANDIDATES && !candidates.contains(&initial.dcid) {
            candidates.push(initial.dcid);
        }
    }
    let client_crypto = crypto_stream(&client, &candidates, Side::Client);
    let server_crypto = crypto_stream(&server, &candidates, Side::Server);
    inspect_quic_crypto(&client_crypto, &server_crypto)
}

fn initial_packets<'a>(datagrams: &[&'a [u8]]) -> Vec<Initial<'a>> {
    datagrams
        .iter()
        .take(MAX_DATAGRAMS)
        .flat_map(|d| Initials::new(d))
        .take(MAX_INITIALS)
        .collect()
}

/// Opens `side`'s Initial packets and returns the contiguous CRYPTO data they carry. Each
/// candidate connection ID has its own stream (after a Retry the client starts its CRYPTO
/// stream over under new keys); the first one that starts at offset 0 is the connection as it
/// was first attempted.
fn crypto_stream(initials: &[Initial<'_>], candidates: &[&[u8]], side: Side) -> Vec<u8> {
    let mut streams: Vec<CryptoStream> =
        candidates.iter().map(|_| CryptoStream::default()).collect();
    // Keys per (version, candidate): deriving them costs more than a failed attempt.
    let mut derived: Vec<(Version, usize, Option<Keys>)> = Vec::new();
    let mut largest_pn: Option<u64> = None;
    for initial in initials {
        for (i, (dcid, stream)) in candidates.iter().zip(&mut streams).enumerate() {
            let cached = derived
                .iter()
                .position(|(v, c, _)| *v == initial.version && *c == i);
            let at = cached.unwrap_or_else(|| {
                derived.push((
                    initial.version,
                    i,
                    Keys::initial(initial.version, dcid, side),
                ));
                derived.len() - 1
            });
            let Some((_, _, Some(keys))) = derived.get(at) else {
                continue;
            };
            if let Some((pn, payload)) = initial.packet.open(keys, largest_pn) {
                largest_pn = Some(largest_pn.map_or(pn, |l| l.max(pn)));
                read_frames(&payload, initial.version.family, stream);
                break;
            }
        }
    }
    streams
        .iter()
        .map(CryptoStream::prefix)
        .find(|p| !p.is_empty())
        .unwrap_or_default()
        .to_vec()
}
