//! IPsec on IP protocols 50 and 51. ESP (RFC 4303) is encrypted by construction; its header is
//! an SPI (values below 256 are reserved) and a sequence number. AH (RFC 4302) authenticates
//! but does not encrypt, so an AH flow is plaintext unless the header it protects is ESP.

use super::{Context, Encryption, Protocol, Verdict, be32};
use crate::net::{IPPROTO_AH, IPPROTO_ESP};

/// SPIs 1-255 are reserved by IANA; 0 never appears on the wire.
const MIN_SPI: u32 = 256;
/// ESP: SPI, sequence number, and at least an IV-less 4-byte payload with its trailer.
const MIN_ESP_LEN: u32 = 16;

#[inline(always)]
pub(super) fn detect(w: &[u8], ctx: &Context) -> Verdict {
    let esp = Verdict::new(Protocol::IpsecEsp, Encryption::Encrypted);
    match ctx.transport {
        IPPROTO_ESP
            if ctx.payload_len >= MIN_ESP_LEN && be32(w, 0).is_some_and(|spi| spi >= MIN_SPI) =>
        {
            esp
        }
        IPPROTO_AH => {
            // Next header, payload length in 32-bit words minus 2, reserved, SPI.
            let (Some(&next), Some(&len_words)) = (w.first(), w.get(1)) else {
                return Verdict::UNKNOWN;
            };
            let header_len = (u32::from(len_words).wrapping_add(2)).wrapping_mul(4);
            let spi_ok = be32(w, 4).is_some_and(|spi| spi >= MIN_SPI);
            if !spi_ok || header_len > ctx.payload_len {
                return Verdict::UNKNOWN;
            }
            if next == IPPROTO_ESP {
                esp
            } else {
                Verdict::new(Protocol::IpsecAh, Encryption::Plaintext)
            }
        }
        _ => Verdict::UNKNOWN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::tests::hex;

    fn ctx(transport: u8, payload_len: u32) -> Context {
        Context {
            transport,
            payload_len,
            start_seen: true,
        }
    }

    #[test]
    fn esp_with_a_real_spi() {
        let esp = hex("b64ef321000000015a3c9e0f11d2c7a4e1f0b3c2d4e5f60718293a4b");
        assert_eq!(
            detect(&esp, &ctx(IPPROTO_ESP, 120)),
            Verdict::new(Protocol::IpsecEsp, Encryption::Encrypted)
        );
        assert_eq!(
            detect(&hex("000000ff00000001aabbccdd"), &ctx(IPPROTO_ESP, 120)),
            Verdict::UNKNOWN,
            "reserved SPI"
        );
    }

    #[test]
    fn ah_is_plaintext_unless_it_carries_esp() {
        // AH over TCP (next header 6), 24-byte header (len field 4), SPI 0x1000.
        let ah_tcp = hex("06040000000010000000000100000000000000000000000000000000");
        assert_eq!(
            detect(&ah_tcp, &ctx(IPPROTO_AH, 80)),
            Verdict::new(Protocol::IpsecAh, Encryption::Plaintext)
        );
        let mut ah_esp = ah_tcp.clone();
        ah_esp[0] = IPPROTO_ESP;
        assert_eq!(
            detect(&ah_esp, &ctx(IPPROTO_AH, 80)).encryption,
            Encryption::Encrypted
        );
        assert_eq!(
            detect(&ah_tcp, &ctx(IPPROTO_AH, 20)),
            Verdict::UNKNOWN,
            "header longer than the packet"
        );
    }
}
