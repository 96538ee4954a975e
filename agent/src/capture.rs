//! Reading pcap and pcapng captures: frames with their link type and a nanosecond timestamp.

use std::{fs::File, io, path::Path};

use pcap_parser::{Block, Linktype, PcapBlockOwned, PcapError, create_reader};

/// Read buffer; also the largest block we can hold.
const BUFFER: usize = 1 << 20;
/// Files smaller than [`BUFFER`] get a buffer their size (at least this), grown to `BUFFER` on
/// the first block that does not fit: zeroing a megabyte per file was most of the time spent on
/// a directory of small captures.
const MIN_BUFFER: usize = 16 << 10;

/// Link layers we can find an IP header behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Ethernet,
    /// Raw IPv4/IPv6 (LINKTYPE_RAW, IPV4, IPV6).
    Ip,
    /// Linux cooked capture v1 (16-byte header) and v2 (20-byte header).
    Sll,
    Sll2,
    /// BSD loopback: a 4-byte address family, host order (NULL) or network order (LOOP).
    Null,
    Loop,
    /// Cisco HDLC: address, control, then an ethertype.
    CiscoHdlc,
    /// PPP in HDLC-like framing (address, control, 2-byte protocol) or bare protocol field.
    Ppp,
    Unsupported(i32),
}

impl Link {
    fn from_linktype(l: Linktype) -> Link {
        match l {
            Linktype::ETHERNET => Link::Ethernet,
            Linktype::RAW | Linktype::IPV4 | Linktype::IPV6 => Link::Ip,
            Linktype::LINUX_SLL => Link::Sll,
            Linktype::LINUX_SLL2 => Link::Sll2,
            Linktype::NULL => Link::Null,
            Linktype::LOOP => Link::Loop,
            // LINKTYPE_PPP, LINKTYPE_PPP_HDLC.
            Linktype(9) | Linktype(50) => Link::Ppp,
            // LINKTYPE_C_HDLC.
            Linktype(104) => Link::CiscoHdlc,
            other => Link::Unsupported(other.0),
        }
    }
}

/// One captured frame.
pub struct Frame<'a> {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    pub link: Link,
    pub data: &'a [u8],
    /// The packet's length on the wire (`data` may be cut short by the snap length).
    pub wire_len: u32,
    /// Bytes of the file read up to the end of this frame (for progress).
    pub file_pos: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path} is empty")]
    Empty { path: String },
    #[error("{path} is not a pcap or pcapng capture")]
    NotACapture { path: String },
    #[error("{path} is corrupt at packet {packet}: {reason}")]
    Corrupt {
        path: String,
        packet: u64,
        reason: String,
    },
}

/// What reading a capture found.
#[derive(Debug, Default, Clone, Copy)]
pub struct CaptureStats {
    pub frames: u64,
    /// Frames on link types we cannot parse.
    pub unsupported: u64,
    /// The file ended inside a block: everything before it was read.
    pub truncated: bool,
}

/// Per-interface decoding state (pcapng can mix link types and timestamp resolutions).
#[derive(Clone, Copy)]
struct Interface {
    link: Link,
    /// Timestamp units per second.
    units_per_sec: u64,
    /// Nanoseconds per unit when that is a whole number (micro- and nanosecond resolutions,
    /// nearly every capture), else 0: converting then needs no division per packet.
    ns_per_unit: u64,
    offset_sec: i64,
}

const NS_PER_SEC: u64 = 1_000_000_000;

impl Interface {
    fn new(link: Link, units_per_sec: u64, offset_sec: i64) -> Interface {
        let units_per_sec = units_per_sec.max(1);
        Interface {
            link,
            units_per_sec,
            ns_per_unit: if NS_PER_SEC.is_multiple_of(units_per_sec) {
                NS_PER_SEC / units_per_sec
            } else {
                0
            },
            offset_sec,
        }
    }

    /// `ticks` of this interface's unit in nanoseconds, exactly.
    fn ticks_ns(&self, ticks: u64) -> u128 {
        if self.ns_per_unit != 0 {
            u128::from(ticks) * u128::from(self.ns_per_unit)
        } else {
            u128::from(ticks) * u128::from(NS_PER_SEC) / u128::from(self.units_per_sec)
        }
    }
}

/// Calls `on_frame` for every packet of the capture at `path`, in file order.
pub fn read_capture(
    path: &Path,
    mut on_frame: impl FnMut(&Frame<'_>),
) -> Result<CaptureStats, CaptureError> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|source| CaptureError::Open {
        path: name.clone(),
        source,
    })?;
    let size = file
        .metadata()
        .ok()
        .filter(std::fs::Metadata::is_file)
        .and_then(|m| usize::try_from(m.len()).ok());
    if let Some(stats) = size.and_then(|len| read_mapped(&file, len, &name, &mut on_frame)) {
        return stats;
    }
    read_buffered(file, size, name, on_frame)
}

/// Every capture format, through pcap_parser's reader and a buffer.
fn read_buffered(
    file: File,
    size: Option<usize>,
    name: String,
    mut on_frame: impl FnMut(&Frame<'_>),
) -> Result<CaptureStats, CaptureError> {
    let capacity = size.map_or(BUFFER, |len| len.clamp(MIN_BUFFER, BUFFER));
    let mut reader = match create_reader(capacity, file) {
        Ok(r) => r,
        Err(PcapError::Eof) => return Err(CaptureError::Empty { path: name }),
        Err(PcapError::HeaderNotRecognized) => {
            return Err(CaptureError::NotACapture { path: name });
        }
        Err(e) => {
            return Err(CaptureError::Corrupt {
                path: name,
                packet: 0,
                reason: format!("{e:?}"),
            });
        }
    };
    let mut stats = CaptureStats::default();
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut legacy: Option<Interface> = None;
    let mut last_ts = 0u64;
    let mut file_pos = 0u64;
    let mut stalled = false;
    loop {
        match reader.next() {
            Ok((offset, block)) => {
                stalled = false;
                file_pos += offset as u64;
                let frame = match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        let units_per_sec = if h.is_nanosecond_precision() {
                            1_000_000_000
                        } else {
                            1_000_000
                        };
                        legacy = Some(Interface::new(
                            Link::from_linktype(h.network),
                            units_per_sec,
                            0,
                        ));
                        None
                    }
                    PcapBlockOwned::Legacy(b) => legacy.map(|i| {
                        let ts = u64::from(b.ts_sec) * 1_000_000_000
                            + u64::from(b.ts_usec) * i.ns_per_unit;
                        (i.link, ts, b.data, b.origlen)
                    }),
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                        interfaces.clear();
                        None
                    }
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        interfaces.push(Interface::new(
                            Link::from_linktype(idb.linktype),
                            ts_units(idb.if_tsresol),
                            idb.if_tsoffset,
                        ));
                        None
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        interfaces.get(epb.if_id as usize).map(|i| {
                            let ticks = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                            let ns = i.ticks_ns(ticks);
                            let ts = (ns as i128 + i128::from(i.offset_sec) * 1_000_000_000).max(0)
                                as u64;
                            // EPB data is padded to 32 bits; caplen says how much is real.
                            let len = (epb.caplen as usize).min(epb.data.len());
                            (i.link, ts, &epb.data[..len], epb.origlen)
                        })
                    }
                    // Simple packets carry no timestamp: they belong to interface 0, "now".
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => interfaces
                        .first()
                        .map(|i| (i.link, last_ts, spb.data, spb.origlen)),
                    PcapBlockOwned::NG(_) => None,
                };
                if let Some((link, ts_ns, data, wire_len)) = frame {
                    stats.frames += 1;
                    last_ts = ts_ns.max(last_ts);
                    if let Link::Unsupported(_) = link {
                        stats.unsupported += 1;
                    } else {
                        on_frame(&Frame {
                            ts_ns,
                            link,
                            data,
                            wire_len,
                            file_pos,
                        });
                    }
                }
                // Not `consume`, which moves the unread half of the buffer to its front each
                // time the first half is read: `refill` moves the unread tail when the buffer
                // runs dry, and then it is less than one block.
                reader.consume_noshift(offset);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => {
                // Twice in a row without progress: the last block is cut short.
                if stalled {
                    stats.truncated = true;
                    break;
                }
                stalled = true;
                reader.refill().map_err(|e| CaptureError::Corrupt {
                    path: name.clone(),
                    packet: stats.frames,
                    reason: format!("{e:?}"),
                })?;
            }
            Err(PcapError::UnexpectedEof) => {
                stats.truncated = true;
                break;
            }
            Err(PcapError::BufferTooSmall) => {
                if !reader.grow(BUFFER) {
                    return Err(CaptureError::Corrupt {
                        path: name,
                        packet: stats.frames,
                        reason: format!("a block larger than {BUFFER} bytes"),
                    });
                }
                // A small file's buffer, grown for a block that did not fit; the next try
                // refills it, or finds the block larger than even this.
                stalled = false;
            }
            Err(e) => {
                return Err(CaptureError::Corrupt {
                    path: name,
                    packet: stats.frames,
                    reason: format!("{e:?}"),
                });
            }
        }
    }
    Ok(stats)
}

/// A classic pcap file (the usual micro- or nanosecond magic, either byte order) read where
/// the page cache holds it, through a read-only memory map, rather than copied into a buffer
/// first: on a cached capture the copy was a quarter of `analyze`'s time. Frames, stats and
/// errors are those of the reader path; `None` for anything else (pcapng, the "modified"
/// format, a file that cannot be mapped), which goes through the reader.
fn read_mapped(
    file: &File,
    len: usize,
    name: &str,
    on_frame: &mut impl FnMut(&Frame<'_>),
) -> Option<Result<CaptureStats, CaptureError>> {
    const HEADER: usize = 24;
    const RECORD: usize = 16;
    if len < HEADER {
        return None;
    }
    let map = Mapped::new(file, len)?;
    let bytes = map.bytes();
    let magic = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let (big_endian, ns_per_unit) = match magic {
        0xa1b2_c3d4 => (false, 1000),
        0xa1b2_3c4d => (false, 1),
        0xd4c3_b2a1 => (true, 1000),
        0x4d3c_b2a1 => (true, 1),
        _ => return None,
    };
    let word = |at: usize| {
        let w = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        if big_endian {
            u32::from_be_bytes(w)
        } else {
            u32::from_le_bytes(w)
        }
    };
    let link = Link::from_linktype(Linktype(word(20) as i32));
    let mut stats = CaptureStats::default();
    let mut at = HEADER;
    while at < len {
        if len - at < RECORD {
            stats.truncated = true;
            break;
        }
        let caplen = word(at + 8) as usize;
        if RECORD + caplen > BUFFER {
            return Some(Err(CaptureError::Corrupt {
                path: name.to_owned(),
                packet: stats.frames,
                reason: format!("a block larger than {BUFFER} bytes"),
            }));
        }
        let end = at + RECORD + caplen;
        if end > len {
            stats.truncated = true;
            break;
        }
        stats.frames += 1;
        if let Link::Unsupported(_) = link {
            stats.unsupported += 1;
        } else {
            on_frame(&Frame {
                ts_ns: u64::from(word(at)) * NS_PER_SEC + u64::from(word(at + 4)) * ns_per_unit,
                link,
                data: &bytes[at + RECORD..end],
                wire_len: word(at + 12),
                file_pos: end as u64,
            });
        }
        at = end;
    }
    Some(Ok(stats))
}

/// A file mapped read-only, unmapped on drop.
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    fn new(file: &File, len: usize) -> Option<Mapped> {
        use std::os::fd::AsRawFd as _;
        // SAFETY: a fresh private read-only mapping of `len` bytes of an open file; nothing
        // else refers to it. A file truncated by another process while it is read would fault
        // (SIGBUS) where read(2) would come up short: captures being written only grow.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        // SAFETY: advice on the mapping just made; failure is harmless.
        unsafe { libc::madvise(ptr, len, libc::MADV_SEQUENTIAL) };
        Some(Mapped { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; no slice of it outlives `self`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// pcapng `if_tsresol`: high bit clear, 10^-n seconds; set, 2^-n.
fn ts_units(tsresol: u8) -> u64 {
    let n = u32::from(tsresol & 0x7f);
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(n)
    } else {
        1u64.checked_shl(n)
    }
    .unwrap_or(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A legacy pcap (Ethernet) whose one record claims `claimed` bytes and holds 100.
    fn cut_capture(name: &str, claimed: u32) -> std::path::PathBuf {
        let mut b = Vec::new();
        for word in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 262_144, 1] {
            b.extend_from_slice(&word.to_le_bytes());
        }
        for word in [1_700_000_000u32, 0, claimed, claimed] {
            b.extend_from_slice(&word.to_le_bytes());
        }
        b.extend_from_slice(&[0u8; 100]);
        let path = std::env::temp_dir().join(format!(
            "sealwatch-capture-{}-{name}.pcap",
            std::process::id()
        ));
        std::fs::write(&path, b).ok();
        path
    }

    #[test]
    fn a_block_larger_than_a_small_files_buffer_is_a_cut_not_an_error() {
        // Larger than the file, so larger than its first buffer: the buffer grows and the
        // capture reads as cut short, as with the full-size buffer.
        let path = cut_capture("cut", 30_000);
        let stats = read_capture(&path, |_| {});
        std::fs::remove_file(&path).ok();
        let stats = stats.map_err(|e| e.to_string());
        assert!(
            stats.as_ref().is_ok_and(|s| s.truncated && s.frames == 0),
            "{stats:?}"
        );
    }

    #[test]
    fn a_block_larger_than_the_largest_buffer_is_corrupt() {
        let path = cut_capture("huge", 2 << 20);
        let result = read_capture(&path, |_| {});
        std::fs::remove_file(&path).ok();
        let message = result.map_err(|e| e.to_string()).err().unwrap_or_default();
        assert!(message.contains("a block larger than"), "{message}");
    }

    #[test]
    fn mapped_pcaps_read_as_the_reader_reads_them() {
        // Both byte orders, both resolutions; two frames (one cut by the snap length) and a
        // record cut short at the end.
        for (magic, big_endian) in [
            (0xa1b2_c3d4u32, false),
            (0xa1b2_3c4d, false),
            (0xa1b2_c3d4, true),
            (0xa1b2_3c4d, true),
        ] {
            let word = |w: u32| {
                if big_endian {
                    w.to_be_bytes()
                } else {
                    w.to_le_bytes()
                }
            };
            let mut b = Vec::new();
            for w in [magic, 0x0004_0002, 0, 0, 262_144, 1] {
                b.extend_from_slice(&word(w));
            }
            for (ts, usec, len, orig) in [
                (1_700_000_000u32, 999_999u32, 60u32, 60u32),
                (1_700_000_001, 5, 42, 1500),
            ] {
                for w in [ts, usec, len, orig] {
                    b.extend_from_slice(&word(w));
                }
                b.extend((0..len).map(|i| i as u8));
            }
            b.extend_from_slice(&word(1_700_000_002)[..3]);
            let path = std::env::temp_dir().join(format!(
                "sealwatch-capture-{}-{magic:x}-{big_endian}.pcap",
                std::process::id()
            ));
            std::fs::write(&path, &b).ok();
            let frames = |mapped: bool| {
                let mut seen = Vec::new();
                let mut on_frame = |f: &Frame<'_>| {
                    seen.push((f.ts_ns, f.link, f.data.to_vec(), f.wire_len, f.file_pos));
                };
                let file = File::open(&path).ok();
                let stats = file.and_then(|file| {
                    if mapped {
                        read_mapped(&file, b.len(), "x", &mut on_frame)?.ok()
                    } else {
                        read_buffered(file, Some(b.len()), "x".into(), &mut on_frame).ok()
                    }
                });
                (stats.map(|s| (s.frames, s.unsupported, s.truncated)), seen)
            };
            let (mapped, buffered) = (frames(true), frames(false));
            std::fs::remove_file(&path).ok();
            assert_eq!(mapped, buffered, "{magic:x} big-endian {big_endian}");
            assert_eq!(mapped.0, Some((2, 0, true)));
        }
    }

    #[test]
    fn timestamp_resolutions() {
        assert_eq!(ts_units(6), 1_000_000);
        assert_eq!(ts_units(9), 1_000_000_000);
        assert_eq!(ts_units(0x80 | 10), 1024);
        let ns = |units, ticks| Interface::new(Link::Ethernet, units, 0).ticks_ns(ticks);
        assert_eq!(
            ns(1_000_000, 1_700_000_000_123_456),
            1_700_000_000_123_456_000
        );
        assert_eq!(ns(1_000_000_000, u64::MAX), u128::from(u64::MAX));
        assert_eq!(ns(1024, 1536), 1_500_000_000);
        assert_eq!(ns(1024, 1), 976_562);
    }
}
