//! Command line (see ../shared/CONTRACT.md for the user-facing contract).

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// sealwatch: find plaintext east-west traffic on this host.
#[derive(Debug, Parser)]
#[command(name = "sealwatch", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach the kernel programs and report every flow's encryption verdict until SIGINT/SIGTERM.
    Run(Box<RunArgs>),
    /// Classify the flows in pcap/pcapng captures with the same engine, offline.
    Analyze(AnalyzeArgs),
    /// Compliance inventory from flow logs (`--flow-log`) or saved JSON events: one row per
    /// service with its verdict, TLS versions and groups, clients, flows, bytes, first and
    /// last seen, owner, and how to fix it.
    Report(ReportArgs),
    /// Work with policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file: exit 0 when valid, 2 with the line and field of the first error.
    Check {
        #[arg(value_name = "FILE")]
        file: std::path::PathBuf,
        /// Print the effective policy, built-in exclusions included.
        #[arg(long)]
        explain: bool,
    },
    /// Print a policy whose exclusions let the plaintext services seen in these flow logs
    /// (JSON lines from `run` or `analyze`) pass, for a staged move from monitor to enforce.
    Suggest {
        #[arg(value_name = "FLOWLOG", required = true)]
        files: Vec<std::path::PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[arg(value_name = "FLOWLOG", required = true)]
    pub files: Vec<std::path::PathBuf>,

    /// `table` for a terminal, `json` for tools, `html` for a self-contained page to hand on.
    #[arg(long, value_enum, default_value_t = crate::report::Format::Table)]
    pub format: crate::report::Format,

    /// What the HTML chart's bars are: namespaces (default when pods are known) or services.
    #[arg(long, value_enum)]
    pub group_by: Option<crate::report::GroupBy>,

    /// Write to FILE instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Capture files (pcap or pcapng; Ethernet, Linux cooked, raw IP or BSD loopback frames).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<std::path::PathBuf>,

    /// Event format on stdout; default `text` on a terminal, `json` otherwise. Text mode ends
    /// with a per-protocol summary.
    #[arg(long, value_enum)]
    pub output: Option<OutputFormat>,

    /// A flow with no packets for this long (capture time) is ended, as in `run`.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// Policy file (YAML, see `sealwatch policy check`); without it, the built-in defaults.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub flow_log: FlowLogArgs,

    /// Only read the captures frame by frame and print what was read as one JSON object: the
    /// baseline `cargo xtask bench` measures analysis against.
    #[arg(long, hide = true)]
    pub read_only: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Interface to attach to (repeatable).
    #[arg(
        long = "iface",
        value_name = "IF",
        required_unless_present = "all_interfaces"
    )]
    pub ifaces: Vec<String>,

    /// Attach to every non-loopback interface, and to interfaces that appear later (pod
    /// veths); let go of those that disappear. An interface that cannot be attached is
    /// reported (`attach_failed`) and the others go on.
    #[arg(long)]
    pub all_interfaces: bool,

    /// Attach mode: `tc` watches ingress and egress with TC; `xdp` watches ingress with XDP
    /// (native, falling back to generic) and egress with TC.
    #[arg(long, value_enum, default_value_t = AttachMode::Tc)]
    pub attach: AttachMode,

    /// Event format on stdout; default `text` on a terminal, `json` otherwise.
    #[arg(long, value_enum)]
    pub output: Option<OutputFormat>,

    /// Payload bytes sampled per flow direction for deeper parsing in user space (1-8192).
    #[arg(long, default_value_t = sealwatch_common::DEFAULT_SAMPLE_BYTES,
          value_parser = clap::value_parser!(u16).range(1..=i64::from(sealwatch_common::MAX_SAMPLE_BYTES)))]
    pub sample_bytes: u16,

    /// Flow-table capacity in the kernel (LRU: the least recently seen flow is evicted when full).
    #[arg(long, default_value_t = sealwatch_common::DEFAULT_FLOW_CAPACITY,
          value_parser = clap::value_parser!(u32).range(1024..=16_777_216))]
    pub flow_capacity: u32,

    /// A flow with no packets for this long is ended (`flow.end`, reason `idle`), e.g. `60s`, `5m`.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// Policy file (YAML, see `sealwatch policy check`); without it, the built-in defaults. It
    /// is read again on SIGHUP and when it changes; an invalid new version is rejected and the
    /// old policy stays.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<std::path::PathBuf>,

    /// `monitor` never drops (what enforce mode would drop is reported as `alert`); `enforce`
    /// drops forbidden flows in the kernel. Overrides the policy file's `mode`.
    #[arg(long, value_enum)]
    pub mode: Option<crate::policy::file::Mode>,

    /// What the kernel programs do once the agent stops or dies: `detach` (fail open: traffic
    /// flows unchecked) or `keep-enforcing` (fail closed: they stay attached, pinned, enforcing
    /// the last policy, and the next agent takes them over without a gap).
    #[arg(long, value_enum, default_value_t = crate::pins::OnExit::Detach)]
    pub on_exit: crate::pins::OnExit,

    /// The kubelet to read this node's pods from (`GET /pods`): `https://NODE:10250` with the
    /// service-account token, or the read-only `http://NODE:10255`. Default: the kubelet of
    /// `$NODE_NAME` when a service-account token is mounted; else pod names and namespaces come
    /// from `--pod-logs` only (no labels, no IPs).
    #[arg(long, value_name = "URL")]
    pub kubelet: Option<String>,

    /// Accept the kubelet's certificate without checking it (kubelets with self-signed serving
    /// certificates, kubeadm's default). The token is still only sent over TLS.
    #[arg(long)]
    pub kubelet_insecure_skip_tls_verify: bool,

    /// The kubelet's pod log directory, whose entries are named NAMESPACE_POD_UID.
    #[arg(long, value_name = "DIR", default_value = "/var/log/pods")]
    pub pod_logs: std::path::PathBuf,

    /// Where links and maps are pinned for `--on-exit keep-enforcing` (a bpffs directory);
    /// default /sys/fs/bpf/sealwatch/net-INODE (the netns inode), one per network namespace.
    #[arg(long, value_name = "DIR")]
    pub pin_dir: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub flow_log: FlowLogArgs,

    #[command(flatten)]
    pub otlp: OtlpArgs,

    /// Serve Prometheus metrics (`/metrics`) and probes (`/healthz`, `/readyz`: ready once
    /// attached) over HTTP on this address: `PORT` alone listens on 127.0.0.1 only; give an
    /// address (`0.0.0.0:9464`, `[::]:9464`) to serve other hosts.
    #[arg(long, value_name = "[ADDR:]PORT", value_parser = parse_metrics_addr)]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// `--metrics-addr`: a full socket address, or a port alone, which binds to loopback: the
/// endpoint tells anyone who can reach it what traffic this host carries, so serving other
/// hosts must be asked for.
pub fn parse_metrics_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    let s = s.trim();
    if let Ok(port) = s.strip_prefix(':').unwrap_or(s).parse::<u16>() {
        return Ok(std::net::SocketAddr::from((
            std::net::Ipv4Addr::LOCALHOST,
            port,
        )));
    }
    s.parse().map_err(|_| {
        format!(
            "{s:?} is neither a port nor an address:port (e.g. 9464, 127.0.0.1:9464, [::1]:9464)"
        )
    })
}

#[derive(Debug, Args)]
pub struct FlowLogArgs {
    /// Also write a flow log to FILE: JSON lines, one `flow.record` per flow per interval with
    /// its packets and bytes in that window (contract keys, `sealwatch.encryption_status` as in
    /// AWS VPC flow logs), plus `service` and `agent` events. Read by `sealwatch report`.
    #[arg(long, value_name = "FILE")]
    pub flow_log: Option<std::path::PathBuf>,

    /// Aggregation interval of flow-log records (`run`: wall clock; `analyze`: capture time).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub flow_log_interval: Duration,

    /// Rotate the flow log before it grows past this size (FILE becomes FILE.1, ...).
    #[arg(long, default_value = "100MiB", value_parser = crate::flowlog::parse_size)]
    pub flow_log_max_size: u64,

    /// Rotated flow-log files kept (FILE.1 .. FILE.N); older ones are removed.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub flow_log_keep: u32,
}

impl FlowLogArgs {
    pub fn config(&self) -> Option<crate::flowlog::FlowLogConfig> {
        Some(crate::flowlog::FlowLogConfig {
            path: self.flow_log.clone()?,
            max_bytes: self.flow_log_max_size,
            keep: self.flow_log_keep,
            interval: self.flow_log_interval,
        })
    }
}

#[derive(Debug, Args)]
pub struct OtlpArgs {
    /// Export alerts (log records) and metrics to this OpenTelemetry collector, e.g.
    /// `http://otel-collector:4317`; `https://` for TLS.
    #[arg(long, value_name = "URL", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// OTLP transport; default `OTEL_EXPORTER_OTLP_PROTOCOL`, else `http/protobuf` for an
    /// endpoint on port 4318 and `grpc` otherwise.
    #[arg(long, value_enum, value_name = "PROTOCOL")]
    pub otlp_protocol: Option<crate::telemetry::otlp::Protocol>,

    /// PEM file of the CA that signs the collector's certificate (default: the system's roots).
    #[arg(long, value_name = "FILE", env = "OTEL_EXPORTER_OTLP_CERTIFICATE")]
    pub otlp_ca: Option<std::path::PathBuf>,

    /// Limit of one export attempt (each is retried with backoff).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub otlp_timeout: Duration,

    /// How often metrics are exported.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub otlp_metrics_interval: Duration,

    /// Alert records waiting for the collector, at most; beyond, they are dropped and counted
    /// (`sealwatch.alerts.dropped`).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub otlp_queue: u32,

    /// Deduplication of alerts: the first flow of an offence (client, server, port, protocol,
    /// action) is alerted at once, its repeats once per interval with their count.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub alert_interval: Duration,
}

impl OtlpArgs {
    pub fn config(
        &self,
    ) -> Result<Option<crate::telemetry::otlp::OtlpConfig>, crate::telemetry::otlp::OtlpError> {
        let Some(endpoint) = self.otlp_endpoint.clone().filter(|e| !e.is_empty()) else {
            return Ok(None);
        };
        let protocol = crate::telemetry::otlp::Protocol::resolve(self.otlp_protocol, &endpoint)?;
        Ok(Some(crate::telemetry::otlp::OtlpConfig {
            endpoint,
            protocol,
            ca: self.otlp_ca.clone(),
            timeout: self.otlp_timeout,
            metrics_interval: self.otlp_metrics_interval,
            queue: self.otlp_queue as usize,
        }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AttachMode {
    Tc,
    Xdp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Json,
    Text,
}

#[cfg(test)]
mod metrics_addr_tests {
    use super::parse_metrics_addr;

    #[test]
    fn a_port_alone_binds_loopback_only() {
        assert_eq!(
            parse_metrics_addr("9464").map(|a| a.to_string()),
            Ok("127.0.0.1:9464".to_owned())
        );
        assert_eq!(
            parse_metrics_addr(":9464").map(|a| a.to_string()),
            Ok("127.0.0.1:9464".to_owned())
        );
    }

    #[test]
    fn a_full_address_is_taken_as_given() {
        for a in ["0.0.0.0:9464", "10.1.2.3:80", "[::]:9464", "[::1]:9464"] {
            assert_eq!(
                parse_metrics_addr(a).map(|a| a.to_string()),
                Ok(a.to_owned())
            );
        }
    }

    #[test]
    fn anything_else_is_refused_with_examples() {
        for bad in ["", "localhost", "70000", "0.0.0.0", "1.2.3.4:99999"] {
            let e = parse_metrics_addr(bad).expect_err(bad);
            assert!(e.contains("e.g. 9464"), "{e}");
        }
    }
}
