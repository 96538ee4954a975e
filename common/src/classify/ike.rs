//! IKE (IKEv1 ISAKMP and IKEv2, RFC 7296 section 3.1) on UDP 500, or on 4500 behind the
//! four-zero-byte non-ESP marker of NAT traversal (RFC 3948): a non-zero initiator SPI, a version
//! byte of 1.0 or 2.0, a known exchange type, and a length field equal to the message length.

use super::{Context, Encryption, Protocol, Verdict, be32};

/// SPIs (8 + 8), next payload, version, exchange type, flags, message id (4), length (4).
const HEADER_LEN: u32 = 28;

#[inline(always)]
pub(super) fn detect(w: &[u8], ctx: &Context) -> Option<Verdict> {
    if be32(w, 0)? == 0 {
        // Non-ESP marker: the IKE message follows.
        return header(w.get(4..)?, ctx.payload_len.checked_sub(4)?);
    }
    header(w, ctx.payload_len)
}

#[inline(always)]
fn header(w: &[u8], message_len: u32) -> Option<Verdict> {
    let initiator_spi = (be32(w, 0)?, be32(w, 4)?);
    let version = *w.get(17)?;
    let exchange = *w.get(18)?;
    let length = be32(w, 24)?;
    let exchange_ok = match version {
        0x20 => (34..=37).contains(&exchange) || exchange == 43,
        0x10 => matches!(exchange, 1..=6 | 32 | 33),
        _ => false,
    };
    let ok =
        initiator_spi != (0, 0) && exchange_ok && length >= HEADER_LEN && length == message_len;
    ok.then_some(Verdict::new(Protocol::Ike, Encryption::Encrypted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::tests::hex;

    const IKE: Option<Verdict> = Some(Verdict::new(Protocol::Ike, Encryption::Encrypted));

    #[test]
    fn ikev2_sa_init_on_500() {
        let request = hex(
            "b64ef32131a4895200000000000000002120220800000000000003082200020802000050010100080300000c0100000c",
        );
        assert_eq!(detect(&request, &Context::udp(776)), IKE);
        let response = hex(
            "b64ef32131a4895200000000000000002920222000000000000000340000001800004006000155739f613a70f771484c",
        );
        assert_eq!(detect(&response, &Context::udp(52)), IKE);
    }

    #[test]
    fn ikev2_auth_behind_the_nat_t_marker() {
        let auth = hex(
            "00000000b64ef32131a4895286babd39048869552e202308000000010000032c23000310c4ff8cdb8b2ce73c55be250e",
        );
        assert_eq!(detect(&auth, &Context::udp(816)), IKE);
    }

    #[test]
    fn a_length_that_disagrees_is_not_ike() {
        let request = hex(
            "b64ef32131a4895200000000000000002120220800000000000003082200020802000050010100080300000c0100000c",
        );
        assert_eq!(detect(&request, &Context::udp(775)), None);
        let mut v3 = request.clone();
        v3[17] = 0x30;
        assert_eq!(detect(&v3, &Context::udp(776)), None);
    }
}
