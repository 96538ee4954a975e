//! OTLP export with the opentelemetry crates: alerts as log records, the registry's metrics
//! as observable instruments, over gRPC or HTTP/protobuf, with TLS when the endpoint is https.
//!
//! Nothing here may slow the main loop or grow without bound when the collector is down, slow
//! or refusing: alert records go through a bounded queue (full: dropped and counted) to a
//! worker thread that batches them; each export is retried by the exporter with backoff
//! (`RetryPolicy::recommended`), a batch that still fails is dropped and counted, and the
//! worker then waits (1 s doubling to 30 s) before trying again. Metrics are cumulative, so a
//! failed export loses nothing the next one does not carry. The first failure of an outage is
//! one warning; its end is one line saying how much was dropped.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use opentelemetry::{
    InstrumentationScope, Key, KeyValue, StringValue,
    logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity as OtelSeverity},
    metrics::MeterProvider as _,
};
use opentelemetry_otlp::{
    LogExporter, MetricExporter, RetryPolicy, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    logs::{LogBatch, LogExporter as _, LogProcessor, SdkLogRecord, SdkLogger, SdkLoggerProvider},
    metrics::{
        PeriodicReader, SdkMeterProvider, Temporality, data::ResourceMetrics,
        exporter::PushMetricExporter,
    },
};
use tracing::{debug, info, warn};

use super::{
    alerts::{Alert, Severity},
    metrics::{self, Family, Kind, Metrics},
};

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// OTLP/gRPC (collector port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (collector port 4318), to ENDPOINT/v1/logs and
    /// ENDPOINT/v1/metrics.
    #[value(name = "http/protobuf")]
    HttpProtobuf,
}

impl Protocol {
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` when set; else by the endpoint's port: 4318 is the
    /// collector's HTTP port, anything else gRPC.
    pub fn resolve(flag: Option<Protocol>, endpoint: &str) -> Result<Protocol, OtlpError> {
        if let Some(p) = flag {
            return Ok(p);
        }
        match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").ok().as_deref() {
            Some("grpc") => return Ok(Protocol::Grpc),
            Some("http/protobuf") => return Ok(Protocol::HttpProtobuf),
            Some(other) => {
                return Err(OtlpError::Config(format!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL={other}: sealwatch speaks grpc or http/protobuf"
                )));
            }
            None => {}
        }
        let authority = endpoint.split("://").nth(1).unwrap_or(endpoint);
        let authority = authority.split('/').next().unwrap_or_default();
        Ok(if authority.ends_with(":4318") {
            Protocol::HttpProtobuf
        } else {
            Protocol::Grpc
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }
}

#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// Base URL: `http://collector:4317`; for HTTP the signal paths are appended.
    pub endpoint: String,
    pub protocol: Protocol,
    /// PEM file of the CA(s) that sign the collector's certificate.
    pub ca: Option<PathBuf>,
    /// One export attempt's limit.
    pub timeout: Duration,
    /// How often metrics are exported.
    pub metrics_interval: Duration,
    /// Alert records waiting to be exported, at most.
    pub queue: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("OTLP: {0}")]
    Config(String),
    #[error("OTLP: cannot read the collector's CA file {path}: {source}")]
    Ca {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("OTLP: cannot build the exporter: {0}")]
    Build(#[source] opentelemetry_otlp::ExporterBuildError),
    #[error("OTLP: cannot start the export runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Alert records in a batch, at most.
const MAX_BATCH: usize = 512;
/// A batch that is not full is sent after this long.
const BATCH_DELAY: Duration = Duration::from_secs(1);
/// Waits between failed exports: doubling from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));
/// How long stopping waits for the last alerts to leave.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// The running export: its runtime (drives the gRPC channel's IO), the log pipeline and the
/// metric pipeline.
pub struct Otlp {
    logs: SdkLoggerProvider,
    logger: SdkLogger,
    meters: SdkMeterProvider,
    // Shut down last: the exporters' connections live on it. Never dropped in place (that
    // panics inside the agent's own runtime): see `Drop`.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Otlp {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Otlp {
    pub fn start(
        config: &OtlpConfig,
        resource: Resource,
        metrics: Metrics,
    ) -> Result<Otlp, OtlpError> {
        // One worker thread of our own: the gRPC channel's IO never waits for the main loop,
        // and the main loop never waits for the collector.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sealwatch-otlp")
            .enable_all()
            .build()
            .map_err(OtlpError::Runtime)?;
        let _entered = runtime.enter();
        let ca = match &config.ca {
            Some(path) => Some(std::fs::read(path).map_err(|source| OtlpError::Ca {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        let (mut log_exporter, metric_exporter) = exporters(config, ca.as_deref())?;
        log_exporter.set_resource(&resource);
        // One outage, one warning, whichever signal meets it first.
        let outage = Arc::new(Outage::default());
        let processor = QueueProcessor::start(
            log_exporter,
            config.queue,
            metrics.clone(),
            Arc::clone(&outage),
            config.endpoint.clone(),
        );
        let logs = SdkLoggerProvider::builder()
            .with_resource(resource.clone())
            .with_log_processor(processor)
            .build();
        let logger = logs.logger("sealwatch");
        let reader = PeriodicReader::builder(Counted {
            inner: metric_exporter,
            metrics: metrics.clone(),
            outage,
            endpoint: config.endpoint.clone(),
        })
        .with_interval(config.metrics_interval)
        .build();
        let meters = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(reader)
            .build();
        register_instruments(&meters, &metrics);
        drop(_entered);
        Ok(Otlp {
            logs,
            logger,
            meters,
            runtime: Some(runtime),
        })
    }

    /// Queues one alert record; never blocks.
    pub fn emit(&self, alert: &Alert) {
        let mut record = self.logger.create_log_record();
        let now = SystemTime::now();
        record.set_event_name("sealwatch.alert");
        record.set_timestamp(humantime::parse_rfc3339(&alert.last_seen).unwrap_or(now));
        record.set_observed_timestamp(now);
        record.set_severity_number(match alert.severity {
            Severity::Error => OtelSeverity::Error,
            Severity::Warn => OtelSeverity::Warn,
            Severity::Info => OtelSeverity::Info,
        });
        record.set_severity_text(alert.severity.name());
        record.set_body(AnyValue::String(alert.body().into()));
        record.add_attributes(alert_attributes(alert));
        self.logger.emit(record);
    }

    /// Sends what is queued and the metrics' last values, waiting a few seconds at most.
    pub fn shutdown(mut self) {
        if let Err(e) = self.meters.shutdown_with_timeout(SHUTDOWN_WAIT) {
            debug!(error = %e, "metrics export did not finish");
        }
        if let Err(e) = self.logs.shutdown_with_timeout(SHUTDOWN_WAIT) {
            debug!(error = %e, "alert export did not finish");
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

fn exporters(
    config: &OtlpConfig,
    ca: Option<&[u8]>,
) -> Result<(LogExporter, MetricExporter), OtlpError> {
    let base = config.endpoint.trim_end_matches('/');
    match config.protocol {
        Protocol::Grpc => {
            let tls = || {
                ca.map(|pem| {
                    opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new()
                        .ca_certificate(
                            opentelemetry_otlp::tonic_types::transport::Certificate::from_pem(pem),
                        )
                })
            };
            let mut logs = LogExporter::builder()
                .with_tonic()
                .with_endpoint(base)
                .with_timeout(config.timeout)
                .with_retry_policy(RetryPolicy::recommended());
            let mut metrics = MetricExporter::builder()
                .with_tonic()
                .with_endpoint(base)
                .with_timeout(config.timeout)
                .with_retry_policy(RetryPolicy::recommended())
                .with_temporality(Temporality::Cumulative);
            if let Some(t) = tls() {
                logs = logs.with_tls_config(t);
            }
            if let Some(t) = tls() {
                metrics = metrics.with_tls_config(t);
            }
            Ok((
                logs.build().map_err(OtlpError::Build)?,
                metrics.build().map_err(OtlpError::Build)?,
            ))
        }
        Protocol::HttpProtobuf => {
            let client = || -> Result<reqwest::blocking::Client, OtlpError> {
                let mut b = reqwest::blocking::Client::builder().timeout(config.timeout);
                if let Some(pem) = ca {
                    let certs = reqwest::Certificate::from_pem_bundle(pem)
                        .map_err(|e| OtlpError::Config(format!("the collector's CA file: {e}")))?;
                    b = b.tls_certs_merge(certs);
                }
                b.build()
                    .map_err(|e| OtlpError::Config(format!("HTTP client: {e}")))
            };
            let logs = LogExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(format!("{base}/v1/logs"))
                .with_timeout(config.timeout)
                .with_retry_policy(RetryPolicy::recommended())
                .with_http_client(client()?)
                .build()
                .map_err(OtlpError::Build)?;
            let metrics = MetricExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(format!("{base}/v1/metrics"))
                .with_timeout(config.timeout)
                .with_retry_policy(RetryPolicy::recommended())
                .with_http_client(client()?)
                .with_temporality(Temporality::Cumulative)
                .build()
                .map_err(OtlpError::Build)?;
            Ok((logs, metrics))
        }
    }
}

/// The alert's flow event under its contract keys, plus what the alert adds.
fn alert_attributes(alert: &Alert) -> Vec<(Key, AnyValue)> {
    let mut attrs = Vec::with_capacity(40);
    if let Ok(serde_json::Value::Object(map)) =
        serde_json::to_value(crate::event::Event::Flow(alert.event.clone()))
    {
        for (k, v) in map {
            if let Some(v) = any_value(v) {
                attrs.push((Key::from(k), v));
            }
        }
    }
    let count = i64::try_from(alert.count).unwrap_or(i64::MAX);
    attrs.push((
        Key::from_static_str("sealwatch.alert.count"),
        AnyValue::Int(count),
    ));
    attrs.push((
        Key::from_static_str("sealwatch.alert.kind"),
        AnyValue::String(alert.kind.name().into()),
    ));
    attrs.push((
        Key::from_static_str("sealwatch.alert.first_seen"),
        AnyValue::String(alert.first_seen.clone().into()),
    ));
    attrs.push((
        Key::from_static_str("sealwatch.alert.last_seen"),
        AnyValue::String(alert.last_seen.clone().into()),
    ));
    attrs.push((
        Key::from_static_str("sealwatch.alert.repeat"),
        AnyValue::Boolean(alert.repeat),
    ));
    attrs
}

fn any_value(v: serde_json::Value) -> Option<AnyValue> {
    use serde_json::Value;
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => AnyValue::Boolean(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AnyValue::Int(i),
            None => AnyValue::Double(n.as_f64()?),
        },
        Value::String(s) => AnyValue::String(StringValue::from(s)),
        Value::Array(items) => {
            AnyValue::ListAny(Box::new(items.into_iter().filter_map(any_value).collect()))
        }
        Value::Object(_) => return None,
    })
}

/// One observable instrument per registry family, reading the registry at each collection.
fn register_instruments(provider: &SdkMeterProvider, registry: &Metrics) {
    let meter = provider.meter("sealwatch");
    for family in metrics::ALL {
        let family: Family = *family;
        let r = registry.clone();
        let observe = move |o: &dyn opentelemetry::metrics::AsyncInstrument<u64>| {
            for (labels, value) in r.series(&family) {
                let kvs: Vec<KeyValue> = labels
                    .into_iter()
                    .map(|(k, v)| KeyValue::new(k, v))
                    .collect();
                o.observe(value, &kvs);
            }
        };
        match family.kind {
            Kind::Counter => {
                meter
                    .u64_observable_counter(family.name)
                    .with_unit(family.unit)
                    .with_description(family.help)
                    .with_callback(observe)
                    .build();
            }
            Kind::Gauge => {
                meter
                    .u64_observable_gauge(family.name)
                    .with_unit(family.unit)
                    .with_description(family.help)
                    .with_callback(observe)
                    .build();
            }
        }
    }
}

/// Outage bookkeeping shared by both signals: one warning when exports start failing, one
/// line when they work again.
#[derive(Debug, Default)]
struct Outage {
    failing: AtomicBool,
}

impl Outage {
    fn failed(&self, signal: &str, endpoint: &str, error: &dyn std::fmt::Display) {
        if !self.failing.swap(true, Ordering::Relaxed) {
            warn!(
                signal,
                endpoint,
                %error,
                "cannot export to the OpenTelemetry collector; classification goes on, exports are retried with backoff, alerts that cannot wait are dropped and counted (sealwatch.alerts.dropped); further failures at debug level"
            );
        } else {
            debug!(signal, %error, "OTLP export failed");
        }
    }

    fn succeeded(&self, signal: &str, dropped: u64) {
        if self.failing.swap(false, Ordering::Relaxed) {
            info!(signal, dropped, "OpenTelemetry collector reachable again");
        }
    }
}

/// The metric exporter, counting its failures.
struct Counted {
    inner: MetricExporter,
    metrics: Metrics,
    outage: Arc<Outage>,
    endpoint: String,
}

impl PushMetricExporter for Counted {
    async fn export(&self, m: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(m).await;
        match &result {
            Ok(()) => self.outage.succeeded("metrics", 0),
            Err(e) => {
                self.metrics
                    .add(&metrics::EXPORT_FAILURES, &[("signal", "metrics")], 1);
                self.outage.failed("metrics", &self.endpoint, e);
            }
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

enum Msg {
    Record(Box<(SdkLogRecord, InstrumentationScope)>),
    Flush(SyncSender<()>),
    Stop,
}

/// A log processor with a bounded queue and a worker thread that batches, exports and backs
/// off (the SDK's own batch processor drops quietly when full; here every drop is counted).
#[derive(Debug)]
struct QueueProcessor {
    queue: SyncSender<Msg>,
    metrics: Metrics,
    worker: Mutex<Option<JoinHandle<()>>>,
    full_warned: AtomicBool,
}

/// What the export worker works with.
struct Worker {
    exporter: LogExporter,
    queue: Receiver<Msg>,
    metrics: Metrics,
    outage: Arc<Outage>,
    endpoint: String,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl QueueProcessor {
    fn start(
        exporter: LogExporter,
        capacity: usize,
        metrics: Metrics,
        outage: Arc<Outage>,
        endpoint: String,
    ) -> QueueProcessor {
        let (queue, rx) = mpsc::sync_channel(capacity.max(1));
        let worker = Worker {
            exporter,
            queue: rx,
            metrics: metrics.clone(),
            outage,
            endpoint,
        };
        let worker = std::thread::Builder::new()
            .name("sealwatch-alerts".into())
            .spawn(move || export_loop(worker))
            .map_err(|e| warn!(error = %e, "cannot start the alert export thread; alerts are not exported"))
            .ok();
        QueueProcessor {
            queue,
            metrics,
            worker: Mutex::new(worker),
            full_warned: AtomicBool::new(false),
        }
    }
}

impl LogProcessor for QueueProcessor {
    fn emit(&self, record: &mut SdkLogRecord, scope: &InstrumentationScope) {
        let msg = Msg::Record(Box::new((record.clone(), scope.clone())));
        match self.queue.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.metrics
                    .add(&metrics::ALERTS_DROPPED, &[("reason", "queue_full")], 1);
                if !self.full_warned.swap(true, Ordering::Relaxed) {
                    warn!(
                        "the alert export queue is full (the collector is slow or down): alerts beyond it are dropped and counted in sealwatch.alerts.dropped"
                    );
                }
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let (tx, rx) = mpsc::sync_channel(1);
        self.queue
            .try_send(Msg::Flush(tx))
            .map_err(|_| OTelSdkError::InternalFailure("alert queue full".into()))?;
        rx.recv_timeout(SHUTDOWN_WAIT)
            .map_err(|_| OTelSdkError::Timeout(SHUTDOWN_WAIT))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        // Waits for room: the worker drains the queue even while it backs off.
        let deadline = Instant::now() + timeout;
        let mut msg = Msg::Stop;
        loop {
            match self.queue.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => return Err(OTelSdkError::Timeout(timeout)),
            }
        }
        let Some(worker) = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Ok(());
        };
        while !worker.is_finished() {
            if Instant::now() >= deadline {
                // Left behind: the process is ending, and its last alerts with it.
                return Err(OTelSdkError::Timeout(timeout));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = worker.join();
        Ok(())
    }
}

/// The worker: batches records, exports them, backs off after a failure. While it backs off
/// it keeps reading the queue into the batch (at most `MAX_BATCH`; beyond, dropped and
/// counted), so the queue itself never holds a stale backlog.
fn export_loop(w: Worker) {
    let Worker {
        exporter,
        queue: rx,
        metrics,
        outage,
        endpoint,
    } = w;
    let mut batch: Vec<(SdkLogRecord, InstrumentationScope)> = Vec::with_capacity(MAX_BATCH);
    let mut backoff = BACKOFF.0;
    let mut paused_until: Option<Instant> = None;
    let mut dropped_in_outage = 0u64;
    let mut oldest: Option<Instant> = None;
    let mut stopping = false;
    let mut flushes: Vec<SyncSender<()>> = Vec::new();
    while !stopping {
        let wait = match (oldest, paused_until) {
            (_, Some(until)) => until.saturating_duration_since(Instant::now()),
            (Some(t), None) => (t + BATCH_DELAY).saturating_duration_since(Instant::now()),
            (None, None) => BATCH_DELAY,
        };
        match rx.recv_timeout(wait) {
            Ok(Msg::Record(r)) => {
                if batch.len() >= MAX_BATCH {
                    metrics.add(&metrics::ALERTS_DROPPED, &[("reason", "queue_full")], 1);
                    dropped_in_outage += 1;
                } else {
                    oldest.get_or_insert_with(Instant::now);
                    batch.push(*r);
                }
            }
            Ok(Msg::Flush(reply)) => flushes.push(reply),
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => stopping = true,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let due = stopping
            || !flushes.is_empty()
            || batch.len() >= MAX_BATCH
            || oldest.is_some_and(|t| t.elapsed() >= BATCH_DELAY);
        let paused = paused_until.is_some_and(|u| Instant::now() < u) && !stopping;
        if !due || paused || batch.is_empty() {
            if !paused {
                for f in flushes.drain(..) {
                    let _ = f.send(());
                }
            }
            continue;
        }
        let refs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
            batch.iter().map(|(r, s)| (r, s)).collect();
        // Not a tokio block_on: the HTTP exporter's blocking client must not run inside a
        // runtime; the gRPC channel's IO runs on the export runtime's worker.
        let result = futures_executor::block_on(exporter.export(LogBatch::new(&refs)));
        let n = batch.len() as u64;
        match result {
            Ok(()) => {
                outage.succeeded("logs", dropped_in_outage);
                dropped_in_outage = 0;
                backoff = BACKOFF.0;
                paused_until = None;
            }
            Err(e) => {
                metrics.add(&metrics::EXPORT_FAILURES, &[("signal", "logs")], 1);
                metrics.add(&metrics::ALERTS_DROPPED, &[("reason", "export_failed")], n);
                dropped_in_outage += n;
                outage.failed("logs", &endpoint, &e);
                paused_until = Some(Instant::now() + backoff);
                backoff = (backoff * 2).min(BACKOFF.1);
            }
        }
        batch.clear();
        oldest = None;
        for f in flushes.drain(..) {
            let _ = f.send(());
        }
    }
    let _ = exporter.shutdown();
}

/// The resource every record and metric carries: `service.*`, and this node's attributes
/// (`host.*`, `cloud.*`, `k8s.node.name`), after whatever `OTEL_RESOURCE_ATTRIBUTES` says.
pub fn resource(node: &std::collections::BTreeMap<&'static str, String>) -> Resource {
    let mut attrs: Vec<KeyValue> = node
        .iter()
        .map(|(k, v)| KeyValue::new(*k, v.clone()))
        .collect();
    if let Ok(name) = std::env::var("NODE_NAME")
        && !name.is_empty()
    {
        attrs.push(KeyValue::new("k8s.node.name", name));
    }
    attrs.push(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    Resource::builder()
        .with_attributes(attrs)
        .with_service_name("sealwatch")
        .build()
}
