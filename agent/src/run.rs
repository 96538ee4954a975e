//! `sealwatch run`: load, attach, turn kernel events into flow events until a signal, then end
//! open flows, report counters and detach.

use std::{
    collections::BTreeMap,
    io::{self, Write},
    time::{Duration, SystemTime},
};

use aya::maps::{MapData, PerCpuArray};
use sealwatch_common::stats::Stat;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
    time::{MissedTickBehavior, interval},
};
use tracing::{debug, info, warn};

use crate::{
    attrib::{
        kube::KubeConfig,
        node::{ImdsConfig, NodeIdentity},
        pods::PodView,
    },
    cli::{AttachMode, OutputFormat, RunArgs},
    clock::{monotonic_ns, rfc3339},
    event::{AgentEvent, Event},
    events::{KernelEvent, spawn_reader},
    flowlog::{FlowLog, FlowLogError},
    flows::{EndOfInput, FlowTracker, Timeouts, TrackerStats},
    links::{LinkChange, LinkWatch},
    output::Output,
    owners::{Attributor, OwnerMaps},
    pins::{OnExit, PinError, Pins, build_id},
    policy::{
        Policy,
        kernel::{Compiled, compile, resolve_processes},
    },
    programs::{
        AttachError, LoadError, LoadOptions, PolicyMapError, PolicyMaps, Programs, ifindex,
    },
    sinks::Sinks,
    telemetry::{
        Telemetry,
        metrics::Metrics,
        otlp::OtlpError,
        serve::{self, Ready},
    },
};

/// How often closing flows and held-back verdicts are checked (the table sweep follows
/// `Timeouts::sweep_interval_ns`).
const TICK: Duration = Duration::from_millis(250);
/// Wait after the first FIN/RST for the last packets of a flow before reading its totals.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// How often the cgroups of processes that exclusions name are looked up again.
const CGROUP_REFRESH: Duration = Duration::from_secs(2);
/// How often this node's pod list is read again (and at most every few seconds on a miss).
const POD_REFRESH: Duration = Duration::from_secs(30);
/// How often newly bound ports are listed as `service` events.
const SERVICE_SCAN: Duration = Duration::from_secs(5);
/// How often the kernel's and the tracker's counters are copied into the metrics.
const METRICS_REFRESH: Duration = Duration::from_secs(5);
/// Kernel events buffered between the ring-buffer reader and the main loop.
const EVENT_QUEUE: usize = 4096;
/// The shortest time between two returns of free memory to the system after bursts.
const TRIM_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error("cannot watch the ring buffer: {0}")]
    Ring(#[source] io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signal(#[source] io::Error),
    #[error("cannot write events: {0}")]
    Output(#[source] io::Error),
    #[error("cannot install the policy in the kernel: {0}")]
    Policy(#[source] PolicyMapError),
    #[error("pinned programs: {0}")]
    Pins(#[source] PinError),
    #[error("cannot follow interfaces (rtnetlink): {0}")]
    Links(#[source] io::Error),
    #[error("cannot serve metrics on {addr}: {source}")]
    MetricsAddr {
        addr: std::net::SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    FlowLog(#[from] FlowLogError),
    #[error(transparent)]
    Otlp(#[from] OtlpError),
}

impl RunError {
    /// Bad input (exit 2 per the contract) rather than a runtime failure: a flow log that
    /// cannot be opened, an OTLP setting or CA file that is wrong.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, RunError::FlowLog(_) | RunError::Otlp(_))
    }
}

pub async fn run<W: Write>(
    args: &RunArgs,
    format: OutputFormat,
    policy: std::sync::Arc<crate::policy::Policy>,
    writer: W,
    kernel_log_level: u8,
) -> Result<(), RunError> {
    let out = Output::new(format, writer);
    // A typo in --iface should say so, not surface after a second of program verification.
    if let Some(iface) = args.ifaces.iter().find(|i| ifindex(i).is_none()) {
        return Err(AttachError::NoSuchInterface {
            iface: iface.clone(),
        }
        .into());
    }
    // Outputs that can fail on a user's setting fail now, before anything is attached.
    let metrics = Metrics::default();
    let ready = Ready::default();
    if let Some(addr) = args.metrics_addr {
        let listener = serve::bind(addr)
            .await
            .map_err(|source| RunError::MetricsAddr { addr, source })?;
        serve::spawn(listener, metrics.clone(), ready.clone());
    }
    let flow_log = match args.flow_log.config() {
        Some(c) => Some(FlowLog::open(c, metrics.clone())?),
        None => None,
    };
    let otlp = args.otlp.config()?;
    let mut policy_file = PolicyFile::new(args);
    // What this node is, asked while the programs are verified (the metadata service may take
    // up to a second to answer, or to fail to).
    let node = tokio::task::spawn_blocking(|| NodeIdentity::detect(&ImdsConfig::from_env()));
    // A previous agent's pinned programs keep enforcing until ours replace them, link by link.
    let build = build_id(Programs::object(), args.flow_capacity);
    let mut pins =
        Pins::open(args.pin_dir.as_deref(), args.on_exit, build).map_err(RunError::Pins)?;
    let map_dir = match &pins {
        Some(p) => p.map_dir().map_err(RunError::Pins)?,
        None => None,
    };
    let mut programs = Programs::load(
        LoadOptions {
            sample_bytes: args.sample_bytes,
            flow_capacity: args.flow_capacity,
            kernel_log_level,
            ingress: Some(args.attach),
        },
        map_dir.as_deref(),
    )?;
    start_kernel_log(&mut programs);

    // Take the maps before attaching so no event is produced without a reader.
    let ring = programs.take_events()?;
    let table = programs.take_flow_table()?;
    let stats_map = programs.take_stats()?;
    // The policy is in the kernel before the first packet is seen: enforce mode has no window.
    let mut kernel_policy = programs.take_policy()?;
    let pods = PodView::spawn(kube_config(args), POD_REFRESH);
    let mut compiled = install(&mut kernel_policy, &policy, &pods).map_err(RunError::Policy)?;
    let mode = policy.mode().name();
    let (tx, mut rx) = mpsc::channel(EVENT_QUEUE);
    let reader = spawn_reader(ring, tx).map_err(RunError::Ring)?;

    let mut sigint = signal(SignalKind::interrupt()).map_err(RunError::Signal)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(RunError::Signal)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(RunError::Signal)?;

    let node = node.await.unwrap_or_default();
    let telemetry = Telemetry::new(
        metrics,
        otlp.as_ref(),
        args.otlp.alert_interval,
        node.attributes(),
    )?;
    let mut out = Sinks {
        out,
        flow_log,
        telemetry,
    };
    let at = Attaching {
        args,
        mode,
        node: &node,
    };
    let mut attached = Vec::new();
    for iface in &args.ifaces {
        attached.push(programs.attach(iface, args.attach, pins.as_mut())?);
    }
    let mut link_events = Vec::new();
    let mut links = if args.all_interfaces {
        let mut watch = LinkWatch::open().map_err(RunError::Links)?;
        for change in watch.present().await.map_err(RunError::Links)? {
            on_link(&mut programs, pins.as_mut(), at, change, &mut link_events);
        }
        Some(watch)
    } else {
        // Named interfaces are followed too: one that goes away (a pod's veth, a bond being
        // rebuilt) is let go of and attached again when an interface of its name comes back.
        match LinkWatch::open() {
            Ok(watch) => Some(watch),
            Err(e) => {
                warn!(error = %e, "cannot watch interfaces: one that goes away will not be attached again");
                None
            }
        }
    };
    // Who owns each socket, recorded in the process that connects, sends or binds.
    match crate::attrib::cgroups::cgroup2_mount() {
        Some(root) => {
            if let Err(e) = programs.attach_owners(&root) {
                warn!(error = %e, "socket owners not followed: flows are not attributed to processes");
            }
        }
        None => warn!("no cgroup v2 mount: flows are not attributed to processes"),
    }
    let mut owners = OwnerMaps::take(&mut programs)?;
    let seeded = owners.seed_from_proc();
    info!(
        sockets = seeded,
        "sockets older than the agent attributed from /proc"
    );
    // Only now that ours are in place: the previous agent's leftovers go.
    if let Some(p) = &mut pins {
        p.settle().map_err(RunError::Pins)?;
    }
    // Loading, verifying and attaching needed more than the agent uses from here on.
    if let Err(e) = crate::privileges::drop_to(crate::privileges::runtime_mask()) {
        warn!(error = %e, "capabilities not dropped: the agent keeps what it was started with");
    }
    for a in attached {
        emit(&mut out, &attached_event(a, at))?;
    }
    for e in link_events.drain(..) {
        emit(&mut out, &e)?;
    }
    out.flush();
    ready.set(true);
    release_free_memory();

    let timeouts = Timeouts {
        idle_ns: args.idle_timeout.as_nanos().try_into().unwrap_or(u64::MAX),
        linger_ns: CLOSE_LINGER.as_nanos() as u64,
    };
    let mut tracker = FlowTracker::new(table, timeouts)
        .with_sample_budget(u64::from(args.sample_bytes))
        .with_policy(policy)
        .with_kernel_enforcement()
        .with_records(args.flow_log.flow_log_interval)
        .with_attribution(Box::new(Attributor::new(owners, pods.clone())));
    let mut next_cgroup_refresh = monotonic_ns();
    let mut next_metrics = monotonic_ns();
    let mut ring_losses = RingLosses::default();
    let mut next_services = monotonic_ns();
    let mut tick = interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut next_sweep = monotonic_ns();
    let mut pending = Vec::new();
    let mut swept = false;
    let mut since_trim = 0usize;
    let mut next_trim = monotonic_ns();
    loop {
        tokio::select! {
            Some(event) = rx.recv() => {
                since_trim += 1;
                handle(&mut tracker, event, &mut pending)
            }
            _ = tick.tick() => {
                let now = monotonic_ns();
                tracker.flush_pending(now, &mut pending);
                tracker.end_closed(now, &mut pending);
                if now >= next_sweep {
                    tracker.sweep(now, &mut pending);
                    swept = true;
                    next_sweep = now.saturating_add(timeouts.sweep_interval_ns());
                }
                if policy_file.changed() {
                    info!("policy file changed: reloading");
                    reload_policy(args, &mut kernel_policy, &mut compiled, &pods, &mut tracker, &mut pending);
                }
                if now >= next_services
                    && tracker.services(&rfc3339(SystemTime::now()), &mut pending)
                {
                    next_services = now.saturating_add(SERVICE_SCAN.as_nanos() as u64);
                }
                out.telemetry.tick(now);
                if now >= next_metrics {
                    let now_counters = counters(&stats_map, tracker.stats());
                    ring_losses.check(&now_counters);
                    out.telemetry.counters(&now_counters, (tracker.table_entries(), args.flow_capacity));
                    next_metrics = now.saturating_add(METRICS_REFRESH.as_nanos() as u64);
                }
                if now >= next_cgroup_refresh {
                    refresh_exclusions(&mut kernel_policy, &mut compiled, &pods);
                    next_cgroup_refresh = now.saturating_add(CGROUP_REFRESH.as_nanos() as u64);
                }
            }
            Some(changes) = next_links(&mut links) => match changes {
                Ok(changes) => {
                    for change in changes {
                        let at = Attaching { mode: tracker.policy().mode().name(), ..at };
                        on_link(&mut programs, pins.as_mut(), at, change, &mut pending);
                    }
                }
                Err(e) => {
                    warn!(error = %e, "interface watch failed: new interfaces are not attached any more");
                    links = None;
                }
            },
            _ = sighup.recv() => {
                policy_file.changed();
                reload_policy(args, &mut kernel_policy, &mut compiled, &pods, &mut tracker, &mut pending);
            }
            _ = sigint.recv() => { info!("SIGINT: stopping"); break; }
            _ = sigterm.recv() => { info!("SIGTERM: stopping"); break; }
        }
        for e in pending.drain(..) {
            emit(&mut out, &e)?;
        }
        out.flush();
        // What a sweep and its events freed, after they are written; and what a burst of
        // kernel events held (a full queue of samples), once the queue has drained: the next
        // sweep may be 15 s away. At most once a second.
        let burst_over = since_trim >= EVENT_QUEUE && rx.is_empty();
        if std::mem::take(&mut swept) || (burst_over && monotonic_ns() >= next_trim) {
            pending.shrink_to(EVENT_QUEUE);
            release_free_memory();
            since_trim = 0;
            next_trim = monotonic_ns().saturating_add(TRIM_INTERVAL.as_nanos() as u64);
        }
    }

    // Whatever the kernel queued before the signal still counts.
    reader.abort();
    while let Ok(event) = rx.try_recv() {
        handle(&mut tracker, event, &mut pending);
    }
    tracker.finish_all(EndOfInput::AgentStop, &mut pending);
    for e in pending.drain(..) {
        emit(&mut out, &e)?;
    }
    let counters = counters(&stats_map, tracker.stats());
    out.telemetry
        .counters(&counters, (tracker.table_entries(), args.flow_capacity));
    // What was lost since the last refresh (a sweep at exit finds evictions too).
    ring_losses.check(&counters);
    let lost = RingLosses::total(&counters);
    if lost > 0 {
        warn!(
            lost,
            "the ring buffer was full at times; some notices/samples were lost (flows were still reported from the flow table)"
        );
    }
    drop(programs);
    let mut event = agent_event("stopped", None, None, counters);
    if let (Event::Agent(e), Some(p)) = (&mut event, &pins)
        && args.on_exit == OnExit::KeepEnforcing
    {
        e.on_exit = Some(args.on_exit.name());
        e.pin_dir = Some(p.dir().display().to_string());
    }
    let emitted = emit(&mut out, &event);
    out.flush();
    out.telemetry.shutdown();
    emitted
}

/// Gives the allocator's free memory back to the system. glibc keeps what was freed in its
/// heap for reuse, where it still counts as the agent's: of the 26 MB an idle agent held, 7
/// were the free remains of loading the kernel object; a sweep that ends many flows leaves
/// its events' memory behind the same way.
fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions; it only returns free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn handle<T: crate::flows::FlowTable>(
    tracker: &mut FlowTracker<T>,
    event: KernelEvent,
    out: &mut Vec<Event>,
) {
    match event {
        KernelEvent::Notice(n) => {
            if blocked(&n) {
                reset_local_sockets(&n);
            }
            tracker.on_notice(&n, monotonic_ns(), out)
        }
        KernelEvent::Sample(s) => tracker.on_sample(&s, out),
        KernelEvent::Resample(s) => tracker.on_resample(&s, out),
    }
}

/// The kernel started dropping this flow.
fn blocked(n: &sealwatch_common::event::FlowNotice) -> bool {
    use sealwatch_common::{
        event::{KIND_DROP, KIND_VERDICT},
        policy::ACTION_DROP,
    };
    n.kind == KIND_DROP || (n.kind == KIND_VERDICT && n.action == ACTION_DROP)
}

/// A blocked flow's packets are dropped; its local socket is destroyed too so the program
/// behind it fails at once (the kernel then resets the peer) instead of retransmitting into
/// the void until a timeout.
fn reset_local_sockets(n: &sealwatch_common::event::FlowNotice) {
    use std::sync::atomic::{AtomicBool, Ordering};
    // Whatever stops one destroy (no sock_diag, a kernel without SOCK_DESTROY) stops them all:
    // say it once, not once per blocked flow.
    static WARNED: AtomicBool = AtomicBool::new(false);
    match crate::reset::destroy_flow(&n.key) {
        Ok(count) => debug!(sockets = count, "blocked flow's local sockets destroyed"),
        Err(e) if !WARNED.swap(true, Ordering::Relaxed) => warn!(
            error = %e,
            "cannot destroy a blocked flow's sockets; blocked clients time out instead of failing at once (further failures logged at debug level)"
        ),
        Err(e) => debug!(error = %e, "cannot destroy a blocked flow's sockets"),
    }
}

fn kube_config(args: &RunArgs) -> KubeConfig {
    let mut config = KubeConfig::from_env();
    if let Some(url) = &args.kubelet {
        config.kubelet = Some(url.clone());
    }
    config.insecure_skip_tls_verify = args.kubelet_insecure_skip_tls_verify;
    config.pod_logs = args.pod_logs.clone();
    config
}

/// `--all-interfaces`: attaches to an interface that appeared (not loopback, not twice) and
/// lets go of one that went away. A failure is an event; the other interfaces go on.
fn on_link(
    programs: &mut Programs,
    pins: Option<&mut Pins>,
    at: Attaching<'_>,
    change: LinkChange,
    out: &mut Vec<Event>,
) {
    let named = |name: &str| at.args.ifaces.iter().any(|i| i == name);
    match change {
        LinkChange::Up { loopback: true, .. } if at.args.all_interfaces => {}
        LinkChange::Up { index, name, .. } => {
            if !(at.args.all_interfaces || named(&name))
                || programs.attachments().iter().any(|a| a.ifindex == index)
            {
                return;
            }
            match programs.attach(&name, at.args.attach, pins) {
                Ok(a) => out.push(attached_event(a, at)),
                Err(e) => {
                    warn!(iface = %name, error = %e, "cannot attach; the other interfaces go on");
                    let mut event = agent_event("attach_failed", Some(name), None, BTreeMap::new());
                    if let Event::Agent(a) = &mut event {
                        a.error = Some(e.to_string());
                    }
                    out.push(event);
                }
            }
        }
        LinkChange::Gone { index, name } => {
            if programs.release(index, pins.as_deref()).is_some() {
                if named(&name) {
                    warn!(iface = %name, "interface gone: detached; attached again if it comes back");
                } else {
                    info!(iface = %name, "interface gone: detached");
                }
                out.push(agent_event("detached", Some(name), None, BTreeMap::new()));
            }
        }
    }
}

async fn next_links(watch: &mut Option<LinkWatch>) -> Option<io::Result<Vec<LinkChange>>> {
    match watch {
        Some(w) => Some(w.next().await),
        None => std::future::pending().await,
    }
}

/// What every `attached` event says besides its interface.
#[derive(Clone, Copy)]
struct Attaching<'a> {
    args: &'a RunArgs,
    /// The policy's mode at the time.
    mode: &'static str,
    node: &'a NodeIdentity,
}

fn attached_event(a: crate::programs::Attachment, at: Attaching<'_>) -> Event {
    let Attaching { args, mode, node } = at;
    let attach = match args.attach {
        AttachMode::Tc => "tc",
        AttachMode::Xdp => "xdp",
    };
    let mut event = agent_event("attached", Some(a.iface), Some(attach), BTreeMap::new());
    if let Event::Agent(e) = &mut event {
        e.mode = Some(mode);
        e.on_exit = Some(args.on_exit.name());
        e.adopted = a.adopted.then_some(true);
        e.resource = node.attributes().clone();
    }
    event
}

fn emit<W: Write>(out: &mut Sinks<W>, event: &Event) -> Result<(), RunError> {
    out.emit(event).map_err(RunError::Output)
}

/// SIGHUP or a changed file: reads the policy file again. A valid one replaces the old at once,
/// in the kernel (one map write, see `PolicyMaps::install`) and here, between two events: no
/// flow is forgotten, nothing is detached, enforcement never pauses. An invalid one is reported
/// and the old one stays, in the kernel too.
fn reload_policy<T: crate::flows::FlowTable>(
    args: &RunArgs,
    maps: &mut PolicyMaps,
    compiled: &mut Compiled,
    pods: &PodView,
    tracker: &mut FlowTracker<T>,
    out: &mut Vec<Event>,
) {
    let Some(path) = &args.policy else {
        info!("SIGHUP without --policy: nothing to reload");
        return;
    };
    let loaded = crate::policy::load_trusted_policy(path, args.mode).and_then(|p| {
        let c = install(maps, &p, pods).map_err(|e| e.to_string())?;
        Ok((p, c))
    });
    let (state, mode, error) = match loaded {
        Ok((p, c)) => {
            let mode = p.mode().name();
            tracker.set_policy(std::sync::Arc::new(p));
            *compiled = c;
            info!(policy = %path.display(), mode, "policy reloaded");
            ("policy_reloaded", Some(mode), None)
        }
        Err(e) => {
            warn!(error = %e, "new policy rejected; the old one stays");
            ("policy_rejected", None, Some(e))
        }
    };
    let mut event = agent_event(state, None, None, BTreeMap::new());
    if let Event::Agent(a) = &mut event {
        a.error = error;
        a.mode = mode;
    }
    out.push(event);
}

/// Compiles `policy`, resolves the cgroups its process exclusions name, and installs both.
/// Pod exclusions are installed as the addresses of the pods they select now.
fn install(
    maps: &mut PolicyMaps,
    policy: &Policy,
    pods: &PodView,
) -> Result<Compiled, PolicyMapError> {
    let mut compiled = compile(policy);
    compiled.nets = compiled.nets_with_pods(pods.snapshot().pods());
    let resolved = resolve_processes(&compiled.by_cgroup);
    maps.install(&compiled, &resolved)?;
    Ok(compiled)
}

/// Processes and pods come and go: the cgroups process exclusions resolve to are looked up
/// again, and the addresses of the pods pod exclusions select (a change installs the policy
/// again, as one switch).
fn refresh_exclusions(maps: &mut PolicyMaps, compiled: &mut Compiled, pods: &PodView) {
    if !compiled.pod_rules.is_empty() {
        let nets = compiled.nets_with_pods(pods.snapshot().pods());
        if nets != compiled.nets {
            compiled.nets = nets;
            let resolved = resolve_processes(&compiled.by_cgroup);
            match maps.install(compiled, &resolved) {
                Ok(()) => info!("pods selected by exclusions changed: policy updated"),
                Err(e) => warn!(error = %e, "cannot update the pod addresses of exclusions"),
            }
            return;
        }
    }
    if compiled.by_cgroup.is_empty() {
        return;
    }
    let resolved = resolve_processes(&compiled.by_cgroup);
    if let Err(e) = maps.refresh_processes(&resolved) {
        warn!(error = %e, "cannot update the cgroups of process exclusions");
    }
}

/// Notices when the policy file changes (written in place or replaced), by polling its
/// metadata: cheap, and it works for every editor and for ConfigMap symlink swaps.
struct PolicyFile {
    path: Option<std::path::PathBuf>,
    stamp: Option<(std::time::SystemTime, u64, u64)>,
}

impl PolicyFile {
    fn new(args: &RunArgs) -> PolicyFile {
        let mut f = PolicyFile {
            path: args.policy.clone(),
            stamp: None,
        };
        f.stamp = f.read_stamp();
        f
    }

    fn read_stamp(&self) -> Option<(std::time::SystemTime, u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(self.path.as_ref()?).ok()?;
        Some((m.modified().ok()?, m.len(), m.ino()))
    }

    /// Whether the file changed since the last call (or since it was loaded).
    fn changed(&mut self) -> bool {
        if self.path.is_none() {
            return false;
        }
        let now = self.read_stamp();
        if now == self.stamp {
            return false;
        }
        self.stamp = now;
        true
    }
}

fn agent_event(
    state: &'static str,
    interface: Option<String>,
    attach: Option<&'static str>,
    counters: BTreeMap<String, u64>,
) -> Event {
    Event::Agent(AgentEvent {
        event: "agent",
        time: rfc3339(SystemTime::now()),
        state,
        interface,
        attach,
        mode: None,
        on_exit: None,
        adopted: None,
        pin_dir: None,
        resource: BTreeMap::new(),
        counters,
        error: None,
    })
}

/// Kernel counters summed over CPUs, plus the agent's own.
/// Warns while running, once per metrics refresh at most, when the kernel found the ring full
/// since the last look (the loss is also a metric, `sealwatch.ringbuf.lost`, but a metric
/// nobody graphs is silent), or flows left a full table before their totals were read.
#[derive(Default)]
struct RingLosses {
    warned_at: u64,
    unread_at: u64,
}

impl RingLosses {
    fn total(counters: &BTreeMap<String, u64>) -> u64 {
        [
            "sealwatch.kernel.notices_lost",
            "sealwatch.kernel.samples_lost",
        ]
        .iter()
        .filter_map(|k| counters.get(*k))
        .sum()
    }

    fn check(&mut self, counters: &BTreeMap<String, u64>) {
        let total = RingLosses::total(counters);
        if total > self.warned_at {
            warn!(
                lost = total - self.warned_at,
                total,
                "the ring buffer to user space was full: kernel events were lost (flows are still reported from the flow table; samples for deeper parsing are not)"
            );
            self.warned_at = total;
        }
        let unread = counters
            .get("sealwatch.agent.flows_evicted_unread")
            .copied()
            .unwrap_or(0);
        if unread > self.unread_at {
            warn!(
                flows = unread - self.unread_at,
                total = unread,
                "the flow table was full: flows were evicted before their totals were read and end without flow.end (raise --flow-capacity)"
            );
            self.unread_at = unread;
        }
    }
}

fn counters(stats: &PerCpuArray<MapData, u64>, agent: TrackerStats) -> BTreeMap<String, u64> {
    let mut c = BTreeMap::new();
    for stat in Stat::ALL {
        match stats.get(&(stat as u32), 0) {
            Ok(per_cpu) => {
                c.insert(
                    format!("sealwatch.kernel.{}", stat.name()),
                    per_cpu.iter().sum(),
                );
            }
            Err(e) => warn!(counter = stat.name(), error = %e, "cannot read kernel counter"),
        }
    }
    for (name, value) in [
        ("flows_reported", agent.flows_reported),
        ("flows_ended", agent.flows_ended),
        ("flows_evicted", agent.flows_evicted),
        ("flows_evicted_unread", agent.flows_evicted_unread),
        ("verdicts_recovered", agent.verdicts_recovered),
        ("samples", agent.samples),
        ("sample_bytes", agent.sample_bytes),
        ("resamples", agent.resamples),
        (
            "plaintext_after_encryption",
            agent.plaintext_after_encryption,
        ),
    ] {
        c.insert(format!("sealwatch.agent.{name}"), value);
    }
    c
}

/// Forwards aya-log records from the kernel programs to our log (stderr), never to stdout.
fn start_kernel_log(programs: &mut Programs) {
    match aya_log::EbpfLogger::init(programs.ebpf_mut()) {
        Ok(logger) => {
            // SAFETY: the logger owns its fd and keeps it open while registered.
            match unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(
                    logger,
                    tokio::io::Interest::READABLE,
                )
            } {
                Ok(mut fd) => {
                    tokio::spawn(async move {
                        while let Ok(mut guard) = fd.readable_mut().await {
                            guard.get_inner_mut().flush();
                            guard.clear_ready();
                        }
                    });
                }
                Err(e) => warn!(error = %std::io::Error::from(e), "kernel log not forwarded"),
            }
        }
        // The object has no log statements compiled in at this level: nothing to forward.
        Err(e) => tracing::debug!(error = %e, "no kernel log"),
    }
}
