//! The kernel features the agent needs, probed before the kernel object is loaded. A kernel
//! without one gets an error that names it and the Linux version that brought it, instead of
//! an errno from map creation or a verifier log about an unknown helper.
//!
//! A probe that fails for another reason (no privileges, say) decides nothing: loading then
//! fails with its own, clearer error.

use aya::{
    maps::MapType,
    programs::ProgramType,
    sys::{BpfHelper, is_helper_supported, is_map_supported, is_program_supported},
};

use crate::cli::AttachMode;

/// A kernel feature the agent cannot work without.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the kernel lacks {what} (Linux {since}+), needed for {needed_for}")]
pub struct Missing {
    pub what: &'static str,
    pub since: &'static str,
    pub needed_for: &'static str,
}

struct MapNeed {
    map: MapType,
    what: &'static str,
    since: &'static str,
    needed_for: &'static str,
}

const MAPS: [MapNeed; 6] = [
    MapNeed {
        map: MapType::Hash,
        what: "BPF hash maps",
        since: "3.19",
        needed_for: "policy ports and exemptions",
    },
    MapNeed {
        map: MapType::ProgramArray,
        what: "BPF program arrays (tail calls)",
        since: "4.2",
        needed_for: "switching enforcement on and off",
    },
    MapNeed {
        map: MapType::PerCpuArray,
        what: "per-CPU BPF arrays",
        since: "4.6",
        needed_for: "counters and packet scratch space",
    },
    MapNeed {
        map: MapType::LruHash,
        what: "LRU hash maps",
        since: "4.10",
        needed_for: "the flow table",
    },
    MapNeed {
        map: MapType::LpmTrie,
        what: "LPM trie maps",
        since: "4.11",
        needed_for: "policy networks",
    },
    MapNeed {
        map: MapType::RingBuf,
        what: "BPF ring buffers (BPF_MAP_TYPE_RINGBUF)",
        since: "5.8",
        needed_for: "events from the kernel programs to the agent",
    },
];

struct HelperNeed {
    helper: BpfHelper,
    what: &'static str,
    since: &'static str,
    needed_for: &'static str,
}

const PACKET_HELPERS: [HelperNeed; 2] = [
    HelperNeed {
        helper: BpfHelper::BPF_FUNC_skb_cgroup_id,
        what: "the bpf_skb_cgroup_id helper",
        since: "4.18",
        needed_for: "exempting workloads by cgroup at the TC hooks",
    },
    HelperNeed {
        helper: BpfHelper::BPF_FUNC_ktime_get_coarse_ns,
        what: "the bpf_ktime_get_coarse_ns helper",
        since: "5.11",
        needed_for: "flow timestamps on the packet path",
    },
];

const XDP_HELPERS: [HelperNeed; 2] = [
    HelperNeed {
        helper: BpfHelper::BPF_FUNC_ktime_get_coarse_ns,
        what: "the bpf_ktime_get_coarse_ns helper in XDP programs",
        since: "5.11",
        needed_for: "flow timestamps on the packet path",
    },
    HelperNeed {
        helper: BpfHelper::BPF_FUNC_xdp_load_bytes,
        what: "the bpf_xdp_load_bytes helper",
        since: "5.18",
        needed_for: "sampling payload bytes at the XDP hook (use --attach tc)",
    },
];

/// The answer of one probe: `Some(false)` only when the kernel said it does not know the
/// feature; errors (privileges, a kernel without the bpf() call) are told apart by the caller.
enum Probe {
    Yes,
    No,
    /// The probe itself failed: the errno, if any.
    Failed(Option<i32>),
}

fn map_probe(map: MapType) -> Probe {
    match is_map_supported(map) {
        Ok(true) => Probe::Yes,
        Ok(false) => Probe::No,
        Err(e) => Probe::Failed(e.io_error.raw_os_error()),
    }
}

fn program_probe(result: Result<bool, aya::programs::ProgramError>) -> Probe {
    match result {
        Ok(true) => Probe::Yes,
        Ok(false) => Probe::No,
        Err(aya::programs::ProgramError::SyscallError(e)) => {
            Probe::Failed(e.io_error.raw_os_error())
        }
        Err(_) => Probe::Failed(None),
    }
}

/// The bpf() system call itself, whose absence every probe reports as ENOSYS.
const NO_BPF_SYSCALL: Missing = Missing {
    what: "the bpf() system call (CONFIG_BPF_SYSCALL)",
    since: "3.18",
    needed_for: "loading any kernel program",
};

/// Checks what an agent attaching with `ingress` needs (`None`: every hook, as the kernel
/// tests load them all).
pub fn require(ingress: Option<AttachMode>) -> Result<(), Missing> {
    let verdict = |probe: Probe, missing: Missing| match probe {
        Probe::Yes => Ok(()),
        Probe::No => Err(missing),
        Probe::Failed(Some(libc::ENOSYS)) => Err(NO_BPF_SYSCALL),
        Probe::Failed(_) => Ok(()),
    };
    for need in &MAPS {
        verdict(
            map_probe(need.map),
            Missing {
                what: need.what,
                since: need.since,
                needed_for: need.needed_for,
            },
        )?;
    }
    // Egress is always a TC program; ingress is TC or XDP.
    verdict(
        program_probe(is_program_supported(ProgramType::SchedClassifier)),
        Missing {
            what: "TC BPF programs (sched_cls)",
            since: "4.1",
            needed_for: "the egress hook, and ingress with --attach tc",
        },
    )?;
    for need in &PACKET_HELPERS {
        verdict(
            program_probe(is_helper_supported(
                ProgramType::SchedClassifier,
                need.helper,
            )),
            Missing {
                what: need.what,
                since: need.since,
                needed_for: need.needed_for,
            },
        )?;
    }
    if matches!(ingress, None | Some(AttachMode::Xdp)) {
        verdict(
            program_probe(is_program_supported(ProgramType::Xdp)),
            Missing {
                what: "XDP programs",
                since: "4.8",
                needed_for: "the ingress hook with --attach xdp (use --attach tc)",
            },
        )?;
        for need in &XDP_HELPERS {
            verdict(
                program_probe(is_helper_supported(ProgramType::Xdp, need.helper)),
                Missing {
                    what: need.what,
                    since: need.since,
                    needed_for: need.needed_for,
                },
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_kernel_has_what_every_hook_needs() {
        // Root or not: without privileges the probes fail and decide nothing.
        assert_eq!(require(None), Ok(()));
        assert_eq!(require(Some(AttachMode::Tc)), Ok(()));
    }

    #[test]
    fn a_missing_feature_reads_as_what_since_and_why() {
        let m = &MAPS[5];
        let missing = Missing {
            what: m.what,
            since: m.since,
            needed_for: m.needed_for,
        };
        assert_eq!(
            missing.to_string(),
            "the kernel lacks BPF ring buffers (BPF_MAP_TYPE_RINGBUF) (Linux 5.8+), needed for \
             events from the kernel programs to the agent"
        );
    }
}
