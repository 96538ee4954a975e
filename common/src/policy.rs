//! The policy as the kernel programs hold it, and the decision they take with it on a flow's
//! verdict. User space compiles the YAML policy into a [`KernelPolicy`] (built-in exclusions
//! first, then the file's, in order, so a rule's index names the same exclusion on both sides)
//! and writes it into the slot of [`POLICY_MAP`] that is not active, then flips
//! [`POLICY_ACTIVE_MAP`]: a program sees either the old policy or the new one, never a mix, and
//! never none.

use crate::{Encryption, Protocol};

/// Name of the array map holding two [`KernelPolicy`] slots.
pub const POLICY_MAP: &str = "POLICY";
/// Name of the one-entry array holding the active slot (0 or 1).
pub const POLICY_ACTIVE_MAP: &str = "POLICY_ACTIVE";
/// Name of the hash map from cgroup id to [`CgroupRules`]: the cgroups of the processes and pods
/// that exclusions name, resolved by user space.
pub const EXEMPT_CGROUPS_MAP: &str = "EXEMPT_CGROUPS";
/// Name of the hash map from a local port ([`port_key`]) to [`CgroupRules`]: the ports the
/// processes that exclusions name listen on, for packets arriving (ingress has no socket yet).
pub const EXEMPT_PORTS_MAP: &str = "EXEMPT_PORTS";
/// Name of the hash map from a TLS cipher suite to a nonzero value when the suite is weak.
pub const WEAK_SUITES_MAP: &str = "WEAK_SUITES";

/// Exclusions the kernel can evaluate, built-in ones included: one bit each in a `u64`.
pub const MAX_RULES: usize = 64;
/// Networks that count as inside (east-west).
pub const MAX_INTERNAL: usize = 64;
/// Entries of the network map: internal networks and exclusion networks, both slots.
pub const MAX_NETS: u32 = 1024;
/// Entries of the server-port map, both slots (port ranges are expanded port by port).
pub const MAX_PORT_ENTRIES: u32 = 32_768;
/// Cgroups user space may resolve process and pod exclusions into.
pub const MAX_EXEMPT_CGROUPS: u32 = 4096;
/// Weak cipher suites the kernel knows.
pub const MAX_WEAK_SUITES: u32 = 1024;
/// Protocol numbers [`KernelPolicy::protocol_rules`] covers.
pub const MAX_PROTOCOLS: usize = 64;

/// Name of the LPM trie from a [`NetKey`] to a [`NetValue`].
pub const NETS_MAP: &str = "NETS";
/// Name of the hash map from [`slot_port_key`] to the rules that name the port.
pub const PORTS_MAP: &str = "PORTS";

/// `FlowState::action` and `FlowNotice::action`: what the policy decided for the flow.
pub const ACTION_NONE: u8 = 0;
pub const ACTION_ALLOW: u8 = 1;
pub const ACTION_ALERT: u8 = 2;
pub const ACTION_DROP: u8 = 3;
pub const ACTION_EXCLUDED: u8 = 4;

/// [`KernelPolicy::unknown`]: the treatment of flows the classifier could not name.
pub const TREAT_ALLOW: u8 = 0;
pub const TREAT_ALERT: u8 = 1;
pub const TREAT_DROP: u8 = 2;

/// The data of a [`NETS_MAP`] key: an address (or a network, by the key's prefix length) in one
/// policy slot. The prefix length counts the slot and family bytes too, so a slot's entries
/// never match another's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetKey {
    pub slot: u8,
    pub family: u8,
    /// Network-order address; IPv4 in the first four bytes.
    pub addr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<NetKey>() == 18);

/// Bits of the slot and family bytes in a [`NETS_MAP`] key's prefix length.
pub const NET_KEY_HEADER_BITS: u32 = 16;

/// What the longest matching network says: whether it is inside, and which exclusions name a
/// network holding it (user space folds every enclosing network's rules into each entry, so
/// the longest match alone answers).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetValue {
    pub rules: u64,
    pub internal: u8,
    pub _pad: [u8; 7],
}
const _: () = assert!(core::mem::size_of::<NetValue>() == 16);

/// The [`EXEMPT_PORTS_MAP`] key of a local port.
#[inline(always)]
pub const fn port_key(transport: u8, port: u16) -> u32 {
    ((transport as u32) << 16) | port as u32
}

/// The [`PORTS_MAP`] key of a server port in a policy slot.
#[inline(always)]
pub const fn slot_port_key(slot: u32, port: u16) -> u32 {
    ((slot & 1) << 16) | port as u32
}

/// The policy's scalar part, in one map value per slot. Exclusion `i` is bit `i` of every mask:
/// a flow matches it when every mask has the bit.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KernelPolicy {
    /// Nonzero: drop what is forbidden (enforce mode); zero: alert only (monitor mode).
    pub enforce: u8,
    /// Nonzero: forbidden north-south flows are dropped too, not only east-west ones.
    pub north_south: u8,
    /// `TREAT_*` for flows that end `unknown`.
    pub unknown: u8,
    /// Lowest acceptable TLS minor version (TLS 1.x); checked on the ServerHello.
    pub min_tls_minor: u8,
    /// Nonzero: check ServerHellos for cipher suites in [`WEAK_SUITES_MAP`].
    pub weak_suites: u8,
    /// Nonzero: some rule names processes or pods, so the flow's cgroup must be looked up.
    pub by_cgroup: u8,
    pub _pad: [u8; 2],
    /// Rules that name no network, no port, no process or pod.
    pub any_net: u64,
    pub any_port: u64,
    pub not_by_cgroup: u64,
    /// Per IP protocol number and per [`Protocol`]: the rules that allow it.
    pub transport_rules: [u64; 256],
    pub protocol_rules: [u64; MAX_PROTOCOLS],
}
const _: () = assert!(core::mem::size_of::<KernelPolicy>() == 32 + 8 * (256 + MAX_PROTOCOLS));

impl Default for KernelPolicy {
    /// Monitor mode with nothing excluded: every verdict is alerted or allowed, none dropped.
    fn default() -> KernelPolicy {
        KernelPolicy {
            enforce: 0,
            north_south: 0,
            unknown: TREAT_ALERT,
            min_tls_minor: 0,
            weak_suites: 0,
            by_cgroup: 0,
            _pad: [0; 2],
            any_net: 0,
            any_port: 0,
            not_by_cgroup: 0,
            transport_rules: [0; 256],
            protocol_rules: [0; MAX_PROTOCOLS],
        }
    }
}

/// A [`CgroupRules`] per policy slot: bit `i` set when rule `i` of that slot's policy names a
/// process or pod living in the cgroup (or listening on the port).
pub type CgroupRules = [u64; 2];

/// What the decision needs to know about a flow, the map lookups already done.
#[derive(Clone, Copy, Debug, Default)]
pub struct Facts {
    pub transport: u8,
    pub protocol: u8,
    /// Both ends inside the internal networks.
    pub east_west: bool,
    /// Rules naming a network that holds either end.
    pub net_rules: u64,
    /// Rules naming the server port.
    pub port_rules: u64,
    /// Rules naming a process or pod the flow's local socket belongs to.
    pub cgroup_rules: u64,
}

/// The decision: an `ACTION_*`, and for [`ACTION_EXCLUDED`] the matching rule's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: u8,
    pub rule: u8,
}

/// Whether a verdict is forbidden at all: plaintext always, unknown when the policy says drop.
/// `None`: not the policy's business here (encrypted verdicts are judged on the ServerHello).
#[inline(always)]
pub fn forbidden(p: &KernelPolicy, encryption: u8) -> Option<bool> {
    if encryption == Encryption::Plaintext as u8 {
        Some(true)
    } else if encryption == Encryption::Unknown as u8 {
        match p.unknown {
            TREAT_ALLOW => None,
            TREAT_DROP => Some(true),
            _ => Some(false),
        }
    } else {
        None
    }
}

/// Decides a verdict the policy may forbid. A flow an exclusion matches is excluded (the first
/// one, by index); otherwise a forbidden flow is dropped in enforce mode when it is east-west
/// (or north-south flows are enforced too), and alerted in every other case.
#[inline(always)]
pub fn decide(p: &KernelPolicy, f: &Facts, forbid: bool) -> Decision {
    let matched = matching_rules(p, f);
    if matched != 0 {
        return Decision {
            action: ACTION_EXCLUDED,
            rule: lowest_bit(matched),
        };
    }
    let enforced = p.enforce != 0 && (p.north_south != 0 || f.east_west);
    let action = if forbid && enforced {
        ACTION_DROP
    } else {
        ACTION_ALERT
    };
    Decision { action, rule: 0 }
}

/// Whether [`decide`] on a verdict of this transport and protocol can come out differently for
/// different [`Facts`]: only when some exclusion allows the transport and the protocol, or when
/// enforce mode drops east-west flows alone. Otherwise the kernel skips looking the networks,
/// the server port and the cgroup up (two LPM lookups and up to two hash lookups): in monitor
/// mode without exclusions, the default, every plaintext verdict is alerted whatever they say.
#[inline(always)]
pub fn needs_facts(p: &KernelPolicy, transport: u8, protocol: u8) -> bool {
    let protocol_rules = if (protocol as usize) < MAX_PROTOCOLS {
        p.protocol_rules[protocol as usize]
    } else {
        0
    };
    let candidates = p.transport_rules[transport as usize] & protocol_rules;
    candidates != 0 || (p.enforce != 0 && p.north_south == 0)
}

impl Facts {
    /// Facts nothing was looked up for, when [`needs_facts`] says none would change the
    /// decision.
    pub const fn unlooked(transport: u8, protocol: u8) -> Facts {
        Facts {
            transport,
            protocol,
            east_west: false,
            net_rules: 0,
            port_rules: 0,
            cgroup_rules: 0,
        }
    }
}

/// The exclusions whose every field matches: one AND per field, no loop over rules.
#[inline(always)]
pub fn matching_rules(p: &KernelPolicy, f: &Facts) -> u64 {
    let protocol = if (f.protocol as usize) < MAX_PROTOCOLS {
        p.protocol_rules[f.protocol as usize]
    } else {
        0
    };
    (f.net_rules | p.any_net)
        & (f.port_rules | p.any_port)
        & p.transport_rules[f.transport as usize]
        & protocol
        & (f.cgroup_rules | p.not_by_cgroup)
}

/// Index of the lowest set bit of a nonzero `m`, by halving (BPF has no count-trailing-zeros).
#[inline(always)]
pub fn lowest_bit(m: u64) -> u8 {
    let mut m = m & m.wrapping_neg();
    let mut i = 0u8;
    if m & 0xffff_ffff == 0 {
        i += 32;
        m >>= 32;
    }
    if m & 0xffff == 0 {
        i += 16;
        m >>= 16;
    }
    if m & 0xff == 0 {
        i += 8;
        m >>= 8;
    }
    if m & 0xf == 0 {
        i += 4;
        m >>= 4;
    }
    if m & 0x3 == 0 {
        i += 2;
        m >>= 2;
    }
    if m & 0x1 == 0 {
        i += 1;
    }
    i
}

/// Protocols whose plaintext opening may be followed by an in-band upgrade to TLS (STARTTLS and
/// the like); in enforce mode the kernel lets their preamble through and judges the upgrade.
#[inline(always)]
pub fn upgradable(protocol: u8) -> bool {
    protocol == Protocol::Smtp as u8
        || protocol == Protocol::Imap as u8
        || protocol == Protocol::Pop3 as u8
        || protocol == Protocol::Ftp as u8
        || protocol == Protocol::Postgresql as u8
        || protocol == Protocol::Mysql as u8
        || protocol == Protocol::Ldap as u8
        || protocol == Protocol::Xmpp as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{IPPROTO_TCP, IPPROTO_UDP};

    fn policy() -> KernelPolicy {
        KernelPolicy {
            enforce: 1,
            ..KernelPolicy::default()
        }
    }

    fn facts() -> Facts {
        Facts {
            transport: IPPROTO_TCP,
            protocol: Protocol::Http as u8,
            east_west: true,
            ..Facts::default()
        }
    }

    /// Where `needs_facts` says no, no facts change the decision; and it says no for the
    /// default monitor policy, the case it exists for.
    #[test]
    fn facts_are_skipped_only_where_they_cannot_matter() {
        let mut with_udp_rule = KernelPolicy::default();
        transport_rule(&mut with_udp_rule, 3, IPPROTO_UDP);
        let mut enforce_with_udp_rule = with_udp_rule;
        enforce_with_udp_rule.enforce = 1;
        let policies = [
            KernelPolicy::default(),
            with_udp_rule,
            policy(),
            KernelPolicy {
                north_south: 1,
                ..policy()
            },
            enforce_with_udp_rule,
            KernelPolicy {
                north_south: 1,
                ..enforce_with_udp_rule
            },
        ];
        let mut skipped = 0;
        for p in &policies {
            for transport in [IPPROTO_TCP, IPPROTO_UDP] {
                for protocol in [Protocol::Http, Protocol::Dns, Protocol::Unknown] {
                    let protocol = protocol as u8;
                    if needs_facts(p, transport, protocol) {
                        continue;
                    }
                    skipped += 1;
                    for forbid in [false, true] {
                        let unlooked = decide(p, &Facts::unlooked(transport, protocol), forbid);
                        for east_west in [false, true] {
                            for bits in [0, u64::MAX] {
                                let f = Facts {
                                    transport,
                                    protocol,
                                    east_west,
                                    net_rules: bits,
                                    port_rules: bits,
                                    cgroup_rules: bits,
                                };
                                assert_eq!(decide(p, &f, forbid), unlooked);
                            }
                        }
                    }
                }
            }
        }
        assert!(!needs_facts(
            &KernelPolicy::default(),
            IPPROTO_TCP,
            Protocol::Http as u8
        ));
        assert!(needs_facts(&policy(), IPPROTO_TCP, Protocol::Http as u8));
        assert!(needs_facts(
            &with_udp_rule,
            IPPROTO_UDP,
            Protocol::Dns as u8
        ));
        assert!(skipped >= 12, "{skipped}");
    }

    /// Rule `i` naming only a transport (every other field "any").
    fn transport_rule(p: &mut KernelPolicy, i: u32, transport: u8) {
        let bit = 1u64 << i;
        p.any_net |= bit;
        p.any_port |= bit;
        p.not_by_cgroup |= bit;
        p.transport_rules[transport as usize] |= bit;
        for r in p.protocol_rules.iter_mut() {
            *r |= bit;
        }
    }

    #[test]
    fn plaintext_east_west_is_dropped_only_when_enforcing() {
        let mut p = policy();
        assert_eq!(forbidden(&p, Encryption::Plaintext as u8), Some(true));
        assert_eq!(decide(&p, &facts(), true).action, ACTION_DROP);
        p.enforce = 0;
        assert_eq!(decide(&p, &facts(), true).action, ACTION_ALERT);
    }

    #[test]
    fn north_south_is_alerted_unless_enforced_too() {
        let mut p = policy();
        let f = Facts {
            east_west: false,
            ..facts()
        };
        assert_eq!(decide(&p, &f, true).action, ACTION_ALERT);
        p.north_south = 1;
        assert_eq!(decide(&p, &f, true).action, ACTION_DROP);
    }

    #[test]
    fn encrypted_is_left_to_the_handshake_and_unknown_follows_the_policy() {
        let mut p = policy();
        assert_eq!(forbidden(&p, Encryption::Encrypted as u8), None);
        assert_eq!(forbidden(&p, Encryption::Unknown as u8), Some(false));
        p.unknown = TREAT_DROP;
        assert_eq!(forbidden(&p, Encryption::Unknown as u8), Some(true));
        p.unknown = TREAT_ALLOW;
        assert_eq!(forbidden(&p, Encryption::Unknown as u8), None);
    }

    #[test]
    fn every_field_of_a_rule_must_match_and_the_lowest_index_wins() {
        let mut p = policy();
        transport_rule(&mut p, 3, IPPROTO_UDP);
        assert_eq!(decide(&p, &facts(), true).action, ACTION_DROP);
        transport_rule(&mut p, 9, IPPROTO_TCP);
        transport_rule(&mut p, 40, IPPROTO_TCP);
        assert_eq!(
            decide(&p, &facts(), true),
            Decision {
                action: ACTION_EXCLUDED,
                rule: 9
            }
        );
        // A rule that names a port needs the port's bit.
        p.any_port &= !(1 << 9);
        assert_eq!(decide(&p, &facts(), true).rule, 40);
        let on_port = Facts {
            port_rules: 1 << 9,
            ..facts()
        };
        assert_eq!(decide(&p, &on_port, true).rule, 9);
        // A rule that names a process needs the cgroup's bit.
        p.not_by_cgroup &= !(1 << 9);
        assert_eq!(decide(&p, &on_port, true).rule, 40);
        let in_cgroup = Facts {
            cgroup_rules: 1 << 9,
            ..on_port
        };
        assert_eq!(decide(&p, &in_cgroup, true).rule, 9);
    }

    #[test]
    fn lowest_bit_finds_every_index() {
        for i in 0..64u8 {
            assert_eq!(lowest_bit(1 << i), i);
            assert_eq!(lowest_bit((1 << i) | (1u64 << 63)), i);
        }
    }
}
