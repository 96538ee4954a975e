//! This node's pods, kept fresh off the event loop: a thread owns the [`PodIndex`] (whose
//! kubelet requests may take seconds) and publishes a snapshot the agent reads without waiting.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use tracing::debug;

use super::kube::{KubeConfig, Pod, PodIndex};

/// Pods by uid, container id and IP (pods that ended and hostNetwork pods claim no IP).
#[derive(Debug, Default)]
pub struct PodSnapshot {
    by_uid: HashMap<String, Arc<Pod>>,
    by_container: HashMap<String, Arc<Pod>>,
    by_ip: HashMap<IpAddr, Arc<Pod>>,
}

impl PodSnapshot {
    pub fn new(pods: &[Pod]) -> PodSnapshot {
        let mut s = PodSnapshot::default();
        for pod in pods {
            let pod = Arc::new(pod.clone());
            s.by_uid.insert(pod.uid.clone(), Arc::clone(&pod));
            for c in &pod.containers {
                s.by_container.insert(c.clone(), Arc::clone(&pod));
            }
            if !pod.host_network && !pod.ended() {
                for ip in &pod.ips {
                    s.by_ip.insert(*ip, Arc::clone(&pod));
                }
            }
        }
        s
    }

    pub fn pods(&self) -> impl Iterator<Item = &Pod> {
        self.by_uid.values().map(AsRef::as_ref)
    }

    pub fn by_uid(&self, uid: &str) -> Option<&Pod> {
        self.by_uid.get(uid).map(AsRef::as_ref)
    }

    pub fn by_container(&self, id: &str) -> Option<&Pod> {
        self.by_container.get(id).map(AsRef::as_ref)
    }

    pub fn by_ip(&self, ip: IpAddr) -> Option<&Pod> {
        self.by_ip.get(&ip).map(AsRef::as_ref)
    }
}

/// The latest snapshot, and a way to ask for a fresher one (clones share them).
#[derive(Clone)]
pub struct PodView {
    current: Arc<Mutex<Arc<PodSnapshot>>>,
    nudge: mpsc::SyncSender<()>,
    /// The first read of the pod list is over (whatever it found).
    settled: Arc<std::sync::atomic::AtomicBool>,
}

impl PodView {
    /// Starts the refreshing thread: a refresh every `every`, and one when a lookup missed
    /// (the index itself rate-limits those).
    pub fn spawn(config: KubeConfig, every: Duration) -> PodView {
        let current = Arc::new(Mutex::new(Arc::new(PodSnapshot::default())));
        let (nudge, nudged) = mpsc::sync_channel(1);
        let shared = Arc::clone(&current);
        let settled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let first = Arc::clone(&settled);
        let spawned = std::thread::Builder::new()
            .name("pods".into())
            .spawn(move || {
                let mut index = PodIndex::new(config);
                loop {
                    match index.refresh() {
                        Ok(source) => {
                            let snapshot = Arc::new(PodSnapshot::new(index.pods()));
                            debug!(?source, pods = index.pods().len(), "pods refreshed");
                            if let Ok(mut c) = shared.lock() {
                                *c = snapshot;
                            }
                        }
                        Err(e) => debug!(error = %e, "no pod list (not a Kubernetes node?)"),
                    }
                    first.store(true, std::sync::atomic::Ordering::Release);
                    match nudged.recv_timeout(every) {
                        Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            });
        if let Err(e) = spawned {
            debug!(error = %e, "pod lookups off: cannot start their thread");
            settled.store(true, std::sync::atomic::Ordering::Release);
        }
        PodView {
            current,
            nudge,
            settled,
        }
    }

    /// Whether the first read of the pod list is over: what is named before may lack its pod.
    pub fn settled(&self) -> bool {
        self.settled.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn snapshot(&self) -> Arc<PodSnapshot> {
        self.current
            .lock()
            .map(|c| Arc::clone(&c))
            .unwrap_or_default()
    }

    /// A lookup missed: refresh soon (at most one request waits).
    pub fn missed(&self) {
        let _ = self.nudge.try_send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, ip: &str, phase: &str, host_network: bool) -> Pod {
        Pod {
            uid: uid.into(),
            name: format!("pod-{uid}"),
            namespace: "shop".into(),
            labels: Default::default(),
            ips: vec![ip.parse().expect("ip")],
            host_network,
            phase: Some(phase.into()),
            containers: vec![format!("{uid}c0ffee")],
        }
    }

    #[test]
    fn ended_and_host_network_pods_claim_no_ip() {
        let s = PodSnapshot::new(&[
            pod("a", "10.1.0.5", "Succeeded", false),
            pod("b", "10.1.0.5", "Running", false),
            pod("c", "10.0.0.9", "Running", true),
        ]);
        assert_eq!(
            s.by_ip("10.1.0.5".parse().expect("ip")).map(|p| &p.uid[..]),
            Some("b")
        );
        assert!(s.by_ip("10.0.0.9".parse().expect("ip")).is_none());
        assert_eq!(s.by_uid("a").map(|p| &p.name[..]), Some("pod-a"));
        assert_eq!(s.by_container("cc0ffee").map(|p| &p.uid[..]), Some("c"));
    }
}
