//! Test helpers: read a capture, rebuild each TCP direction's stream prefix and each UDP
//! direction's first datagrams, and read nDPI's expected output for the same capture; build
//! protected QUIC Initial packets ([`quic`]).

#![allow(dead_code, reason = "each test binary uses part of the helpers")]

pub mod quic;

use std::{
    collections::HashMap,
    fs::File,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};
use pcap_parser::{Block, Linktype, PcapBlockOwned, PcapError, create_reader};

/// pcap-parser has no name for it.
const LINKTYPE_PPP: Linktype = Linktype(9);

/// How much of each TCP direction we rebuild: more than any agent sample.
pub const STREAM_PREFIX: usize = 16 * 1024;
/// Datagrams kept per UDP direction.
const DATAGRAMS: usize = 16;

pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus")
}

/// A direction: source then destination.
pub type Direction = (SocketAddr, SocketAddr);

#[derive(Default)]
struct TcpDirection {
    base: Option<u32>,
    segments: Vec<(usize, Vec<u8>)>,
}

#[derive(Default)]
pub struct Capture {
    tcp: HashMap<Direction, TcpDirection>,
    udp: HashMap<Direction, Vec<Vec<u8>>>,
}

impl Capture {
    /// The contiguous stream prefix sent from `dir.0` to `dir.1` (empty if none).
    pub fn tcp_stream(&self, dir: Direction) -> Vec<u8> {
        let mut out = Vec::new();
        let Some(d) = self.tcp.get(&dir) else {
            return out;
        };
        let mut segments: Vec<&(usize, Vec<u8>)> = d.segments.iter().collect();
        segments.sort_by_key(|(off, _)| *off);
        for (off, data) in segments {
            let end = off + data.len();
            if *off <= out.len() && end > out.len() {
                out.extend_from_slice(&data[out.len() - off..]);
            }
        }
        out.truncate(STREAM_PREFIX);
        out
    }

    pub fn udp_datagrams(&self, dir: Direction) -> Vec<Vec<u8>> {
        self.udp.get(&dir).cloned().unwrap_or_default()
    }

    fn add(&mut self, packet: &LaxSlicedPacket<'_>) {
        let (src, dst): (IpAddr, IpAddr) = match &packet.net {
            Some(LaxNetSlice::Ipv4(ip)) => (
                ip.header().source_addr().into(),
                ip.header().destination_addr().into(),
            ),
            Some(LaxNetSlice::Ipv6(ip)) => (
                ip.header().source_addr().into(),
                ip.header().destination_addr().into(),
            ),
            _ => return,
        };
        match &packet.transport {
            Some(TransportSlice::Tcp(tcp)) => {
                let dir = (
                    SocketAddr::new(src, tcp.source_port()),
                    SocketAddr::new(dst, tcp.destination_port()),
                );
                let d = self.tcp.entry(dir).or_default();
                let seq = tcp.sequence_number();
                if tcp.syn() {
                    // A repeated SYN-ACK with another sequence number replaces the first, as
                    // long as no data came yet (tls_multiple_synack_different_seq.pcapng).
                    if d.segments.is_empty() {
                        d.base = Some(seq.wrapping_add(1));
                    }
                    return;
                }
                if tcp.payload().is_empty() {
                    return;
                }
                let base = *d.base.get_or_insert(seq);
                let off = seq.wrapping_sub(base) as usize;
                if off < STREAM_PREFIX {
                    d.segments.push((off, tcp.payload().to_vec()));
                }
            }
            Some(TransportSlice::Udp(udp)) => {
                let dir = (
                    SocketAddr::new(src, udp.source_port()),
                    SocketAddr::new(dst, udp.destination_port()),
                );
                let d = self.udp.entry(dir).or_default();
                if d.len() < DATAGRAMS && !udp.payload().is_empty() {
                    d.push(udp.payload().to_vec());
                }
            }
            _ => {}
        }
    }
}

fn slice(link: Linktype, data: &[u8]) -> Option<LaxSlicedPacket<'_>> {
    match link {
        Linktype::ETHERNET => LaxSlicedPacket::from_ethernet(data).ok(),
        Linktype::RAW | Linktype::IPV4 | Linktype::IPV6 => LaxSlicedPacket::from_ip(data).ok(),
        Linktype::LINUX_SLL => {
            let ty = u16::from_be_bytes([*data.get(14)?, *data.get(15)?]);
            Some(LaxSlicedPacket::from_ether_type(
                EtherType(ty),
                data.get(16..)?,
            ))
        }
        Linktype::LINUX_SLL2 => {
            let ty = u16::from_be_bytes([*data.first()?, *data.get(1)?]);
            Some(LaxSlicedPacket::from_ether_type(
                EtherType(ty),
                data.get(20..)?,
            ))
        }
        Linktype::NULL | Linktype::LOOP => LaxSlicedPacket::from_ip(data.get(4..)?).ok(),
        // PPP in HDLC-like framing (address 0xff, control 0x03) or without it, then the PPP
        // protocol: 0x0021 IPv4, 0x0057 IPv6.
        LINKTYPE_PPP => {
            let data = data.strip_prefix(&[0xff, 0x03]).unwrap_or(data);
            match data.get(..2)? {
                [0x00, 0x21] | [0x00, 0x57] => LaxSlicedPacket::from_ip(data.get(2..)?).ok(),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Reads every packet of a pcap or pcapng file.
pub fn read_capture(path: &Path) -> Capture {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = create_reader(1 << 20, file).expect("a pcap or pcapng file");
    let mut capture = Capture::default();
    let mut links: Vec<Linktype> = Vec::new();
    let mut legacy = Linktype::ETHERNET;
    loop {
        match reader.next() {
            Ok((offset, block)) => {
                let frame = match &block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        legacy = h.network;
                        None
                    }
                    PcapBlockOwned::Legacy(b) => Some((legacy, b.data)),
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                        links.clear();
                        None
                    }
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        links.push(idb.linktype);
                        None
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        let len = (epb.caplen as usize).min(epb.data.len());
                        links
                            .get(epb.if_id as usize)
                            .map(|&l| (l, &epb.data[..len]))
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                        links.first().map(|&l| (l, spb.data))
                    }
                    PcapBlockOwned::NG(_) => None,
                };
                if let Some(packet) = frame.and_then(|(link, data)| slice(link, data)) {
                    capture.add(&packet);
                }
                reader.consume(offset);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => {
                if reader.refill().is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    capture
}

/// One flow line of nDPI's output, with the TLS fields we check.
#[derive(Debug, Default, Clone)]
pub struct NdpiFlow {
    pub line: usize,
    pub transport: String,
    pub client: Option<SocketAddr>,
    pub server: Option<SocketAddr>,
    pub ja4: Option<String>,
    pub sni: Option<String>,
    pub version: Option<String>,
    pub cipher: Option<String>,
    pub negotiated_alpn: Option<String>,
    /// `(Advertised) ALPNs`, `;`-separated.
    pub advertised_alpns: Option<String>,
    /// `TLS Supported Versions`, `;`-separated.
    pub supported_versions: Option<String>,
    /// `QUIC ver`, e.g. `V-1`, `Draft-29`, `Q046`, `Ver-Negotiation`.
    pub quic_version: Option<String>,
}

/// Flow lines of `ndpi_out/<pcap>.out`.
pub fn ndpi_flows(pcap: &str) -> Vec<NdpiFlow> {
    let path = corpus_dir().join("ndpi_out").join(format!("{pcap}.out"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut flows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(rest) = line.trim_start().split_once('\t').map(|(_, r)| r) else {
            continue;
        };
        let mut words = rest.split(' ');
        let (Some(transport), Some(client), Some(arrow), Some(server)) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            continue;
        };
        if !matches!(transport, "TCP" | "UDP") || !matches!(arrow, "<->" | "->") {
            continue;
        }
        let mut flow = NdpiFlow {
            line: i + 1,
            transport: transport.to_owned(),
            client: client.parse().ok(),
            server: server.parse().ok(),
            ..NdpiFlow::default()
        };
        for field in rest.split('[').skip(1) {
            let field = field.trim_end().trim_end_matches(']');
            if let Some(v) = field.strip_prefix("JA4: ") {
                flow.ja4 = Some(v.to_owned());
            } else if let Some(v) = field.strip_prefix("Hostname/SNI: ") {
                flow.sni = Some(v.to_owned());
            } else if let Some(v) = field.strip_prefix("Cipher: ") {
                flow.cipher = Some(v.to_owned());
            } else if let Some(v) = field.strip_prefix("(Negotiated) ALPN: ") {
                flow.negotiated_alpn = Some(v.to_owned());
            } else if let Some(v) = field.strip_prefix("(Advertised) ALPNs: ") {
                flow.advertised_alpns = Some(v.to_owned());
            } else if let Some(v) = field.strip_prefix("TLS Supported Versions: ") {
                flow.supported_versions = Some(v.to_owned());
            } else if let Some(v) = field.strip_prefix("QUIC ver: ") {
                flow.quic_version = Some(v.to_owned());
            } else if field.starts_with("TLSv")
                || field.starts_with("SSLv")
                || field.starts_with("DTLSv")
            {
                flow.version = Some(field.to_owned());
            }
        }
        flows.push(flow);
    }
    flows
}

/// nDPI's version label in the contract's spelling.
pub fn ndpi_version(label: &str) -> Option<&'static str> {
    Some(match label {
        "SSLv2" => "ssl2",
        "SSLv3" => "ssl3",
        "TLSv1" | "DTLSv1.0" => "1.0",
        "TLSv1.1" => "1.1",
        "TLSv1.2" | "DTLSv1.2" => "1.2",
        l if l.starts_with("TLSv1.3") || l == "DTLSv1.3" => "1.3",
        _ => return None,
    })
}
