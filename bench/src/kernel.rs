//! Kernel per-packet cost: the real observer programs, loaded and verified as the agent loads
//! them, run with BPF_PROG_TEST_RUN on crafted packets, side by side with an empty program of
//! the same type. The kernel times each run with its own clock around the program (not the
//! system call), so the ratio to the empty program is what our code adds to every packet.

use std::{net::Ipv4Addr, os::fd::AsFd as _};

use anyhow::{Context as _, bail};
use aya::maps::RingBuf;
use sealwatch::programs::{LoadOptions, Programs};
use sealwatch_common::{
    flow::{FLOW_VERDICT, FlowKey, FlowState},
    net::IPPROTO_TCP,
};
use serde_json::{Value, json};

use crate::{
    packets::{self, DNS_QUERY, Endpoints, HTTP_REQUEST},
    sys::{self, ProgType},
};

pub struct Options {
    /// Repetitions per timed run of the same packet (the kernel's `repeat`).
    pub repeat: u32,
    /// Timed runs per case; the median is reported.
    pub rounds: usize,
    /// New flows per round for the first-payload cases (one run each).
    pub new_flows: u32,
    /// The attach modes to measure, by name (`tc`, `xdp`).
    pub modes: Vec<String>,
}

/// An attach mode: the observer program and the empty program of its type.
struct Mode {
    name: &'static str,
    program: &'static str,
    kind: ProgType,
    /// What the empty program returns: what ours returns for a packet it lets through.
    pass: i32,
}

const MODES: [Mode; 2] = [
    Mode {
        name: "tc",
        program: "tc_ingress",
        kind: ProgType::SchedCls,
        // TCX_NEXT
        pass: -1,
    },
    Mode {
        name: "xdp",
        program: "xdp_ingress",
        kind: ProgType::Xdp,
        // XDP_PASS
        pass: 2,
    },
];

const SERVER: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 201, 0, 1), 8080);
/// The key the floor programs look up: any 40 bytes hash alike.
pub const FLOOR_KEY: [i32; 5] = [0x0a00_0001, 0x0a00_0002, 0x3039_01bb, 0x0406, 0];
const _: () = assert!(
    sys::FLOOR_KEY == std::mem::size_of::<FlowKey>()
        && sys::FLOOR_VALUE == std::mem::size_of::<FlowState>()
);

const DNS_SERVER: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 201, 0, 53), 53);
/// A full-size segment of an established flow.
const BULK: usize = 1400;

pub fn run(opts: &Options) -> anyhow::Result<Value> {
    let mut results = Vec::new();
    let mut verifier = Value::Null;
    let mut flow_seq = 0u32;
    for mode in MODES
        .iter()
        .filter(|m| opts.modes.iter().any(|n| n == m.name))
    {
        // Loaded afresh for each mode: every mode starts from an empty flow table, as full at
        // the end as the other's, so their new-flow costs compare (a fuller table has longer
        // hash chains to walk). Room for every flow the rounds create (two per new-flow step:
        // the DNS and the TCP flow), so none is evicted mid-measure.
        let capacity = (opts.new_flows * 2 * opts.rounds as u32 + 1024).next_power_of_two();
        let mut programs = Programs::load(
            LoadOptions {
                sample_bytes: sealwatch_common::DEFAULT_SAMPLE_BYTES,
                flow_capacity: capacity,
                kernel_log_level: 0,
                ingress: None,
            },
            None,
        )
        .context("loading the kernel programs")?;
        if verifier.is_null() {
            verifier = verified_instructions(&mut programs);
        }
        let flows = programs.take_flows().context("flow table")?;
        let mut ring = programs.take_events().context("event ring")?;
        let empty = sys::load_empty(mode.kind, mode.pass)
            .with_context(|| format!("loading an empty {} program", mode.name))?;
        // The flow-table floor: the same kind of map with the same room, the fast path's
        // lookup and counting, and a new flow's insert, with nothing of ours around them.
        let (floor_map, floor_lookup) =
            sys::lookup_floor(mode.kind, mode.pass, capacity, FLOOR_KEY)
                .context("setting up the lookup floor (its LRU hash, entry and program)")?;
        let slots = sys::create_slot_array(capacity).context("creating the array floor's slots")?;
        sys::place_in_slot(slots.as_fd(), &sys::floor_key(FLOOR_KEY), capacity)
            .context("placing the array floor's entry")?;
        let floor_array =
            sys::load_array_floor(mode.kind, mode.pass, slots.as_fd(), capacity, FLOOR_KEY)
                .context("loading the array floor program")?;
        let floor_insert =
            sys::load_insert_floor(mode.kind, mode.pass, floor_map.as_fd(), FLOOR_KEY)
                .context("loading the insert floor program")?;
        let ebpf = programs.ebpf_mut();
        let prog = ebpf
            .program(mode.program)
            .with_context(|| format!("program {}", mode.program))?
            .fd()
            .with_context(|| format!("program {}", mode.program))?
            .try_clone()
            .context("duplicating the program descriptor")?;
        let ours = prog.as_fd();

        // (a) An established flow with a verdict: handshake, request and answer, then bulk
        // data until its samples are used up; the timed packet is the next bulk segment.
        let flow = Endpoints::nth(u32::MAX - 1 - mode.kind as u32, SERVER);
        for packet in flow.http_exchange() {
            sys::test_run(ours, &packet, 1)?;
        }
        let bulk = flow.tcp(true, "A", &[0x5a; BULK]);
        for _ in 0..8 {
            sys::test_run(ours, &bulk, 1)?;
        }
        let key = key_of(&flow, IPPROTO_TCP);
        let state: FlowState = flows
            .get(&key, 0)
            .context("the established flow is not in the flow table")?;
        if state.flags & FLOW_VERDICT == 0 {
            bail!(
                "the established flow has no verdict: flags {:#x}",
                state.flags
            );
        }
        drain(&mut ring);

        let (arp, other) = (packets::arp(), packets::other_transport());
        let mut cases: Vec<Case> = vec![
            Case::new("empty", "empty program, same packet as the fast path"),
            Case::new(
                "fast_path",
                "established TCP flow with a verdict, 1400-byte segment",
            ),
            Case::new("non_ip", "ARP (not IP)"),
            Case::new("other_transport", "IPv4, protocol 89 (not followed)"),
            Case::per_call("empty_single", "empty program, one run per call"),
            Case::per_call(
                "fast_path_single",
                "fast path, one run per call (the kernel's timer around each)",
            ),
            Case::per_call(
                "new_flow_udp",
                "first datagram of a new UDP flow (DNS): flow created, classified, sampled",
            ),
            Case::per_call(
                "first_payload_tcp",
                "first payload of a TCP flow after its handshake (HTTP request): classified, sampled",
            ),
            Case::new(
                "floor_lookup",
                "flow-table floor: one lookup of a 40-byte key in an LRU hash, two atomic counter adds",
            ),
            Case::per_call("floor_lookup_single", "flow-table floor, one run per call"),
            Case::new(
                "floor_array",
                "a table of our own, at its least: array slot by a multiply-xor hash, key compared, two atomic counter adds",
            ),
            Case::per_call("floor_array_single", "array floor, one run per call"),
            Case::per_call(
                "floor_new_single",
                "new-entry floor: precise clock, insert of a zeroed entry under a new key, lookup; one run per call",
            ),
        ];
        for _ in 0..opts.rounds {
            // Interleaved, so a change in machine load hits every case alike.
            cases[0].add(timed(empty.as_fd(), &bulk, opts.repeat, mode.pass)?);
            cases[1].add(timed(ours, &bulk, opts.repeat, mode.pass)?);
            cases[2].add(timed(ours, &arp, opts.repeat, mode.pass)?);
            cases[3].add(timed(ours, &other, opts.repeat, mode.pass)?);
            cases[8].add(timed(floor_lookup.as_fd(), &bulk, opts.repeat, mode.pass)?);
            cases[10].add(timed(floor_array.as_fd(), &bulk, opts.repeat, mode.pass)?);

            let (mut empty_ns, mut fast_ns, mut udp_ns, mut tcp_ns) = (0u64, 0u64, 0u64, 0u64);
            let (mut floor_ns, mut floor_new_ns, mut array_ns) = (0u64, 0u64, 0u64);
            for _ in 0..opts.new_flows {
                fast_ns += u64::from(sys::test_run(ours, &bulk, 1)?.ns);
                flow_seq += 1;
                let dns = Endpoints::nth(flow_seq, DNS_SERVER);
                let query = dns.udp(true, DNS_QUERY);
                empty_ns += u64::from(sys::test_run(empty.as_fd(), &query, 1)?.ns);
                udp_ns += u64::from(sys::test_run(ours, &query, 1)?.ns);

                let web = Endpoints::nth(flow_seq, SERVER);
                for (to_server, flags) in [(true, "S"), (false, "SA"), (true, "A")] {
                    sys::test_run(ours, &web.tcp(to_server, flags, &[]), 1)?;
                }
                tcp_ns += u64::from(sys::test_run(ours, &web.tcp(true, "PA", HTTP_REQUEST), 1)?.ns);
            }
            // The floors one run per call, in a loop of their own: run between ours, their
            // maps and code took cache lines from ours and raised our per-call times by up
            // to a fifth.
            for _ in 0..opts.new_flows {
                floor_ns += u64::from(sys::test_run(floor_lookup.as_fd(), &bulk, 1)?.ns);
                array_ns += u64::from(sys::test_run(floor_array.as_fd(), &bulk, 1)?.ns);
                floor_new_ns += u64::from(sys::test_run(floor_insert.as_fd(), &bulk, 1)?.ns);
            }
            let n = f64::from(opts.new_flows.max(1));
            cases[4].add(empty_ns as f64 / n);
            cases[5].add(fast_ns as f64 / n);
            cases[6].add(udp_ns as f64 / n);
            cases[7].add(tcp_ns as f64 / n);
            cases[9].add(floor_ns as f64 / n);
            cases[11].add(array_ns as f64 / n);
            cases[12].add(floor_new_ns as f64 / n);
            drain(&mut ring);
        }
        // The floors must have done their work, or they are no floors: every run found the
        // established entry (its packet count), and every new-entry run created one.
        let runs = opts.rounds as u64 * (u64::from(opts.repeat) + u64::from(opts.new_flows));
        let floor_key = sys::floor_key(FLOOR_KEY);
        let index = sys::slot_of(&floor_key, capacity).to_ne_bytes();
        for (name, map, key, entry_at) in [
            (
                "lookup",
                floor_map.as_fd(),
                &floor_key[..],
                sys::ENTRY_IN_LRU,
            ),
            ("array", slots.as_fd(), &index[..], sys::ENTRY_IN_SLOT),
        ] {
            let counted = sys::floor_packets(map, key, entry_at)
                .with_context(|| format!("reading the {name} floor's entry"))?;
            if counted != runs {
                bail!("the {name} floor counted {counted} packets in {runs} runs");
            }
        }
        let created =
            sys::count_entries(floor_map.as_fd()).context("counting the floor's entries")?;
        let inserts = opts.rounds as u64 * u64::from(opts.new_flows);
        if created != inserts + 1 {
            bail!(
                "the new-entry floor created {} entries in {inserts} runs",
                created.saturating_sub(1)
            );
        }
        let floor = cases[0].median();
        let floor_single = cases[4].median();
        results.push(json!({
            "mode": mode.name,
            "program": mode.program,
            "repeat": opts.repeat,
            "rounds": opts.rounds,
            "new_flows_per_round": opts.new_flows,
            "cases": cases.iter().map(|c| {
                let (empty_case, base) = if c.per_call {
                    ("empty_single", floor_single)
                } else {
                    ("empty", floor)
                };
                json!({
                    "name": c.name,
                    "what": c.what,
                    "ns_per_packet": c.median(),
                    "ns_all_rounds": c.samples,
                    "vs_empty": c.median() / base.max(0.001),
                    "empty_case": empty_case,
                    "empty_ns": base,
                })
            }).collect::<Vec<_>>(),
        }));
    }
    Ok(json!({ "section": "kernel", "modes": results, "verified_instructions": verifier }))
}

/// A measured case: the per-packet nanoseconds of each round.
struct Case {
    name: &'static str,
    what: &'static str,
    /// Timed one `BPF_PROG_TEST_RUN` call per packet (the kernel's timer around each run),
    /// so compared with the empty program timed the same way.
    per_call: bool,
    samples: Vec<f64>,
}

impl Case {
    /// A case timed over many repetitions in one call.
    fn new(name: &'static str, what: &'static str) -> Case {
        Case {
            name,
            what,
            per_call: false,
            samples: Vec::new(),
        }
    }

    /// A case timed one call per packet.
    fn per_call(name: &'static str, what: &'static str) -> Case {
        Case {
            per_call: true,
            ..Case::new(name, what)
        }
    }

    fn add(&mut self, ns: f64) {
        self.samples.push(ns);
    }

    fn median(&self) -> f64 {
        let mut v = self.samples.clone();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    }
}

/// One run of `repeat` repetitions; checks the program let the packet through, as every
/// benchmarked packet must be.
fn timed(
    prog: std::os::fd::BorrowedFd<'_>,
    packet: &[u8],
    repeat: u32,
    pass: i32,
) -> anyhow::Result<f64> {
    let run = sys::test_run(prog, packet, repeat)?;
    if run.retval as i32 != pass {
        bail!(
            "the program returned {} instead of {pass}",
            run.retval as i32
        );
    }
    Ok(f64::from(run.ns))
}

fn key_of(flow: &Endpoints, proto: u8) -> FlowKey {
    FlowKey::ipv4(
        proto,
        flow.client.0.octets(),
        flow.client.1,
        flow.server.0.octets(),
        flow.server.1,
    )
    .0
}

/// How many instructions the verifier walked for each loaded program: its limit is one million,
/// so this is the headroom left for new kernel code.
fn verified_instructions(programs: &mut Programs) -> Value {
    let mut out = serde_json::Map::new();
    for (name, prog) in programs.ebpf_mut().programs() {
        if let Some(n) = prog
            .info()
            .ok()
            .and_then(|i| i.verified_instruction_count())
        {
            out.insert(name.to_string(), json!(n));
        }
    }
    Value::Object(out)
}

/// Empties the event ring so the next round's records have room.
fn drain(ring: &mut RingBuf<aya::maps::MapData>) {
    while ring.next().is_some() {}
}
