//! A front node: a node of an app's relay that does not hold the database's lock, and serves
//! anyway. It listens where the active node would (devices, other apps' relays), ends their TLS
//! as the active node would (the app's certificate; other apps' certificates checked the same
//! way), and carries each connection's bytes to the active node over one link, which serves them
//! as its own ([`RelayHandle::accept_fronts`](super::RelayHandle::accept_fronts) is that end).
//! So every node of a cluster takes connections, while one writes: a device may connect to any
//! node, and its mail reaches it wherever it was sent from.
//!
//! The active node is found by dialing the cluster's node addresses in turn, from the one that
//! answered last; only the active node listens on its node address. While no link is up, a
//! connection is closed once its TLS is up (the device dials its next address). When the link
//! closes (the active node died, say), every connection it carried is closed: the devices
//! reconnect, and are served again once a link to the new active node is up (maybe this node's
//! own core, once it holds the lock). Nothing is acknowledged here: what a device sent is
//! acknowledged by the active node once it is committed, so a closed link loses nothing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use switchboard_wire::frame::FrameDecoder;
use switchboard_wire::switchboard::{NodeClose, NodeOpen, node_frame, node_open};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::carried::{CARRIED_CHUNK, LINK_QUEUE, MAX_CARRIED_CONNECTIONS, NodeLinkError, node_frame, read_node_frame, source_bytes, write_node_frames};
use super::connection::{Kind, Queued, write_queue};
use super::tls::{self, certificate_der};
use super::{
    CONNECTION_QUEUE_BYTES, HANDSHAKE_TIMEOUT, LINK_SETTLE, QUEUED_BYTES_BUDGET, RelaySettings, Sink, StartError, WRITE_QUEUE,
    accept_clients, accept_links, handshake,
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
    link: Arc<watch::Sender<Option<Arc<FrontLink>>>>,
    tasks: JoinSet<()>,
}

impl FrontHandle {
    /// The node address of the active node it carries connections to, while its link is up.
    pub fn active_node(&self) -> Option<SocketAddr> {
        self.link.borrow().as_ref().map(|link| link.node)
    }

    /// Resolves once a link to an active node is up.
    pub async fn linked(&self) {
        let _ = self.link.subscribe().wait_for(Option::is_some).await;
    }

    /// Stops the front node: its listeners and its link; every connection it carries is closed,
    /// and one still in its TLS handshake finds no link when it is done.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
        if let Some(link) = self.link.send_replace(None) {
            link.close();
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
    let current = Arc::new(current);
    let mut tasks = JoinSet::new();
    tasks.spawn(keep_link(settings.app.clone(), nodes, own, connector, current.clone()));
    tasks.spawn(accept_clients(client_listener, device_acceptor, Sink::Front(link.clone()), None));
    tasks.spawn(accept_links(federation_listener, acceptor, Arc::new(peer_certificates), Sink::Front(link), None));
    Ok(FrontHandle { app: settings.app, client_address, federation_address, link: current, tasks })
}

/// A front node's link to the active node, as its connections use it.
pub(super) struct FrontLink {
    /// The active node's node address.
    node: SocketAddr,
    /// Encoded frames for the active node.
    outgoing: mpsc::Sender<Vec<u8>>,
    /// The task writing them.
    writer: AbortHandle,
    /// The connections it carries.
    streams: Mutex<Streams>,
    next_stream: AtomicU64,
    /// Bytes queued for devices on every connection it carries...
    queued: Arc<AtomicUsize>,
    /// ...and at most ([`QUEUED_BYTES_BUDGET`]).
    budget: usize,
}

/// The connections a link carries, by stream; none once it is closed.
#[derive(Default)]
struct Streams {
    open: HashMap<u64, Stream>,
    /// The queued bytes of device connections stopped and not yet freed.
    closing: Vec<Arc<AtomicUsize>>,
    closed: bool,
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
    fn streams(&self) -> std::sync::MutexGuard<'_, Streams> {
        self.streams.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Closes the link: it takes no more connections and stops writing; each connection it
    /// carried is shut once what was queued for it is written (or at once, if its device sends
    /// anything meanwhile).
    fn close(&self) {
        let mut streams = self.streams();
        streams.closed = true;
        streams.open.clear();
        self.writer.abort();
    }

    /// Queues `data` from the active node for `stream`'s connection. A connection that would
    /// pass [`CONNECTION_QUEUE_BYTES`] is not reading: it is stopped. When what is queued for all
    /// devices would pass [`QUEUED_BYTES_BUDGET`], the device connection with the most queued is
    /// stopped first (maybe this one), as the active node does with its own.
    fn deliver(&self, stream: u64, data: Vec<u8>) {
        let mut streams = self.streams();
        // Closed here a moment ago: the active node hears of it.
        let Some(carried) = streams.open.get(&stream) else { return };
        let is_device = carried.is_device;
        let mut over = carried.queued.load(Ordering::Relaxed) + data.len() > CONNECTION_QUEUE_BYTES;
        // What stopped connections hold is freed as their writers stop, in a moment: counted
        // as freed already.
        streams.closing.retain(|queued| queued.load(Ordering::Relaxed) > 0);
        let mut freeing: usize = streams.closing.iter().map(|queued| queued.load(Ordering::Relaxed)).sum();
        while !over && is_device && self.queued.load(Ordering::Relaxed).saturating_sub(freeing) + data.len() > self.budget {
            let largest = streams.open.iter().filter(|(_, s)| s.is_device).max_by_key(|(_, s)| s.queued.load(Ordering::Relaxed));
            match largest.map(|(id, s)| (*id, s.queued.load(Ordering::Relaxed))) {
                Some((largest, held)) if largest != stream && held > 0 => {
                    tracing::warn!(stream = largest, "the front node's write budget is spent; closing a carried device connection");
                    stop(&mut streams, largest);
                    freeing += held;
                }
                // This connection holds the most: it goes.
                _ => over = true,
            }
        }
        let Some(carried) = streams.open.get(&stream).filter(|_| !over) else {
            tracing::info!(stream, "closing a carried connection that does not read what it is sent");
            return stop(&mut streams, stream);
        };
        let frame = Queued::new(data, &carried.queued, is_device.then_some(&self.queued));
        if carried.queue.try_send(frame).is_err() {
            tracing::info!(stream, "closing a carried connection that does not read what it is sent");
            stop(&mut streams, stream);
        }
    }
}

/// Stops `stream`'s connection at once, dropping what is queued for it.
fn stop(streams: &mut Streams, stream: u64) {
    if let Some(carried) = streams.open.remove(&stream) {
        // What it held is freed when its writer stops, at once (the queue is dropped with it).
        let _ = carried.stop.send(());
        if carried.is_device {
            streams.closing.push(carried.queued);
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
    {
        let mut streams = link.streams();
        if streams.closed {
            return Some("the link to the active node closed".to_owned());
        }
        if streams.open.len() >= MAX_CARRIED_CONNECTIONS {
            return Some(format!("{MAX_CARRIED_CONNECTIONS} connections are carried already"));
        }
        streams.open.insert(id, Stream { queue, queued, is_device, stop });
    }
    if link.outgoing.send(node_frame(id, node_frame::Body::Open(NodeOpen { kind: Some(open) }))).await.is_err() {
        link.streams().open.remove(&id);
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
    // Until the active node closes the connection (or the link closes): then it is shut.
    let writing = async { write_queue(&mut writer, &mut queued_frames, |_| {}).await.err().map(|error| error.to_string()) };
    let ended = tokio::select! {
        ended = reading => ended,
        ended = writing => ended,
        Ok(()) = &mut stopped => Some("it did not read what it was sent".to_owned()),
    };
    link.streams().open.remove(&id);
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
    current: Arc<watch::Sender<Option<Arc<FrontLink>>>>,
) {
    let queued = Arc::new(AtomicUsize::new(0));
    let mut backoff = DIAL_BACKOFF_FIRST;
    let mut last_good = 0;
    let mut said_waiting = false;
    loop {
        let count = nodes.len();
        for index in (last_good..count).chain(0..last_good) {
            let address = nodes[index];
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&app, address, &own, &connector)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%address, ?error, "no active node there");
                    continue;
                }
                Err(_) => {
                    tracing::debug!(%address, "the node did not answer in time");
                    continue;
                }
            };
            last_good = index;
            said_waiting = false;
            tracing::info!(app = %app, node = %address, "front node: carrying connections to the active node");
            let up = std::time::Instant::now();
            let ended = run_link(tls, address, &current, &queued).await;
            // A link that closes at once (a node refusing it, say) is dialled again after the
            // backoff, not at once.
            if up.elapsed() >= LINK_SETTLE {
                backoff = DIAL_BACKOFF_FIRST;
            }
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
    let link = Arc::new(FrontLink {
        node,
        outgoing,
        writer: writing.abort_handle(),
        streams: Mutex::new(Streams::default()),
        next_stream: AtomicU64::new(1),
        queued: queued.clone(),
        budget: QUEUED_BYTES_BUDGET,
    });
    current.send_replace(Some(link.clone()));
    let read = async {
        let mut decoder = FrameDecoder::default();
        let mut buffer = vec![0u8; CARRIED_CHUNK];
        while let Some(frame) = read_node_frame(&mut reader, &mut decoder, &mut buffer).await? {
            match frame.body {
                Some(node_frame::Body::Data(data)) => link.deliver(frame.stream, data),
                // The active node let the connection go: its writer writes what is queued, then
                // shuts it.
                Some(node_frame::Body::Close(NodeClose {})) => drop(link.streams().open.remove(&frame.stream)),
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
    link.close();
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link to no node, with a write budget of `budget` bytes, and what it writes.
    fn link(budget: usize) -> (Arc<FrontLink>, mpsc::Receiver<Vec<u8>>) {
        let (outgoing, written) = mpsc::channel(16);
        let writer = tokio::spawn(std::future::pending::<()>()).abort_handle();
        let node = SocketAddr::from(([127, 0, 0, 1], 1));
        let link = FrontLink { node, outgoing, writer, streams: Mutex::default(), next_stream: AtomicU64::new(1), queued: Arc::default(), budget };
        (Arc::new(link), written)
    }

    /// A device's stream on `link`: its queue, and word of its being stopped.
    fn device(link: &FrontLink, stream: u64) -> (mpsc::Receiver<Queued>, oneshot::Receiver<()>) {
        let (queue, queued_frames) = mpsc::channel(WRITE_QUEUE);
        let (stop, stopped) = oneshot::channel();
        link.streams().open.insert(stream, Stream { queue, queued: Arc::default(), is_device: true, stop });
        (queued_frames, stopped)
    }

    #[tokio::test]
    async fn when_the_write_budget_is_spent_the_device_with_most_queued_is_stopped() {
        let (link, _written) = link(1000);
        let (_first_frames, mut first_stopped) = device(&link, 1);
        let (mut second_frames, mut second_stopped) = device(&link, 2);
        link.deliver(1, vec![0; 600]);
        link.deliver(2, vec![0; 300]);
        // 1,200 bytes would be queued: the first device, holding 600, goes; the second is served.
        link.deliver(2, vec![0; 300]);
        assert_eq!(first_stopped.try_recv(), Ok(()));
        assert!(second_stopped.try_recv().is_err());
        assert!(!link.streams().open.contains_key(&1));
        assert_eq!(link.streams().open[&2].queued.load(Ordering::Relaxed), 600);
        for _ in 0..2 {
            drop(second_frames.try_recv().expect("a frame queued"));
        }
        // A third device comes while the first one's bytes are still being freed: they are
        // counted as freed, and no one else is stopped for them.
        let (_third_frames, mut third_stopped) = device(&link, 3);
        link.deliver(3, vec![0; 300]);
        assert!(second_stopped.try_recv().is_err() && third_stopped.try_recv().is_err());
        assert_eq!(link.streams().open[&3].queued.load(Ordering::Relaxed), 300);
        // The second device's frames were written (taken from its queue): the third holds the
        // most, and is stopped for its own next frame.
        link.deliver(3, vec![0; 900]);
        assert_eq!(third_stopped.try_recv(), Ok(()));
        assert!(second_stopped.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_closed_link_carries_no_more_connections() {
        let (link, mut written) = link(QUEUED_BYTES_BUDGET);
        link.close();
        let (_, current) = watch::channel(Some(link.clone()));
        let (device, _other_end) = tokio::io::duplex(64);
        let ended = carry(device, Kind::Client { source: [127, 0, 0, 1].into() }, &current).await;
        assert!(ended.is_some_and(|why| why.contains("closed")));
        assert!(link.streams().open.is_empty());
        assert!(written.try_recv().is_err(), "an open was sent on a closed link");
    }
}
