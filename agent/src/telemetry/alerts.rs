//! Alerts: the flows policy objects to, deduplicated. A client reconnecting a thousand times
//! to the same plaintext service is one alert when it starts, then one record per interval
//! with how many more times it happened, not a thousand records.
//!
//! The first flow of an offence is alerted at once (time to alert matters); repeats within
//! the interval are counted, and at its end one record carries their count and the window
//! stays open while the offence goes on. The counts of an offence's records add up to its
//! flows.

use std::{collections::HashMap, net::IpAddr};

use crate::event::FlowEvent;

/// What the alert is about, in order of how bad it is for the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    Plaintext,
    WeakTls,
    Unknown,
    /// Encrypted and not weak, yet the policy objected (e.g. `unknown: alert` on a fully
    /// encrypted unnamed flow).
    Policy,
}

impl AlertKind {
    pub fn name(self) -> &'static str {
        match self {
            AlertKind::Plaintext => "plaintext",
            AlertKind::WeakTls => "weak-tls",
            AlertKind::Unknown => "unknown",
            AlertKind::Policy => "policy",
        }
    }

    fn of(e: &FlowEvent) -> AlertKind {
        match e.encryption {
            "plaintext" => AlertKind::Plaintext,
            "unknown" => AlertKind::Unknown,
            _ if !e.weak.is_empty() => AlertKind::WeakTls,
            _ => AlertKind::Policy,
        }
    }
}

/// OpenTelemetry severity, by what happened: a drop broke a connection (ERROR); plaintext and
/// weak TLS are violations that still flow in monitor mode (WARN); an unnamed flow is
/// something to look at (INFO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warn,
    Info,
}

impl Severity {
    pub fn of(kind: AlertKind, action: &str) -> Severity {
        match (action, kind) {
            ("drop", _) => Severity::Error,
            (_, AlertKind::Plaintext | AlertKind::WeakTls) => Severity::Warn,
            _ => Severity::Info,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Warn => "WARN",
            Severity::Info => "INFO",
        }
    }

    /// The OTel log data model's SeverityNumber.
    pub fn number(self) -> i32 {
        match self {
            Severity::Error => 17,
            Severity::Warn => 13,
            Severity::Info => 9,
        }
    }
}

/// One offence: who talks to which service, how, and what policy did. The client's port is
/// left out (every reconnection has a new one).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Offence {
    client: IpAddr,
    server: IpAddr,
    server_port: u16,
    transport: &'static str,
    protocol: &'static str,
    action: &'static str,
    kind: AlertKind,
}

impl Offence {
    fn of(e: &FlowEvent, kind: AlertKind) -> Offence {
        Offence {
            client: e.endpoints.client_address,
            server: e.endpoints.server_address,
            server_port: e.endpoints.server_port,
            transport: e.endpoints.transport,
            protocol: e.protocol,
            action: e.action,
            kind,
        }
    }
}

/// An alert record to send: the latest flow of the offence and how many flows it stands for.
#[derive(Debug, Clone)]
pub struct Alert {
    pub event: Box<FlowEvent>,
    pub kind: AlertKind,
    pub severity: Severity,
    /// Flows this record stands for: 1 for the first, the repeats for a summary.
    pub count: u64,
    /// Times of the first and last of those flows.
    pub first_seen: String,
    pub last_seen: String,
    /// A summary of repeats (not the first flow of the offence).
    pub repeat: bool,
}

impl Alert {
    /// One line for a person: what, who, where, what policy did, how often.
    pub fn body(&self) -> String {
        let e = &self.event;
        let ep = &e.endpoints;
        let what = match self.kind {
            AlertKind::Plaintext => format!("plaintext {}", e.protocol),
            AlertKind::WeakTls => format!(
                "weak {} ({})",
                e.tls_version
                    .map_or_else(|| e.protocol.to_owned(), |v| format!("TLS {v}")),
                e.weak.join(", ")
            ),
            AlertKind::Unknown => "unidentified traffic".to_owned(),
            AlertKind::Policy => format!("{} forbidden by policy", e.protocol),
        };
        let who = party(&e.attribution, true);
        let server = match ep.server_address {
            IpAddr::V6(a) => format!("[{a}]:{}", ep.server_port),
            IpAddr::V4(a) => format!("{a}:{}", ep.server_port),
        };
        let to = party(&e.attribution, false);
        let done = match e.action {
            "drop" => "dropped",
            "alert" => "allowed (monitor mode or not enforceable)",
            other => other,
        };
        let mut line = format!(
            "{what} from {}{who} to {server}/{}{to}: {done}",
            ep.client_address, ep.transport
        );
        if self.repeat {
            line.push_str(&format!(
                "; {} more time(s) since {}",
                self.count, self.first_seen
            ));
        }
        line
    }
}

/// ` (curl pid 12, pod ns/name)` for the client or server end when it is known.
fn party(a: &crate::event::Attribution, client: bool) -> String {
    let local_is_client = a.local_side == Some("client");
    let p = if client == local_is_client {
        &a.local
    } else {
        &a.peer
    };
    let mut parts = Vec::new();
    if let Some(exe) = &p.executable {
        parts.push(match p.pid {
            Some(pid) => format!("{exe} pid {pid}"),
            None => exe.clone(),
        });
    }
    if let (Some(ns), Some(pod)) = (&p.namespace, &p.pod) {
        parts.push(format!("pod {ns}/{pod}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

struct Window {
    opened_ns: u64,
    repeats: u64,
    first_seen: String,
    latest: Option<Box<FlowEvent>>,
}

/// The deduplicator. Bounded: when `max_offences` are open, all are summarized and closed
/// (nothing is lost, the next flows open new windows).
pub struct Alerts {
    interval_ns: u64,
    max_offences: usize,
    open: HashMap<Offence, Window>,
}

impl Alerts {
    pub fn new(interval: std::time::Duration, max_offences: usize) -> Alerts {
        Alerts {
            interval_ns: interval.as_nanos().try_into().unwrap_or(u64::MAX).max(1),
            max_offences: max_offences.max(1),
            open: HashMap::new(),
        }
    }

    /// A flow event: alerts for an offence not seen within the interval go to `out` at once.
    pub fn observe(&mut self, e: &FlowEvent, now_ns: u64, out: &mut Vec<Alert>) {
        if !matches!(e.event, "flow" | "drop") || !matches!(e.action, "alert" | "drop") {
            return;
        }
        let kind = AlertKind::of(e);
        let offence = Offence::of(e, kind);
        if let Some(w) = self.open.get_mut(&offence) {
            if w.repeats == 0 {
                w.first_seen = e.time.clone();
            }
            w.repeats += 1;
            w.latest = Some(Box::new(e.clone()));
            return;
        }
        if self.open.len() >= self.max_offences {
            self.close_all(out);
        }
        self.open.insert(
            offence,
            Window {
                opened_ns: now_ns,
                repeats: 0,
                first_seen: String::new(),
                latest: None,
            },
        );
        out.push(Alert {
            event: Box::new(e.clone()),
            kind,
            severity: Severity::of(kind, e.action),
            count: 1,
            first_seen: e.time.clone(),
            last_seen: e.time.clone(),
            repeat: false,
        });
    }

    /// Windows whose interval has passed: a summary of their repeats (the window goes on), or
    /// closed when the offence did not recur.
    pub fn due(&mut self, now_ns: u64, out: &mut Vec<Alert>) {
        let interval = self.interval_ns;
        self.open.retain(|offence, w| {
            if now_ns.saturating_sub(w.opened_ns) < interval {
                return true;
            }
            match summary(offence, w) {
                Some(alert) => {
                    out.push(alert);
                    w.opened_ns = now_ns;
                    true
                }
                None => false,
            }
        });
    }

    /// Summarizes and closes every window (the table is full, or the agent stops).
    pub fn close_all(&mut self, out: &mut Vec<Alert>) {
        for (offence, mut w) in self.open.drain() {
            out.extend(summary(&offence, &mut w));
        }
    }

    /// Offences with an open window.
    pub fn open(&self) -> usize {
        self.open.len()
    }
}

fn summary(offence: &Offence, w: &mut Window) -> Option<Alert> {
    let latest = w.latest.take()?;
    let count = std::mem::take(&mut w.repeats);
    Some(Alert {
        kind: offence.kind,
        severity: Severity::of(offence.kind, offence.action),
        count,
        first_seen: std::mem::take(&mut w.first_seen),
        last_seen: latest.time.clone(),
        event: latest,
        repeat: true,
    })
}

#[cfg(test)]
mod tests {
    use sealwatch_common::{Encryption, Protocol, flow::FlowKey, net::IPPROTO_TCP};

    use super::*;
    use crate::{event::Endpoints, policy::Action};

    const SECOND: u64 = 1_000_000_000;

    fn flow(client_port: u16, action: Action, time: &str) -> FlowEvent {
        let (key, side) =
            FlowKey::ipv4(IPPROTO_TCP, [10, 0, 0, 2], client_port, [10, 0, 0, 1], 6379);
        FlowEvent::new(
            "flow",
            time.into(),
            Endpoints::new(&key, side),
            Protocol::Redis,
            Encryption::Plaintext,
            action,
            "veth0".into(),
        )
    }

    #[test]
    fn a_thousand_reconnections_are_one_alert_then_one_count_per_interval() {
        let mut alerts = Alerts::new(std::time::Duration::from_secs(60), 100);
        let mut out = Vec::new();
        for i in 0..1000u16 {
            let t = u64::from(i) * SECOND / 100; // 10 s in all
            alerts.observe(
                &flow(40000 + i, Action::Alert, &format!("t{i}")),
                t,
                &mut out,
            );
        }
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].count, out[0].repeat), (1, false));
        assert_eq!(out[0].severity, Severity::Warn);
        alerts.due(30 * SECOND, &mut out);
        assert_eq!(out.len(), 1, "the interval has not passed");
        alerts.due(60 * SECOND, &mut out);
        assert_eq!(out.len(), 2);
        let summary = &out[1];
        assert_eq!(
            (
                summary.count,
                summary.repeat,
                summary.first_seen.as_str(),
                summary.last_seen.as_str()
            ),
            (999, true, "t1", "t999")
        );
        assert_eq!(out.iter().map(|a| a.count).sum::<u64>(), 1000);
        // Quiet for a whole interval: the window closes, the next flow alerts at once.
        alerts.due(120 * SECOND, &mut out);
        assert_eq!((out.len(), alerts.open()), (2, 0));
        alerts.observe(&flow(50000, Action::Alert, "later"), 121 * SECOND, &mut out);
        assert_eq!((out.len(), out[2].count), (3, 1));
    }

    #[test]
    fn allowed_and_excluded_flows_are_not_alerts_and_drops_are_errors() {
        let mut alerts = Alerts::new(std::time::Duration::from_secs(60), 100);
        let mut out = Vec::new();
        alerts.observe(&flow(1, Action::Allow, "t"), 0, &mut out);
        alerts.observe(&flow(2, Action::Excluded, "t"), 0, &mut out);
        assert!(out.is_empty());
        alerts.observe(&flow(3, Action::Drop, "t"), 0, &mut out);
        alerts.observe(&flow(4, Action::Alert, "t"), 0, &mut out);
        assert_eq!(out.len(), 2, "a drop and an alert are different offences");
        assert_eq!(out[0].severity.number(), 17);
        assert_eq!(
            out[0].body(),
            "plaintext redis from 10.0.0.2 to 10.0.0.1:6379/tcp: dropped"
        );
    }

    #[test]
    fn a_full_table_summarizes_instead_of_growing() {
        let mut alerts = Alerts::new(std::time::Duration::from_secs(60), 2);
        let mut out = Vec::new();
        let other = |port: u16| {
            let mut e = flow(1, Action::Alert, "t");
            e.endpoints.server_port = port;
            e
        };
        alerts.observe(&other(1), 0, &mut out);
        alerts.observe(&other(1), 0, &mut out);
        alerts.observe(&other(2), 0, &mut out);
        alerts.observe(&other(3), 0, &mut out);
        assert!(alerts.open() <= 2);
        // Three first alerts and the summary of port 1's repeat.
        assert_eq!(out.iter().map(|a| a.count).sum::<u64>(), 4);
    }
}
