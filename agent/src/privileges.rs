//! Least privilege: once the programs are loaded and attached, the agent gives up every
//! capability it does not use while it runs ([`RUNTIME`]), in every thread, from the effective,
//! permitted, inheritable, ambient and (when it may) bounding sets, so a bug in what parses
//! network bytes, kubelet answers or OTLP responses cannot load programs, write kernel memory,
//! change files or mount anything.
//!
//! Capabilities belong to threads, not processes: capset(2) changes the calling thread only,
//! and the agent has threads by the time it is attached (the kubelet reader, the OTLP worker,
//! tokio's blocking pool). Like libcap's psx, each thread is signalled and drops its own; threads
//! started afterwards inherit the reduced sets from their creator. The result is read back from
//! /proc/self/task/*/status.

use std::{
    io,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use tracing::{debug, info};

pub const CAP_DAC_READ_SEARCH: u32 = 2;
pub const CAP_SETPCAP: u32 = 8;
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_SYS_PTRACE: u32 = 19;
pub const CAP_BPF: u32 = 39;

/// What the agent still uses once attached, and why. Everything else goes, among them
/// CAP_SYS_ADMIN (cgroup attach, at start), CAP_PERFMON (tracepoints and program loads, at
/// start) and CAP_SYS_RESOURCE (memlock, at load).
pub const RUNTIME: [(u32, &str, &str); 4] = [
    (
        CAP_BPF,
        "CAP_BPF",
        "link interfaces that appear later (--all-interfaces) and pin their links (keep-enforcing)",
    ),
    (
        CAP_NET_ADMIN,
        "CAP_NET_ADMIN",
        "attach TC/XDP to interfaces that appear later; destroy blocked sockets (SOCK_DESTROY)",
    ),
    (
        CAP_SYS_PTRACE,
        "CAP_SYS_PTRACE",
        "read other users' /proc/PID/fd links: listening ports of process exclusions and services",
    ),
    (
        CAP_DAC_READ_SEARCH,
        "CAP_DAC_READ_SEARCH",
        "list other users' /proc/PID/fd directories, for the same",
    ),
];

/// The [`RUNTIME`] capabilities as a mask (bit N = capability N).
pub fn runtime_mask() -> u64 {
    RUNTIME.iter().fold(0, |m, (cap, _, _)| m | 1 << cap)
}

/// Names of the capabilities in `mask` that the agent knows by name, else their numbers.
pub fn names(mask: u64) -> Vec<String> {
    (0..64)
        .filter(|c| mask & (1u64 << c) != 0)
        .map(|c| {
            RUNTIME
                .iter()
                .find(|(cap, _, _)| *cap == c)
                .map_or_else(|| format!("cap{c}"), |(_, name, _)| (*name).to_owned())
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("cannot read capabilities: {0}")]
    Get(#[source] io::Error),
    #[error("cannot drop capabilities: {0}")]
    Set(#[source] io::Error),
    #[error("cannot install the capability-drop signal handler: {0}")]
    Signal(#[source] io::Error),
    #[error("thread {tid} still holds capabilities {extra:#x} beyond {keep:#x}")]
    Thread { tid: u32, extra: u64, keep: u64 },
}

/// What the agent holds after [`drop_to`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub effective: u64,
    pub permitted: u64,
    pub bounding: u64,
    /// The bounding set could be reduced (the agent had CAP_SETPCAP); without it the
    /// bounding set stays what the service manager or container runtime left.
    pub bounding_dropped: bool,
    pub threads: usize,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn capget() -> io::Result<(u64, u64)> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget(2) with a v3 header writes two `CapData` entries into `data`.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let wide = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
    Ok((
        wide(data[0].effective, data[1].effective),
        wide(data[0].permitted, data[1].permitted),
    ))
}

fn capset(effective: u64, permitted: u64) -> io::Result<()> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: 0,
        },
        CapData {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: 0,
        },
    ];
    // SAFETY: capset(2) with a v3 header reads two `CapData` entries from `data`.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Drops everything outside `keep` in the calling thread. Async-signal-safe (system calls
/// only): it also runs in the signal handler of the other threads. The bounding set goes
/// first, as dropping from it needs CAP_SETPCAP, which goes with the rest.
fn drop_in_this_thread(keep: u64) -> io::Result<()> {
    let (effective, permitted) = capget()?;
    if effective & (1 << CAP_SETPCAP) != 0 {
        for cap in 0..64u64 {
            if keep & (1 << cap) != 0 {
                continue;
            }
            // SAFETY: prctl with integer arguments; 1 means the capability is in the set,
            // -1 (EINVAL) that the kernel knows no such capability.
            unsafe {
                if libc::prctl(libc::PR_CAPBSET_READ, cap, 0, 0, 0) == 1
                    && libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
        }
    }
    // SAFETY: prctl with integer arguments. Ambient capabilities would survive an exec.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    capset(effective & keep, permitted & keep)
}

/// The mask the signalled threads apply, and how many did and failed.
static KEEP: AtomicU64 = AtomicU64::new(u64::MAX);
static DONE: AtomicUsize = AtomicUsize::new(0);
static FAILED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    let saved = io::Error::last_os_error().raw_os_error();
    if drop_in_this_thread(KEEP.load(Ordering::SeqCst)).is_err() {
        FAILED.fetch_add(1, Ordering::SeqCst);
    }
    DONE.fetch_add(1, Ordering::SeqCst);
    // errno belongs to the interrupted code.
    if let Some(e) = saved {
        // SAFETY: errno location of this thread.
        unsafe { *libc::__errno_location() = e };
    }
}

/// The signal that carries the request to the other threads: a real-time one no library of
/// ours uses (glibc keeps the ones below SIGRTMIN).
fn request_signal() -> libc::c_int {
    libc::SIGRTMIN() + 7
}

/// One thread's sets, from /proc/self/task/TID/status.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadCaps {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub bounding: u64,
    pub ambient: u64,
}

/// Parses the `Cap*` lines of a /proc status file.
pub fn parse_status(status: &str) -> ThreadCaps {
    let mut c = ThreadCaps::default();
    for line in status.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let Ok(v) = u64::from_str_radix(value.trim(), 16) else {
            continue;
        };
        match key {
            "CapInh" => c.inheritable = v,
            "CapPrm" => c.permitted = v,
            "CapEff" => c.effective = v,
            "CapBnd" => c.bounding = v,
            "CapAmb" => c.ambient = v,
            _ => {}
        }
    }
    c
}

fn threads() -> Vec<(u32, ThreadCaps)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let tid = e.file_name().to_str()?.parse().ok()?;
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            Some((tid, parse_status(&status)))
        })
        .collect()
}

fn holds_more(c: &ThreadCaps, keep: u64, bounding: bool) -> u64 {
    let extra = (c.effective | c.permitted | c.inheritable | c.ambient) & !keep;
    if bounding {
        extra | c.bounding & !keep
    } else {
        extra
    }
}

fn gettid() -> u32 {
    // SAFETY: gettid(2) has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// Drops every capability outside `keep` in every thread of the agent; returns what it holds
/// afterwards. Nothing can be regained: the permitted set shrinks with the effective one.
pub fn drop_to(keep: u64) -> Result<Held, PrivilegeError> {
    let (effective, _) = capget().map_err(PrivilegeError::Get)?;
    let bounding = effective & (1 << CAP_SETPCAP) != 0;
    KEEP.store(keep, Ordering::SeqCst);
    // SAFETY: a handler that makes system calls and touches atomics only; SA_RESTART so that
    // blocking calls in the interrupted threads go on.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(request_signal(), &action, std::ptr::null_mut()) != 0 {
            return Err(PrivilegeError::Signal(io::Error::last_os_error()));
        }
    }
    drop_in_this_thread(keep).map_err(PrivilegeError::Set)?;
    let me = gettid();
    // SAFETY: getpid(2) has no preconditions.
    let pid = unsafe { libc::getpid() };
    // A thread another thread starts while we signal inherits its creator's sets: rounds until
    // none holds more.
    for round in 0..20 {
        let pending: Vec<u32> = threads()
            .into_iter()
            .filter(|(tid, c)| *tid != me && holds_more(c, keep, bounding) != 0)
            .map(|(tid, _)| tid)
            .collect();
        if pending.is_empty() {
            break;
        }
        debug!(
            round,
            threads = pending.len(),
            "asking threads to drop capabilities"
        );
        let before = DONE.load(Ordering::SeqCst);
        for tid in &pending {
            // SAFETY: tgkill(2) to a thread of our own process; one that exited meanwhile
            // gives ESRCH, which is fine.
            unsafe { libc::syscall(libc::SYS_tgkill, pid, *tid as libc::c_int, request_signal()) };
        }
        let deadline = Instant::now() + Duration::from_millis(500);
        while DONE.load(Ordering::SeqCst) < before + pending.len() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    if FAILED.load(Ordering::SeqCst) > 0 {
        return Err(PrivilegeError::Set(io::Error::other(
            "a thread could not drop its capabilities",
        )));
    }
    let all = threads();
    if let Some((tid, c)) = all.iter().find(|(_, c)| holds_more(c, keep, bounding) != 0) {
        return Err(PrivilegeError::Thread {
            tid: *tid,
            extra: holds_more(c, keep, bounding),
            keep,
        });
    }
    let mine = all
        .iter()
        .find(|(tid, _)| *tid == me)
        .map(|(_, c)| *c)
        .unwrap_or_default();
    let held = Held {
        effective: mine.effective,
        permitted: mine.permitted,
        bounding: mine.bounding,
        bounding_dropped: bounding,
        threads: all.len(),
    };
    info!(
        kept = ?names(held.effective),
        bounding_dropped = held.bounding_dropped,
        threads = held.threads,
        "capabilities dropped to what the agent uses while it runs"
    );
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse() {
        let c = parse_status(
            "Name:\tsealwatch\nCapInh:\t0000000000000000\nCapPrm:\t0000008000081004\n\
             CapEff:\t0000008000081004\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n",
        );
        assert_eq!(c.effective, runtime_mask());
        assert_eq!(c.permitted, runtime_mask());
        assert_eq!(c.bounding, 0x1ff_ffff_ffff);
        assert_eq!(c.inheritable | c.ambient, 0);
    }

    #[test]
    fn the_runtime_set_is_bpf_net_admin_ptrace_dac_read_search() {
        assert_eq!(runtime_mask(), 0x80_0008_1004);
        assert_eq!(
            names(runtime_mask()),
            [
                "CAP_DAC_READ_SEARCH",
                "CAP_NET_ADMIN",
                "CAP_SYS_PTRACE",
                "CAP_BPF"
            ]
        );
    }
}
