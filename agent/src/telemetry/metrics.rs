//! The agent's metrics: one registry that the Prometheus endpoint renders as text and the
//! OTLP exporter observes, so both always say the same numbers.
//!
//! Updated from the main loop (one uncontended lock per event); read by a scrape or an export
//! every few seconds.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{Arc, Mutex, MutexGuard},
};

/// Counters only grow; gauges are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// A metric and its meaning. `name` is the OpenTelemetry name; the Prometheus name is derived
/// from it (dots to underscores, `_total` on counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: &'static str,
    pub help: &'static str,
}

const fn counter(name: &'static str, unit: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Counter,
        unit,
        help,
    }
}

const fn gauge(name: &'static str, unit: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Gauge,
        unit,
        help,
    }
}

pub const FLOWS: Family = counter(
    "sealwatch.flows",
    "{flow}",
    "Flows classified, by encryption verdict, protocol family and policy action",
);
pub const BYTES: Family = counter(
    "sealwatch.bytes",
    "By",
    "IP bytes of classified flows (both directions), by encryption verdict, protocol family and policy action",
);
pub const PACKETS: Family = counter(
    "sealwatch.packets",
    "{packet}",
    "Packets of classified flows (both directions), by encryption verdict, protocol family and policy action",
);
pub const DROPPED_PACKETS: Family = counter(
    "sealwatch.dropped.packets",
    "{packet}",
    "Payload packets enforce mode dropped in the kernel",
);
pub const DROPPED_FLOWS: Family = counter(
    "sealwatch.dropped.flows",
    "{flow}",
    "Flows enforce mode started dropping",
);
pub const EVENTS_LOST: Family = counter(
    "sealwatch.ringbuf.lost",
    "{event}",
    "Kernel events the ring buffer had no room for, by kind (notice, sample)",
);
pub const KERNEL: Family = counter(
    "sealwatch.kernel.events",
    "{event}",
    "Every kernel program counter, by name (packets, malformed, fragments, ...)",
);
pub const TABLE_ENTRIES: Family = gauge(
    "sealwatch.flow_table.entries",
    "{flow}",
    "Flows in the kernel flow table at the last sweep",
);
pub const TABLE_CAPACITY: Family = gauge(
    "sealwatch.flow_table.capacity",
    "{flow}",
    "Capacity of the kernel flow table (LRU: the least recently seen flow is evicted when full)",
);
pub const EVICTIONS: Family = counter(
    "sealwatch.flow_table.evictions",
    "{flow}",
    "Flows the full flow table evicted before they ended",
);
pub const POLICY_RELOADS: Family = counter(
    "sealwatch.policy.reloads",
    "{reload}",
    "Policy reloads, by result (applied, rejected)",
);
pub const ALERTS: Family = counter(
    "sealwatch.alerts",
    "{record}",
    "Alert log records produced, by severity",
);
pub const ALERTS_DROPPED: Family = counter(
    "sealwatch.alerts.dropped",
    "{record}",
    "Alert log records not delivered, by reason (queue_full, export_failed)",
);
pub const EXPORT_FAILURES: Family = counter(
    "sealwatch.export.failures",
    "{export}",
    "OTLP exports that failed after their retries, by signal (logs, metrics)",
);
pub const FLOW_LOG_RECORDS: Family = counter(
    "sealwatch.flow_log.records",
    "{record}",
    "Records written to the flow log",
);
pub const FLOW_LOG_ERRORS: Family = counter(
    "sealwatch.flow_log.errors",
    "{error}",
    "Flow-log writes or rotations that failed",
);

/// Every family, in the order they are rendered.
pub const ALL: &[Family] = &[
    FLOWS,
    BYTES,
    PACKETS,
    DROPPED_PACKETS,
    DROPPED_FLOWS,
    EVENTS_LOST,
    KERNEL,
    TABLE_ENTRIES,
    TABLE_CAPACITY,
    EVICTIONS,
    POLICY_RELOADS,
    ALERTS,
    ALERTS_DROPPED,
    EXPORT_FAILURES,
    FLOW_LOG_RECORDS,
    FLOW_LOG_ERRORS,
];

/// Label pairs, sorted by key.
pub type Labels = Vec<(&'static str, String)>;

/// The registry, shared by the main loop, the exporter and the endpoint.
#[derive(Debug, Default, Clone)]
pub struct Metrics(Arc<Mutex<BTreeMap<&'static str, BTreeMap<Labels, u64>>>>);

impl Metrics {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<&'static str, BTreeMap<Labels, u64>>> {
        // A panic elsewhere while holding it leaves numbers that are still numbers.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, family: &Family, labels: &[(&'static str, &str)], n: u64) {
        let mut m = self.lock();
        let v = m
            .entry(family.name)
            .or_default()
            .entry(owned(labels))
            .or_default();
        *v = v.saturating_add(n);
    }

    /// Sets a gauge, or a counter mirrored from a total kept elsewhere (the kernel's).
    pub fn set(&self, family: &Family, labels: &[(&'static str, &str)], value: u64) {
        self.lock()
            .entry(family.name)
            .or_default()
            .insert(owned(labels), value);
    }

    /// Every series of one family.
    pub fn series(&self, family: &Family) -> Vec<(Labels, u64)> {
        self.lock()
            .get(family.name)
            .map(|s| s.iter().map(|(l, v)| (l.clone(), *v)).collect())
            .unwrap_or_default()
    }

    pub fn get(&self, family: &Family, labels: &[(&'static str, &str)]) -> u64 {
        self.lock()
            .get(family.name)
            .and_then(|s| s.get(&owned(labels)))
            .copied()
            .unwrap_or(0)
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn prometheus(&self) -> String {
        let m = self.lock();
        let mut out = String::new();
        for family in ALL {
            let name = prometheus_name(family);
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let kind = match family.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in m.get(family.name).into_iter().flatten() {
                out.push_str(&name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, (k, v)) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        // Prometheus label names have no dots: `sealwatch.action` is `sealwatch_action`,
                        // as the collector's Prometheus exporter names it too.
                        let _ = write!(out, "{}=\"{}\"", k.replace('.', "_"), escape_label(v));
                    }
                    out.push('}');
                }
                let _ = writeln!(out, " {value}");
            }
        }
        out
    }
}

fn owned(labels: &[(&'static str, &str)]) -> Labels {
    let mut l: Labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    l.sort();
    l
}

pub fn prometheus_name(family: &Family) -> String {
    let base = family.name.replace('.', "_");
    match family.kind {
        Kind::Counter => format!("{base}_total"),
        Kind::Gauge => base,
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_gauges_set_and_both_render_as_prometheus_text() {
        let m = Metrics::default();
        let labels = [
            ("sealwatch.encryption", "plaintext"),
            ("network.protocol.name", "redis"),
            ("sealwatch.action", "drop"),
        ];
        m.add(&FLOWS, &labels, 1);
        m.add(&FLOWS, &labels, 2);
        m.set(&TABLE_ENTRIES, &[], 7);
        m.set(&TABLE_ENTRIES, &[], 5);
        assert_eq!(m.get(&FLOWS, &labels), 3);
        let text = m.prometheus();
        assert!(
            text.contains("# TYPE sealwatch_flows_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "sealwatch_flows_total{network_protocol_name=\"redis\",sealwatch_action=\"drop\",sealwatch_encryption=\"plaintext\"} 3\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "# TYPE sealwatch_flow_table_entries gauge\nsealwatch_flow_table_entries 5\n"
        ));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.add(&KERNEL, &[("counter", "a\"b\\c\nd")], 1);
        assert!(
            m.prometheus()
                .contains("sealwatch_kernel_events_total{counter=\"a\\\"b\\\\c\\nd\"} 1")
        );
    }
}
