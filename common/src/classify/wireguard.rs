//! WireGuard: a message type (1 initiation, 2 response, 3 cookie reply, 4 transport data), three
//! reserved zero bytes, and a size fixed by the type (whitepaper section 5.4).

use super::{Context, Encryption, Protocol, Verdict};

#[inline(always)]
pub(super) fn detect(w: &[u8], ctx: &Context) -> Option<Verdict> {
    let &[kind, 0, 0, 0, ..] = w else { return None };
    let len = ctx.payload_len;
    let sized = match kind {
        1 => len == 148,
        2 => len == 92,
        3 => len == 64,
        // Counter and receiver index (12 bytes after the header), a 16-byte tag, and padding
        // to 16 bytes.
        4 => len
            .checked_sub(32)
            .is_some_and(|body| body.is_multiple_of(16)),
        _ => false,
    };
    sized.then_some(Verdict::new(Protocol::Wireguard, Encryption::Encrypted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::tests::hex;

    const WG: Option<Verdict> = Some(Verdict::new(Protocol::Wireguard, Encryption::Encrypted));

    #[test]
    fn mullvad_transport_data_both_ways() {
        let a = hex(
            "040000001576497913000000000000003bc85395c81aa144b19f96e639fb04b89c8880767cf1142a03a1ec927c93f144",
        );
        let b = hex(
            "04000000b048101c0f000000000000000b084e9cecdcdaa3fe69e005cc0bb9cb40d096d1d35e314bf0e81535c3ae4f30",
        );
        assert_eq!(detect(&a, &Context::udp(96)), WG);
        assert_eq!(detect(&b, &Context::udp(96)), WG);
    }

    #[test]
    fn handshake_sizes_are_exact() {
        let init = [1, 0, 0, 0, 0x55, 0x66];
        assert_eq!(detect(&init, &Context::udp(148)), WG);
        assert_eq!(detect(&init, &Context::udp(149)), None);
        assert_eq!(detect(&[2, 0, 0, 0], &Context::udp(92)), WG);
        assert_eq!(
            detect(&[4, 0, 0, 0], &Context::udp(97)),
            None,
            "data is padded to 16 bytes"
        );
        assert_eq!(detect(&[5, 0, 0, 0], &Context::udp(96)), None);
        assert_eq!(detect(&[4, 0, 1, 0], &Context::udp(96)), None);
    }
}
