//! What this node is, as OpenTelemetry resource attributes: its host name everywhere, and on
//! EC2 the instance, its type and image, account, region, zone and VPC, from the instance
//! metadata service (IMDSv2: a session token from `PUT /latest/api/token`, then GETs that
//! carry it).
//!
//! Asked once at start ([`NodeIdentity::detect`]) and kept: none of it changes while the agent
//! runs. Off EC2 the metadata address does not answer (or is another cloud's, which refuses the
//! token request) and the cloud attributes are simply absent; the wait is bounded by
//! [`ImdsConfig::timeout`] (1 s). In a pod without host networking the token's answer may be
//! dropped by the instance's hop limit (1 by default on some AMIs): the agent runs with host
//! networking.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde::Deserialize;
use tracing::debug;

use super::http::{self, Endpoint, HttpError, Limits};

pub const HOST_NAME: &str = "host.name";
pub const HOST_ID: &str = "host.id";
pub const HOST_TYPE: &str = "host.type";
pub const HOST_IMAGE_ID: &str = "host.image.id";
pub const CLOUD_PROVIDER: &str = "cloud.provider";
pub const CLOUD_PLATFORM: &str = "cloud.platform";
pub const CLOUD_REGION: &str = "cloud.region";
pub const CLOUD_AVAILABILITY_ZONE: &str = "cloud.availability_zone";
pub const CLOUD_ACCOUNT_ID: &str = "cloud.account.id";
/// The VPC of the instance's primary interface. OpenTelemetry has no attribute for it, and
/// names outside its conventions must not take one of its namespaces (`aws.`): ours then.
pub const VPC_ID: &str = "sealwatch.vpc.id";

/// The metadata service, as the AWS SDKs default to it.
pub const IMDS_ENDPOINT: &str = "http://169.254.169.254";
/// Its IPv6 address (Nitro instances, `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6`).
pub const IMDS_ENDPOINT_IPV6: &str = "http://[fd00:ec2::254]";
/// Lifetime asked for the session token: it is used within a second.
const TOKEN_TTL_SECONDS: &str = "60";
/// Largest answer accepted (the identity document is under 1 KB).
const MAX_ANSWER: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ImdsError {
    #[error("bad metadata endpoint")]
    Endpoint(#[source] HttpError),
    #[error("asking the metadata service for {path}")]
    Request {
        path: String,
        #[source]
        source: HttpError,
    },
    #[error("the metadata service answered {status} for {path}")]
    Status { path: String, status: u16 },
    #[error("the metadata service's answer for {path} is not text")]
    NotText { path: String },
    #[error("the instance identity document does not parse")]
    Document(#[source] serde_json::Error),
}

/// Where the metadata service is and how long it may take.
#[derive(Debug, Clone)]
pub struct ImdsConfig {
    /// `None`: not asked.
    pub endpoint: Option<String>,
    /// For each connection.
    pub connect_timeout: Duration,
    /// For all requests together.
    pub timeout: Duration,
}

impl Default for ImdsConfig {
    fn default() -> ImdsConfig {
        ImdsConfig {
            endpoint: Some(IMDS_ENDPOINT.to_owned()),
            connect_timeout: Duration::from_millis(300),
            timeout: Duration::from_secs(1),
        }
    }
}

impl ImdsConfig {
    /// From the variables the AWS SDKs read: `AWS_EC2_METADATA_DISABLED`,
    /// `AWS_EC2_METADATA_SERVICE_ENDPOINT`, `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE`.
    pub fn from_env() -> ImdsConfig {
        let var = |name| std::env::var(name).ok();
        ImdsConfig::from_vars(
            var("AWS_EC2_METADATA_DISABLED").as_deref(),
            var("AWS_EC2_METADATA_SERVICE_ENDPOINT").as_deref(),
            var("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE").as_deref(),
        )
    }

    /// As the SDKs do: `disabled` is `true` in any case to turn the service off; an explicit
    /// endpoint wins over the mode (`IPv4` or `IPv6`).
    pub fn from_vars(
        disabled: Option<&str>,
        endpoint: Option<&str>,
        mode: Option<&str>,
    ) -> ImdsConfig {
        let endpoint = if disabled.is_some_and(|d| d.trim().eq_ignore_ascii_case("true")) {
            None
        } else if let Some(e) = endpoint.map(str::trim).filter(|e| !e.is_empty()) {
            Some(e.to_owned())
        } else if mode.is_some_and(|m| m.trim().eq_ignore_ascii_case("ipv6")) {
            Some(IMDS_ENDPOINT_IPV6.to_owned())
        } else {
            Some(IMDS_ENDPOINT.to_owned())
        };
        ImdsConfig {
            endpoint,
            ..ImdsConfig::default()
        }
    }
}

/// This node's resource attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeIdentity {
    attributes: BTreeMap<&'static str, String>,
}

impl NodeIdentity {
    /// The host name, and what the metadata service says when there is one. Blocks for at most
    /// `config.timeout`.
    pub fn detect(config: &ImdsConfig) -> NodeIdentity {
        let mut attributes = BTreeMap::new();
        if let Some(name) = host_name() {
            attributes.insert(HOST_NAME, name);
        }
        match &config.endpoint {
            Some(endpoint) => match ec2_attributes(endpoint, config) {
                Ok(ec2) => attributes.extend(ec2),
                Err(e) => debug!(error = %e, "no EC2 instance metadata"),
            },
            None => debug!("EC2 instance metadata disabled"),
        }
        NodeIdentity { attributes }
    }

    pub fn attributes(&self) -> &BTreeMap<&'static str, String> {
        &self.attributes
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// This machine's host name (the node's name on most clusters).
pub fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        debug!(error = %std::io::Error::last_os_error(), "gethostname");
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    (!name.is_empty()).then_some(name)
}

/// The fields of the instance identity document used here.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentityDocument {
    account_id: Option<String>,
    availability_zone: Option<String>,
    region: Option<String>,
    instance_id: Option<String>,
    instance_type: Option<String>,
    image_id: Option<String>,
}

/// One IMDSv2 session: the token, then the identity document and the VPC of the primary
/// interface (without which the rest still counts).
pub fn ec2_attributes(
    endpoint: &str,
    config: &ImdsConfig,
) -> Result<BTreeMap<&'static str, String>, ImdsError> {
    let session = Session {
        endpoint: Endpoint::parse(endpoint).map_err(ImdsError::Endpoint)?,
        config,
        deadline: Instant::now() + config.timeout,
    };
    let token = session.ask(
        "PUT",
        "/latest/api/token",
        ("X-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL_SECONDS),
    )?;
    let with_token = ("X-aws-ec2-metadata-token", token.trim());
    let document = session.ask(
        "GET",
        "/latest/dynamic/instance-identity/document",
        with_token,
    )?;
    let document: IdentityDocument =
        serde_json::from_str(&document).map_err(ImdsError::Document)?;
    let mut out = BTreeMap::from([
        (CLOUD_PROVIDER, "aws".to_owned()),
        (CLOUD_PLATFORM, "aws_ec2".to_owned()),
    ]);
    for (key, value) in [
        (HOST_ID, document.instance_id),
        (HOST_TYPE, document.instance_type),
        (HOST_IMAGE_ID, document.image_id),
        (CLOUD_REGION, document.region),
        (CLOUD_AVAILABILITY_ZONE, document.availability_zone),
        (CLOUD_ACCOUNT_ID, document.account_id),
    ] {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            out.insert(key, v);
        }
    }
    let vpc = session
        .ask("GET", "/latest/meta-data/mac", with_token)
        .and_then(|mac| {
            let path = format!(
                "/latest/meta-data/network/interfaces/macs/{}/vpc-id",
                mac.trim()
            );
            session.ask("GET", &path, with_token)
        });
    match vpc {
        Ok(vpc) if !vpc.trim().is_empty() => {
            out.insert(VPC_ID, vpc.trim().to_owned());
        }
        Ok(_) => {}
        Err(e) => debug!(error = %e, "no VPC id from instance metadata"),
    }
    Ok(out)
}

/// Requests sharing one deadline.
struct Session<'a> {
    endpoint: Endpoint,
    config: &'a ImdsConfig,
    deadline: Instant,
}

impl Session<'_> {
    fn ask(&self, method: &str, path: &str, header: (&str, &str)) -> Result<String, ImdsError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let request_error = |source| ImdsError::Request {
            path: path.to_owned(),
            source,
        };
        if left.is_zero() {
            return Err(request_error(HttpError::TimedOut(self.config.timeout)));
        }
        let limits = Limits {
            connect: self.config.connect_timeout.min(left),
            total: left,
            max_body: MAX_ANSWER,
        };
        let response = http::send(&self.endpoint, method, path, &[header], limits, None)
            .map_err(request_error)?;
        if response.status != 200 {
            return Err(ImdsError::Status {
                path: path.to_owned(),
                status: response.status,
            });
        }
        String::from_utf8(response.body).map_err(|_| ImdsError::NotText {
            path: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrib::http::tests::read_head;
    use std::{
        io::Write,
        net::TcpListener,
        sync::{
            Arc,
            atomic::{AtomicBool, Ordering},
        },
        thread::JoinHandle,
    };

    const TOKEN: &str = "AQAEAFjJ9oV5Gz_test_token==";
    const MAC: &str = "0e:49:61:0f:c3:11";
    /// The identity document as IMDS serves it (pretty-printed, with fields not used here).
    const DOCUMENT: &str = r#"{
  "accountId" : "123456789012",
  "architecture" : "x86_64",
  "availabilityZone" : "eu-west-1b",
  "billingProducts" : null,
  "devpayProductCodes" : null,
  "marketplaceProductCodes" : null,
  "imageId" : "ami-0c1a2b3c4d5e6f708",
  "instanceId" : "i-0abc123def4567890",
  "instanceType" : "m6i.large",
  "kernelId" : null,
  "pendingTime" : "2026-11-18T15:58:02Z",
  "privateIp" : "10.0.12.34",
  "ramdiskId" : null,
  "region" : "eu-west-1",
  "version" : "2017-09-30"
}"#;

    /// A fake IMDSv2 on 127.0.0.1 until `stop` is set: the token for a PUT that asks for a TTL,
    /// 401 for a GET without that token (as IMDS does when IMDSv2 is required), the answers
    /// below, 404 otherwise. `vpc` says whether the interface has its VPC entry. Hands back
    /// the request heads.
    fn fake_imds(vpc: bool) -> (u16, Arc<AtomicBool>, JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let server = std::thread::spawn(move || {
            let mut heads = Vec::new();
            let give_up = Instant::now() + Duration::from_secs(10);
            while !stopped.load(Ordering::Relaxed) && Instant::now() < give_up {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                conn.set_nonblocking(false).expect("blocking");
                conn.set_read_timeout(Some(Duration::from_secs(2)))
                    .expect("timeout");
                let head = read_head(&mut conn);
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                let has_token = head.contains(&format!("X-aws-ec2-metadata-token: {TOKEN}\r\n"));
                let (status, body) = if head.starts_with("PUT /latest/api/token ") {
                    if head.contains("X-aws-ec2-metadata-token-ttl-seconds: ") {
                        ("200 OK", TOKEN.to_owned())
                    } else {
                        ("400 Bad Request", String::new())
                    }
                } else if !head.starts_with("GET ") {
                    ("405 Method Not Allowed", String::new())
                } else if !has_token {
                    ("401 Unauthorized", String::new())
                } else if path == "/latest/dynamic/instance-identity/document" {
                    ("200 OK", DOCUMENT.to_owned())
                } else if path == "/latest/meta-data/mac" {
                    ("200 OK", MAC.to_owned())
                } else if vpc
                    && path == format!("/latest/meta-data/network/interfaces/macs/{MAC}/vpc-id")
                {
                    ("200 OK", "vpc-0a1b2c3d4e5f60718".to_owned())
                } else {
                    ("404 Not Found", String::new())
                };
                let _ = conn.write_all(
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nServer: EC2ws\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
                heads.push(head);
            }
            heads
        });
        (port, stop, server)
    }

    fn config(port: u16) -> ImdsConfig {
        ImdsConfig {
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            ..ImdsConfig::default()
        }
    }

    #[test]
    fn ec2_attributes_come_from_one_imdsv2_session() {
        let (port, stop, server) = fake_imds(true);
        let node = NodeIdentity::detect(&config(port));
        stop.store(true, Ordering::Relaxed);
        let heads = server.join().expect("server");
        let expected = [
            (CLOUD_PROVIDER, "aws"),
            (CLOUD_PLATFORM, "aws_ec2"),
            (HOST_ID, "i-0abc123def4567890"),
            (HOST_TYPE, "m6i.large"),
            (HOST_IMAGE_ID, "ami-0c1a2b3c4d5e6f708"),
            (CLOUD_REGION, "eu-west-1"),
            (CLOUD_AVAILABILITY_ZONE, "eu-west-1b"),
            (CLOUD_ACCOUNT_ID, "123456789012"),
            (VPC_ID, "vpc-0a1b2c3d4e5f60718"),
        ];
        for (key, value) in expected {
            assert_eq!(node.get(key), Some(value), "{key}");
        }
        assert_eq!(node.get(HOST_NAME), host_name().as_deref());
        assert_eq!(node.attributes().len(), expected.len() + 1);
        assert_eq!(heads.len(), 4, "token, document, mac, vpc-id: {heads:?}");
        assert!(heads[0].contains("X-aws-ec2-metadata-token-ttl-seconds: 60\r\n"));
        assert!(heads[0].contains("Content-Length: 0\r\n"));
    }

    #[test]
    fn a_missing_vpc_entry_keeps_the_rest() {
        let (port, stop, server) = fake_imds(false);
        let ec2 = ec2_attributes(&format!("http://127.0.0.1:{port}"), &config(port)).expect("ec2");
        stop.store(true, Ordering::Relaxed);
        server.join().expect("server");
        assert_eq!(
            ec2.get(HOST_ID).map(String::as_str),
            Some("i-0abc123def4567890")
        );
        assert_eq!(ec2.get(VPC_ID), None);
    }

    #[test]
    fn gets_without_the_token_are_refused_by_the_fake() {
        // The fake itself: what IMDS does with IMDSv2 required, so the tests above prove the
        // token is sent.
        let (port, stop, server) = fake_imds(true);
        let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}")).expect("url");
        let limits = Limits {
            connect: Duration::from_millis(300),
            total: Duration::from_secs(1),
            max_body: MAX_ANSWER,
        };
        let r = http::send(&endpoint, "GET", "/latest/meta-data/mac", &[], limits, None)
            .expect("answer");
        stop.store(true, Ordering::Relaxed);
        server.join().expect("server");
        assert_eq!(r.status, 401);
    }

    #[test]
    fn off_ec2_the_cloud_attributes_are_absent_and_quickly_so() {
        // Nothing listens: refused at once.
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let start = Instant::now();
        let node = NodeIdentity::detect(&config(port));
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(node.get(CLOUD_PROVIDER), None);
        assert_eq!(
            node.attributes().keys().copied().collect::<Vec<_>>(),
            vec![HOST_NAME]
        );
        assert!(matches!(
            ec2_attributes(&format!("http://127.0.0.1:{port}"), &config(port)),
            Err(ImdsError::Request { .. })
        ));

        // Something accepts and never answers: the whole detection stays within its timeout.
        let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = silent.local_addr().expect("addr").port();
        let start = Instant::now();
        let node = NodeIdentity::detect(&ImdsConfig {
            timeout: Duration::from_millis(400),
            ..config(port)
        });
        assert!(
            start.elapsed() < Duration::from_millis(1000),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(node.get(HOST_ID), None);

        // Disabled: not asked at all.
        let node = NodeIdentity::detect(&ImdsConfig::from_vars(Some("true"), None, None));
        assert_eq!(node.get(CLOUD_PROVIDER), None);
    }

    #[test]
    fn another_cloud_refusing_the_token_request_gives_no_attributes() {
        // GCP and Azure answer the link-local address with 404/405 to the token PUT.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let _ = read_head(&mut conn);
            let _ = conn.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
        });
        let err = ec2_attributes(&format!("http://127.0.0.1:{port}"), &config(port))
            .expect_err("not EC2");
        server.join().expect("server");
        assert!(
            matches!(err, ImdsError::Status { status: 405, .. }),
            "{err}"
        );
    }

    #[test]
    fn the_environment_is_read_as_the_aws_sdks_read_it() {
        let defaults = ImdsConfig::from_vars(None, None, None);
        assert_eq!(
            (defaults.connect_timeout, defaults.timeout),
            (Duration::from_millis(300), Duration::from_secs(1))
        );
        let endpoint = |c: ImdsConfig| c.endpoint;
        assert_eq!(
            endpoint(ImdsConfig::from_vars(None, None, None)).as_deref(),
            Some(IMDS_ENDPOINT)
        );
        assert_eq!(
            endpoint(ImdsConfig::from_vars(Some("TRUE"), Some("http://x"), None)),
            None
        );
        assert_eq!(
            endpoint(ImdsConfig::from_vars(Some("false"), None, Some("IPv6"))).as_deref(),
            Some(IMDS_ENDPOINT_IPV6)
        );
        assert_eq!(
            endpoint(ImdsConfig::from_vars(
                None,
                Some("http://127.0.0.1:1338"),
                Some("IPv6")
            ))
            .as_deref(),
            Some("http://127.0.0.1:1338")
        );
        assert_eq!(
            endpoint(ImdsConfig::from_vars(None, Some(""), None)).as_deref(),
            Some(IMDS_ENDPOINT)
        );
        assert!(matches!(
            ec2_attributes("imds.local", &ImdsConfig::default()),
            Err(ImdsError::Endpoint(_))
        ));
    }

    #[test]
    fn this_host_has_a_name() {
        assert!(host_name().is_some_and(|n| !n.is_empty()));
    }
}
