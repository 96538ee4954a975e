//! Kernel verdicts on crafted packets with BPF_PROG_TEST_RUN: the real programs, loaded and
//! verified, run on packets we build byte by byte; assertions read the flow table, the
//! counters and the ring buffer they leave behind.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "privileged tests panic with a message"
)]

use std::net::{Ipv4Addr, Ipv6Addr};

use aya::{
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use etherparse::{PacketBuilder, VlanId};
use sealwatch::{
    events::{KernelEvent, decode},
    programs::{LoadOptions, Programs},
};
use sealwatch_common::{
    Encryption, Protocol,
    event::{KIND_CLOSE, KIND_VERDICT},
    flow::{FLOW_CLOSING, FLOW_VERDICT, FlowKey, FlowState},
    net::{FAMILY_IPV6, IPPROTO_ESP, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP},
    stats::Stat,
};
use sealwatch_tests::require_root;

const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 2);
const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 1);
const HTTP_REQUEST: &[u8] =
    b"GET /orders HTTP/1.1\r\nHost: orders.internal\r\nUser-Agent: curl/7.88.1\r\n\r\n";
const HTTP_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
/// Start of curl's ClientHello (see common/src/classify/tls.rs), padded to a plausible size.
const CLIENT_HELLO: [u8; 24] = [
    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0xe2, 0x6e, 0xdf, 0x13, 0x5d,
    0xc2, 0x62, 0x16, 0xec, 0x82, 0xae, 0xfa, 0x06,
];

const TCX_NEXT: i32 = -1;
const XDP_PASS: i32 = 2;

struct Kernel {
    programs: Programs,
    flows: HashMap<MapData, FlowKey, FlowState>,
    stats: PerCpuArray<MapData, u64>,
    ring: RingBuf<MapData>,
}

impl Kernel {
    fn load() -> Kernel {
        let opts = LoadOptions {
            sample_bytes: sealwatch_common::DEFAULT_SAMPLE_BYTES,
            flow_capacity: 1024,
            kernel_log_level: 0,
            ingress: None,
        };
        let mut programs = Programs::load(opts, None).expect("programs load and verify");
        let flows = programs.take_flows().expect("flows");
        let stats = programs.take_stats().expect("stats");
        let ring = programs.take_events().expect("events");
        Kernel {
            programs,
            flows,
            stats,
            ring,
        }
    }

    /// Runs `program` once on `packet`; returns its return value.
    fn run(&mut self, program: &str, packet: &[u8]) -> i32 {
        let opts = TestRunOptions {
            data_in: Some(packet),
            ..Default::default()
        };
        let ebpf = self.programs.ebpf_mut();
        let prog = ebpf.program_mut(program).expect("program");
        let ret = if program.starts_with("xdp") {
            let xdp: &mut Xdp = prog.try_into().expect("xdp");
            xdp.test_run(opts).expect("test run").return_value
        } else {
            let tc: &mut SchedClassifier = prog.try_into().expect("tc");
            tc.test_run(opts).expect("test run").return_value
        };
        ret as i32
    }

    fn stat(&self, s: Stat) -> u64 {
        self.stats
            .get(&(s as u32), 0)
            .map(|v| v.iter().sum())
            .expect("counter")
    }

    fn flow(&self, key: &FlowKey) -> Option<FlowState> {
        self.flows.get(key, 0).ok()
    }

    fn drain(&mut self) -> Vec<KernelEvent> {
        let mut out = Vec::new();
        while let Some(rec) = self.ring.next() {
            out.push(decode(&rec).expect("decodable record"));
        }
        out
    }
}

fn tcp4(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: &str, payload: &[u8]) -> Vec<u8> {
    let (smac, dmac) = if src.0 == CLIENT {
        (CLIENT_MAC, SERVER_MAC)
    } else {
        (SERVER_MAC, CLIENT_MAC)
    };
    let mut b = PacketBuilder::ethernet2(smac, dmac)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, 1000, 64240);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'F' => b.fin(),
            'R' => b.rst(),
            'P' => b.psh(),
            'A' => b.ack(1),
            _ => b,
        };
    }
    let mut pkt = Vec::new();
    b.write(&mut pkt, payload).expect("build packet");
    pkt
}

fn udp4(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    let (smac, dmac) = if src.0 == CLIENT {
        (CLIENT_MAC, SERVER_MAC)
    } else {
        (SERVER_MAC, CLIENT_MAC)
    };
    let mut pkt = Vec::new();
    PacketBuilder::ethernet2(smac, dmac)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .udp(src.1, dst.1)
        .write(&mut pkt, payload)
        .expect("build packet");
    pkt
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// `head` followed by filler up to `len` bytes: a message whose first bytes (all the kernel's
/// 64-byte window sees) come from a capture, at its real length.
fn padded(head: &[u8], len: usize) -> Vec<u8> {
    let mut v = head.to_vec();
    v.resize(len, 0x5a);
    v
}

fn key4(proto: u8, a: (Ipv4Addr, u16), b: (Ipv4Addr, u16)) -> (FlowKey, u8) {
    FlowKey::ipv4(proto, a.0.octets(), a.1, b.0.octets(), b.1)
}

fn key6(proto: u8, a: (Ipv6Addr, u16), b: (Ipv6Addr, u16)) -> (FlowKey, u8) {
    let w = |ip: Ipv6Addr| {
        let o = ip.octets();
        [0, 4, 8, 12].map(|i| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]))
    };
    FlowKey::canonical(FAMILY_IPV6, proto, w(a.0), a.1, w(b.0), b.1)
}

fn ip_len(eth_packet: &[u8]) -> u64 {
    (eth_packet.len() - 14) as u64
}

fn http_exchange_on(program: &str, expected_ret: i32) {
    let mut k = Kernel::load();
    let c = (CLIENT, 40000);
    let s = (SERVER, 80);
    let req = tcp4(c, s, "PA", HTTP_REQUEST);
    let resp = tcp4(s, c, "PA", HTTP_RESPONSE);
    assert_eq!(
        k.run(program, &req),
        expected_ret,
        "monitor mode passes every packet"
    );
    assert_eq!(k.run(program, &resp), expected_ret);

    let (key, client_side) = key4(IPPROTO_TCP, c, s);
    let st = k.flow(&key).expect("one flow for both directions");
    assert_eq!(st.flags & FLOW_VERDICT, FLOW_VERDICT);
    assert_eq!(Protocol::from_u8(st.protocol), Protocol::Http);
    assert_eq!(Encryption::from_u8(st.encryption), Encryption::Plaintext);
    // No SYN seen: the port-80 side is the server.
    assert_eq!(st.client_side, client_side);
    let server_side = usize::from(client_side ^ 1);
    let cs = usize::from(client_side);
    assert_eq!((st.packets[cs], st.packets[server_side]), (1, 1));
    assert_eq!(
        (st.bytes[cs], st.bytes[server_side]),
        (ip_len(&req), ip_len(&resp))
    );
    assert_eq!(st.payload_packets[cs], 1);

    let events = k.drain();
    let verdicts: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            KernelEvent::Notice(n) if n.kind == KIND_VERDICT => Some(n),
            _ => None,
        })
        .collect();
    assert_eq!(verdicts.len(), 1, "one verdict notice");
    assert_eq!(
        (verdicts[0].key, verdicts[0].protocol),
        (key, Protocol::Http as u8)
    );
    let samples: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            KernelEvent::Sample(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(samples.len(), 2, "first payload of each direction sampled");
    let req_sample = samples
        .iter()
        .find(|s| s.side == client_side)
        .expect("request sample");
    assert_eq!(
        req_sample.data, HTTP_REQUEST,
        "the record carries exactly the payload"
    );
    assert_eq!((req_sample.seq, req_sample.offset), (1000, 0));
    assert_eq!(k.stat(Stat::Packets), 2);
}

#[test]
fn http_exchange_on_tc_ingress() {
    if require_root("http_exchange_on_tc_ingress") {
        http_exchange_on("tc_ingress", TCX_NEXT);
    }
}

#[test]
fn http_exchange_on_tc_egress() {
    if require_root("http_exchange_on_tc_egress") {
        http_exchange_on("tc_egress", TCX_NEXT);
    }
}

#[test]
fn http_exchange_on_xdp_ingress() {
    if require_root("http_exchange_on_xdp_ingress") {
        http_exchange_on("xdp_ingress", XDP_PASS);
    }
}

#[test]
fn tls_client_hello_over_ipv6_behind_a_vlan_tag() {
    if !require_root("tls_client_hello_over_ipv6_behind_a_vlan_tag") {
        return;
    }
    let mut k = Kernel::load();
    let mut hello = CLIENT_HELLO.to_vec();
    hello.resize(517, 0xaa);
    let mut pkt = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
        .single_vlan(VlanId::try_new(42).expect("vlan id"))
        .ipv6(CLIENT6.octets(), SERVER6.octets(), 64)
        .tcp(51000, 8443, 7, 64240)
        .psh()
        .ack(1)
        .write(&mut pkt, &hello)
        .expect("build");
    assert_eq!(k.run("tc_ingress", &pkt), TCX_NEXT);
    let (key, _) = key6(IPPROTO_TCP, (CLIENT6, 51000), (SERVER6, 8443));
    let st = k.flow(&key).expect("flow");
    assert_eq!(
        (
            Protocol::from_u8(st.protocol),
            Encryption::from_u8(st.encryption)
        ),
        (Protocol::Tls, Encryption::Encrypted)
    );
    assert_eq!(k.stat(Stat::Malformed), 0);
    // 517 bytes of hello, all sampled (the default budget is 2048 per side).
    let sampled: u32 = k
        .drain()
        .iter()
        .map(|e| match e {
            KernelEvent::Sample(s) => s.data.len() as u32,
            _ => 0,
        })
        .sum();
    assert_eq!(sampled, 517);
}

#[test]
fn syn_sender_is_the_client_whatever_its_port() {
    if !require_root("syn_sender_is_the_client_whatever_its_port") {
        return;
    }
    let mut k = Kernel::load();
    // A client bound to port 443 connecting to an ephemeral-looking server port.
    let c = (CLIENT, 443);
    let s = (SERVER, 50000);
    let syn = tcp4(c, s, "S", b"");
    k.run("tc_egress", &syn);
    let (key, client_side) = key4(IPPROTO_TCP, c, s);
    let st = k.flow(&key).expect("flow");
    assert_eq!(st.client_side, client_side);
    // The SYN is accounted in the entry as it is created (no lookup after the insert).
    let (cs, ss) = (client_side, client_side ^ 1);
    let (ci, si) = (usize::from(cs), usize::from(ss));
    assert_eq!((st.packets[ci], st.packets[si]), (1, 0));
    assert_eq!((st.bytes[ci], st.bytes[si]), (ip_len(&syn), 0));
    assert_eq!((st.tcp_flags(cs), st.tcp_flags(ss)), (0x02, 0));
    assert_eq!(st.first_ns, st.last_ns);

    // A retransmitted SYN and the answer go through the lookup, onto the same entry.
    k.run("tc_egress", &syn);
    let syn_ack = tcp4(s, c, "SA", b"");
    k.run("tc_ingress", &syn_ack);
    let st = k.flow(&key).expect("flow");
    assert_eq!((st.packets[ci], st.packets[si]), (2, 1));
    assert_eq!(
        (st.bytes[ci], st.bytes[si]),
        (2 * ip_len(&syn), ip_len(&syn_ack))
    );
    assert_eq!((st.tcp_flags(cs), st.tcp_flags(ss)), (0x02, 0x12));
    assert_eq!(k.stat(Stat::FlowInsertFailed), 0);
}

#[test]
fn flow_first_seen_closing_sends_its_close_notice() {
    if !require_root("flow_first_seen_closing_sends_its_close_notice") {
        return;
    }
    let mut k = Kernel::load();
    // The agent started after the flow did: its first packet here is a RST.
    let c = (CLIENT, 40002);
    let s = (SERVER, 80);
    let rst = tcp4(c, s, "R", b"");
    k.run("tc_ingress", &rst);
    let (key, client_side) = key4(IPPROTO_TCP, c, s);
    let st = k.flow(&key).expect("flow");
    assert_eq!(st.flags & FLOW_CLOSING, FLOW_CLOSING);
    assert_eq!(st.packets[usize::from(client_side)], 1);
    let closes: Vec<_> = k
        .drain()
        .into_iter()
        .filter_map(|e| match e {
            KernelEvent::Notice(n) if n.kind == KIND_CLOSE => Some(n.key),
            _ => None,
        })
        .collect();
    assert_eq!(closes, vec![key]);
}

#[test]
fn fin_sends_one_close_notice() {
    if !require_root("fin_sends_one_close_notice") {
        return;
    }
    let mut k = Kernel::load();
    let c = (CLIENT, 40001);
    let s = (SERVER, 80);
    k.run("tc_ingress", &tcp4(c, s, "PA", HTTP_REQUEST));
    k.run("tc_ingress", &tcp4(c, s, "FA", b""));
    k.run("tc_egress", &tcp4(s, c, "FA", b""));
    let (key, _) = key4(IPPROTO_TCP, c, s);
    assert_eq!(
        k.flow(&key).expect("flow").flags & FLOW_CLOSING,
        FLOW_CLOSING
    );
    let closes = k
        .drain()
        .iter()
        .filter(|e| matches!(e, KernelEvent::Notice(n) if n.kind == KIND_CLOSE))
        .count();
    assert_eq!(closes, 1);
}

#[test]
fn unknown_once_both_sides_spoke_unrecognised() {
    if !require_root("unknown_once_both_sides_spoke_unrecognised") {
        return;
    }
    let mut k = Kernel::load();
    let udp = |src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]| {
        let mut pkt = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
            .ipv4(src.0.octets(), dst.0.octets(), 64)
            .udp(src.1, dst.1)
            .write(&mut pkt, payload)
            .expect("build");
        pkt
    };
    let c = (CLIENT, 45000);
    let s = (SERVER, 7000);
    k.run(
        "xdp_ingress",
        &udp(c, s, &[0x8f, 0x11, 0xe2, 0x00, 0x7a, 0x33, 0x90, 0x01]),
    );
    let (key, _) = key4(IPPROTO_UDP, c, s);
    assert_eq!(
        k.flow(&key).expect("flow").flags & FLOW_VERDICT,
        0,
        "one side unknown: still listening"
    );
    k.run("tc_egress", &udp(s, c, &[0x05, 0xfe, 0x77, 0x10]));
    let st = k.flow(&key).expect("flow");
    assert_eq!(st.flags & FLOW_VERDICT, FLOW_VERDICT);
    assert_eq!(Protocol::from_u8(st.protocol), Protocol::Unknown);
}

#[test]
fn skipped_packets_are_counted_not_tracked() {
    if !require_root("skipped_packets_are_counted_not_tracked") {
        return;
    }
    let mut k = Kernel::load();
    let good = tcp4((CLIENT, 40002), (SERVER, 80), "PA", HTTP_REQUEST);

    // ARP request.
    let mut arp = [0u8; 42];
    arp[..6].copy_from_slice(&[0xff; 6]);
    arp[6..12].copy_from_slice(&CLIENT_MAC);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    k.run("tc_ingress", &arp);

    // IPv4 first fragment (MF set: tracked, it holds the ports) and a later fragment (offset
    // 185: counted).
    let mut frag = good.clone();
    frag[14 + 6] = 0x20;
    k.run("tc_ingress", &frag);
    frag[14 + 6] = 0x00;
    frag[14 + 7] = 0xb9;
    k.run("xdp_ingress", &frag);

    // IPv6 with a fragment header, offset 0: tracked like the IPv4 first fragment.
    let mut v6frag = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
        .ipv6(CLIENT6.octets(), SERVER6.octets(), 64)
        .udp(5000, 6000)
        .write(&mut v6frag, b"abcdefgh")
        .expect("build");
    let mut with_frag = v6frag[..14 + 40].to_vec();
    with_frag[14 + 6] = 44; // next header: fragment
    with_frag.extend_from_slice(&[17, 0, 0, 1, 0, 0, 0, 9]); // -> UDP, offset 0, M=1
    with_frag.extend_from_slice(&v6frag[14 + 40..]);
    let plen = (with_frag.len() - 54) as u16;
    with_frag[18..20].copy_from_slice(&plen.to_be_bytes());
    k.run("tc_ingress", &with_frag);

    // ICMP echo: a port-less flow.
    let mut icmp = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
        .ipv4(CLIENT.octets(), SERVER.octets(), 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut icmp, b"ping")
        .expect("build");
    k.run("tc_ingress", &icmp);

    // SCTP: a transport we do not follow.
    let mut sctp = good.clone();
    sctp[14 + 9] = 132;
    k.run("tc_ingress", &sctp);

    // Malformed: TCP header cut short; IHL below 5; a data offset below 5.
    k.run("tc_ingress", &good[..14 + 20 + 10]);
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x43;
    k.run("xdp_ingress", &bad_ihl);
    let mut bad_doff = good.clone();
    bad_doff[14 + 20 + 12] = 0x40;
    k.run("tc_egress", &bad_doff);

    // IPv6 extension chain longer than the parser walks: five destination-options headers.
    let mut long_chain = v6frag[..14 + 40].to_vec();
    long_chain[14 + 6] = 60;
    for i in 0..5 {
        let next = if i == 4 { 17 } else { 60 };
        long_chain.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
    }
    long_chain.extend_from_slice(&v6frag[14 + 40..]);
    let plen = (long_chain.len() - 54) as u16;
    long_chain[18..20].copy_from_slice(&plen.to_be_bytes());
    k.run("tc_ingress", &long_chain);

    assert_eq!(k.stat(Stat::NonIp), 1);
    assert_eq!(k.stat(Stat::Fragments), 1);
    assert_eq!(k.stat(Stat::OtherTransport), 1);
    assert_eq!(k.stat(Stat::Malformed), 4);
    assert_eq!(k.stat(Stat::Packets), 10);
    let mut tracked: Vec<u8> = k.flows.keys().map(|k| k.expect("key").proto).collect();
    tracked.sort();
    assert_eq!(
        tracked,
        [IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP],
        "first fragments and ICMP are flows, nothing else is"
    );

    // And a chain within the bound is walked: two hop-by-hop/destination headers, then UDP.
    let mut short_chain = v6frag[..14 + 40].to_vec();
    short_chain[14 + 6] = 0;
    short_chain.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
    short_chain.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
    short_chain.extend_from_slice(&v6frag[14 + 40..]);
    let plen = (short_chain.len() - 54) as u16;
    short_chain[18..20].copy_from_slice(&plen.to_be_bytes());
    k.run("tc_ingress", &short_chain);
    let (key, _) = key6(IPPROTO_UDP, (CLIENT6, 5000), (SERVER6, 6000));
    let st = k.flow(&key).expect("flow behind two extension headers");
    // This packet and the first fragment above share the 5-tuple.
    assert_eq!(st.payload_packets.iter().sum::<u8>(), 2);
}

/// CLOCK_MONOTONIC, the clock the programs read (`bpf_ktime_get_ns` and its coarse variant).
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the timespec passed.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) },
        0
    );
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A flow's start is read from the precise clock; its verdict, reached by the decide program
/// the observer hands the packet to, from the tick's, but never before the start. A flow judged
/// on the packet that created it takes that packet's precise reading.
#[test]
fn verdict_times_follow_the_flow_start() {
    if !require_root("verdict_times_follow_the_flow_start") {
        return;
    }
    for program in ["tc_ingress", "xdp_ingress"] {
        let mut k = Kernel::load();
        let before = monotonic_ns();
        let c = (CLIENT, 41000);
        let s = (SERVER, 8080);
        for packet in [
            tcp4(c, s, "S", &[]),
            tcp4(s, c, "SA", &[]),
            tcp4(c, s, "A", &[]),
            tcp4(c, s, "PA", HTTP_REQUEST),
        ] {
            k.run(program, &packet);
        }
        let dns = udp4((CLIENT, 53001), (SERVER, 53), &hex(DNS_QUERY_HEX));
        k.run(program, &dns);
        let after = monotonic_ns();

        let (web, _) = key4(IPPROTO_TCP, c, s);
        let st = k.flow(&web).expect("the TCP flow");
        assert_eq!(Protocol::from_u8(st.protocol), Protocol::Http, "{program}");
        assert!(
            before <= st.first_ns && st.first_ns <= st.verdict_ns && st.verdict_ns <= after,
            "{program}: {before} <= start {} <= verdict {} <= {after}",
            st.first_ns,
            st.verdict_ns
        );
        let (resolver, _) = key4(IPPROTO_UDP, (CLIENT, 53001), (SERVER, 53));
        let q = k.flow(&resolver).expect("the DNS flow");
        assert_eq!(Protocol::from_u8(q.protocol), Protocol::Dns, "{program}");
        assert_eq!(
            q.verdict_ns, q.first_ns,
            "{program}: judged on the packet that created it"
        );
        assert!(q.first_ns >= st.first_ns && q.first_ns <= after);

        let notices: Vec<_> = k
            .drain()
            .into_iter()
            .filter_map(|e| match e {
                KernelEvent::Notice(n) if n.kind == KIND_VERDICT => Some(n),
                _ => None,
            })
            .collect();
        for (key, state) in [(web, &st), (resolver, &q)] {
            let n = notices
                .iter()
                .find(|n| n.key == key)
                .expect("a verdict notice");
            assert_eq!(n.ts_ns, state.verdict_ns, "{program}: the notice's time");
        }
        assert_eq!(k.stat(Stat::EnforceUnreachable), 0, "{program}");
    }
}

/// `AAAA? www.example.com.` as a Linux resolver sends it.
const DNS_QUERY_HEX: &str = "bc1f0100000100000000000003777777076578616d706c6503636f6d00001c0001";

#[test]
fn dns_query_over_udp_is_plaintext_dns() {
    if !require_root("dns_query_over_udp_is_plaintext_dns") {
        return;
    }
    let mut k = Kernel::load();
    let query = hex(DNS_QUERY_HEX);
    let mut pkt = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
        .ipv4(CLIENT.octets(), SERVER.octets(), 64)
        .udp(53000, 53)
        .write(&mut pkt, &query)
        .expect("build");
    k.run("tc_egress", &pkt);
    let (key, _) = key4(IPPROTO_UDP, (CLIENT, 53000), (SERVER, 53));
    let st = k.flow(&key).expect("flow");
    assert_eq!(
        (
            Protocol::from_u8(st.protocol),
            Encryption::from_u8(st.encryption)
        ),
        (Protocol::Dns, Encryption::Plaintext)
    );
}

#[test]
fn tls_records_count_only_when_the_handshake_was_missed() {
    if !require_root("tls_records_count_only_when_the_handshake_was_missed") {
        return;
    }
    let mut k = Kernel::load();
    let mut record = vec![0x17, 0x03, 0x03, 0x00, 0x40];
    record.extend_from_slice(&[0x5a; 64]);
    // Picked up mid-stream: application data is all there is to see.
    let mid = ((CLIENT, 40100), (SERVER, 443));
    k.run("tc_ingress", &tcp4(mid.0, mid.1, "PA", &record));
    let st = k.flow(&key4(IPPROTO_TCP, mid.0, mid.1).0).expect("flow");
    assert_eq!(Protocol::from_u8(st.protocol), Protocol::Tls);
    // Seen from its SYN: a record header with no handshake before it proves nothing.
    let fresh = ((CLIENT, 40101), (SERVER, 443));
    k.run("tc_ingress", &tcp4(fresh.0, fresh.1, "S", b""));
    k.run("tc_ingress", &tcp4(fresh.0, fresh.1, "PA", &record));
    let st = k
        .flow(&key4(IPPROTO_TCP, fresh.0, fresh.1).0)
        .expect("flow");
    assert_eq!(
        st.flags & FLOW_VERDICT,
        0,
        "still unknown, waiting for the server"
    );
}

#[test]
fn esp_is_an_encrypted_portless_flow() {
    if !require_root("esp_is_an_encrypted_portless_flow") {
        return;
    }
    let mut k = Kernel::load();
    // SPI 0xb64ef321, sequence 1, then ciphertext.
    let mut esp = vec![0xb6, 0x4e, 0xf3, 0x21, 0, 0, 0, 1];
    esp.extend((0u8..64).map(|i| i.wrapping_mul(151).wrapping_add(7)));
    let mut pkt = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
        .ipv4(CLIENT.octets(), SERVER.octets(), 64)
        .write(
            &mut pkt,
            etherparse::IpNumber::ENCAPSULATING_SECURITY_PAYLOAD,
            &esp,
        )
        .expect("build");
    k.run("tc_egress", &pkt);
    let (key, _) = key4(IPPROTO_ESP, (CLIENT, 0), (SERVER, 0));
    let st = k.flow(&key).expect("ESP flow with ports 0");
    assert_eq!(
        (
            Protocol::from_u8(st.protocol),
            Encryption::from_u8(st.encryption)
        ),
        (Protocol::IpsecEsp, Encryption::Encrypted)
    );
    assert_eq!(k.stat(Stat::OtherTransport), 0, "tracked, not skipped");
}

/// One service protocol's first message, and what the kernel must call its flow.
struct ServiceCase {
    name: &'static str,
    udp: bool,
    /// The server speaks first (a greeting, a response).
    from_server: bool,
    server_port: u16,
    payload: Vec<u8>,
    expect: (Protocol, Encryption),
}

#[test]
fn service_protocols_are_named_in_the_kernel() {
    if !require_root("service_protocols_are_named_in_the_kernel") {
        return;
    }
    use Encryption::{Encrypted, Plaintext};
    let case = |name, udp, from_server, server_port, payload, expect| ServiceCase {
        name,
        udp,
        from_server,
        server_port,
        payload,
        expect,
    };
    // First messages from common/src/classify/services/, several of them read at offsets an
    // earlier field decides (BER lengths, the octet count, the end of a scan).
    let cases = [
        case(
            "PostgreSQL SSLRequest",
            false,
            false,
            5432,
            hex("0000000804d2162f"),
            (Protocol::Postgresql, Plaintext),
        ),
        case(
            "SMTP greeting, Postfix",
            false,
            true,
            25,
            b"220 mail.example.net ESMTP Postfix (Debian/GNU)\r\n".to_vec(),
            (Protocol::Smtp, Plaintext),
        ),
        case(
            "IMAP LOGIN after a tag",
            false,
            false,
            143,
            b"a001 LOGIN alice secret\r\n".to_vec(),
            (Protocol::Imap, Plaintext),
        ),
        case(
            "LDAP bindResponse with 4-byte lengths, Active Directory",
            false,
            true,
            389,
            padded(
                &hex(
                    "3084000000cc0201036184000000c30a010004000400878200b8a181b53081b2a0030a0100a10b06092a864882f712010202a2819d04819a60819706092a8648",
                ),
                210,
            ),
            (Protocol::Ldap, Plaintext),
        ),
        case(
            "XMPP stream header after the XML declaration",
            false,
            true,
            5222,
            b"<?xml version='1.0'?><stream:stream id='1647168634' version='1.0' xmlns='jabber:client'>"
                .to_vec(),
            (Protocol::Xmpp, Plaintext),
        ),
        case(
            "syslog over TCP with octet counting",
            false,
            false,
            514,
            b"51 <13>1 2026-11-23T17:29:48Z vm sealwatch - - - hello".to_vec(),
            (Protocol::Syslog, Plaintext),
        ),
        case(
            "SNMPv2c get-request, community public",
            true,
            false,
            161,
            hex(
                "302902010104067075626c6963a01c02043602c5b6020100020100300e300c06082b060102010101000500",
            ),
            (Protocol::Snmp, Plaintext),
        ),
        case(
            "SNMPv3 authPriv get-request",
            true,
            false,
            161,
            padded(
                &hex(
                    "30818a020103301102041bdd1603020300ffe3040107020103043b3039041180001f88800f98723d0678046b000000000201010201040406737775736572040c",
                ),
                141,
            ),
            (Protocol::Snmp, Encrypted),
        ),
        case(
            "OpenVPN client hard reset, plain",
            true,
            false,
            1194,
            hex("3839fded2daa10a4370000000000"),
            (Protocol::Openvpn, Encrypted),
        ),
    ];
    let mut k = Kernel::load();
    for (i, c) in cases.iter().enumerate() {
        let client = (CLIENT, 41000 + i as u16);
        let server = (SERVER, c.server_port);
        let (src, dst) = if c.from_server {
            (server, client)
        } else {
            (client, server)
        };
        let pkt = if c.udp {
            udp4(src, dst, &c.payload)
        } else {
            tcp4(src, dst, "PA", &c.payload)
        };
        k.run("tc_ingress", &pkt);
        let proto = if c.udp { IPPROTO_UDP } else { IPPROTO_TCP };
        let st = k.flow(&key4(proto, client, server).0).expect("flow");
        assert_eq!(
            st.flags & FLOW_VERDICT,
            FLOW_VERDICT,
            "{}: no verdict",
            c.name
        );
        assert_eq!(
            (
                Protocol::from_u8(st.protocol),
                Encryption::from_u8(st.encryption)
            ),
            c.expect,
            "{}",
            c.name
        );
    }
    assert_eq!(k.stat(Stat::Malformed), 0);
}
