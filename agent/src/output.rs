//! Writing events to stdout: one JSON object per line, or one readable line per event.

use std::io::{self, Write};

use crate::{
    cli::OutputFormat,
    event::{AgentEvent, Event, FlowEvent},
};

pub struct Output<W> {
    format: OutputFormat,
    writer: W,
    /// Serialised events not yet handed to `writer`: the one being written (live), or all
    /// since the last flush (batched). Serialising here first also spares a locked stdout
    /// serde_json's many small writes, each scanned for a newline by its `LineWriter`.
    pending: Vec<u8>,
    /// Flush after every event (live events) or only when told (analysis of a file).
    flush_each: bool,
}

impl<W: Write> Output<W> {
    /// Live events (`run`): consumed as they come (pipes, `jq`, log shippers), so each is
    /// written and flushed at once.
    pub fn new(format: OutputFormat, writer: W) -> Output<W> {
        Output {
            format,
            writer,
            pending: Vec::with_capacity(1024),
            flush_each: true,
        }
    }

    /// Events kept until the caller flushes (`analyze`: a write per event was a good part of
    /// its time on captures with many short flows). The caller picks the moment, so nothing is
    /// written while it has a progress line on the terminal, and bounds the memory with
    /// [`Output::pending`].
    pub fn batched(format: OutputFormat, writer: W) -> Output<W> {
        Output {
            flush_each: false,
            pending: Vec::with_capacity(64 << 10),
            ..Output::new(format, writer)
        }
    }

    pub fn write(&mut self, event: &Event) -> io::Result<()> {
        let start = self.pending.len();
        let serialised = match self.format {
            OutputFormat::Json => match event {
                Event::Flow(f) => {
                    crate::json::write_flow(f, &mut self.pending);
                    Ok(())
                }
                other => serde_json::to_writer(&mut self.pending, other).map_err(io::Error::from),
            },
            OutputFormat::Text => write!(self.pending, "{}", text(event)),
        };
        if let Err(e) = serialised {
            self.pending.truncate(start);
            return Err(e);
        }
        self.pending.push(b'\n');
        if self.flush_each {
            self.flush()?;
        }
        Ok(())
    }

    /// Bytes of events waiting for [`Output::flush`].
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Writes out the pending events and flushes the writer.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            // Dropped on failure too: a broken pipe must not make them pile up.
            let written = self.writer.write_all(&self.pending);
            self.pending.clear();
            written?;
        }
        self.writer.flush()
    }
}

fn text(event: &Event) -> String {
    match event {
        Event::Flow(f) => flow_text(f),
        Event::Agent(a) => agent_text(a),
        Event::Service(s) => {
            let who = &s.owner.local;
            format!(
                "{} service   {}/{} pid={} exe={}{}",
                s.time,
                s.transport,
                s.port,
                who.pid.map_or_else(|| "?".to_owned(), |p| p.to_string()),
                who.executable.as_deref().unwrap_or("?"),
                who.container_id
                    .as_deref()
                    .map(|c| format!(" container={}", &c[..c.len().min(12)]))
                    .unwrap_or_default()
            )
        }
    }
}

fn flow_text(f: &FlowEvent) -> String {
    let e = &f.endpoints;
    let peers = format!(
        "{} {} -> {}",
        e.transport,
        socket(&e.client_address.to_string(), e.client_port, e.network_type),
        socket(&e.server_address.to_string(), e.server_port, e.network_type)
    );
    match &f.end {
        None => format!(
            "{} {:<9} {:<8} {peers}  action={} iface={}{}",
            f.time,
            f.encryption.to_uppercase(),
            f.protocol,
            f.action,
            f.interface,
            details(f)
        ),
        Some(end) => format!(
            "{} {:<9} {:<8} {peers}  {} after {} ms: client sent {} B in {} pkts, server sent {} B in {} pkts",
            f.time,
            "end",
            f.protocol,
            end.reason.unwrap_or("open"),
            end.duration_ms,
            end.client_bytes,
            end.client_packets,
            end.server_bytes,
            end.server_packets
        ),
    }
}

/// What deep parsing added, shortest first: `starttls tls=1.3 X25519MLKEM768 pq sni=db.internal
/// weak=tls<1.2,3des`.
fn details(f: &FlowEvent) -> String {
    let mut s = String::new();
    if f.starttls == Some(true) {
        s.push_str(" starttls");
    }
    if f.fully_encrypted == Some(true) {
        s.push_str(" fully-encrypted");
    }
    if let Some(v) = f.tls_version {
        s.push_str(&format!(" tls={v}"));
    }
    if let Some(g) = &f.tls_group {
        s.push_str(&format!(" {g}"));
    }
    if f.pq == Some(true) {
        s.push_str(" pq");
    }
    if let Some(sni) = &f.tls_server_name {
        s.push_str(&format!(" sni={sni}"));
    }
    if !f.weak.is_empty() {
        s.push_str(&format!(" weak={}", f.weak.join(",")));
    }
    s
}

fn socket(addr: &str, port: u16, network_type: &str) -> String {
    if network_type == "ipv6" {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

fn agent_text(a: &AgentEvent) -> String {
    let mut line = format!("{} agent     {}", a.time, a.state);
    if let Some(iface) = &a.interface {
        line.push_str(&format!(" {iface}"));
    }
    if let Some(attach) = a.attach {
        line.push_str(&format!(" ({attach})"));
    }
    if let Some(mode) = a.mode {
        line.push_str(&format!(" mode={mode}"));
    }
    if let Some(on_exit) = a.on_exit {
        line.push_str(&format!(" on-exit={on_exit}"));
    }
    if a.adopted == Some(true) {
        line.push_str(" (took over a previous agent's programs)");
    }
    if let Some(dir) = &a.pin_dir {
        line.push_str(&format!(" still enforcing, pinned in {dir}"));
    }
    if let Some(e) = &a.error {
        line.push_str(&format!(" error: {e}"));
    }
    for (k, v) in &a.counters {
        line.push_str(&format!(" {}={v}", k.rsplit('.').next().unwrap_or(k)));
    }
    line
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sealwatch_common::{Encryption, Protocol, flow::FlowKey, net::*};

    use super::*;
    use crate::{event::Endpoints, policy::Action};

    fn event() -> Event {
        let (key, side) = FlowKey::ipv4(IPPROTO_TCP, [10, 0, 0, 2], 40000, [10, 0, 0, 1], 443);
        Event::Flow(Box::new(FlowEvent::new(
            "flow",
            "2026-11-23T10:00:00.000Z".into(),
            Endpoints::new(&key, side),
            Protocol::Tls,
            Encryption::Encrypted,
            Action::Allow,
            "veth0".into(),
        )))
    }

    #[test]
    fn json_is_one_object_per_line() {
        let mut out = Output::new(OutputFormat::Json, Vec::new());
        out.write(&event()).ok();
        out.write(&event()).ok();
        let text = String::from_utf8(out.writer).unwrap_or_default();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap_or_default();
        assert_eq!(v["network.protocol.name"], "tls");
    }

    /// Counts flushes, to tell live output from batched.
    #[derive(Default)]
    struct Flushes(Vec<u8>, usize);

    impl Write for Flushes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.1 += 1;
            Ok(())
        }
    }

    #[test]
    fn live_output_flushes_every_event_batched_only_when_asked() {
        let mut live = Output::new(OutputFormat::Json, Flushes::default());
        live.write(&event()).ok();
        live.write(&event()).ok();
        assert_eq!(live.writer.1, 2);
        let mut batched = Output::batched(OutputFormat::Json, Flushes::default());
        batched.write(&event()).ok();
        batched.write(&event()).ok();
        assert_eq!((batched.writer.0.len(), batched.writer.1), (0, 0));
        batched.flush().ok();
        assert_eq!(batched.writer.1, 1);
        assert_eq!(batched.writer.0, live.writer.0);
    }

    #[test]
    fn text_line_names_verdict_peers_and_action() {
        let mut out = Output::new(OutputFormat::Text, Vec::new());
        out.write(&event()).ok();
        let line = String::from_utf8(out.writer).unwrap_or_default();
        assert_eq!(
            line,
            "2026-11-23T10:00:00.000Z ENCRYPTED tls      tcp 10.0.0.2:40000 -> 10.0.0.1:443  action=allow iface=veth0\n"
        );
    }

    #[test]
    fn text_line_adds_what_the_handshake_said() {
        let Event::Flow(mut f) = event() else {
            panic!("a flow event");
        };
        f.starttls = Some(true);
        f.tls_version = Some("1.3");
        f.tls_group = Some("X25519MLKEM768".into());
        f.pq = Some(true);
        f.tls_server_name = Some("db.internal".into());
        f.weak = vec!["tls<1.2".into(), "3des".into()];
        assert!(
            flow_text(&f).ends_with(
                "iface=veth0 starttls tls=1.3 X25519MLKEM768 pq sni=db.internal weak=tls<1.2,3des"
            ),
            "{}",
            flow_text(&f)
        );
    }

    #[test]
    fn agent_text_lists_counters_by_short_name() {
        let a = AgentEvent {
            event: "agent",
            time: "t".into(),
            state: "stopped",
            interface: None,
            attach: None,
            mode: None,
            on_exit: None,
            adopted: None,
            pin_dir: None,
            resource: BTreeMap::new(),
            counters: BTreeMap::from([("sealwatch.kernel.packets".to_owned(), 12)]),
            error: None,
        };
        assert_eq!(agent_text(&a), "t agent     stopped packets=12");
        let kept = AgentEvent {
            on_exit: Some("keep-enforcing"),
            pin_dir: Some("/sys/fs/bpf/sealwatch/net-1".into()),
            counters: BTreeMap::new(),
            ..a
        };
        assert_eq!(
            agent_text(&kept),
            "t agent     stopped on-exit=keep-enforcing still enforcing, pinned in /sys/fs/bpf/sealwatch/net-1"
        );
    }
}
