//! Pod metadata for a pod uid (from a container's cgroup), a pod IP (the peer, when it is a pod
//! on this node) or a container id.
//!
//! Sources, in order:
//! 1. the node's kubelet, `GET /pods`: every pod bound to this node with its labels and IPs.
//!    Over HTTPS on port 10250 with the pod's service-account token (the agent's service
//!    account needs `nodes/proxy` get, as metrics agents do), or over HTTP on the read-only
//!    port 10255 where a cluster still opens it (no token is sent there);
//! 2. without the kubelet, the directory names under `/var/log/pods`
//!    (`<namespace>_<pod>_<uid>`): names and uids, no labels, no IPs.
//!
//! Off Kubernetes neither exists, and every lookup answers `None`.

use std::{
    collections::{BTreeMap, HashMap},
    io,
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::Deserialize;
use tracing::debug;

use super::{
    container::pod_uid,
    http::{self, Endpoint, HttpError, Limits, Scheme, Trust},
};

pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
pub const SERVICE_ACCOUNT_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
pub const POD_LOGS: &str = "/var/log/pods";
/// The kubelet's authenticated HTTPS port.
pub const KUBELET_PORT: u16 = 10250;
/// The kubelet's unauthenticated read-only HTTP port (off by default since Kubernetes 1.10's
/// kubeadm and on EKS; some clusters still open it).
pub const KUBELET_READ_ONLY_PORT: u16 = 10255;

/// Largest pod list accepted: a node's 110 pods take a few MB.
const MAX_POD_LIST: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("bad kubelet endpoint")]
    Endpoint(#[source] HttpError),
    #[error("cannot read the service-account token {path}")]
    Token {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the kubelet's CA {path} (set insecure_skip_tls_verify to go without)")]
    Ca {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot set up TLS with the CA {path}")]
    Tls {
        path: PathBuf,
        #[source]
        source: HttpError,
    },
    #[error("asking the kubelet at {url} for its pods")]
    Kubelet {
        url: String,
        #[source]
        source: HttpError,
    },
    #[error("the kubelet at {url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("the kubelet's pod list does not parse")]
    Parse(#[source] serde_json::Error),
    #[error("cannot list pods under {dir}")]
    PodLogs {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Where pod metadata comes from, and how often it is read again.
#[derive(Debug, Clone)]
pub struct KubeConfig {
    /// The kubelet, `https://<node>:10250` or `http://<node>:10255`; `None`: not asked.
    pub kubelet: Option<String>,
    /// Read again for every request: projected tokens are rotated on disk.
    pub token_path: PathBuf,
    /// The CA the kubelet's serving certificate is checked against (the cluster CA, which
    /// signed it when the kubelet runs with `serverTLSBootstrap`).
    pub ca_path: PathBuf,
    /// Accepts any kubelet certificate: for kubelets with self-signed serving certificates
    /// (kubeadm's default). The exchange stays encrypted but the kubelet is not authenticated,
    /// so a host that can intercept it can feed wrong pod names and also learns the token.
    pub insecure_skip_tls_verify: bool,
    pub pod_logs: PathBuf,
    /// How old the pod list may get before a lookup reads it again.
    pub refresh: Duration,
    /// The shortest time between two reads when a lookup misses (a pod that just started):
    /// unknown keys, such as the addresses of pods on other nodes, cost at most one read per
    /// interval.
    pub min_refresh: Duration,
    /// For one request to the kubelet, connection included.
    pub timeout: Duration,
}

impl Default for KubeConfig {
    /// Pod names from `/var/log/pods` only; the kubelet is not asked.
    fn default() -> KubeConfig {
        KubeConfig {
            kubelet: None,
            token_path: SERVICE_ACCOUNT_TOKEN.into(),
            ca_path: SERVICE_ACCOUNT_CA.into(),
            insecure_skip_tls_verify: false,
            pod_logs: POD_LOGS.into(),
            refresh: Duration::from_secs(30),
            min_refresh: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
        }
    }
}

impl KubeConfig {
    /// The usual DaemonSet set-up: the kubelet of the node in `NODE_NAME` (the downward API's
    /// `spec.nodeName`) over HTTPS, when this pod has a service-account token; else only
    /// `/var/log/pods`.
    pub fn from_env() -> KubeConfig {
        let node = std::env::var("NODE_NAME").ok();
        let config = KubeConfig::default();
        match node.filter(|n| !n.is_empty()) {
            Some(node) if config.token_path.exists() => KubeConfig {
                kubelet: Some(kubelet_url(&node)),
                ..config
            },
            _ => config,
        }
    }
}

/// The kubelet's HTTPS URL on `node` (a name or an address).
pub fn kubelet_url(node: &str) -> String {
    if node.contains(':') {
        format!("https://[{node}]:{KUBELET_PORT}")
    } else {
        format!("https://{node}:{KUBELET_PORT}")
    }
}

/// What a pod is, as far as the source knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// `metadata.uid`: a UUID, or a 32-hex hash for static pods.
    pub uid: String,
    pub name: String,
    pub namespace: String,
    /// Empty when the source is `/var/log/pods`.
    pub labels: BTreeMap<String, String>,
    /// `status.podIPs` (`status.podIP` when that is all there is); a hostNetwork pod's are the
    /// node's.
    pub ips: Vec<IpAddr>,
    pub host_network: bool,
    /// `status.phase` (`Pending`, `Running`, `Succeeded`, `Failed`), when known.
    pub phase: Option<String>,
    /// Full ids of its containers, init containers included, without the `containerd://`
    /// prefix.
    pub containers: Vec<String>,
}

impl Pod {
    /// A pod whose containers have all ended for good: its IP is free for another pod.
    pub fn ended(&self) -> bool {
        matches!(self.phase.as_deref(), Some("Succeeded" | "Failed"))
    }
}

/// Which source the pod list came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Kubelet,
    PodLogs,
}

// The part of the v1 PodList this reads; everything else is ignored.
#[derive(Deserialize)]
struct PodList {
    /// Go encodes an empty list as `null`: a node with no pods.
    #[serde(default)]
    items: Option<Vec<PodJson>>,
}

#[derive(Deserialize)]
struct PodJson {
    #[serde(default)]
    metadata: MetaJson,
    #[serde(default)]
    spec: SpecJson,
    #[serde(default)]
    status: StatusJson,
}

#[derive(Deserialize, Default)]
struct MetaJson {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SpecJson {
    #[serde(default)]
    host_network: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct StatusJson {
    phase: Option<String>,
    #[serde(rename = "podIP")]
    pod_ip: Option<String>,
    #[serde(rename = "podIPs", default)]
    pod_ips: Option<Vec<PodIpJson>>,
    #[serde(default)]
    container_statuses: Option<Vec<ContainerStatusJson>>,
    #[serde(default)]
    init_container_statuses: Option<Vec<ContainerStatusJson>>,
}

#[derive(Deserialize)]
struct PodIpJson {
    ip: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerStatusJson {
    #[serde(rename = "containerID")]
    container_id: Option<String>,
}

/// The pods of a v1 PodList (the kubelet's `/pods` answer). Items without a name, namespace
/// or uid are passed over; addresses that do not parse are left out.
pub fn parse_pod_list(json: &[u8]) -> Result<Vec<Pod>, KubeError> {
    let list: PodList = serde_json::from_slice(json).map_err(KubeError::Parse)?;
    Ok(list
        .items
        .unwrap_or_default()
        .into_iter()
        .filter_map(pod_from_json)
        .collect())
}

fn pod_from_json(item: PodJson) -> Option<Pod> {
    let m = item.metadata;
    let status = item.status;
    let mut ips: Vec<IpAddr> = Vec::new();
    let listed = status.pod_ips.unwrap_or_default();
    for ip in listed
        .iter()
        .map(|p| p.ip.as_str())
        .chain(status.pod_ip.as_deref())
    {
        if let Ok(ip) = ip.parse()
            && !ips.contains(&ip)
        {
            ips.push(ip);
        }
    }
    let containers = status
        .init_container_statuses
        .unwrap_or_default()
        .into_iter()
        .chain(status.container_statuses.unwrap_or_default())
        .filter_map(|c| {
            // `<runtime>://<id>`.
            let id = c.container_id?;
            Some(
                id.split_once("://")
                    .map_or(id.as_str(), |(_, id)| id)
                    .to_owned(),
            )
        })
        .collect();
    Some(Pod {
        uid: m.uid?,
        name: m.name?,
        namespace: m.namespace?,
        labels: m.labels.unwrap_or_default(),
        ips,
        host_network: item.spec.host_network.unwrap_or(false),
        phase: status.phase,
        containers,
    })
}

/// Pods named by the directories of `dir` (`/var/log/pods`): `<namespace>_<pod>_<uid>`.
/// Namespaces and pod names are DNS labels and subdomains, so `_` separates them safely.
pub fn pods_from_log_dir(dir: &Path) -> Result<Vec<Pod>, KubeError> {
    let entries = std::fs::read_dir(dir).map_err(|source| KubeError::PodLogs {
        dir: dir.to_owned(),
        source,
    })?;
    let mut pods: Vec<Pod> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name();
            let mut parts = name.to_str()?.split('_');
            let (Some(namespace), Some(pod), Some(uid), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return None;
            };
            if namespace.is_empty() || pod.is_empty() {
                return None;
            }
            Some(Pod {
                uid: pod_uid(uid)?,
                name: pod.to_owned(),
                namespace: namespace.to_owned(),
                labels: BTreeMap::new(),
                ips: Vec::new(),
                host_network: false,
                phase: None,
                containers: Vec::new(),
            })
        })
        .collect();
    pods.sort_by(|a, b| a.uid.cmp(&b.uid));
    Ok(pods)
}

/// Asks the kubelet for the pods bound to this node.
pub fn fetch_kubelet_pods(config: &KubeConfig, url: &str) -> Result<Vec<Pod>, KubeError> {
    let endpoint = Endpoint::parse(url).map_err(KubeError::Endpoint)?;
    let mut token = None;
    let tls = match endpoint.scheme {
        // The read-only port takes no credentials: the token is not sent in clear.
        Scheme::Http => None,
        Scheme::Https => {
            let text =
                std::fs::read_to_string(&config.token_path).map_err(|source| KubeError::Token {
                    path: config.token_path.clone(),
                    source,
                })?;
            token = Some(format!("Bearer {}", text.trim()));
            let tls = if config.insecure_skip_tls_verify {
                http::tls_config(Trust::Anyone)
            } else {
                let pem = std::fs::read(&config.ca_path).map_err(|source| KubeError::Ca {
                    path: config.ca_path.clone(),
                    source,
                })?;
                http::tls_config(Trust::Pem(&pem))
            };
            Some(tls.map_err(|source| KubeError::Tls {
                path: config.ca_path.clone(),
                source,
            })?)
        }
    };
    let mut headers = vec![("Accept", "application/json")];
    if let Some(t) = &token {
        headers.push(("Authorization", t.as_str()));
    }
    let limits = Limits {
        connect: config.timeout.min(Duration::from_secs(1)),
        total: config.timeout,
        max_body: MAX_POD_LIST,
    };
    let response =
        http::send(&endpoint, "GET", "/pods", &headers, limits, tls).map_err(|source| {
            KubeError::Kubelet {
                url: url.to_owned(),
                source,
            }
        })?;
    if response.status != 200 {
        return Err(KubeError::Status {
            url: url.to_owned(),
            status: response.status,
        });
    }
    parse_pod_list(&response.body)
}

/// Pods of this node by uid, address and container id, read from the first source that
/// answers, again when the list is [`refresh`](KubeConfig::refresh) old or, rate-limited, when
/// a lookup misses. Lookups may block for up to [`timeout`](KubeConfig::timeout) while the
/// kubelet is asked.
#[derive(Debug)]
pub struct PodIndex {
    config: KubeConfig,
    pods: Vec<Pod>,
    by_uid: HashMap<String, usize>,
    by_ip: HashMap<IpAddr, usize>,
    by_container: HashMap<String, usize>,
    source: Option<Source>,
    /// When the list was last read, or tried.
    read_at: Option<Instant>,
}

impl PodIndex {
    /// An empty index: nothing is read before the first lookup.
    pub fn new(config: KubeConfig) -> PodIndex {
        PodIndex {
            config,
            pods: Vec::new(),
            by_uid: HashMap::new(),
            by_ip: HashMap::new(),
            by_container: HashMap::new(),
            source: None,
            read_at: None,
        }
    }

    /// The pod with this uid.
    pub fn by_uid(&mut self, uid: &str) -> Option<&Pod> {
        self.lookup(|ix| ix.by_uid.get(uid).copied())
    }

    /// The pod that has this address of its own: hostNetwork pods (whose addresses are the
    /// node's) and pods that ended (whose addresses are free for others) are not found.
    pub fn by_ip(&mut self, ip: IpAddr) -> Option<&Pod> {
        self.lookup(|ix| ix.by_ip.get(&ip).copied())
    }

    /// The pod a container (full id) belongs to; the kubelet source only.
    pub fn by_container(&mut self, id: &str) -> Option<&Pod> {
        self.lookup(|ix| ix.by_container.get(id).copied())
    }

    /// The pods of the last read.
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// Where the last successful read came from.
    pub fn source(&self) -> Option<Source> {
        self.source
    }

    fn lookup(&mut self, find: impl Fn(&PodIndex) -> Option<usize>) -> Option<&Pod> {
        let age = self.read_at.map(|t| t.elapsed());
        let stale = age.is_none_or(|a| a >= self.config.refresh);
        let mut found = find(self);
        let missed_long_enough =
            found.is_none() && age.is_none_or(|a| a >= self.config.min_refresh);
        if stale || missed_long_enough {
            if let Err(e) = self.refresh() {
                debug!(error = %e, "no pod metadata");
            }
            found = find(self);
        }
        found.and_then(|i| self.pods.get(i))
    }

    /// Reads the pod list now, whatever the rate limits: from the kubelet, else from the pod
    /// log directories. On failure the previous list is kept.
    pub fn refresh(&mut self) -> Result<Source, KubeError> {
        // Counted from the attempt: a source that fails is not asked again at once.
        self.read_at = Some(Instant::now());
        let kubelet = match &self.config.kubelet {
            Some(url) => match fetch_kubelet_pods(&self.config, url) {
                Ok(pods) => Some(pods),
                Err(e) => {
                    debug!(error = %e, "kubelet pod list; falling back to pod log directories");
                    None
                }
            },
            None => None,
        };
        let (pods, source) = match kubelet {
            Some(pods) => (pods, Source::Kubelet),
            None => (pods_from_log_dir(&self.config.pod_logs)?, Source::PodLogs),
        };
        self.install(pods, source);
        Ok(source)
    }

    fn install(&mut self, pods: Vec<Pod>, source: Source) {
        self.by_uid.clear();
        self.by_ip.clear();
        self.by_container.clear();
        for (i, pod) in pods.iter().enumerate() {
            self.by_uid.insert(pod.uid.clone(), i);
            for c in &pod.containers {
                self.by_container.insert(c.clone(), i);
            }
            if pod.host_network || pod.ended() {
                continue;
            }
            for ip in &pod.ips {
                // Two live pods never share an address; should a list say so, the first stays.
                self.by_ip.entry(*ip).or_insert(i);
            }
        }
        self.pods = pods;
        self.source = Some(source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrib::{http::tests::read_head, testdir::TestDir};
    use std::{io::Write, net::TcpListener, sync::Arc, thread::JoinHandle};

    const POD_LIST: &[u8] = include_bytes!("testdata/podlist.json");
    const TEST_CA: &[u8] = include_bytes!("testdata/test-ca.crt");
    const OTHER_CA: &[u8] = include_bytes!("testdata/other-ca.crt");
    const KUBELET_CERT: &[u8] = include_bytes!("testdata/test-kubelet.crt");
    const KUBELET_KEY: &[u8] = include_bytes!("testdata/test-kubelet.key");

    const WEB_UID: &str = "8b7a3c52-0f1e-4d6a-9c2b-71e5d4f3a1b0";
    const WEB_CONTAINER: &str = "4d9c1e9f1c5b2a7d8e0f3a6b9c2d5e8f1a4b7c0d3e6f9a2b5c8d1e4f7a0b3c6d";

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    /// A config that asks nothing outside `dir` and the given kubelet.
    fn config(dir: &TestDir, kubelet: Option<String>) -> KubeConfig {
        KubeConfig {
            kubelet,
            token_path: dir.path().join("token"),
            ca_path: dir.path().join("ca.crt"),
            pod_logs: dir.path().join("pods"),
            timeout: Duration::from_secs(5),
            ..KubeConfig::default()
        }
    }

    #[test]
    fn the_pod_list_is_read_from_the_kubelet_shape() {
        let pods = parse_pod_list(POD_LIST).expect("parse");
        assert_eq!(pods.len(), 7);
        let web = &pods[0];
        assert_eq!(
            (web.uid.as_str(), web.name.as_str(), web.namespace.as_str()),
            (WEB_UID, "web-7d4b9c8f6d-x2k9p", "default")
        );
        assert_eq!(web.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(web.ips, vec![ip("10.244.1.17"), ip("fd00:10:244:1::11")]);
        assert!(!web.host_network && !web.ended());
        assert_eq!(web.containers.len(), 2, "init container and main container");
        assert_eq!(web.containers[1], WEB_CONTAINER);
        let proxy = &pods[1];
        assert!(proxy.host_network);
        assert_eq!(proxy.ips, vec![ip("192.168.49.2")]);
        let apiserver = &pods[2];
        assert_eq!(apiserver.uid, "3b0b9fa3b5b4c4e5b1e7cbbdd7ef8e2a");
        let job = &pods[4];
        assert!(job.ended());
        let echo = &pods[5];
        assert_eq!(echo.ips, vec![ip("fd00:10:244:1::2a")]);
        assert_eq!(echo.containers[0].len(), 64, "cri-o:// prefix removed");
        let pending = &pods[6];
        assert!(pending.ips.is_empty() && pending.containers.is_empty());
        assert_eq!(pending.phase.as_deref(), Some("Pending"));

        assert!(matches!(
            parse_pod_list(b"<html>"),
            Err(KubeError::Parse(_))
        ));
        assert_eq!(
            parse_pod_list(br#"{"kind":"PodList","items":[{"metadata":{"name":"x"}}]}"#)
                .expect("parse")
                .len(),
            0,
            "an item without uid or namespace is passed over"
        );
        assert_eq!(
            parse_pod_list(br#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":null}"#)
                .expect("a node without pods")
                .len(),
            0
        );
    }

    #[test]
    fn addresses_name_only_live_pods_with_addresses_of_their_own() {
        let dir = TestDir::new("kube-index");
        let mut index = PodIndex::new(config(&dir, None));
        index.install(parse_pod_list(POD_LIST).expect("parse"), Source::Kubelet);
        index.read_at = Some(Instant::now());
        let name = |p: Option<&Pod>| p.map(|p| p.name.clone());
        assert_eq!(
            name(index.by_ip(ip("10.244.1.17"))).as_deref(),
            Some("web-7d4b9c8f6d-x2k9p")
        );
        assert_eq!(
            name(index.by_ip(ip("fd00:10:244:1::11"))).as_deref(),
            Some("web-7d4b9c8f6d-x2k9p")
        );
        assert_eq!(
            name(index.by_ip(ip("fd00:10:244:1::2a"))).as_deref(),
            Some("echo-5f9c7b8d4-q7w2e")
        );
        // The completed job had 10.244.1.23 before the stateful pod got it.
        assert_eq!(
            name(index.by_ip(ip("10.244.1.23"))).as_deref(),
            Some("ledger-0")
        );
        // The node's address is no pod's, whatever the hostNetwork pods say.
        assert_eq!(index.by_ip(ip("192.168.49.2")), None);
        assert_eq!(
            name(index.by_uid("71f0a2b4-c6d8-4e0a-b2c4-d6e8f0a2b4c6")).as_deref(),
            Some("report-28391520-4xkzt")
        );
        assert_eq!(
            name(index.by_uid("3b0b9fa3b5b4c4e5b1e7cbbdd7ef8e2a")).as_deref(),
            Some("kube-apiserver-node-1")
        );
        assert_eq!(
            name(index.by_container(WEB_CONTAINER)).as_deref(),
            Some("web-7d4b9c8f6d-x2k9p")
        );
    }

    #[test]
    fn pod_log_directories_name_pods() {
        let dir = TestDir::new("kube-logs");
        dir.mkdir(&format!("pods/default_web-7d4b9c8f6d-x2k9p_{WEB_UID}/web"));
        dir.mkdir("pods/kube-system_kube-apiserver-node-1_3b0b9fa3b5b4c4e5b1e7cbbdd7ef8e2a");
        dir.mkdir("pods/not-a-pod");
        dir.mkdir("pods/ns_name_not-a-uid");
        dir.mkdir(&format!("pods/a_b_c_{WEB_UID}"));
        dir.write(&format!("pods/default_file_{WEB_UID}"), "");
        let pods = pods_from_log_dir(&dir.path().join("pods")).expect("list");
        let names: Vec<(&str, &str, &str)> = pods
            .iter()
            .map(|p| (p.namespace.as_str(), p.name.as_str(), p.uid.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                (
                    "kube-system",
                    "kube-apiserver-node-1",
                    "3b0b9fa3b5b4c4e5b1e7cbbdd7ef8e2a"
                ),
                ("default", "web-7d4b9c8f6d-x2k9p", WEB_UID),
            ]
        );
        let mut index = PodIndex::new(config(&dir, None));
        assert_eq!(
            index.by_uid(WEB_UID).map(|p| p.name.as_str()),
            Some("web-7d4b9c8f6d-x2k9p")
        );
        assert_eq!(index.source(), Some(Source::PodLogs));
    }

    #[test]
    fn misses_read_again_at_most_once_per_interval() {
        let dir = TestDir::new("kube-miss");
        dir.mkdir(&format!("pods/default_web_{WEB_UID}"));
        let late = "0f9e8d7c-6b5a-4f3e-9d2c-1b0a9f8e7d6c";
        let mut index = PodIndex::new(KubeConfig {
            min_refresh: Duration::from_secs(3600),
            refresh: Duration::from_secs(3600),
            ..config(&dir, None)
        });
        assert!(index.by_uid(WEB_UID).is_some());
        dir.mkdir(&format!("pods/default_late_{late}"));
        assert!(index.by_uid(late).is_none(), "read a moment ago");
        index.config.min_refresh = Duration::ZERO;
        assert_eq!(index.by_uid(late).map(|p| p.name.as_str()), Some("late"));
        // A stale list is read again even for a hit: the pod may have gone.
        std::fs::remove_dir(dir.path().join(format!("pods/default_web_{WEB_UID}"))).expect("rm");
        index.config.refresh = Duration::ZERO;
        assert!(index.by_uid(WEB_UID).is_none());
    }

    #[test]
    fn off_kubernetes_nothing_is_found_and_errors_say_why() {
        let dir = TestDir::new("kube-off");
        let mut index = PodIndex::new(config(&dir, None));
        assert_eq!(index.by_uid(WEB_UID), None);
        assert_eq!(index.by_ip(ip("10.0.0.1")), None);
        assert_eq!(index.source(), None);
        let err = index.refresh().expect_err("no source");
        assert!(matches!(err, KubeError::PodLogs { .. }), "{err}");
        assert!(std::error::Error::source(&err).is_some());
        // Without the token there is no HTTPS request at all.
        let err =
            fetch_kubelet_pods(&config(&dir, None), "https://127.0.0.1:1").expect_err("no token");
        assert!(matches!(err, KubeError::Token { .. }), "{err}");
        dir.write("token", "t");
        let err =
            fetch_kubelet_pods(&config(&dir, None), "https://127.0.0.1:1").expect_err("no CA");
        assert!(matches!(err, KubeError::Ca { .. }), "{err}");
        assert!(matches!(
            fetch_kubelet_pods(&config(&dir, None), "kubelet:10250"),
            Err(KubeError::Endpoint(_))
        ));
        assert_eq!(
            kubelet_url("node-1.internal"),
            "https://node-1.internal:10250"
        );
        assert_eq!(kubelet_url("fd00::2"), "https://[fd00::2]:10250");
    }

    /// Answers one plain HTTP request on 127.0.0.1 the way the kubelet's Go server does
    /// (chunked, as Go sends bodies it did not measure first).
    fn read_only_kubelet(status: &'static str) -> (u16, JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            conn.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let head = read_head(&mut conn);
            let mut answer = format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nDate: Mon, 23 Nov 2026 12:00:00 GMT\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
            for chunk in POD_LIST.chunks(4096) {
                answer.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                answer.extend_from_slice(chunk);
                answer.extend_from_slice(b"\r\n");
            }
            answer.extend_from_slice(b"0\r\n\r\n");
            let _ = conn.write_all(&answer);
            head
        });
        (port, server)
    }

    #[test]
    fn the_read_only_port_is_asked_without_the_token() {
        let dir = TestDir::new("kube-ro");
        dir.write("token", "secret-token\n");
        let (port, server) = read_only_kubelet("200 OK");
        let mut index = PodIndex::new(config(&dir, Some(format!("http://127.0.0.1:{port}"))));
        let web = index.by_ip(ip("10.244.1.17")).expect("web pod");
        assert_eq!(
            web.labels.get("pod-template-hash").map(String::as_str),
            Some("7d4b9c8f6d")
        );
        assert_eq!(index.source(), Some(Source::Kubelet));
        let head = server.join().expect("server");
        assert!(head.starts_with("GET /pods HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("Accept: application/json\r\n"));
        assert!(!head.contains("secret-token"), "{head}");
    }

    #[test]
    fn a_refusing_kubelet_falls_back_to_pod_log_directories() {
        let dir = TestDir::new("kube-401");
        dir.mkdir(&format!("pods/default_web_{WEB_UID}"));
        let (port, server) = read_only_kubelet("401 Unauthorized");
        let url = format!("http://127.0.0.1:{port}");
        let err = fetch_kubelet_pods(&config(&dir, None), &url).expect_err("401");
        assert!(
            matches!(err, KubeError::Status { status: 401, .. }),
            "{err}"
        );
        server.join().expect("server");
        let (port, server) = read_only_kubelet("403 Forbidden");
        let mut index = PodIndex::new(config(&dir, Some(format!("http://127.0.0.1:{port}"))));
        assert_eq!(index.refresh().expect("fallback"), Source::PodLogs);
        assert_eq!(index.by_uid(WEB_UID).map(|p| p.name.as_str()), Some("web"));
        server.join().expect("server");
    }

    /// An HTTPS kubelet on 127.0.0.1 with the test certificate, answering `connections`
    /// connections; hands back the request heads it read (empty when the handshake failed).
    fn tls_kubelet(connections: usize) -> (u16, JoinHandle<Vec<String>>) {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(KUBELET_CERT)
            .collect::<Result<_, _>>()
            .expect("cert");
        let key = PrivateKeyDer::from_pem_slice(KUBELET_KEY).expect("key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let mut heads = Vec::new();
            for _ in 0..connections {
                let (conn, _) = listener.accept().expect("accept");
                conn.set_read_timeout(Some(Duration::from_secs(5)))
                    .expect("timeout");
                let tls = rustls::ServerConnection::new(config.clone()).expect("conn");
                let mut stream = rustls::StreamOwned::new(tls, conn);
                let head = read_head(&mut stream);
                if !head.is_empty() {
                    let mut answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        POD_LIST.len()
                    )
                    .into_bytes();
                    answer.extend_from_slice(POD_LIST);
                    let _ = stream.write_all(&answer);
                    stream.conn.send_close_notify();
                    let _ = stream.flush();
                }
                heads.push(head);
            }
            heads
        });
        (port, server)
    }

    #[test]
    fn https_kubelet_is_verified_against_the_cluster_ca_and_given_the_token() {
        let dir = TestDir::new("kube-tls");
        dir.write("token", "eyJhbGciOiJSUzI1NiJ9.test-token\n");
        dir.write("ca.crt", TEST_CA);
        let (port, server) = tls_kubelet(1);
        let url = format!("https://127.0.0.1:{port}");
        let pods = fetch_kubelet_pods(&config(&dir, None), &url).expect("pods over TLS");
        assert_eq!(pods.len(), 7);
        let heads = server.join().expect("server");
        assert!(
            heads[0].contains("Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.test-token\r\n"),
            "{}",
            heads[0]
        );
    }

    #[test]
    fn a_kubelet_certificate_from_another_ca_is_refused_unless_verification_is_off() {
        let dir = TestDir::new("kube-tls-other");
        dir.write("token", "t");
        dir.write("ca.crt", OTHER_CA);
        let (port, server) = tls_kubelet(2);
        let url = format!("https://127.0.0.1:{port}");
        let err = fetch_kubelet_pods(&config(&dir, None), &url).expect_err("untrusted");
        assert!(matches!(err, KubeError::Kubelet { .. }), "{err}");
        let insecure = KubeConfig {
            insecure_skip_tls_verify: true,
            ..config(&dir, None)
        };
        assert_eq!(
            fetch_kubelet_pods(&insecure, &url)
                .expect("unverified")
                .len(),
            7
        );
        let heads = server.join().expect("server");
        assert!(heads[0].is_empty(), "no request after a failed handshake");
        // A CA file with no certificate is a set-up error, not a connection error.
        dir.write("ca.crt", "not a certificate");
        let err = fetch_kubelet_pods(&config(&dir, None), &url).expect_err("bad CA");
        assert!(matches!(err, KubeError::Tls { .. }), "{err}");
    }
}
