//! Where `run`'s events go: stdout (every event but flow-log records), the flow log (records,
//! services, the agent's lifecycle) and telemetry (metrics of every event, alerts).

use std::io::{self, Write};

use crate::{
    clock::monotonic_ns, event::Event, flowlog::FlowLog, output::Output, telemetry::Telemetry,
};

pub struct Sinks<W> {
    pub out: Output<W>,
    pub flow_log: Option<FlowLog>,
    pub telemetry: Telemetry,
}

impl<W: Write> Sinks<W> {
    pub fn emit(&mut self, event: &Event) -> io::Result<()> {
        self.telemetry.observe(event, monotonic_ns());
        if let Some(log) = &mut self.flow_log {
            log.write(event);
        }
        if is_record(event) {
            return Ok(());
        }
        self.out.write(event)
    }

    /// After a batch of events: the flow log's buffer goes to the file.
    pub fn flush(&mut self) {
        if let Some(log) = &mut self.flow_log {
            log.flush();
        }
    }
}

/// A flow-log record: for the flow log and metrics only, not for stdout.
pub fn is_record(event: &Event) -> bool {
    matches!(event, Event::Flow(f) if f.event == "flow.record")
}
