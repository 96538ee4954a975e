//! `sealwatch analyze`: the live pipeline run over capture files. Frames go through the shared
//! parser and the kernel's classification rules (`common::flow`), into a user-space flow table
//! and the same [`FlowTracker`] that `run` uses, so a capture yields the events the agent would
//! have printed watching that traffic.

use std::{
    collections::BTreeMap,
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use sealwatch_common::{
    CLASSIFY_WINDOW, DEFAULT_SAMPLE_BYTES, Encryption, MAX_SAMPLE, Verdict, classify_payload,
    event::{FlowNotice, KIND_CLOSE, KIND_VERDICT},
    flow::{
        FLOW_CHECK_HELLO, FLOW_CLOSING, FLOW_PREAMBLE, FLOW_VERDICT, FlowState, PayloadStep,
        classified_bits, classify_context, client_side, conclude, payload_step, resample_bit,
        resample_due, tcp_flag_bits,
    },
    net::{ETH_P_IP, ETH_P_IPV6, IPPROTO_GRE, IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_UDP},
    parse::{Parsed, Skip, parse_ethernet, parse_l3},
    stats::{STAT_COUNT, Stat},
};
use tracing::warn;

use crate::{
    capture::{CaptureError, Frame, Link, read_capture},
    cli::OutputFormat,
    event::Event,
    events::Sample,
    flows::{EndOfInput, FlowMap, FlowTracker, Timeouts},
    output::Output,
    progress::Progress,
    sinks::is_record,
};

const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;

/// Closing flows are checked once per second of capture time (the table sweep follows
/// `Timeouts::sweep_interval_ns`).
const TICK_NS: u64 = 1_000_000_000;
const CLOSE_LINGER_NS: u64 = 1_000_000_000;

/// Events are written in batches; a reader at the other end of a pipe still gets them at least
/// this often. Also how often the progress line is redrawn.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Pending events are written out at this size even before [`FLUSH_EVERY`] has passed: a
/// bound on memory when a stretch of capture ends thousands of flows at once.
const MAX_PENDING_BYTES: usize = 1 << 20;
/// Frames between looks at the clock: a clock read per frame would cost more than the flush.
const FRAMES_PER_CLOCK_READ: u32 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("cannot write events: {0}")]
    Output(#[source] std::io::Error),
}

/// Flow tracking over captured frames, following the kernel programs step by step.
pub struct Engine {
    stats: [u64; STAT_COUNT as usize],
    /// Payload bytes sampled per flow side, as the kernel's `SAMPLE_BYTES`.
    sample_budget: u32,
}

impl Default for Engine {
    fn default() -> Engine {
        Engine {
            stats: [0; STAT_COUNT as usize],
            sample_budget: u32::from(DEFAULT_SAMPLE_BYTES),
        }
    }
}

impl Engine {
    pub fn stat(&self, s: Stat) -> u64 {
        self.stats[s as usize]
    }

    fn count(&mut self, s: Stat) {
        self.stats[s as usize] += 1;
    }

    /// Accounts one frame to its flow; pushes the notices the kernel would have sent, and
    /// returns its payload sample and re-sample (at most one of each), lending the frame's
    /// bytes.
    pub fn frame<'f>(
        &mut self,
        frame: &Frame<'f>,
        table: &mut FlowMap<FlowState>,
        notices: &mut Vec<FlowNotice>,
    ) -> Samples<'f> {
        self.count(Stat::Packets);
        let mut p = Parsed::default();
        let parsed = parse_frame(frame, &mut p).and_then(|()| decapsulate(frame, &mut p));
        match parsed {
            Ok(()) => return track(frame, &p, table, notices, self.sample_budget),
            Err(Skip::NonIp) => self.count(Stat::NonIp),
            Err(Skip::Fragment) => self.count(Stat::Fragments),
            Err(Skip::OtherTransport) => self.count(Stat::OtherTransport),
            Err(Skip::Malformed) => self.count(Stat::Malformed),
        }
        Samples::default()
    }
}

/// What the kernel would have sent up of one frame's payload.
#[derive(Default)]
pub struct Samples<'f> {
    pub sample: Option<Sample<&'f [u8]>>,
    pub resample: Option<Sample<&'f [u8]>>,
}

fn parse_frame(frame: &Frame<'_>, out: &mut Parsed) -> Result<(), Skip> {
    let data = frame.data;
    let (start, end, len) = (
        data.as_ptr() as usize,
        data.as_ptr() as usize + data.len(),
        data.len() as u32,
    );
    let be16 = |at: usize| {
        data.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or(Skip::Malformed)
    };
    let (ethertype, l3) = match frame.link {
        // SAFETY: [start, end) is `data`, borrowed for the whole call.
        Link::Ethernet => return unsafe { parse_ethernet(start, end, len, out) },
        Link::Ip => match data.first().map(|b| b >> 4) {
            Some(4) => (ETH_P_IP, 0),
            Some(6) => (ETH_P_IPV6, 0),
            _ => return Err(Skip::NonIp),
        },
        Link::Sll => (be16(14)?, 16),
        Link::Sll2 => (be16(0)?, 20),
        Link::Null | Link::Loop => {
            let af = data.get(..4).ok_or(Skip::Malformed)?;
            // The family is in the capturing host's byte order (NULL) or network order (LOOP):
            // accept either. AF_INET is 2 everywhere; AF_INET6 is 10, 24, 28 or 30 by OS.
            let v = if af[0] != 0 { af[0] } else { af[3] };
            match v {
                2 => (ETH_P_IP, 4),
                10 | 24 | 28 | 30 => (ETH_P_IPV6, 4),
                _ => return Err(Skip::NonIp),
            }
        }
        Link::CiscoHdlc => (be16(2)?, 4),
        Link::Ppp => {
            // Address and control bytes (0xff 0x03) are optional; then the PPP protocol.
            let at = if data.starts_with(&[0xff, 0x03]) {
                2
            } else {
                0
            };
            match be16(at)? {
                PPP_IPV4 => (ETH_P_IP, at + 2),
                PPP_IPV6 => (ETH_P_IPV6, at + 2),
                _ => return Err(Skip::NonIp),
            }
        }
        Link::Unsupported(_) => return Err(Skip::NonIp),
    };
    // SAFETY: as above.
    unsafe { parse_l3(ethertype, start, end, l3, len, out) }
}

/// Tunnels carrying whole packets (VXLAN, GRE, IP in IP): captures taken on an underlay
/// network show the overlay's flows inside, and those are what matter, so the inner packet is
/// parsed instead, one level deep. The agent on a node sees them decapsulated on the pod
/// interfaces already.
fn decapsulate(frame: &Frame<'_>, p: &mut Parsed) -> Result<(), Skip> {
    let data = frame.data;
    let start = data.as_ptr() as usize;
    let (end, len) = (start + data.len(), data.len() as u32);
    let off = p.payload_off as usize;
    let inner = |at: usize| data.get(at..).unwrap_or(&[]);
    // The outer headers' lengths may point past the captured bytes (an IHL or GRE flags
    // larger than the frame): then nothing is left, and the inner parse finds it malformed.
    let inner_len = |at: usize| len.saturating_sub(at as u32);
    match p.key.proto {
        // VXLAN (RFC 7348): flags 0x08 (VNI valid), 24 reserved bits zero, VNI, 8 reserved
        // bits; then an Ethernet frame.
        IPPROTO_UDP if vxlan(inner(off)) => {
            let mut q = Parsed::default();
            // SAFETY: [start, end) is `data`, borrowed for the whole call.
            unsafe {
                parse_ethernet(
                    start + off + VXLAN_HDR_LEN,
                    end,
                    len - (off + VXLAN_HDR_LEN) as u32,
                    &mut q,
                )
            }?;
            *p = shift(q, off + VXLAN_HDR_LEN);
        }
        // GRE (RFC 2784/2890) without routing: flags, protocol type, optional checksum, key
        // and sequence words.
        IPPROTO_GRE => {
            let g = inner(off);
            let (Some(&flags), Some(&version)) = (g.first(), g.get(1)) else {
                return Ok(());
            };
            if version & 0x07 != 0 || flags & 0x40 != 0 {
                return Ok(());
            }
            let ethertype = u16::from_be_bytes([
                g.get(2).copied().unwrap_or(0),
                g.get(3).copied().unwrap_or(0),
            ]);
            let hdr = 4 + 4 * ((flags >> 7) + ((flags >> 5) & 1) + ((flags >> 4) & 1)) as usize;
            let at = off + hdr;
            let mut q = Parsed::default();
            // SAFETY: as above.
            match ethertype {
                ETH_P_IP | ETH_P_IPV6 => {
                    unsafe { parse_l3(ethertype, start + at, end, 0, inner_len(at), &mut q) }?
                }
                ETH_P_TEB => unsafe { parse_ethernet(start + at, end, inner_len(at), &mut q) }?,
                _ => return Ok(()),
            }
            *p = shift(q, at);
        }
        IPPROTO_IPIP | IPPROTO_IPV6 => {
            let ethertype = if p.key.proto == IPPROTO_IPIP {
                ETH_P_IP
            } else {
                ETH_P_IPV6
            };
            let mut q = Parsed::default();
            // SAFETY: as above.
            unsafe { parse_l3(ethertype, start + off, end, 0, inner_len(off), &mut q) }?;
            *p = shift(q, off);
        }
        _ => {}
    }
    Ok(())
}

const VXLAN_HDR_LEN: usize = 8;
const ETH_P_TEB: u16 = 0x6558;

fn vxlan(h: &[u8]) -> bool {
    matches!(h, [0x08, 0, 0, 0, _, _, _, 0, ..]) && h.len() >= VXLAN_HDR_LEN + 14
}

/// An inner packet parsed from `at` bytes into the frame: its payload offset counts from the
/// frame's start.
fn shift(mut q: Parsed, at: usize) -> Parsed {
    q.payload_off += at as u32;
    q
}

/// The kernel's `track`, single-threaded: same counters, flags and classification steps.
fn track<'f>(
    frame: &Frame<'f>,
    p: &Parsed,
    table: &mut FlowMap<FlowState>,
    notices: &mut Vec<FlowNotice>,
    sample_budget: u32,
) -> Samples<'f> {
    let mut out = Samples::default();
    let now = frame.ts_ns;
    let side = usize::from(p.side & 1);
    let state = table.entry(p.key).or_insert_with(|| FlowState {
        first_ns: now,
        client_side: client_side(p.side, p.tcp_flags, p.sport, p.dport),
        ..FlowState::default()
    });
    let sent_before = state.packets[side];
    state.packets[side] += 1;
    state.bytes[side] += u64::from(p.ip_len);
    state.last_ns = state.last_ns.max(now);
    if let Some(tcp) = p.tcp_flags {
        let bits = tcp_flag_bits(p.side, tcp);
        let new = bits & !state.flags;
        state.flags |= bits;
        if new & FLOW_CLOSING != 0 {
            notices.push(notice(KIND_CLOSE, p, state, now));
        }
    }
    let resample_now = resample_due(sent_before, sent_before + 1);
    if p.payload_len == 0 {
        if resample_now {
            state.flags |= resample_bit(p.side);
        }
        return out;
    }
    let owed = state.flags & resample_bit(p.side) != 0;
    if state.flags & FLOW_VERDICT == 0 {
        classify(frame, p, state, notices);
    } else if state.flags & (FLOW_CHECK_HELLO | FLOW_PREAMBLE) == 0
        && state.encryption == Encryption::Encrypted as u8
        && (resample_now || owed)
    {
        state.flags &= !resample_bit(p.side);
        // The kernel's `resample`: the window's worth of this packet's first bytes.
        out.resample = Some(Sample {
            key: p.key,
            side: p.side,
            ifindex: 0,
            seq: p.seq,
            offset: 0,
            ts_ns: now,
            payload_len: p.payload_len,
            data: payload(frame, p, CLASSIFY_WINDOW),
        });
    }
    // The kernel's `sample`: whole packets until the side's budget is spent, each cut to
    // MAX_SAMPLE bytes.
    let done = u32::from(state.sampled[side]);
    if done < sample_budget {
        let n = p.payload_len.min(sample_budget - done);
        state.sampled[side] = (done + n) as u16;
        let data = payload(frame, p, (n as usize).min(MAX_SAMPLE));
        out.sample = Some(Sample {
            key: p.key,
            side: p.side,
            ifindex: 0,
            seq: p.seq,
            offset: done,
            ts_ns: now,
            payload_len: p.payload_len,
            data,
        });
    }
    out
}

/// Up to `n` of the packet's payload bytes, as captured.
fn payload<'a>(frame: &Frame<'a>, p: &Parsed, n: usize) -> &'a [u8] {
    frame
        .data
        .get(p.payload_off as usize..)
        .map(|rest| &rest[..n.min(rest.len())])
        .unwrap_or(&[])
}

/// The kernel's `classify`: the first payload of each side, until a verdict.
fn classify(frame: &Frame<'_>, p: &Parsed, state: &mut FlowState, notices: &mut Vec<FlowNotice>) {
    let now = frame.ts_ns;
    let side = usize::from(p.side & 1);
    let flags = state.flags;
    let sent = state.payload_packets[side].saturating_add(1);
    state.payload_packets[side] = sent;
    let verdict = match payload_step(flags, p.side, sent) {
        PayloadStep::Wait => None,
        PayloadStep::GiveUp => Some(Verdict::UNKNOWN),
        PayloadStep::Classify => {
            let (mine, theirs) = classified_bits(p.side);
            state.flags |= mine;
            // The kernel's window exactly: the first bytes, zero-padded to CLASSIFY_WINDOW.
            let off = p.payload_off as usize;
            let n = (p.payload_len as usize).min(CLASSIFY_WINDOW);
            let mut window = [0u8; CLASSIFY_WINDOW];
            if let Some(bytes) = frame.data.get(off..off + n) {
                window[..n].copy_from_slice(bytes);
            }
            let ctx = classify_context(flags, p.key.proto, p.payload_len);
            conclude(classify_payload(&window, &ctx), flags & theirs != 0)
        }
    };
    if let Some(v) = verdict {
        state.protocol = v.protocol as u8;
        state.encryption = v.encryption as u8;
        state.verdict_ns = now;
        state.flags |= FLOW_VERDICT;
        notices.push(notice(KIND_VERDICT, p, state, now));
    }
}

fn notice(kind: u8, p: &Parsed, state: &FlowState, ts_ns: u64) -> FlowNotice {
    FlowNotice {
        kind,
        hook: 0,
        side: p.side,
        protocol: state.protocol,
        encryption: state.encryption,
        client_side: state.client_side,
        action: 0,
        rule: 0,
        ifindex: 0,
        _pad2: 0,
        ts_ns,
        key: p.key,
    }
}

/// Flow verdict counts per protocol, for the text-mode summary.
#[derive(Debug, Default)]
pub struct Summary {
    pub captures: u64,
    pub frames: u64,
    /// protocol -> (plaintext, encrypted, unknown)
    pub by_protocol: BTreeMap<&'static str, [u64; 3]>,
}

impl Summary {
    fn add(&mut self, e: &Event) {
        if let Event::Flow(f) = e
            && f.event == "flow"
        {
            let slot = match f.encryption {
                "plaintext" => 0,
                "encrypted" => 1,
                _ => 2,
            };
            self.by_protocol.entry(f.protocol).or_default()[slot] += 1;
        }
    }

    pub fn render(&self) -> String {
        let flows: u64 = self.by_protocol.values().flatten().sum();
        let mut s = format!(
            "summary: {flows} flows, {} frames, {} capture(s)\n  {:<10} {:>7} {:>10} {:>10} {:>8}\n",
            self.frames, self.captures, "protocol", "flows", "plaintext", "encrypted", "unknown"
        );
        for (proto, [p, e, u]) in &self.by_protocol {
            s.push_str(&format!(
                "  {proto:<10} {:>7} {p:>10} {e:>10} {u:>8}\n",
                p + e + u
            ));
        }
        s
    }
}

/// What a bare read of captures found.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ReadCounts {
    pub frames: u64,
    /// Size of the capture files.
    pub bytes: u64,
    /// Captured bytes of the frames handed on.
    pub frame_bytes: u64,
}

/// Reads every frame of the captures and does nothing with it: the floor under [`analyze`],
/// which `cargo xtask bench` reports analysis against, so its numbers mean the same on a fast
/// and a slow machine.
pub fn read_only(files: &[PathBuf]) -> Result<ReadCounts, CaptureError> {
    let mut counts = ReadCounts::default();
    for path in files {
        let stats = read_capture(path, |frame| counts.frame_bytes += frame.data.len() as u64)?;
        counts.frames += stats.frames;
        counts.bytes += std::fs::metadata(path).map_or(0, |m| m.len());
    }
    Ok(counts)
}

/// A wall-clock period checked from a per-frame loop, reading the clock only every
/// [`FRAMES_PER_CLOCK_READ`] frames.
struct Pace {
    every: Duration,
    next: Instant,
    frames: u32,
}

impl Pace {
    fn new(every: Duration) -> Pace {
        Pace {
            every,
            next: Instant::now() + every,
            frames: 0,
        }
    }

    /// Called once per frame: true when the period has passed since it last was.
    fn due(&mut self) -> bool {
        self.frames += 1;
        if self.frames < FRAMES_PER_CLOCK_READ {
            return false;
        }
        self.frames = 0;
        let now = Instant::now();
        if now < self.next {
            return false;
        }
        self.next = now + self.every;
        true
    }
}

/// Analyses each capture in turn, writing events as it goes.
pub fn analyze<W: Write>(
    files: &[PathBuf],
    idle_timeout: Duration,
    format: OutputFormat,
    policy: std::sync::Arc<crate::policy::Policy>,
    mut flow_log: Option<crate::flowlog::FlowLog>,
    writer: W,
) -> Result<Summary, AnalyzeError> {
    let mut out = Output::batched(format, writer);
    let mut pace = Pace::new(FLUSH_EVERY);
    let sizes: Vec<u64> = files
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .collect();
    let mut progress = Progress::on_stderr(sizes.iter().sum());
    // Bytes of the captures before the current one.
    let mut read_before = 0u64;
    let mut summary = Summary::default();
    let timeouts = Timeouts {
        idle_ns: idle_timeout.as_nanos().try_into().unwrap_or(u64::MAX),
        linger_ns: CLOSE_LINGER_NS,
    };
    for (path, size) in files.iter().zip(&sizes) {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let mut engine = Engine::default();
        let mut tracker = FlowTracker::offline(FlowMap::default(), timeouts, name)
            .with_sample_budget(u64::from(engine.sample_budget))
            .with_policy(policy.clone());
        if let Some(log) = &flow_log {
            tracker = tracker.with_records(log.interval());
        }
        let (mut notices, mut events) = (Vec::new(), Vec::new());
        let (mut next_tick, mut next_sweep) = (0u64, 0u64);
        let mut write_error = None;
        let stats = read_capture(path, |frame| {
            let payload = engine.frame(frame, tracker.table_mut(), &mut notices);
            // Live, the kernel queues a packet's notice before its sample. Iterated and
            // cleared rather than drained: most frames bring none, and a `Drain` costs a call.
            for n in &notices {
                tracker.on_notice(n, frame.ts_ns, &mut events);
            }
            notices.clear();
            if let Some(s) = &payload.sample {
                tracker.on_sample(s, &mut events);
            }
            if let Some(s) = &payload.resample {
                tracker.on_resample(s, &mut events);
            }
            tracker.flush_pending(frame.ts_ns, &mut events);
            if frame.ts_ns >= next_tick {
                tracker.end_closed(frame.ts_ns, &mut events);
                next_tick = frame.ts_ns.saturating_add(TICK_NS);
            }
            if frame.ts_ns >= next_sweep {
                tracker.sweep(frame.ts_ns, &mut events);
                next_sweep = frame.ts_ns.saturating_add(timeouts.sweep_interval_ns());
            }
            for e in &events {
                if let Some(log) = &mut flow_log {
                    log.write(e);
                }
                if is_record(e) {
                    continue;
                }
                summary.add(e);
                if let Err(err) = out.write(e) {
                    write_error.get_or_insert(err);
                }
            }
            events.clear();
            if pace.due() || out.pending() >= MAX_PENDING_BYTES {
                // Events and the progress line may share a terminal: the line goes before
                // events are written, and comes back after.
                progress.clear();
                if let Err(err) = out.flush() {
                    write_error.get_or_insert(err);
                }
                progress.draw(
                    read_before + frame.file_pos,
                    summary.frames + engine.stat(Stat::Packets),
                );
            }
        })?;
        progress.clear();
        read_before += size;
        tracker.finish_all(EndOfInput::CaptureEnd, &mut events);
        for e in events.drain(..) {
            if let Some(log) = &mut flow_log {
                log.write(&e);
            }
            if is_record(&e) {
                continue;
            }
            summary.add(&e);
            out.write(&e).map_err(AnalyzeError::Output)?;
            if out.pending() >= MAX_PENDING_BYTES {
                out.flush().map_err(AnalyzeError::Output)?;
            }
        }
        out.flush().map_err(AnalyzeError::Output)?;
        if let Some(log) = &mut flow_log {
            log.flush();
        }
        if let Some(err) = write_error {
            return Err(AnalyzeError::Output(err));
        }
        if stats.truncated {
            warn!(capture = %path.display(), frames = stats.frames, "capture ends inside a packet; analysed everything before it");
        }
        if stats.unsupported > 0 {
            warn!(capture = %path.display(), frames = stats.unsupported, "frames on link types sealwatch cannot parse were skipped");
        }
        if engine.stat(Stat::Malformed) > 0 {
            warn!(capture = %path.display(), frames = engine.stat(Stat::Malformed), "malformed frames skipped");
        }
        summary.captures += 1;
        summary.frames += stats.frames;
    }
    Ok(summary)
}
