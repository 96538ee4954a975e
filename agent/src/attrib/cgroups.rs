//! cgroup v2 ids to cgroup paths. The kernel programs see a cgroup only as its id
//! (`bpf_get_current_cgroup_id`, `bpf_skb_cgroup_id`), which is the inode number of the
//! cgroup's directory on the cgroup2 mount: [`CgroupIndex`] walks that mount to map ids back to
//! paths, which [`container`](super::container) reads container and pod ids from.

use std::{
    collections::HashMap,
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use tracing::debug;

use super::container::{ContainerRef, parse_cgroup_path};

/// Why the cgroup tree could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup v2 hierarchy is mounted")]
    NoHierarchy,
    #[error("cannot read the cgroup tree at {root}")]
    Walk {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The shortest time between two walks of the tree: ids nobody knows (a flood of them, or a
/// cgroup that came and went) cost at most one walk per interval.
pub const MIN_RESCAN: Duration = Duration::from_secs(1);

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup` on pure v2 hosts,
/// `/sys/fs/cgroup/unified` on hybrid ones), from this process's mount table.
pub fn cgroup2_mount() -> Option<PathBuf> {
    match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(info) => cgroup2_mount_in(&info),
        Err(e) => {
            debug!(error = %e, "cannot read /proc/self/mountinfo");
            None
        }
    }
}

/// The cgroup2 mount point in a `mountinfo` table. A mount of the whole hierarchy (root `/`)
/// is preferred over a bind mount of a subtree, whose paths would not be the ones
/// `/proc/PID/cgroup` gives.
pub fn cgroup2_mount_in(mountinfo: &str) -> Option<PathBuf> {
    let mut subtree = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let mut fields = left.split_whitespace();
        let (Some(root), Some(mount)) = (fields.nth(3), fields.next()) else {
            continue;
        };
        let mount = PathBuf::from(unescape_mount(mount));
        if root == "/" {
            return Some(mount);
        }
        subtree.get_or_insert(mount);
    }
    subtree
}

/// Undoes the kernel's octal escapes in mountinfo paths (`\040` for a space, and tab, newline,
/// backslash likewise).
fn unescape_mount(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let Some(d) = octal {
            let value = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup id of `path` (as `/proc/PID/cgroup` gives it, relative to the mount at `root`):
/// the inode of its directory.
pub fn cgroup_id(root: &Path, path: &str) -> Option<u64> {
    let dir = root.join(path.trim_start_matches('/'));
    std::fs::metadata(dir).ok().map(|m| m.ino())
}

/// cgroup id -> path relative to the cgroup2 mount (`/` for the root,
/// `/kubepods.slice/…/cri-containerd-<id>.scope` below it). Built on the first lookup, walked
/// again when an id is missing (at most once per [`MIN_RESCAN`]); each walk forgets the
/// cgroups that were removed.
#[derive(Debug)]
pub struct CgroupIndex {
    root: Option<PathBuf>,
    paths: HashMap<u64, String>,
    scanned_at: Option<Instant>,
    min_rescan: Duration,
}

impl CgroupIndex {
    /// The index of this host's cgroup v2 hierarchy; one that finds nothing when there is none.
    pub fn new() -> CgroupIndex {
        let root = cgroup2_mount();
        if root.is_none() {
            debug!("no cgroup v2 hierarchy: flows get no container or pod from cgroup ids");
        }
        CgroupIndex::at(root)
    }

    /// The index of the tree at `root` (a cgroup2 mount, or any directory tree in tests: the
    /// inodes of plain directories stand in for cgroup ids).
    pub fn with_root(root: impl Into<PathBuf>) -> CgroupIndex {
        CgroupIndex::at(Some(root.into()))
    }

    fn at(root: Option<PathBuf>) -> CgroupIndex {
        CgroupIndex {
            root,
            paths: HashMap::new(),
            scanned_at: None,
            min_rescan: MIN_RESCAN,
        }
    }

    /// Sets the shortest time between two walks (default [`MIN_RESCAN`]).
    pub fn with_min_rescan(mut self, every: Duration) -> CgroupIndex {
        self.min_rescan = every;
        self
    }

    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// The path of cgroup `id`, walking the tree again if it is not known and the last walk is
    /// old enough.
    pub fn path(&mut self, id: u64) -> Option<&str> {
        if !self.paths.contains_key(&id)
            && self.may_rescan()
            && let Err(e) = self.rescan()
        {
            debug!(error = %e, "cgroup walk");
        }
        self.paths.get(&id).map(String::as_str)
    }

    /// The container (and pod uid) of cgroup `id`; `None` for cgroups that are no container's
    /// and for unknown ids.
    pub fn container(&mut self, id: u64) -> Option<ContainerRef> {
        self.path(id).and_then(parse_cgroup_path)
    }

    /// The id of the cgroup at `path` (relative to the mount), from the file system: no walk.
    pub fn id_of(&self, path: &str) -> Option<u64> {
        cgroup_id(self.root.as_deref()?, path)
    }

    /// How many cgroups the last walk found.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    fn may_rescan(&self) -> bool {
        self.root.is_some()
            && self
                .scanned_at
                .is_none_or(|t| t.elapsed() >= self.min_rescan)
    }

    /// Walks the tree now, whatever the rate limit, replacing what was known. Returns how many
    /// cgroups it found.
    pub fn rescan(&mut self) -> Result<usize, CgroupError> {
        let root = self.root.as_deref().ok_or(CgroupError::NoHierarchy)?;
        // Counted from the attempt: a tree that cannot be read is not tried again at once.
        self.scanned_at = Some(Instant::now());
        self.paths = walk(root).map_err(|source| CgroupError::Walk {
            root: root.to_owned(),
            source,
        })?;
        Ok(self.paths.len())
    }
}

impl Default for CgroupIndex {
    fn default() -> CgroupIndex {
        CgroupIndex::new()
    }
}

/// Every directory under `root` (itself included) by inode. Only the root must be readable:
/// cgroups removed during the walk are passed over.
fn walk(root: &Path) -> io::Result<HashMap<u64, String>> {
    let mut paths = HashMap::new();
    paths.insert(std::fs::metadata(root)?.ino(), "/".to_owned());
    let mut pending = vec![(root.to_owned(), String::new())];
    let mut first = true;
    while let Some((dir, rel)) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if first => return Err(e),
            Err(_) => continue,
        };
        first = false;
        for entry in entries.flatten() {
            // `file_type` does not follow links: a cgroup tree has none, a test tree might.
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let child = format!("{rel}/{}", entry.file_name().to_string_lossy());
            paths.insert(meta.ino(), child.clone());
            pending.push((entry.path(), child));
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrib::{container::Runtime, testdir::TestDir};

    const ID: &str = "4d9c1e9f1c5b2a7d8e0f3a6b9c2d5e8f1a4b7c0d3e6f9a2b5c8d1e4f7a0b3c6d";
    const UID_: &str = "8b7a3c52_0f1e_4d6a_9c2b_71e5d4f3a1b0";

    fn ino(path: &Path) -> u64 {
        std::fs::metadata(path).expect("stat").ino()
    }

    #[test]
    fn the_cgroup2_mount_is_found_in_mountinfo() {
        // This kind of host: hybrid, v2 at /sys/fs/cgroup/unified.
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount_in(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        // EKS on AL2023: pure v2, with optional fields before the separator.
        let unified = "25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:8 - cgroup2 cgroup2 rw,seclabel,nsdelegate,memory_recursiveprot
";
        assert_eq!(
            cgroup2_mount_in(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        // A bind mount of a subtree comes first; the whole hierarchy wins; escapes are undone.
        let bind = "50 26 0:24 /kubepods.slice /host/kube rw - cgroup2 cgroup2 rw
51 26 0:24 / /host/sys/fs/my\\040cgroup rw - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount_in(bind),
            Some(PathBuf::from("/host/sys/fs/my cgroup"))
        );
        assert_eq!(
            cgroup2_mount_in("50 26 0:24 /sub /only/sub rw - cgroup2 cgroup2 rw\n"),
            Some(PathBuf::from("/only/sub"))
        );
        assert_eq!(
            cgroup2_mount_in("40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw\n"),
            None
        );
    }

    #[test]
    fn ids_map_to_paths_and_containers() {
        let tree = TestDir::new("cgroups");
        let pod =
            format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice");
        let scope = tree.mkdir(&format!("{pod}/cri-containerd-{ID}.scope"));
        let service = tree.mkdir("system.slice/sshd.service");
        tree.write("system.slice/sshd.service/cgroup.procs", "1\n");
        let mut index = CgroupIndex::with_root(tree.path());
        assert_eq!(index.path(ino(tree.path())), Some("/"));
        assert_eq!(
            index.path(ino(&scope)),
            Some(format!("/{pod}/cri-containerd-{ID}.scope").as_str())
        );
        assert_eq!(
            index.path(ino(&service)),
            Some("/system.slice/sshd.service")
        );
        let c = index.container(ino(&scope)).expect("container");
        assert_eq!((c.runtime, c.id.as_str()), (Runtime::Containerd, ID));
        assert_eq!(
            c.pod_uid.as_deref(),
            Some("8b7a3c52-0f1e-4d6a-9c2b-71e5d4f3a1b0")
        );
        assert_eq!(index.container(ino(&service)), None);
        // Files are not cgroups.
        let procs = tree.path().join("system.slice/sshd.service/cgroup.procs");
        assert_eq!(index.path(ino(&procs)), None);
        assert_eq!(
            index.id_of("/system.slice/sshd.service"),
            Some(ino(&service))
        );
        assert_eq!(index.id_of("/system.slice/gone.service"), None);
    }

    #[test]
    fn misses_rescan_at_most_once_per_interval_and_forget_removed_cgroups() {
        let tree = TestDir::new("rescan");
        let old = tree.mkdir("old.scope");
        let old_id = ino(&old);
        let mut index =
            CgroupIndex::with_root(tree.path()).with_min_rescan(Duration::from_secs(3600));
        assert_eq!(index.path(old_id), Some("/old.scope"));
        let new = tree.mkdir("new.scope");
        // Walked a moment ago: a miss does not walk again.
        assert_eq!(index.path(ino(&new)), None);
        assert_eq!(index.len(), 2);

        let mut index = index.with_min_rescan(Duration::ZERO);
        assert_eq!(index.path(ino(&new)), Some("/new.scope"));
        std::fs::remove_dir(&old).expect("rmdir");
        // A miss (any unknown id) walks again and forgets what is gone. An id that is still
        // known is answered from the cache, so this lookup has to miss.
        assert_eq!(index.path(u64::MAX), None);
        assert_eq!(index.len(), 2, "root and new.scope");
        assert!(index.paths.values().all(|p| p != "/old.scope"));
    }

    #[test]
    fn without_a_hierarchy_nothing_is_found_and_nothing_is_walked() {
        let mut index = CgroupIndex::at(None);
        assert_eq!(index.path(1), None);
        assert!(matches!(index.rescan(), Err(CgroupError::NoHierarchy)));
        let mut index = CgroupIndex::with_root("/nonexistent/sealwatch-cgroup");
        assert_eq!(index.container(1), None);
        let err = index.rescan().expect_err("no such tree");
        assert!(matches!(err, CgroupError::Walk { .. }), "{err}");
        assert!(
            std::error::Error::source(&err).is_some(),
            "keeps the io error"
        );
    }

    #[test]
    fn this_host_resolves_its_own_cgroup() {
        let Some(root) = cgroup2_mount() else {
            panic!("tests need a cgroup v2 hierarchy");
        };
        let text = std::fs::read_to_string("/proc/self/cgroup").expect("own cgroup");
        let path = text
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .expect("v2 line");
        let mut index = CgroupIndex::with_root(&root);
        let id = index.id_of(path).expect("own cgroup id");
        assert_eq!(index.path(id), Some(path));
    }
}
