//! `sealwatch report FLOWLOG...`: the compliance inventory. One row per service (server
//! address, port, transport and protocol) with its verdict, what its TLS looked like, who
//! talks to it, how much, since when, and how to fix it.
//!
//! Reads flow logs (`flow.record`, `service`; `--flow-log`) and the JSON events `run` and
//! `analyze` print (`flow`, `flow.end`); give one kind per run, not both, or flows are counted
//! twice. A flow is counted once: by its `flow` event, or by its first record (whose window
//! starts at the flow's start). Bytes come from `flow.end` totals or the records' windows.
//! ICMP, ICMPv6 and IGMP (network control, not services) are left out.
//!
//! JSON output (`--format json`): `{"summary": {...}, "services": [...]}`; each service has
//! `server.address`, `server.port`, `network.transport`, `network.protocol.name`, `owner`,
//! `namespace`, `verdict` (`plaintext`, `unknown`, `weak`, `encrypted`, `encrypted-pq`),
//! `actions` (counts by action), `tls_versions`, `groups`, `pq` (`yes`, `no`, `partly`, or
//! empty), `clients`, `flows`, `bytes`, `first_seen`, `last_seen`, `directions`, `hint`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    io::BufRead,
    path::{Path, PathBuf},
};

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Html,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    Namespace,
    Service,
}

/// How bad a flow is for its service, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    EncryptedPq,
    Encrypted,
    Weak,
    Unknown,
    Plaintext,
}

impl Verdict {
    fn name(self) -> &'static str {
        match self {
            Verdict::EncryptedPq => "encrypted-pq",
            Verdict::Encrypted => "encrypted",
            Verdict::Weak => "weak",
            Verdict::Unknown => "unknown",
            Verdict::Plaintext => "plaintext",
        }
    }

    fn of(e: &Value) -> Verdict {
        match e["sealwatch.encryption"].as_str().unwrap_or("unknown") {
            "plaintext" => Verdict::Plaintext,
            "encrypted"
                if e["sealwatch.weak"]
                    .as_array()
                    .is_some_and(|w| !w.is_empty()) =>
            {
                Verdict::Weak
            }
            "encrypted" if e["sealwatch.pq"] == true => Verdict::EncryptedPq,
            "encrypted" => Verdict::Encrypted,
            _ => Verdict::Unknown,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Service {
    #[serde(rename = "server.address")]
    pub address: String,
    #[serde(rename = "server.port")]
    pub port: u64,
    #[serde(rename = "network.transport")]
    pub transport: String,
    #[serde(rename = "network.protocol.name")]
    pub protocol: String,
    pub owner: String,
    pub namespace: String,
    pub verdict: Verdict,
    pub actions: BTreeMap<String, u64>,
    pub tls_versions: BTreeSet<String>,
    pub groups: BTreeSet<String>,
    pub pq: &'static str,
    pub clients: usize,
    pub flows: u64,
    pub bytes: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub directions: BTreeSet<String>,
    pub hint: String,
    #[serde(skip)]
    client_set: BTreeSet<String>,
    #[serde(skip)]
    encrypted_flows: u64,
    #[serde(skip)]
    pq_flows: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    pub services: usize,
    pub flows: u64,
    pub bytes: u64,
    /// Services, flows and bytes by verdict.
    pub by_verdict: BTreeMap<String, [u64; 3]>,
    /// Share of bytes sent in the clear, percent.
    pub plaintext_bytes_percent: f64,
    pub inputs: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Inventory {
    pub summary: Summary,
    pub services: Vec<Service>,
}

type Key = (String, u64, String, String);

/// Reads the logs and builds the inventory.
pub fn inventory(files: &[PathBuf]) -> Result<Inventory, ReportError> {
    let mut rows: BTreeMap<Key, Service> = BTreeMap::new();
    // (transport, port) -> owners of `service` events.
    let mut served: BTreeMap<(String, u64), BTreeSet<(String, String)>> = BTreeMap::new();
    for path in files {
        read(path, &mut rows, &mut served)?;
    }
    let mut services: Vec<Service> = rows.into_values().collect();
    for s in &mut services {
        if s.owner.is_empty()
            && let Some(owners) = served.get(&(s.transport.clone(), s.port))
            && owners.len() == 1
            && let Some((owner, ns)) = owners.iter().next()
        {
            s.owner = owner.clone();
            s.namespace = ns.clone();
        }
        if s.verdict <= Verdict::Encrypted {
            s.verdict = if s.encrypted_flows > 0 && s.pq_flows == s.encrypted_flows {
                Verdict::EncryptedPq
            } else {
                Verdict::Encrypted
            };
        }
        s.pq = match (s.encrypted_flows, s.pq_flows) {
            (0, _) => "",
            (e, p) if p == e => "yes",
            (_, 0) => "no",
            _ => "partly",
        };
        s.clients = s.client_set.len();
        s.hint = hint(&s.protocol, s.verdict).to_owned();
    }
    services.sort_by(|a, b| b.verdict.cmp(&a.verdict).then(b.bytes.cmp(&a.bytes)));
    let mut summary = Summary {
        services: services.len(),
        inputs: files.iter().map(|f| f.display().to_string()).collect(),
        ..Summary::default()
    };
    let mut plain = 0u64;
    for s in &services {
        summary.flows += s.flows;
        summary.bytes += s.bytes;
        let v = summary
            .by_verdict
            .entry(s.verdict.name().to_owned())
            .or_default();
        v[0] += 1;
        v[1] += s.flows;
        v[2] += s.bytes;
        if s.verdict == Verdict::Plaintext {
            plain += s.bytes;
        }
    }
    if summary.bytes > 0 {
        summary.plaintext_bytes_percent =
            (plain as f64 * 1000.0 / summary.bytes as f64).round() / 10.0;
    }
    Ok(Inventory { summary, services })
}

fn read(
    path: &Path,
    rows: &mut BTreeMap<Key, Service>,
    served: &mut BTreeMap<(String, u64), BTreeSet<(String, String)>>,
) -> Result<(), ReportError> {
    let file = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|source| ReportError::Read {
        file: file.clone(),
        source,
    })?;
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|source| ReportError::Read {
            file: file.clone(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let e: Value = serde_json::from_str(&line).map_err(|source| ReportError::NotJson {
            file: file.clone(),
            line: i + 1,
            source,
        })?;
        let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
        let n = |k: &str| e[k].as_u64().unwrap_or_default();
        let kind = e["event"].as_str().unwrap_or_default();
        if kind == "service" {
            let (owner, ns) = owner_of(&e, "");
            if !owner.is_empty() {
                served
                    .entry((s("network.transport"), n("server.port")))
                    .or_default()
                    .insert((owner, ns));
            }
            continue;
        }
        // Network control messages (neighbour discovery, pings) are not services.
        if !matches!(kind, "flow" | "flow.end" | "flow.record")
            || matches!(
                e["network.transport"].as_str(),
                Some("icmp" | "icmpv6" | "igmp")
            )
        {
            continue;
        }
        let key = (
            s("server.address"),
            n("server.port"),
            s("network.transport"),
            s("network.protocol.name"),
        );
        let row = rows.entry(key.clone()).or_insert_with(|| Service {
            address: key.0.clone(),
            port: key.1,
            transport: key.2.clone(),
            protocol: key.3.clone(),
            owner: String::new(),
            namespace: String::new(),
            verdict: Verdict::EncryptedPq,
            actions: BTreeMap::new(),
            tls_versions: BTreeSet::new(),
            groups: BTreeSet::new(),
            pq: "",
            clients: 0,
            flows: 0,
            bytes: 0,
            first_seen: String::new(),
            last_seen: String::new(),
            directions: BTreeSet::new(),
            hint: String::new(),
            client_set: BTreeSet::new(),
            encrypted_flows: 0,
            pq_flows: 0,
        });
        let first_record =
            kind == "flow.record" && e["sealwatch.record.start"] == e["sealwatch.flow.start"];
        if kind != "flow" {
            row.bytes += n("sealwatch.client.bytes") + n("sealwatch.server.bytes");
        }
        let verdict = Verdict::of(&e);
        if kind == "flow" || first_record {
            row.flows += 1;
            *row.actions.entry(s("sealwatch.action")).or_default() += 1;
            if verdict <= Verdict::Weak {
                row.encrypted_flows += 1;
                row.pq_flows += u64::from(e["sealwatch.pq"] == true);
            }
        }
        row.verdict = row.verdict.max(verdict);
        row.client_set.insert(s("client.address"));
        for (k, set) in [
            ("tls.protocol.version", &mut row.tls_versions),
            ("tls.key_exchange.group", &mut row.groups),
            ("sealwatch.direction", &mut row.directions),
        ] {
            if let Some(v) = e[k].as_str() {
                set.insert(v.to_owned());
            }
        }
        let start = match e["sealwatch.flow.start"].as_str() {
            Some(t) => t.to_owned(),
            None => s("time"),
        };
        if row.first_seen.is_empty() || start < row.first_seen {
            row.first_seen = start;
        }
        let time = s("time");
        if time > row.last_seen {
            row.last_seen = time;
        }
        if row.owner.is_empty() {
            let prefix = match e["sealwatch.local_side"].as_str() {
                Some("server") => Some(""),
                Some("client") => Some("sealwatch.peer."),
                _ => None,
            };
            if let Some(p) = prefix {
                (row.owner, row.namespace) = owner_of(&e, p);
            }
        }
    }
    Ok(())
}

/// `ns/pod`, else `exe (pid N)`, else a short container id; and the namespace.
fn owner_of(e: &Value, prefix: &str) -> (String, String) {
    let s = |k: &str| {
        e[format!("{prefix}{k}")]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let ns = s("k8s.namespace.name");
    let pod = s("k8s.pod.name");
    if !pod.is_empty() {
        return (format!("{ns}/{pod}"), ns);
    }
    let exe = s("process.executable.name");
    if !exe.is_empty() {
        return match e[format!("{prefix}process.pid")].as_u64() {
            Some(pid) => (format!("{exe} (pid {pid})"), ns),
            None => (exe, ns),
        };
    }
    let container = s("container.id");
    (container.chars().take(12).collect(), ns)
}

/// What to do about a service, by protocol family (reviewed in one place).
const HINTS: &[(&str, &str)] = &[
    (
        "http",
        "Terminate TLS in front of it (nginx/Envoy with a certificate) and point clients at https://, or enrol both ends in the mesh with STRICT mTLS (Istio PeerAuthentication mode STRICT, Linkerd default-inbound-policy with mTLS).",
    ),
    (
        "http2",
        "Serve HTTP/2 over TLS (h2 with ALPN) instead of cleartext h2c, or enrol both ends in the mesh with STRICT mTLS.",
    ),
    (
        "redis",
        "Enable TLS: `tls-port 6380` with `tls-cert-file`/`tls-key-file`/`tls-ca-cert-file`, then `port 0` to close the clear port; clients connect with rediss:// (redis-cli --tls).",
    ),
    (
        "postgresql",
        "Set `ssl = on` with a server certificate, replace `host` lines with `hostssl` in pg_hba.conf (reject the rest), and have clients use `sslmode=verify-full`.",
    ),
    (
        "mysql",
        "Set `require_secure_transport = ON` with a server certificate; clients use `--ssl-mode=VERIFY_IDENTITY`.",
    ),
    (
        "mongodb",
        "Set `net.tls.mode: requireTLS` with `certificateKeyFile`; clients use `tls=true`.",
    ),
    (
        "memcached",
        "Start memcached with `-Z -o ssl_chain_cert=...,ssl_key=...` (TLS, 1.5.13+) or reach it only through a mesh with STRICT mTLS.",
    ),
    (
        "smtp",
        "Require STARTTLS (Postfix `smtpd_tls_security_level = encrypt`, `smtp_tls_security_level = encrypt`) or use implicit TLS on 465.",
    ),
    (
        "imap",
        "Require STARTTLS or use IMAPS on 993 (Dovecot `ssl = required`, `disable_plaintext_auth = yes`).",
    ),
    (
        "pop3",
        "Use POP3S on 995 or require STARTTLS (Dovecot `ssl = required`).",
    ),
    (
        "ldap",
        "Use LDAPS (636) or require StartTLS (OpenLDAP `olcSecurity: tls=1`); clients `TLS_REQCERT demand`.",
    ),
    (
        "ftp",
        "Replace FTP with SFTP, or require explicit FTPS (vsftpd `force_local_logins_ssl=YES`, `force_local_data_ssl=YES`).",
    ),
    ("telnet", "Replace telnet with SSH."),
    (
        "dns",
        "Use DNS over TLS (853) or DoH between resolvers, or exclude node-local DNS explicitly if policy accepts it.",
    ),
    (
        "mqtt",
        "Use MQTT over TLS (8883) with `require_certificate` on the broker.",
    ),
    (
        "amqp",
        "Enable the TLS listener (RabbitMQ `listeners.ssl.default = 5671`) and close the clear one (`listeners.tcp = none`).",
    ),
    (
        "kafka",
        "Use SSL or SASL_SSL listeners (`listeners=SSL://:9093`, `security.inter.broker.protocol=SSL`) and remove PLAINTEXT ones.",
    ),
    (
        "snmp",
        "Use SNMPv3 with authPriv (AES privacy), not v1/v2c communities.",
    ),
    (
        "unknown",
        "Identify the protocol from the owner column, then put it on TLS or behind the mesh in STRICT mTLS; exclude it in policy only with a reason.",
    ),
];

fn hint(protocol: &str, verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Weak => {
            "Raise the minimum to TLS 1.2 (e.g. nginx `ssl_protocols TLSv1.2 TLSv1.3;`) and remove RC4, 3DES, NULL and export suites."
        }
        Verdict::Encrypted if matches!(protocol, "tls" | "quic" | "dtls") => {
            "Fine today. Next: offer the hybrid post-quantum group X25519MLKEM768 (OpenSSL 3.5+, Go 1.24+, rustls 0.23) on both ends."
        }
        Verdict::Encrypted | Verdict::EncryptedPq => "",
        Verdict::Plaintext | Verdict::Unknown => HINTS
            .iter()
            .find(|(p, _)| *p == protocol)
            .or_else(|| HINTS.iter().find(|(p, _)| *p == "unknown"))
            .map_or("", |(_, h)| h),
    }
}

/// The summary's verdicts, worst first.
fn by_severity(s: &Summary) -> impl Iterator<Item = (&'static str, &[u64; 3])> {
    [
        Verdict::Plaintext,
        Verdict::Unknown,
        Verdict::Weak,
        Verdict::Encrypted,
        Verdict::EncryptedPq,
    ]
    .into_iter()
    .filter_map(|v| Some((v.name(), s.by_verdict.get(v.name())?)))
}

fn socket(s: &Service) -> String {
    if s.address.contains(':') {
        format!("[{}]:{}/{}", s.address, s.port, s.transport)
    } else {
        format!("{}:{}/{}", s.address, s.port, s.transport)
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn join(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(",")
}

/// The terminal table.
pub fn table(inv: &Inventory) -> String {
    let mut out = String::new();
    let s = &inv.summary;
    let _ = writeln!(
        out,
        "{} services, {} flows, {}; {}% of the bytes in the clear",
        s.services,
        s.flows,
        human_bytes(s.bytes),
        s.plaintext_bytes_percent
    );
    for (v, [services, flows, bytes]) in by_severity(s) {
        let _ = writeln!(
            out,
            "  {v:<13} {services} services, {flows} flows, {}",
            human_bytes(*bytes)
        );
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "{:<12} {:<30} {:<10} {:<24} {:<9} {:<7} {:>7} {:>6} {:>10}  {:<24} {:<24}",
        "VERDICT",
        "SERVICE",
        "PROTOCOL",
        "OWNER",
        "TLS",
        "PQ",
        "CLIENTS",
        "FLOWS",
        "BYTES",
        "FIRST SEEN",
        "LAST SEEN"
    );
    for r in &inv.services {
        let _ = writeln!(
            out,
            "{:<12} {:<30} {:<10} {:<24} {:<9} {:<7} {:>7} {:>6} {:>10}  {:<24} {:<24}",
            r.verdict.name(),
            cut(&socket(r), 30),
            cut(&r.protocol, 10),
            cut(&r.owner, 24),
            cut(&join(&r.tls_versions), 9),
            r.pq,
            r.clients,
            r.flows,
            human_bytes(r.bytes),
            cut(&r.first_seen, 24),
            cut(&r.last_seen, 24)
        );
        if !r.hint.is_empty() {
            let _ = writeln!(out, "{:<12} fix: {}", "", r.hint);
        }
    }
    out
}

pub fn json(inv: &Inventory) -> String {
    serde_json::to_string_pretty(inv).unwrap_or_default() + "\n"
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Colours of the chart and the badges.
const PLAINTEXT: &str = "#d62728";
const ENCRYPTED: &str = "#2ca02c";
const UNKNOWN: &str = "#7f7f7f";
const WEAK: &str = "#ff7f0e";

fn colour(v: Verdict) -> &'static str {
    match v {
        Verdict::Plaintext => PLAINTEXT,
        Verdict::Unknown => UNKNOWN,
        Verdict::Weak => WEAK,
        Verdict::Encrypted | Verdict::EncryptedPq => ENCRYPTED,
    }
}

/// Per group: bytes and flows by verdict class (encrypted, weak, unknown, plaintext).
fn groups(inv: &Inventory, by: GroupBy) -> Vec<(String, [[u64; 4]; 2])> {
    let mut g: BTreeMap<String, [[u64; 4]; 2]> = BTreeMap::new();
    for s in &inv.services {
        let name = match by {
            GroupBy::Namespace if s.namespace.is_empty() => "(no namespace)".to_owned(),
            GroupBy::Namespace => s.namespace.clone(),
            GroupBy::Service => socket(s),
        };
        let i = match s.verdict {
            Verdict::Encrypted | Verdict::EncryptedPq => 0,
            Verdict::Weak => 1,
            Verdict::Unknown => 2,
            Verdict::Plaintext => 3,
        };
        let e = g.entry(name).or_default();
        e[0][i] += s.bytes;
        e[1][i] += s.flows;
    }
    let mut v: Vec<_> = g.into_iter().collect();
    v.sort_by_key(|(_, t)| std::cmp::Reverse(t[0].iter().sum::<u64>()));
    v.truncate(30);
    v
}

/// A horizontal stacked bar chart (inline SVG): one bar per group, `which` 0 = bytes, 1 = flows.
fn chart(title: &str, rows: &[(String, [[u64; 4]; 2])], which: usize) -> String {
    let (label_w, bar_w, row_h) = (260.0, 620.0, 26.0);
    let h = 40.0 + row_h * rows.len() as f64 + 30.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{t}"><text x="0" y="20" font-size="16" font-weight="bold">{t}</text>"#,
        w = label_w + bar_w + 120.0,
        t = esc(title)
    );
    let max = rows
        .iter()
        .map(|(_, t)| t[which].iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let colours = [ENCRYPTED, WEAK, UNKNOWN, PLAINTEXT];
    for (i, (name, t)) in rows.iter().enumerate() {
        let y = 36.0 + row_h * i as f64;
        let _ = write!(
            svg,
            r#"<text x="{x}" y="{ty}" font-size="13" text-anchor="end">{n}</text>"#,
            x = label_w - 8.0,
            ty = y + 15.0,
            n = esc(&cut(name, 34))
        );
        let mut x = label_w;
        for (v, c) in t[which].iter().zip(colours) {
            if *v == 0 {
                continue;
            }
            let w = (*v as f64 / max * bar_w).max(2.0);
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{bh}" fill="{c}"/>"#,
                bh = row_h - 6.0
            );
            x += w;
        }
        let total: u64 = t[which].iter().sum();
        let label = if which == 0 {
            human_bytes(total)
        } else {
            format!("{total} connection(s)")
        };
        let _ = write!(
            svg,
            r#"<text x="{lx:.1}" y="{ty}" font-size="12">{label}</text>"#,
            lx = x + 6.0,
            ty = y + 15.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One self-contained page: no script, no external resource.
pub fn html(inv: &Inventory, by: Option<GroupBy>, generated: &str) -> String {
    let by = by.unwrap_or(if inv.services.iter().any(|s| !s.namespace.is_empty()) {
        GroupBy::Namespace
    } else {
        GroupBy::Service
    });
    let per = match by {
        GroupBy::Namespace => "namespace",
        GroupBy::Service => "service",
    };
    let rows = groups(inv, by);
    let s = &inv.summary;
    let mut p = String::new();
    let _ = write!(
        p,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>sealwatch: encryption in transit</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}}
table{{border-collapse:collapse;width:100%;font-size:13px}}th,td{{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}}
th{{background:#f3f3f3}}.badge{{color:#fff;border-radius:3px;padding:1px 6px;font-weight:bold;white-space:nowrap}}
.legend span{{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}}
.num{{text-align:right}}.hint{{color:#444;font-size:12px}}</style></head><body>
<h1>Encryption in transit: service inventory</h1>
<p>Generated {gen} by <code>sealwatch report</code> from {inputs}.</p>
<p>sealwatch watched the traffic between services and judged each connection from its first bytes, whatever its port:
<b>plaintext</b> means anyone on the path can read it; <b>encrypted</b> means TLS, SSH, QUIC, IPsec, WireGuard or similar;
<b>weak</b> means encrypted with an outdated version or cipher (for example TLS 1.0 or RC4); <b>unknown</b> means the protocol
could not be named. Post-quantum (PQ) means the key exchange resists future quantum computers. Each row is one service, worst first, with how to fix it.</p>
<h2>Summary</h2><p>{services} services, {flows} connections, {bytes}; <b>{pct}% of the bytes travelled in the clear</b>.</p><ul>"#,
        gen = esc(generated),
        inputs = esc(&s.inputs.join(", ")),
        services = s.services,
        flows = s.flows,
        bytes = human_bytes(s.bytes),
        pct = s.plaintext_bytes_percent
    );
    for (v, [n, f, b]) in by_severity(s) {
        let _ = write!(
            p,
            "<li>{}: {n} services, {f} connections, {}</li>",
            esc(v),
            human_bytes(*b)
        );
    }
    let _ = write!(
        p,
        r#"</ul><h2>Encrypted and plaintext traffic per {per}</h2><p class="legend"><span style="background:{ENCRYPTED}"></span>encrypted<span style="background:{WEAK}"></span>weak<span style="background:{UNKNOWN}"></span>unknown<span style="background:{PLAINTEXT}"></span>plaintext</p>"#
    );
    p.push_str(&chart(&format!("Bytes per {per}"), &rows, 0));
    p.push_str("<br>");
    p.push_str(&chart(&format!("Connections per {per}"), &rows, 1));
    p.push_str(r#"<h2>Services</h2><table><tr><th>Verdict</th><th>Service</th><th>Protocol</th><th>Owner</th><th>TLS</th><th>Groups</th><th>PQ</th><th class="num">Clients</th><th class="num">Connections</th><th class="num">Bytes</th><th>First seen</th><th>Last seen</th><th>How to fix</th></tr>"#);
    for r in &inv.services {
        let _ = write!(
            p,
            r#"<tr><td><span class="badge" style="background:{c}">{v}</span></td><td>{svc}</td><td>{proto}</td><td>{owner}</td><td>{tls}</td><td>{groups}</td><td>{pq}</td><td class="num">{clients}</td><td class="num">{flows}</td><td class="num">{bytes}</td><td>{first}</td><td>{last}</td><td class="hint">{hint}</td></tr>"#,
            c = colour(r.verdict),
            v = r.verdict.name(),
            svc = esc(&socket(r)),
            proto = esc(&r.protocol),
            owner = esc(&r.owner),
            tls = esc(&join(&r.tls_versions)),
            groups = esc(&join(&r.groups)),
            pq = r.pq,
            clients = r.clients,
            flows = r.flows,
            bytes = human_bytes(r.bytes),
            first = esc(&r.first_seen),
            last = esc(&r.last_seen),
            hint = esc(&r.hint)
        );
    }
    p.push_str("</table></body></html>\n");
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/testdata/flowlog.jsonl")
    }

    #[test]
    fn one_row_per_service_with_its_verdict_counts_and_owner() {
        let inv = inventory(&[fixture()]).expect("inventory");
        let rows: Vec<_> = inv
            .services
            .iter()
            .map(|s| {
                (
                    socket(s),
                    s.protocol.as_str(),
                    s.verdict.name(),
                    s.clients,
                    s.flows,
                    s.bytes,
                    s.owner.as_str(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                (
                    "10.0.0.1:6379/tcp".to_owned(),
                    "redis",
                    "plaintext",
                    2,
                    2,
                    1500,
                    "shop/cart-0"
                ),
                (
                    "10.0.0.1:8080/tcp".to_owned(),
                    "http",
                    "plaintext",
                    1,
                    1,
                    900,
                    "python3 (pid 77)"
                ),
                ("10.0.0.1:443/tcp".to_owned(), "tls", "weak", 1, 1, 5000, ""),
                (
                    "10.0.0.1:8443/tcp".to_owned(),
                    "tls",
                    "encrypted-pq",
                    1,
                    1,
                    7000,
                    ""
                ),
            ]
        );
        let redis = &inv.services[0];
        assert_eq!(
            (
                redis.first_seen.as_str(),
                redis.last_seen.as_str(),
                redis.namespace.as_str()
            ),
            (
                "2026-11-23T10:00:00.000Z",
                "2026-11-23T10:02:00.000Z",
                "shop"
            )
        );
        assert!(redis.hint.contains("tls-port"), "{}", redis.hint);
        assert_eq!(redis.actions.get("drop"), Some(&1));
        assert_eq!(
            inv.services[2]
                .tls_versions
                .iter()
                .next()
                .map(String::as_str),
            Some("1.0")
        );
        assert_eq!(inv.services[3].pq, "yes");
        assert_eq!(inv.summary.flows, 5);
        assert_eq!(inv.summary.bytes, 14400);
        assert_eq!(inv.summary.plaintext_bytes_percent, 16.7);
    }

    #[test]
    fn html_escapes_what_came_from_the_network_and_holds_its_chart() {
        let mut inv = inventory(&[fixture()]).expect("inventory");
        inv.services[0].owner = "<script>alert(1)</script>".into();
        let page = html(&inv, None, "now");
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("<svg") && page.contains(PLAINTEXT) && page.contains(ENCRYPTED));
        assert!(
            !page.contains("http://") || !page.contains("src=\"http"),
            "nothing external"
        );
    }

    #[test]
    fn a_line_that_is_not_json_is_named_by_file_and_line() {
        let dir = std::env::temp_dir().join(format!("sealwatch-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let bad = dir.join("bad.jsonl");
        std::fs::write(&bad, "{\"event\":\"service\"}\n{oops\n").expect("write");
        let err = inventory(&[bad]).expect_err("bad line");
        assert!(
            err.to_string().ends_with(
                "bad.jsonl:2: not a JSON event: key must be a string at line 1 column 2"
            ),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
