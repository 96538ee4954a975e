//! What leaves the agent besides stdout: metrics (Prometheus text endpoint and OTLP), alerts
//! (OTLP log records, deduplicated), and the flow log's bookkeeping.

pub mod alerts;
pub mod metrics;
pub mod otlp;
pub mod serve;

use std::collections::BTreeMap;

use self::{
    alerts::{Alert, Alerts},
    metrics::Metrics,
    otlp::{Otlp, OtlpConfig, OtlpError},
};
use crate::event::Event;

/// Offences followed at once by the alert deduplicator, at most.
const MAX_OFFENCES: usize = 16_384;

/// Metrics always; alerts when there is a collector to send them to.
pub struct Telemetry {
    metrics: Metrics,
    alerts: Alerts,
    otlp: Option<Otlp>,
    due: Vec<Alert>,
}

impl Telemetry {
    pub fn new(
        metrics: Metrics,
        otlp: Option<&OtlpConfig>,
        alert_interval: std::time::Duration,
        node: &BTreeMap<&'static str, String>,
    ) -> Result<Telemetry, OtlpError> {
        let otlp = match otlp {
            // Off the caller's thread: it may be inside a tokio runtime, where the blocking
            // HTTP client can neither be built nor dropped.
            Some(config) => Some(off_runtime(|| {
                Otlp::start(config, otlp::resource(node), metrics.clone())
            })?),
            None => None,
        };
        Ok(Telemetry {
            metrics,
            alerts: Alerts::new(alert_interval, MAX_OFFENCES),
            otlp,
            due: Vec::new(),
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Counts an event, and alerts on it when it is an offence.
    pub fn observe(&mut self, event: &Event, now_ns: u64) {
        match event {
            Event::Flow(f) => {
                let labels = [
                    ("sealwatch.encryption", f.encryption),
                    ("network.protocol.name", f.protocol),
                    ("sealwatch.action", f.action),
                ];
                match f.event {
                    "flow" => self.metrics.add(&metrics::FLOWS, &labels, 1),
                    "flow.record" => {
                        if let Some(c) = &f.end {
                            self.metrics.add(
                                &metrics::BYTES,
                                &labels,
                                c.client_bytes + c.server_bytes,
                            );
                            self.metrics.add(
                                &metrics::PACKETS,
                                &labels,
                                c.client_packets + c.server_packets,
                            );
                        }
                    }
                    _ => {}
                }
                if self.otlp.is_some() {
                    self.alerts.observe(f, now_ns, &mut self.due);
                    self.send_due();
                }
            }
            Event::Agent(a) => match a.state {
                "policy_reloaded" => {
                    self.metrics
                        .add(&metrics::POLICY_RELOADS, &[("result", "applied")], 1)
                }
                "policy_rejected" => {
                    self.metrics
                        .add(&metrics::POLICY_RELOADS, &[("result", "rejected")], 1)
                }
                _ => {}
            },
            Event::Service(_) => {}
        }
    }

    /// Summaries of repeated offences whose interval has passed.
    pub fn tick(&mut self, now_ns: u64) {
        if self.otlp.is_some() {
            self.alerts.due(now_ns, &mut self.due);
            self.send_due();
        }
    }

    /// The agent's and the kernel's counters, mirrored (they are totals kept elsewhere).
    pub fn counters(&self, counters: &BTreeMap<String, u64>, table: (usize, u32)) {
        let m = &self.metrics;
        for (name, value) in counters {
            if let Some(stat) = name.strip_prefix("sealwatch.kernel.") {
                m.set(&metrics::KERNEL, &[("counter", stat)], *value);
                match stat {
                    "dropped" => m.set(&metrics::DROPPED_PACKETS, &[], *value),
                    "flows_dropped" => m.set(&metrics::DROPPED_FLOWS, &[], *value),
                    "notices_lost" => m.set(&metrics::EVENTS_LOST, &[("kind", "notice")], *value),
                    "samples_lost" => m.set(&metrics::EVENTS_LOST, &[("kind", "sample")], *value),
                    _ => {}
                }
            } else if name == "sealwatch.agent.flows_evicted" {
                m.set(&metrics::EVICTIONS, &[], *value);
            }
        }
        m.set(&metrics::TABLE_ENTRIES, &[], table.0 as u64);
        m.set(&metrics::TABLE_CAPACITY, &[], u64::from(table.1));
    }

    fn send_due(&mut self) {
        let Some(otlp) = &self.otlp else {
            self.due.clear();
            return;
        };
        for alert in self.due.drain(..) {
            self.metrics
                .add(&metrics::ALERTS, &[("severity", alert.severity.name())], 1);
            otlp.emit(&alert);
        }
    }

    /// Summarizes open offences, sends what is queued and the last metrics (a few seconds at
    /// most).
    pub fn shutdown(mut self) {
        self.alerts.close_all(&mut self.due);
        self.send_due();
        if let Some(otlp) = self.otlp.take() {
            off_runtime(|| otlp.shutdown());
        }
    }
}

/// Runs `f` on a thread of its own and waits for it.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}
