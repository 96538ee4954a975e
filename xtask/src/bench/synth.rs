//! A synthetic capture for `cargo xtask bench`: east-west traffic shaped like a busy service
//! network (TLS 1.3 and 1.2, HTTP, DNS, SSH) with real handshakes and bulk transfers, written as
//! pcap and pcapng in one pass. Captures this large cannot live in the repository, and a
//! generated one is byte-for-byte the same on every machine, so numbers from different runs
//! compare.
//!
//! Shape, as in captured traffic: a few hundred flows open at once and interleaved; most flows
//! small, a few carry megabytes; most packets are full-size segments of a bulk transfer, with
//! an ACK every second segment; TCP flows open with a handshake and mostly close with FIN, some
//! with RST, some not at all (they end idle); DNS lookups are one datagram each way.

use std::{
    collections::VecDeque,
    fs::File,
    io::{self, BufWriter, Write},
    path::Path,
};

/// Flows open at once.
const CONCURRENT_FLOWS: usize = 400;
/// TCP payload per full segment (1500-byte MTU, no TCP options).
const MSS: usize = 1460;
/// Mean time between packets: about 25,000 packets per second of capture time, so a capture of
/// a few million packets spans a few minutes and the analyzer's sweeps and idle timeouts run.
const MEAN_GAP_NS: u64 = 40_000;
/// The capture's start: 2026-01-05T09:00:00Z.
const START_NS: u64 = 1_767_603_600_000_000_000;
const SEED: u64 = 0x5ea1_3a7c_b0a7_2026;
const POOL: usize = 1 << 16;

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;

/// What was written.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    pub packets: u64,
    pub flows: u64,
    pub pcap_bytes: u64,
    pub pcapng_bytes: u64,
}

/// Writes `packets` packets of synthetic traffic to `pcap` (legacy format, microsecond
/// timestamps) and the same packets to `pcapng`.
pub fn write(pcap: &Path, pcapng: &Path, packets: u64) -> io::Result<Written> {
    let mut legacy = PcapWriter::create(pcap)?;
    let mut ng = PcapngWriter::create(pcapng)?;
    let mut traffic = Generator::new(SEED);
    let mut frame = Vec::with_capacity(2048);
    let mut written = Written::default();
    let mut ts_ns = START_NS;
    while written.packets < packets {
        while traffic.active.len() < CONCURRENT_FLOWS {
            traffic.open_flow();
            written.flows += 1;
        }
        let i = traffic.rng.below(traffic.active.len() as u64) as usize;
        if traffic.next_packet(i, &mut frame) {
            ts_ns += traffic.rng.below(2 * MEAN_GAP_NS);
            legacy.packet(ts_ns, &frame)?;
            ng.packet(ts_ns, &frame)?;
            written.packets += 1;
        } else {
            traffic.active.swap_remove(i);
        }
    }
    written.pcap_bytes = legacy.finish()?;
    written.pcapng_bytes = ng.finish()?;
    Ok(written)
}

/// SplitMix64: small, fast, and the same sequence everywhere for a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        for chunk in b.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        b
    }

    /// A heavy-tailed size: mostly small, sometimes large, rarely megabytes.
    fn transfer_size(&mut self) -> u64 {
        match self.below(100) {
            0..80 => self.range(200, 20_000),
            80..98 => self.range(20_000, 200_000),
            _ => self.range(200_000, 2_000_000),
        }
    }
}

#[derive(Clone, Copy)]
enum Addrs {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

/// Which filler bulk data is cut from.
#[derive(Clone, Copy)]
enum Fill {
    /// Ciphertext: random bytes.
    Random,
    /// A plaintext body: JSON-like text.
    Text,
}

/// Client (0) or server (1).
type Dir = usize;
const CLIENT: Dir = 0;
const SERVER: Dir = 1;

enum Step {
    Syn,
    SynAck,
    /// The handshake's last ACK.
    Ack,
    /// One application message, cut into segments as it goes.
    Message {
        dir: Dir,
        bytes: Vec<u8>,
    },
    /// Bulk data taken from a filler, `left` bytes.
    Bulk {
        dir: Dir,
        left: u64,
        fill: Fill,
    },
    Datagram {
        dir: Dir,
        bytes: Vec<u8>,
    },
    Fin(Dir),
    FinAck(Dir),
    LastAck(Dir),
    Rst(Dir),
}

struct Flow {
    addrs: Addrs,
    ports: [u16; 2],
    tcp: bool,
    /// Next sequence number each side sends.
    seq: [u32; 2],
    /// Segments each side received since it last acknowledged.
    unacked: [u8; 2],
    ack_due: Option<Dir>,
    steps: VecDeque<Step>,
    /// Bytes of the current message already sent.
    sent: usize,
}

struct Generator {
    rng: Rng,
    active: Vec<Flow>,
    random: Vec<u8>,
    text: Vec<u8>,
    ip_id: u16,
}

impl Generator {
    fn new(seed: u64) -> Generator {
        let mut rng = Rng(seed);
        let random = (0..POOL / 8)
            .flat_map(|_| rng.next().to_le_bytes())
            .collect();
        let mut text = Vec::with_capacity(POOL + 256);
        let mut n = 0u64;
        while text.len() < POOL {
            n += 1;
            let record = format!(
                "{{\"id\":{n},\"sku\":\"A-{:06}\",\"name\":\"item {}\",\"price\":{}.{:02},\"tags\":[\"stock\",\"eu-west\"],\"updated\":\"2026-01-05T08:{:02}:{:02}Z\"}},\n",
                rng.below(1_000_000),
                rng.below(5000),
                rng.below(500),
                rng.below(100),
                rng.below(60),
                rng.below(60)
            );
            text.extend_from_slice(record.as_bytes());
        }
        Generator {
            rng,
            active: Vec::with_capacity(CONCURRENT_FLOWS),
            random,
            text,
            ip_id: 1,
        }
    }

    fn open_flow(&mut self) {
        let r = &mut self.rng;
        let client = r.range(1, 2000) as u16;
        let server = r.range(1, 200) as u16;
        let addrs = if r.percent(10) {
            let mut c = [0u8; 16];
            let mut s = [0u8; 16];
            c[..4].copy_from_slice(&[0xfd, 0, 0, 1]);
            s[..4].copy_from_slice(&[0xfd, 0, 0, 2]);
            c[14..].copy_from_slice(&client.to_be_bytes());
            s[14..].copy_from_slice(&server.to_be_bytes());
            Addrs::V6(c, s)
        } else {
            let [c0, c1] = client.to_be_bytes();
            let [s0, s1] = server.to_be_bytes();
            Addrs::V4([10, 1, c0, c1], [10, 2, s0, s1])
        };
        let ephemeral = r.range(32768, 60999) as u16;
        let kind = r.below(100);
        let (server_port, tcp) = match kind {
            0..40 => (443, true),
            40..55 => (8443, true),
            55..72 => (80, true),
            72..75 => (8080, true),
            75..95 => (53, false),
            _ => (22, true),
        };
        let mut steps = VecDeque::new();
        if tcp {
            steps.extend([Step::Syn, Step::SynAck, Step::Ack]);
        }
        match server_port {
            443 | 8443 => {
                // Mostly TLS 1.3, as between current services; some TLS 1.2.
                let tls13 = self.rng.percent(70);
                self.tls(&mut steps, tls13);
            }
            80 | 8080 => self.http(&mut steps),
            53 => self.dns(&mut steps),
            _ => self.ssh(&mut steps),
        }
        let r = &mut self.rng;
        if tcp {
            match r.below(100) {
                0..85 => steps.extend([
                    Step::Fin(CLIENT),
                    Step::FinAck(SERVER),
                    Step::LastAck(CLIENT),
                ]),
                85..93 => steps.push_back(Step::Rst(CLIENT)),
                // Left open: ended by the idle timeout or the capture's end.
                _ => {}
            }
        }
        let seq = [r.next() as u32, r.next() as u32];
        self.active.push(Flow {
            addrs,
            ports: [ephemeral, server_port],
            tcp,
            seq,
            unacked: [0; 2],
            ack_due: None,
            steps,
            sent: 0,
        });
    }

    fn tls(&mut self, steps: &mut VecDeque<Step>, tls13: bool) {
        let r = &mut self.rng;
        let host = format!("svc-{}.prod.internal", r.below(200));
        steps.push_back(Step::Message {
            dir: CLIENT,
            bytes: client_hello(r, &host),
        });
        let mut flight = server_hello(r, tls13);
        if tls13 {
            // ChangeCipherSpec for middleboxes, then the encrypted rest of the server's flight.
            flight.extend_from_slice(&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01]);
            let n = r.range(2500, 4500);
            flight.extend(app_data_header(n));
            steps.push_back(Step::Message {
                dir: SERVER,
                bytes: flight,
            });
            steps.push_back(Step::Bulk {
                dir: SERVER,
                left: n,
                fill: Fill::Random,
            });
            let mut finished = vec![0x14, 0x03, 0x03, 0x00, 0x01, 0x01];
            finished.extend(app_data_header(53));
            finished.extend_from_slice(&r.bytes::<53>());
            steps.push_back(Step::Message {
                dir: CLIENT,
                bytes: finished,
            });
        } else {
            // ServerHelloDone; the client's key exchange, ChangeCipherSpec and Finished; the
            // server's ChangeCipherSpec and Finished.
            flight.extend_from_slice(&[0x16, 0x03, 0x03, 0x00, 0x04, 0x0e, 0x00, 0x00, 0x00]);
            steps.push_back(Step::Message {
                dir: SERVER,
                bytes: flight,
            });
            let mut kex = vec![0x16, 0x03, 0x03, 0x00, 0x25, 0x10, 0x00, 0x00, 0x21, 0x20];
            kex.extend_from_slice(&r.bytes::<32>());
            kex.extend_from_slice(&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01]);
            kex.extend_from_slice(&[0x16, 0x03, 0x03, 0x00, 0x28]);
            kex.extend_from_slice(&r.bytes::<40>());
            steps.push_back(Step::Message {
                dir: CLIENT,
                bytes: kex,
            });
            let mut fin = vec![
                0x14, 0x03, 0x03, 0x00, 0x01, 0x01, 0x16, 0x03, 0x03, 0x00, 0x28,
            ];
            fin.extend_from_slice(&r.bytes::<40>());
            steps.push_back(Step::Message {
                dir: SERVER,
                bytes: fin,
            });
        }
        for _ in 0..r.range(1, 3) {
            let request = r.range(80, 900);
            steps.push_back(Step::Message {
                dir: CLIENT,
                bytes: app_data_header(request).collect(),
            });
            steps.push_back(Step::Bulk {
                dir: CLIENT,
                left: request,
                fill: Fill::Random,
            });
            let response = r.transfer_size();
            steps.push_back(Step::Message {
                dir: SERVER,
                bytes: app_data_header(response.min(16_384)).collect(),
            });
            steps.push_back(Step::Bulk {
                dir: SERVER,
                left: response,
                fill: Fill::Random,
            });
        }
    }

    fn http(&mut self, steps: &mut VecDeque<Step>) {
        let r = &mut self.rng;
        let host = format!("svc-{}.prod.internal", r.below(200));
        for _ in 0..r.range(1, 3) {
            let request = format!(
                "GET /api/v1/items/{}?page={} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Go-http-client/1.1\r\nAccept: application/json\r\nX-Request-Id: {:016x}\r\nAccept-Encoding: gzip\r\n\r\n",
                r.below(100_000),
                r.below(20),
                r.next()
            );
            steps.push_back(Step::Message {
                dir: CLIENT,
                bytes: request.into_bytes(),
            });
            let body = r.transfer_size();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {body}\r\nDate: Mon, 05 Jan 2026 09:00:00 GMT\r\nServer: envoy\r\n\r\n"
            );
            steps.push_back(Step::Message {
                dir: SERVER,
                bytes: response.into_bytes(),
            });
            steps.push_back(Step::Bulk {
                dir: SERVER,
                left: body,
                fill: Fill::Text,
            });
        }
    }

    fn dns(&mut self, steps: &mut VecDeque<Step>) {
        let r = &mut self.rng;
        let id = r.next() as u16;
        let name = format!("svc-{}", r.below(200));
        let mut query = Vec::with_capacity(64);
        query.extend_from_slice(&id.to_be_bytes());
        query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in [name.as_str(), "prod", "internal"] {
            query.push(label.len() as u8);
            query.extend_from_slice(label.as_bytes());
        }
        query.extend_from_slice(&[0, 0, 1, 0, 1]);
        let mut answer = query.clone();
        answer[2..8].copy_from_slice(&[0x81, 0x80, 0, 1, 0, 1]);
        answer.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 2]);
        answer.extend_from_slice(&(r.below(200) as u16).to_be_bytes());
        steps.push_back(Step::Datagram {
            dir: CLIENT,
            bytes: query,
        });
        steps.push_back(Step::Datagram {
            dir: SERVER,
            bytes: answer,
        });
    }

    fn ssh(&mut self, steps: &mut VecDeque<Step>) {
        let r = &mut self.rng;
        steps.push_back(Step::Message {
            dir: CLIENT,
            bytes: b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n".to_vec(),
        });
        steps.push_back(Step::Message {
            dir: SERVER,
            bytes: b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n".to_vec(),
        });
        for (dir, n) in [
            (CLIENT, 1500),
            (SERVER, 1100),
            (CLIENT, 1200),
            (SERVER, 600),
        ] {
            steps.push_back(Step::Bulk {
                dir,
                left: n,
                fill: Fill::Random,
            });
        }
        // An interactive session: keystrokes and their echo, sometimes a file copy.
        for _ in 0..r.range(20, 200) {
            steps.push_back(Step::Bulk {
                dir: CLIENT,
                left: 36,
                fill: Fill::Random,
            });
            steps.push_back(Step::Bulk {
                dir: SERVER,
                left: r.range(36, 300),
                fill: Fill::Random,
            });
        }
        if r.percent(3) {
            steps.push_back(Step::Bulk {
                dir: SERVER,
                left: r.range(500_000, 4_000_000),
                fill: Fill::Random,
            });
        }
    }

    /// Writes flow `i`'s next packet into `frame`; false when the flow has nothing left.
    fn next_packet(&mut self, i: usize, frame: &mut Vec<u8>) -> bool {
        let flow = &mut self.active[i];
        if let Some(dir) = flow.ack_due.take() {
            let f = &*flow;
            build(frame, f, dir, TCP_ACK, &[], &mut self.ip_id);
            return true;
        }
        let Some(step) = flow.steps.front() else {
            return false;
        };
        let (dir, flags, payload): (Dir, u8, &[u8]) = match step {
            Step::Syn => (CLIENT, TCP_SYN, &[]),
            Step::SynAck => (SERVER, TCP_SYN | TCP_ACK, &[]),
            Step::Ack => (CLIENT, TCP_ACK, &[]),
            Step::Fin(d) => (*d, TCP_FIN | TCP_ACK, &[]),
            Step::FinAck(d) => (*d, TCP_FIN | TCP_ACK, &[]),
            Step::LastAck(d) => (*d, TCP_ACK, &[]),
            Step::Rst(d) => (*d, TCP_RST | TCP_ACK, &[]),
            Step::Datagram { dir, bytes } => (*dir, 0, &bytes[..]),
            Step::Message { dir, bytes } => {
                let n = (bytes.len() - flow.sent).min(MSS);
                (*dir, TCP_ACK | TCP_PSH, &bytes[flow.sent..flow.sent + n])
            }
            Step::Bulk { dir, left, fill } => {
                let n = (*left as usize).min(MSS);
                let pool = match fill {
                    Fill::Random => &self.random,
                    Fill::Text => &self.text,
                };
                let at = self.rng.below((POOL - MSS) as u64) as usize;
                (*dir, TCP_ACK, &pool[at..at + n])
            }
        };
        let len = payload.len();
        build(frame, flow, dir, flags, payload, &mut self.ip_id);
        // Advance: sequence space, acknowledgements, the step itself.
        let consumed = len as u32 + u32::from(flags & (TCP_SYN | TCP_FIN) != 0);
        flow.seq[dir] = flow.seq[dir].wrapping_add(consumed);
        if flow.tcp && len > 0 {
            let peer = dir ^ 1;
            flow.unacked[peer] += 1;
            if flow.unacked[peer] >= 2 {
                flow.unacked[peer] = 0;
                flow.ack_due = Some(peer);
            }
        }
        let done = match flow.steps.front_mut() {
            Some(Step::Message { bytes, .. }) => {
                flow.sent += len;
                flow.sent >= bytes.len()
            }
            Some(Step::Bulk { left, .. }) => {
                *left -= len as u64;
                *left == 0
            }
            _ => true,
        };
        if done {
            flow.sent = 0;
            flow.steps.pop_front();
        }
        true
    }
}

/// A TLS application-data record header for `len` bytes of ciphertext.
fn app_data_header(len: u64) -> impl Iterator<Item = u8> {
    let [hi, lo] = (len.min(16_384) as u16).to_be_bytes();
    [0x17, 0x03, 0x03, hi, lo].into_iter()
}

fn u16_prefixed(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

fn extension(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    u16_prefixed(out, body);
}

/// A handshake message of `msg_type` in a record of `record_version`.
fn handshake_record(record_version: u8, msg_type: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0x16, 0x03, record_version];
    out.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    out.push(msg_type);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(body);
    out
}

/// A ClientHello as a current browser or Go client sends it: TLS 1.3 and 1.2 suites, SNI,
/// ALPN, an x25519 key share.
fn client_hello(r: &mut Rng, host: &str) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&r.bytes::<32>());
    body.push(32);
    body.extend_from_slice(&r.bytes::<32>());
    let suites: [u16; 9] = [
        0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8,
    ];
    let suites: Vec<u8> = suites.iter().flat_map(|s| s.to_be_bytes()).collect();
    u16_prefixed(&mut body, &suites);
    body.extend_from_slice(&[1, 0]);
    let mut ext = Vec::new();
    let mut sni = vec![0];
    u16_prefixed(&mut sni, host.as_bytes());
    let mut list = Vec::new();
    u16_prefixed(&mut list, &sni);
    extension(&mut ext, 0, &list);
    extension(&mut ext, 10, &[0, 6, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18]);
    extension(&mut ext, 11, &[1, 0]);
    extension(
        &mut ext,
        13,
        &[
            0, 16, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01, 0x05, 0x03, 0x08, 0x05, 0x05, 0x01, 0x08,
            0x06, 0x06, 0x01,
        ],
    );
    extension(
        &mut ext,
        16,
        &[
            0, 12, 2, b'h', b'2', 8, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1',
        ],
    );
    extension(&mut ext, 43, &[4, 0x03, 0x04, 0x03, 0x03]);
    extension(&mut ext, 45, &[1, 1]);
    let mut share = vec![0, 36, 0x00, 0x1d, 0, 32];
    share.extend_from_slice(&r.bytes::<32>());
    extension(&mut ext, 51, &share);
    u16_prefixed(&mut body, &ext);
    handshake_record(0x01, 1, &body)
}

/// The server's answer: TLS 1.3 (TLS_AES_128_GCM_SHA256, x25519) or TLS 1.2
/// (ECDHE-RSA-AES128-GCM-SHA256).
fn server_hello(r: &mut Rng, tls13: bool) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&r.bytes::<32>());
    body.push(32);
    body.extend_from_slice(&r.bytes::<32>());
    let suite: u16 = if tls13 { 0x1301 } else { 0xc02f };
    body.extend_from_slice(&suite.to_be_bytes());
    body.push(0);
    let mut ext = Vec::new();
    if tls13 {
        extension(&mut ext, 43, &[0x03, 0x04]);
        let mut share = vec![0x00, 0x1d, 0, 32];
        share.extend_from_slice(&r.bytes::<32>());
        extension(&mut ext, 51, &share);
    } else {
        extension(&mut ext, 0xff01, &[0]);
        extension(&mut ext, 16, &[0, 3, 2, b'h', b'2']);
    }
    u16_prefixed(&mut body, &ext);
    handshake_record(0x03, 2, &body)
}

/// Ethernet, IPv4 or IPv6, TCP or UDP, payload. Checksums of the transport are left zero, as
/// in captures taken where the NIC computes them.
fn build(frame: &mut Vec<u8>, f: &Flow, dir: Dir, flags: u8, payload: &[u8], ip_id: &mut u16) {
    frame.clear();
    let (src_port, dst_port) = (f.ports[dir], f.ports[dir ^ 1]);
    let l4_len = if f.tcp { 20 } else { 8 } + payload.len();
    let mac = |side: Dir| [0x02, 0x42, 0x0a, 0x00, 0x00, side as u8 + 1];
    frame.extend_from_slice(&mac(dir ^ 1));
    frame.extend_from_slice(&mac(dir));
    let proto = if f.tcp { 6 } else { 17 };
    match f.addrs {
        Addrs::V4(c, s) => {
            let (src, dst) = if dir == CLIENT { (c, s) } else { (s, c) };
            frame.extend_from_slice(&[0x08, 0x00]);
            let total = (20 + l4_len) as u16;
            *ip_id = ip_id.wrapping_add(1);
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            ip[4..6].copy_from_slice(&ip_id.to_be_bytes());
            ip[6] = 0x40;
            ip[8] = 64;
            ip[9] = proto;
            ip[12..16].copy_from_slice(&src);
            ip[16..20].copy_from_slice(&dst);
            let sum = ip
                .chunks(2)
                .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
                .sum::<u32>();
            let sum = (sum & 0xffff) + (sum >> 16);
            let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            frame.extend_from_slice(&ip);
        }
        Addrs::V6(c, s) => {
            let (src, dst) = if dir == CLIENT { (c, s) } else { (s, c) };
            frame.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            frame.extend_from_slice(&(l4_len as u16).to_be_bytes());
            frame.extend_from_slice(&[proto, 64]);
            frame.extend_from_slice(&src);
            frame.extend_from_slice(&dst);
        }
    }
    frame.extend_from_slice(&src_port.to_be_bytes());
    frame.extend_from_slice(&dst_port.to_be_bytes());
    if f.tcp {
        let ack = if flags & TCP_ACK != 0 {
            f.seq[dir ^ 1]
        } else {
            0
        };
        frame.extend_from_slice(&f.seq[dir].to_be_bytes());
        frame.extend_from_slice(&ack.to_be_bytes());
        frame.extend_from_slice(&[0x50, flags, 0x01, 0xf5, 0, 0, 0, 0]);
    } else {
        frame.extend_from_slice(&(l4_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
    }
    frame.extend_from_slice(payload);
}

const SNAPLEN: u32 = 65_535;
const LINKTYPE_ETHERNET: u16 = 1;

/// Legacy pcap, little-endian, microsecond timestamps.
struct PcapWriter {
    out: BufWriter<File>,
    bytes: u64,
}

impl PcapWriter {
    fn create(path: &Path) -> io::Result<PcapWriter> {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
        let mut header = Vec::with_capacity(24);
        header.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        header.extend_from_slice(&2u16.to_le_bytes());
        header.extend_from_slice(&4u16.to_le_bytes());
        header.extend_from_slice(&[0; 8]);
        header.extend_from_slice(&SNAPLEN.to_le_bytes());
        header.extend_from_slice(&u32::from(LINKTYPE_ETHERNET).to_le_bytes());
        out.write_all(&header)?;
        Ok(PcapWriter {
            out,
            bytes: header.len() as u64,
        })
    }

    fn packet(&mut self, ts_ns: u64, frame: &[u8]) -> io::Result<()> {
        let us = ts_ns / 1000;
        let len = frame.len() as u32;
        let mut record = [0u8; 16];
        record[..4].copy_from_slice(&((us / 1_000_000) as u32).to_le_bytes());
        record[4..8].copy_from_slice(&((us % 1_000_000) as u32).to_le_bytes());
        record[8..12].copy_from_slice(&len.to_le_bytes());
        record[12..].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&record)?;
        self.out.write_all(frame)?;
        self.bytes += 16 + u64::from(len);
        Ok(())
    }

    fn finish(mut self) -> io::Result<u64> {
        self.out.flush()?;
        Ok(self.bytes)
    }
}

/// pcapng: one section, one Ethernet interface with the default microsecond resolution, one
/// Enhanced Packet Block per packet.
struct PcapngWriter {
    out: BufWriter<File>,
    bytes: u64,
}

impl PcapngWriter {
    fn create(path: &Path) -> io::Result<PcapngWriter> {
        let mut w = PcapngWriter {
            out: BufWriter::with_capacity(1 << 20, File::create(path)?),
            bytes: 0,
        };
        let mut shb = Vec::with_capacity(16);
        shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&0u16.to_le_bytes());
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        w.block(0x0a0d_0d0a, &shb, &[])?;
        let mut idb = Vec::with_capacity(8);
        idb.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&SNAPLEN.to_le_bytes());
        w.block(1, &idb, &[])?;
        Ok(w)
    }

    fn block(&mut self, kind: u32, fixed: &[u8], data: &[u8]) -> io::Result<()> {
        let pad = (4 - data.len() % 4) % 4;
        let len = (12 + fixed.len() + data.len() + pad) as u32;
        self.out.write_all(&kind.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(fixed)?;
        self.out.write_all(data)?;
        self.out.write_all(&[0; 3][..pad])?;
        self.out.write_all(&len.to_le_bytes())?;
        self.bytes += u64::from(len);
        Ok(())
    }

    fn packet(&mut self, ts_ns: u64, frame: &[u8]) -> io::Result<()> {
        let us = ts_ns / 1000;
        let len = frame.len() as u32;
        let mut epb = [0u8; 20];
        epb[4..8].copy_from_slice(&((us >> 32) as u32).to_le_bytes());
        epb[8..12].copy_from_slice(&(us as u32).to_le_bytes());
        epb[12..16].copy_from_slice(&len.to_le_bytes());
        epb[16..20].copy_from_slice(&len.to_le_bytes());
        self.block(6, &epb, frame)
    }

    fn finish(mut self) -> io::Result<u64> {
        self.out.flush()?;
        Ok(self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_traffic() {
        let frames = |seed| {
            let mut g = Generator::new(seed);
            let mut frame = Vec::new();
            let mut all = Vec::new();
            g.open_flow();
            while g.next_packet(0, &mut frame) {
                all.push(frame.clone());
            }
            all
        };
        assert_eq!(frames(7), frames(7));
    }

    #[test]
    fn tcp_flows_open_with_a_handshake_and_acknowledge_data() {
        let mut g = Generator::new(1);
        let mut frame = Vec::new();
        loop {
            g.active.clear();
            g.open_flow();
            if g.active[0].tcp {
                break;
            }
        }
        // (flags, payload bytes) of each packet.
        let mut packets = Vec::new();
        while g.next_packet(0, &mut frame) {
            let l4 = if frame[12] == 0x08 { 14 + 20 } else { 14 + 40 };
            packets.push((frame[l4 + 13], frame.len() - l4 - 20));
        }
        let flags: Vec<u8> = packets.iter().map(|p| p.0).collect();
        assert_eq!(flags[..3], [TCP_SYN, TCP_SYN | TCP_ACK, TCP_ACK]);
        let data = packets.iter().filter(|p| p.1 > 0).count();
        let pure_acks = packets[3..].iter().filter(|p| *p == &(TCP_ACK, 0)).count();
        assert!(data > 1 && pure_acks >= data / 2 - 1, "{packets:?}");
    }
}
