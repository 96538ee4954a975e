//! Initial packet protection (RFC 9001 section 5): keys from the client's Destination
//! Connection ID, header protection, AES-128-GCM.
//!
//! Every failure is an `Option::None`: with the wrong keys (another connection ID, a packet from
//! the other side, a corrupted packet) the GCM tag does not verify, and that is the only check
//! that tells right from wrong, so nothing here needs to be more precise than "did not open".

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes_gcm::aead::AeadInPlace;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::{Aes128Gcm, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha256;

use super::version::Version;

/// Bytes of a GCM tag, and of the header-protection sample.
const TAG_LEN: usize = 16;
const SAMPLE_LEN: usize = 16;
/// The sample starts this far after the packet number's first byte, as if it were 4 bytes long
/// (RFC 9001 section 5.4.2): the receiver does not know its length before unmasking it.
const SAMPLE_OFFSET: usize = 4;

/// Which side's keys: each direction has its own, both from the same Initial secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Client,
    Server,
}

/// AEAD key, IV and header-protection key of one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Keys {
    pub(super) key: [u8; 16],
    pub(super) iv: [u8; 12],
    pub(super) hp: [u8; 16],
}

impl Keys {
    /// The Initial keys of `side` for a connection whose client picked `dcid` as the
    /// Destination Connection ID of its first Initial packet.
    pub(super) fn initial(version: Version, dcid: &[u8], side: Side) -> Option<Keys> {
        let secret = initial_secret(version, dcid, side)?;
        Keys::from_secret(version, &secret)
    }

    fn from_secret(version: Version, secret: &[u8; 32]) -> Option<Keys> {
        let hk = Hkdf::<Sha256>::from_prk(secret).ok()?;
        let [key_label, iv_label, hp_label] = version.labels();
        let mut keys = Keys {
            key: [0; 16],
            iv: [0; 12],
            hp: [0; 16],
        };
        expand_label(&hk, key_label, &mut keys.key)?;
        expand_label(&hk, iv_label, &mut keys.iv)?;
        expand_label(&hk, hp_label, &mut keys.hp)?;
        Some(keys)
    }
}

/// `client_initial_secret` or `server_initial_secret` (RFC 9001 section 5.2). The labels are the
/// same in v2; only the salt differs.
fn initial_secret(version: Version, dcid: &[u8], side: Side) -> Option<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(version.salt), dcid);
    let label: &[u8] = match side {
        Side::Client => b"client in",
        Side::Server => b"server in",
    };
    let mut secret = [0u8; 32];
    expand_label(&hk, label, &mut secret)?;
    Some(secret)
}

/// TLS 1.3's HKDF-Expand-Label with an empty context (RFC 8446 section 7.1).
fn expand_label(hk: &Hkdf<Sha256>, label: &[u8], out: &mut [u8]) -> Option<()> {
    let length = u16::try_from(out.len()).ok()?.to_be_bytes();
    let label_len = [u8::try_from(b"tls13 ".len() + label.len()).ok()?];
    hk.expand_multi_info(&[&length, &label_len, b"tls13 ", label, &[0]], out)
        .ok()
}

/// A long-header packet as it travels: `bytes` runs from its first byte to the end of its
/// payload, `pn_offset` is where the (protected) packet number starts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Protected<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) pn_offset: usize,
}

impl Protected<'_> {
    /// Removes header protection and decrypts. `largest_pn` is the largest packet number opened
    /// so far in this direction's Initial space, for expanding the truncated number on the
    /// wire. Returns the full packet number and the plaintext payload (frames).
    pub(super) fn open(&self, keys: &Keys, largest_pn: Option<u64>) -> Option<(u64, Vec<u8>)> {
        let sample_at = self.pn_offset.checked_add(SAMPLE_OFFSET)?;
        let sample = self
            .bytes
            .get(sample_at..sample_at.checked_add(SAMPLE_LEN)?)?;
        let mask = header_mask(&keys.hp, sample)?;

        let first = self.bytes.first()? ^ (mask[0] & 0x0f);
        let pn_len = usize::from(first & 0x03) + 1;
        let payload_at = self.pn_offset + pn_len;
        let mut header = self.bytes.get(..payload_at)?.to_vec();
        header[0] = first;
        let mut truncated = 0u64;
        for (i, b) in header[self.pn_offset..].iter_mut().enumerate() {
            *b ^= mask[1 + i];
            truncated = (truncated << 8) | u64::from(*b);
        }
        let pn = decode_packet_number(largest_pn, truncated, pn_len * 8);

        let sealed = self.bytes.get(payload_at..)?;
        let text_len = sealed.len().checked_sub(TAG_LEN)?;
        let (ciphertext, tag) = sealed.split_at(text_len);
        let tag: [u8; TAG_LEN] = tag.try_into().ok()?;
        let mut nonce = keys.iv;
        for (n, p) in nonce[4..].iter_mut().zip(pn.to_be_bytes()) {
            *n ^= p;
        }
        let mut payload = ciphertext.to_vec();
        Aes128Gcm::new(&GenericArray::from(keys.key))
            .decrypt_in_place_detached(&Nonce::from(nonce), &header, &mut payload, &Tag::from(tag))
            .ok()?;
        Some((pn, payload))
    }
}

/// AES-128-ECB of the sample under the header-protection key (RFC 9001 section 5.4.3).
fn header_mask(hp: &[u8; 16], sample: &[u8]) -> Option<[u8; 16]> {
    let block: [u8; 16] = sample.try_into().ok()?;
    let mut block = GenericArray::from(block);
    Aes128::new(&GenericArray::from(*hp)).encrypt_block(&mut block);
    Some(block.into())
}

/// RFC 9000 appendix A.3: the packet number closest to the next expected one whose low `bits`
/// bits are `truncated`.
fn decode_packet_number(largest: Option<u64>, truncated: u64, bits: usize) -> u64 {
    const MAX: u64 = 1 << 62;
    let expected = largest.map_or(0, |l| l.saturating_add(1));
    let window = 1u64 << bits;
    let half = window / 2;
    let candidate = (expected & !(window - 1)) | truncated;
    if candidate.saturating_add(half) <= expected && candidate < MAX.saturating_sub(window) {
        candidate + window
    } else if candidate > expected.saturating_add(half) && candidate >= window {
        candidate - window
    } else {
        candidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quic::version::V2;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    const DCID: &str = "8394c8f03e515708";

    /// RFC 9001 appendix A.1.
    #[test]
    fn v1_initial_keys() {
        let v1 = Version::from_wire(1).unwrap();
        let dcid = unhex(DCID);
        let secret = initial_secret(v1, &dcid, Side::Client).unwrap();
        assert_eq!(
            secret.to_vec(),
            unhex("c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea")
        );
        let client = Keys::initial(v1, &dcid, Side::Client).unwrap();
        assert_eq!(
            client.key.to_vec(),
            unhex("1f369613dd76d5467730efcbe3b1a22d")
        );
        assert_eq!(client.iv.to_vec(), unhex("fa044b2f42a3fd3b46fb255c"));
        assert_eq!(
            client.hp.to_vec(),
            unhex("9f50449e04a0e810283a1e9933adedd2")
        );
        let secret = initial_secret(v1, &dcid, Side::Server).unwrap();
        assert_eq!(
            secret.to_vec(),
            unhex("3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b")
        );
        let server = Keys::initial(v1, &dcid, Side::Server).unwrap();
        assert_eq!(
            server.key.to_vec(),
            unhex("cf3a5331653c364c88f0f379b6067e37")
        );
        assert_eq!(server.iv.to_vec(), unhex("0ac1493ca1905853b0bba03e"));
        assert_eq!(
            server.hp.to_vec(),
            unhex("c206b8d9b9f0f37644430b490eeaa314")
        );
    }

    /// RFC 9369 appendix A.1.
    #[test]
    fn v2_initial_keys() {
        let v2 = Version::from_wire(V2).unwrap();
        let dcid = unhex(DCID);
        let secret = initial_secret(v2, &dcid, Side::Client).unwrap();
        assert_eq!(
            secret.to_vec(),
            unhex("14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b")
        );
        let client = Keys::initial(v2, &dcid, Side::Client).unwrap();
        assert_eq!(
            client.key.to_vec(),
            unhex("8b1a0bc121284290a29e0971b5cd045d")
        );
        assert_eq!(client.iv.to_vec(), unhex("91f73e2351d8fa91660e909f"));
        assert_eq!(
            client.hp.to_vec(),
            unhex("45b95e15235d6f45a6b19cbcb0294ba9")
        );
        let secret = initial_secret(v2, &dcid, Side::Server).unwrap();
        assert_eq!(
            secret.to_vec(),
            unhex("0263db1782731bf4588e7e4d93b7463907cb8cd8200b5da55a8bd488eafc37c1")
        );
        let server = Keys::initial(v2, &dcid, Side::Server).unwrap();
        assert_eq!(
            server.key.to_vec(),
            unhex("82db637861d55e1d011f19ea71d5d2a7")
        );
        assert_eq!(server.iv.to_vec(), unhex("dd13c276499c0249d3310652"));
        assert_eq!(
            server.hp.to_vec(),
            unhex("edf6d05c83121201b436e16877593c3a")
        );
    }

    /// RFC 9001 appendix A.2: the header-protection mask of the client's Initial.
    #[test]
    fn v1_header_mask() {
        let hp: [u8; 16] = unhex("9f50449e04a0e810283a1e9933adedd2")
            .try_into()
            .unwrap();
        let mask = header_mask(&hp, &unhex("d1b1c98dd7689fb8ec11d242b123dc9b")).unwrap();
        assert_eq!(mask[..5].to_vec(), unhex("437b9aec36"));
    }

    #[test]
    fn packet_numbers() {
        // RFC 9000 appendix A.3's example.
        assert_eq!(
            decode_packet_number(Some(0xa82f30ea), 0x9b32, 16),
            0xa82f9b32
        );
        assert_eq!(decode_packet_number(None, 2, 32), 2);
        assert_eq!(decode_packet_number(None, 0, 8), 0);
        assert_eq!(decode_packet_number(Some(255), 1, 8), 257);
        assert_eq!(decode_packet_number(Some(300), 250, 8), 250);
        // No overflow at the edges.
        let _ = decode_packet_number(Some(u64::MAX), u64::from(u32::MAX), 32);
        let _ = decode_packet_number(Some((1 << 62) - 1), 0xff, 8);
    }
}
