//! What to do with a verdict: the policy file (`file`), the built-in exclusions users would
//! otherwise trip on, and the decision for each flow.
//!
//! Plaintext flows and weak encryption are forbidden; unknown and fully encrypted flows follow
//! `require.unknown` and `require.fully_encrypted`. What is forbidden is dropped in enforce mode
//! (east-west flows, and north-south ones when `enforce_north_south` says so) and alerted
//! otherwise; excluded flows are reported with action `excluded` and the exclusion that matched.
//! The kernel takes the same decision on the packet that reveals a verdict (see `kernel`).

pub mod file;
pub mod kernel;
pub mod suggest;

use std::net::IpAddr;

use sealwatch_common::{Encryption, Protocol};

use file::{Cidr, Exclusion, Mode, PortRange, Transport, Treatment};
pub use file::{PolicyError, PolicyFile, load, parse};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Alert,
    /// Enforce mode: the flow is forbidden and blocked.
    Drop,
    /// An exclusion applies: reported, never alerted.
    Excluded,
}

impl Action {
    pub const fn name(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Alert => "alert",
            Action::Drop => "drop",
            Action::Excluded => "excluded",
        }
    }
}

/// What the policy needs to know about a flow.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub transport: &'a str,
    pub client: IpAddr,
    pub server: IpAddr,
    pub server_port: u16,
    pub protocol: Protocol,
    pub encryption: Encryption,
    pub fully_encrypted: bool,
    pub tls_version: Option<&'a str>,
    /// Weak-encryption reasons already found (cipher, version below 1.2).
    pub weak: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// Both ends inside `internal_cidrs`.
    pub east_west: bool,
    /// The exclusion that matched, as `reason` or its fields.
    pub excluded_by: Option<String>,
    /// `tls<1.3`-style reason when the version is below `require.min_tls_version` (and not
    /// already reported by the handshake parser).
    pub below_min_tls: Option<String>,
}

/// Loads a policy file; `mode` (the command line's `--mode`) overrides the file's. A bad file is
/// an error with a one-line reason naming the line and field.
pub fn load_policy(path: &std::path::Path, mode: Option<Mode>) -> Result<Policy, String> {
    let file = load(path).map_err(|e| e.to_string())?;
    Ok(Policy::new(file).with_mode(mode))
}

/// [`load_policy`] for the live agent, which enforces it: only from a file no other user can
/// change (see [`file::check_writers`]).
pub fn load_trusted_policy(path: &std::path::Path, mode: Option<Mode>) -> Result<Policy, String> {
    file::check_writers(path).map_err(|e| e.to_string())?;
    load_policy(path, mode)
}

/// Number of built-in exclusions (they come first, before the file's).
pub const BUILTIN_EXCLUSIONS: usize = 10;

/// A policy file plus the built-in exclusions.
#[derive(Debug, Clone)]
pub struct Policy {
    file: PolicyFile,
    builtin: Vec<Exclusion>,
    /// How events name each exclusion ([`Policy::exclusions`] order), written once: a flow
    /// excluded by one names it in its event.
    names: Vec<String>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::new(PolicyFile::default())
    }
}

impl Policy {
    pub fn new(file: PolicyFile) -> Policy {
        let builtin = builtin_exclusions();
        let names = builtin
            .iter()
            .chain(&file.exclusions)
            .map(describe)
            .collect();
        Policy {
            file,
            builtin,
            names,
        }
    }

    /// The policy file as read (and `mode` as the command line set it).
    pub fn file(&self) -> &PolicyFile {
        &self.file
    }

    pub fn mode(&self) -> Mode {
        self.file.mode
    }

    /// The mode the command line asked for, if any, instead of the file's.
    pub fn with_mode(mut self, mode: Option<Mode>) -> Policy {
        if let Some(mode) = mode {
            self.file.mode = mode;
        }
        self
    }

    /// Built-in exclusions, then the file's, in the order they are tried (and indexed in the
    /// kernel).
    pub fn exclusions(&self) -> impl Iterator<Item = &Exclusion> {
        self.builtin.iter().chain(&self.file.exclusions)
    }

    /// How events name exclusion number `index` (see [`Policy::exclusions`]).
    pub fn exclusion_name(&self, index: usize) -> Option<String> {
        self.names.get(index).cloned()
    }

    pub fn decide(&self, f: &Facts<'_>) -> Decision {
        let inside = |ip: IpAddr| self.file.internal_cidrs.iter().any(|c| c.contains(ip));
        let east_west = inside(f.client) && inside(f.server);
        let excluded_by = self
            .exclusions()
            .position(|x| matches(x, f))
            .and_then(|i| self.exclusion_name(i));
        let min = self.file.require.min_tls_version;
        let below_min_tls = f
            .tls_version
            .filter(|v| min.rejects(v))
            .map(|_| format!("tls<{}", min.name()));
        let action = if excluded_by.is_some() {
            Action::Excluded
        } else {
            let treatment = match f.encryption {
                Encryption::Plaintext => Treatment::Drop,
                Encryption::Unknown => self.file.require.unknown,
                Encryption::Encrypted if f.fully_encrypted => self.file.require.fully_encrypted,
                Encryption::Encrypted if f.weak || below_min_tls.is_some() => Treatment::Drop,
                Encryption::Encrypted => Treatment::Allow,
            };
            let enforced =
                self.file.mode == Mode::Enforce && (east_west || self.file.enforce_north_south);
            match treatment {
                Treatment::Allow => Action::Allow,
                Treatment::Drop if enforced => Action::Drop,
                // Monitor mode (or a north-south flow): what enforce mode would drop is alerted.
                Treatment::Alert | Treatment::Drop => Action::Alert,
            }
        };
        Decision {
            action,
            east_west,
            excluded_by,
            below_min_tls,
        }
    }

    /// The effective policy, built-in exclusions included, for `policy check --explain`.
    pub fn explain(&self) -> String {
        let f = &self.file;
        let cidrs: Vec<String> = f.internal_cidrs.iter().map(cidr).collect();
        let mut s = format!(
                        "mode: {:?}\ninternal_cidrs (east-west when both ends inside): {}\nenforced: {}\nrequire: min_tls_version {}, unknown {:?}, fully_encrypted {:?}\nexclusions (first match wins):\n",
            f.mode,
            cidrs.join(", "),
            if f.enforce_north_south { "every flow" } else { "east-west flows only (north-south ones are alerted)" },
            f.require.min_tls_version.name(),
            f.require.unknown,
            f.require.fully_encrypted
        )
        .to_lowercase();
        for x in &self.builtin {
            s.push_str(&format!("  built-in: {}\n", describe(x)));
        }
        for x in &f.exclusions {
            s.push_str(&format!("  {}\n", describe(x)));
        }
        if f.exclusions.iter().any(|x| {
            x.process.is_some() || x.namespace.is_some() || x.pod.is_some() || !x.labels.is_empty()
        }) {
            s.push_str(
                                "note: process exclusions match by cgroup: every process sharing a cgroup (a systemd service, a container) with the named one is excluded too; pod exclusions (namespace, pod, labels) match by the addresses of the selected pods on this node, either end, read from the kubelet (labels need the kubelet; /var/log/pods gives names only)\n",
            );
        }
        s
    }
}

fn matches(x: &Exclusion, f: &Facts<'_>) -> bool {
    // Process and pod fields are matched by the kernel (cgroups, pod addresses) in `run`;
    // from captures (`analyze`) nothing tells them.
    if x.process.is_some() || x.namespace.is_some() || x.pod.is_some() || !x.labels.is_empty() {
        return false;
    }
    x.cidr
        .is_none_or(|c| c.contains(f.client) || c.contains(f.server))
        && x.port
            .is_none_or(|p| (p.first..=p.last).contains(&f.server_port))
        && x.transport.is_none_or(|t| t.name() == f.transport)
        && x.protocol.is_none_or(|p| p.0 == f.protocol)
}

fn cidr(c: &Cidr) -> String {
    format!("{}/{}", c.addr, c.prefix)
}

fn describe(x: &Exclusion) -> String {
    let mut parts = Vec::new();
    if let Some(c) = &x.cidr {
        parts.push(format!("cidr {}", cidr(c)));
    }
    if let Some(p) = x.port {
        parts.push(if p.first == p.last {
            format!("port {}", p.first)
        } else {
            format!("ports {}-{}", p.first, p.last)
        });
    }
    if let Some(t) = x.transport {
        parts.push(format!("transport {}", t.name()));
    }
    if let Some(p) = x.protocol {
        parts.push(format!("protocol {}", p.0.name()));
    }
    if let Some(p) = &x.process {
        parts.push(format!("process {}", p.0));
    }
    if let Some(n) = &x.namespace {
        parts.push(format!("namespace {}", n.0));
    }
    if let Some(p) = &x.pod {
        parts.push(format!("pod {}", p.0));
    }
    let what = parts.join(", ");
    match &x.reason {
        Some(r) => format!("{r} ({what})"),
        None => what,
    }
}

/// Traffic that is plaintext by design and that every user would otherwise have to exclude by
/// hand: cloud instance metadata, link-local and loopback addresses, DHCP, and network control
/// messages.
fn builtin_exclusions() -> Vec<Exclusion> {
    let net = |c: &str, reason: &str| Exclusion {
        cidr: c.parse().ok(),
        reason: Some(reason.to_owned()),
        ..Exclusion::default()
    };
    let port = |first: u16, last: u16, reason: &str| Exclusion {
        port: Some(PortRange { first, last }),
        transport: Some(Transport::Udp),
        reason: Some(reason.to_owned()),
        ..Exclusion::default()
    };
    let control = |p: Protocol| Exclusion {
        protocol: Some(file::Family(p)),
        reason: Some("network control messages".to_owned()),
        ..Exclusion::default()
    };
    vec![
        net("169.254.169.254/32", "instance metadata"),
        net("fd00:ec2::254/128", "instance metadata"),
        net("169.254.0.0/16", "link-local"),
        net("fe80::/10", "link-local"),
        net("127.0.0.0/8", "loopback"),
        net("::1/128", "loopback"),
        port(67, 68, "DHCP"),
        port(546, 547, "DHCPv6"),
        control(Protocol::Icmp),
        control(Protocol::Igmp),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(
        client: &str,
        server: &str,
        port: u16,
        protocol: Protocol,
        e: Encryption,
    ) -> Facts<'static> {
        Facts {
            transport: "tcp",
            client: client.parse().expect("ip"),
            server: server.parse().expect("ip"),
            server_port: port,
            protocol,
            encryption: e,
            fully_encrypted: false,
            tls_version: None,
            weak: false,
        }
    }

    #[test]
    fn defaults_alert_plaintext_and_allow_encryption() {
        let p = Policy::default();
        let http = p.decide(&facts(
            "10.0.0.2",
            "10.0.0.1",
            80,
            Protocol::Http,
            Encryption::Plaintext,
        ));
        assert_eq!((http.action, http.east_west), (Action::Alert, true));
        let tls = p.decide(&facts(
            "10.0.0.2",
            "10.0.0.1",
            443,
            Protocol::Tls,
            Encryption::Encrypted,
        ));
        assert_eq!(tls.action, Action::Allow);
        let out = p.decide(&facts(
            "10.0.0.2",
            "8.8.8.8",
            80,
            Protocol::Http,
            Encryption::Plaintext,
        ));
        assert!(
            !out.east_west,
            "one end outside internal_cidrs: north-south"
        );
        let unknown = p.decide(&facts(
            "10.0.0.2",
            "10.0.0.1",
            9,
            Protocol::Unknown,
            Encryption::Unknown,
        ));
        assert_eq!(unknown.action, Action::Alert);
    }

    #[test]
    fn builtin_exclusions_cover_metadata_link_local_dhcp_and_icmp() {
        let p = Policy::default();
        let md = p.decide(&facts(
            "10.0.0.2",
            "169.254.169.254",
            80,
            Protocol::Http,
            Encryption::Plaintext,
        ));
        assert_eq!(md.action, Action::Excluded);
        assert!(
            md.excluded_by
                .is_some_and(|r| r.starts_with("instance metadata"))
        );
        let mut dhcp = facts(
            "10.0.0.2",
            "10.0.0.1",
            67,
            Protocol::Unknown,
            Encryption::Plaintext,
        );
        dhcp.transport = "udp";
        assert_eq!(p.decide(&dhcp).action, Action::Excluded);
        let icmp = facts(
            "10.0.0.2",
            "10.0.0.1",
            0,
            Protocol::Icmp,
            Encryption::Plaintext,
        );
        assert_eq!(p.decide(&icmp).action, Action::Excluded);
        let explained = p.explain();
        for want in [
            "instance metadata",
            "link-local",
            "loopback",
            "DHCP",
            "network control",
        ] {
            assert!(explained.contains(want), "{want}: {explained}");
        }
    }

    #[test]
    fn file_exclusions_and_requirements_apply() {
        let file = parse(
            "p.yaml",
            "require:\n  min_tls_version: \"1.3\"\n  unknown: allow\nexclusions:\n  - {port: 6379, protocol: redis, reason: legacy cache}\n  - {process: chronyd}\n",
        )
        .expect("valid");
        let p = Policy::new(file);
        let redis = p.decide(&facts(
            "10.0.0.2",
            "10.0.0.1",
            6379,
            Protocol::Redis,
            Encryption::Plaintext,
        ));
        assert_eq!(redis.action, Action::Excluded);
        assert_eq!(
            redis.excluded_by.as_deref(),
            Some("legacy cache (port 6379, protocol redis)")
        );
        let other_port = p.decide(&facts(
            "10.0.0.2",
            "10.0.0.1",
            6380,
            Protocol::Redis,
            Encryption::Plaintext,
        ));
        assert_eq!(other_port.action, Action::Alert);
        let mut tls12 = facts(
            "10.0.0.2",
            "10.0.0.1",
            443,
            Protocol::Tls,
            Encryption::Encrypted,
        );
        tls12.tls_version = Some("1.2");
        let d = p.decide(&tls12);
        assert_eq!(
            (d.action, d.below_min_tls.as_deref()),
            (Action::Alert, Some("tls<1.3"))
        );
        let unknown = p.decide(&facts(
            "10.0.0.2",
            "10.0.0.1",
            9,
            Protocol::Unknown,
            Encryption::Unknown,
        ));
        assert_eq!(unknown.action, Action::Allow);
        assert!(p.explain().contains("process exclusions match by cgroup"));
    }
}
