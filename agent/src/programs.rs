//! Loading the kernel object and attaching its programs. [`Programs`] owns every attachment:
//! dropping it detaches them all.

use std::{ffi::CString, io};

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{HashMap, MapData, MapError, PerCpuArray, RingBuf},
    programs::{ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode, tc},
};
use sealwatch_common::{
    EVENTS_MAP, FLOWS_MAP, SAMPLE_BYTES_GLOBAL, STATS_MAP,
    flow::{FlowKey, FlowState},
};
use tracing::{debug, info, warn};

use crate::cli::AttachMode;

/// The compiled kernel programs (built by build.rs from `ebpf/`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sealwatch"));

const TC_INGRESS: &str = "tc_ingress";
const TC_EGRESS: &str = "tc_egress";
const XDP_INGRESS: &str = "xdp_ingress";

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
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
    #[error("cannot attach {program} to {iface}: {source}")]
    Attach {
        program: &'static str,
        iface: String,
        #[source]
        source: ProgramError,
    },
}

/// Load-time settings baked into the kernel object.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    pub sample_bytes: u16,
    pub flow_capacity: u32,
    /// aya-log level for kernel log statements (0 = off, 4 = debug).
    pub kernel_log_level: u8,
}

/// One interface's attachments, for reporting.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub iface: String,
    pub ifindex: u32,
    pub ingress: &'static str,
    pub egress: &'static str,
}

pub struct Programs {
    ebpf: Ebpf,
    attachments: Vec<Attachment>,
}

impl Programs {
    /// Loads the kernel object and verifies every program; attaches nothing yet.
    pub fn load(opts: LoadOptions) -> Result<Programs, LoadError> {
        let mut ebpf = EbpfLoader::new()
            .override_global(SAMPLE_BYTES_GLOBAL, &opts.sample_bytes, true)
            .override_global(aya_log::LEVEL, &opts.kernel_log_level, false)
            .map_max_entries(FLOWS_MAP, opts.flow_capacity)
            .load(OBJECT)
            .map_err(|e| {
                if lacks_privileges(&e) {
                    LoadError::Privileges(e)
                } else {
                    LoadError::Object(e)
                }
            })?;
        for program in [TC_INGRESS, TC_EGRESS] {
            let prog: &mut SchedClassifier = program_mut(&mut ebpf, program)?;
            prog.load()
                .map_err(|source| LoadError::Program { program, source })?;
        }
        let xdp: &mut Xdp = program_mut(&mut ebpf, XDP_INGRESS)?;
        xdp.load().map_err(|source| LoadError::Program {
            program: XDP_INGRESS,
            source,
        })?;
        Ok(Programs {
            ebpf,
            attachments: Vec::new(),
        })
    }

    /// Attaches to `iface`: TC on both sides, or XDP ingress plus TC egress.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<Attachment, AttachError> {
        let ifindex = ifindex(iface).ok_or_else(|| AttachError::NoSuchInterface {
            iface: iface.to_owned(),
        })?;
        // Kernels >= 6.6 attach through TCX links and need no qdisc; older ones need clsact.
        if let Err(e) = tc::qdisc_add_clsact(iface) {
            debug!(iface, error = %e, "clsact qdisc not added (present already, or TCX in use)");
        }
        let ingress = match mode {
            AttachMode::Tc => {
                self.attach_tc(TC_INGRESS, iface, TcAttachType::Ingress)?;
                TC_INGRESS
            }
            AttachMode::Xdp => {
                self.attach_xdp(iface)?;
                XDP_INGRESS
            }
        };
        self.attach_tc(TC_EGRESS, iface, TcAttachType::Egress)?;
        info!(iface, ifindex, ingress, egress = TC_EGRESS, "attached");
        let attachment = Attachment {
            iface: iface.to_owned(),
            ifindex,
            ingress,
            egress: TC_EGRESS,
        };
        self.attachments.push(attachment.clone());
        Ok(attachment)
    }

    fn attach_tc(
        &mut self,
        program: &'static str,
        iface: &str,
        side: TcAttachType,
    ) -> Result<(), AttachError> {
        let attach_err = |source| AttachError::Attach {
            program,
            iface: iface.to_owned(),
            source,
        };
        let prog: &mut SchedClassifier = program_mut(&mut self.ebpf, program)?;
        prog.attach(iface, side).map_err(attach_err)?;
        Ok(())
    }

    fn attach_xdp(&mut self, iface: &str) -> Result<(), AttachError> {
        let attach_err = |source| AttachError::Attach {
            program: XDP_INGRESS,
            iface: iface.to_owned(),
            source,
        };
        let prog: &mut Xdp = program_mut(&mut self.ebpf, XDP_INGRESS)?;
        // Native first (veth, most cloud NICs); generic where the driver has no XDP support.
        match prog.attach(iface, XdpMode::Driver) {
            Ok(_) => Ok(()),
            Err(native) => {
                warn!(iface, error = %native, "native XDP unavailable, using generic (SKB) mode");
                prog.attach(iface, XdpMode::Skb)
                    .map(|_| ())
                    .map_err(attach_err)
            }
        }
    }

    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    pub fn take_flows(&mut self) -> Result<HashMap<MapData, FlowKey, FlowState>, LoadError> {
        let map = self
            .ebpf
            .take_map(FLOWS_MAP)
            .ok_or(LoadError::MissingMap(FLOWS_MAP))?;
        HashMap::try_from(map).map_err(|source| LoadError::Map {
            name: FLOWS_MAP,
            source,
        })
    }

    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        let map = self
            .ebpf
            .take_map(EVENTS_MAP)
            .ok_or(LoadError::MissingMap(EVENTS_MAP))?;
        RingBuf::try_from(map).map_err(|source| LoadError::Map {
            name: EVENTS_MAP,
            source,
        })
    }

    pub fn take_stats(&mut self) -> Result<PerCpuArray<MapData, u64>, LoadError> {
        let map = self
            .ebpf
            .take_map(STATS_MAP)
            .ok_or(LoadError::MissingMap(STATS_MAP))?;
        PerCpuArray::try_from(map).map_err(|source| LoadError::Map {
            name: STATS_MAP,
            source,
        })
    }

    /// The loaded object, for aya-log and for BPF_PROG_TEST_RUN in tests.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}

impl Drop for Programs {
    fn drop(&mut self) {
        // Dropping the Ebpf closes every link fd and detaches the programs; say so per interface.
        for a in &self.attachments {
            info!(iface = %a.iface, "detaching");
        }
    }
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
