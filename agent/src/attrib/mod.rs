//! Who is behind a flow's local end, in user space: the container and pod of a cgroup id, the
//! pod of an address, the process of a pid, the name of a uid, and what this node is.
//!
//! Every source here is best effort and read-only: off Kubernetes, off EC2, without a cgroup v2
//! hierarchy or without permission, lookups answer `None` (and say why at debug level) instead
//! of failing the agent. Lookups that may read files or ask a server are rate-limited so a flood
//! of unknown keys cannot turn into a flood of scans or requests. The blocking ones
//! ([`kube::PodIndex`], [`node::NodeIdentity::detect`]) belong on a blocking thread
//! (`tokio::task::spawn_blocking`), not on the event loop.

pub mod cgroups;
pub mod container;
mod http;
pub mod kube;
pub mod node;
pub mod pods;
pub mod process;
pub mod users;

#[cfg(test)]
pub(crate) mod testdir {
    use std::path::{Path, PathBuf};

    /// A directory under the system's temp dir, removed with everything in it on drop.
    pub struct TestDir(PathBuf);

    impl TestDir {
        pub fn new(name: &str) -> TestDir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!(
                "sealwatch-attrib-{name}-{}-{n}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("test dir");
            TestDir(dir)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }

        /// Writes `text` at `rel`, creating the directories above it.
        pub fn write(&self, rel: &str, text: impl AsRef<[u8]>) -> PathBuf {
            let path = self.0.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("parent dir");
            }
            std::fs::write(&path, text).expect("write");
            path
        }

        pub fn mkdir(&self, rel: &str) -> PathBuf {
            let path = self.0.join(rel);
            std::fs::create_dir_all(&path).expect("mkdir");
            path
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
