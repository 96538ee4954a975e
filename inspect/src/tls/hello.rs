//! ClientHello and ServerHello bodies, read as far as the sample goes.
//!
//! Nothing here allocates: lists stay slices of the input and are walked on demand. Each
//! parser fills in fields in wire order and stops at the first field the bytes do not cover,
//! so a hello cut inside its key share still yields its SNI and cipher list.

use super::wire::{Reader, U16List};

pub(crate) const EXT_SERVER_NAME: u16 = 0x0000;
pub(crate) const EXT_SUPPORTED_GROUPS: u16 = 0x000a;
pub(crate) const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
pub(crate) const EXT_ALPN: u16 = 0x0010;
pub(crate) const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;
pub(crate) const EXT_KEY_SHARE: u16 = 0x0033;

/// Handshake message types we act on.
pub(crate) const HS_CLIENT_HELLO: u8 = 1;
pub(crate) const HS_SERVER_HELLO: u8 = 2;
pub(crate) const HS_SERVER_KEY_EXCHANGE: u8 = 12;
pub(crate) const HS_SERVER_HELLO_DONE: u8 = 14;

const RANDOM_LEN: usize = 32;

/// A HelloRetryRequest is a ServerHello whose random is SHA-256("HelloRetryRequest")
/// (RFC 8446 section 4.1.3).
const HELLO_RETRY_RANDOM: [u8; RANDOM_LEN] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Extensions in wire order, each with its data and whether that data is whole. Stops after
/// the first extension the sample cuts.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Extensions<'a>(&'a [u8]);

impl<'a> Iterator for Extensions<'a> {
    type Item = (u16, &'a [u8], bool);

    fn next(&mut self) -> Option<Self::Item> {
        let mut r = Reader::new(self.0);
        let ty = r.u16()?;
        let len = r.u16()?;
        let (data, whole) = r.take_up_to(usize::from(len));
        self.0 = if whole {
            self.0.get(4 + data.len()..)?
        } else {
            &[]
        };
        Some((ty, data, whole))
    }
}

/// Walks a key_share list (`KeyShareEntry` = group, length, key) and yields each entry's group,
/// including that of an entry whose key the sample cuts: an ML-KEM share is over a kilobyte.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KeyShareGroups<'a>(&'a [u8]);

impl Iterator for KeyShareGroups<'_> {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        let mut r = Reader::new(self.0);
        let group = r.u16()?;
        let skipped = r.u16().and_then(|len| r.skip(usize::from(len)));
        self.0 = if skipped.is_some() {
            self.0.get(self.0.len() - r.remaining()..).unwrap_or(&[])
        } else {
            &[]
        };
        Some(group)
    }
}

/// Protocol names of an ALPN list that the sample holds whole.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AlpnNames<'a>(&'a [u8]);

impl<'a> Iterator for AlpnNames<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let mut r = Reader::new(self.0);
        let len = r.u8()?;
        let name = r.take(usize::from(len))?;
        self.0 = self.0.get(1 + name.len()..).unwrap_or(&[]);
        Some(name)
    }
}

/// What a ClientHello says, as far as the sample goes.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientHello<'a> {
    /// `legacy_version` (for an SSLv2-format hello: the version field of its header).
    pub(crate) version: u16,
    pub(crate) ciphers: U16List<'a>,
    /// The extension block (possibly cut); walk it with [`ClientHello::extensions`].
    ext_block: &'a [u8],
    pub(crate) server_name: Option<&'a [u8]>,
    pub(crate) alpn: Option<AlpnNames<'a>>,
    pub(crate) supported_versions: Option<U16List<'a>>,
    pub(crate) groups: Option<U16List<'a>>,
    pub(crate) key_shares: Option<KeyShareGroups<'a>>,
    pub(crate) signature_algorithms: Option<U16List<'a>>,
    /// Every field up to the last extension was in the sample.
    pub(crate) complete: bool,
    /// The SSL 2.0 CLIENT-HELLO format (RFC 6101 appendix E.2): no extensions, 3-byte cipher
    /// kinds. Clients long used it only to reach old servers while offering 3.x.
    pub(crate) sslv2_format: bool,
    /// Some cipher kind is SSL 2.0-only (its first byte is not zero): the client really offers
    /// SSL 2.0. The TLS suites among the kinds are not kept.
    pub(crate) offers_sslv2_kinds: bool,
}

impl<'a> ClientHello<'a> {
    pub(crate) fn extensions(&self) -> Extensions<'a> {
        Extensions(self.ext_block)
    }

    /// Reads a ClientHello body. `body` holds the bytes of the message the sample has (at most
    /// its declared length); `cut` says the sample ended before the message did. DTLS adds a
    /// cookie after the session id.
    pub(crate) fn parse(body: &'a [u8], cut: bool, dtls: bool) -> Option<Self> {
        let mut r = Reader::new(body);
        let mut hello = ClientHello {
            version: r.u16()?,
            ..ClientHello::default()
        };
        hello.complete = hello.read_rest(&mut r, dtls).is_some() && !cut;
        Some(hello)
    }

    fn read_rest(&mut self, r: &mut Reader<'a>, dtls: bool) -> Option<()> {
        r.skip(RANDOM_LEN)?;
        let (_session_id, whole) = r.vec8_up_to()?;
        whole.then_some(())?;
        if dtls {
            let (_cookie, whole) = r.vec8_up_to()?;
            whole.then_some(())?;
        }
        let (ciphers, whole) = r.vec16_up_to()?;
        self.ciphers = U16List::new(ciphers);
        whole.then_some(())?;
        let (_compression, whole) = r.vec8_up_to()?;
        whole.then_some(())?;
        if r.is_empty() {
            // Hellos from before extensions existed end here.
            return Some(());
        }
        let (block, whole) = r.vec16_up_to()?;
        self.ext_block = block;
        let mut all_whole = whole;
        for (ty, data, ext_whole) in self.extensions() {
            all_whole &= ext_whole;
            self.read_extension(ty, data);
        }
        all_whole.then_some(())
    }

    /// Keeps the first occurrence of each extension we read; a cut extension yields what it
    /// holds whole (list entries), never a half name.
    fn read_extension(&mut self, ty: u16, data: &'a [u8]) {
        let mut r = Reader::new(data);
        match ty {
            EXT_SERVER_NAME if self.server_name.is_none() => {
                self.server_name = r.vec16_up_to().and_then(|(list, _)| first_host_name(list));
            }
            EXT_ALPN if self.alpn.is_none() => {
                self.alpn = r.vec16_up_to().map(|(list, _)| AlpnNames(list));
            }
            EXT_SUPPORTED_VERSIONS if self.supported_versions.is_none() => {
                self.supported_versions = r.vec8_up_to().map(|(list, _)| U16List::new(list));
            }
            EXT_SUPPORTED_GROUPS if self.groups.is_none() => {
                self.groups = r.vec16_up_to().map(|(list, _)| U16List::new(list));
            }
            EXT_KEY_SHARE if self.key_shares.is_none() => {
                self.key_shares = r.vec16_up_to().map(|(list, _)| KeyShareGroups(list));
            }
            EXT_SIGNATURE_ALGORITHMS if self.signature_algorithms.is_none() => {
                self.signature_algorithms = r.vec16_up_to().map(|(list, _)| U16List::new(list));
            }
            _ => {}
        }
    }

    /// Reads an SSL 2.0-format CLIENT-HELLO body (after the message type byte): version,
    /// three lengths, then cipher kinds, session id and challenge.
    pub(crate) fn parse_sslv2(body: &'a [u8], cut: bool) -> Option<Self> {
        let mut r = Reader::new(body);
        let version = r.u16()?;
        let mut hello = ClientHello {
            version,
            sslv2_format: true,
            ..ClientHello::default()
        };
        let read = hello.read_sslv2_rest(&mut r);
        hello.complete = read.is_some() && !cut;
        Some(hello)
    }

    fn read_sslv2_rest(&mut self, r: &mut Reader<'a>) -> Option<()> {
        let specs_len = usize::from(r.u16()?);
        let session_len = usize::from(r.u16()?);
        let challenge_len = usize::from(r.u16()?);
        let (specs, whole) = r.take_up_to(specs_len);
        self.offers_sslv2_kinds = specs.chunks_exact(3).any(|kind| kind[0] != 0);
        whole.then_some(())?;
        r.skip(session_len)?;
        r.skip(challenge_len)
    }
}

/// The first `host_name` entry of a server_name list, if whole.
fn first_host_name(list: &[u8]) -> Option<&[u8]> {
    let mut r = Reader::new(list);
    while !r.is_empty() {
        let name_type = r.u8()?;
        let len = r.u16()?;
        let name = r.take(usize::from(len))?;
        if name_type == 0 {
            return Some(name);
        }
    }
    None
}

/// What a ServerHello (or HelloRetryRequest) says, as far as the sample goes.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerHello<'a> {
    pub(crate) version: u16,
    pub(crate) cipher: Option<u16>,
    /// supported_versions: the version TLS 1.3 really negotiates.
    pub(crate) selected_version: Option<u16>,
    /// key_share: the server's share group, or in a HelloRetryRequest the group it asks for.
    pub(crate) key_share_group: Option<u16>,
    pub(crate) alpn: Option<&'a [u8]>,
    pub(crate) hello_retry: bool,
    pub(crate) complete: bool,
}

impl<'a> ServerHello<'a> {
    pub(crate) fn parse(body: &'a [u8], cut: bool) -> Option<Self> {
        let mut r = Reader::new(body);
        let mut hello = ServerHello {
            version: r.u16()?,
            ..ServerHello::default()
        };
        hello.complete = hello.read_rest(&mut r).is_some() && !cut;
        Some(hello)
    }

    fn read_rest(&mut self, r: &mut Reader<'a>) -> Option<()> {
        self.hello_retry = r.take(RANDOM_LEN)? == HELLO_RETRY_RANDOM;
        let (_session_id, whole) = r.vec8_up_to()?;
        whole.then_some(())?;
        self.cipher = Some(r.u16()?);
        r.u8()?; // compression method
        if r.is_empty() {
            return Some(());
        }
        let (block, whole) = r.vec16_up_to()?;
        let mut all_whole = whole;
        for (ty, data, ext_whole) in Extensions(block) {
            all_whole &= ext_whole;
            let mut r = Reader::new(data);
            match ty {
                EXT_SUPPORTED_VERSIONS => self.selected_version = r.u16(),
                // Both the ServerHello share and the HelloRetryRequest selected group start
                // with the group.
                EXT_KEY_SHARE => self.key_share_group = r.u16(),
                EXT_ALPN => {
                    self.alpn = r.vec16_up_to().and_then(|(list, _)| AlpnNames(list).next());
                }
                _ => {}
            }
        }
        all_whole.then_some(())
    }
}

/// The named curve of an ECDHE ServerKeyExchange (RFC 8422 section 5.4), read with
/// tls-parser: only the three-byte curve parameters need to be in the sample.
pub(crate) fn server_key_exchange_curve(body: &[u8]) -> Option<u16> {
    use tls_parser::{ECParametersContent, parse_ec_parameters};
    match parse_ec_parameters(body) {
        Ok((_, params)) => match params.params_content {
            ECParametersContent::NamedGroup(group) => Some(group.0),
            ECParametersContent::ExplicitPrime(_) => None,
        },
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_share_groups_survive_a_cut_key() {
        // X25519MLKEM768 with a 1216-byte key of which 3 bytes are present.
        let list = [0x11, 0xec, 0x04, 0xc0, 1, 2, 3];
        assert_eq!(KeyShareGroups(&list).collect::<Vec<_>>(), [0x11ec]);
        let list = [0x00, 0x1d, 0x00, 0x01, 9, 0x00, 0x17];
        assert_eq!(KeyShareGroups(&list).collect::<Vec<_>>(), [0x001d, 0x0017]);
    }

    #[test]
    fn alpn_names_stop_at_a_cut_name() {
        let list = b"\x02h2\x08http/1";
        assert_eq!(AlpnNames(list).collect::<Vec<_>>(), [&b"h2"[..]]);
    }

    #[test]
    fn extensions_stop_after_a_cut_one() {
        let block = [0, 0, 0, 1, 7, 0, 0x10, 0, 5, 1, 2];
        let exts: Vec<_> = Extensions(&block).collect();
        assert_eq!(exts, [(0, &[7u8][..], true), (0x10, &[1, 2][..], false)]);
    }

    #[test]
    fn curve_from_server_key_exchange() {
        assert_eq!(server_key_exchange_curve(&[3, 0, 0x1d, 32, 1]), Some(0x1d));
        assert_eq!(server_key_exchange_curve(&[3, 0]), None);
        assert_eq!(server_key_exchange_curve(&[]), None);
    }
}
