//! Turns kernel notices and the kernel flow table into `flow` and `flow.end` events.
//!
//! The kernel keeps the counters; user space keeps only which flows it has reported. Notices
//! make verdicts prompt; a periodic sweep of the table catches whatever a full ring buffer
//! lost (a verdict never announced, a close never seen), ends idle flows, and notices
//! evictions, so every flow with payload is reported once and ended once.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, hash_map::Entry},
};

use sealwatch_common::{
    Encryption, Protocol, Verdict,
    event::{FlowNotice, KIND_CLOSE, KIND_DROP, KIND_VERDICT},
    flow::{FLOW_CLOSING, FLOW_VERDICT, FlowKey, FlowState},
    net::{IPPROTO_TCP, TCP_RST},
    policy::{ACTION_DROP, ACTION_EXCLUDED, ACTION_NONE},
};
use tracing::{debug, warn};

use crate::{
    clock::{rfc3339, to_system_time},
    deep::{self, Findings, Settled},
    event::{Attribution, Endpoints, Event, FlowEnd, FlowEvent, RecordWindow},
    events::Sample,
    policy::{Action, Facts, Policy},
    programs::ifname,
    quiet::{QuietFlows, shrink},
    streams::Streams,
};

/// The hasher of user-space maps keyed by flow. `analyze` looks a flow up on every packet, and
/// SipHash (std's default) was a fifth of its time; foldhash is several times faster, and seeded
/// per process it still keeps crafted traffic from piling flows into one bucket.
pub type FlowHasher = foldhash::fast::RandomState;

/// A user-space map keyed by flow.
pub type FlowMap<V> = HashMap<FlowKey, V, FlowHasher>;

/// Read access to the kernel flow table (a trait so the tracker is testable without a kernel).
pub trait FlowTable {
    fn get(&self, key: &FlowKey) -> Option<FlowState>;
    fn remove(&mut self, key: &FlowKey);
    fn entries(&self) -> Vec<(FlowKey, FlowState)>;

    /// Fills `scan.batch` with the walk's next entries; false once the walk is over. Entries
    /// already walked may be removed meanwhile. By default, the whole table in one batch.
    fn scan(&self, scan: &mut Scan) -> bool {
        if scan.done {
            scan.batch.clear();
            return false;
        }
        scan.batch = self.entries();
        scan.done = true;
        !scan.batch.is_empty()
    }

    /// Entries the table holds before it evicts the least recently used; `None` when unknown,
    /// which counts as always close to evicting.
    fn capacity(&self) -> Option<usize> {
        None
    }
}

/// A walk through a flow table, batch by batch.
#[derive(Debug, Default)]
pub struct Scan {
    /// The entries of the current batch.
    pub batch: Vec<(FlowKey, FlowState)>,
    pub done: bool,
    /// Where the kernel's batched walk goes on (a hash bucket), and the buffers it fills.
    pub token: Option<u32>,
    pub keys: Vec<FlowKey>,
    pub values: Vec<FlowState>,
}

/// The flow table of offline analysis: plain user-space memory.
impl FlowTable for FlowMap<FlowState> {
    fn get(&self, key: &FlowKey) -> Option<FlowState> {
        HashMap::get(self, key).copied()
    }

    fn remove(&mut self, key: &FlowKey) {
        HashMap::remove(self, key);
    }

    /// In capture order (first packet, then key) rather than the map's: the sweep ends flows,
    /// and so writes their events, in this order, and the same capture should give the same
    /// output on every run.
    fn entries(&self) -> Vec<(FlowKey, FlowState)> {
        let mut all: Vec<(FlowKey, FlowState)> = self.iter().map(|(k, v)| (*k, *v)).collect();
        all.sort_unstable_by_key(|(k, s)| (s.first_ns, *k));
        all
    }

    /// User-space memory: it never evicts.
    fn capacity(&self) -> Option<usize> {
        Some(usize::MAX)
    }
}

/// Timing knobs, in nanoseconds of CLOCK_MONOTONIC.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// No packet for this long ends a flow.
    pub idle_ns: u64,
    /// After the first FIN/RST, wait this long for the last packets before reading totals.
    pub linger_ns: u64,
}

impl Timeouts {
    /// How often to sweep the flow table: a quarter of the idle timeout, between 1 and 15 s.
    /// A sweep visits every flow, so it should run no more often than idle flows need.
    pub fn sweep_interval_ns(&self) -> u64 {
        (self.idle_ns / 4).clamp(1_000_000_000, 15_000_000_000)
    }
}

/// What user space remembers of a flow that is not yet reported, or reported with more than
/// its table entry tells (TLS details, who is behind it, a close or a drop under way, flow-log
/// records). Other reported flows are only keys in [`QuietFlows`].
#[derive(Debug, Default)]
struct Tracked {
    reported: bool,
    /// The number of the last sweep that saw the flow in the table (or that was the latest
    /// when the flow was first tracked).
    visited: u8,
    /// Monotonic time the close was first noticed.
    closing_since: Option<u64>,
    /// The table entry as of the last sweep, for flows evicted before they ended; copied only
    /// while the table is full enough to evict (see [`FlowTracker::sweep`]).
    last_seen: Option<Box<FlowState>>,
    /// Each side's first bytes from the payload samples, kept until the flow is reported.
    streams: Option<Box<Streams>>,
    /// A verdict waiting for more bytes (the ServerHello, a STARTTLS upgrade, the other side's
    /// first payload), reported when they come or at the deadline (notice time + hold).
    pending: Option<(FlowNotice, u64)>,
    /// What was reported, for the flow's end (it may differ from the kernel's verdict).
    verdict: Option<Findings>,
    /// What the kernel's policy decided (`policy::ACTION_*`, and the exclusion's index).
    kernel: Kernel,
    /// Who is behind the flow, as named when it was reported.
    attribution: Option<Box<Attribution>>,
    /// What the flow's records counted so far (flow log).
    recorded: Recorded,
}

/// The totals a flow's last `flow.record` counted up to, and when its window ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Recorded {
    /// Window end of the last record; 0 before the first (which starts at the first packet).
    until_ns: u64,
    packets: [u64; 2],
    bytes: [u64; 2],
}

/// Names who is behind a flow's ends (live runs: the kernel recorded socket owners).
pub trait Attribute {
    /// `state` is the flow's table entry when it is still there.
    fn attribute(
        &mut self,
        key: &FlowKey,
        client_side: u8,
        state: Option<&FlowState>,
    ) -> Attribution;
    /// The flow ended: its key may come back as another connection.
    fn forget(&mut self, key: &FlowKey);
    /// `service` events for ports bound since the last call; false when it could not look
    /// yet (retry soon).
    fn services(&mut self, time: &str, out: &mut Vec<Event>) -> bool;
}

/// The kernel's decision on a flow, as its notices and table entry tell it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Kernel {
    action: u8,
    rule: u8,
}

impl Tracked {
    fn new(visited: u8) -> Tracked {
        Tracked {
            visited,
            ..Tracked::default()
        }
    }

    /// Whether the flow's report, end and records can be told from its table entry alone:
    /// `findings` (as reported on `n`) are the kernel's verdict and nothing more, nobody was
    /// named behind it, and nothing is under way (a close, a drop, flow-log records, totals
    /// copied for an eviction). The kernel never changes a verdict once it is set, nor takes
    /// an action back to none, so the entry says the same at the flow's end.
    fn quiet(&self, n: &FlowNotice, findings: &Findings) -> bool {
        let plain = findings.tls.is_none()
            && !findings.starttls
            && findings.protocol == Protocol::from_u8(n.protocol)
            && findings.encryption == Encryption::from_u8(n.encryption);
        plain
            && self.kernel.action != ACTION_DROP
            && self
                .attribution
                .as_deref()
                .is_none_or(|a| *a == Attribution::default())
            && self.closing_since.is_none()
            && self.last_seen.is_none()
            && self.pending.is_none()
            && self.recorded == Recorded::default()
    }
}

impl Kernel {
    fn of_notice(n: &FlowNotice) -> Kernel {
        Kernel {
            action: n.action,
            rule: n.rule,
        }
    }

    /// A drop is final, whatever was noticed before it.
    fn merge(self, later: Kernel) -> Kernel {
        if self.action == ACTION_DROP || later.action == ACTION_NONE {
            self
        } else {
            later
        }
    }
}

/// How long a verdict may wait for the bytes that settle it (a ServerHello, a STARTTLS
/// upgrade) before it is reported with what is known.
pub const HOLD_NS: u64 = 2_000_000_000;

/// Agent-side counters reported on exit.
#[derive(Debug, Default, Clone, Copy)]
pub struct TrackerStats {
    pub flows_reported: u64,
    pub flows_ended: u64,
    pub flows_evicted: u64,
    /// Of those, flows evicted before a sweep read their totals: reported, but with no
    /// `flow.end` (the table was too small for the burst of new flows).
    pub flows_evicted_unread: u64,
    pub verdicts_recovered: u64,
    pub samples: u64,
    pub sample_bytes: u64,
    /// Later packets of encrypted flows re-sampled, and flows they showed turned to plaintext.
    pub resamples: u64,
    pub plaintext_after_encryption: u64,
}

/// What flow timestamps count from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBase {
    /// CLOCK_MONOTONIC, the kernel programs' clock (`run`).
    Monotonic,
    /// The Unix epoch, as in capture files (`analyze`).
    Epoch,
}

pub struct FlowTracker<T> {
    table: T,
    flows: FlowMap<Tracked>,
    /// Reported flows their table entry tells all about.
    quiet: QuietFlows,
    /// Sweeps so far (wrapping): what `visited` marks are compared with.
    sweeps: u8,
    ifnames: HashMap<u32, String>,
    /// Reported as every flow's `interface` instead of the ifindex's name (the capture file).
    interface: Option<String>,
    time_base: TimeBase,
    timeouts: Timeouts,
    stats: TrackerStats,
    /// Held-back verdicts by deadline (entries whose flow was reported since are skipped).
    deadlines: BinaryHeap<Reverse<(u64, FlowKey)>>,
    /// Per-side sample size: a side that sent this much will send no more samples.
    sample_budget: u64,
    policy: std::sync::Arc<Policy>,
    /// Closing flows in the order their close was seen, so ending them does not scan every
    /// flow on every tick.
    closing: std::collections::VecDeque<(u64, FlowKey)>,
    /// Live kernel programs enforce the policy: `drop` is reported only for flows they dropped.
    /// Offline, `drop` says what enforce mode would do.
    kernel_enforces: bool,
    attribute: Option<Box<dyn Attribute>>,
    /// Aggregation interval of `flow.record`s; none when nobody reads them.
    record_every_ns: Option<u64>,
    /// Entries in the table at the last sweep.
    table_entries: usize,
    /// Verdicts reported from the table because their notice had not come (see
    /// [`LATE_NOTICE_SWEEPS`]), by key: the verdict's time and the sweep (`sweeps`) that
    /// reported it.
    recovered: FlowMap<(u64, u8)>,
    /// Their keys in the order they were recovered, to let them go.
    recovered_order: std::collections::VecDeque<(u8, FlowKey)>,
}

/// Sweeps for which a verdict recovered from the table is remembered. Its notice was not lost
/// if the ring reader was only behind (an agent stopped or starved for a while); it then comes
/// late, possibly after the flow idled out and was forgotten, and must not report the flow
/// again. Four sweeps are at least four seconds.
const LATE_NOTICE_SWEEPS: u8 = 4;

impl<T: FlowTable> FlowTracker<T> {
    pub fn new(table: T, timeouts: Timeouts) -> FlowTracker<T> {
        FlowTracker {
            table,
            flows: FlowMap::default(),
            quiet: QuietFlows::default(),
            sweeps: 0,
            ifnames: HashMap::new(),
            interface: None,
            time_base: TimeBase::Monotonic,
            timeouts,
            stats: TrackerStats::default(),
            deadlines: BinaryHeap::new(),
            recovered: FlowMap::default(),
            recovered_order: std::collections::VecDeque::new(),
            sample_budget: u64::from(sealwatch_common::DEFAULT_SAMPLE_BYTES),
            policy: std::sync::Arc::new(Policy::default()),
            closing: std::collections::VecDeque::new(),
            kernel_enforces: false,
            attribute: None,
            record_every_ns: None,
            table_entries: 0,
        }
    }

    /// Every reported flow also gets a `flow.record` per `interval` it carries traffic in
    /// (at the first sweep after it), and one when it ends: the flow log's records, whose
    /// counts add up to the flow's totals.
    pub fn with_records(mut self, interval: std::time::Duration) -> FlowTracker<T> {
        self.record_every_ns = Some(interval.as_nanos().try_into().unwrap_or(u64::MAX).max(1));
        self
    }

    /// Flow-table entries at the last sweep (its occupancy).
    pub fn table_entries(&self) -> usize {
        self.table_entries
    }

    /// Flow events name the processes, containers and pods behind their ends.
    pub fn with_attribution(mut self, attribute: Box<dyn Attribute>) -> FlowTracker<T> {
        self.attribute = Some(attribute);
        self
    }

    /// The flows come from kernel programs that enforce the policy (`run`).
    pub fn with_kernel_enforcement(mut self) -> FlowTracker<T> {
        self.kernel_enforces = true;
        self
    }

    /// For captures: epoch timestamps, and one name for the `interface` of every flow.
    pub fn offline(table: T, timeouts: Timeouts, interface: String) -> FlowTracker<T> {
        FlowTracker {
            interface: Some(interface),
            time_base: TimeBase::Epoch,
            ..FlowTracker::new(table, timeouts)
        }
    }

    /// The policy that decides each flow's action.
    pub fn with_policy(mut self, policy: std::sync::Arc<Policy>) -> FlowTracker<T> {
        self.policy = policy;
        self
    }

    /// Swaps the policy: flows reported from now on are decided by the new one; nothing about
    /// the flows being followed is lost.
    pub fn set_policy(&mut self, policy: std::sync::Arc<Policy>) {
        self.policy = policy;
    }

    /// The per-side sample size the kernel (or the offline engine) uses.
    pub fn with_sample_budget(mut self, bytes: u64) -> FlowTracker<T> {
        self.sample_budget = bytes;
        self
    }

    /// The service inventory's news (see [`Attribute::services`]); nothing without attribution.
    pub fn services(&mut self, time: &str, out: &mut Vec<Event>) -> bool {
        match &mut self.attribute {
            Some(a) => a.services(time, out),
            None => true,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn table_mut(&mut self) -> &mut T {
        &mut self.table
    }

    fn time(&self, ts_ns: u64) -> String {
        let t = match self.time_base {
            TimeBase::Monotonic => to_system_time(ts_ns),
            TimeBase::Epoch => std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ts_ns),
        };
        rfc3339(t)
    }

    pub fn stats(&self) -> TrackerStats {
        self.stats
    }

    pub fn on_notice(&mut self, n: &FlowNotice, now: u64, out: &mut Vec<Event>) {
        match n.kind {
            KIND_VERDICT => {
                if self.quiet.contains(&n.key) {
                    // Reported already: a duplicate.
                    return;
                }
                if let Some((verdict_ns, _)) = self.recovered.remove(&n.key)
                    && verdict_ns == n.ts_ns
                {
                    // The notice of a verdict already reported from the table, come late.
                    return;
                }
                let visited = self.sweeps;
                let tracked = self
                    .flows
                    .entry(n.key)
                    .or_insert_with(|| Tracked::new(visited));
                tracked.kernel = tracked.kernel.merge(Kernel::of_notice(n));
                if tracked.reported || tracked.pending.is_some() {
                    return;
                }
                if let (findings, Settled::Yes) = self.examine(&n.key, n) {
                    self.report_findings(n, findings, out);
                    return;
                }
                let deadline = n.ts_ns.saturating_add(HOLD_NS);
                if let Some(t) = self.flows.get_mut(&n.key) {
                    t.pending = Some((*n, deadline));
                }
                self.deadlines.push(Reverse((deadline, n.key)));
            }
            KIND_CLOSE => self.mark_closing(n.key, now),
            KIND_DROP => self.on_drop(n, out),
            other => warn!(kind = other, "unexpected notice kind"),
        }
    }

    /// Enforce mode started dropping a flow after its verdict (a weak ServerHello, a preamble
    /// that sent data instead of upgrading). A flow not reported yet carries the drop in its
    /// report, at once if its verdict was held; one already reported gets a `drop` event.
    fn on_drop(&mut self, n: &FlowNotice, out: &mut Vec<Event>) {
        let tracked = self.track(n.key);
        tracked.kernel = tracked.kernel.merge(Kernel::of_notice(n));
        if !tracked.reported {
            // A held verdict is settled: no more bytes of the flow get through to be sampled.
            if let Some((held, _)) = tracked.pending {
                self.report(&held, out);
            }
            return;
        }
        // A quiet flow was reported with the kernel's verdict, which the notice repeats.
        let findings = tracked.verdict.clone().unwrap_or_else(|| {
            Findings::plain(Verdict::new(
                Protocol::from_u8(n.protocol),
                Encryption::from_u8(n.encryption),
            ))
        });
        let kernel = tracked.kernel;
        let attribution = tracked.attribution.as_deref().cloned().unwrap_or_default();
        let mut event = self.flow_event(
            &n.key,
            n.client_side,
            &findings,
            kernel,
            (n.ifindex, n.ts_ns),
        );
        event.event = "drop";
        event.attribution = attribution;
        out.push(Event::Flow(Box::new(event)));
    }

    /// Payload samples feed deeper parsing (TLS details, STARTTLS, unnamed flows) until the
    /// flow is reported; a held verdict they settle is reported at once, unless the kernel is
    /// dropping the flow on the packet sampled (see [`FlowTracker::kernel_drop_expected`]).
    pub fn on_sample<D: AsRef<[u8]>>(&mut self, s: &Sample<D>, out: &mut Vec<Event>) {
        self.stats.samples += 1;
        self.stats.sample_bytes += s.data.as_ref().len() as u64;
        if self.quiet.contains(&s.key) {
            return;
        }
        let visited = self.sweeps;
        let tracked = self
            .flows
            .entry(s.key)
            .or_insert_with(|| Tracked::new(visited));
        if tracked.reported {
            return;
        }
        tracked
            .streams
            .get_or_insert_with(|| Box::new(Streams::new(s.key.proto == IPPROTO_TCP)))
            .add(s);
        if let Some((n, _)) = tracked.pending
            && let (mut findings, Settled::Yes) = self.examine(&s.key, &n)
        {
            self.read_handshake(&n, &mut findings);
            if !self.kernel_drop_expected(&n, &findings) {
                self.report_read(&n, findings, out);
            }
        }
    }

    /// A later packet of a flow judged encrypted, re-sampled by the kernel: if it shows
    /// plaintext, the flow is reported again as plaintext (`sealwatch.plaintext_after_encryption`)
    /// and ends as such. Once per flow; ignored before the flow's first report (its samples
    /// decide then) and for flows not reported as encrypted.
    pub fn on_resample<D: AsRef<[u8]>>(&mut self, s: &Sample<D>, out: &mut Vec<Event>) {
        self.stats.resamples += 1;
        // The kernel re-samples only flows its verdict calls encrypted: a quiet flow was
        // reported with that verdict; another reported flow with what deep parsing added.
        let encrypted = self.quiet.contains(&s.key)
            || self.flows.get(&s.key).is_some_and(|t| {
                t.reported
                    && t.verdict
                        .as_ref()
                        .is_none_or(|f| f.encryption == Encryption::Encrypted)
            });
        if !encrypted {
            return;
        }
        let Some(plain) = deep::plaintext_mid_flow(s.data.as_ref(), s.key.proto, s.payload_len)
        else {
            return;
        };
        self.stats.plaintext_after_encryption += 1;
        let mut findings = Findings::plain(plain);
        findings.plaintext_after_encryption = true;
        let state = self.table.get(&s.key);
        let tracked = self.track(s.key);
        if let Some(st) = &state {
            tracked.kernel = tracked.kernel.merge(Kernel {
                action: st.action,
                rule: st.rule,
            });
        }
        let kernel = tracked.kernel;
        let attribution = tracked.attribution.as_deref().cloned();
        tracked.verdict = Some(findings.clone());
        let client_side = state.map_or(sealwatch_common::flow::CLIENT_UNKNOWN, |st| st.client_side);
        let mut event =
            self.flow_event(&s.key, client_side, &findings, kernel, (s.ifindex, s.ts_ns));
        event.attribution = attribution.unwrap_or_default();
        out.push(Event::Flow(Box::new(event)));
    }

    /// Whether the kernel is about to drop a flow whose held verdict this sample settled: the
    /// policy forbids what the bytes show (a ServerHello below the minimum version, a preamble
    /// that sent data) and the kernel enforces it, but no drop was noticed yet. The kernel
    /// drops on the very packet sampled, and its drop notice follows the sample in the ring:
    /// the report waits for it (or for the deadline), so it does not say `alert` for a flow
    /// that was dropped.
    fn kernel_drop_expected(&mut self, n: &FlowNotice, findings: &Findings) -> bool {
        if !self.kernel_enforces {
            return false;
        }
        let kernel = self.flows.get(&n.key).map_or(Kernel::of_notice(n), |t| {
            t.kernel.merge(Kernel::of_notice(n))
        });
        if kernel.action == ACTION_DROP || kernel.action == ACTION_EXCLUDED {
            return false;
        }
        let (_, decision) = self.draft_event(&n.key, n.client_side, findings, (n.ifindex, n.ts_ns));
        decision.action == Action::Drop
    }

    /// Reports held verdicts whose deadline has passed. Inline: `analyze` calls it for every
    /// packet, and almost always none is due.
    #[inline]
    pub fn flush_pending(&mut self, now: u64, out: &mut Vec<Event>) {
        if self
            .deadlines
            .peek()
            .is_some_and(|Reverse((deadline, _))| *deadline <= now)
        {
            self.report_due(now, out);
        }
    }

    fn report_due(&mut self, now: u64, out: &mut Vec<Event>) {
        while let Some(&Reverse((deadline, key))) = self.deadlines.peek() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            let held = self
                .flows
                .get(&key)
                .and_then(|t| t.pending)
                .filter(|(_, d)| *d == deadline);
            if let Some((n, _)) = held {
                self.report(&n, out);
            }
        }
    }

    /// Deep parsing of what the flow's samples hold so far.
    fn examine(&self, key: &FlowKey, n: &FlowNotice) -> (Findings, Settled) {
        let kernel = Verdict::new(
            Protocol::from_u8(n.protocol),
            Encryption::from_u8(n.encryption),
        );
        let empty = Streams::default();
        let streams = self
            .flows
            .get(key)
            .and_then(|t| t.streams.as_deref())
            .unwrap_or(&empty);
        let client = Endpoints::client_index(n.client_side);
        deep::examine(key.proto, kernel, streams, client, self.sample_budget)
    }

    fn report(&mut self, n: &FlowNotice, out: &mut Vec<Event>) {
        let (findings, _) = self.examine(&n.key, n);
        self.report_findings(n, findings, out);
    }

    /// Reports a flow with what deep parsing found (already examined by the caller).
    fn report_findings(&mut self, n: &FlowNotice, mut findings: Findings, out: &mut Vec<Event>) {
        self.read_handshake(n, &mut findings);
        self.report_read(n, findings, out);
    }

    fn read_handshake(&self, n: &FlowNotice, findings: &mut Findings) {
        if let Some(streams) = self.flows.get(&n.key).and_then(|t| t.streams.as_deref()) {
            findings.read_handshake(streams, Endpoints::client_index(n.client_side));
        }
    }

    /// [`FlowTracker::report_findings`] once the handshake is read.
    fn report_read(&mut self, n: &FlowNotice, findings: Findings, out: &mut Vec<Event>) {
        let attribution = match &mut self.attribute {
            Some(a) => Some(a.attribute(&n.key, n.client_side, self.table.get(&n.key).as_ref())),
            None => None,
        };
        let tracked = self.track(n.key);
        tracked.attribution = attribution.clone().map(Box::new);
        tracked.kernel = tracked.kernel.merge(Kernel::of_notice(n));
        tracked.reported = true;
        tracked.pending = None;
        tracked.streams = None;
        let kernel = tracked.kernel;
        if tracked.quiet(n, &findings) {
            let visited = tracked.visited;
            self.flows.remove(&n.key);
            self.quiet.insert(&n.key, visited);
        } else {
            tracked.verdict = Some(findings.clone());
        }
        self.stats.flows_reported += 1;
        let mut event = self.flow_event(
            &n.key,
            n.client_side,
            &findings,
            kernel,
            (n.ifindex, n.ts_ns),
        );
        event.attribution = attribution.unwrap_or_default();
        out.push(Event::Flow(Box::new(event)));
    }

    /// Ends flows whose close has lingered long enough. Cheap: runs on every tick.
    pub fn end_closed(&mut self, now: u64, out: &mut Vec<Event>) {
        while let Some(&(since, key)) = self.closing.front() {
            if now.saturating_sub(since) < self.timeouts.linger_ns {
                break;
            }
            self.closing.pop_front();
            // Skip flows already ended another way (idle, evicted) since they closed.
            if self
                .flows
                .get(&key)
                .is_some_and(|t| t.closing_since == Some(since))
            {
                self.finish(&key, None, Reason::Closed, out);
            }
        }
    }

    /// Notes the first FIN/RST of a flow; it ends once the linger has passed.
    fn mark_closing(&mut self, key: FlowKey, now: u64) {
        let tracked = self.track(key);
        if tracked.closing_since.is_none() {
            tracked.closing_since = Some(now);
            // Times only grow (monotonic clock, capture order), so the queue stays sorted.
            self.closing.push_back((now, key));
        }
    }

    /// Walks the kernel table: reports verdicts whose notice was lost, ends idle flows, and
    /// ends flows the LRU evicted.
    ///
    /// Ending an evicted flow with its totals takes a copy of them made before the eviction.
    /// The table evicts only when it is full, so copies are made only while it is at least half
    /// full (at the last sweep): a million flows' copies would be most of the agent's memory.
    /// A table that fills its second half within one sweep interval is too small anyway.
    pub fn sweep(&mut self, now: u64, out: &mut Vec<Event>) {
        self.sweeps = self.sweeps.wrapping_add(1);
        // Entries go every sweep, long before the wrapping count comes round.
        while let Some(&(at, key)) = self.recovered_order.front() {
            if self.sweeps.wrapping_sub(at) < LATE_NOTICE_SWEEPS {
                break;
            }
            self.recovered_order.pop_front();
            if self.recovered.get(&key).is_some_and(|&(_, s)| s == at) {
                self.recovered.remove(&key);
            }
        }
        let visited = self.sweeps;
        let keep_totals = self
            .table
            .capacity()
            .is_none_or(|c| self.table_entries >= c / 2);
        let mut scan = Scan::default();
        let mut entries = 0;
        while self.table.scan(&mut scan) {
            for &(key, state) in &scan.batch {
                entries += 1;
                let noticed = self.quiet.visit(&key, visited)
                    || self.flows.get_mut(&key).is_some_and(|t| {
                        t.visited = visited;
                        // A verdict held back for more bytes (`pending`) is not lost: its
                        // deadline reports it.
                        t.reported || t.pending.is_some()
                    });
                // A verdict with no notice seen was lost to a full ring buffer.
                if state.flags & FLOW_VERDICT != 0 && !noticed {
                    self.stats.verdicts_recovered += 1;
                    self.recovered.insert(key, (state.verdict_ns, self.sweeps));
                    self.recovered_order.push_back((self.sweeps, key));
                    self.report_from_state(&key, &state, out);
                }
                if now.saturating_sub(state.last_ns) >= self.timeouts.idle_ns {
                    self.finish(&key, Some(state), Reason::Idle, out);
                    continue;
                }
                if state.flags & FLOW_CLOSING != 0 {
                    self.mark_closing(key, now);
                }
                self.record_due(&key, &state, now, out);
                if keep_totals && (self.quiet.contains(&key) || self.flows.contains_key(&key)) {
                    self.track(key).last_seen = Some(Box::new(state));
                }
            }
        }
        self.table_entries = entries;
        let mut evicted: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, t)| t.visited != visited)
            .map(|(k, _)| *k)
            .collect();
        // Not the map's order, which changes from run to run.
        evicted.sort_unstable();
        for key in evicted {
            self.finish(&key, None, Reason::Evicted, out);
        }
        // Quiet flows gone from the table were evicted with no totals copied to end them with.
        let lost = self.quiet.keep_visited(visited);
        if lost > 0 {
            debug!(
                flows = lost,
                "reported flows evicted before their totals were copied"
            );
        }
        shrink(&mut self.flows);
    }

    /// Ends every flow still open (the agent is stopping, or the capture ended), so no totals
    /// are lost.
    pub fn finish_all(&mut self, why: EndOfInput, out: &mut Vec<Event>) {
        let reason = match why {
            EndOfInput::AgentStop => Reason::AgentStop,
            EndOfInput::CaptureEnd => Reason::CaptureEnd,
        };
        let mut scan = Scan::default();
        while self.table.scan(&mut scan) {
            // Capture order: stable output for the same file.
            scan.batch.sort_by_key(|(_, s)| s.first_ns);
            for &(key, state) in &scan.batch {
                self.finish(&key, Some(state), reason, out);
            }
        }
        let mut rest: Vec<FlowKey> = self.flows.keys().copied().collect();
        rest.sort_unstable();
        rest.extend(self.quiet.drain());
        for key in rest {
            self.finish(&key, None, reason, out);
        }
    }

    fn finish(
        &mut self,
        key: &FlowKey,
        state: Option<FlowState>,
        reason: Reason,
        out: &mut Vec<Event>,
    ) {
        let state = state.or_else(|| self.table.get(key));

        let reason = match (reason, &state) {
            (Reason::Closed, None) | (Reason::Idle, None) => Reason::Evicted,
            _ => reason,
        };
        let last_seen = self
            .flows
            .get(key)
            .and_then(|t| t.last_seen.as_deref().copied());
        let Some(state) = state.or(last_seen) else {
            // Never saw its totals (a burst filled the table between two sweeps): the verdict
            // was told, its flow.end cannot be. Counted, so that it is not lost silently.
            debug!(?key, "flow gone before its totals were read");
            if self.forget(key).reported {
                self.stats.flows_evicted += 1;
                self.stats.flows_evicted_unread += 1;
            }
            return;
        };
        self.table.remove(key);
        // Payload but no verdict (one-way flows, a close before both sides spoke), or a verdict
        // still held back: report it now, judged from the first payloads we kept.
        let reported = self.quiet.contains(key) || self.flows.get(key).is_some_and(|t| t.reported);
        if !reported && state.payload_packets.iter().any(|&n| n > 0) {
            self.report_from_state(key, &state, out);
        }
        let mut tracked = self.forget(key);
        if let Some(a) = &mut self.attribute {
            a.forget(key);
        }
        tracked.kernel = tracked.kernel.merge(Kernel {
            action: state.action,
            rule: state.rule,
        });
        if !tracked.reported {
            return;
        }
        if reason == Reason::Evicted {
            self.stats.flows_evicted += 1;
        }
        self.stats.flows_ended += 1;
        let findings = tracked.verdict.unwrap_or_else(|| {
            let (protocol, encryption) = verdict_of(&state);
            Findings::plain(Verdict::new(protocol, encryption))
        });
        let mut event = self.flow_event(
            key,
            state.client_side,
            &findings,
            tracked.kernel,
            (state.ifindex, state.last_ns),
        );
        event.event = "flow.end";
        event.attribution = tracked.attribution.map(|a| *a).unwrap_or_default();
        let client = usize::from(Endpoints::client_index(state.client_side));
        let server = client ^ 1;
        event.end = Some(FlowEnd {
            reason: Some(reason.name(&state)),
            start: self.time(state.first_ns),
            duration_ms: state.last_ns.saturating_sub(state.first_ns) / 1_000_000,
            client_packets: state.packets[client],
            client_bytes: state.bytes[client],
            server_packets: state.packets[server],
            server_bytes: state.bytes[server],
        });
        let last = self
            .record_every_ns
            .map(|_| self.record_of(&event, &state, &tracked.recorded, state.last_ns, true));
        out.push(Event::Flow(Box::new(event)));
        out.extend(last.map(|r| Event::Flow(Box::new(r))));
    }

    /// A `flow.record` for a reported flow whose window has lasted the interval, if it carried
    /// traffic in it (an idle window is folded into the next).
    fn record_due(&mut self, key: &FlowKey, state: &FlowState, now: u64, out: &mut Vec<Event>) {
        let Some(every) = self.record_every_ns else {
            return;
        };
        // A quiet flow's first window: its record needs remembering from now on.
        if self.quiet.contains(key) && now.saturating_sub(state.first_ns) >= every {
            self.track(*key);
        }
        let Some(t) = self.flows.get(key) else {
            return;
        };
        let since = if t.recorded.until_ns == 0 {
            state.first_ns
        } else {
            t.recorded.until_ns
        };
        if !t.reported
            || now.saturating_sub(since) < every
            || (state.packets == t.recorded.packets && state.bytes == t.recorded.bytes)
        {
            return;
        }
        // A flow that was quiet was reported with the kernel's verdict.
        let findings = t.verdict.clone().unwrap_or_else(|| {
            let (protocol, encryption) = verdict_of(state);
            Findings::plain(Verdict::new(protocol, encryption))
        });
        let (kernel, attribution, recorded) =
            (t.kernel, t.attribution.as_deref().cloned(), t.recorded);
        let mut base = self.flow_event(
            key,
            state.client_side,
            &findings,
            kernel,
            (state.ifindex, state.last_ns),
        );
        base.attribution = attribution.unwrap_or_default();
        let record = self.record_of(&base, state, &recorded, now, false);
        if let Some(t) = self.flows.get_mut(key) {
            t.recorded = Recorded {
                until_ns: now,
                packets: state.packets,
                bytes: state.bytes,
            };
        }
        out.push(Event::Flow(Box::new(record)));
    }

    /// `base` (the flow's event) as the record of what `state` adds to `last`, in the window
    /// from `last` (or the flow's start) to `until`.
    fn record_of(
        &self,
        base: &FlowEvent,
        state: &FlowState,
        last: &Recorded,
        until: u64,
        ended: bool,
    ) -> FlowEvent {
        let client = usize::from(Endpoints::client_index(state.client_side));
        let server = client ^ 1;
        let since = if last.until_ns == 0 {
            state.first_ns
        } else {
            last.until_ns
        };
        let delta =
            |now: &[u64; 2], then: &[u64; 2], side: usize| now[side].saturating_sub(then[side]);
        let mut record = base.clone();
        record.event = "flow.record";
        record.time = self.time(until);
        record.end = Some(FlowEnd {
            reason: base.end.as_ref().and_then(|e| e.reason).filter(|_| ended),
            start: self.time(state.first_ns),
            duration_ms: until.saturating_sub(state.first_ns) / 1_000_000,
            client_packets: delta(&state.packets, &last.packets, client),
            client_bytes: delta(&state.bytes, &last.bytes, client),
            server_packets: delta(&state.packets, &last.packets, server),
            server_bytes: delta(&state.bytes, &last.bytes, server),
        });
        record.record = Some(RecordWindow {
            start: self.time(since),
            end: self.time(until),
            state: if ended { "ended" } else { "active" },
        });
        record
    }

    /// Drops what user space keeps of a flow (a stale deadline entry is skipped later).
    fn forget(&mut self, key: &FlowKey) -> Tracked {
        self.flows.remove(key).unwrap_or_else(|| Tracked {
            reported: self.quiet.remove(key),
            ..Tracked::default()
        })
    }

    /// The flow's record, made when it has none; a quiet flow comes back as reported.
    fn track(&mut self, key: FlowKey) -> &mut Tracked {
        match self.flows.entry(key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(Tracked {
                reported: self.quiet.remove(&key),
                ..Tracked::new(self.sweeps)
            }),
        }
    }

    fn report_from_state(&mut self, key: &FlowKey, state: &FlowState, out: &mut Vec<Event>) {
        let at = if state.verdict_ns != 0 {
            state.verdict_ns
        } else {
            state.last_ns
        };
        let (protocol, encryption) = verdict_of(state);
        let notice = FlowNotice {
            kind: KIND_VERDICT,
            hook: 0,
            side: 0,
            protocol: protocol as u8,
            encryption: encryption as u8,
            client_side: state.client_side,
            action: state.action,
            rule: state.rule,
            ifindex: state.ifindex,
            _pad2: 0,
            ts_ns: at,
            key: *key,
        };
        self.report(&notice, out);
    }

    fn flow_event(
        &mut self,
        key: &FlowKey,
        client_side: u8,
        findings: &Findings,
        kernel: Kernel,
        at: (u32, u64),
    ) -> FlowEvent {
        let (mut event, decision) = self.draft_event(key, client_side, findings, at);
        let action = match (decision.action, kernel.action) {
            (_, ACTION_DROP) => Action::Drop,
            // Process and pod exclusions are matched in the kernel (by cgroup) only.
            (Action::Excluded, _) => Action::Excluded,
            (_, ACTION_EXCLUDED) => {
                event.exclusion = self.policy.exclusion_name(usize::from(kernel.rule));
                Action::Excluded
            }
            // Forbidden, but the kernel let it through (north-south, a ServerHello it could not
            // read): say so as an alert, never as a drop that did not happen.
            (Action::Drop, _) if self.kernel_enforces => Action::Alert,
            (a, _) => a,
        };
        event.action = action.name();
        event.direction = if decision.east_west {
            "east-west"
        } else {
            "north-south"
        };
        if decision.excluded_by.is_some() {
            event.exclusion = decision.excluded_by;
        }
        // A version the handshake parser found fine but the policy's minimum does not.
        if let Some(reason) = decision.below_min_tls
            && !event.weak.iter().any(|w| w.starts_with("tls<"))
        {
            event.weak.push(reason);
        }
        event
    }

    /// A flow's event before its action, and the policy's decision on it.
    fn draft_event(
        &mut self,
        key: &FlowKey,
        client_side: u8,
        findings: &Findings,
        (ifindex, ts_ns): (u32, u64),
    ) -> (FlowEvent, crate::policy::Decision) {
        let time = self.time(ts_ns);
        let interface = match (&self.interface, self.ifnames.entry(ifindex)) {
            (Some(name), _) => name.clone(),
            (None, Entry::Occupied(e)) => e.get().clone(),
            (None, Entry::Vacant(e)) => e
                .insert(ifname(ifindex).unwrap_or_else(|| format!("if{ifindex}")))
                .clone(),
        };
        let mut event = FlowEvent::new(
            "flow",
            time,
            Endpoints::new(key, client_side),
            findings.protocol,
            findings.encryption,
            Action::Alert,
            interface,
        );
        event.starttls = findings.starttls.then_some(true);
        event.plaintext_after_encryption = findings.plaintext_after_encryption.then_some(true);
        if let Some(tls) = &findings.tls {
            event.set_tls(tls);
        }
        let e = &event.endpoints;
        let decision = self.policy.decide(&Facts {
            transport: e.transport,
            client: e.client_address,
            server: e.server_address,
            server_port: e.server_port,
            protocol: findings.protocol,
            encryption: findings.encryption,
            fully_encrypted: event.fully_encrypted == Some(true),
            tls_version: event.tls_version,
            weak: !event.weak.is_empty(),
        });
        (event, decision)
    }
}

fn verdict_of(state: &FlowState) -> (Protocol, Encryption) {
    if state.flags & FLOW_VERDICT == 0 {
        return (Protocol::Unknown, Encryption::Unknown);
    }
    (
        Protocol::from_u8(state.protocol),
        Encryption::from_u8(state.encryption),
    )
}

/// Why every remaining flow is being ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndOfInput {
    AgentStop,
    CaptureEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Closed,
    Idle,
    Evicted,
    AgentStop,
    CaptureEnd,
}

impl Reason {
    fn name(self, state: &FlowState) -> &'static str {
        match self {
            Reason::Closed if (state.tcp_flags(0) | state.tcp_flags(1)) & TCP_RST != 0 => "rst",
            Reason::Closed => "fin",
            Reason::Idle => "idle",
            Reason::Evicted => "evicted",
            Reason::AgentStop => "agent_stop",
            Reason::CaptureEnd => "capture_end",
        }
    }
}

#[cfg(test)]
mod tests {
    use sealwatch_common::{
        event::HOOK_TC_INGRESS,
        flow::FLAGS_SIDE_SHIFT,
        net::{IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_FIN},
    };

    use super::*;

    #[derive(Default)]
    struct FakeTable(HashMap<FlowKey, FlowState>);

    impl FlowTable for FakeTable {
        fn get(&self, key: &FlowKey) -> Option<FlowState> {
            self.0.get(key).copied()
        }
        fn remove(&mut self, key: &FlowKey) {
            self.0.remove(key);
        }
        fn entries(&self) -> Vec<(FlowKey, FlowState)> {
            self.0.iter().map(|(k, v)| (*k, *v)).collect()
        }
    }

    const SEC: u64 = 1_000_000_000;
    const TIMEOUTS: Timeouts = Timeouts {
        idle_ns: 60 * SEC,
        linger_ns: SEC,
    };

    fn key(proto: u8) -> FlowKey {
        // Server 10.9.0.1 sorts first: side 0; the client is side 1.
        FlowKey::ipv4(proto, [10, 9, 0, 2], 41000, [10, 9, 0, 1], 80).0
    }

    fn http_state(now: u64) -> FlowState {
        FlowState {
            first_ns: now - 2 * SEC,
            last_ns: now,
            packets: [7, 5],
            bytes: [9000, 600],
            flags: FLOW_VERDICT,
            verdict_ns: now - SEC,
            protocol: Protocol::Http as u8,
            encryption: Encryption::Plaintext as u8,
            client_side: 1,
            payload_packets: [2, 1],
            ..FlowState::default()
        }
    }

    fn notice(kind: u8, key: FlowKey, s: &FlowState) -> FlowNotice {
        FlowNotice {
            kind,
            hook: HOOK_TC_INGRESS,
            side: 1,
            protocol: s.protocol,
            encryption: s.encryption,
            client_side: s.client_side,
            action: 0,
            rule: 0,
            ifindex: 1,
            _pad2: 0,
            ts_ns: s.verdict_ns,
            key,
        }
    }

    fn flows(events: &[Event]) -> Vec<&FlowEvent> {
        events
            .iter()
            .filter_map(|e| {
                if let Event::Flow(f) = e {
                    Some(&**f)
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn verdict_then_close_reports_once_and_ends_with_totals() {
        let now = 100 * SEC;
        let k = key(IPPROTO_TCP);
        let mut state = http_state(now);
        let mut t = FlowTracker::new(FakeTable::default(), TIMEOUTS);
        t.table.0.insert(k, state);
        let mut out = Vec::new();
        t.on_notice(&notice(KIND_VERDICT, k, &state), now, &mut out);
        t.on_notice(&notice(KIND_VERDICT, k, &state), now, &mut out);
        t.sweep(now, &mut out);
        assert!(
            flows(&out).is_empty(),
            "held for the request's bytes: the sweep leaves a held verdict alone"
        );
        t.flush_pending(now + HOLD_NS, &mut out);
        assert_eq!(
            flows(&out).len(),
            1,
            "one flow event despite a duplicate notice and a sweep"
        );
        let f = flows(&out)[0];
        assert_eq!(
            (f.event, f.protocol, f.encryption, f.action),
            ("flow", "http", "plaintext", "alert")
        );
        assert_eq!(f.endpoints.client_port, 41000);

        state.flags |= FLOW_CLOSING | (u64::from(TCP_FIN | TCP_ACK) << FLAGS_SIDE_SHIFT);
        t.table.0.insert(k, state);
        t.on_notice(&notice(KIND_CLOSE, k, &state), now, &mut out);
        t.end_closed(now + SEC / 2, &mut out);
        assert_eq!(flows(&out).len(), 1, "still lingering");
        t.end_closed(now + SEC, &mut out);
        let end = flows(&out)[1];
        assert_eq!(end.event, "flow.end");
        let totals = end
            .end
            .as_ref()
            .map(|e| (e.reason, e.client_bytes, e.server_bytes, e.client_packets));
        assert_eq!(totals, Some((Some("fin"), 600, 9000, 5)));
        assert!(t.table.0.is_empty(), "ended flows leave the kernel table");
        t.sweep(now + 2 * SEC, &mut out);
        t.finish_all(EndOfInput::AgentStop, &mut out);
        assert_eq!(out.len(), 2, "nothing more once ended");
    }

    #[test]
    fn records_count_each_interval_and_add_up_to_the_totals() {
        let now = 100 * SEC;
        let k = key(IPPROTO_TCP);
        let mut state = http_state(now);
        let mut t = FlowTracker::new(FakeTable::default(), TIMEOUTS)
            .with_records(std::time::Duration::from_secs(10));
        t.table.0.insert(k, state);
        let mut out = Vec::new();
        t.on_notice(&notice(KIND_VERDICT, k, &state), now, &mut out);
        t.flush_pending(now + HOLD_NS, &mut out);
        t.sweep(now + 5 * SEC, &mut out);
        assert_eq!(
            out.len(),
            1,
            "the verdict only: the first window is not over"
        );
        // 10 s after the flow's first packet: the first window's record.
        state.last_ns = now + 7 * SEC;
        state.packets = [10, 8];
        state.bytes = [12000, 900];
        t.table.0.insert(k, state);
        t.sweep(now + 8 * SEC, &mut out);
        // A window without traffic is folded into the next.
        t.sweep(now + 19 * SEC, &mut out);
        state.last_ns = now + 25 * SEC;
        state.packets = [14, 9];
        state.bytes = [20000, 1000];
        t.table.0.insert(k, state);
        t.sweep(now + 30 * SEC, &mut out);
        state.last_ns = now + 31 * SEC;
        state.packets = [15, 10];
        state.bytes = [20100, 1100];
        t.table.0.insert(k, state);
        t.finish_all(EndOfInput::AgentStop, &mut out);
        let records: Vec<_> = flows(&out)
            .into_iter()
            .filter(|f| f.event == "flow.record")
            .collect();
        let counts: Vec<_> = records
            .iter()
            .map(|r| {
                let c = r.end.as_ref().map(|e| {
                    (
                        e.client_bytes,
                        e.server_bytes,
                        e.client_packets,
                        e.server_packets,
                        e.reason,
                    )
                });
                let w = r.record.as_ref().map(|w| w.state);
                (c, w)
            })
            .collect();
        assert_eq!(
            counts,
            vec![
                (Some((900, 12000, 8, 10, None)), Some("active")),
                (Some((100, 8000, 1, 4, None)), Some("active")),
                (Some((100, 100, 1, 1, Some("agent_stop"))), Some("ended")),
            ]
        );
        let end = flows(&out)
            .into_iter()
            .find(|f| f.event == "flow.end")
            .and_then(|f| f.end.clone());
        let sum: u64 = records
            .iter()
            .filter_map(|r| r.end.as_ref())
            .map(|e| e.client_bytes + e.server_bytes)
            .sum();
        assert_eq!(Some(sum), end.map(|e| e.client_bytes + e.server_bytes));
        // Windows follow one another: each starts where the last ended.
        let windows: Vec<_> = records
            .iter()
            .filter_map(|r| r.record.as_ref().map(|w| (w.start.clone(), w.end.clone())))
            .collect();
        assert_eq!(windows[1].0, windows[0].1);
        assert_eq!(windows[2].0, windows[1].1);
        assert!(
            records
                .iter()
                .all(|r| r.protocol == "http" && r.action == "alert")
        );
    }

    #[test]
    fn sweep_recovers_a_lost_verdict_notice() {
        let now = 100 * SEC;
        let mut t = FlowTracker::new(FakeTable::default(), TIMEOUTS);
        t.table.0.insert(key(IPPROTO_TCP), http_state(now));
        let mut out = Vec::new();
        t.sweep(now, &mut out);
        assert_eq!(flows(&out).len(), 1);
        assert_eq!(t.stats().verdicts_recovered, 1);
    }

    /// A notice that was only late (the ring reader behind), not lost: it comes after the sweep
    /// reported the verdict from the table and the flow idled out. The flow is not reported
    /// again; a later flow on the same key, with a verdict of its own, is taken up.
    #[test]
    fn late_notice_of_a_recovered_verdict_reports_nothing_again() {
        let reports = |out: &[Event]| flows(out).iter().filter(|f| f.event == "flow").count();
        let now = 1000 * SEC;
        let k = key(IPPROTO_UDP);
        let state = FlowState {
            last_ns: now - 2 * TIMEOUTS.idle_ns,
            ..http_state(now - 2 * TIMEOUTS.idle_ns)
        };
        let mut t = FlowTracker::new(FakeTable::default(), TIMEOUTS);
        t.table.0.insert(k, state);
        let mut out = Vec::new();
        t.sweep(now, &mut out);
        assert_eq!(reports(&out), 1, "recovered and reported");
        assert!(t.table.0.is_empty(), "and ended: idle");
        out.clear();
        t.on_notice(&notice(KIND_VERDICT, k, &state), now, &mut out);
        assert_eq!(reports(&out), 0, "the late notice reports nothing");
        assert!(
            !t.flows.contains_key(&k),
            "nor holds the flow to report it later"
        );

        let again = http_state(now + SEC);
        t.table.0.insert(k, again);
        t.on_notice(&notice(KIND_VERDICT, k, &again), now + SEC, &mut out);
        assert!(
            t.flows
                .get(&k)
                .is_some_and(|f| f.reported || f.pending.is_some()),
            "a new flow on the key is taken up (reported, or held for its samples)"
        );
    }

    /// What a recovered verdict leaves behind goes after a few sweeps.
    #[test]
    fn recovered_verdicts_are_forgotten_after_a_few_sweeps() {
        let now = 100 * SEC;
        let mut t = FlowTracker::new(FakeTable::default(), TIMEOUTS);
        t.table.0.insert(key(IPPROTO_TCP), http_state(now));
        let mut out = Vec::new();
        t.sweep(now, &mut out);
        assert_eq!(t.recovered.len(), 1);
        for i in 1..=u64::from(LATE_NOTICE_SWEEPS) {
            t.sweep(now + i * SEC, &mut out);
        }
        assert!(t.recovered.is_empty() && t.recovered_order.is_empty());
    }

    #[test]
    fn idle_one_way_flow_without_verdict_is_reported_unknown_then_ended() {
        let now = 1000 * SEC;
        let k = key(IPPROTO_UDP);
        let state = FlowState {
            first_ns: now - 70 * SEC,
            last_ns: now - 61 * SEC,
            packets: [0, 1],
            bytes: [0, 120],
            client_side: 1,
            payload_packets: [0, 1],
            ..FlowState::default()
        };
        let mut t = FlowTracker::new(FakeTable::default(), TIMEOUTS);
        t.table.0.insert(k, state);
        let mut out = Vec::new();
        t.sweep(now, &mut out);
        let f = flows(&out);
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].event, f[0].encryption, f[0].protocol),
            ("flow", "unknown", "unknown")
        );
        assert_eq!(
            f[1].end.as_ref().map(|e| (e.reason, e.client_bytes)),
            Some((Some("idle"), 120))
        );
    }

    #[test]
    fn flows_without_payload_are_not_reported() {
        let now = 1000 * SEC;
        let state = FlowState {
            first_ns: now - 90 * SEC,
            last_ns: now - 90 * SEC,
            packets: [1, 0],
            ..FlowState::default()
        };
        let mut t = FlowTracker::new(FakeTable::default(), TIMEOUTS);
        t.table.0.insert(key(IPPROTO_TCP), state);
        let mut out = Vec::new();
        t.sweep(now, &mut out);
        assert!(out.is_empty());
        assert!(t.table.0.is_empty(), "idle entry removed all the same");
    }

    #[test]
    fn eviction_ends_the_flow_with_the_last_totals_seen() {
        let now = 100 * SEC;
        let k = key(IPPROTO_TCP);
        let state = http_state(now);
        let mut t = FlowTracker::new(FakeTable::default(), TIMEOUTS);
        t.table.0.insert(k, state);
        let mut out = Vec::new();
        t.on_notice(&notice(KIND_VERDICT, k, &state), now, &mut out);
        t.sweep(now, &mut out);
        t.table.0.clear(); // LRU evicted it
        t.sweep(now + SEC, &mut out);
        let end = flows(&out)[1];
        assert_eq!(
            end.end.as_ref().map(|e| (e.reason, e.server_bytes)),
            Some((Some("evicted"), 9000))
        );
        assert_eq!(t.stats().flows_evicted, 1);
    }

    #[test]
    fn the_offline_table_lists_flows_in_capture_order() {
        let mut table = FlowMap::default();
        for (first_ns, port) in [(3, 80), (1, 81), (2, 82), (1, 79)] {
            let k = FlowKey::ipv4(IPPROTO_TCP, [10, 9, 0, 2], 41000, [10, 9, 0, 1], port).0;
            table.insert(
                k,
                FlowState {
                    first_ns,
                    ..FlowState::default()
                },
            );
        }
        let order: Vec<(u64, u16)> = FlowTable::entries(&table)
            .iter()
            .map(|(k, s)| (s.first_ns, k.port_lo))
            .collect();
        assert_eq!(order, [(1, 79), (1, 81), (2, 82), (3, 80)]);
    }

    #[test]
    fn sweeps_follow_the_idle_timeout() {
        let t = |idle_s: u64| {
            Timeouts {
                idle_ns: idle_s * SEC,
                linger_ns: SEC,
            }
            .sweep_interval_ns()
                / SEC
        };
        assert_eq!((t(60), t(3), t(600)), (15, 1, 15));
        assert_eq!(t(20), 5);
    }

    #[test]
    fn a_flow_ended_while_closing_is_not_ended_twice() {
        let now = 100 * SEC;
        let k = key(IPPROTO_TCP);
        let mut state = http_state(now);
        state.flags |= FLOW_CLOSING;
        let mut t = FlowTracker::new(FakeTable::default(), TIMEOUTS);
        t.table.0.insert(k, state);
        let mut out = Vec::new();
        t.on_notice(&notice(KIND_VERDICT, k, &state), now, &mut out);
        t.on_notice(&notice(KIND_CLOSE, k, &state), now, &mut out);
        t.finish_all(EndOfInput::AgentStop, &mut out);
        t.end_closed(now + 2 * SEC, &mut out);
        assert_eq!(
            flows(&out).iter().filter(|f| f.event == "flow.end").count(),
            1
        );
    }

    /// A plaintext SMTP session in enforce mode: the kernel's verdict notice (held open for a
    /// STARTTLS that may come), then the samples of its preamble and of the `MAIL FROM` the
    /// kernel drops. With a 20-byte sample budget the client's samples settle it: plaintext.
    fn smtp_without_starttls(
        mode: crate::policy::file::Mode,
    ) -> (FlowTracker<FakeTable>, FlowNotice, u64) {
        let now = 100 * SEC;
        let k = key(IPPROTO_TCP);
        let state = FlowState {
            flags: FLOW_VERDICT,
            verdict_ns: now,
            protocol: Protocol::Smtp as u8,
            encryption: Encryption::Plaintext as u8,
            client_side: 1,
            ..FlowState::default()
        };
        let policy = Policy::new(crate::policy::PolicyFile {
            mode,
            ..crate::policy::PolicyFile::default()
        });
        let mut t = FlowTracker::new(FakeTable::default(), TIMEOUTS)
            .with_policy(std::sync::Arc::new(policy))
            .with_kernel_enforcement()
            .with_sample_budget(20);
        t.table.0.insert(k, state);
        let mut out = Vec::new();
        let verdict = notice(KIND_VERDICT, k, &state);
        t.on_notice(&verdict, now, &mut out);
        let mut offsets = [0u32; 2];
        for (side, data) in [
            (0u8, &b"220 mx ESMTP\r\n"[..]),
            (1, b"EHLO client\r\n"),
            (0, b"250-mx\r\n250 STARTTLS\r\n"),
            (1, b"MAIL FROM:<a@b>\r\n"),
        ] {
            let offset = &mut offsets[usize::from(side)];
            t.on_sample(
                &Sample {
                    key: k,
                    side,
                    ifindex: 1,
                    seq: 1000 + *offset,
                    offset: *offset,
                    ts_ns: now,
                    payload_len: data.len() as u32,
                    data: data.to_vec(),
                },
                &mut out,
            );
            *offset += data.len() as u32;
        }
        assert!(out.is_empty(), "{}", out.len());
        (t, verdict, now)
    }

    #[test]
    fn a_verdict_the_kernel_is_dropping_is_reported_with_the_drop() {
        use crate::policy::file::Mode;

        let (mut t, verdict, now) = smtp_without_starttls(Mode::Enforce);
        let mut out = Vec::new();
        let mut drop = verdict;
        drop.kind = KIND_DROP;
        drop.action = ACTION_DROP;
        t.on_notice(&drop, now, &mut out);
        let f = flows(&out);
        assert_eq!(f.len(), 1, "one event: the report carries the drop");
        assert_eq!(
            (f[0].event, f[0].protocol, f[0].encryption, f[0].action),
            ("flow", "smtp", "plaintext", "drop")
        );

        // No drop notice by the deadline: the kernel let it through after all.
        let (mut t, _, now) = smtp_without_starttls(Mode::Enforce);
        let mut out = Vec::new();
        t.flush_pending(now + HOLD_NS, &mut out);
        assert_eq!(flows(&out)[0].action, "alert");

        // Monitor mode: nothing to wait for.
        let mut t = FlowTracker::new(FakeTable::default(), TIMEOUTS)
            .with_kernel_enforcement()
            .with_sample_budget(20);
        let k = key(IPPROTO_TCP);
        let mut out = Vec::new();
        t.on_notice(&verdict, now, &mut out);
        t.on_sample(
            &Sample {
                key: k,
                side: 1,
                ifindex: 1,
                seq: 1000,
                offset: 0,
                ts_ns: now,
                payload_len: 30,
                data: b"EHLO client\r\nMAIL FROM:<a@b>\r\n".to_vec(),
            },
            &mut out,
        );
        assert_eq!(flows(&out).len(), 1, "reported when the sample settles it");
        assert_eq!(flows(&out)[0].action, "alert");
    }

    #[test]
    fn stopping_ends_open_flows() {
        let now = 100 * SEC;
        let k = key(IPPROTO_TCP);
        let state = http_state(now);
        let mut t = FlowTracker::new(FakeTable::default(), TIMEOUTS);
        t.table.0.insert(k, state);
        let mut out = Vec::new();
        t.on_notice(&notice(KIND_VERDICT, k, &state), now, &mut out);
        t.finish_all(EndOfInput::AgentStop, &mut out);
        assert_eq!(
            flows(&out)[1].end.as_ref().map(|e| e.reason),
            Some(Some("agent_stop"))
        );
    }
}
