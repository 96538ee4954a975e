//! The policy file of ../shared/CONTRACT.md: YAML, every key known (an unknown key is an error,
//! not ignored), every value checked while it is read, so an error names the file, the line and
//! the field (`exclusions[2].port`).

use std::{net::IpAddr, path::Path, str::FromStr};

use serde::Deserialize;
use serde_yaml::Value;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// `line:column` and the field path are in `message` when the YAML reader knows them.
    #[error("{file}:{message}")]
    Invalid { file: String, message: String },
    #[error(
        "{file}: {why}: whoever can change the policy decides what is enforced; make the file \
         and the directories above it writable by root only (chown root, chmod go-w)"
    )]
    Unsafe { file: String, why: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Monitor,
    Enforce,
}

impl Mode {
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Monitor => "monitor",
            Mode::Enforce => "enforce",
        }
    }
}

/// What to do with a class of flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Treatment {
    Allow,
    Alert,
    Drop,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default)]
    pub mode: Mode,
    /// East-west means both ends inside these; other flows are north-south.
    #[serde(default = "default_internal")]
    pub internal_cidrs: Vec<Cidr>,
    /// Enforce mode drops forbidden north-south flows too (by default only east-west ones;
    /// the others are alerted).
    #[serde(default)]
    pub enforce_north_south: bool,
    #[serde(default)]
    pub require: Require,
    #[serde(default)]
    pub exclusions: Vec<Exclusion>,
}

/// Exclusions a file may hold: the kernel checks at most
/// [`sealwatch_common::policy::MAX_RULES`], built-in ones included.
pub const MAX_FILE_EXCLUSIONS: usize =
    sealwatch_common::policy::MAX_RULES - super::BUILTIN_EXCLUSIONS;

impl Default for PolicyFile {
    fn default() -> PolicyFile {
        PolicyFile {
            mode: Mode::Monitor,
            internal_cidrs: default_internal(),
            enforce_north_south: false,
            require: Require::default(),
            exclusions: Vec::new(),
        }
    }
}

fn default_internal() -> Vec<Cidr> {
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"]
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Require {
    /// Lowest TLS (or DTLS, QUIC) version that counts as encrypted.
    #[serde(default = "default_min_tls")]
    pub min_tls_version: TlsMin,
    /// Flows the classifier cannot name or judge.
    #[serde(default = "alert")]
    pub unknown: Treatment,
    /// Flows no detector named whose payload is indistinguishable from random.
    #[serde(default = "allow")]
    pub fully_encrypted: Treatment,
}

impl Default for Require {
    fn default() -> Require {
        Require {
            min_tls_version: default_min_tls(),
            unknown: Treatment::Alert,
            fully_encrypted: Treatment::Allow,
        }
    }
}

fn alert() -> Treatment {
    Treatment::Alert
}

fn allow() -> Treatment {
    Treatment::Allow
}

fn default_min_tls() -> TlsMin {
    TlsMin(2)
}

/// Traffic that may stay plaintext. Every field given must match (any combination).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exclusion {
    /// Either end inside.
    pub cidr: Option<Cidr>,
    /// The server port: one port or a range `8000-8099`.
    pub port: Option<PortRange>,
    pub transport: Option<Transport>,
    /// Protocol family (`network.protocol.name`).
    pub protocol: Option<Family>,
    /// Local process executable name or path (matched by its cgroup and listening ports).
    pub process: Option<NonEmpty>,
    /// Kubernetes namespace, pod name glob, labels (matched by the pods' addresses).
    pub namespace: Option<NonEmpty>,
    pub pod: Option<NonEmpty>,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    pub reason: Option<String>,
}

impl Exclusion {
    /// Fields that say which flows match (`reason` says why, not which).
    pub fn selects_something(&self) -> bool {
        self.cidr.is_some()
            || self.port.is_some()
            || self.transport.is_some()
            || self.protocol.is_some()
            || self.process.is_some()
            || self.namespace.is_some()
            || self.pod.is_some()
            || !self.labels.is_empty()
    }
}

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Value")]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: prefix length must be 0-{max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl TryFrom<Value> for Cidr {
    type Error = String;

    fn try_from(v: Value) -> Result<Cidr, String> {
        v.as_str()
            .ok_or_else(|| format!("expected a CIDR like 10.0.0.0/8, got {}", describe(&v)))?
            .parse()
    }
}

/// A server port or an inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Value")]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl TryFrom<Value> for PortRange {
    type Error = String;

    fn try_from(v: Value) -> Result<PortRange, String> {
        let port = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("`{s}` is not a port (1-65535)"))
        };
        match &v {
            Value::Number(n) => {
                let p = n
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{n} is not a port (1-65535)"))?;
                Ok(PortRange { first: p, last: p })
            }
            Value::String(s) => {
                let (first, last) = match s.split_once('-') {
                    Some((a, b)) => (port(a)?, port(b)?),
                    None => (port(s)?, port(s)?),
                };
                if first > last {
                    return Err(format!("port range `{s}` ends before it starts"));
                }
                Ok(PortRange { first, last })
            }
            other => Err(format!(
                "expected a port or a range like 8000-8099, got {}",
                describe(other)
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
    Esp,
    Ah,
    Icmp,
    Icmpv6,
    Igmp,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Esp => "esp",
            Transport::Ah => "ah",
            Transport::Icmp => "icmp",
            Transport::Icmpv6 => "icmpv6",
            Transport::Igmp => "igmp",
        }
    }
}

/// A protocol family sealwatch knows (`network.protocol.name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Value")]
pub struct Family(pub sealwatch_common::Protocol);

impl TryFrom<Value> for Family {
    type Error = String;

    fn try_from(v: Value) -> Result<Family, String> {
        let name = v
            .as_str()
            .ok_or_else(|| format!("expected a protocol name, got {}", describe(&v)))?;
        sealwatch_common::Protocol::ALL
            .iter()
            .find(|p| p.name() == name)
            .map(|p| Family(*p))
            .ok_or_else(|| {
                let known: Vec<&str> = sealwatch_common::Protocol::ALL
                    .iter()
                    .map(|p| p.name())
                    .collect();
                format!("unknown protocol `{name}`; known: {}", known.join(", "))
            })
    }
}

/// `"1.0"` .. `"1.3"`, kept as the minor number (TLS 1.x).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "Value")]
pub struct TlsMin(pub u8);

impl TryFrom<Value> for TlsMin {
    type Error = String;

    fn try_from(v: Value) -> Result<TlsMin, String> {
        let s = match &v {
            Value::String(s) => s.clone(),
            // `1.2` unquoted reads as a float.
            Value::Number(n) => n.to_string(),
            other => {
                return Err(format!(
                    "expected \"1.2\" or \"1.3\", got {}",
                    describe(other)
                ));
            }
        };
        match s.as_str() {
            "1.0" | "1" => Ok(TlsMin(0)),
            "1.1" => Ok(TlsMin(1)),
            "1.2" => Ok(TlsMin(2)),
            "1.3" => Ok(TlsMin(3)),
            _ => Err(format!(
                "min_tls_version `{s}` is not a TLS version (1.0, 1.1, 1.2 or 1.3)"
            )),
        }
    }
}

impl TlsMin {
    pub fn name(self) -> String {
        format!("1.{}", self.0)
    }

    /// Whether a reported `tls.protocol.version` is below this minimum (SSL versions always are).
    pub fn rejects(self, version: &str) -> bool {
        match version {
            "ssl2" | "ssl3" => true,
            v => v
                .strip_prefix("1.")
                .and_then(|m| m.parse::<u8>().ok())
                .is_some_and(|minor| minor < self.0),
        }
    }
}

/// A string that must not be empty.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Value")]
pub struct NonEmpty(pub String);

impl TryFrom<Value> for NonEmpty {
    type Error = String;

    fn try_from(v: Value) -> Result<NonEmpty, String> {
        match v.as_str() {
            Some(s) if !s.trim().is_empty() => Ok(NonEmpty(s.to_owned())),
            _ => Err(format!("expected a non-empty string, got {}", describe(&v))),
        }
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("`{n}`"),
        Value::String(s) => format!("`{s}`"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(_) => "a tagged value".into(),
    }
}

/// Parses policy text; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<PolicyFile, PolicyError> {
    let invalid = |message: String| PolicyError::Invalid {
        file: file.to_owned(),
        message,
    };
    // An empty file is the built-in defaults.
    if text.trim().is_empty() {
        return Ok(PolicyFile::default());
    }
    let policy: PolicyFile = serde_yaml::from_str(text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!("{}:{}: ", l.line(), l.column()))
            .unwrap_or_else(|| " ".into());
        // serde_yaml appends " at line L column C"; the location is already in front.
        let msg = e.to_string();
        let msg = msg
            .rsplit_once(" at line ")
            .map_or(msg.as_str(), |(m, _)| m)
            .to_owned();
        invalid(format!("{at}{msg}"))
    })?;
    for (i, x) in policy.exclusions.iter().enumerate() {
        if !x.selects_something() {
            return Err(invalid(format!(
                " exclusions[{i}]: selects nothing (give cidr, port, transport, protocol, process, namespace, pod or labels)"
            )));
        }
    }
    if policy.exclusions.len() > MAX_FILE_EXCLUSIONS {
        return Err(invalid(format!(
            " exclusions: {} entries, at most {MAX_FILE_EXCLUSIONS} fit beside the built-in ones (merge ports into ranges, networks into CIDRs)",
            policy.exclusions.len()
        )));
    }
    if policy.internal_cidrs.len() > sealwatch_common::policy::MAX_INTERNAL {
        return Err(invalid(format!(
            " internal_cidrs: {} networks, at most {}",
            policy.internal_cidrs.len(),
            sealwatch_common::policy::MAX_INTERNAL
        )));
    }
    if policy.internal_cidrs.is_empty() {
        return Err(invalid(
            " internal_cidrs: empty, so no flow would be east-west".into(),
        ));
    }
    Ok(policy)
}

/// Refuses a policy that someone other than root (or the agent's own user) could change: the
/// file or a directory above it owned by another user, or writable by others or by a group
/// other than root's, unless the directory is sticky (/tmp). A file on a read-only mount (a
/// Kubernetes ConfigMap volume) is safe as it is. Like sshd's StrictModes: the live agent
/// enforces what the file says.
pub fn check_writers(path: &Path) -> Result<(), PolicyError> {
    use std::os::unix::fs::MetadataExt;

    let file = path.display().to_string();
    let read = |source| PolicyError::Read {
        file: file.clone(),
        source,
    };
    let real = std::fs::canonicalize(path).map_err(read)?;
    if read_only_mount(&real) {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let mut at = Some(real.as_path());
    let mut is_file = true;
    while let Some(p) = at {
        let meta = std::fs::metadata(p).map_err(read)?;
        let mode = meta.mode() & 0o7777;
        let why = if meta.uid() != 0 && meta.uid() != me {
            Some(format!("{} is owned by uid {}", p.display(), meta.uid()))
        } else if !is_file && mode & 0o1000 != 0 {
            // Sticky: others may add files here, not replace ours.
            None
        } else if mode & 0o002 != 0 {
            Some(format!(
                "{} is writable by anyone (mode {mode:04o})",
                p.display()
            ))
        } else if mode & 0o020 != 0 && meta.gid() != 0 {
            Some(format!(
                "{} is writable by group {} (mode {mode:04o})",
                p.display(),
                meta.gid()
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(PolicyError::Unsafe { file, why });
        }
        is_file = false;
        at = p.parent();
    }
    Ok(())
}

fn read_only_mount(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;

    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: statvfs succeeded and filled it.
    let st = unsafe { st.assume_init() };
    st.f_flag & libc::ST_RDONLY != 0
}

pub fn load(path: &Path) -> Result<PolicyFile, PolicyError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        file: file.clone(),
        source,
    })?;
    parse(&file, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTRACT_EXAMPLE: &str = r#"
mode: monitor            # or enforce; the --mode flag overrides
internal_cidrs: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fd00::/8]  # east-west = both ends inside
require:
  min_tls_version: "1.2"
  unknown: alert         # what to do with flows the classifier cannot name: allow | alert | drop
exclusions:              # traffic that may stay plaintext; each entry any combination of fields
  - {cidr: 169.254.169.254/32, reason: instance metadata}
  - {port: 53, transport: udp, reason: DNS}
  - {process: chronyd}
  - {namespace: kube-system, pod: "coredns-*"}
"#;

    #[test]
    fn the_contract_example_is_valid() {
        let p = parse("p.yaml", CONTRACT_EXAMPLE).expect("valid");
        assert_eq!(p.mode, Mode::Monitor);
        assert_eq!(p.internal_cidrs.len(), 4);
        assert_eq!(p.require.min_tls_version, TlsMin(2));
        assert_eq!(p.exclusions.len(), 4);
        assert_eq!(
            p.exclusions[1].port,
            Some(PortRange {
                first: 53,
                last: 53
            })
        );
    }

    fn error(text: &str) -> String {
        parse("p.yaml", text).expect_err("invalid").to_string()
    }

    #[test]
    fn errors_name_the_line_and_field() {
        assert_eq!(
            error("mode: monitor\nexclusions:\n  - {port: 53}\n  - {prot: 5}\n"),
            "p.yaml:4:6: exclusions[1]: unknown field `prot`, expected one of `cidr`, `port`, `transport`, `protocol`, `process`, `namespace`, `pod`, `labels`, `reason`"
        );
        assert!(error("exclusions:\n  - port: 99999\n").starts_with("p.yaml:2:5: exclusions[0]"));
        assert!(error("exclusions:\n  - port: 9000-80\n").contains("ends before it starts"));
        assert!(
            error("exclusions:\n  - cidr: 10.0.0.0/33\n").contains("prefix length must be 0-32")
        );
        assert!(error("exclusions:\n  - protocol: gopher\n").contains("unknown protocol `gopher`"));
        assert!(
            error("require:\n  min_tls_version: \"1.4\"\n")
                == "p.yaml:2:3: require: min_tls_version `1.4` is not a TLS version (1.0, 1.1, 1.2 or 1.3)"
        );
        assert!(error("require:\n  unknown: shrug\n").contains("require.unknown"));
        assert!(error("mode: audit\n").starts_with("p.yaml:1:7: mode"));
        assert!(error("colour: blue\n").contains("unknown field `colour`"));
        assert!(
            error("exclusions:\n  - reason: just because\n")
                .contains("exclusions[0]: selects nothing")
        );
        assert!(error("internal_cidrs: []\n").contains("internal_cidrs: empty"));
    }

    #[test]
    fn values_parse_as_written() {
        let p = parse(
            "p.yaml",
            "require:\n  min_tls_version: 1.3\nexclusions:\n  - {port: \"8000-8099\", protocol: http}\n  - {cidr: \"fd00:ec2::254\"}\n",
        )
        .expect("valid");
        assert_eq!(p.require.min_tls_version, TlsMin(3));
        assert_eq!(
            p.exclusions[0].port,
            Some(PortRange {
                first: 8000,
                last: 8099
            })
        );
        let host = p.exclusions[1].cidr.expect("cidr");
        assert_eq!(host.prefix, 128);
        assert!(host.contains("fd00:ec2::254".parse().expect("ip")));
        assert!(!host.contains("fd00:ec2::253".parse().expect("ip")));
        assert!(parse("p.yaml", "").is_ok(), "an empty file is the defaults");
    }

    #[test]
    fn tls_minimum_compares_reported_versions() {
        assert!(TlsMin(2).rejects("1.1") && TlsMin(2).rejects("ssl3"));
        assert!(!TlsMin(2).rejects("1.2") && !TlsMin(2).rejects("1.3"));
        assert!(TlsMin(3).rejects("1.2"));
    }
}
