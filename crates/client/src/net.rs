//! A connection to an app's relay, as frames over TLS: a task reads and splits the byte stream,
//! the driver writes. What the frames mean is the endpoint's business.
//!
//! The relay is known by its certificate: issued by the certificate authority the device was set
//! up with, for the name of the device's app. A device presents its credential only inside that
//! TLS session, so no one on the path can read it, replay it, or rewrite the bundles the relay
//! hands out.
//!
//! An app's relay may be several nodes sharing one database, one active at a time and the others
//! standbys that take over when it dies (see the relay's `Leadership`): a device is given the
//! addresses of all of them ([`RelayAddress::with_addresses`]) and dials each in turn. A standby
//! does not listen, so its refusal costs a round trip on loopback or a LAN.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// Why a connection could not be used. Each keeps the error underneath as its source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// No connection could be made: nothing listens there (the relay is not running), or the
    /// network is down. Out of reach is for now: a client tries again.
    #[error("cannot reach the relay at {address}")]
    Unreachable {
        /// Where the relay was looked for.
        address: SocketAddr,
        /// Why it could not be reached (a timeout is `TimedOut`).
        #[source]
        source: std::io::Error,
    },
    /// The relay's certificate is not the one this device was set up to trust (or the TLS
    /// handshake failed otherwise): nothing was sent.
    #[error("the relay at {address} is not {app}'s relay, by the certificate authority given")]
    NotTheRelay {
        /// Where the relay was looked for.
        address: SocketAddr,
        /// The app whose relay it should be.
        app: String,
        /// What the handshake said (a timeout is `TimedOut`).
        #[source]
        source: std::io::Error,
    },
    /// The certificate authority given holds no certificate.
    #[error("no certificate in the certificate authority given (PEM)")]
    Ca(#[source] rustls::pki_types::pem::Error),
    /// The certificate authority's certificate cannot serve to check others.
    #[error("the certificate authority's certificate cannot be used")]
    CaRejected(#[source] rustls::Error),
    /// `app` cannot be a certificate's name, so no relay can prove to be its.
    #[error("{app:?} cannot be the name in a relay's certificate")]
    AppName {
        /// The app.
        app: String,
        /// Why.
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
    /// The TLS configuration could not be built.
    #[error("the TLS configuration")]
    Tls(#[source] rustls::Error),
    /// The connection closed (or a write did not finish in time).
    #[error("the connection to the relay closed")]
    Closed,
    /// A relay was given no address at all ([`RelayAddress::with_addresses`]).
    #[error("no address given for the relay")]
    NoAddress,
}

/// Where a device's relay is (the address of each of its nodes, when it has several), and how
/// the device recognises it: the certificate authority that issued the relay's certificate and
/// the app's name, which that certificate must carry. Cheap to clone; clones share which node
/// answered last.
#[derive(Clone)]
pub struct RelayAddress {
    /// Never empty.
    addresses: Arc<[SocketAddr]>,
    /// The index in `addresses` of the node that answered last: tried first.
    last_good: Arc<AtomicUsize>,
    app: String,
    tls: Arc<ClientConfig>,
}

impl RelayAddress {
    /// The relay of `app` at `address`, whose certificate `ca_certificate` (PEM) issued.
    pub fn new(address: SocketAddr, app: &str, ca_certificate: &str) -> Result<RelayAddress, NetError> {
        RelayAddress::with_addresses(&[address], app, ca_certificate)
    }

    /// The relay of `app` whose nodes are at `addresses` (one active, the others standbys; any
    /// order), whose certificate `ca_certificate` (PEM) issued. [`Self::dial`] tries each in
    /// turn. Fails with [`NetError::NoAddress`] when `addresses` is empty.
    pub fn with_addresses(addresses: &[SocketAddr], app: &str, ca_certificate: &str) -> Result<RelayAddress, NetError> {
        if addresses.is_empty() {
            return Err(NetError::NoAddress);
        }
        let ca = CertificateDer::from_pem_slice(ca_certificate.as_bytes()).map_err(NetError::Ca)?;
        let mut roots = RootCertStore::empty();
        roots.add(ca).map_err(NetError::CaRejected)?;
        ServerName::try_from(app.to_owned()).map_err(|source| NetError::AppName { app: app.to_owned(), source })?;
        let tls = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(NetError::Tls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(RelayAddress { addresses: addresses.into(), last_good: Arc::new(AtomicUsize::new(0)), app: app.to_owned(), tls: Arc::new(tls) })
    }

    /// The relay's socket address: the first given (of a relay of several nodes, see
    /// [`Self::addresses`]).
    pub fn address(&self) -> SocketAddr {
        self.addresses[0]
    }

    /// The socket addresses of the relay's nodes, as given (never empty).
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.addresses
    }

    /// The app whose relay this is.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// A TLS session with the relay, its certificate checked; for callers that speak the relay
    /// protocol themselves ([`Connection`] is the one the client uses).
    ///
    /// Of a relay of several nodes, each is tried in turn, from the one that answered last, until
    /// one takes the connection. When none does, the error is that of a node whose certificate
    /// was wrong, if one's was (that is no passing trouble), and otherwise the last node's.
    pub async fn dial(&self) -> Result<TlsStream<TcpStream>, NetError> {
        let count = self.addresses.len();
        let first = self.last_good.load(Ordering::Relaxed) % count;
        let mut failed = None;
        for index in (first..count).chain(0..first) {
            match self.dial_one(self.addresses[index]).await {
                Ok(stream) => {
                    self.last_good.store(index, Ordering::Relaxed);
                    return Ok(stream);
                }
                Err(error) => {
                    if !matches!(failed, Some(NetError::NotTheRelay { .. })) {
                        failed = Some(error);
                    }
                }
            }
        }
        Err(failed.unwrap_or(NetError::NoAddress))
    }

    /// A TLS session with the node at `address`.
    async fn dial_one(&self, address: SocketAddr) -> Result<TlsStream<TcpStream>, NetError> {
        let timed_out = |what: &str| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} took over {CONNECT_TIMEOUT:?}"));
        let unreachable = |source| NetError::Unreachable { address, source };
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => return Err(unreachable(source)),
            Err(_) => return Err(unreachable(timed_out("connecting"))),
        };
        let _ = stream.set_nodelay(true);
        let name = ServerName::try_from(self.app.clone()).map_err(|source| NetError::AppName { app: self.app.clone(), source })?;
        let not_the_relay = |source| NetError::NotTheRelay { address, app: self.app.clone(), source };
        match tokio::time::timeout(CONNECT_TIMEOUT, TlsConnector::from(self.tls.clone()).connect(name, stream)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(source)) => Err(not_the_relay(source)),
            Err(_) => Err(not_the_relay(timed_out("the TLS handshake"))),
        }
    }
}

impl std::fmt::Debug for RelayAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayAddress").field("addresses", &self.addresses).field("app", &self.app).finish_non_exhaustive()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_authority_without_a_certificate_is_said_so() {
        let error = RelayAddress::new("127.0.0.1:1".parse().unwrap(), "green", "not a certificate").unwrap_err();
        assert!(matches!(error, NetError::Ca(_)), "{error:?}");
        assert!(std::error::Error::source(&error).is_some());
    }

    #[tokio::test]
    async fn an_unreachable_relay_keeps_the_io_error() {
        // A port nothing listens on: bound, then let go.
        let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let ca = rcgen_free_ca();
        let relay = RelayAddress::new(address, "green", &ca).unwrap();
        let error = relay.dial().await.unwrap_err();
        let NetError::Unreachable { address: said, source } = &error else { panic!("{error:?}") };
        assert_eq!(*said, address);
        assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(error.to_string().contains(&address.to_string()), "{error}");
    }

    #[tokio::test]
    async fn a_relay_of_several_nodes_is_dialled_node_after_node() {
        let ca = rcgen_free_ca();
        assert!(matches!(RelayAddress::with_addresses(&[], "green", &ca), Err(NetError::NoAddress)));
        let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        // A node that takes the connection but is no relay of the CA's: the handshake fails there.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let impostor = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        });
        let relay = RelayAddress::with_addresses(&[refused, impostor], "green", &ca).unwrap();
        assert_eq!(relay.addresses(), [refused, impostor]);
        assert_eq!(relay.address(), refused);
        // The refusal of the first is no answer: the second was dialled.
        let error = relay.dial().await.unwrap_err();
        assert!(matches!(error, NetError::NotTheRelay { address, .. } if address == impostor), "{error:?}");
        // A wrong certificate outweighs a refusal, whichever node came last.
        let relay = RelayAddress::with_addresses(&[impostor, refused], "green", &ca).unwrap();
        let error = relay.dial().await.unwrap_err();
        assert!(matches!(error, NetError::NotTheRelay { address, .. } if address == impostor), "{error:?}");
        // Only refusals: the last node's.
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let relay = RelayAddress::with_addresses(&[refused, other], "green", &ca).unwrap();
        let error = relay.dial().await.unwrap_err();
        assert!(matches!(error, NetError::Unreachable { address, .. } if address == other), "{error:?}");
    }

    /// A CA certificate (PEM) made once for these tests, by the relay crate's generator in the
    /// workspace; kept here as text so the client needs no certificate generator.
    fn rcgen_free_ca() -> String {
        include_str!("../tests/data/ca.pem").to_owned()
    }
}
