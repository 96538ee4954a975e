//! Telnet option negotiation (RFC 854, RFC 855): both ends usually open with a burst of
//! `IAC` (`0xff`) commands, `WILL`/`WONT`/`DO`/`DONT` (`0xfb`-`0xfe`) and an option code, or a
//! subnegotiation (`IAC SB`, `0xfa`). Two such commands in a row, or a packet that is exactly
//! one, name the flow. A server that opens with a text banner instead is left to the randomness
//! judgement, which calls readable text plaintext.

use super::super::{Context, Protocol, Verdict};
use super::plaintext;

const IAC: u8 = 0xff;
const SB: u8 = 0xfa;
const WILL: u8 = 0xfb;
const DONT: u8 = 0xfe;
/// Options assigned so far run to 49 (plus 255, the extended list, which is never negotiated
/// first).
const MAX_OPTION: u8 = 49;

#[inline(never)]
pub(super) fn detect(w: &[u8], ctx: &Context) -> Option<Verdict> {
    let &[IAC, c0, o0, ..] = w else {
        return None;
    };
    if !(WILL..=DONT).contains(&c0) || o0 > MAX_OPTION {
        return None;
    }
    if ctx.payload_len == 3 {
        // Three bytes are few: only the options clients and servers open with.
        return common_option(o0).then(|| plaintext(Protocol::Telnet));
    }
    let &[_, _, _, IAC, c1, o1, ..] = w else {
        return None;
    };
    let ok = ctx.payload_len >= 6 && (SB..=DONT).contains(&c1) && o1 <= MAX_OPTION;
    ok.then(|| plaintext(Protocol::Telnet))
}

/// Binary, echo, suppress-go-ahead, status, terminal type, window size, terminal speed, flow
/// control, linemode, X display, environment, authentication, encryption, new environment.
#[inline(always)]
fn common_option(option: u8) -> bool {
    matches!(option, 0 | 1 | 3 | 5 | 24 | 31..=39)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::classify::services::tests::{Bytes::Hex, Fixture, tcp};
    use crate::classify::tests::hex;

    const TELNET: Verdict = plaintext(Protocol::Telnet);

    pub(crate) const FIXTURES: &[Fixture] = &[
        // inetutils 2.4 telnetd and telnet (Debian 12) on loopback.
        tcp(
            "Telnet server negotiation (WILL ENCRYPT/AUTH, DO TTYPE, TSPEED, ...), telnetd",
            Hex("fffb25fffb26fffd18fffd20fffd23fffd27fffd24"),
            21,
            TELNET,
        ),
        tcp(
            "Telnet client answer with a subnegotiation, telnet",
            Hex("fffd25fffd26fffa2601fff0fffb18fffb20fffc23fffb27fffc24"),
            27,
            TELNET,
        ),
    ];

    #[test]
    fn negotiation_from_captures() {
        for f in FIXTURES {
            assert_eq!(detect(&f.window(), &f.ctx()), Some(f.expect), "{}", f.name);
        }
    }

    #[test]
    fn one_command_only_when_it_is_the_whole_packet() {
        let will_ttype = hex("fffb18");
        assert_eq!(detect(&will_ttype, &Context::tcp(3, true)), Some(TELNET));
        let mut padded = [0u8; 64];
        padded[..3].copy_from_slice(&will_ttype);
        assert_eq!(detect(&padded, &Context::tcp(40, true)), None);
        assert_eq!(
            detect(&hex("fff118"), &Context::tcp(3, true)),
            None,
            "NOP is no negotiation"
        );
        assert_eq!(
            detect(&hex("fffb99"), &Context::tcp(3, true)),
            None,
            "unassigned option"
        );
        assert_eq!(
            detect(&hex("fffb0f"), &Context::tcp(3, true)),
            None,
            "rare option alone"
        );
        assert_eq!(detect(&hex("fffb18fffb99"), &Context::tcp(6, true)), None);
    }
}
