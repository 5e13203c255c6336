//! A front node: a node of an app's relay that does not hold the database's lock, and serves
//! anyway. It listens where the active node would (devices, other apps' relays), ends their TLS
//! as the active node would (the app's certificate; other apps' certificates checked the same
//! way), and carries each connection's bytes to the active node over one link
//! ([`RelayHandle::accept_fronts`](super::RelayHandle::accept_fronts) is the other end), which serves them as its own. So every node
//! of a cluster takes connections, while one writes: a device may connect to any node, and its
//! mail reaches it wherever it was sent from.
//!
//! The active node is found by dialing the cluster's node addresses in turn, from the one that
//! answered last; only the active node listens on its node address. While no link is up, a
//! connection is closed once its TLS is up (the device dials its next address). When the link
//! closes (the active node died, say), every connection it carried is closed: the devices
//! reconnect, and are served again once a link to the new active node is up (maybe this node's
//! own core, once it holds the lock). Nothing is acknowledged here: what a device sent is
//! acknowledged by the active node once it is committed, so a closed link loses nothing.

use std::collections::HashMap;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use switchboard_wire::frame::FrameDecoder;
use switchboard_wire::switchboard::{NodeClose, NodeOpen, node_frame, node_open};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::carried::{CARRIED_CHUNK, LINK_QUEUE, NodeLinkError, node_frame, read_node_frame, source_bytes, write_node_frames};
use super::connection::{Kind, Queued};
use super::tls::{self, certificate_der};
use super::{
    CONNECTION_QUEUE_BYTES, HANDSHAKE_TIMEOUT, QUEUED_BYTES_BUDGET, RelaySettings, Sink, StartError, WRITE_DEADLINE, WRITE_QUEUE, accept_clients,
    accept_links, keep_link_alive,
};

/// How long a front node waits after its first round of dialing the cluster's nodes found no
/// active one...
const DIAL_BACKOFF_FIRST: Duration = Duration::from_millis(50);
/// ...and at most, the wait doubling after each such round.
const DIAL_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A running front node.
pub struct FrontHandle {
    /// The app it serves.
    pub app: String,
    /// Where devices connect (TLS).
    pub client_address: SocketAddr,
    /// Where other relays connect (mutual TLS).
    pub federation_address: SocketAddr,
    link: watch::Receiver<Option<Arc<FrontLink>>>,
    tasks: JoinSet<()>,
}

impl FrontHandle {
    /// The node address of the active node it carries connections to, while its link is up.
    pub fn active_node(&self) -> Option<SocketAddr> {
        self.link.borrow().as_ref().map(|link| link.node)
    }

    /// Resolves once a link to an active node is up.
    pub async fn linked(&self) {
        let _ = self.link.clone().wait_for(Option::is_some).await;
    }

    /// Stops the front node: its listeners, its link and every connection it carries.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
        if let Some(link) = self.link.borrow().as_ref() {
            link.close_all();
        }
    }
}

/// Starts a front node of `settings.app` on already bound listeners, carrying what they take to
/// whichever of `nodes` (the cluster's node addresses, this node's own among them or not) is
/// active. `settings.tap` and `settings.seed` are unused: the active node taps and draws.
pub async fn start_front(
    settings: RelaySettings,
    client_listener: TcpListener,
    federation_listener: TcpListener,
    nodes: Vec<SocketAddr>,
) -> Result<FrontHandle, StartError> {
    crate::config::check_peer_addresses(&nodes).map_err(StartError::NodeAddresses)?;
    let device_acceptor = TlsAcceptor::from(tls::device_server_config(&settings.tls)?);
    let acceptor = TlsAcceptor::from(tls::server_config(&settings.tls)?);
    let connector = TlsConnector::from(tls::client_config(&settings.tls)?);
    let own = certificate_der(&settings.tls.certificate)?;
    let mut peer_certificates = HashMap::new();
    for peer in &settings.peers {
        peer_certificates.insert(certificate_der(&peer.certificate)?, peer.app.clone());
    }
    let client_address = client_listener.local_addr().map_err(StartError::Listener)?;
    let federation_address = federation_listener.local_addr().map_err(StartError::Listener)?;
    let (current, link) = watch::channel(None);
    let mut tasks = JoinSet::new();
    tasks.spawn(keep_link(settings.app.clone(), nodes, own, connector, current));
    tasks.spawn(accept_clients(client_listener, device_acceptor, Sink::Front(link.clone()), None));
    tasks.spawn(accept_links(federation_listener, acceptor, Arc::new(peer_certificates), Sink::Front(link.clone()), None));
    Ok(FrontHandle { app: settings.app, client_address, federation_address, link, tasks })
}

/// A front node's link to the active node, as its connections use it.
pub(super) struct FrontLink {
    /// The active node's node address.
    node: SocketAddr,
    /// Encoded frames for the active node.
    outgoing: mpsc::Sender<Vec<u8>>,
    /// The connections it carries, by stream.
    streams: Mutex<HashMap<u64, Stream>>,
    next_stream: AtomicU64,
    /// Bytes queued for devices on every connection it carries (see [`QUEUED_BYTES_BUDGET`]).
    queued: Arc<AtomicUsize>,
}

/// One carried connection, as the link's reader holds it.
struct Stream {
    /// What the active node sent it, for its writer.
    queue: mpsc::Sender<Queued>,
    /// Bytes in `queue`.
    queued: Arc<AtomicUsize>,
    is_device: bool,
    /// Stops the connection at once, dropping what is queued (it does not read).
    stop: oneshot::Sender<()>,
}

impl FrontLink {
    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Stream>> {
        self.streams.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Closes every connection the link carries, each after what was queued for it is written.
    fn close_all(&self) {
        self.streams().clear();
    }

    /// Queues `data` from the active node for `stream`'s connection. A connection that would
    /// pass [`CONNECTION_QUEUE_BYTES`], or a device's when what is queued for all of them would
    /// pass [`QUEUED_BYTES_BUDGET`], is not reading: it is stopped.
    fn deliver(&self, stream: u64, data: Vec<u8>) {
        let mut streams = self.streams();
        // Closed here a moment ago: the active node hears of it.
        let Some(carried) = streams.get(&stream) else { return };
        let over = carried.queued.load(Ordering::Relaxed) + data.len() > CONNECTION_QUEUE_BYTES
            || (carried.is_device && self.queued.load(Ordering::Relaxed) + data.len() > QUEUED_BYTES_BUDGET);
        let frame = (!over).then(|| Queued::new(data, &carried.queued, carried.is_device.then_some(&self.queued)));
        if let Some(frame) = frame
            && carried.queue.try_send(frame).is_ok()
        {
            return;
        }
        tracing::info!(stream, "closing a carried connection that does not read what it is sent");
        if let Some(carried) = streams.remove(&stream) {
            let _ = carried.stop.send(());
        }
    }
}

/// Carries one connection its listener took (TLS ended) to the active node, until either side
/// closes it. Returns why it ended, when something went wrong, for the log.
pub(super) async fn carry<S>(stream: S, kind: Kind, link: &watch::Receiver<Option<Arc<FrontLink>>>) -> Option<String>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let Some(link) = link.borrow().clone() else {
        return Some("no active node to carry it to yet: closed, for the device to try another node".to_owned());
    };
    let (open, is_device) = match kind {
        Kind::Client { source } => (node_open::Kind::DeviceSource(source_bytes(source)), true),
        Kind::Link { app, .. } => (node_open::Kind::LinkApp(app), false),
    };
    let id = link.next_stream.fetch_add(1, Ordering::Relaxed);
    let (queue, mut queued_frames) = mpsc::channel::<Queued>(WRITE_QUEUE);
    let (stop, mut stopped) = oneshot::channel();
    let queued = Arc::new(AtomicUsize::new(0));
    link.streams().insert(id, Stream { queue, queued, is_device, stop });
    if link.outgoing.send(node_frame(id, node_frame::Body::Open(NodeOpen { kind: Some(open) }))).await.is_err() {
        link.streams().remove(&id);
        return Some("the link to the active node closed".to_owned());
    }
    let (mut reader, mut writer) = tokio::io::split(stream);
    let reading = async {
        let mut buffer = vec![0u8; CARRIED_CHUNK];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) => return None,
                Err(error) => return Some(error.to_string()),
                Ok(read) => {
                    if link.outgoing.send(node_frame(id, node_frame::Body::Data(buffer[..read].to_vec()))).await.is_err() {
                        return Some("the link to the active node closed".to_owned());
                    }
                }
            }
        }
    };
    let writing = async {
        while let Some(first) = queued_frames.recv().await {
            let mut batch = vec![first];
            while let Ok(more) = queued_frames.try_recv() {
                batch.push(more);
            }
            let write_batch = async {
                let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|frame| IoSlice::new(frame.bytes())).collect();
                let mut unwritten = &mut slices[..];
                while !unwritten.is_empty() {
                    match writer.write_vectored(unwritten).await? {
                        0 => return Err(std::io::ErrorKind::WriteZero.into()),
                        written => IoSlice::advance_slices(&mut unwritten, written),
                    }
                }
                writer.flush().await
            };
            match tokio::time::timeout(WRITE_DEADLINE, write_batch).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Some(error.to_string()),
                Err(_) => return Some("the peer does not read".to_owned()),
            }
        }
        // The active node closed the connection (or the link closed): shut it.
        match tokio::time::timeout(WRITE_DEADLINE, writer.shutdown()).await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some("the peer does not read".to_owned()),
        }
    };
    let ended = tokio::select! {
        ended = reading => ended,
        ended = writing => ended,
        Ok(()) = &mut stopped => Some("it did not read what it was sent".to_owned()),
    };
    link.streams().remove(&id);
    // Whichever side ended it, the active node lets it go (a close of one it closed is ignored).
    let _ = link.outgoing.send(node_frame(id, node_frame::Body::Close(NodeClose {}))).await;
    ended
}

/// Keeps a link to the cluster's active node up: dials `nodes` in turn, from the one that
/// answered last, until one takes the link; serves it until it closes, then dials again.
async fn keep_link(
    app: String,
    nodes: Vec<SocketAddr>,
    own: CertificateDer<'static>,
    connector: TlsConnector,
    current: watch::Sender<Option<Arc<FrontLink>>>,
) {
    let queued = Arc::new(AtomicUsize::new(0));
    let mut backoff = DIAL_BACKOFF_FIRST;
    let mut last_good = 0;
    let mut said_waiting = false;
    loop {
        let count = nodes.len();
        for index in (last_good..count).chain(0..last_good) {
            let address = nodes[index];
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, node_handshake(&app, address, &own, &connector)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%address, %error, "no active node there");
                    continue;
                }
                Err(_) => {
                    tracing::debug!(%address, "the node did not answer in time");
                    continue;
                }
            };
            last_good = index;
            backoff = DIAL_BACKOFF_FIRST;
            said_waiting = false;
            tracing::info!(app = %app, node = %address, "front node: carrying connections to the active node");
            let ended = run_link(tls, address, &current, &queued).await;
            match ended {
                Ok(()) => tracing::info!(app = %app, node = %address, "front node: the link to the active node closed; dialing again"),
                Err(error) => tracing::warn!(app = %app, node = %address, %error, "front node: the link to the active node broke; dialing again"),
            }
            break;
        }
        if !said_waiting {
            tracing::info!(app = %app, "front node: no active node answers yet; trying again (said once until one does)");
            said_waiting = true;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(DIAL_BACKOFF_MAX);
    }
}

/// A TLS link to the node at `address`, whose certificate must be the app's own (`own`).
async fn node_handshake(
    app: &str,
    address: SocketAddr,
    own: &CertificateDer<'static>,
    connector: &TlsConnector,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let stream = TcpStream::connect(address).await?;
    let _ = stream.set_nodelay(true);
    keep_link_alive(&stream, address);
    let name = ServerName::try_from(app.to_owned()).map_err(std::io::Error::other)?;
    let tls = connector.connect(name, stream).await?;
    match tls.get_ref().1.peer_certificates().and_then(|chain| chain.first()) {
        Some(presented) if presented == own => Ok(tls),
        _ => Err(std::io::Error::other("its certificate is not this app's own")),
    }
}

/// Serves one link to the active node until it closes: what the active node sends goes to the
/// connections it is for. Every connection it carried is closed when it ends.
async fn run_link(
    tls: tokio_rustls::client::TlsStream<TcpStream>,
    node: SocketAddr,
    current: &watch::Sender<Option<Arc<FrontLink>>>,
    queued: &Arc<AtomicUsize>,
) -> Result<(), NodeLinkError> {
    let (mut reader, writer) = tokio::io::split(tls);
    let (outgoing, queue) = mpsc::channel(LINK_QUEUE);
    let mut writing = tokio::spawn(write_node_frames(writer, queue));
    let link = Arc::new(FrontLink { node, outgoing, streams: Mutex::new(HashMap::new()), next_stream: AtomicU64::new(1), queued: queued.clone() });
    current.send_replace(Some(link.clone()));
    let read = async {
        let mut decoder = FrameDecoder::default();
        let mut buffer = vec![0u8; CARRIED_CHUNK];
        while let Some(frame) = read_node_frame(&mut reader, &mut decoder, &mut buffer).await? {
            match frame.body {
                Some(node_frame::Body::Data(data)) => link.deliver(frame.stream, data),
                // The active node let the connection go: its writer writes what is queued, then
                // shuts it.
                Some(node_frame::Body::Close(NodeClose {})) => drop(link.streams().remove(&frame.stream)),
                Some(node_frame::Body::Open(_)) => return Err(NodeLinkError::Protocol("an open from the active node")),
                None => return Err(NodeLinkError::Protocol("a frame with no body")),
            }
        }
        Ok(())
    };
    let ended = tokio::select! {
        ended = read => ended,
        written = &mut writing => match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(NodeLinkError::Io(error)),
            Err(_) => Ok(()),
        },
    };
    current.send_replace(None);
    link.close_all();
    writing.abort();
    ended
}
