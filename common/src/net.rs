//! Wire constants and header layouts the kernel parser needs. Multi-byte fields are read from the
//! packet in network byte order and converted where used.

pub const ETH_HDR_LEN: usize = 14;
pub const VLAN_HDR_LEN: usize = 4;
/// Offset of the EtherType in an Ethernet header.
pub const ETH_TYPE_OFFSET: usize = 12;
/// VLAN tags the parser skips (802.1Q inside 802.1ad is the deepest common stack).
pub const MAX_VLAN_TAGS: usize = 2;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const ETH_P_MPLS_UC: u16 = 0x8847;
pub const ETH_P_MPLS_MC: u16 = 0x8848;
pub const MPLS_LABEL_LEN: usize = 4;
pub const MAX_MPLS_LABELS: usize = 4;

pub const IPV4_MIN_HDR_LEN: usize = 20;
pub const IPV6_HDR_LEN: usize = 40;
/// IPv4 flags/fragment-offset: More Fragments bit and offset mask.
pub const IPV4_MF: u16 = 0x2000;
pub const IPV4_FRAG_OFFSET_MASK: u16 = 0x1fff;
/// IPv6 fragment header: fixed 8 bytes; offset in the top 13 bits of bytes 2-3.
pub const IPV6_FRAG_HDR_LEN: usize = 8;
pub const IPV6_FRAG_OFFSET_MASK: u16 = 0xfff8;

pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
/// IPsec: Encapsulating Security Payload and Authentication Header, tracked as port-less flows.
pub const IPPROTO_ICMP: u8 = 1;
/// IPv4 in IP, IPv6 in IP, GRE: tunnels `analyze` looks inside.
pub const IPPROTO_IPIP: u8 = 4;
pub const IPPROTO_IPV6: u8 = 41;
pub const IPPROTO_GRE: u8 = 47;
pub const IPPROTO_IGMP: u8 = 2;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_ESP: u8 = 50;
pub const IPPROTO_AH: u8 = 51;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_DSTOPTS: u8 = 60;
/// IPv6 extension headers the parser walks before giving up and counting the packet.
pub const MAX_IPV6_EXT_HDRS: usize = 4;

pub const TCP_MIN_HDR_LEN: usize = 20;
pub const UDP_HDR_LEN: usize = 8;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// IP versions as stored in [`crate::flow::FlowKey::family`].
pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;
