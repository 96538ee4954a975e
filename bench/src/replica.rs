//! A large capture made of the labelled corpus, for comparing `sealwatch analyze` with other
//! analyzers on real traffic: the corpus is a few tens of thousands of packets, too few to time
//! anything against process start-up, so its Ethernet frames are written over and over into one
//! classic pcap until it holds enough packets.
//!
//! Each copy (a replica) must look like new traffic, not the same flows again: an analyzer that
//! saw a flow before would skip its classification, and the copies would measure a flow-table
//! lookup instead of the classifier. So replica `k` XORs `k` into two bytes of every IP address
//! (IPv4: the second and third octets; IPv6: the third and fourth bytes), source and destination
//! alike, which keeps the two directions of a flow matching and keeps multicast, link-local and
//! private ranges in their range. Replica 0 is the corpus unchanged. An XOR can turn one corpus
//! address into another (10.10.x.x and 10.11.x.x both occur), so a handful of flows in a
//! replica have the 5-tuple of a flow in another one; with thousands per replica that changes
//! nothing measurable, and it is simpler than a table of addresses in use.
//!
//! What is left as it was, on purpose:
//! - TCP and UDP checksums: their pseudo-header covers the rewritten addresses, so they are
//!   stale in every replica but the first. Analyzers do not check them (captures taken with
//!   checksum offload carry wrong ones anyway); the IPv4 header checksum is fixed, since some
//!   dissectors do check that one.
//! - Frames other than IPv4/IPv6 behind Ethernet and 802.1Q/802.1ad tags (ARP, MPLS, PPPoE, ...),
//!   and the inner headers of tunnels: only the outer addresses change.
//! - Files and frames of other link types (raw IP, Linux cooked, loopback, ...): they are left
//!   out rather than given a made-up Ethernet header, so every frame is as it was captured.
//!
//! Timestamps: each file keeps its own packet spacing, files follow one another within a
//! replica, and replicas follow one another, so time never goes backwards in the output (a
//! packet earlier than one before it in its file is moved up to it). Some corpus files are
//! several captures glued together, years apart (or from 1970): a pause longer than
//! [`MAX_PAUSE_NS`] is shortened to it, else a few replicas would run past what a classic pcap's
//! 32-bit seconds can hold.

use std::{
    fs::File,
    io::{BufWriter, Write as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use sealwatch::capture::{Link, read_capture};
use serde_json::{Value, json};

/// The output's first packet: 2026-01-05T09:00:00Z, as the synthetic capture.
const START_NS: u64 = 1_767_603_600_000_000_000;
/// Quiet time between two files of a replica, and between two replicas: longer than any idle
/// timeout would make every flow end between files; one second keeps the capture short while
/// still separating them.
const GAP_NS: u64 = 1_000_000_000;
/// Longest pause kept between two packets of a file: longer than the idle timeouts of the
/// analyzers compared (sealwatch's default is a minute), so the flows before it still end
/// before the packets after it, as they did in the capture.
const MAX_PAUSE_NS: u64 = 10 * 60 * 1_000_000_000;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// 802.1Q, 802.1ad (QinQ outer tag) and the older 0x9100 outer tag: 4 bytes each, then the
/// next ethertype.
const ETHERTYPE_VLAN_TAGS: [u16; 3] = [0x8100, 0x88a8, 0x9100];
const ETHERNET_HEADER: usize = 14;
const VLAN_TAG: usize = 4;
/// Offsets in the IP headers of the source address (the destination follows it).
const IPV4_SRC: usize = 12;
const IPV4_CHECKSUM: usize = 10;
const IPV6_SRC: usize = 8;
/// Which bytes of an address take the replica number (high byte first).
const IPV4_REWRITTEN: usize = 1;
const IPV6_REWRITTEN: usize = 2;

/// What was written.
#[derive(Debug, Default)]
pub struct Replica {
    pub path: PathBuf,
    /// Packets in the output (whole replicas, so at least what was asked for).
    pub packets: u64,
    /// Size of the output file.
    pub bytes: u64,
    pub replicas: u64,
    pub packets_per_replica: u64,
    /// Per replica: frames whose addresses were rewritten, and frames copied unchanged.
    pub ipv4: u64,
    pub ipv6: u64,
    pub not_ip: u64,
    /// Corpus files with at least one Ethernet frame.
    pub files_used: usize,
    /// Corpus files with none, and why.
    pub files_skipped: Vec<(PathBuf, String)>,
    /// Frames of other link types in files that were used (pcapng can mix interfaces).
    pub frames_skipped: u64,
    /// Files that end inside a packet: the packets before the cut are used.
    pub files_truncated: usize,
}

impl Replica {
    pub fn to_json(&self) -> Value {
        json!({
            "path": self.path,
            "packets": self.packets,
            "bytes": self.bytes,
            "replicas": self.replicas,
            "packets_per_replica": self.packets_per_replica,
            "per_replica": { "ipv4": self.ipv4, "ipv6": self.ipv6, "not_ip": self.not_ip },
            "files_used": self.files_used,
            "files_skipped": self.files_skipped.iter().map(|(file, reason)| json!({
                "file": file.file_name().map(|n| n.to_string_lossy().into_owned()),
                "reason": reason,
            })).collect::<Vec<_>>(),
            "frames_skipped": self.frames_skipped,
            "files_truncated": self.files_truncated,
        })
    }
}

/// Writes the Ethernet frames of the captures in `corpus_dir` to `out` as one classic pcap
/// (little-endian, microsecond timestamps, LINKTYPE_ETHERNET), replicated until it holds at
/// least `min_packets` packets.
pub fn write(corpus_dir: &Path, out: &Path, min_packets: u64) -> anyhow::Result<Replica> {
    let mut replica = Replica {
        path: out.to_path_buf(),
        ..Replica::default()
    };
    let corpus = load(corpus_dir, &mut replica)?;
    if corpus.frames.is_empty() {
        bail!(
            "no Ethernet frames in the captures in {}",
            corpus_dir.display()
        );
    }
    for f in &corpus.frames {
        match f.ip {
            Ip::V4(_) => replica.ipv4 += 1,
            Ip::V6(_) => replica.ipv6 += 1,
            Ip::None => replica.not_ip += 1,
        }
    }
    replica.packets_per_replica = corpus.frames.len() as u64;
    replica.replicas = min_packets.div_ceil(replica.packets_per_replica).max(1);
    if replica.replicas > u64::from(u16::MAX) + 1 {
        bail!(
            "{min_packets} packets would take {} replicas of the corpus; the replica number has 16 bits",
            replica.replicas
        );
    }
    // The last frame's time plus a gap: where the next replica starts.
    let span = corpus.frames.last().map_or(0, |f| f.ts_ns) + GAP_NS;

    let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let snaplen = corpus
        .frames
        .iter()
        .map(|f| f.len)
        .max()
        .unwrap_or(0)
        .max(65_535);
    let mut header = Vec::with_capacity(24);
    for word in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, snaplen, 1] {
        header.extend_from_slice(&word.to_le_bytes());
    }
    w.write_all(&header)?;
    let mut frame = Vec::with_capacity(snaplen as usize);
    for k in 0..replica.replicas {
        let mask = k as u16;
        let base = START_NS + k * span;
        for f in &corpus.frames {
            frame.clear();
            frame.extend_from_slice(corpus.bytes(f));
            f.ip.rewrite(&mut frame, mask);
            let ts_ns = base + f.ts_ns;
            let (sec, usec) = (ts_ns / 1_000_000_000, ts_ns % 1_000_000_000 / 1_000);
            let sec = u32::try_from(sec).context("timestamp past 2106")?;
            let mut record = [0u8; 16];
            for (i, word) in [sec, usec as u32, f.len, f.orig_len]
                .into_iter()
                .enumerate()
            {
                record[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
            }
            w.write_all(&record)?;
            w.write_all(&frame)?;
            replica.packets += 1;
        }
    }
    w.flush()
        .with_context(|| format!("writing {}", out.display()))?;
    replica.bytes = std::fs::metadata(out)
        .with_context(|| format!("reading the size of {}", out.display()))?
        .len();
    Ok(replica)
}

/// One replica's frames, all in one buffer: two large allocations rather than one per frame.
struct Corpus {
    data: Vec<u8>,
    frames: Vec<StoredFrame>,
}

impl Corpus {
    fn bytes(&self, f: &StoredFrame) -> &[u8] {
        &self.data[f.start..f.start + f.len as usize]
    }
}

struct StoredFrame {
    /// Nanoseconds since the replica's start.
    ts_ns: u64,
    start: usize,
    len: u32,
    orig_len: u32,
    ip: Ip,
}

/// Where a frame's IP header starts, found once when the corpus is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ip {
    V4(usize),
    V6(usize),
    None,
}

impl Ip {
    /// The IP header behind Ethernet and any VLAN tags, when the frame holds its addresses.
    fn find(frame: &[u8]) -> Ip {
        let ethertype_at = |at: usize| {
            frame
                .get(at..at + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
        };
        let mut at = ETHERNET_HEADER - 2;
        let mut ethertype = ethertype_at(at);
        while ethertype.is_some_and(|t| ETHERTYPE_VLAN_TAGS.contains(&t)) {
            at += VLAN_TAG;
            ethertype = ethertype_at(at);
        }
        let l3 = at + 2;
        let version = frame.get(l3).map(|b| b >> 4);
        match (ethertype, version) {
            (Some(ETHERTYPE_IPV4), Some(4)) if frame.len() >= l3 + IPV4_SRC + 8 => Ip::V4(l3),
            (Some(ETHERTYPE_IPV6), Some(6)) if frame.len() >= l3 + IPV6_SRC + 32 => Ip::V6(l3),
            _ => Ip::None,
        }
    }

    /// XORs `mask` into both addresses; for IPv4, also updates the header checksum.
    fn rewrite(self, frame: &mut [u8], mask: u16) {
        if mask == 0 {
            return;
        }
        let [hi, lo] = mask.to_be_bytes();
        match self {
            Ip::V4(l3) => {
                let addrs = l3 + IPV4_SRC;
                // Words of the two addresses before the change, for the checksum update.
                let before = words(&frame[addrs..addrs + 8]);
                for addr in [addrs, addrs + 4] {
                    frame[addr + IPV4_REWRITTEN] ^= hi;
                    frame[addr + IPV4_REWRITTEN + 1] ^= lo;
                }
                let after = words(&frame[addrs..addrs + 8]);
                let at = l3 + IPV4_CHECKSUM;
                let old = u16::from_be_bytes([frame[at], frame[at + 1]]);
                let new = update_checksum(old, &before, &after);
                frame[at..at + 2].copy_from_slice(&new.to_be_bytes());
            }
            Ip::V6(l3) => {
                for addr in [l3 + IPV6_SRC, l3 + IPV6_SRC + 16] {
                    frame[addr + IPV6_REWRITTEN] ^= hi;
                    frame[addr + IPV6_REWRITTEN + 1] ^= lo;
                }
            }
            Ip::None => {}
        }
    }
}

fn words(bytes: &[u8]) -> [u16; 4] {
    let mut w = [0u16; 4];
    for (i, pair) in bytes.chunks_exact(2).take(4).enumerate() {
        w[i] = u16::from_be_bytes([pair[0], pair[1]]);
    }
    w
}

/// RFC 1624's incremental update, `HC' = ~(~HC + ~m + m')` for each changed word: unlike a
/// recomputation it needs none of the header beyond the changed words (a capture can be cut
/// inside IPv4 options), and a checksum that was wrong in the capture (offload) stays wrong.
fn update_checksum(checksum: u16, before: &[u16], after: &[u16]) -> u16 {
    let mut sum = u32::from(!checksum);
    for (&m, &m2) in before.iter().zip(after) {
        sum += u32::from(!m) + u32::from(m2);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Reads the Ethernet frames of every capture in `dir`, in file-name order, on one timeline.
fn load(dir: &Path, replica: &mut Replica) -> anyhow::Result<Corpus> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut corpus = Corpus {
        data: Vec::new(),
        frames: Vec::new(),
    };
    // Where the next file starts on the replica's timeline, and the last time written.
    let mut cursor = 0u64;
    for path in files {
        let before = corpus.frames.len();
        match read_file(&path, &mut corpus, cursor) {
            Ok(read) => {
                replica.frames_skipped += read.other_links;
                if read.truncated {
                    replica.files_truncated += 1;
                }
                if corpus.frames.len() == before {
                    let reason = match read.first_other_link {
                        Some(l) => format!("link type {l}, not Ethernet"),
                        None => "no packets".to_owned(),
                    };
                    replica.files_skipped.push((path, reason));
                } else {
                    replica.files_used += 1;
                    cursor = corpus.frames.last().map_or(cursor, |f| f.ts_ns) + GAP_NS;
                }
            }
            Err(e) => {
                // Drop what a half-read file added: a file is used whole or not at all.
                if let Some(first) = corpus.frames.get(before) {
                    corpus.data.truncate(first.start);
                }
                corpus.frames.truncate(before);
                replica.files_skipped.push((path, format!("{e:#}")));
            }
        }
    }
    Ok(corpus)
}

/// What reading one file found besides its Ethernet frames.
#[derive(Default)]
struct FileRead {
    other_links: u64,
    first_other_link: Option<String>,
    truncated: bool,
}

/// Appends the Ethernet frames of the capture at `path` to `corpus`, the first at `cursor`, the
/// others as far after it as they were after the first in the file, pauses shortened to
/// [`MAX_PAUSE_NS`]. Read by the agent's own capture reader, as `analyze` reads it.
fn read_file(path: &Path, corpus: &mut Corpus, cursor: u64) -> anyhow::Result<FileRead> {
    let mut read = FileRead::default();
    // The latest time in the file so far, and where it went on the replica's timeline.
    let mut latest: Option<u64> = None;
    let mut last = cursor;
    let mut too_large = false;
    let stats = read_capture(path, |frame| {
        if frame.link != Link::Ethernet {
            read.other_links += 1;
            read.first_other_link
                .get_or_insert_with(|| format!("{:?}", frame.link));
            return;
        }
        let before = latest.unwrap_or(frame.ts_ns);
        last += frame.ts_ns.saturating_sub(before).min(MAX_PAUSE_NS);
        latest = Some(frame.ts_ns.max(before));
        let Ok(len) = u32::try_from(frame.data.len()) else {
            too_large = true;
            return;
        };
        corpus.frames.push(StoredFrame {
            ts_ns: last,
            start: corpus.data.len(),
            len,
            orig_len: frame.wire_len.max(len),
            ip: Ip::find(frame.data),
        });
        corpus.data.extend_from_slice(frame.data);
    })?;
    if too_large {
        bail!("a frame over 4 GB");
    }
    // Frames of link types the reader does not know are counted, not handed over.
    read.other_links += stats.unsupported;
    if stats.unsupported > 0 {
        read.first_other_link
            .get_or_insert_with(|| "one sealwatch does not read".to_owned());
    }
    read.truncated = stats.truncated;
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 header's checksum, computed from scratch.
    fn ipv4_checksum(header: &[u8]) -> u16 {
        let mut sum = 0u32;
        for pair in header.chunks_exact(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    fn ethernet(tags: &[u16], ethertype: u16, l3: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        for &t in tags {
            f.extend_from_slice(&t.to_be_bytes());
            f.extend_from_slice(&[0x00, 0x64]);
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(l3);
        f
    }

    fn ipv4_header(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0];
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        let c = ipv4_checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    #[test]
    fn ipv4_behind_qinq_is_rewritten_with_a_valid_checksum() {
        let mut f = ethernet(
            &[0x88a8, 0x8100],
            ETHERTYPE_IPV4,
            &ipv4_header([192, 168, 1, 10], [10, 0, 0, 1]),
        );
        let ip = Ip::find(&f);
        assert_eq!(ip, Ip::V4(22));
        ip.rewrite(&mut f, 0x0102);
        let h = &f[22..42];
        assert_eq!(&h[12..16], &[192, 169, 3, 10]);
        assert_eq!(&h[16..20], &[10, 1, 2, 1]);
        assert_eq!(
            ipv4_checksum(h),
            0,
            "checksum over a valid header sums to zero"
        );
    }

    #[test]
    fn both_directions_of_a_flow_get_the_same_addresses() {
        let (a, b) = ([172, 16, 5, 4], [8, 8, 8, 8]);
        let mut there = ethernet(&[], ETHERTYPE_IPV4, &ipv4_header(a, b));
        let mut back = ethernet(&[], ETHERTYPE_IPV4, &ipv4_header(b, a));
        Ip::find(&there).rewrite(&mut there, 7);
        Ip::find(&back).rewrite(&mut back, 7);
        assert_eq!(there[26..30], back[30..34]);
        assert_eq!(there[30..34], back[26..30]);
    }

    #[test]
    fn ipv6_addresses_change_and_other_frames_do_not() {
        let mut l3 = vec![0x60, 0, 0, 0, 0, 0, 17, 64];
        l3.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        l3.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfb]);
        let mut f = ethernet(&[0x8100], ETHERTYPE_IPV6, &l3);
        Ip::find(&f).rewrite(&mut f, 5);
        assert_eq!(&f[18 + 8..18 + 12], &[0xfe, 0x80, 0, 5]);
        assert_eq!(&f[18 + 24..18 + 28], &[0xff, 0x02, 0, 5]);

        let arp = ethernet(&[], 0x0806, &[0; 28]);
        assert_eq!(Ip::find(&arp), Ip::None);
        // Cut before the destination address: nothing to rewrite consistently.
        let short = ethernet(
            &[],
            ETHERTYPE_IPV4,
            &ipv4_header([1, 2, 3, 4], [5, 6, 7, 8])[..18],
        );
        assert_eq!(Ip::find(&short), Ip::None);
    }

    #[test]
    fn a_wrong_checksum_stays_as_wrong() {
        let mut h = ipv4_header([10, 0, 0, 1], [10, 0, 0, 2]);
        h[10] ^= 0x55;
        let mut f = ethernet(&[], ETHERTYPE_IPV4, &h);
        let before = ipv4_checksum(&f[14..34]);
        Ip::find(&f).rewrite(&mut f, 0x00ff);
        assert_eq!(ipv4_checksum(&f[14..34]), before);
    }
}
