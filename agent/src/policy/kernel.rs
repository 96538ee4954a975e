//! The policy as the kernel programs take it: [`compile`] turns a [`Policy`] into the
//! [`KernelPolicy`] map value, and [`resolve_processes`] finds the cgroups of the processes that
//! exclusions name, so the kernel decides those exclusions itself on the revealing packet.

use std::{collections::BTreeMap, net::IpAddr, path::Path};

use sealwatch_common::{
    net::{FAMILY_IPV4, FAMILY_IPV6},
    policy::{
        KernelPolicy, MAX_PORT_ENTRIES, MAX_PROTOCOLS, MAX_RULES, NET_KEY_HEADER_BITS, NetKey,
        NetValue, TREAT_ALERT, TREAT_ALLOW, TREAT_DROP, port_key,
    },
};

use super::{
    Policy,
    file::{Cidr, Mode, Transport, Treatment},
};
use crate::attrib::{
    cgroups::{cgroup_id, cgroup2_mount},
    kube::Pod,
    process::ProcFs,
};

/// A policy ready for the kernel: the scalar part, the network and port map entries (without
/// their slot, which `PolicyMaps::install` adds), and the exclusions the kernel matches by
/// cgroup (their index, and the process they name; pod exclusions have no process and match
/// nothing until flows carry pod attribution).
#[derive(Debug, Clone)]
pub struct Compiled {
    pub kernel: KernelPolicy,
    /// Prefix length (slot and family bytes included), key, value.
    pub nets: Vec<(u32, NetKey, NetValue)>,
    /// Server port and the rules naming it.
    pub ports: Vec<(u16, u64)>,
    pub by_cgroup: Vec<(usize, Option<String>)>,
    /// Networks as the file names them (internal, or an exclusion's rule bit), to fold again
    /// with the pod addresses of [`Compiled::pod_rules`].
    named: Vec<(Cidr, bool, u64)>,
    /// Exclusions naming pods: matched in the kernel by the addresses of the pods they select
    /// on this node, either end (pods reach the host's veth without a socket to ask).
    pub pod_rules: Vec<PodRule>,
}

/// The pod fields of one exclusion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRule {
    pub bit: u64,
    pub namespace: Option<String>,
    /// A glob (`*`, `?`).
    pub pod: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Only pod addresses inside it, when the exclusion also gives a `cidr`.
    pub cidr: Option<Cidr>,
}

impl PodRule {
    pub fn selects(&self, pod: &Pod) -> bool {
        self.namespace.as_ref().is_none_or(|n| *n == pod.namespace)
            && self.pod.as_ref().is_none_or(|g| glob(g, &pod.name))
            && self
                .labels
                .iter()
                .all(|(k, v)| pod.labels.get(k).is_some_and(|have| have == v))
    }
}

impl Compiled {
    /// The network entries with the addresses of the pods the pod exclusions select now.
    pub fn nets_with_pods<'a>(
        &self,
        pods: impl Iterator<Item = &'a Pod>,
    ) -> Vec<(u32, NetKey, NetValue)> {
        if self.pod_rules.is_empty() {
            return self.nets.clone();
        }
        let mut named = self.named.clone();
        // In a fixed order, so the same pods always give the same entries.
        let mut pods: Vec<&Pod> = pods.filter(|p| !p.host_network && !p.ended()).collect();
        pods.sort_by(|a, b| a.uid.cmp(&b.uid));
        for pod in pods {
            for rule in self.pod_rules.iter().filter(|r| r.selects(pod)) {
                for ip in &pod.ips {
                    if rule.cidr.as_ref().is_none_or(|c| c.contains(*ip)) {
                        let prefix = if ip.is_ipv4() { 32 } else { 128 };
                        named.push((Cidr { addr: *ip, prefix }, false, rule.bit));
                    }
                }
            }
        }
        fold_nets(&named)
    }
}

/// Shell-style glob: `*` any run, `?` one character.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Server ports a policy may name in all (ranges count port by port): one slot's share of the
/// kernel's port map.
pub const MAX_POLICY_PORTS: usize = (MAX_PORT_ENTRIES / 2) as usize;

/// Compiles `policy` (its mode already decided). The file parser keeps exclusions, networks and
/// ports within what the kernel holds; anything beyond is cut, which `parse` never lets by.
pub fn compile(policy: &Policy) -> Compiled {
    let f = policy.file();
    let mut k = KernelPolicy {
        enforce: u8::from(f.mode == Mode::Enforce),
        north_south: u8::from(f.enforce_north_south),
        unknown: match f.require.unknown {
            Treatment::Allow => TREAT_ALLOW,
            Treatment::Alert => TREAT_ALERT,
            Treatment::Drop => TREAT_DROP,
        },
        min_tls_minor: f.require.min_tls_version.0,
        weak_suites: u8::from(f.mode == Mode::Enforce),
        ..KernelPolicy::default()
    };
    // Every network either list names, with what it says: inside, or the rule bits.
    let mut named: Vec<(Cidr, bool, u64)> =
        f.internal_cidrs.iter().map(|c| (*c, true, 0)).collect();
    let mut ports: BTreeMap<u16, u64> = BTreeMap::new();
    let mut by_cgroup = Vec::new();
    let mut pod_rules = Vec::new();
    for (i, x) in policy.exclusions().take(MAX_RULES).enumerate() {
        let bit = 1u64 << i;
        let by_pod = x.namespace.is_some() || x.pod.is_some() || !x.labels.is_empty();
        match (x.cidr, by_pod) {
            (cidr, true) => pod_rules.push(PodRule {
                bit,
                namespace: x.namespace.as_ref().map(|n| n.0.clone()),
                pod: x.pod.as_ref().map(|p| p.0.clone()),
                labels: x.labels.clone(),
                cidr,
            }),
            (Some(c), false) => named.push((c, false, bit)),
            (None, false) => k.any_net |= bit,
        }
        match x.port {
            Some(p) => {
                for port in p.first..=p.last {
                    *ports.entry(port).or_insert(0) |= bit;
                }
            }
            None => k.any_port |= bit,
        }
        for (t, rules) in k.transport_rules.iter_mut().enumerate() {
            if x.transport
                .is_none_or(|want| usize::from(transport_number(want)) == t)
            {
                *rules |= bit;
            }
        }
        for (p, rules) in k.protocol_rules.iter_mut().enumerate() {
            if x.protocol.is_none_or(|want| want.0 as usize == p) {
                *rules |= bit;
            }
        }
        match &x.process {
            Some(p) => by_cgroup.push((i, Some(p.0.clone()))),
            None => k.not_by_cgroup |= bit,
        }
    }
    k.by_cgroup = u8::from(!by_cgroup.is_empty());
    debug_assert!(MAX_PROTOCOLS >= sealwatch_common::Protocol::ALL.len());
    Compiled {
        kernel: k,
        nets: fold_nets(&named),
        ports: ports.into_iter().take(MAX_POLICY_PORTS).collect(),
        by_cgroup,
        named,
        pod_rules,
    }
}

/// One trie entry per distinct network, each carrying what every network enclosing it says:
/// the longest match for an address then tells all there is about it.
fn fold_nets(named: &[(Cidr, bool, u64)]) -> Vec<(u32, NetKey, NetValue)> {
    let mut out: Vec<(u32, NetKey, NetValue)> = Vec::new();
    for (cidr, _, _) in named {
        let c = masked(cidr);
        if out.iter().any(|(_, k, _)| same(k, &c)) {
            continue;
        }
        let mut value = NetValue::default();
        for (outer, internal, rules) in named {
            if encloses(outer, cidr) {
                value.internal |= u8::from(*internal);
                value.rules |= rules;
            }
        }
        out.push((NET_KEY_HEADER_BITS + u32::from(cidr.prefix), c, value));
    }
    out
}

fn same(a: &NetKey, b: &NetKey) -> bool {
    a.family == b.family && a.addr == b.addr && a.slot == b.slot
}

/// Whether `outer` holds every address of `inner`.
fn encloses(outer: &Cidr, inner: &Cidr) -> bool {
    outer.addr.is_ipv4() == inner.addr.is_ipv4()
        && outer.prefix <= inner.prefix
        && outer.contains(inner.addr)
}

/// A CIDR's key data: family and the address with the host bits cleared (slot 0).
fn masked(c: &Cidr) -> NetKey {
    let (family, octets): (u8, Vec<u8>) = match c.addr {
        IpAddr::V4(a) => (FAMILY_IPV4, a.octets().to_vec()),
        IpAddr::V6(a) => (FAMILY_IPV6, a.octets().to_vec()),
    };
    let mut key = NetKey {
        slot: 0,
        family,
        addr: [0; 16],
    };
    for (i, b) in octets.iter().enumerate() {
        let bit0 = 8 * i as u32;
        let keep = u32::from(c.prefix).saturating_sub(bit0).min(8);
        let mask = (0xff00u16 >> keep) as u8;
        key.addr[i] = b & mask;
    }
    key
}

fn transport_number(t: Transport) -> u8 {
    use sealwatch_common::net::*;
    match t {
        Transport::Tcp => IPPROTO_TCP,
        Transport::Udp => IPPROTO_UDP,
        Transport::Esp => IPPROTO_ESP,
        Transport::Ah => IPPROTO_AH,
        Transport::Icmp => IPPROTO_ICMP,
        Transport::Icmpv6 => IPPROTO_ICMPV6,
        Transport::Igmp => IPPROTO_IGMP,
    }
}

/// Where the processes that exclusions name live: their cgroups (v2 ids), which the kernel
/// checks for departing packets, and the local ports they listen on, which it checks for
/// arriving ones (no socket is known yet at ingress). Each maps to the bitmask of exclusions.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub cgroups: BTreeMap<u64, u64>,
    /// Keyed by `policy::port_key(transport, port)`.
    pub ports: BTreeMap<u32, u64>,
}

/// Finds the processes `by_cgroup` names. Processes are matched by executable name (`comm` or
/// the file name of `exe`) or, when the exclusion gives a path, by the path of `exe`.
pub fn resolve_processes(by_cgroup: &[(usize, Option<String>)]) -> Resolved {
    let mut out = Resolved::default();
    let wanted: Vec<(usize, &str)> = by_cgroup
        .iter()
        .filter_map(|(i, p)| p.as_deref().map(|p| (*i, p)))
        .collect();
    if wanted.is_empty() {
        return out;
    }
    let root = cgroup2_mount();
    if root.is_none() {
        tracing::warn!(
            "no cgroup v2 hierarchy mounted: process exclusions match arriving traffic only"
        );
    }
    let proc = ProcFs::new();
    let mut sockets: BTreeMap<u64, u64> = BTreeMap::new();
    for pid in proc.pids() {
        let comm = proc.comm(pid).unwrap_or_default();
        let exe = proc.exe(pid);
        let mut bits = 0u64;
        for &(i, name) in &wanted {
            if process_matches(name, comm.trim_end(), exe.as_deref()) {
                bits |= 1 << (i % 64);
            }
        }
        if bits == 0 {
            continue;
        }
        if let Some(id) = root
            .as_deref()
            .zip(proc.cgroup(pid))
            .and_then(|(root, path)| cgroup_id(root, &path))
        {
            *out.cgroups.entry(id).or_insert(0) |= bits;
        }
        for inode in proc.socket_inodes(pid) {
            *sockets.entry(inode).or_insert(0) |= bits;
        }
    }
    if !sockets.is_empty() {
        out.ports = listening_ports(&proc, &sockets);
    }
    out
}

/// Local ports of listening TCP and bound UDP sockets among `sockets` (inode -> rule bits), from
/// this network namespace's socket tables.
fn listening_ports(proc: &ProcFs, sockets: &BTreeMap<u64, u64>) -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    for entry in proc.socket_tables(None) {
        let Some(bits) = sockets.get(&entry.inode) else {
            continue;
        };
        if entry.serves() {
            let key = port_key(entry.transport.proto(), entry.local.port());
            *out.entry(key).or_insert(0) |= bits;
        }
    }
    out
}

/// `exe` comes without the kernel's ` (deleted)` suffix ([`ProcFs::exe`]).
fn process_matches(wanted: &str, comm: &str, exe: Option<&Path>) -> bool {
    if wanted.contains('/') {
        return exe.is_some_and(|e| e == Path::new(wanted));
    }
    // `comm` is cut at 15 bytes; the executable's file name is whole.
    comm == wanted
        || exe
            .and_then(|e| e.file_name())
            .is_some_and(|n| n.to_string_lossy() == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_globs() {
        assert!(glob("billing-*", "billing-7f9c-x2k9p"));
        assert!(glob("*-0", "ledger-0"));
        assert!(glob("web-?", "web-1"));
        assert!(!glob("web-?", "web-12"));
        assert!(glob("*", ""));
        assert!(!glob("billing-*", "payments-0"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
    }

    fn pod(name: &str, ns: &str, ip: &str, labels: &[(&str, &str)]) -> Pod {
        Pod {
            uid: format!("uid-{name}"),
            name: name.into(),
            namespace: ns.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ips: vec![ip.parse().expect("ip")],
            host_network: false,
            phase: Some("Running".into()),
            containers: Vec::new(),
        }
    }

    #[test]
    fn pod_exclusions_become_the_addresses_of_the_pods_they_select() {
        let policy = parse(
            "p.yaml",
            "exclusions:\n  - {namespace: legacy, pod: \"billing-*\", reason: old billing}\n  - {labels: {tier: batch}, cidr: 10.9.0.0/16}\n",
        )
        .expect("policy");
        let policy = Policy::new(policy);
        let c = compile(&policy);
        assert_eq!(c.pod_rules.len(), 2);
        let first = c.pod_rules[0].bit;
        let second = c.pod_rules[1].bit;
        assert_eq!(
            c.kernel.any_net & (first | second),
            0,
            "pod rules need a pod address"
        );
        assert_ne!(
            c.kernel.not_by_cgroup & first,
            0,
            "no process named: no cgroup condition"
        );
        let pods = [
            pod("billing-0", "legacy", "10.1.0.7", &[]),
            pod("billing-0", "shop", "10.1.0.8", &[]),
            pod("cron-1", "ops", "10.9.3.4", &[("tier", "batch")]),
            pod("cron-2", "ops", "10.8.3.4", &[("tier", "batch")]),
        ];
        let nets = c.nets_with_pods(pods.iter());
        let rules_of = |ip: [u8; 4]| {
            nets.iter()
                .find(|(len, k, _)| {
                    *len == NET_KEY_HEADER_BITS + 32 && k.family == FAMILY_IPV4 && k.addr[..4] == ip
                })
                .map(|(_, _, v)| v.rules)
        };
        assert_eq!(rules_of([10, 1, 0, 7]), Some(first));
        assert_eq!(rules_of([10, 1, 0, 8]), None, "another namespace");
        assert_eq!(rules_of([10, 9, 3, 4]), Some(second));
        assert_eq!(rules_of([10, 8, 3, 4]), None, "outside the rule's cidr");
        // Same pods, another order: the same entries (no needless reinstall).
        let mut reversed = pods.clone();
        reversed.reverse();
        assert_eq!(c.nets_with_pods(reversed.iter()), nets);
    }
    use crate::policy::{BUILTIN_EXCLUSIONS, file::parse};

    #[test]
    fn networks_are_masked_and_carry_what_encloses_them() {
        let k = masked(&"10.1.2.3/16".parse().expect("cidr"));
        assert_eq!((k.family, &k.addr[..4]), (FAMILY_IPV4, &[10, 1, 0, 0][..]));
        let k = masked(&"fd00::1/12".parse().expect("cidr"));
        assert_eq!(&k.addr[..3], &[0xfd, 0x00, 0x00]);
        let c = |s: &str| s.parse::<Cidr>().expect("cidr");
        let nets = fold_nets(&[
            (c("10.0.0.0/8"), true, 0),
            (c("10.9.0.0/16"), false, 0b10),
            (c("0.0.0.0/0"), false, 0b100),
        ]);
        let inner = nets
            .iter()
            .find(|(len, _, _)| *len == NET_KEY_HEADER_BITS + 16)
            .expect("the /16");
        assert_eq!((inner.2.internal, inner.2.rules), (1, 0b110));
        let all = nets
            .iter()
            .find(|(len, _, _)| *len == NET_KEY_HEADER_BITS)
            .expect("the /0");
        assert_eq!((all.2.internal, all.2.rules), (0, 0b100));
    }

    #[test]
    fn rules_keep_the_order_of_the_user_space_policy() {
        let file = parse(
            "p.yaml",
            "mode: enforce\nrequire: {unknown: drop, min_tls_version: \"1.3\"}\nexclusions:\n  - {port: 8000-8099, transport: tcp}\n  - {process: redis-server, reason: legacy cache}\n  - {protocol: dns}\n",
        )
        .expect("valid");
        let policy = Policy::new(file);
        let c = compile(&policy);
        let k = &c.kernel;
        assert_eq!((k.enforce, k.unknown, k.min_tls_minor), (1, TREAT_DROP, 3));
        let ports = 1u64 << BUILTIN_EXCLUSIONS;
        assert_eq!(
            c.ports.len(),
            100 + 4,
            "8000-8099 and the built-in DHCP ports"
        );
        assert!(c.ports.contains(&(8042, ports)));
        assert_eq!(k.any_port & ports, 0);
        assert_eq!(k.transport_rules[6] & ports, ports);
        assert_eq!(k.transport_rules[17] & ports, 0);
        let process = 1u64 << (BUILTIN_EXCLUSIONS + 1);
        assert_eq!(
            c.by_cgroup,
            vec![(BUILTIN_EXCLUSIONS + 1, Some("redis-server".to_owned()))]
        );
        assert_eq!((k.by_cgroup, k.not_by_cgroup & process), (1, 0));
        let dns = 1u64 << (BUILTIN_EXCLUSIONS + 2);
        assert_eq!(
            k.protocol_rules[sealwatch_common::Protocol::Dns as usize] & dns,
            dns
        );
        assert_eq!(
            k.protocol_rules[sealwatch_common::Protocol::Http as usize] & dns,
            0
        );
        assert_eq!(
            policy.exclusion_name(BUILTIN_EXCLUSIONS + 1).as_deref(),
            Some("legacy cache (process redis-server)")
        );
    }

    #[test]
    fn this_process_is_found_in_its_cgroup() {
        let Some(root) = cgroup2_mount() else {
            panic!("tests need a cgroup v2 hierarchy");
        };
        let path = ProcFs::new()
            .cgroup(std::process::id())
            .expect("own cgroup path");
        let own = cgroup_id(&root, &path).expect("own cgroup");
        let exe = std::env::current_exe().expect("exe");
        let name = exe
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let port = listener.local_addr().expect("addr").port();
        let found = resolve_processes(&[(3, Some(name))]);
        assert_eq!(found.cgroups.get(&own), Some(&(1 << 3)));
        assert_eq!(
            found
                .ports
                .get(&sealwatch_common::policy::port_key(6, port)),
            Some(&(1 << 3)),
            "the listening port of the named process"
        );
        assert_eq!(
            resolve_processes(&[(3, Some("no-such-process-name".into()))]),
            Resolved::default()
        );
    }
}
