//! What to do with a verdict. Monitor mode only for now: nothing is dropped, plaintext and
//! unknown flows raise an alert, encrypted ones are allowed (the contract's default
//! `require.unknown: alert`). Policy files, exclusions and enforce mode build on this.

use sealwatch_common::{Encryption, Protocol};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Alert,
    /// A built-in exclusion applies: reported, never alerted.
    Excluded,
}

impl Action {
    pub const fn name(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Alert => "alert",
            Action::Excluded => "excluded",
        }
    }
}

/// The decision for a flow's findings: weak encryption (below TLS 1.2, a broken cipher) raises
/// an alert too; network control messages (ICMP, ICMPv6 neighbour discovery, IGMP) carry no
/// application data and are excluded by default, as the contract's built-in exclusions are.
pub fn decide_with(protocol: Protocol, encryption: Encryption, weak: bool) -> Action {
    if matches!(protocol, Protocol::Icmp | Protocol::Igmp) {
        return Action::Excluded;
    }
    match decide(encryption) {
        Action::Allow if weak => Action::Alert,
        action => action,
    }
}

/// The built-in monitor-mode decision.
pub fn decide(encryption: Encryption) -> Action {
    match encryption {
        Encryption::Encrypted => Action::Allow,
        Encryption::Plaintext | Encryption::Unknown => Action::Alert,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_encrypted_flows_pass_silently() {
        assert_eq!(decide(Encryption::Encrypted), Action::Allow);
        assert_eq!(decide(Encryption::Plaintext), Action::Alert);
        assert_eq!(decide(Encryption::Unknown), Action::Alert);
    }

    #[test]
    fn weak_encryption_is_alerted_and_control_messages_excluded() {
        let tls = Protocol::Tls;
        assert_eq!(decide_with(tls, Encryption::Encrypted, true), Action::Alert);
        assert_eq!(
            decide_with(tls, Encryption::Encrypted, false),
            Action::Allow
        );
        assert_eq!(
            decide_with(Protocol::Http, Encryption::Plaintext, false),
            Action::Alert
        );
        assert_eq!(
            decide_with(Protocol::Icmp, Encryption::Plaintext, false),
            Action::Excluded
        );
    }
}
