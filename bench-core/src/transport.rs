//! The load generator's connections to a server, plain TCP or TLS: [`Tls`] (a client
//! configuration built from PEM, which the control plane's `redis` client is given too),
//! the blocking [`Stream`] (the slot map's read, the counted request stream) and the
//! async [`Wire`] its connections use.
//!
//! TLS is rustls (ring). Every handshake has a deadline, so a plain server on the port (it
//! reads the ClientHello as an unfinished inline command and waits) is a clear error, not
//! a hang; and a TLS server closing a plaintext connection is named as the likely cause.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::loadgen::runtime::{self, Socket};

pub use failure::explain;
pub(crate) use failure::{handshake_error, tls_hint_in_text};

mod failure;

/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a deployment speaks TLS, as records carry it (`params.tls`; `null` is plain TCP).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TlsMode {
    /// The servers require a client certificate (`tls-auth-clients yes`); ours present one.
    pub auth_clients: bool,
}

impl TlsMode {
    /// What case names end with: `/tls`, or `/tls-auth` with client certificates.
    pub fn suffix(self) -> &'static str {
        if self.auth_clients {
            "/tls-auth"
        } else {
            "/tls"
        }
    }
}

/// Where the PEM files of a [`Tls`] are, for engines that read files (valkey-benchmark).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    /// The client's certificate and key, when the server authenticates clients.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// How to speak TLS to a server: the CA its certificate must chain to, optionally a
/// client certificate, and the name to verify (else the address's IP).
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
    files: Option<TlsFiles>,
    /// The PEM it was built from, for the control plane's `redis` client, which builds
    /// its own rustls configuration from PEM.
    pem: Arc<Pem>,
}

/// A [`Tls`]'s PEM: the CA, and the client's certificate chain and key.
struct Pem {
    ca: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// The same configuration object (not merely an equal one), name and files.
impl PartialEq for Tls {
    fn eq(&self, other: &Tls) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
            && self.server_name == other.server_name
            && self.files == other.files
    }
}

impl Eq for Tls {}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .field("files", &self.files)
            .field(
                "client_certificate",
                &self.config.client_auth_cert_resolver.has_certs(),
            )
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what}: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("TLS server name {0:?} is neither a DNS name nor an IP address")]
    ServerName(String),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

impl Tls {
    /// A configuration trusting the certificates in `ca_pem`, presenting `identity`
    /// (certificate chain PEM, private key PEM) when given, and verifying `server_name`
    /// (a DNS name or an IP) instead of the address's IP when given.
    pub fn new(
        ca_pem: &[u8],
        identity: Option<(&[u8], &[u8])>,
        server_name: Option<&str>,
    ) -> Result<Tls, TlsError> {
        let pem = |what, e: rustls::pki_types::pem::Error| TlsError::Pem {
            what,
            reason: e.to_string(),
        };
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots
                .add(cert.map_err(|e| pem("the CA certificate", e))?)
                .map_err(TlsError::Config)?;
        }
        if roots.is_empty() {
            return Err(TlsError::Pem {
                what: "the CA certificate",
                reason: "no PEM certificate in it".into(),
            });
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert_pem, key_pem)) => {
                let chain = CertificateDer::pem_slice_iter(cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| pem("the client certificate", e))?;
                if chain.is_empty() {
                    return Err(TlsError::Pem {
                        what: "the client certificate",
                        reason: "no PEM certificate in it".into(),
                    });
                }
                let key =
                    PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| pem("the client key", e))?;
                builder.with_client_auth_cert(chain, key)?
            }
        };
        let server_name = server_name
            .map(|name| {
                ServerName::try_from(name.to_string())
                    .map_err(|_| TlsError::ServerName(name.to_string()))
            })
            .transpose()?;
        Ok(Tls {
            config: Arc::new(config),
            server_name,
            files: None,
            pem: Arc::new(Pem {
                ca: ca_pem.to_vec(),
                identity: identity.map(|(cert, key)| (cert.to_vec(), key.to_vec())),
            }),
        })
    }

    /// The same configuration, saying where its files are.
    pub fn with_files(mut self, files: TlsFiles) -> Tls {
        self.files = Some(files);
        self
    }

    pub fn files(&self) -> Option<&TlsFiles> {
        self.files.as_ref()
    }

    /// The name verified instead of the address's IP, when one was given.
    pub fn server_name(&self) -> Option<&ServerName<'static>> {
        self.server_name.as_ref()
    }

    /// [`Tls::server_name`] as [`Tls::new`] takes it (a DNS name or an IP address), to
    /// give another process the same configuration.
    pub fn server_name_text(&self) -> Option<String> {
        self.server_name.as_ref().map(|name| match name {
            ServerName::DnsName(dns) => dns.as_ref().to_string(),
            ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
            other => format!("{other:?}"),
        })
    }

    /// The same trust and identity for the `redis` client.
    pub fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self
                .pem
                .identity
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: Some(self.pem.ca.clone()),
        }
    }

    /// Whether this client presents a certificate.
    pub fn presents_certificate(&self) -> bool {
        self.config.client_auth_cert_resolver.has_certs()
    }

    fn session(&self, addr: SocketAddr) -> io::Result<ClientConnection> {
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(verified_ip(addr).into()));
        ClientConnection::new(Arc::clone(&self.config), name).map_err(io::Error::other)
    }
}

/// The address TLS verifies: an IPv4-mapped IPv6 address is its IPv4 one.
pub(crate) fn verified_ip(addr: SocketAddr) -> IpAddr {
    match addr.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// A blocking connection: plain, or TLS with its handshake done.
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// Connects with `timeout` on the connect and on every later read and write (and the
    /// handshake within [`HANDSHAKE_TIMEOUT`] at most).
    pub fn connect(addr: SocketAddr, tls: Option<&Tls>, timeout: Duration) -> io::Result<Stream> {
        let tcp = TcpStream::connect_timeout(&addr, timeout)?;
        tcp.set_nodelay(true)?;
        let Some(tls) = tls else {
            tcp.set_read_timeout(Some(timeout))?;
            tcp.set_write_timeout(Some(timeout))?;
            return Ok(Stream::Tcp(tcp));
        };
        let handshake = timeout.min(HANDSHAKE_TIMEOUT);
        tcp.set_read_timeout(Some(handshake))?;
        tcp.set_write_timeout(Some(handshake))?;
        let mut session = tls.session(addr)?;
        let mut tcp = tcp;
        while session.is_handshaking() {
            session.complete_io(&mut tcp).map_err(handshake_error)?;
        }
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        Ok(Stream::Tls(Box::new(StreamOwned::new(session, tcp))))
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// Changes the read timeout (`None`: reads block).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(timeout)
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Tcp(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(buf),
            // The records leave rustls on flush, not on write.
            Stream::Tls(s) => {
                s.write_all(buf)?;
                s.flush()
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// An async connection (the generator's): plain, or TLS with its handshake done.
pub enum Wire {
    Tcp(Socket),
    Tls(Box<tokio_rustls::client::TlsStream<Socket>>),
}

impl Wire {
    /// Connects (no Nagle delay) and, with `tls`, completes the handshake within
    /// [`HANDSHAKE_TIMEOUT`].
    pub async fn connect(addr: SocketAddr, tls: Option<&Tls>) -> io::Result<Wire> {
        let tcp = Socket::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let Some(tls) = tls else {
            return Ok(Wire::Tcp(tcp));
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&tls.config));
        let name = tls
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(verified_ip(addr).into()));
        match runtime::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp)).await {
            Ok(Ok(stream)) => Ok(Wire::Tls(Box::new(stream))),
            Ok(Err(e)) => Err(handshake_error(e)),
            Err(_) => Err(handshake_error(io::ErrorKind::TimedOut.into())),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Wire::Tls(_))
    }

    /// Writes all of `bytes` and, over TLS, pushes the records out (rustls holds them
    /// until flushed when the socket is full).
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        match self {
            Wire::Tcp(s) => {
                let mut sent = 0;
                while sent < bytes.len() {
                    match std::future::poll_fn(|cx| s.poll_send(cx, &bytes[sent..])).await? {
                        0 => return Err(io::ErrorKind::WriteZero.into()),
                        n => sent += n,
                    }
                }
                Ok(())
            }
            Wire::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    /// Reads what is there into `buf`'s spare capacity (grown if it has none):
    /// `Ready(Ok(0))` is the end of the stream.
    pub fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut Vec<u8>,
    ) -> Poll<io::Result<usize>> {
        if buf.capacity() == buf.len() {
            buf.reserve(16 * 1024);
        }
        if let Wire::Tcp(socket) = self {
            return match socket.poll_recv(cx, buf.spare_capacity_mut()) {
                Poll::Ready(Ok(n)) => {
                    // SAFETY: recv initialized the first `n` bytes of the spare capacity.
                    unsafe { buf.set_len(buf.len() + n) };
                    Poll::Ready(Ok(n))
                }
                other => other,
            };
        }
        let spare = buf.spare_capacity_mut();
        let start = spare.as_ptr();
        let mut read = ReadBuf::uninit(spare);
        let polled = Pin::new(&mut *self).poll_read(cx, &mut read);
        let n = read.filled().len();
        assert!(n == 0 || read.filled().as_ptr().cast() == start);
        match polled {
            Poll::Ready(Ok(())) => {
                // SAFETY: `ReadBuf` counts as filled only bytes that were initialized, and
                // they are the first `n` of the spare capacity (checked above).
                unsafe { buf.set_len(buf.len() + n) };
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Wire::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Wire::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Wire::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Wire::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Wire::Tcp(s) => Pin::new(s).poll_flush(cx),
            Wire::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Wire::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Wire::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_ca_without_certificates() {
        let err = Tls::new(b"not a pem", None, None).unwrap_err().to_string();
        assert!(
            err.contains("the CA certificate") && err.contains("no PEM"),
            "{err}"
        );
    }

    fn ca() -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap()
    }

    #[test]
    fn builds_from_pem_with_and_without_a_client_certificate() {
        let ca = ca();
        let tls = Tls::new(ca.pem().as_bytes(), None, None).unwrap();
        assert!(!tls.presents_certificate());
        let key = rcgen::KeyPair::generate().unwrap();
        let client = rcgen::CertificateParams::new(vec!["client".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let tls = Tls::new(
            ca.pem().as_bytes(),
            Some((client.pem().as_bytes(), key.serialize_pem().as_bytes())),
            Some("localhost"),
        )
        .unwrap();
        assert!(tls.presents_certificate());
        let err = Tls::new(
            ca.pem().as_bytes(),
            Some((client.pem().as_bytes(), b"")),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("the client key"), "{err}");
    }

    #[test]
    fn refuses_a_bad_server_name() {
        let ca = ca();
        let err = Tls::new(ca.pem().as_bytes(), None, Some("a b"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"a b\""), "{err}");
    }

    #[test]
    fn a_server_name_reads_back_as_it_was_given() {
        let ca = ca();
        for name in ["db.internal", "198.18.0.2", "::1"] {
            let tls = Tls::new(ca.pem().as_bytes(), None, Some(name)).unwrap();
            assert_eq!(tls.server_name_text().as_deref(), Some(name));
        }
        let tls = Tls::new(ca.pem().as_bytes(), None, None).unwrap();
        assert_eq!(tls.server_name_text(), None);
    }

    #[test]
    fn verifies_an_ipv4_mapped_address_as_ipv4() {
        let addr: SocketAddr = "[::ffff:127.0.0.1]:6379".parse().unwrap();
        assert_eq!(verified_ip(addr), IpAddr::from([127, 0, 0, 1]));
    }
}
