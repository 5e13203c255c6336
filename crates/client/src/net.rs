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
//! does not listen, so its refusal costs a round trip on loopback or a LAN; a node that takes the
//! connection and then hangs costs [`CONNECT_TIMEOUT`] before the next is tried.

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
/// How long the TCP connect to one node may take, and then its TLS handshake (each): past it,
/// the node counts as out of reach ([`NetError::Unreachable`], [`NetError::Handshake`]) and the
/// next is tried.
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
    /// What answered presented a certificate that is not the relay's: not issued by the
    /// certificate authority this device was set up to trust, or not for the app's name, or
    /// otherwise failing verification. Nothing was sent. Not for now: a setup to fix (or
    /// someone in the way), which trying again does not change.
    ///
    /// Noticing someone in the way is best effort: this is said only of one that presents a
    /// certificate. One that stalls, or resets or closes the connection, before it presents one
    /// cannot be told from a hung or failing node, and is [`Self::Handshake`] (for now). And when
    /// another node of the relay answers, the relay is reached and nothing is said.
    #[error("the relay at {address} is not {app}'s relay, by the certificate authority given")]
    NotTheRelay {
        /// Where the relay was looked for.
        address: SocketAddr,
        /// The app whose relay it should be.
        app: String,
        /// What the handshake said: a [`rustls::Error::InvalidCertificate`] inside.
        #[source]
        source: std::io::Error,
    },
    /// The node took the connection but the TLS handshake did not finish, for another reason than
    /// its certificate: no answer within [`CONNECT_TIMEOUT`] (a hung or half-dead node; the
    /// source's kind is `TimedOut`), the connection reset or closed, or an answer that is not
    /// TLS this device speaks. Nothing was sent. Like [`Self::Unreachable`], for now: another
    /// node of the relay, or a later try, may answer.
    #[error("no TLS handshake with the relay at {address}")]
    Handshake {
        /// Where the relay was looked for.
        address: SocketAddr,
        /// Why the handshake did not finish.
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

impl NetError {
    /// Whether this is for now, so that trying again later (or another node) may succeed: a
    /// relay out of reach ([`Self::Unreachable`]), a handshake that did not finish
    /// ([`Self::Handshake`]), a connection that closed ([`Self::Closed`]). A certificate that is
    /// not the relay's, and a setup that cannot work (the certificate authority, the app's
    /// name, no address), are not.
    pub fn is_for_now(&self) -> bool {
        matches!(self, NetError::Unreachable { .. } | NetError::Handshake { .. } | NetError::Closed)
    }
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
    /// one completes the handshake: a node that refuses, hangs (up to [`CONNECT_TIMEOUT`] for
    /// the connect, then as long for the handshake), closes, or presents a wrong certificate is
    /// passed over for the next. When none answers, the error is that of a node whose certificate
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
        match tokio::time::timeout(CONNECT_TIMEOUT, TlsConnector::from(self.tls.clone()).connect(name, stream)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(source)) if is_certificate_failure(&source) => Err(NetError::NotTheRelay { address, app: self.app.clone(), source }),
            Ok(Err(source)) => Err(NetError::Handshake { address, source }),
            Err(_) => Err(NetError::Handshake { address, source: timed_out("the TLS handshake") }),
        }
    }
}

/// Whether a failed handshake failed on the certificate the peer presented (rustls checked it
/// against the certificate authority and the app's name, and refused it): the one failure that
/// means "not the relay" rather than "not answering now".
fn is_certificate_failure(error: &std::io::Error) -> bool {
    matches!(error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()), Some(rustls::Error::InvalidCertificate(_)))
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
        // A node that takes the connection and closes it: the handshake does not finish there,
        // for now (a node going down, say). No certificate was seen: not `NotTheRelay`.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closing = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        });
        let relay = RelayAddress::with_addresses(&[refused, closing], "green", &ca).unwrap();
        assert_eq!(relay.addresses(), [refused, closing]);
        assert_eq!(relay.address(), refused);
        // The refusal of the first is no answer: the second was dialled.
        let error = relay.dial().await.unwrap_err();
        assert!(matches!(&error, NetError::Handshake { address, .. } if *address == closing), "{error:?}");
        assert!(error.is_for_now());
        // Neither outweighs the other: the last node's, whichever it is.
        let relay = RelayAddress::with_addresses(&[closing, refused], "green", &ca).unwrap();
        let error = relay.dial().await.unwrap_err();
        assert!(matches!(&error, NetError::Unreachable { address, .. } if *address == refused), "{error:?}");
        assert!(error.is_for_now());
        // Only refusals: the last node's.
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let relay = RelayAddress::with_addresses(&[refused, other], "green", &ca).unwrap();
        let error = relay.dial().await.unwrap_err();
        assert!(matches!(error, NetError::Unreachable { address, .. } if address == other), "{error:?}");
        // (A wrong certificate, which outweighs these, and a node that never answers the
        // handshake: the relay's tests/network.rs, which has relays to dial.)
    }

    #[tokio::test]
    async fn an_answer_that_is_not_tls_is_no_certificate_failure() {
        // A node that answers with bytes that are not TLS (an HTTP server, say).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        let relay = RelayAddress::new(address, "green", &rcgen_free_ca()).unwrap();
        let error = relay.dial().await.unwrap_err();
        assert!(matches!(&error, NetError::Handshake { address: said, .. } if *said == address), "{error:?}");
        assert!(error.is_for_now() && error.to_string().contains(&address.to_string()), "{error}");
    }

    /// A CA certificate (PEM) made once for these tests, by the relay crate's generator in the
    /// workspace; kept here as text so the client needs no certificate generator.
    fn rcgen_free_ca() -> String {
        include_str!("../tests/data/ca.pem").to_owned()
    }
}
