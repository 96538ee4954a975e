//! Who is behind a flow's local end, in user space: the container and pod of a cgroup id, the
//! pod of an address, the process of a pid, the name of a uid, and what this node is.
//!
//! Every source here is best effort and read-only: off Kubernetes, off EC2, without a cgroup v2
//! hierarchy or without permission, lookups answer `None` (and say why at debug level) instead
//! of failing the agent. Lookups that may read files or ask a server are rate-limited so a flood
//! of unknown keys cannot turn into a flood of scans or requests. The blocking ones
//! ([`kube::PodIndex`], [`node::NodeIdentity::detect`]) belong on a blocking thread
//! (`tokio::task::spawn_blocking`), not on the event loop.

pub mod container;
