//! Events as users see them: flat JSON objects whose keys are the OpenTelemetry-style names of
//! ../shared/CONTRACT.md, so the same key is the same OTLP attribute later.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use sealwatch_common::{
    Encryption, Protocol, Verdict,
    flow::{CLIENT_UNKNOWN, FlowKey},
    net::{
        FAMILY_IPV4, IPPROTO_AH, IPPROTO_ESP, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_IGMP,
        IPPROTO_TCP, IPPROTO_UDP,
    },
};
use sealwatch_inspect::tls::{TlsDetails, TlsVersion};
use serde::Serialize;

use crate::policy::Action;

/// Who talks to whom, resolved from a flow key and the side that opened the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Endpoints {
    #[serde(rename = "network.transport")]
    pub transport: &'static str,
    #[serde(rename = "network.type")]
    pub network_type: &'static str,
    #[serde(rename = "client.address")]
    pub client_address: IpAddr,
    #[serde(rename = "client.port")]
    pub client_port: u16,
    #[serde(rename = "server.address")]
    pub server_address: IpAddr,
    #[serde(rename = "server.port")]
    pub server_port: u16,
}

impl Endpoints {
    /// The side to treat as client: the kernel's call, or side 0 if it had none.
    pub fn client_index(client_side: u8) -> u8 {
        if client_side == CLIENT_UNKNOWN {
            0
        } else {
            client_side & 1
        }
    }

    pub fn new(key: &FlowKey, client_side: u8) -> Endpoints {
        let client = Endpoints::client_index(client_side);
        let (caddr, cport) = key.endpoint(client);
        let (saddr, sport) = key.endpoint(client ^ 1);
        Endpoints {
            transport: match key.proto {
                IPPROTO_TCP => "tcp",
                IPPROTO_UDP => "udp",
                IPPROTO_ESP => "esp",
                IPPROTO_AH => "ah",
                IPPROTO_ICMP => "icmp",
                IPPROTO_ICMPV6 => "icmpv6",
                IPPROTO_IGMP => "igmp",
                _ => "unknown",
            },
            network_type: if key.family == FAMILY_IPV4 {
                "ipv4"
            } else {
                "ipv6"
            },
            client_address: ip(key.family, caddr),
            client_port: cport,
            server_address: ip(key.family, saddr),
            server_port: sport,
        }
    }
}

impl Endpoints {
    /// One side's address of a flow key.
    pub fn address(family: u8, words: [u32; 4]) -> IpAddr {
        ip(family, words)
    }
}

fn ip(family: u8, words: [u32; 4]) -> IpAddr {
    if family == FAMILY_IPV4 {
        IpAddr::V4(Ipv4Addr::from(words[0].to_ne_bytes()))
    } else {
        let mut b = [0u8; 16];
        for (chunk, w) in b.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&w.to_ne_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(b))
    }
}

impl FlowEvent {
    /// The handshake's details, under the contract's `tls.*` keys. Unnamed suites and groups
    /// are reported by number (`0x1301`) rather than left out.
    pub fn set_tls(&mut self, t: &TlsDetails) {
        let hex = |v: u16| format!("0x{v:04x}");
        self.tls_version = t.version.map(TlsVersion::name);
        self.tls_cipher = t
            .cipher_name
            .map(str::to_owned)
            .or_else(|| t.cipher.map(hex));
        self.tls_server_name = t.server_name.clone();
        self.tls_alpn = t.alpn.clone();
        self.tls_group = t.group_name.map(str::to_owned).or_else(|| t.group.map(hex));
        self.pq = t.pq;
        self.ja4 = t.ja4.clone();
        self.weak = t.weak.iter().map(|w| (*w).to_owned()).collect();
    }
}

/// `event: "flow"` (the verdict) and `event: "flow.end"` (with counters).
#[derive(Debug, Clone, Serialize)]
pub struct FlowEvent {
    pub event: &'static str,
    pub time: String,
    #[serde(flatten)]
    pub endpoints: Endpoints,
    #[serde(rename = "sealwatch.encryption")]
    pub encryption: &'static str,
    #[serde(rename = "network.protocol.name")]
    pub protocol: &'static str,
    #[serde(rename = "sealwatch.action")]
    pub action: &'static str,
    pub interface: String,
    /// AWS VPC flow-log `encryption-status`: 0 not encrypted, 2 application-layer encrypted.
    #[serde(
        rename = "sealwatch.encryption_status",
        skip_serializing_if = "Option::is_none"
    )]
    pub encryption_status: Option<u8>,
    /// No protocol named, but the payload is indistinguishable from random.
    #[serde(
        rename = "sealwatch.fully_encrypted",
        skip_serializing_if = "Option::is_none"
    )]
    pub fully_encrypted: Option<bool>,

    /// A plaintext protocol switched to TLS in-band.
    #[serde(rename = "sealwatch.starttls", skip_serializing_if = "Option::is_none")]
    pub starttls: Option<bool>,
    /// The flow was judged encrypted, then a later packet showed plaintext.
    #[serde(
        rename = "sealwatch.plaintext_after_encryption",
        skip_serializing_if = "Option::is_none"
    )]
    pub plaintext_after_encryption: Option<bool>,
    #[serde(
        rename = "tls.protocol.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub tls_version: Option<&'static str>,
    #[serde(rename = "tls.cipher", skip_serializing_if = "Option::is_none")]
    pub tls_cipher: Option<String>,
    #[serde(rename = "tls.server.name", skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    #[serde(rename = "tls.alpn", skip_serializing_if = "Option::is_none")]
    pub tls_alpn: Option<String>,
    #[serde(
        rename = "tls.key_exchange.group",
        skip_serializing_if = "Option::is_none"
    )]
    pub tls_group: Option<String>,
    /// The key exchange is post-quantum (hybrid or pure ML-KEM).
    #[serde(rename = "sealwatch.pq", skip_serializing_if = "Option::is_none")]
    pub pq: Option<bool>,
    #[serde(rename = "tls.client.ja4", skip_serializing_if = "Option::is_none")]
    pub ja4: Option<String>,
    /// Why the encryption is weak (`tls<1.2`, `rc4`, `null-cipher`, ...).
    #[serde(rename = "sealwatch.weak", skip_serializing_if = "Vec::is_empty")]
    pub weak: Vec<String>,
    /// `east-west` when both ends are inside the policy's internal CIDRs, else `north-south`.
    #[serde(rename = "sealwatch.direction")]
    pub direction: &'static str,
    /// The exclusion that made the action `excluded`.
    #[serde(
        rename = "sealwatch.exclusion",
        skip_serializing_if = "Option::is_none"
    )]
    pub exclusion: Option<String>,
    /// Who is behind the flow's ends on this host.
    #[serde(flatten)]
    pub attribution: Attribution,

    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub end: Option<FlowEnd>,
    /// On `flow.record` (the flow log): the aggregation window the counts of `end` cover.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordWindow>,
}

/// A flow-log record's window: `end`'s packets and bytes are those sent within it, like an
/// AWS VPC flow log record's `start`/`end`.
#[derive(Debug, Clone, Serialize)]
pub struct RecordWindow {
    #[serde(rename = "sealwatch.record.start")]
    pub start: String,
    #[serde(rename = "sealwatch.record.end")]
    pub end: String,
    /// `active`, or `ended` on a flow's last record (which has `sealwatch.end_reason`).
    #[serde(rename = "sealwatch.flow.state")]
    pub state: &'static str,
}

/// The process, container and pod behind one end of a flow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Party {
    pub pid: Option<u32>,
    pub executable: Option<String>,
    pub command_line: Option<String>,
    /// User name (or numeric uid when it has no name).
    pub owner: Option<String>,
    pub container_id: Option<String>,
    pub pod: Option<String>,
    pub namespace: Option<String>,
}

impl Party {
    pub fn is_empty(&self) -> bool {
        *self == Party::default()
    }

    /// Its keys with their values, borrowed (one flow event serializes two parties).
    fn entries(&self) -> [(&'static str, Option<PartyValue<'_>>); 7] {
        fn text(v: &Option<String>) -> Option<PartyValue<'_>> {
            v.as_deref().map(PartyValue::Text)
        }
        [
            ("process.pid", self.pid.map(PartyValue::Pid)),
            ("process.executable.name", text(&self.executable)),
            ("process.command_line", text(&self.command_line)),
            ("process.owner", text(&self.owner)),
            ("container.id", text(&self.container_id)),
            ("k8s.pod.name", text(&self.pod)),
            ("k8s.namespace.name", text(&self.namespace)),
        ]
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum PartyValue<'a> {
    Pid(u32),
    Text(&'a str),
}

/// Who is behind a flow: its end on this host under the contract's keys (`process.*`,
/// `container.id`, `k8s.*`), with `sealwatch.local_side` saying whether that is the client or
/// the server; and when the other end is on this host too (two pods of one node), that end
/// under the same keys prefixed `sealwatch.peer.`. The client's end is the local one when both
/// are known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attribution {
    pub local_side: Option<&'static str>,
    pub local: Party,
    pub peer: Party,
}

impl Serialize for Attribution {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        if let Some(side) = self.local_side {
            map.serialize_entry("sealwatch.local_side", side)?;
        }
        for (key, value) in self.local.entries() {
            if let Some(v) = value {
                map.serialize_entry(key, &v)?;
            }
        }
        for (key, value) in self.peer.entries() {
            if let Some(v) = value {
                map.serialize_entry(&format!("sealwatch.peer.{key}"), &v)?;
            }
        }
        map.end()
    }
}

impl FlowEvent {
    pub fn new(
        event: &'static str,
        time: String,
        endpoints: Endpoints,
        protocol: Protocol,
        encryption: Encryption,
        action: Action,
        interface: String,
    ) -> FlowEvent {
        FlowEvent {
            event,
            time,
            endpoints,
            encryption: encryption.name(),
            protocol: protocol.name(),
            action: action.name(),
            interface,
            encryption_status: encryption_status(encryption),
            fully_encrypted: Verdict::new(protocol, encryption)
                .is_fully_encrypted()
                .then_some(true),
            starttls: None,
            plaintext_after_encryption: None,
            tls_version: None,
            tls_cipher: None,
            tls_server_name: None,
            tls_alpn: None,
            tls_group: None,
            pq: None,
            ja4: None,
            weak: Vec::new(),
            direction: "east-west",
            exclusion: None,
            attribution: Attribution::default(),
            end: None,
            record: None,
        }
    }
}

/// What `flow.end` adds: totals per direction and why the flow ended. A `flow.record` has the
/// same keys, counting only its window, and the reason only on a flow's last record.
#[derive(Debug, Clone, Serialize)]
pub struct FlowEnd {
    #[serde(
        rename = "sealwatch.end_reason",
        skip_serializing_if = "Option::is_none"
    )]
    pub reason: Option<&'static str>,
    #[serde(rename = "sealwatch.flow.start")]
    pub start: String,
    #[serde(rename = "sealwatch.flow.duration_ms")]
    pub duration_ms: u64,
    /// Packets and IP bytes sent by the client / by the server.
    #[serde(rename = "sealwatch.client.packets")]
    pub client_packets: u64,
    #[serde(rename = "sealwatch.client.bytes")]
    pub client_bytes: u64,
    #[serde(rename = "sealwatch.server.packets")]
    pub server_packets: u64,
    #[serde(rename = "sealwatch.server.bytes")]
    pub server_bytes: u64,
}

fn encryption_status(e: Encryption) -> Option<u8> {
    match e {
        Encryption::Plaintext => Some(0),
        Encryption::Encrypted => Some(2),
        Encryption::Unknown => None,
    }
}

/// `event: "agent"`: lifecycle and the kernel's counters.
#[derive(Debug, Clone, Serialize)]
pub struct AgentEvent {
    pub event: &'static str,
    pub time: String,
    #[serde(rename = "sealwatch.agent.state")]
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    #[serde(rename = "sealwatch.attach", skip_serializing_if = "Option::is_none")]
    pub attach: Option<&'static str>,
    /// `monitor` or `enforce`: on `attached` and `policy_reloaded`.
    #[serde(rename = "sealwatch.mode", skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
    /// `detach` or `keep-enforcing`: on `attached`, and on `stopped` when the programs stay.
    #[serde(rename = "sealwatch.on_exit", skip_serializing_if = "Option::is_none")]
    pub on_exit: Option<&'static str>,
    /// On `attached`: the links were left by a previous agent and now run our programs.
    #[serde(
        rename = "sealwatch.agent.adopted",
        skip_serializing_if = "Option::is_none"
    )]
    pub adopted: Option<bool>,
    /// On `stopped` with `keep-enforcing`: where the programs still enforcing are pinned.
    #[serde(
        rename = "sealwatch.agent.pin_dir",
        skip_serializing_if = "Option::is_none"
    )]
    pub pin_dir: Option<String>,
    /// On `attached`: what this node is (`host.name`, and on EC2 `host.id`, `host.type`,
    /// `cloud.*`, `sealwatch.vpc.id`), the resource attributes of everything it reports.
    #[serde(flatten)]
    pub resource: BTreeMap<&'static str, String>,
    /// `sealwatch.kernel.<counter>` and `sealwatch.agent.<counter>` totals, on `stopped`.
    #[serde(flatten)]
    pub counters: BTreeMap<String, u64>,
    /// Why a new policy was rejected (state `policy_rejected`); the old one stays.
    #[serde(
        rename = "sealwatch.policy.error",
        skip_serializing_if = "Option::is_none"
    )]
    pub error: Option<String>,
}

/// `event: "service"`: a port a process on this host serves (TCP listen, bound UDP), once
/// when it is first seen: the inventory `report` names a plaintext server's owner from, even
/// when none of its flows is active.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceEvent {
    pub event: &'static str,
    pub time: String,
    #[serde(rename = "network.transport")]
    pub transport: &'static str,
    #[serde(rename = "server.port")]
    pub port: u16,
    /// The network namespace (its cookie): on a Kubernetes node, one per pod.
    #[serde(rename = "sealwatch.netns")]
    pub netns: u64,
    /// Whether it serves in the agent's own network namespace.
    #[serde(rename = "sealwatch.local_netns")]
    pub local_netns: bool,
    #[serde(flatten)]
    pub owner: Attribution,
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Event {
    Flow(Box<FlowEvent>),
    Agent(AgentEvent),
    Service(ServiceEvent),
}

#[cfg(test)]
mod tests {
    use sealwatch_common::net::FAMILY_IPV6;

    use super::*;

    fn key_v4() -> FlowKey {
        FlowKey::ipv4(IPPROTO_TCP, [10, 0, 0, 2], 40000, [10, 0, 0, 1], 80).0
    }

    #[test]
    fn attribution_names_the_local_end_plainly_and_the_peer_with_a_prefix() {
        let a = Attribution {
            local_side: Some("client"),
            local: Party {
                pid: Some(4121),
                executable: Some("curl".into()),
                container_id: Some("abc".into()),
                ..Party::default()
            },
            peer: Party {
                pod: Some("ledger-0".into()),
                namespace: Some("payments".into()),
                ..Party::default()
            },
        };
        assert_eq!(
            serde_json::to_value(&a).expect("json"),
            serde_json::json!({
                "sealwatch.local_side": "client",
                "process.pid": 4121,
                "process.executable.name": "curl",
                "container.id": "abc",
                "sealwatch.peer.k8s.pod.name": "ledger-0",
                "sealwatch.peer.k8s.namespace.name": "payments",
            })
        );
        assert_eq!(
            serde_json::to_value(Attribution::default()).expect("json"),
            serde_json::json!({})
        );
    }

    #[test]
    fn flow_event_has_the_contract_keys() {
        let key = key_v4();
        // 10.0.0.1:80 sorts first (side 0); the client 10.0.0.2:40000 is side 1.
        let e = FlowEvent::new(
            "flow",
            "2026-11-23T10:00:00.000Z".into(),
            Endpoints::new(&key, 1),
            Protocol::Http,
            Encryption::Plaintext,
            Action::Alert,
            "veth0".into(),
        );
        let v = serde_json::to_value(Event::Flow(Box::new(e))).unwrap_or_default();
        assert_eq!(v["event"], "flow");
        assert_eq!(v["network.transport"], "tcp");
        assert_eq!(v["network.type"], "ipv4");
        assert_eq!(v["client.address"], "10.0.0.2");
        assert_eq!(v["client.port"], 40000);
        assert_eq!(v["server.address"], "10.0.0.1");
        assert_eq!(v["server.port"], 80);
        assert_eq!(v["sealwatch.encryption"], "plaintext");
        assert_eq!(v["network.protocol.name"], "http");
        assert_eq!(v["sealwatch.action"], "alert");
        assert_eq!(v["interface"], "veth0");
        assert_eq!(v["sealwatch.encryption_status"], 0);
        assert!(v.get("sealwatch.end_reason").is_none());
    }

    #[test]
    fn ipv6_addresses_round_trip() {
        let a: Ipv6Addr = "fd00:5ea1::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
        let words = |ip: Ipv6Addr| {
            let o = ip.octets();
            [0, 4, 8, 12].map(|i| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]))
        };
        let b: Ipv6Addr = "fd00:5ea1::2".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
        let (key, side) =
            FlowKey::canonical(FAMILY_IPV6, IPPROTO_UDP, words(b), 5353, words(a), 53);
        let ep = Endpoints::new(&key, side);
        assert_eq!(ep.client_address, IpAddr::V6(b));
        assert_eq!(ep.server_address, IpAddr::V6(a));
        assert_eq!(
            (
                ep.client_port,
                ep.server_port,
                ep.network_type,
                ep.transport
            ),
            (5353, 53, "ipv6", "udp")
        );
    }

    #[test]
    fn unknown_encryption_has_no_status() {
        let e = FlowEvent::new(
            "flow",
            String::new(),
            Endpoints::new(&key_v4(), 0),
            Protocol::Unknown,
            Encryption::Unknown,
            Action::Alert,
            String::new(),
        );
        assert_eq!(e.encryption_status, None);
        assert_eq!(encryption_status(Encryption::Encrypted), Some(2));
    }
}
