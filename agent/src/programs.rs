//! Loading the kernel object and attaching its programs. [`Programs`] owns every attachment:
//! dropping it detaches them all.

use std::{collections::BTreeMap, ffi::CString, io};

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{
        Array, HashMap, MapData, MapError, PerCpuArray, ProgramArray, RingBuf,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{
        CgroupAttachMode, CgroupSock, CgroupSockAddr, ProgramError, SchedClassifier, SockOps,
        TcAttachType, TracePoint, Xdp, XdpMode, links::FdLink, tc, tc::SchedClassifierLink,
        xdp::XdpLink,
    },
};
use sealwatch_common::{
    ENFORCE_TC_EGRESS_MAP, ENFORCE_TC_INGRESS_MAP, ENFORCE_XDP_MAP, EVENTS_MAP, FLOWS_MAP,
    SAMPLE_BYTES_GLOBAL, STATS_MAP,
    flow::{FlowKey, FlowState},
    policy::{
        CgroupRules, EXEMPT_CGROUPS_MAP, EXEMPT_PORTS_MAP, KernelPolicy, NETS_MAP, NetKey,
        NetValue, POLICY_ACTIVE_MAP, POLICY_MAP, PORTS_MAP, WEAK_SUITES_MAP, slot_port_key,
    },
};

use tracing::{debug, info, warn};

use crate::{
    cli::AttachMode,
    pins::{PinError, Pins, STATEFUL_MAPS, Side},
    policy::kernel::{Compiled, Resolved},
};

/// The compiled kernel programs (built by build.rs from `ebpf/`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sealwatch"));

const TC_INGRESS: &str = "tc_ingress";
const TC_EGRESS: &str = "tc_egress";
const XDP_INGRESS: &str = "xdp_ingress";
const TC_ENFORCE_INGRESS: &str = "tc_enforce_ingress";
const TC_ENFORCE_EGRESS: &str = "tc_enforce_egress";
const XDP_ENFORCE: &str = "xdp_enforce";
/// The packet programs, verified at load.
const OBSERVE_AND_ENFORCE: [&str; 6] = [
    TC_INGRESS,
    TC_EGRESS,
    XDP_INGRESS,
    TC_ENFORCE_INGRESS,
    TC_ENFORCE_EGRESS,
    XDP_ENFORCE,
];
/// Socket-owner programs (see `ebpf/src/owner.rs`), on the cgroup v2 root.
const OWNER_SOCK_ADDR: [&str; 4] = [
    "owner_connect4",
    "owner_connect6",
    "owner_sendmsg4",
    "owner_sendmsg6",
];
const OWNER_SOCK: [&str; 2] = ["owner_bind4", "owner_bind6"];
const OWNER_SOCK_OPS: &str = "owner_established";
/// Tracepoints recording each execve's arguments, and where they attach.
const OWNER_EXEC: [(&str, &str); 2] = [
    ("exec_args", "sys_enter_execve"),
    ("execat_args", "sys_enter_execveat"),
];

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Kernel(#[from] crate::features::Missing),
    #[error("loading BPF programs needs root, or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON")]
    Privileges(#[source] EbpfError),
    #[error("cannot load the kernel object")]
    Object(#[source] EbpfError),
    #[error("kernel rejected program {program}: {}", verifier_excerpt(.source))]
    Program {
        program: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("map {0} missing from the kernel object")]
    MissingMap(&'static str),
    #[error("program {0} missing from the kernel object")]
    MissingProgram(&'static str),
}

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("interface {iface:?} does not exist")]
    NoSuchInterface { iface: String },
    #[error("interface {iface:?} is attached already")]
    AlreadyAttached { iface: String },
    #[error("cannot attach {program} to {iface}: {source}")]
    Attach {
        program: &'static str,
        iface: String,
        #[source]
        source: ProgramError,
    },
    #[error("cannot open the cgroup v2 root {}: {source}", .path.display())]
    Cgroup {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{program} on {iface}: cannot pin its link or take over the pinned one: {source}")]
    Pin {
        program: &'static str,
        iface: String,
        #[source]
        source: Box<PinError>,
    },
    #[error(
        "{program} on {iface}: not a bpf_link ({source}); pinning needs TCX links (Linux 6.6+) for TC and XDP links (5.9+)"
    )]
    Link {
        program: &'static str,
        iface: String,
        #[source]
        source: Box<aya::programs::links::LinkError>,
    },
}

/// Load-time settings baked into the kernel object.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    pub sample_bytes: u16,
    pub flow_capacity: u32,
    /// aya-log level for kernel log statements (0 = off, 4 = debug).
    pub kernel_log_level: u8,
    /// The ingress hook the agent attaches with: only its programs are verified (each
    /// observer takes seconds of verifier time). `None`: all of them (kernel tests).
    pub ingress: Option<AttachMode>,
}

/// One interface's attachments, for reporting.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub iface: String,
    pub ifindex: u32,
    pub ingress: &'static str,
    pub egress: &'static str,
    /// The links were a previous agent's, taken over: our programs replaced its atomically.
    pub adopted: bool,
}

pub struct Programs {
    ebpf: Ebpf,
    attachments: Vec<Attachment>,
    /// The links are pinned (`--on-exit keep-enforcing`): they outlive this value.
    pinned: bool,
    /// Links this value owns, by interface, to let go of one interface.
    held: std::collections::HashMap<u32, Vec<Held>>,
}

/// A link owned through its program (rather than a pin).
enum Held {
    Tc(&'static str, aya::programs::tc::SchedClassifierLinkId),
    Xdp(aya::programs::xdp::XdpLinkId),
}

impl Programs {
    /// The kernel object, as built.
    pub fn object() -> &'static [u8] {
        OBJECT
    }

    /// Loads the kernel object and verifies every program; attaches nothing yet. With
    /// `map_dir`, the stateful maps are pinned there, or taken over from there when a previous
    /// agent of this build pinned them.
    pub fn load(
        opts: LoadOptions,
        map_dir: Option<&std::path::Path>,
    ) -> Result<Programs, LoadError> {
        crate::features::require(opts.ingress)?;
        let mut loader = EbpfLoader::new();
        loader
            .override_global(SAMPLE_BYTES_GLOBAL, &opts.sample_bytes, true)
            .override_global(aya_log::LEVEL, &opts.kernel_log_level, false)
            .map_max_entries(FLOWS_MAP, opts.flow_capacity);
        if let Some(dir) = map_dir {
            for name in STATEFUL_MAPS {
                loader.map_pin_path(name, dir.join(name));
            }
        }
        let mut ebpf = loader.load(OBJECT).map_err(|e| {
            if lacks_privileges(&e) {
                LoadError::Privileges(e)
            } else {
                LoadError::Object(e)
            }
        })?;
        // Verification is most of an agent's start (seconds per observer): the programs are
        // verified side by side, one thread each, and each one's time is logged (debug).
        let tc_ingress = opts.ingress != Some(AttachMode::Xdp);
        let xdp = opts.ingress != Some(AttachMode::Tc);
        let wanted = |name: &str| match name {
            TC_INGRESS | TC_ENFORCE_INGRESS => tc_ingress,
            TC_EGRESS | TC_ENFORCE_EGRESS => true,
            XDP_INGRESS | XDP_ENFORCE => xdp,
            _ => false,
        };
        let results: Vec<(&'static str, Result<(), ProgramError>)> = std::thread::scope(|s| {
            let running: Vec<_> = ebpf
                .programs_mut()
                .filter(|(name, _)| wanted(name))
                .filter_map(|(name, prog)| {
                    let name = OBSERVE_AND_ENFORCE.into_iter().find(|p| *p == name)?;
                    Some((name, s.spawn(move || verify(name, prog))))
                })
                .collect();
            running
                .into_iter()
                .map(|(name, handle)| {
                    let result = handle.join().unwrap_or_else(|_| {
                        Err(ProgramError::IOError(io::Error::other(
                            "verifier thread panicked",
                        )))
                    });
                    (name, result)
                })
                .collect()
        });
        for (program, result) in results {
            result.map_err(|source| LoadError::Program { program, source })?;
        }
        // The observers tail-call the enforce programs through these arrays.
        for (map, program, _) in [
            (ENFORCE_TC_INGRESS_MAP, TC_ENFORCE_INGRESS, tc_ingress),
            (ENFORCE_TC_EGRESS_MAP, TC_ENFORCE_EGRESS, true),
            (ENFORCE_XDP_MAP, XDP_ENFORCE, xdp),
        ]
        .into_iter()
        .filter(|(_, _, on)| *on)
        {
            let fd = ebpf
                .program(program)
                .ok_or(LoadError::MissingProgram(program))?
                .fd()
                .map_err(|source| LoadError::Program { program, source })?
                .try_clone()
                .map_err(|e| LoadError::Program {
                    program,
                    source: ProgramError::IOError(e),
                })?;
            let mut array =
                ProgramArray::try_from(ebpf.map_mut(map).ok_or(LoadError::MissingMap(map))?)
                    .map_err(|source| LoadError::Map { name: map, source })?;
            array
                .set(0, &fd, 0)
                .map_err(|source| LoadError::Map { name: map, source })?;
        }
        Ok(Programs {
            ebpf,
            attachments: Vec::new(),
            pinned: false,
            held: std::collections::HashMap::new(),
        })
    }

    /// Attaches to `iface`: TC on both sides, or XDP ingress plus TC egress. With `pins`, a
    /// link a previous agent left on a side gets our program swapped in (no gap), and in
    /// keep-enforcing mode new links are pinned so they outlive us.
    pub fn attach(
        &mut self,
        iface: &str,
        mode: AttachMode,
        mut pins: Option<&mut Pins>,
    ) -> Result<Attachment, AttachError> {
        let ifindex = ifindex(iface).ok_or_else(|| AttachError::NoSuchInterface {
            iface: iface.to_owned(),
        })?;
        // Kernels >= 6.6 attach through TCX links and need no qdisc; older ones need clsact.
        if let Err(e) = tc::qdisc_add_clsact(iface) {
            debug!(iface, error = %e, "clsact qdisc not added (present already, or TCX in use)");
        }
        let (ingress, side) = match mode {
            AttachMode::Tc => (TC_INGRESS, Side::TcIngress),
            AttachMode::Xdp => (XDP_INGRESS, Side::XdpIngress),
        };
        if self.attachments.iter().any(|a| a.ifindex == ifindex) {
            return Err(AttachError::AlreadyAttached {
                iface: iface.to_owned(),
            });
        }
        let mut adopted = false;
        self.pinned |= pins.as_deref().is_some_and(Pins::keeps_links);
        for (program, side) in [(ingress, side), (TC_EGRESS, Side::TcEgress)] {
            let at = Site {
                program,
                iface,
                ifindex,
                side,
            };
            let taken = match pins.as_deref_mut() {
                Some(p) => p.take_link(ifindex, side).map_err(|e| at.pin_err(e))?,
                None => None,
            };
            adopted |= taken.is_some();
            let held = match (taken, side) {
                (Some(link), Side::TcIngress | Side::TcEgress) => self.adopt_tc(&at, link),
                (Some(link), Side::XdpIngress) => self.adopt_xdp(&at, link),
                (None, Side::TcIngress) => {
                    self.attach_tc(&at, TcAttachType::Ingress, pins.as_deref())
                }
                (None, Side::TcEgress) => {
                    self.attach_tc(&at, TcAttachType::Egress, pins.as_deref())
                }
                (None, Side::XdpIngress) => self.attach_xdp(&at, pins.as_deref()),
            };
            match held {
                Ok(Some(h)) => self.held.entry(ifindex).or_default().push(h),
                Ok(None) => {}
                Err(e) => {
                    // Half an interface is no attachment: the side already attached goes too.
                    self.release_links(ifindex, pins.as_deref());
                    return Err(e);
                }
            }
        }
        info!(
            iface,
            ifindex,
            ingress,
            egress = TC_EGRESS,
            adopted,
            "attached"
        );
        let attachment = Attachment {
            iface: iface.to_owned(),
            ifindex,
            ingress,
            egress: TC_EGRESS,
            adopted,
        };
        self.attachments.push(attachment.clone());
        Ok(attachment)
    }

    fn attach_tc(
        &mut self,
        at: &Site<'_>,
        side: TcAttachType,
        pins: Option<&Pins>,
    ) -> Result<Option<Held>, AttachError> {
        let prog: &mut SchedClassifier = program_mut(&mut self.ebpf, at.program)?;
        let id = prog.attach(at.iface, side).map_err(|e| at.attach_err(e))?;
        if let Some(pins) = pins.filter(|p| p.keeps_links()) {
            keep(at, pins, prog.take_link(id))?;
            return Ok(None);
        }
        Ok(Some(Held::Tc(at.program, id)))
    }

    fn attach_xdp(
        &mut self,
        at: &Site<'_>,
        pins: Option<&Pins>,
    ) -> Result<Option<Held>, AttachError> {
        let prog: &mut Xdp = program_mut(&mut self.ebpf, at.program)?;
        // Native first (veth, most cloud NICs); generic where the driver has no XDP support.
        let id = match prog.attach(at.iface, XdpMode::Driver) {
            Ok(id) => id,
            Err(native) => {
                warn!(iface = at.iface, error = %native, "native XDP unavailable, using generic (SKB) mode");
                prog.attach(at.iface, XdpMode::Skb)
                    .map_err(|e| at.attach_err(e))?
            }
        };
        if let Some(pins) = pins.filter(|p| p.keeps_links()) {
            keep(at, pins, prog.take_link(id))?;
            return Ok(None);
        }
        Ok(Some(Held::Xdp(id)))
    }

    /// Swaps our program into a link a previous agent left (one `bpf_link_update`: every
    /// packet meets either its program or ours).
    fn adopt_tc(&mut self, at: &Site<'_>, link: FdLink) -> Result<Option<Held>, AttachError> {
        let link = SchedClassifierLink::try_from(link).map_err(|e| at.link_err(e))?;
        let prog: &mut SchedClassifier = program_mut(&mut self.ebpf, at.program)?;
        let id = prog.attach_to_link(link).map_err(|e| at.attach_err(e))?;
        Ok(Some(Held::Tc(at.program, id)))
    }

    fn adopt_xdp(&mut self, at: &Site<'_>, link: FdLink) -> Result<Option<Held>, AttachError> {
        let link = XdpLink::try_from(link).map_err(|e| at.link_err(e))?;
        let prog: &mut Xdp = program_mut(&mut self.ebpf, at.program)?;
        let id = prog.attach_to_link(link).map_err(|e| at.attach_err(e))?;
        Ok(Some(Held::Xdp(id)))
    }

    /// Lets go of an interface (it went away, or its attach failed half way): our links on
    /// it are closed and its pins removed, so nothing of ours stays on it.
    pub fn release(&mut self, ifindex: u32, pins: Option<&Pins>) -> Option<Attachment> {
        self.release_links(ifindex, pins);
        let at = self.attachments.iter().position(|a| a.ifindex == ifindex)?;
        Some(self.attachments.swap_remove(at))
    }

    fn release_links(&mut self, ifindex: u32, pins: Option<&Pins>) {
        for held in self.held.remove(&ifindex).unwrap_or_default() {
            let released = match held {
                Held::Tc(program, id) => program_mut::<SchedClassifier>(&mut self.ebpf, program)
                    .ok()
                    .map(|p| p.detach(id)),
                Held::Xdp(id) => program_mut::<Xdp>(&mut self.ebpf, XDP_INGRESS)
                    .ok()
                    .map(|p| p.detach(id)),
            };
            if let Some(Err(e)) = released {
                // A device that went away took its links with it.
                debug!(ifindex, error = %e, "link already gone");
            }
        }
        if let Some(pins) = pins
            && let Err(e) = pins.release_links(ifindex)
        {
            warn!(ifindex, error = %e, "cannot remove the pins of a released interface");
        }
    }

    /// Loads the socket-owner programs and attaches them to the cgroup v2 root, where they see
    /// every socket on the host, in every container and network namespace. Through bpf_links,
    /// which always sit alongside other programs on the cgroup (the kernel refuses attach flags
    /// on them, hence `Single`); they allow every operation.
    pub fn attach_owners(&mut self, cgroup_root: &std::path::Path) -> Result<(), AttachError> {
        let root = std::fs::File::open(cgroup_root).map_err(|e| AttachError::Cgroup {
            path: cgroup_root.to_owned(),
            source: e,
        })?;
        let at = |program: &'static str| {
            move |source| AttachError::Attach {
                program,
                iface: cgroup_root.display().to_string(),
                source,
            }
        };
        for program in OWNER_SOCK_ADDR {
            let prog: &mut CgroupSockAddr = program_mut(&mut self.ebpf, program)?;
            prog.load()
                .map_err(|source| LoadError::Program { program, source })?;
            prog.attach(&root, CgroupAttachMode::Single)
                .map_err(at(program))?;
        }
        for program in OWNER_SOCK {
            let prog: &mut CgroupSock = program_mut(&mut self.ebpf, program)?;
            prog.load()
                .map_err(|source| LoadError::Program { program, source })?;
            prog.attach(&root, CgroupAttachMode::Single)
                .map_err(at(program))?;
        }
        let prog: &mut SockOps = program_mut(&mut self.ebpf, OWNER_SOCK_OPS)?;
        prog.load().map_err(|source| LoadError::Program {
            program: OWNER_SOCK_OPS,
            source,
        })?;
        prog.attach(&root, CgroupAttachMode::Single)
            .map_err(at(OWNER_SOCK_OPS))?;
        info!(cgroup = %cgroup_root.display(), "socket owners followed");
        // Command lines of processes too short-lived for /proc: best effort.
        for (program, syscall) in OWNER_EXEC {
            let attached = program_mut::<TracePoint>(&mut self.ebpf, program)
                .map_err(|e| e.to_string())
                .and_then(|p| {
                    p.load().map_err(|e| e.to_string())?;
                    p.attach("syscalls", syscall).map_err(|e| e.to_string())
                });
            if let Err(e) = attached {
                warn!(program, error = %e, "command lines of short-lived processes are not recorded");
            }
        }
        Ok(())
    }

    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    pub fn take_flows(&mut self) -> Result<HashMap<MapData, FlowKey, FlowState>, LoadError> {
        take(&mut self.ebpf, FLOWS_MAP, HashMap::try_from)
    }

    /// The flow table as the tracker reads it (batched walks).
    pub fn take_flow_table(&mut self) -> Result<crate::flowtable::KernelFlows, LoadError> {
        take(
            &mut self.ebpf,
            FLOWS_MAP,
            crate::flowtable::KernelFlows::new,
        )
    }

    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        take(&mut self.ebpf, EVENTS_MAP, RingBuf::try_from)
    }

    /// A hash map by name, for the modules that read one (socket owners).
    pub fn take_hash_map<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<HashMap<MapData, K, V>, LoadError> {
        take(&mut self.ebpf, name, HashMap::try_from)
    }

    pub fn take_stats(&mut self) -> Result<PerCpuArray<MapData, u64>, LoadError> {
        take(&mut self.ebpf, STATS_MAP, PerCpuArray::try_from)
    }

    pub fn take_policy(&mut self) -> Result<PolicyMaps, LoadError> {
        Ok(PolicyMaps {
            policy: take(&mut self.ebpf, POLICY_MAP, Array::try_from)?,
            active: take(&mut self.ebpf, POLICY_ACTIVE_MAP, Array::try_from)?,
            nets: take(&mut self.ebpf, NETS_MAP, LpmTrie::try_from)?,
            ports: take(&mut self.ebpf, PORTS_MAP, HashMap::try_from)?,
            cgroups: take(&mut self.ebpf, EXEMPT_CGROUPS_MAP, HashMap::try_from)?,
            local_ports: take(&mut self.ebpf, EXEMPT_PORTS_MAP, HashMap::try_from)?,
            weak_suites: take(&mut self.ebpf, WEAK_SUITES_MAP, HashMap::try_from)?,
            weak_loaded: false,
            installed: [Vec::new(), Vec::new()],
            installed_ports: [Vec::new(), Vec::new()],
        })
    }

    /// The loaded object, for aya-log and for BPF_PROG_TEST_RUN in tests.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}

impl Drop for Programs {
    fn drop(&mut self) {
        // Dropping the Ebpf closes every link fd: unpinned links detach; say so per interface.
        let what = if self.pinned {
            "leaving the programs attached and enforcing (pinned)"
        } else {
            "detaching"
        };
        for a in &self.attachments {
            info!(iface = %a.iface, "{what}");
        }
    }
}

/// Loads (verifies) one packet program.
fn verify(name: &'static str, prog: &mut aya::programs::Program) -> Result<(), ProgramError> {
    let started = std::time::Instant::now();
    let result = match prog {
        aya::programs::Program::SchedClassifier(p) => p.load(),
        aya::programs::Program::Xdp(p) => p.load(),
        _ => Err(ProgramError::UnexpectedProgramType),
    };
    debug!(
        program = name,
        ms = started.elapsed().as_millis(),
        "verified"
    );
    result
}

/// Pins a link just attached (keep-enforcing): it outlives us, and is no longer ours to detach.
fn keep<L>(at: &Site<'_>, pins: &Pins, link: Result<L, ProgramError>) -> Result<(), AttachError>
where
    FdLink: TryFrom<L, Error = aya::programs::links::LinkError>,
{
    let link = FdLink::try_from(link.map_err(|e| at.attach_err(e))?).map_err(|e| at.link_err(e))?;
    pins.keep_link(at.ifindex, at.side, link)
        .map_err(|e| at.pin_err(e))
}

/// Where one program attaches, for its errors.
struct Site<'a> {
    program: &'static str,
    iface: &'a str,
    ifindex: u32,
    side: Side,
}

impl Site<'_> {
    fn attach_err(&self, source: ProgramError) -> AttachError {
        AttachError::Attach {
            program: self.program,
            iface: self.iface.to_owned(),
            source,
        }
    }

    fn link_err(&self, source: aya::programs::links::LinkError) -> AttachError {
        AttachError::Link {
            program: self.program,
            iface: self.iface.to_owned(),
            source: Box::new(source),
        }
    }

    fn pin_err(&self, e: PinError) -> AttachError {
        AttachError::Pin {
            program: self.program,
            iface: self.iface.to_owned(),
            source: Box::new(e),
        }
    }
}

fn take<T>(
    ebpf: &mut Ebpf,
    name: &'static str,
    convert: impl FnOnce(aya::maps::Map) -> Result<T, MapError>,
) -> Result<T, LoadError> {
    let map = ebpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
    convert(map).map_err(|source| LoadError::Map { name, source })
}

/// The kernel's policy maps. [`PolicyMaps::install`] writes a policy into the slot the programs
/// are not reading and then flips the active slot: one map write switches policies, so there is
/// no moment with a half-written policy or none.
pub struct PolicyMaps {
    policy: Array<MapData, KernelPolicy>,
    active: Array<MapData, u32>,
    nets: LpmTrie<MapData, NetKey, NetValue>,
    ports: HashMap<MapData, u32, u64>,
    cgroups: HashMap<MapData, u64, CgroupRules>,
    local_ports: HashMap<MapData, u32, CgroupRules>,
    weak_suites: HashMap<MapData, u16, u8>,
    weak_loaded: bool,
    /// What each slot holds in the network and port maps, to clear it later.
    installed: [Vec<(u32, NetKey)>; 2],
    installed_ports: [Vec<u32>; 2],
}

#[derive(Debug, thiserror::Error)]
#[error("cannot update kernel map {map}: {source}")]
pub struct PolicyMapError {
    map: &'static str,
    #[source]
    source: MapError,
}

fn map_err(map: &'static str) -> impl Fn(MapError) -> PolicyMapError {
    move |source| PolicyMapError { map, source }
}

impl PolicyMaps {
    /// Installs `policy` with where its process exclusions resolved to.
    pub fn install(
        &mut self,
        policy: &Compiled,
        resolved: &Resolved,
    ) -> Result<(), PolicyMapError> {
        if !self.weak_loaded {
            for suite in sealwatch_inspect::tls::weak_suites() {
                self.weak_suites
                    .insert(suite, 1, 0)
                    .map_err(map_err(WEAK_SUITES_MAP))?;
            }
            self.weak_loaded = true;
        }
        let current = self.active_slot()?;
        let next = current ^ 1;
        self.clear_slot(next)?;
        for (len, key, value) in &policy.nets {
            let key = NetKey {
                slot: next as u8,
                ..*key
            };
            self.nets
                .insert(&Key::new(*len, key), value, 0)
                .map_err(map_err(NETS_MAP))?;
            self.installed[next as usize].push((*len, key));
        }
        for &(port, rules) in &policy.ports {
            let k = slot_port_key(next, port);
            self.ports.insert(k, rules, 0).map_err(map_err(PORTS_MAP))?;
            self.installed_ports[next as usize].push(k);
        }
        write_slot(
            &mut self.cgroups,
            next,
            &resolved.cgroups,
            EXEMPT_CGROUPS_MAP,
        )?;
        write_slot(
            &mut self.local_ports,
            next,
            &resolved.ports,
            EXEMPT_PORTS_MAP,
        )?;
        self.policy
            .set(next, policy.kernel, 0)
            .map_err(map_err(POLICY_MAP))?;
        self.active
            .set(0, next, 0)
            .map_err(map_err(POLICY_ACTIVE_MAP))?;
        // The old slot is no longer read: empty it so the maps hold one policy.
        self.clear_slot(current)
    }

    /// Updates the active slot's process bits in place (processes started or gone since the
    /// policy was installed); the rules themselves do not change.
    pub fn refresh_processes(&mut self, resolved: &Resolved) -> Result<(), PolicyMapError> {
        let current = self.active_slot()?;
        write_slot(
            &mut self.cgroups,
            current,
            &resolved.cgroups,
            EXEMPT_CGROUPS_MAP,
        )?;
        write_slot(
            &mut self.local_ports,
            current,
            &resolved.ports,
            EXEMPT_PORTS_MAP,
        )
    }

    fn active_slot(&self) -> Result<u32, PolicyMapError> {
        Ok(self.active.get(&0, 0).map_err(map_err(POLICY_ACTIVE_MAP))? & 1)
    }

    fn clear_slot(&mut self, slot: u32) -> Result<(), PolicyMapError> {
        for (len, key) in std::mem::take(&mut self.installed[slot as usize]) {
            match self.nets.remove(&Key::new(len, key)) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(NETS_MAP)(e)),
            }
        }
        for k in std::mem::take(&mut self.installed_ports[slot as usize]) {
            match self.ports.remove(&k) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(PORTS_MAP)(e)),
            }
        }
        write_slot(
            &mut self.cgroups,
            slot,
            &BTreeMap::new(),
            EXEMPT_CGROUPS_MAP,
        )?;
        write_slot(
            &mut self.local_ports,
            slot,
            &BTreeMap::new(),
            EXEMPT_PORTS_MAP,
        )
    }
}

/// Sets slot `slot` of every entry of a per-slot bitmask map to what `want` gives it (0 for keys
/// it does not list), keeping the other slot; removes entries left with no bits.
fn write_slot<K: aya::Pod + Ord + Copy>(
    map: &mut HashMap<MapData, K, CgroupRules>,
    slot: u32,
    want: &BTreeMap<K, u64>,
    name: &'static str,
) -> Result<(), PolicyMapError> {
    let slot = (slot & 1) as usize;
    let existing: Vec<(K, CgroupRules)> = map.iter().filter_map(Result::ok).collect();
    for (key, mut rules) in existing {
        let bits = want.get(&key).copied().unwrap_or(0);
        if rules[slot] == bits {
            continue;
        }
        rules[slot] = bits;
        if rules == [0, 0] {
            map.remove(&key).map_err(map_err(name))?;
        } else {
            map.insert(key, rules, 0).map_err(map_err(name))?;
        }
    }
    for (&key, &bits) in want {
        if bits == 0 || map.get(&key, 0).is_ok() {
            continue;
        }
        let mut rules = [0; 2];
        rules[slot] = bits;
        map.insert(key, rules, 0).map_err(map_err(name))?;
    }
    Ok(())
}

fn program_mut<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, LoadError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .ok_or(LoadError::MissingProgram(name))?;
    prog.try_into().map_err(|source| LoadError::Program {
        program: name,
        source,
    })
}

/// Interface index of `name`, if it exists in this network namespace.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

/// Name of interface `index` in this network namespace.
pub fn ifname(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has room for IF_NAMESIZE bytes as the call requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// The verifier's own words are the useful part of a load failure; keep its last lines.
fn verifier_excerpt(e: &ProgramError) -> String {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log
                .lines()
                .rev()
                .filter(|l| !l.trim().is_empty())
                .take(6)
                .collect();
            let hint = if io_error.kind() == io::ErrorKind::PermissionDenied && tail.is_empty() {
                " (loading BPF programs needs root, or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON)"
            } else {
                ""
            };
            let excerpt: Vec<&str> = tail.into_iter().rev().collect();
            format!("{io_error}{hint}; verifier: {}", excerpt.join(" | "))
        }
        other => other.to_string(),
    }
}

/// Map creation is the first privileged step of a load: EPERM there means missing capabilities.
fn lacks_privileges(e: &EbpfError) -> bool {
    matches!(e, EbpfError::MapError(MapError::CreateError { io_error, .. })
        if io_error.kind() == io::ErrorKind::PermissionDenied)
}
