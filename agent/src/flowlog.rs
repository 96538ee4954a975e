//! `--flow-log FILE`: the flow log, JSON lines an auditor (or `sealwatch report`) reads.
//!
//! It holds one `flow.record` per flow per aggregation interval (see
//! `FlowTracker::with_records`), with the contract's keys and the window's packets and bytes,
//! like an AWS VPC flow log record (and `sealwatch.encryption_status` with the meaning of its
//! `encryption-status` field, so the two can be joined), plus the `service` and `agent` events
//! that give the records their context.
//!
//! Size-based rotation: before a record would take the file past `max_bytes`, FILE becomes
//! FILE.1 (FILE.1 becomes FILE.2, ..., the oldest beyond `keep` is removed) and a new FILE is
//! started. Records are whole lines, written and flushed in order, each in exactly one file:
//! rotation loses none.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use tracing::warn;

use crate::{
    event::Event,
    telemetry::metrics::{self, Metrics},
};

#[derive(Debug, Clone)]
pub struct FlowLogConfig {
    pub path: PathBuf,
    /// Rotate before the file grows past this many bytes.
    pub max_bytes: u64,
    /// Rotated files kept (FILE.1 .. FILE.keep).
    pub keep: u32,
    /// Aggregation interval of the records.
    pub interval: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum FlowLogError {
    #[error("cannot open the flow log {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub struct FlowLog {
    config: FlowLogConfig,
    file: BufWriter<File>,
    size: u64,
    line: Vec<u8>,
    metrics: Metrics,
    /// A failing disk is said once, not once per record.
    warned: bool,
}

impl FlowLog {
    /// Opens FILE for appending (a restarted agent continues the same log).
    pub fn open(config: FlowLogConfig, metrics: Metrics) -> Result<FlowLog, FlowLogError> {
        let file = open_append(&config.path).map_err(|source| FlowLogError::Open {
            path: config.path.clone(),
            source,
        })?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(FlowLog {
            config,
            file: BufWriter::with_capacity(64 << 10, file),
            size,
            line: Vec::with_capacity(2048),
            metrics,
            warned: false,
        })
    }

    /// Aggregation interval of its records.
    pub fn interval(&self) -> std::time::Duration {
        self.config.interval
    }

    /// Whether the flow log keeps this event: records, services and the agent's lifecycle.
    pub fn wants(event: &Event) -> bool {
        match event {
            Event::Flow(f) => f.event == "flow.record",
            Event::Service(_) | Event::Agent(_) => true,
        }
    }

    /// Appends one event (if it is one the log keeps). A failure is counted and warned about
    /// once; the agent goes on.
    pub fn write(&mut self, event: &Event) {
        if !FlowLog::wants(event) {
            return;
        }
        self.line.clear();
        if serde_json::to_writer(&mut self.line, event).is_err() {
            return;
        }
        self.line.push(b'\n');
        let written = self.rotate_if_full().and_then(|()| {
            self.file.write_all(&self.line)?;
            self.size += self.line.len() as u64;
            Ok(())
        });
        match written {
            Ok(()) => self.metrics.add(&metrics::FLOW_LOG_RECORDS, &[], 1),
            Err(e) => self.failed(&e),
        }
    }

    /// Hands what is buffered to the kernel (after each batch of events).
    pub fn flush(&mut self) {
        if let Err(e) = self.file.flush() {
            self.failed(&e);
        }
    }

    fn failed(&mut self, e: &io::Error) {
        self.metrics.add(&metrics::FLOW_LOG_ERRORS, &[], 1);
        if !self.warned {
            self.warned = true;
            warn!(path = %self.config.path.display(), error = %e, "cannot write the flow log (further failures are counted in sealwatch.flow_log.errors)");
        }
    }

    fn rotate_if_full(&mut self) -> io::Result<()> {
        if self.size == 0 || self.size + self.line.len() as u64 <= self.config.max_bytes {
            return Ok(());
        }
        self.file.flush()?;
        let path = &self.config.path;
        let keep = self.config.keep.max(1);
        match std::fs::remove_file(numbered(path, keep)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        for n in (1..keep).rev() {
            match std::fs::rename(numbered(path, n), numbered(path, n + 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        std::fs::rename(path, numbered(path, 1))?;
        self.file = BufWriter::with_capacity(64 << 10, open_append(path)?);
        self.size = 0;
        Ok(())
    }
}

impl Drop for FlowLog {
    fn drop(&mut self) {
        self.flush();
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // Flows name hosts, processes and pods: not for every local user to read.
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// FILE.n
pub fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// `100MiB`, `512KiB`, `1GB`, `4096`: a size for `--flow-log-max-size`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}`: expected a number of bytes, e.g. 100MiB"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "`{s}`: unknown unit `{other}` (B, KiB, MiB, GiB, kB, MB, GB)"
            ));
        }
    };
    let bytes = n
        .checked_mul(factor)
        .ok_or_else(|| format!("`{s}`: too large"))?;
    if bytes < 4096 {
        return Err(format!("`{s}`: at least 4096 bytes"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::event::AgentEvent;

    fn agent_event(i: usize) -> Event {
        Event::Agent(AgentEvent {
            event: "agent",
            time: format!("t{i:05}"),
            state: "attached",
            interface: Some(format!("veth{i}")),
            attach: None,
            mode: None,
            on_exit: None,
            adopted: None,
            pin_dir: None,
            resource: BTreeMap::new(),
            counters: BTreeMap::new(),
            error: None,
        })
    }

    #[test]
    fn rotation_keeps_every_record_in_order_across_files() {
        let dir = std::env::temp_dir().join(format!("sealwatch-flowlog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let path = dir.join("flows.jsonl");
        let config = FlowLogConfig {
            path: path.clone(),
            max_bytes: 4096,
            keep: 50,
            interval: std::time::Duration::from_secs(60),
        };
        let metrics = Metrics::default();
        let mut log = FlowLog::open(config, metrics.clone()).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..1000 {
            log.write(&agent_event(i));
        }
        drop(log);
        let mut times = Vec::new();
        let mut files = 0;
        for n in (1..=50).rev() {
            let p = numbered(&path, n);
            if let Ok(text) = std::fs::read_to_string(&p) {
                files += 1;
                assert!(
                    text.len() <= 4096,
                    "{} has {} bytes",
                    p.display(),
                    text.len()
                );
                for line in text.lines() {
                    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
                    times.push(v["time"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
        for line in std::fs::read_to_string(&path).unwrap_or_default().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            times.push(v["time"].as_str().unwrap_or_default().to_owned());
        }
        assert!(files > 10, "rotated {files} times");
        let expected: Vec<String> = (0..1000).map(|i| format!("t{i:05}")).collect();
        assert_eq!(times, expected, "every record once, in order");
        assert_eq!(metrics.get(&metrics::FLOW_LOG_RECORDS, &[]), 1000);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_oldest_file_beyond_keep_is_removed() {
        let dir =
            std::env::temp_dir().join(format!("sealwatch-flowlog-keep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let path = dir.join("f.jsonl");
        let config = FlowLogConfig {
            path: path.clone(),
            max_bytes: 4096,
            keep: 2,
            interval: std::time::Duration::from_secs(60),
        };
        let mut log = FlowLog::open(config, Metrics::default()).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..1000 {
            log.write(&agent_event(i));
        }
        drop(log);
        assert!(numbered(&path, 1).exists() && numbered(&path, 2).exists());
        assert!(!numbered(&path, 3).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("100MiB"), Ok(100 << 20));
        assert_eq!(parse_size("5 MB"), Ok(5_000_000));
        assert_eq!(parse_size("8192"), Ok(8192));
        assert!(parse_size("12").is_err());
        assert!(parse_size("1 parsec").is_err());
    }
}
