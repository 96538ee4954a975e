//! An OTLP/HTTP receiver for the tests: it binds inside a lab network namespace (where the
//! agent runs), decodes what arrives with the official protobuf messages, and keeps it for
//! assertions. It can also refuse (HTTP 503, retryable per OTLP) to test the agent's backoff,
//! or answer slowly (a collector under load) to test that the agent's memory stays bounded.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest},
    common::v1::{AnyValue, KeyValue, any_value},
    metrics::v1::{metric, number_data_point},
};
use prost::Message;
use serde_json::Value;

/// A log record as received.
#[derive(Debug, Clone)]
pub struct LogRecord {
    pub severity_number: i32,
    pub severity_text: String,
    pub event_name: String,
    pub body: String,
    pub attributes: BTreeMap<String, Value>,
    pub resource: BTreeMap<String, Value>,
}

/// One data point of a sum or gauge.
#[derive(Debug, Clone)]
pub struct MetricPoint {
    pub name: String,
    pub unit: String,
    pub monotonic: bool,
    pub attributes: BTreeMap<String, Value>,
    pub value: f64,
    pub time_unix_nano: u64,
}

#[derive(Default)]
struct Received {
    logs: Vec<LogRecord>,
    metrics: Vec<MetricPoint>,
}

pub struct OtlpReceiver {
    port: u16,
    received: Arc<Mutex<Received>>,
    refuse: Arc<AtomicBool>,
    /// Milliseconds each request waits before it is answered.
    delay_ms: Arc<AtomicU64>,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl OtlpReceiver {
    /// Listens on 127.0.0.1 (ephemeral port) inside the network namespace `ns`.
    pub fn in_netns(ns: &str) -> anyhow::Result<OtlpReceiver> {
        let path = format!("/run/netns/{ns}");
        let listener = thread::scope(|s| {
            s.spawn(|| -> anyhow::Result<TcpListener> {
                let f = std::fs::File::open(&path).with_context(|| path.clone())?;
                use std::os::fd::AsRawFd;
                // SAFETY: setns on this scoped thread only; the fd is open for the call.
                if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    bail!("setns {path}: {}", std::io::Error::last_os_error());
                }
                Ok(TcpListener::bind("127.0.0.1:0")?)
            })
            .join()
            .map_err(|_| anyhow::anyhow!("receiver setup panicked"))?
        })?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let r = OtlpReceiver {
            port,
            received: Arc::default(),
            refuse: Arc::default(),
            delay_ms: Arc::default(),
            requests: Arc::default(),
            stop: Arc::default(),
        };
        let (received, refuse, delay_ms, requests, stop) = (
            Arc::clone(&r.received),
            Arc::clone(&r.refuse),
            Arc::clone(&r.delay_ms),
            Arc::clone(&r.requests),
            Arc::clone(&r.stop),
        );
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let shared = Shared {
                            received: Arc::clone(&received),
                            refuse: Arc::clone(&refuse),
                            delay_ms: Arc::clone(&delay_ms),
                            requests: Arc::clone(&requests),
                        };
                        thread::spawn(move || serve(stream, &shared));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(r)
    }

    /// The base URL to give the agent (`--otlp-endpoint`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Answer 503 (retryable) instead of accepting.
    pub fn set_refusing(&self, refuse: bool) {
        self.refuse.store(refuse, Ordering::Relaxed);
    }

    /// Answer every request only after `delay` (zero: at once), like a collector under load.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Requests received, accepted or refused.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn log_records(&self) -> Vec<LogRecord> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .logs
            .clone()
    }

    pub fn metric_points(&self) -> Vec<MetricPoint> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .metrics
            .clone()
    }

    /// The latest point of metric `name` whose attributes include `with`.
    pub fn latest(&self, name: &str, with: &[(&str, &str)]) -> Option<f64> {
        self.metric_points()
            .into_iter()
            .filter(|p| {
                p.name == name
                    && with
                        .iter()
                        .all(|(k, v)| p.attributes.get(*k) == Some(&Value::from(*v)))
            })
            .max_by_key(|p| p.time_unix_nano)
            .map(|p| p.value)
    }

    /// Polls until `pred` holds or `timeout` passes.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&OtlpReceiver) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if pred(self) {
                return true;
            }
            thread::sleep(Duration::from_millis(100));
        }
        pred(self)
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What a connection's thread shares with the receiver.
struct Shared {
    received: Arc<Mutex<Received>>,
    refuse: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    requests: Arc<AtomicUsize>,
}

/// HTTP/1.1 with keep-alive: POST /v1/logs and /v1/metrics, content-length bodies.
fn serve(stream: TcpStream, shared: &Shared) {
    let Shared {
        received,
        refuse,
        delay_ms,
        requests,
    } = shared;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        requests.fetch_add(1, Ordering::Relaxed);
        let delay = delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            thread::sleep(Duration::from_millis(delay));
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_owned();
        let status = if refuse.load(Ordering::Relaxed) {
            "503 Service Unavailable"
        } else {
            let mut r = received.lock().unwrap_or_else(|p| p.into_inner());
            match path.as_str() {
                "/v1/logs" => match ExportLogsServiceRequest::decode(body.as_slice()) {
                    Ok(req) => {
                        r.logs.extend(logs(&req));
                        "200 OK"
                    }
                    Err(_) => "400 Bad Request",
                },
                "/v1/metrics" => match ExportMetricsServiceRequest::decode(body.as_slice()) {
                    Ok(req) => {
                        r.metrics.extend(metrics(&req));
                        "200 OK"
                    }
                    Err(_) => "400 Bad Request",
                },
                _ => "404 Not Found",
            }
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n"
        );
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn json(v: &AnyValue) -> Value {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => Value::from(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::from(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => Value::from(*d),
        Some(any_value::Value::ArrayValue(a)) => {
            Value::from(a.values.iter().map(json).collect::<Vec<_>>())
        }
        _ => Value::Null,
    }
}

fn map(kvs: &[KeyValue]) -> BTreeMap<String, Value> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, json)))
        .collect()
}

fn logs(req: &ExportLogsServiceRequest) -> Vec<LogRecord> {
    let mut out = Vec::new();
    for rl in &req.resource_logs {
        let resource = rl
            .resource
            .as_ref()
            .map(|r| map(&r.attributes))
            .unwrap_or_default();
        for sl in &rl.scope_logs {
            for r in &sl.log_records {
                out.push(LogRecord {
                    severity_number: r.severity_number,
                    severity_text: r.severity_text.clone(),
                    event_name: r.event_name.clone(),
                    body: r
                        .body
                        .as_ref()
                        .map(json)
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    attributes: map(&r.attributes),
                    resource: resource.clone(),
                });
            }
        }
    }
    out
}

fn metrics(req: &ExportMetricsServiceRequest) -> Vec<MetricPoint> {
    let mut out = Vec::new();
    for rm in &req.resource_metrics {
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let (points, monotonic) = match &m.data {
                    Some(metric::Data::Sum(s)) => (&s.data_points, s.is_monotonic),
                    Some(metric::Data::Gauge(g)) => (&g.data_points, false),
                    _ => continue,
                };
                for p in points {
                    out.push(MetricPoint {
                        name: m.name.clone(),
                        unit: m.unit.clone(),
                        monotonic,
                        attributes: map(&p.attributes),
                        value: match p.value {
                            Some(number_data_point::Value::AsInt(i)) => i as f64,
                            Some(number_data_point::Value::AsDouble(d)) => d,
                            None => f64::NAN,
                        },
                        time_unix_nano: p.time_unix_nano,
                    });
                }
            }
        }
    }
    out
}
