//! Deep inspection of captured handshakes, in user space.
//!
//! The kernel classifier only names a flow's protocol from its first bytes; this crate reads the
//! sampled handshake bytes of both directions afterwards and extracts what a compliance report
//! needs: the negotiated TLS version, cipher suite and key-exchange group (post-quantum or not),
//! SNI, ALPN, the JA4 fingerprint of the client, and the reasons the encryption is weak. TLS over
//! TCP and DTLS are read as they come ([`tls`]); QUIC's Initial packets are decrypted first
//! ([`quic`]).
//!
//! Everything here is a pure function of byte slices: no I/O, no global state, cheap enough to
//! run once per flow.

pub mod quic;
pub mod tls;
