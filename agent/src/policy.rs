//! What to do with a verdict. Monitor mode only for now: nothing is dropped, plaintext and
//! unknown flows raise an alert, encrypted ones are allowed (the contract's default
//! `require.unknown: alert`). Policy files, exclusions and enforce mode build on this.

use sealwatch_common::Encryption;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Alert,
}

impl Action {
    pub const fn name(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Alert => "alert",
        }
    }
}

/// The decision for a verdict whose encryption may be weak (below TLS 1.2, a broken cipher):
/// weak encryption raises an alert too.
pub fn decide_with(encryption: Encryption, weak: bool) -> Action {
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
    fn weak_encryption_is_alerted() {
        assert_eq!(decide_with(Encryption::Encrypted, true), Action::Alert);
        assert_eq!(decide_with(Encryption::Encrypted, false), Action::Allow);
        assert_eq!(decide_with(Encryption::Plaintext, false), Action::Alert);
    }
}
