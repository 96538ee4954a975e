//! What happens to enforcement when the agent stops (`--on-exit`).
//!
//! With `keep-enforcing` (fail closed) every link (one per interface and side) and every map
//! that holds state is pinned on bpffs, so the programs outlive the agent, after a clean stop
//! and after a crash alike, and keep deciding with the last policy installed. The next agent
//! takes them over without a gap: it loads its programs on the same maps (when it is the same
//! build with the same flow-table size, else on fresh ones), swaps its program into each pinned
//! link with one atomic `bpf_link_update`, and releases the pins it no longer wants (interfaces
//! it was not told to watch, state of another build).
//!
//! With `detach` (fail open, the default) nothing is pinned: the links die with the agent's
//! file descriptors. A previous agent's pins are still taken over the same way, so the switch
//! from `keep-enforcing` back to `detach` has no gap either, and then removed.
//!
//! Layout, one directory per network namespace (its interfaces are what the links attach to):
//! `<pin dir>/maps-<build>/<MAP>` and `<pin dir>/links/<ifindex>-<side>`.

use std::{
    fs::{self, File, TryLockError},
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use aya::programs::links::{FdLink, PinnedLink};
use sealwatch_common::{
    ENFORCE_TC_EGRESS_MAP, ENFORCE_TC_INGRESS_MAP, ENFORCE_XDP_MAP, EVENTS_MAP, FLOWS_MAP,
    STATS_MAP,
    policy::{
        EXEMPT_CGROUPS_MAP, EXEMPT_PORTS_MAP, NETS_MAP, POLICY_ACTIVE_MAP, POLICY_MAP, PORTS_MAP,
        WEAK_SUITES_MAP,
    },
};
use tracing::info;

/// Where pins go unless `--pin-dir` says otherwise (the bpffs mount, one directory per netns).
pub const DEFAULT_BASE: &str = "/sys/fs/bpf/sealwatch";

/// Maps whose contents must survive a restart: the flow table (flows already judged stay
/// judged), the ring buffer and counters (nothing the kernel noted while no agent ran is
/// lost), the policy, and the tail-call arrays (the kernel empties a program array when no
/// file descriptor or pin refers to it any more, which would end enforcement). The per-CPU
/// scratch maps hold nothing between packets.
pub const STATEFUL_MAPS: [&str; 13] = [
    FLOWS_MAP,
    EVENTS_MAP,
    STATS_MAP,
    ENFORCE_TC_INGRESS_MAP,
    ENFORCE_TC_EGRESS_MAP,
    ENFORCE_XDP_MAP,
    POLICY_MAP,
    POLICY_ACTIVE_MAP,
    NETS_MAP,
    PORTS_MAP,
    EXEMPT_CGROUPS_MAP,
    EXEMPT_PORTS_MAP,
    WEAK_SUITES_MAP,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnExit {
    /// Detach every program when the agent stops or dies: traffic flows unchecked (fail open).
    Detach,
    /// Leave the programs attached and enforcing the last policy (fail closed); the next agent
    /// takes them over without a gap.
    KeepEnforcing,
}

impl OnExit {
    pub fn name(self) -> &'static str {
        match self {
            OnExit::Detach => "detach",
            OnExit::KeepEnforcing => "keep-enforcing",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "another sealwatch agent holds {} (one agent per network namespace may pin or take over pins)",
        .0.display()
    )]
    Busy(PathBuf),
    #[error("{} is not on a bpffs mount (mount -t bpf bpf /sys/fs/bpf)", .0.display())]
    NotBpffs(PathBuf),
    #[error("link pin {}: {source}", .path.display())]
    Link {
        path: PathBuf,
        #[source]
        source: aya::programs::links::LinkError,
    },
    #[error("cannot pin a link at {}: {source}", .path.display())]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
}

/// Creates `dir` and its missing parents with mode 0700: pinned links and maps are the
/// enforcement itself (a writable pin lets a user replace or remove it), and the maps say
/// what traffic the host carries. Pins inside are 0600 (the kernel's default for bpffs pins).
/// A directory an earlier agent created with looser permissions is tightened too.
fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> PinError + '_ {
    move |source| PinError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One side of one interface: the name of its link's pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    TcIngress,
    XdpIngress,
    TcEgress,
}

impl Side {
    fn pin_name(self, ifindex: u32) -> String {
        let side = match self {
            Side::TcIngress => "tc-ingress",
            Side::XdpIngress => "xdp-ingress",
            Side::TcEgress => "tc-egress",
        };
        format!("{ifindex}-{side}")
    }
}

/// The pin directory of this agent's network namespace, locked for the agent's lifetime.
#[derive(Debug)]
pub struct Pins {
    dir: PathBuf,
    on_exit: OnExit,
    maps: PathBuf,
    /// Maps from a previous agent of this build are there to be taken over.
    maps_found: bool,
    /// Link pins found at start and not (yet) taken over.
    stale_links: Vec<PathBuf>,
    /// Held (flock) until the agent exits: a second agent in this namespace is refused.
    _lock: File,
}

impl Pins {
    /// Opens the pin directory when there is anything to pin or take over; `None` in detach
    /// mode when no previous agent left pins here.
    pub fn open(
        base: Option<&Path>,
        on_exit: OnExit,
        build: u64,
    ) -> Result<Option<Pins>, PinError> {
        let dir = match base {
            Some(dir) => dir.to_owned(),
            None => Path::new(DEFAULT_BASE).join(netns_name()?),
        };
        if on_exit == OnExit::Detach && !dir.exists() {
            return Ok(None);
        }
        let links = dir.join("links");
        private_dir(&links).map_err(io_err(&links))?;
        private_dir(&dir).map_err(io_err(&dir))?;
        if !on_bpffs(&dir) {
            return Err(PinError::NotBpffs(dir));
        }
        let lock = File::open(&dir).map_err(io_err(&dir))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(PinError::Busy(dir)),
            Err(TryLockError::Error(e)) => return Err(io_err(&dir)(e)),
        }
        let maps = dir.join(format!("maps-{build:016x}"));
        let maps_found = maps.is_dir();
        let stale_links = entries(&links)?;
        if !stale_links.is_empty() {
            info!(
                dir = %dir.display(),
                links = stale_links.len(),
                same_build = maps_found,
                "taking over the programs a previous agent left enforcing"
            );
        }
        Ok(Some(Pins {
            dir,
            on_exit,
            maps,
            maps_found,
            stale_links,
            _lock: lock,
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory the stateful maps are pinned in (and taken over from), when they are.
    pub fn map_dir(&self) -> Result<Option<PathBuf>, PinError> {
        if self.maps_found {
            return Ok(Some(self.maps.clone()));
        }
        if self.on_exit == OnExit::Detach {
            return Ok(None);
        }
        private_dir(&self.maps).map_err(io_err(&self.maps))?;
        Ok(Some(self.maps.clone()))
    }

    /// The link a previous agent left on this side of `ifindex`, to swap our program into.
    /// In detach mode its pin is removed at once: the link lives on our descriptor only.
    pub fn take_link(&mut self, ifindex: u32, side: Side) -> Result<Option<FdLink>, PinError> {
        let path = self.dir.join("links").join(side.pin_name(ifindex));
        let Some(at) = self.stale_links.iter().position(|p| *p == path) else {
            return Ok(None);
        };
        self.stale_links.swap_remove(at);
        let pinned = PinnedLink::from_pin(&path).map_err(|source| PinError::Link {
            path: path.clone(),
            source,
        })?;
        Ok(Some(match self.on_exit {
            OnExit::KeepEnforcing => pinned.into(),
            OnExit::Detach => pinned.unpin().map_err(io_err(&path))?,
        }))
    }

    /// Pins a link we attached, in keep-enforcing mode (else it lives on our descriptor).
    pub fn keep_link(&self, ifindex: u32, side: Side, link: FdLink) -> Result<(), PinError> {
        let path = self.dir.join("links").join(side.pin_name(ifindex));
        link.pin(&path)
            .map(drop)
            .map_err(|source| PinError::Pin { path, source })
    }

    /// Removes the link pins of one interface (it went away): what they held is released.
    pub fn release_links(&self, ifindex: u32) -> Result<(), PinError> {
        for side in [Side::TcIngress, Side::XdpIngress, Side::TcEgress] {
            let path = self.dir.join("links").join(side.pin_name(ifindex));
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Ok(())
    }

    pub fn keeps_links(&self) -> bool {
        self.on_exit == OnExit::KeepEnforcing
    }

    /// Once this agent's links are in place: releases what the previous agent left and this
    /// one did not take over (its links detach now, after ours attached), the state of other
    /// builds, and in detach mode every pin, so that our exit detaches everything.
    pub fn settle(&mut self) -> Result<(), PinError> {
        for link in self.stale_links.drain(..) {
            info!(link = %link.display(), "releasing a link this agent does not watch");
            fs::remove_file(&link).map_err(io_err(&link))?;
        }
        for entry in entries(&self.dir)? {
            let is_maps = entry
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("maps-"));
            let ours = entry == self.maps && self.on_exit == OnExit::KeepEnforcing;
            if is_maps && !ours {
                remove_tree(&entry)?;
            }
        }
        if self.on_exit == OnExit::Detach {
            remove_tree(&self.dir)?;
            // The shared parent goes too once no namespace has pins (fails while one has).
            if self.dir.parent() == Some(Path::new(DEFAULT_BASE)) {
                let _ = fs::remove_dir(DEFAULT_BASE);
            }
        }
        Ok(())
    }
}

/// A fingerprint of the kernel object and the map sizes chosen at load: pinned maps are taken
/// over only by an agent that would have created them identically.
pub fn build_id(object: &[u8], flow_capacity: u32) -> u64 {
    // FNV-1a: stable across Rust releases, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in object.iter().chain(&flow_capacity.to_le_bytes()) {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// `net-<inode>`: the network namespace's identity for as long as it exists.
fn netns_name() -> Result<String, PinError> {
    let path = Path::new("/proc/self/ns/net");
    let meta = fs::metadata(path).map_err(io_err(path))?;
    Ok(format!("net-{}", meta.ino()))
}

fn on_bpffs(path: &Path) -> bool {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c` is a valid C string and `st` is a writable statfs buffer.
    let rc = unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) };
    // SAFETY: statfs filled the buffer when it returned 0.
    #[allow(
        clippy::useless_conversion,
        reason = "f_type is narrower on 32-bit targets"
    )]
    let magic = i64::from(unsafe { st.assume_init() }.f_type);
    rc == 0 && magic == BPF_FS_MAGIC
}

fn entries(dir: &Path) -> Result<Vec<PathBuf>, PinError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        out.push(entry.map_err(io_err(dir))?.path());
    }
    out.sort();
    Ok(out)
}

/// Removes pins and their directories (bpffs has no recursive remove).
fn remove_tree(path: &Path) -> Result<(), PinError> {
    if path.is_dir() {
        for entry in entries(path)? {
            remove_tree(&entry)?;
        }
        fs::remove_dir(path).map_err(io_err(path))
    } else {
        fs::remove_file(path).map_err(io_err(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_mode_without_earlier_pins_pins_nothing() {
        let dir = std::env::temp_dir().join(format!("sealwatch-pins-none-{}", std::process::id()));
        let pins = Pins::open(Some(&dir), OnExit::Detach, 1).expect("open");
        assert!(pins.is_none());
        assert!(!dir.exists(), "nothing created");
    }

    #[test]
    fn pins_outside_bpffs_are_refused() {
        let dir = std::env::temp_dir().join(format!("sealwatch-pins-tmp-{}", std::process::id()));
        let err = Pins::open(Some(&dir), OnExit::KeepEnforcing, 1).expect_err("not bpffs");
        let _ = remove_tree(&dir);
        assert!(matches!(err, PinError::NotBpffs(_)), "{err}");
        assert!(err.to_string().contains("mount -t bpf"), "{err}");
    }

    #[test]
    fn the_build_id_follows_the_object_and_the_flow_table_size() {
        let a = build_id(b"object", 65_536);
        assert_eq!(a, build_id(b"object", 65_536));
        assert_ne!(a, build_id(b"object", 131_072));
        assert_ne!(a, build_id(b"objecT", 65_536));
    }

    #[test]
    fn link_pins_are_named_by_interface_and_side() {
        assert_eq!(Side::TcIngress.pin_name(7), "7-tc-ingress");
        assert_eq!(Side::XdpIngress.pin_name(7), "7-xdp-ingress");
        assert_eq!(Side::TcEgress.pin_name(12), "12-tc-egress");
    }
}
