//! Which container (and pod) a cgroup v2 path belongs to.
//!
//! Runtimes name a container's cgroup after its id, in one of a few shapes that depend on the
//! runtime and on the cgroup driver (systemd or cgroupfs) it was configured with:
//!
//! | runtime, driver | leaf |
//! |---|---|
//! | containerd, systemd | `cri-containerd-<id>.scope` |
//! | containerd, cgroupfs (k3s, EKS AL2, GKE) | `<id>` under `pod<uid>` |
//! | containerd, systemd cgroup parent but no systemd cgroup manager (kind, k3s in docker) | `kubepods-…-pod<uid>.slice:cri-containerd:<id>` (one component) |
//! | CRI-O, systemd | `crio-<id>.scope` (its monitor: `crio-conmon-<id>.scope`) |
//! | CRI-O, cgroupfs | `crio-<id>` (monitor: `crio-conmon-<id>`) |
//! | Docker, systemd | `docker-<id>.scope` |
//! | Docker, cgroupfs | `<id>` under `docker` |
//! | Podman, systemd | `libpod-<id>.scope` (monitor: `libpod-conmon-<id>.scope`) |
//! | Podman, cgroupfs | `libpod-<id>` under `libpod_parent` |
//! | nerdctl, systemd | `nerdctl-<id>.scope` |
//!
//! Kubernetes puts a pod's containers under a pod cgroup: `pod<uid>` (cgroupfs) or
//! `kubepods[-<qos>]-pod<uid>.slice` (systemd, where the uid's dashes are escaped to `_`).
//! Static pods have a 32-hex uid (a hash of their manifest), API pods a UUID.
//!
//! The container is the innermost container-shaped component: what follows it is the
//! container's own sub-cgroups (crun's `container`, an `init` leaf, systemd inside the
//! container), what precedes it may be an outer container (kind's node, docker-in-docker).

use std::fmt;

/// The runtime that named a container's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Runtime {
    Containerd,
    CriO,
    Docker,
    Podman,
    /// A bare id whose parent does not say who made it: under `kubepods` it is containerd or
    /// the old dockershim, which name their cgroups alike.
    Unknown,
}

impl Runtime {
    /// The OpenTelemetry `container.runtime` value, none for [`Runtime::Unknown`].
    pub fn name(self) -> Option<&'static str> {
        match self {
            Runtime::Containerd => Some("containerd"),
            Runtime::CriO => Some("cri-o"),
            Runtime::Docker => Some("docker"),
            Runtime::Podman => Some("podman"),
            Runtime::Unknown => None,
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name().unwrap_or("unknown"))
    }
}

/// A container named by its cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerRef {
    pub runtime: Runtime,
    /// The full 64-hex id, as `crictl ps`/`docker ps --no-trunc` print it.
    pub id: String,
    /// The Kubernetes pod's uid, dashed as the API server writes it (`metadata.uid`).
    pub pod_uid: Option<String>,
}

/// Length of a container id in hex.
const CONTAINER_ID_LEN: usize = 64;

/// Prefixes of systemd scopes (and CRI-O/Podman cgroupfs leaves) that name a container.
/// The runtimes' monitor processes (`conmon`) get scopes of their own under the same prefix,
/// which `container_id` turns away because `conmon-…` is not hex.
const PREFIXES: [(&str, Runtime); 5] = [
    ("cri-containerd-", Runtime::Containerd),
    ("crio-", Runtime::CriO),
    ("docker-", Runtime::Docker),
    ("libpod-", Runtime::Podman),
    ("nerdctl-", Runtime::Containerd),
];

/// The prefix in the middle of containerd's `slice:prefix:id` cgroup name.
const COLON_PREFIXES: [(&str, Runtime); 3] = [
    ("cri-containerd", Runtime::Containerd),
    ("crio", Runtime::CriO),
    ("docker", Runtime::Docker),
];

/// The container of a cgroup v2 path: a `/proc/PID/cgroup` line (`0::/…`), a path relative
/// to the cgroup2 mount, or one under it (`/sys/fs/cgroup/…`). `None` for cgroups that are no
/// container's (system services, user sessions, pod-level cgroups, runtime monitors).
/// Components `..` (a path seen from inside another cgroup namespace) are passed over.
pub fn parse_cgroup_path(path: &str) -> Option<ContainerRef> {
    let path = path.trim_end_matches('\n');
    let path = path.strip_prefix("0::").unwrap_or(path);
    let mut found: Option<ContainerRef> = None;
    let mut pod_uid: Option<String> = None;
    let mut parent = "";
    for component in path.split('/').filter(|c| !c.is_empty() && *c != "..") {
        if let Some(mut c) = component_container(component, parent) {
            // A pod uid inside the component (the colon form) is the pod's; otherwise the
            // nearest pod cgroup above.
            if c.pod_uid.is_none() {
                c.pod_uid = pod_uid.clone();
            }
            found = Some(c);
        } else if let Some(uid) = component_pod_uid(component) {
            pod_uid = Some(uid);
        }
        parent = component;
    }
    found
}

/// The container of the cgroup v2 line of a whole `/proc/PID/cgroup` file. On hybrid hosts
/// the v1 lines come first; only the `0::` line is cgroup v2.
pub fn parse_proc_cgroup(text: &str) -> Option<ContainerRef> {
    text.lines()
        .find(|l| l.starts_with("0::"))
        .and_then(parse_cgroup_path)
}

/// The pod uid of a pod-level cgroup component: `pod<uid>` (cgroupfs) or
/// `kubepods[-<qos>]-pod<uid_with_underscores>.slice` (systemd, also under kind's
/// `kubelet-kubepods` prefix).
fn component_pod_uid(component: &str) -> Option<String> {
    if let Some(uid) = component.strip_prefix("pod") {
        return pod_uid(uid);
    }
    let slice = component.strip_suffix(".slice")?;
    slice_pod_uid(slice)
}

/// The uid in a systemd pod slice name (without `.slice`). The uid is after the last `-pod`
/// whose remainder is a uid: systemd escapes the uid's dashes, but some tools write them
/// unescaped, and then `-pod` can only be searched for.
fn slice_pod_uid(slice: &str) -> Option<String> {
    slice
        .match_indices("-pod")
        .find_map(|(at, _)| pod_uid(&slice[at + "-pod".len()..]))
}

/// A pod uid, dashed: a UUID with `-` or systemd's `_`, or a static pod's 32-hex hash.
pub(crate) fn pod_uid(raw: &str) -> Option<String> {
    let uid = raw.replace('_', "-");
    let b = uid.as_bytes();
    let uuid = b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
    let hash = b.len() == 32 && b.iter().all(u8::is_ascii_hexdigit);
    (uuid || hash).then_some(uid)
}

/// The container one cgroup component names; `parent` is the component above it, which says
/// who made a bare id.
fn component_container(component: &str, parent: &str) -> Option<ContainerRef> {
    if let Some((slice, rest)) = component.split_once(':') {
        // containerd's systemd-style cgroupsPath used as a plain path: `slice:prefix:id`.
        let (prefix, id) = rest.split_once(':')?;
        let runtime = COLON_PREFIXES
            .iter()
            .find(|(p, _)| *p == prefix)
            .map(|(_, r)| *r)?;
        return Some(ContainerRef {
            runtime,
            id: container_id(id)?,
            pod_uid: slice.strip_suffix(".slice").and_then(slice_pod_uid),
        });
    }
    let name = component.strip_suffix(".scope").unwrap_or(component);
    for (prefix, runtime) in PREFIXES {
        if let Some(id) = name.strip_prefix(prefix) {
            return Some(ContainerRef {
                runtime,
                id: container_id(id)?,
                pod_uid: None,
            });
        }
    }
    // Bare ids are cgroupfs leaves: never scopes.
    if name.len() != component.len() {
        return None;
    }
    let runtime = match parent {
        "docker" => Runtime::Docker,
        "libpod_parent" => Runtime::Podman,
        _ => Runtime::Unknown,
    };
    Some(ContainerRef {
        runtime,
        id: container_id(component)?,
        pod_uid: None,
    })
}

/// A full container id: 64 lower-case hex digits. Shorter hex (truncated ids, ECS task ids) and
/// anything else are not ids.
fn container_id(raw: &str) -> Option<String> {
    (raw.len() == CONTAINER_ID_LEN
        && raw
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then(|| raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4d9c1e9f1c5b2a7d8e0f3a6b9c2d5e8f1a4b7c0d3e6f9a2b5c8d1e4f7a0b3c6d";
    const UID: &str = "8b7a3c52-0f1e-4d6a-9c2b-71e5d4f3a1b0";
    const UID_: &str = "8b7a3c52_0f1e_4d6a_9c2b_71e5d4f3a1b0";

    fn container(runtime: Runtime, pod: bool) -> Option<ContainerRef> {
        Some(ContainerRef {
            runtime,
            id: ID.to_owned(),
            pod_uid: pod.then(|| UID.to_owned()),
        })
    }

    #[test]
    fn containerd_with_the_systemd_driver() {
        // EKS on AL2023 and Bottlerocket, GKE on cgroup v2, kubeadm defaults since 1.22.
        for qos in ["burstable", "besteffort"] {
            let path = format!(
                "0::/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{UID_}.slice/cri-containerd-{ID}.scope"
            );
            assert_eq!(
                parse_cgroup_path(&path),
                container(Runtime::Containerd, true),
                "{path}"
            );
        }
        // Guaranteed pods sit right under kubepods.slice.
        let path = format!("/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope");
        assert_eq!(
            parse_cgroup_path(&path),
            container(Runtime::Containerd, true)
        );
    }

    #[test]
    fn containerd_with_the_cgroupfs_driver() {
        // k3s, EKS on AL2: bare ids; the runtime is not in the path.
        let path = format!("0::/kubepods/burstable/pod{UID}/{ID}");
        assert_eq!(parse_cgroup_path(&path), container(Runtime::Unknown, true));
        let path = format!("/kubepods/pod{UID}/{ID}");
        assert_eq!(parse_cgroup_path(&path), container(Runtime::Unknown, true));
        // The pod's own cgroup is no container.
        assert_eq!(
            parse_cgroup_path(&format!("/kubepods/besteffort/pod{UID}")),
            None
        );
    }

    #[test]
    fn containerd_colon_form_under_another_root() {
        // kind and k3s-in-docker: kubelet's systemd cgroup parent, containerd's cgroupfs
        // manager, seen from the node container's cgroup namespace.
        let path = format!(
            "0::/system.slice/containerd.service/kubepods-burstable-pod{UID_}.slice:cri-containerd:{ID}"
        );
        assert_eq!(
            parse_cgroup_path(&path),
            container(Runtime::Containerd, true)
        );
        let path = format!("/kubepods-besteffort-pod{UID_}.slice:cri-containerd:{ID}");
        assert_eq!(
            parse_cgroup_path(&path),
            container(Runtime::Containerd, true)
        );
        // Some tools write the uid with its dashes.
        let path = format!("/kubepods-burstable-pod{UID}.slice:cri-containerd:{ID}");
        assert_eq!(
            parse_cgroup_path(&path),
            container(Runtime::Containerd, true)
        );
        let path = format!("/kubepods-besteffort-pod{UID_}.slice:crio:{ID}");
        assert_eq!(parse_cgroup_path(&path), container(Runtime::CriO, true));
        assert_eq!(
            parse_cgroup_path(&format!("/a.slice:unknown-prefix:{ID}")),
            None
        );
    }

    #[test]
    fn kind_node_seen_from_the_host() {
        // The node is a docker container; the pod's container is the innermost one.
        let node = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let path = format!(
            "0::/system.slice/docker-{node}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(
            parse_cgroup_path(&path),
            container(Runtime::Containerd, true)
        );
        // The node container itself, for its own processes (kubelet, containerd).
        let path = format!("0::/system.slice/docker-{node}.scope/system.slice/containerd.service");
        assert_eq!(
            parse_cgroup_path(&path).map(|c| (c.runtime, c.id)),
            Some((Runtime::Docker, node.to_owned()))
        );
    }

    #[test]
    fn cri_o_and_its_monitor() {
        let pod =
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice");
        assert_eq!(
            parse_cgroup_path(&format!("0::{pod}/crio-{ID}.scope")),
            container(Runtime::CriO, true)
        );
        // crun on cgroup v2 moves the container's processes into a `container` sub-cgroup.
        assert_eq!(
            parse_cgroup_path(&format!("0::{pod}/crio-{ID}.scope/container")),
            container(Runtime::CriO, true)
        );
        assert_eq!(
            parse_cgroup_path(&format!("0::{pod}/crio-conmon-{ID}.scope")),
            None
        );
        // cgroupfs driver.
        assert_eq!(
            parse_cgroup_path(&format!("/kubepods/burstable/pod{UID}/crio-{ID}")),
            container(Runtime::CriO, true)
        );
        assert_eq!(
            parse_cgroup_path(&format!("/kubepods/burstable/pod{UID}/crio-conmon-{ID}")),
            None
        );
    }

    #[test]
    fn docker_outside_kubernetes() {
        assert_eq!(
            parse_cgroup_path(&format!("0::/system.slice/docker-{ID}.scope")),
            container(Runtime::Docker, false)
        );
        assert_eq!(
            parse_cgroup_path(&format!("0::/docker/{ID}")),
            container(Runtime::Docker, false)
        );
        // Rootless docker under the user's systemd.
        let path = format!(
            "0::/user.slice/user-1000.slice/user@1000.service/user.slice/docker-{ID}.scope"
        );
        assert_eq!(parse_cgroup_path(&path), container(Runtime::Docker, false));
        // dockerd itself.
        assert_eq!(parse_cgroup_path("0::/system.slice/docker.service"), None);
        // cri-dockerd under kubelet's systemd driver.
        let path = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/docker-{ID}.scope"
        );
        assert_eq!(parse_cgroup_path(&path), container(Runtime::Docker, true));
    }

    #[test]
    fn podman_and_its_monitor() {
        assert_eq!(
            parse_cgroup_path(&format!("0::/machine.slice/libpod-{ID}.scope")),
            container(Runtime::Podman, false)
        );
        // A podman pod, and the `container` sub-cgroup podman's crun uses on cgroup v2.
        let path = format!(
            "0::/machine.slice/machine-libpod_pod_9f2e41c0d1a5b3c7e9f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d3e5f7a9b1c3d5.slice/libpod-{ID}.scope/container"
        );
        assert_eq!(parse_cgroup_path(&path), container(Runtime::Podman, false));
        assert_eq!(
            parse_cgroup_path(&format!("0::/machine.slice/libpod-conmon-{ID}.scope")),
            None
        );
        assert_eq!(
            parse_cgroup_path(&format!("/libpod_parent/libpod-{ID}")),
            container(Runtime::Podman, false)
        );
        assert_eq!(
            parse_cgroup_path(&format!("/libpod_parent/{ID}")),
            container(Runtime::Podman, false)
        );
    }

    #[test]
    fn nested_cgroups_belong_to_their_container() {
        let scope = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"
        );
        for inner in ["init", "system.slice/nginx.service", "init.scope"] {
            assert_eq!(
                parse_cgroup_path(&format!("0::{scope}/{inner}")),
                container(Runtime::Containerd, true),
                "{inner}"
            );
        }
        // Docker-in-docker: the innermost container is the process's.
        let outer = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
        assert_eq!(
            parse_cgroup_path(&format!("0::/docker/{outer}/docker/{ID}")),
            container(Runtime::Docker, false)
        );
    }

    #[test]
    fn paths_under_the_mount_and_from_other_cgroup_namespaces() {
        let path = format!(
            "/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(
            parse_cgroup_path(&path),
            container(Runtime::Containerd, true)
        );
        assert_eq!(
            parse_cgroup_path(&format!("0::/../../pod{UID}/{ID}")),
            container(Runtime::Unknown, true)
        );
        assert_eq!(
            parse_cgroup_path(&format!("0::/../crio-{ID}.scope")),
            container(Runtime::CriO, false)
        );
    }

    #[test]
    fn static_pods_have_hash_uids() {
        let hash = "3b0b9fa3b5b4c4e5b1e7cbbdd7ef8e2a";
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{hash}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(
            parse_cgroup_path(&path).and_then(|c| c.pod_uid).as_deref(),
            Some(hash)
        );
    }

    #[test]
    fn non_containers() {
        for path in [
            "0::/",
            "0::/init.scope",
            "0::/system.slice/sshd.service",
            "0::/system.slice/containerd.service",
            "0::/user.slice/user-1000.slice/session-3.scope",
            "0::/kubepods.slice",
            "0::/kubepods.slice/kubepods-burstable.slice",
            // ECS task ids and truncated ids are not container ids.
            "0::/ecs/5a081c13b3f4473a9e4dae2d5c1f2b3a/5a081c13b3f4473a9e4dae2d5c1f2b3a-3681984407",
            "0::/docker/4d9c1e9f1c5b",
            // Upper case is not what any runtime writes.
            "0::/docker/4D9C1E9F1C5B2A7D8E0F3A6B9C2D5E8F1A4B7C0D3E6F9A2B5C8D1E4F7A0B3C6D",
            // A bare id that is a scope was made by nobody we know.
            "0::/system.slice/4d9c1e9f1c5b2a7d8e0f3a6b9c2d5e8f1a4b7c0d3e6f9a2b5c8d1e4f7a0b3c6d.scope",
            "",
        ] {
            assert_eq!(parse_cgroup_path(path), None, "{path}");
        }
        // A pod-looking component that is not a uid.
        assert_eq!(component_pod_uid("podman.slice"), None);
        assert_eq!(component_pod_uid("kubepods-pod1234.slice"), None);
    }

    #[test]
    fn proc_cgroup_files_on_hybrid_and_unified_hosts() {
        let hybrid = format!(
            "12:pids:/kubepods/burstable/pod{UID}/{ID}\n1:name=systemd:/kubepods/burstable/pod{UID}/{ID}\n0::/kubepods/burstable/pod{UID}/{ID}\n"
        );
        assert_eq!(
            parse_proc_cgroup(&hybrid),
            container(Runtime::Unknown, true)
        );
        // A v1-only host: no container from the v2 line, and the v1 lines are not read.
        assert_eq!(parse_proc_cgroup(&format!("4:memory:/docker/{ID}\n")), None);
        assert_eq!(
            parse_proc_cgroup(&format!("0::/system.slice/docker-{ID}.scope\n")),
            container(Runtime::Docker, false)
        );
    }

    #[test]
    fn runtime_names_follow_opentelemetry() {
        assert_eq!(Runtime::Containerd.name(), Some("containerd"));
        assert_eq!(Runtime::CriO.name(), Some("cri-o"));
        assert_eq!(Runtime::Unknown.name(), None);
        assert_eq!(Runtime::Unknown.to_string(), "unknown");
    }
}
