//! A small blocking HTTP/1.1 client for the two servers attribution asks, both close by: the
//! node's kubelet (HTTPS, or HTTP on its read-only port) and EC2's instance metadata service
//! (HTTP). One request per connection (`Connection: close`), a deadline over the whole
//! exchange, bodies bounded; no redirects, proxies or compression, which neither server needs.

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    sync::Arc,
    time::{Duration, Instant},
};

use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
    StreamOwned,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};

/// Longest status line plus headers accepted.
const MAX_HEAD: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url:?} is not an http(s)://host[:port] URL: {reason}")]
    Url { url: String, reason: &'static str },
    #[error("cannot resolve {host}")]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot connect to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error("exchange with {host} failed")]
    Io {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("an https endpoint needs a TLS configuration")]
    NoTlsConfig,
    #[error("TLS set-up failed")]
    Tls(#[source] rustls::Error),
    #[error("{0:?} is no server name")]
    ServerName(String),
    #[error("no certificate in the CA bundle")]
    NoCertificate,
    #[error("CA bundle does not parse")]
    Pem(#[source] rustls::pki_types::pem::Error),
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    #[error("response body over {limit} bytes")]
    TooLarge { limit: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// Where a server is: `http://host[:port]` or `https://host[:port]`, with host a name, an IPv4
/// address or a bracketed IPv6 address. A trailing `/` is allowed, a path is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: Scheme,
    /// Without brackets.
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, HttpError> {
        let bad = |reason| HttpError::Url {
            url: url.to_owned(),
            reason,
        };
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else {
            return Err(bad("the scheme is not http or https"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('/') || authority.contains('@') {
            return Err(bad("only host and port are taken"));
        }
        let default_port = match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
                ),
            }
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("the port is not a number"))?,
            None => default_port,
        };
        Ok(Endpoint {
            scheme,
            host: host.to_owned(),
            port,
        })
    }

    /// The `Host` header value.
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// How long an exchange may take, and how much it may bring back.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Per connection attempt (each resolved address gets one, within `total`).
    pub connect: Duration,
    /// From the first connection attempt to the last body byte.
    pub total: Duration,
    pub max_body: usize,
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Sends one request and reads its response. `tls` is required for `https` endpoints.
pub fn send(
    endpoint: &Endpoint,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    limits: Limits,
    tls: Option<Arc<ClientConfig>>,
) -> Result<Response, HttpError> {
    let deadline = Instant::now() + limits.total;
    let stream = connect(endpoint, limits, deadline)?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: sealwatch\r\n",
        endpoint.authority()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if method == "PUT" || method == "POST" {
        request.push_str("Content-Length: 0\r\n");
    }
    request.push_str("\r\n");
    let io_error = |source: io::Error| match source.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => HttpError::TimedOut(limits.total),
        _ => HttpError::Io {
            host: endpoint.host.clone(),
            source,
        },
    };
    let response = match (endpoint.scheme, tls) {
        (Scheme::Http, _) => exchange(stream, request.as_bytes(), limits.max_body),
        (Scheme::Https, Some(config)) => {
            let name = ServerName::try_from(endpoint.host.clone())
                .map_err(|_| HttpError::ServerName(endpoint.host.clone()))?;
            let conn = ClientConnection::new(config, name).map_err(HttpError::Tls)?;
            exchange(
                StreamOwned::new(conn, stream),
                request.as_bytes(),
                limits.max_body,
            )
        }
        (Scheme::Https, None) => return Err(HttpError::NoTlsConfig),
    };
    response.map_err(io_error)?
}

fn connect(endpoint: &Endpoint, limits: Limits, deadline: Instant) -> Result<Deadlined, HttpError> {
    let addrs: Vec<SocketAddr> = (endpoint.host.as_str(), endpoint.port)
        .to_socket_addrs()
        .map_err(|source| HttpError::Resolve {
            host: endpoint.host.clone(),
            source,
        })?
        .collect();
    let mut last = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HttpError::TimedOut(limits.total));
        }
        match TcpStream::connect_timeout(&addr, left.min(limits.connect)) {
            Ok(stream) => return Ok(Deadlined { stream, deadline }),
            Err(source) => last = Some(HttpError::Connect { addr, source }),
        }
    }
    Err(last.unwrap_or(HttpError::Resolve {
        host: endpoint.host.clone(),
        source: io::Error::new(io::ErrorKind::NotFound, "no address"),
    }))
}

/// A TCP stream whose every read and write waits at most until the exchange's deadline.
struct Deadlined {
    stream: TcpStream,
    deadline: Instant,
}

impl Deadlined {
    fn left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        Ok(left)
    }
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        self.stream.read(buf)
    }
}

impl Write for Deadlined {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// Writes `request` and reads the response. The outer error is the transport's, the inner one
/// the response's shape.
fn exchange<S: Read + Write>(
    mut stream: S,
    request: &[u8],
    max_body: usize,
) -> io::Result<Result<Response, HttpError>> {
    stream.write_all(request)?;
    stream.flush()?;
    // Bounds everything read, so a line without an end cannot grow without bound.
    let budget = MAX_HEAD + 2 * max_body as u64 + 1;
    let mut reader = BufReader::new(stream.take(budget));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let Some(status) = line
        .strip_prefix("HTTP/1.")
        .and_then(|l| l.get(2..5))
        .and_then(|s| s.parse::<u16>().ok())
    else {
        return Ok(Err(HttpError::Malformed("no HTTP/1.x status line")));
    };
    let mut length = None;
    let mut chunked = false;
    let mut head = line.len() as u64;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(Err(HttpError::Malformed("headers end early")));
        }
        head += line.len() as u64;
        if head > MAX_HEAD {
            return Ok(Err(HttpError::Malformed("headers too long")));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Ok(Err(HttpError::Malformed("header without ':'")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            match value.parse::<usize>() {
                Ok(n) => length = Some(n),
                Err(_) => return Ok(Err(HttpError::Malformed("bad Content-Length"))),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().ends_with("chunked");
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = line.trim_end().split(';').next().unwrap_or("").trim();
            let Ok(size) = usize::from_str_radix(size, 16) else {
                return Ok(Err(HttpError::Malformed("bad chunk size")));
            };
            if size == 0 {
                break;
            }
            if body.len() + size > max_body {
                return Ok(Err(HttpError::TooLarge { limit: max_body }));
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            line.clear();
            reader.read_line(&mut line)?;
            if line.trim_end() != "" {
                return Ok(Err(HttpError::Malformed("chunk without its CRLF")));
            }
        }
        // Trailers are not read: the connection closes after this response.
    } else if let Some(n) = length {
        if n > max_body {
            return Ok(Err(HttpError::TooLarge { limit: max_body }));
        }
        body.resize(n, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.take(max_body as u64 + 1).read_to_end(&mut body)?;
        if body.len() > max_body {
            return Ok(Err(HttpError::TooLarge { limit: max_body }));
        }
    }
    Ok(Ok(Response { status, body }))
}

/// Whom an https client trusts.
pub enum Trust<'a> {
    /// The certificates of a PEM bundle (a cluster's CA).
    Pem(&'a [u8]),
    /// Any certificate: the connection is encrypted but the server is not authenticated.
    Anyone,
}

/// A TLS client configuration with aws-lc-rs (the one provider the workspace builds), named
/// explicitly so it does not depend on which rustls features other crates turn on.
pub fn tls_config(trust: Trust<'_>) -> Result<Arc<ClientConfig>, HttpError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(HttpError::Tls)?;
    let config = match trust {
        Trust::Pem(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                roots
                    .add(cert.map_err(HttpError::Pem)?)
                    .map_err(HttpError::Tls)?;
            }
            if roots.is_empty() {
                return Err(HttpError::NoCertificate);
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Anyone => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Accepts any certificate, but still checks that the server holds its key (handshake
/// signatures), so the session is at least bound to the certificate it showed.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves `answers` on 127.0.0.1, one connection each, in order; hands back each request's
    /// head as received. The thread ends after the last answer.
    pub fn serve(answers: Vec<Vec<u8>>) -> (u16, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for answer in answers {
                let (mut conn, _) = listener.accept().expect("accept");
                conn.set_read_timeout(Some(Duration::from_secs(5)))
                    .expect("timeout");
                seen.push(read_head(&mut conn));
                let _ = conn.write_all(&answer);
            }
            seen
        });
        (port, server)
    }

    /// Reads a request's head (up to the blank line).
    pub fn read_head(conn: &mut impl Read) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match conn.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&head).into_owned()
    }

    const LIMITS: Limits = Limits {
        connect: Duration::from_millis(500),
        total: Duration::from_secs(5),
        max_body: 1024,
    };

    fn get(port: u16) -> Result<Response, HttpError> {
        let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}")).expect("url");
        send(
            &endpoint,
            "GET",
            "/x",
            &[("Accept", "text/plain")],
            LIMITS,
            None,
        )
    }

    #[test]
    fn endpoints_parse() {
        let e = |s: &str| Endpoint::parse(s).map(|e| (e.scheme, e.host, e.port));
        assert_eq!(
            e("https://node-1.internal:10250").ok(),
            Some((Scheme::Https, "node-1.internal".into(), 10250))
        );
        assert_eq!(
            e("http://169.254.169.254/").ok(),
            Some((Scheme::Http, "169.254.169.254".into(), 80))
        );
        assert_eq!(
            e("http://[fd00:ec2::254]").ok(),
            Some((Scheme::Http, "fd00:ec2::254".into(), 80))
        );
        assert_eq!(
            e("https://[::1]:8443").ok(),
            Some((Scheme::Https, "::1".into(), 8443))
        );
        for bad in [
            "ftp://x",
            "169.254.169.254",
            "http://",
            "http://h:port",
            "http://h/path",
            "http://[::1",
            "http://[::1]x",
            "http://u@h",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Endpoint::parse("http://[::1]:8080")
                .expect("v6")
                .authority(),
            "[::1]:8080"
        );
    }

    #[test]
    fn bodies_by_length_by_chunks_and_to_the_end() {
        let (port, server) = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello".to_vec(),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\n".to_vec(),
            b"HTTP/1.0 404 Not Found\r\n\r\nnot here".to_vec(),
        ]);
        let r = get(port).expect("length");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        let r = get(port).expect("chunked");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"wikipedia"[..]));
        let r = get(port).expect("to the end");
        assert_eq!((r.status, r.body.as_slice()), (404, &b"not here"[..]));
        let seen = server.join().expect("server");
        assert!(seen[0].starts_with("GET /x HTTP/1.1\r\n"), "{}", seen[0]);
        assert!(seen[0].contains(&format!("Host: 127.0.0.1:{port}\r\n")));
        assert!(
            seen[0].contains(
                "Connection: close\r\nUser-Agent: sealwatch\r\nAccept: text/plain\r\n\r\n"
            )
        );
    }

    #[test]
    fn oversized_and_malformed_responses_are_errors() {
        let big = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 4096);
        let (port, server) = serve(vec![
            big.into_bytes(),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n".to_vec(),
            b"SSH-2.0-OpenSSH_9.2\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        ]);
        assert!(matches!(
            get(port),
            Err(HttpError::TooLarge { limit: 1024 })
        ));
        assert!(matches!(
            get(port),
            Err(HttpError::TooLarge { limit: 1024 })
        ));
        assert!(matches!(get(port), Err(HttpError::Malformed(_))));
        assert!(matches!(get(port), Err(HttpError::Malformed(_))));
        assert!(matches!(get(port), Err(HttpError::Malformed(_))));
        server.join().expect("server");
    }

    #[test]
    fn a_silent_server_times_out_at_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}")).expect("url");
        let limits = Limits {
            total: Duration::from_millis(300),
            ..LIMITS
        };
        let start = Instant::now();
        // Accepted by the kernel's backlog, never answered.
        let r = send(&endpoint, "GET", "/", &[], limits, None);
        assert!(matches!(r, Err(HttpError::TimedOut(_))), "{r:?}");
        assert!(start.elapsed() < Duration::from_secs(2));
        drop(listener);
    }

    #[test]
    fn https_needs_a_trust_and_a_bundle_needs_a_certificate() {
        let endpoint = Endpoint::parse("https://127.0.0.1:1").expect("url");
        assert!(matches!(
            tls_config(Trust::Pem(b"no pem here")),
            Err(HttpError::NoCertificate)
        ));
        assert!(tls_config(Trust::Anyone).is_ok());
        // Nothing listens on port 1: the connection fails before TLS.
        let r = send(&endpoint, "GET", "/", &[], LIMITS, None);
        assert!(matches!(r, Err(HttpError::Connect { .. })), "{r:?}");
    }
}
