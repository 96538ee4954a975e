//! `sealwatch policy suggest FLOWLOG...`: a policy whose exclusions let today's plaintext
//! offenders pass, so enforcement can start without an outage and the exclusions can then be
//! removed one by one as services move to TLS.
//!
//! Reads the JSON-lines events `run` and `analyze` write; one exclusion per service (server
//! address, port, transport, protocol) that was alerted as plaintext or unknown, commented with
//! how much traffic it carried and when.

use std::{
    collections::BTreeMap,
    io::BufRead,
    path::{Path, PathBuf},
};

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum SuggestError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: not a JSON event: {source}")]
    NotJson {
        file: String,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

/// One service that talked in the clear.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Offender {
    flows: u64,
    bytes: u64,
    first: String,
    last: String,
    encryption: String,
}

/// (server address, server port, transport, protocol)
type Service = (String, u64, String, String);

/// Reads the flow logs and renders the suggested policy.
pub fn suggest(files: &[PathBuf]) -> Result<String, SuggestError> {
    let mut offenders: BTreeMap<Service, Offender> = BTreeMap::new();
    for path in files {
        read(path, &mut offenders)?;
    }
    Ok(render(&offenders, files))
}

fn read(path: &Path, offenders: &mut BTreeMap<Service, Offender>) -> Result<(), SuggestError> {
    let file = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|source| SuggestError::Read {
        file: file.clone(),
        source,
    })?;
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|source| SuggestError::Read {
            file: file.clone(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let e: Value = serde_json::from_str(&line).map_err(|source| SuggestError::NotJson {
            file: file.clone(),
            line: i + 1,
            source,
        })?;
        let kind = e["event"].as_str().unwrap_or_default();
        if !matches!(kind, "flow" | "flow.end" | "flow.record") || e["sealwatch.action"] != "alert"
        {
            continue;
        }
        // Weak TLS is alerted too, but excluding it would hide a downgrade: only the clear.
        let encryption = e["sealwatch.encryption"].as_str().unwrap_or_default();
        if encryption == "encrypted" {
            continue;
        }
        let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
        let service = (
            s("server.address"),
            e["server.port"].as_u64().unwrap_or_default(),
            s("network.transport"),
            s("network.protocol.name"),
        );
        let o = offenders.entry(service).or_default();
        let time = s("time");
        // A flow log's records: the first of a flow starts its window at the flow's start.
        let first_record =
            kind == "flow.record" && e["sealwatch.record.start"] == e["sealwatch.flow.start"];
        if kind == "flow.record" {
            let n = |k: &str| e[k].as_u64().unwrap_or_default();
            o.bytes += n("sealwatch.client.bytes") + n("sealwatch.server.bytes");
        }
        if kind == "flow" || first_record {
            o.flows += 1;
            o.encryption = encryption.to_owned();
            if o.first.is_empty() || time < o.first {
                o.first = time.clone();
            }
        } else if kind == "flow.end" {
            let n = |k: &str| e[k].as_u64().unwrap_or_default();
            o.bytes += n("sealwatch.client.bytes") + n("sealwatch.server.bytes");
        }
        if time > o.last {
            o.last = time;
        }
    }
    Ok(())
}

fn render(offenders: &BTreeMap<Service, Offender>, files: &[PathBuf]) -> String {
    let sources: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let mut s = format!(
        "# Suggested by `sealwatch policy suggest` from {}.\n\
         # Each exclusion lets one service that spoke in the clear keep doing so; remove them one\n\
         # by one as the services move to TLS, then switch `mode` to enforce.\n\
         mode: monitor\n\
         require:\n  min_tls_version: \"1.2\"\n  unknown: alert\n",
        sources.join(", ")
    );
    if offenders.is_empty() {
        s.push_str("exclusions: []  # nothing was alerted as plaintext\n");
        return s;
    }
    s.push_str("exclusions:\n");
    for ((addr, port, transport, protocol), o) in offenders {
        let host = if addr.contains(':') {
            format!("{addr}/128")
        } else {
            format!("{addr}/32")
        };
        s.push_str(&format!(
            "  # {} {} flow(s), {} bytes, first {} last {}\n",
            o.flows,
            o.encryption,
            o.bytes,
            if o.first.is_empty() { "?" } else { &o.first },
            if o.last.is_empty() { "?" } else { &o.last },
        ));
        let mut fields = vec![format!("cidr: \"{host}\"")];
        if *port != 0 {
            fields.push(format!("port: {port}"));
        }
        if !transport.is_empty() && transport != "unknown" {
            fields.push(format!("transport: {transport}"));
        }
        if !protocol.is_empty() && protocol != "unknown" {
            fields.push(format!("protocol: {protocol}"));
        }
        fields.push(format!(
            "reason: \"{protocol} in the clear to {addr}:{port}, seen in monitor mode\""
        ));
        s.push_str(&format!("  - {{{}}}\n", fields.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_exclusion_per_plaintext_service_with_its_traffic() {
        let dir = std::env::temp_dir().join(format!("sealwatch-suggest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let log = dir.join("flows.jsonl");
        let flow = |port: u16, proto: &str, enc: &str, action: &str, t: &str| {
            format!(
                r#"{{"event":"flow","time":"{t}","network.transport":"tcp","server.address":"10.0.0.5","server.port":{port},"sealwatch.encryption":"{enc}","network.protocol.name":"{proto}","sealwatch.action":"{action}"}}"#
            )
        };
        let end = |port: u16, t: &str| {
            format!(
                r#"{{"event":"flow.end","time":"{t}","network.transport":"tcp","server.address":"10.0.0.5","server.port":{port},"sealwatch.encryption":"plaintext","network.protocol.name":"redis","sealwatch.action":"alert","sealwatch.client.bytes":100,"sealwatch.server.bytes":23}}"#
            )
        };
        let lines = [
            flow(6379, "redis", "plaintext", "alert", "2026-11-23T10:00:00Z"),
            end(6379, "2026-11-23T10:00:05Z"),
            flow(6379, "redis", "plaintext", "alert", "2026-11-23T09:00:00Z"),
            flow(443, "tls", "encrypted", "allow", "2026-11-23T10:00:00Z"),
            flow(8443, "tls", "encrypted", "alert", "2026-11-23T10:00:00Z"),
            flow(53, "dns", "plaintext", "excluded", "2026-11-23T10:00:00Z"),
        ];
        std::fs::write(&log, lines.join("\n")).expect("write");
        let text = suggest(std::slice::from_ref(&log)).expect("suggest");
        assert!(text.contains("# 2 plaintext flow(s), 123 bytes, first 2026-11-23T09:00:00Z last 2026-11-23T10:00:05Z"), "{text}");
        assert!(
            text.contains("- {cidr: \"10.0.0.5/32\", port: 6379, transport: tcp, protocol: redis"),
            "{text}"
        );
        assert_eq!(
            text.matches("- {").count(),
            1,
            "weak TLS and excluded flows stay out: {text}"
        );
        // What it suggests is a valid policy.
        let policy = crate::policy::parse("suggested", &text).expect("valid policy");
        assert_eq!(policy.exclusions.len(), 1);

        std::fs::write(&log, "{not json").expect("write");
        let err = suggest(std::slice::from_ref(&log)).expect_err("bad log");
        assert!(
            err.to_string().contains("flows.jsonl:1: not a JSON event"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
