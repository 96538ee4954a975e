//! `--metrics-addr`: a small HTTP/1.1 endpoint for users without a collector (Prometheus
//! scrapes `/metrics`) and for probes (`/healthz`: the agent runs; `/readyz`: its programs
//! are attached).
//!
//! One request per connection, a bounded request head and a deadline, so a slow or hostile
//! client holds one small task, never the main loop.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tracing::debug;

use super::metrics::Metrics;

/// The request head read, at most.
const MAX_HEAD: usize = 8 << 10;
/// A connection's whole exchange, at most.
const DEADLINE: Duration = Duration::from_secs(5);

/// Readiness, set once the programs are attached.
#[derive(Debug, Default, Clone)]
pub struct Ready(Arc<AtomicBool>);

impl Ready {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Binds `addr` (an error here is the user's to fix: exit before attaching) and serves on the
/// current runtime until the agent stops.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

pub fn spawn(listener: TcpListener, metrics: Metrics, ready: Ready) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let (metrics, ready) = (metrics.clone(), ready.clone());
            tokio::spawn(async move {
                if let Err(e) =
                    tokio::time::timeout(DEADLINE, answer(stream, &metrics, &ready)).await
                {
                    debug!(%peer, error = %e, "metrics request timed out");
                }
            });
        }
    })
}

async fn answer(mut stream: TcpStream, metrics: &Metrics, ready: &Ready) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > MAX_HEAD {
            let _ = respond(&mut stream, 431, "text/plain", "request head too large\n").await;
            return;
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" && method != "HEAD" {
        let _ = respond(&mut stream, 405, "text/plain", "only GET\n").await;
        return;
    }
    let _ = match path {
        "/metrics" => {
            respond(
                &mut stream,
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                &metrics.prometheus(),
            )
            .await
        }
        "/healthz" => respond(&mut stream, 200, "text/plain", "ok\n").await,
        "/readyz" if ready.get() => respond(&mut stream, 200, "text/plain", "ready\n").await,
        "/readyz" => respond(&mut stream, 503, "text/plain", "not attached yet\n").await,
        _ => {
            respond(
                &mut stream,
                404,
                "text/plain",
                "not found: /metrics, /healthz, /readyz\n",
            )
            .await
        }
    };
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap_or_default();
        out
    }

    #[test]
    fn serves_metrics_health_and_readiness() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(async {
            let listener = bind("127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
            let metrics = Metrics::default();
            metrics.add(
                &super::super::metrics::FLOWS,
                &[("sealwatch.action", "drop")],
                2,
            );
            let ready = Ready::default();
            spawn(listener, metrics, ready.clone());
            assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
            assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
            ready.set(true);
            assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
            let m = get(addr, "/metrics").await;
            assert!(
                m.contains("sealwatch_flows_total{sealwatch_action=\"drop\"} 2\n"),
                "{m}"
            );
            assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        });
    }
}
