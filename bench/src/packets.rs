//! Crafted packets: the flows the benchmarks push through the programs, built byte by byte.
#![expect(
    clippy::expect_used,
    reason = "writing a packet of a few hundred bytes into a Vec cannot fail"
)]

use std::net::Ipv4Addr;

use etherparse::PacketBuilder;

const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

pub const HTTP_REQUEST: &[u8] =
    b"GET /orders HTTP/1.1\r\nHost: orders.internal\r\nUser-Agent: curl/7.88.1\r\n\r\n";
pub const HTTP_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
/// A DNS query for `orders.internal` (A), as dig sends it.
pub const DNS_QUERY: &[u8] = &[
    0x4a, 0x1c, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, b'o', b'r', b'd',
    b'e', b'r', b's', 0x08, b'i', b'n', b't', b'e', b'r', b'n', b'a', b'l', 0x00, 0x00, 0x01, 0x00,
    0x01,
];

type Socket = (Ipv4Addr, u16);

/// One TCP or UDP conversation between a client and a server address.
#[derive(Debug, Clone, Copy)]
pub struct Endpoints {
    pub client: (Ipv4Addr, u16),
    pub server: (Ipv4Addr, u16),
}

impl Endpoints {
    /// The `n`th of many distinct flows to one server: client address and port vary.
    pub fn nth(n: u32, server: (Ipv4Addr, u16)) -> Endpoints {
        let port = 1024 + (n % 64_000) as u16;
        let host = n / 64_000;
        let client = Ipv4Addr::new(10, 200 + (host >> 16) as u8, (host >> 8) as u8, host as u8);
        Endpoints {
            client: (client, port),
            server,
        }
    }

    /// A TCP segment from the client (`to_server`) or the server, `flags` among `S`, `A`, `P`,
    /// `F`.
    pub fn tcp(&self, to_server: bool, flags: &str, payload: &[u8]) -> Vec<u8> {
        let (src, dst, smac, dmac) = self.direction(to_server);
        let mut b = PacketBuilder::ethernet2(smac, dmac)
            .ipv4(src.0.octets(), dst.0.octets(), 64)
            .tcp(src.1, dst.1, 1000, 64240);
        for f in flags.chars() {
            b = match f {
                'S' => b.syn(),
                'F' => b.fin(),
                'P' => b.psh(),
                'A' => b.ack(1),
                _ => b,
            };
        }
        let mut pkt = Vec::with_capacity(64 + payload.len());
        b.write(&mut pkt, payload)
            .expect("a packet in memory always builds");
        pkt
    }

    /// A whole short HTTP conversation: handshake, request, answer.
    pub fn http_exchange(&self) -> [Vec<u8>; 5] {
        [
            self.tcp(true, "S", &[]),
            self.tcp(false, "SA", &[]),
            self.tcp(true, "A", &[]),
            self.tcp(true, "PA", HTTP_REQUEST),
            self.tcp(false, "PA", HTTP_RESPONSE),
        ]
    }

    pub fn udp(&self, to_server: bool, payload: &[u8]) -> Vec<u8> {
        let (src, dst, smac, dmac) = self.direction(to_server);
        let mut pkt = Vec::with_capacity(64 + payload.len());
        PacketBuilder::ethernet2(smac, dmac)
            .ipv4(src.0.octets(), dst.0.octets(), 64)
            .udp(src.1, dst.1)
            .write(&mut pkt, payload)
            .expect("a packet in memory always builds");
        pkt
    }

    fn direction(&self, to_server: bool) -> (Socket, Socket, [u8; 6], [u8; 6]) {
        if to_server {
            (self.client, self.server, CLIENT_MAC, SERVER_MAC)
        } else {
            (self.server, self.client, SERVER_MAC, CLIENT_MAC)
        }
    }
}

/// An ARP request: not IP, skipped right after the Ethernet header.
pub fn arp() -> Vec<u8> {
    let mut pkt = Vec::with_capacity(42);
    pkt.extend_from_slice(&[0xff; 6]);
    pkt.extend_from_slice(&CLIENT_MAC);
    pkt.extend_from_slice(&0x0806u16.to_be_bytes());
    // htype Ethernet, ptype IPv4, hlen 6, plen 4, op request.
    pkt.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    pkt.extend_from_slice(&CLIENT_MAC);
    pkt.extend_from_slice(&[10, 200, 0, 2]);
    pkt.extend_from_slice(&[0; 6]);
    pkt.extend_from_slice(&[10, 200, 0, 1]);
    pkt
}

/// An IPv4 packet of a transport the programs do not follow (OSPF, protocol 89).
pub fn other_transport() -> Vec<u8> {
    let mut pkt = Vec::with_capacity(64);
    PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
        .ipv4([10, 200, 0, 2], [224, 0, 0, 5], 1)
        .write(
            &mut pkt,
            etherparse::IpNumber(89),
            &[2, 1, 0, 44, 10, 200, 0, 2, 0, 0, 0, 0],
        )
        .expect("a packet in memory always builds");
    pkt
}
