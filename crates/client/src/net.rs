//! A connection to an app's relay, as frames over TLS: a task reads and splits the byte stream,
//! the driver writes. What the frames mean is the endpoint's business.
//!
//! The relay is known by its certificate: issued by the certificate authority the device was set
//! up with, for the name of the device's app. A device presents its credential only inside that
//! TLS session, so no one on the path can read it, replay it, or rewrite the bundles the relay
//! hands out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use switchboard_wire::frame::{FrameDecoder, PREFIX_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Frames received but not yet taken by the driver; the reader waits (and so does the relay)
/// while the driver is behind.
pub const FRAME_QUEUE: usize = 1024;
/// How long one write may take before the connection counts as dead.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    #[error("cannot reach the relay: {0}")]
    Unreachable(String),
    /// The relay's certificate is not the one this device was set up to trust (or the TLS
    /// handshake failed otherwise): nothing was sent.
    #[error("the relay at {address} is not {app}'s relay: {reason}")]
    NotTheRelay { address: SocketAddr, app: String, reason: String },
    /// The certificate authority given could not be used.
    #[error("the relay's certificate authority: {0}")]
    Trust(String),
    #[error("the connection to the relay closed")]
    Closed,
}

/// Where a device's relay is, and how the device recognises it: the certificate authority that
/// issued the relay's certificate and the app's name, which that certificate must carry. Cheap
/// to clone.
#[derive(Clone)]
pub struct RelayAddress {
    address: SocketAddr,
    app: String,
    tls: Arc<ClientConfig>,
}

impl RelayAddress {
    /// The relay of `app` at `address`, whose certificate `ca_certificate` (PEM) issued.
    pub fn new(address: SocketAddr, app: &str, ca_certificate: &str) -> Result<RelayAddress, NetError> {
        let trust = |error: &dyn std::fmt::Display| NetError::Trust(error.to_string());
        let ca = CertificateDer::from_pem_slice(ca_certificate.as_bytes()).map_err(|e| trust(&e))?;
        let mut roots = RootCertStore::empty();
        roots.add(ca).map_err(|e| trust(&e))?;
        ServerName::try_from(app.to_owned()).map_err(|e| trust(&e))?;
        let tls = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| trust(&e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(RelayAddress { address, app: app.to_owned(), tls: Arc::new(tls) })
    }

    /// The relay's socket address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The app whose relay this is.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// A TLS session with the relay, its certificate checked; for callers that speak the relay
    /// protocol themselves ([`Connection`] is the one the client uses).
    pub async fn dial(&self) -> Result<TlsStream<TcpStream>, NetError> {
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.address)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(NetError::Unreachable(error.to_string())),
            Err(_) => return Err(NetError::Unreachable("timed out".into())),
        };
        let _ = stream.set_nodelay(true);
        let name = ServerName::try_from(self.app.clone()).map_err(|e| NetError::Trust(e.to_string()))?;
        let not_the_relay = |reason: String| NetError::NotTheRelay { address: self.address, app: self.app.clone(), reason };
        match tokio::time::timeout(CONNECT_TIMEOUT, TlsConnector::from(self.tls.clone()).connect(name, stream)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(error)) => Err(not_the_relay(error.to_string())),
            Err(_) => Err(not_the_relay("the TLS handshake timed out".into())),
        }
    }
}

impl std::fmt::Debug for RelayAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayAddress").field("address", &self.address).field("app", &self.app).finish_non_exhaustive()
    }
}

/// One connection to a relay.
pub struct Connection {
    writer: WriteHalf<TlsStream<TcpStream>>,
    frames: mpsc::Receiver<Vec<u8>>,
}

impl Connection {
    /// Connects to the relay and checks its certificate before anything is sent.
    pub async fn connect(relay: &RelayAddress) -> Result<Connection, NetError> {
        let stream = relay.dial().await?;
        let (mut reader, writer) = tokio::io::split(stream);
        let (deliver, frames) = mpsc::channel(FRAME_QUEUE);
        tokio::spawn(async move {
            let mut decoder = FrameDecoder::default();
            let mut buffer = vec![0u8; 64 * 1024];
            'reading: loop {
                let Ok(read) = reader.read(&mut buffer).await else { break };
                if read == 0 {
                    break;
                }
                decoder.extend(&buffer[..read]);
                loop {
                    // A frame over the limit: the relay misbehaves; hang up.
                    let Ok(next) = decoder.next_frame() else { break 'reading };
                    let Some(frame) = next else { break };
                    if deliver.send(frame).await.is_err() {
                        break 'reading;
                    }
                }
            }
        });
        Ok(Connection { writer, frames })
    }

    /// Writes one frame (the encoded `ClientFrame`; the length prefix is added here).
    pub async fn write(&mut self, frame: &[u8]) -> Result<(), NetError> {
        let mut bytes = Vec::with_capacity(PREFIX_LEN + frame.len());
        bytes.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        bytes.extend_from_slice(frame);
        let write = async {
            self.writer.write_all(&bytes).await?;
            // TLS buffers records: out they go now, not at the next write.
            self.writer.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(NetError::Closed),
        }
    }

    /// The next frame from the relay; `None` once the connection is closed.
    pub async fn next_frame(&mut self) -> Option<Vec<u8>> {
        self.frames.recv().await
    }
}
