//! `pq-tls server PORT CERT KEY` / `pq-tls client HOST PORT SNI`: a TLS 1.3 server and client
//! that prefer X25519MLKEM768, as rustls with aws-lc-rs does by default, so the lab can show a
//! post-quantum key exchange on the wire. Debian 12's OpenSSL 3.0 cannot offer one.
//!
//! The client does not verify the server (the lab's certificate is self-signed); it prints the
//! negotiated group so the test can check what the agent reports against what was agreed.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::Arc,
};

use anyhow::{Context, bail};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, ServerConfig, ServerConnection,
    SignatureScheme, StreamOwned,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, aws_lc_rs},
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["server", port, cert, key] => server(port, cert, key),
        ["client", host, port, sni] => client(host, port, sni),
        _ => bail!("usage: pq-tls server PORT CERT KEY | pq-tls client HOST PORT SNI"),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

fn server(port: &str, cert: &str, key: &str) -> anyhow::Result<()> {
    let certs = CertificateDer::pem_file_iter(cert)
        .context("reading certificate")?
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key).context("reading key")?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    let config = Arc::new(config);
    let listener = TcpListener::bind(("0.0.0.0", port.parse::<u16>()?))?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let Ok(conn) = ServerConnection::new(config.clone()) else {
            continue;
        };
        let mut tls = StreamOwned::new(conn, stream);
        // One line each way; errors end this connection only.
        let mut buf = [0u8; 64];
        if tls.read(&mut buf).is_ok() {
            let _ = tls.write_all(b"hello from the pq server\n");
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    }
    Ok(())
}

fn client(host: &str, port: &str, sni: &str) -> anyhow::Result<()> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider())))
        .with_no_client_auth();
    let name = ServerName::try_from(sni.to_owned())?;
    let conn = ClientConnection::new(Arc::new(config), name)?;
    let sock = TcpStream::connect((host, port.parse::<u16>()?))?;
    let mut tls = StreamOwned::new(conn, sock);
    tls.write_all(b"hello\n")?;
    let mut reply = String::new();
    // The server closes after its line; a missing close_notify is not our concern here.
    let _ = tls.read_to_string(&mut reply);
    let group = tls
        .conn
        .negotiated_key_exchange_group()
        .map(|g| format!("{:?}", g.name()))
        .unwrap_or_default();
    println!("group={group} reply={}", reply.trim());
    Ok(())
}

/// Accepts any server certificate: the lab's is self-signed, and what is under test is the
/// key exchange, not authentication. Signatures are still checked against the certificate.
#[derive(Debug)]
struct AcceptAnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServer {
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
