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
}
