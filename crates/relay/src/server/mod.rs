//! The tokio driver: real sockets around the sans-IO core. One task owns the core; a thread
//! commits batches to the store, one at a time (whatever arrives meanwhile forms the next batch);
//! every connection has a reader and a writer task. Device connections are TLS (the relay's
//! certificate; devices authenticate inside; the core hears each one's source address, for its
//! rate limits); links between relays are mutually authenticated TLS. A relay may also serve
//! front nodes ([`RelayHandle::accept_fronts`]), whose connections it serves as its own; a front
//! node ([`front`]) runs no core.

mod carried;
mod connection;
pub mod front;
pub mod tls;

pub use carried::{CARRIED_CHUNK, MAX_CARRIED_CONNECTIONS};
pub use front::{FrontHandle, start_front};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use switchboard_wire::Message;
use switchboard_wire::frame::encode_frame;
use switchboard_wire::switchboard::{ErrorCode, Failure, ServerFrame, server_frame};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::core::{Action, ConnId, Metrics, RateLimits, RelayCore};
use crate::state::{Mutation, StoredState};
use crate::storage::{Contents, Store};
use tls::{TlsIdentity, certificate_der};

/// Frames a connection may have waiting to be written before it counts as too slow and is closed:
/// room for a device's delivery window or a link's forwarding window, and for the answers to
/// 16,384 requests besides. In bytes, [`CONNECTION_QUEUE_BYTES`] bounds it.
pub const WRITE_QUEUE: usize = crate::core::DELIVERY_WINDOW + crate::core::FORWARD_WINDOW + 16 * 1024;
/// How long a connection's peer may take to read what was written to it before it is dropped.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(30);
/// How long a connection the relay closed may take to be written what was queued for it (a last
/// refusal, say) before it is dropped with the rest.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// A closed connection with more than this queued is not given [`CLOSE_GRACE`].
pub const CLOSE_DRAIN_BYTES: usize = 64 * 1024;
/// Bytes queued for devices on all connections together: whatever connections that do not read
/// hold, and whatever else they asked for (blobs, say), this bounds them all.
pub const QUEUED_BYTES_BUDGET: usize = 256 * 1024 * 1024;
/// Bytes queued for one connection, a device's or another relay's: a delivery window (the larger
/// of the two windows) and a little more (answers, blobs). A connection past it is not reading
/// and is closed.
pub const CONNECTION_QUEUE_BYTES: usize = crate::core::DELIVERY_WINDOW_BYTES + 16 * 1024 * 1024;

/// Another app's relay.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Its app's name (what its certificate carries).
    pub app: String,
    /// Where its federation listener is: one address per node of a relay of several (one
    /// active, the others standbys or front nodes, any order). Dialled in turn, from the one that answered
    /// last, until a link comes up; 1 to [`MAX_PEER_ADDRESSES`](crate::config::MAX_PEER_ADDRESSES),
    /// each once ([`start`] refuses others: [`StartError::PeerAddresses`]).
    pub addresses: Vec<SocketAddr>,
    /// Its certificate (PEM): the only one accepted as that app.
    pub certificate: String,
}

/// Everything a relay needs to run.
#[derive(Clone, Debug)]
pub struct RelaySettings {
    /// The app this relay serves.
    pub app: String,
    /// Its certificate and key, and the federation's CA.
    pub tls: TlsIdentity,
    /// The other apps' relays it links to.
    pub peers: Vec<Peer>,
    /// Seed for the credentials and blob ids the relay issues; `None` (any deployment) takes
    /// them from the operating system, a seed makes a test repeatable.
    pub seed: Option<u64>,
    /// When set, every frame the relay reads or writes is copied here: what the relay saw, for a
    /// demo or test to search for plaintext.
    pub tap: Option<Tap>,
    /// Limits on registrations and bundle fetches (see [`RateLimits`]).
    pub rate_limits: RateLimits,
}

/// A copy of every frame a relay handled.
pub type Tap = Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

/// What happened, for the core task.
enum Event {
    ClientOpened(ConnId, Option<std::net::IpAddr>, connection::Handles),
    ClientFrame(ConnId, Vec<u8>),
    ClientOversized(ConnId),
    ClientClosed(ConnId),
    LinkOpened(ConnId, String, bool, connection::Handles),
    LinkFrame(ConnId, Vec<u8>),
    LinkClosed(ConnId),
    Committed(u64),
    StoreFailed(String),
    Metrics(oneshot::Sender<(Metrics, StoredState)>),
}

/// Why a relay could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Its TLS material cannot be used.
    #[error("the relay's TLS material")]
    Tls(#[from] tls::TlsError),
    /// A listener it was given has no local address.
    #[error("a listener's address")]
    Listener(#[source] std::io::Error),
    /// The cluster's node addresses given to a front node cannot be dialled as given: none, more
    /// than [`MAX_PEER_ADDRESSES`](crate::config::MAX_PEER_ADDRESSES), or one twice.
    #[error("the cluster's node addresses")]
    NodeAddresses(#[source] crate::config::PeerAddressError),
    /// A peer's addresses cannot be dialled as given: none, more than
    /// [`MAX_PEER_ADDRESSES`](crate::config::MAX_PEER_ADDRESSES), or one twice.
    #[error("the addresses given for {app}'s relay")]
    PeerAddresses {
        /// The peer's app.
        app: String,
        /// What is wrong with them.
        #[source]
        source: crate::config::PeerAddressError,
    },
}

/// A running relay.
pub struct RelayHandle {
    /// The app it serves.
    pub app: String,
    /// Where devices connect (TLS).
    pub client_address: SocketAddr,
    /// Where other relays connect (mutual TLS).
    pub federation_address: SocketAddr,
    events: mpsc::Sender<Event>,
    tasks: JoinSet<()>,
    /// Set, with why, when the core stopped because its store failed.
    stopped: tokio::sync::watch::Receiver<Option<String>>,
    /// The node listener's TLS, and what serving front nodes' links takes
    /// ([`RelayHandle::accept_fronts`]).
    fronts: (TlsAcceptor, carried::Fronts),
}

impl RelayHandle {
    /// The relay's counters and the state it holds (what it would have on disk once committed).
    pub async fn inspect(&self) -> Option<(Metrics, StoredState)> {
        let (reply, answer) = oneshot::channel();
        self.events.send(Event::Metrics(reply)).await.ok()?;
        answer.await.ok()
    }

    /// Resolves when the relay has stopped serving because its store failed (a commit or a read
    /// failed: a lost database connection, say), with the error: it then takes and acknowledges
    /// nothing more, and whoever runs it should exit (so that a supervisor restarts it) rather
    /// than keep its ports. Also resolves, with "the relay's core task ended", if the core task
    /// ended any other way (a panic). Pending for as long as the relay runs.
    pub async fn stopped(&self) -> String {
        match self.stopped.clone().wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_default(),
            Err(_) => "the relay's core task ended".to_owned(),
        }
    }

    /// Serves front nodes on `listener` (the cluster's node address of this node): the nodes of
    /// this app waiting for the database's lock, which carry the connections they take to this
    /// one (see [`front`]). Only a link presenting the app's own certificate is served. Returns
    /// the listener's address.
    pub fn accept_fronts(&mut self, listener: TcpListener) -> Result<SocketAddr, StartError> {
        let address = listener.local_addr().map_err(StartError::Listener)?;
        let (acceptor, fronts) = &self.fronts;
        self.tasks.spawn(carried::accept_fronts(listener, acceptor.clone(), fronts.clone()));
        Ok(address)
    }

    /// Stops every task of the relay (its store is closed when the committer thread ends).
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}

/// Starts a relay on already bound listeners, with `store` holding `state` (and `contents`
/// reading back what `store` committed).
pub async fn start(
    settings: RelaySettings,
    client_listener: TcpListener,
    federation_listener: TcpListener,
    store: Box<dyn Store>,
    contents: Box<dyn Contents>,
    state: StoredState,
) -> Result<RelayHandle, StartError> {
    let acceptor = TlsAcceptor::from(tls::server_config(&settings.tls)?);
    let device_acceptor = TlsAcceptor::from(tls::device_server_config(&settings.tls)?);
    let connector = TlsConnector::from(tls::client_config(&settings.tls)?);
    let mut peer_certificates = HashMap::new();
    for peer in &settings.peers {
        crate::config::check_peer_addresses(&peer.addresses).map_err(|source| StartError::PeerAddresses { app: peer.app.clone(), source })?;
        peer_certificates.insert(certificate_der(&peer.certificate)?, peer.app.clone());
    }
    let peer_certificates = Arc::new(peer_certificates);
    let client_address = client_listener.local_addr().map_err(StartError::Listener)?;
    let federation_address = federation_listener.local_addr().map_err(StartError::Listener)?;

    let (events, receiver) = mpsc::channel(8192);
    let events_for_core = events.clone();
    let next_conn = Arc::new(AtomicU64::new(1));
    let rng = match settings.seed {
        Some(seed) => rand::SeedableRng::seed_from_u64(seed),
        None => rand::make_rng(),
    };
    let peers = settings.peers.iter().map(|p| p.app.clone());
    let core = RelayCore::new(&settings.app, peers, state, contents, rng).with_rate_limits(settings.rate_limits);
    let mut tasks = JoinSet::new();
    let (stop, stopped) = tokio::sync::watch::channel(None);
    tasks.spawn(async move {
        if let Some(why) = run_core(core, store, receiver, events_for_core).await {
            let _ = stop.send(Some(why));
        }
    });
    let tap = settings.tap.clone();
    let sink = Sink::Core { events: events.clone(), next_conn: next_conn.clone() };
    tasks.spawn(accept_clients(client_listener, device_acceptor, sink.clone(), tap.clone()));
    tasks.spawn(accept_links(federation_listener, acceptor.clone(), peer_certificates.clone(), sink, tap.clone()));
    for peer in settings.peers.clone() {
        let certificate = certificate_der(&peer.certificate)?;
        tasks.spawn(dial(peer, certificate, connector.clone(), events.clone(), next_conn.clone(), tap.clone()));
    }
    let fronts = carried::Fronts {
        own: Arc::new(certificate_der(&settings.tls.certificate)?),
        peers: Arc::new(settings.peers.iter().map(|peer| peer.app.clone()).collect()),
        events: events.clone(),
        next_conn,
        tap,
    };
    let fronts = (acceptor, fronts);
    Ok(RelayHandle { app: settings.app, client_address, federation_address, events, tasks, stopped, fronts })
}

/// The core task: events in, actions out, and one batch at a time to the committer. Returns
/// why when it stops because the store failed.
async fn run_core(mut core: RelayCore, store: Box<dyn Store>, mut events: mpsc::Receiver<Event>, sender: mpsc::Sender<Event>) -> Option<String> {
    let (batches, committer) = std::sync::mpsc::channel::<(u64, Vec<Mutation>)>();
    let committed = sender.clone();
    std::thread::spawn(move || {
        let mut store = store;
        while let Ok((id, mutations)) = committer.recv() {
            let event = match store.commit(&mutations) {
                Ok(()) => Event::Committed(id),
                Err(error) => Event::StoreFailed(error.chain()),
            };
            if committed.blocking_send(event).is_err() {
                return;
            }
        }
    });
    let mut writers = Writers { connections: HashMap::new(), queued: Arc::new(AtomicUsize::new(0)), closing: Vec::new() };
    // The core learns the time before the first frame (blobs are stored with it).
    let actions = core.tick(crate::unix_time());
    debug_assert!(actions.is_empty(), "nothing to retry before anything was sent");
    let mut retry = tokio::time::interval(crate::core::RETRY_INTERVAL);
    retry.reset();
    loop {
        let event = tokio::select! {
            event = events.recv() => match event {
                Some(event) => event,
                None => return None,
            },
            _ = retry.tick() => {
                let actions = core.tick(crate::unix_time());
                if let Err(error) = dispatch(&mut core, &mut writers, actions) {
                    return storage_failed(&core, &error);
                }
                continue;
            }
        };
        let actions = match event {
            Event::ClientOpened(conn, source, handles) => {
                writers.connections.insert(conn, (handles, true));
                core.client_connected(conn, source);
                Vec::new()
            }
            Event::ClientFrame(conn, bytes) => core.client_frame(conn, &bytes),
            Event::ClientOversized(conn) => {
                let failure = Failure { code: ErrorCode::TooLarge as i32, detail: "frame over the limit".into() };
                let frame = ServerFrame { request_id: 0, body: Some(server_frame::Body::Failure(failure)) };
                vec![Action::ToClient { conn, frame }, Action::Close { conn }]
            }
            Event::ClientClosed(conn) => {
                writers.connections.remove(&conn);
                core.client_closed(conn);
                Vec::new()
            }
            Event::LinkOpened(conn, app, dialed, handles) => {
                writers.connections.insert(conn, (handles, false));
                core.link_up(conn, &app, dialed)
            }
            Event::LinkFrame(conn, bytes) => core.link_frame(conn, &bytes),
            Event::LinkClosed(conn) => {
                writers.connections.remove(&conn);
                core.link_closed(conn)
            }
            Event::Committed(id) => core.committed(id),
            Event::StoreFailed(error) => return storage_failed(&core, &error),
            Event::Metrics(reply) => {
                let _ = reply.send((core.metrics(), core.state().clone()));
                Vec::new()
            }
        };
        if let Err(error) = dispatch(&mut core, &mut writers, actions) {
            return storage_failed(&core, &error);
        }
        if let Some(batch) = core.take_batch()
            && batches.send((batch.id, batch.mutations)).is_err()
        {
            return storage_failed(&core, "the committer thread ended");
        }
    }
}

fn storage_failed(core: &RelayCore, error: &str) -> Option<String> {
    tracing::error!(app = core.app(), "{error}; stopping: durability can no longer be promised");
    Some(error.to_owned())
}

/// The connections' writers, as the core task holds them: each with whether it is a device's.
struct Writers {
    connections: HashMap<ConnId, (connection::Handles, bool)>,
    /// Bytes queued for devices, on every connection together (see [`QUEUED_BYTES_BUDGET`]).
    queued: Arc<AtomicUsize>,
    /// The queued bytes of device connections closed and not yet freed.
    closing: Vec<Arc<AtomicUsize>>,
}

/// Carries out the core's actions on the connections. A connection whose queue would pass
/// [`CONNECTION_QUEUE_BYTES`] is not reading: it is closed. When what is queued for all devices
/// would pass [`QUEUED_BYTES_BUDGET`], the device connection with the most queued is closed
/// first (it reconnects and is handed its mail again), not the one that happened to come next.
///
/// An error is the core's word that its store cannot be read: the relay must stop.
fn dispatch(core: &mut RelayCore, writers: &mut Writers, actions: Vec<Action>) -> Result<(), String> {
    let mut queue: std::collections::VecDeque<Action> = actions.into();
    while let Some(action) = queue.pop_front() {
        let (conn, bytes) = match action {
            Action::ToClient { conn, frame } => (conn, encode_frame(&frame)),
            Action::ToLink { conn, frame } => (conn, encode_frame(&frame)),
            Action::Close { conn } => {
                queue.extend(close(core, writers, conn));
                continue;
            }
            Action::StorageFailed(error) => return Err(error),
        };
        let Some((handles, is_client)) = writers.connections.get(&conn) else { continue };
        let is_client = *is_client;
        if handles.queued.load(Ordering::Relaxed) + bytes.len() > CONNECTION_QUEUE_BYTES {
            tracing::info!(conn, is_client, "closing a connection that does not read what it is sent");
            queue.extend(close(core, writers, conn));
            continue;
        }
        // Only device connections count against the budget; one frame may close several.
        if is_client {
            loop {
                let (queued, closing) = writers.usage();
                let Some(excess) = (queued + bytes.len()).checked_sub(QUEUED_BYTES_BUDGET).filter(|excess| *excess > 0) else { break };
                // What closed connections still hold is about to be freed: if it covers the excess,
                // this frame's connection waits its turn (it reconnects); else the largest goes.
                let victim = if closing >= excess { Some(conn) } else { writers.largest_device_queue() };
                let Some(victim) = victim else { break };
                tracing::warn!(conn = victim, "the relay's write budget is spent; closing a device connection");
                queue.extend(close(core, writers, victim));
                if victim == conn {
                    break;
                }
            }
        }
        let Some((handles, _)) = writers.connections.get(&conn) else { continue };
        let frame = connection::Queued::new(bytes, &handles.queued, is_client.then_some(&writers.queued));
        if handles.queue.try_send(frame).is_err() {
            tracing::warn!(conn, "connection too slow or gone; closing it");
            queue.extend(close(core, writers, conn));
        }
    }
    Ok(())
}

impl Writers {
    /// Bytes queued for devices, and how many of them closed connections hold (freed at once,
    /// or within [`CLOSE_GRACE`]).
    fn usage(&mut self) -> (usize, usize) {
        self.closing.retain(|queued| queued.load(Ordering::Relaxed) > 0);
        let closing: usize = self.closing.iter().map(|queued| queued.load(Ordering::Relaxed)).sum();
        (self.queued.load(Ordering::Relaxed), closing)
    }

    /// The device connection with the most bytes queued.
    fn largest_device_queue(&self) -> Option<ConnId> {
        self.connections
            .iter()
            .filter(|(_, (_, is_client))| *is_client)
            .max_by_key(|(_, (handles, _))| handles.queued.load(Ordering::Relaxed))
            .map(|(conn, _)| *conn)
    }
}

/// Stops reading from `conn` and lets its writer drain and shut the socket for [`CLOSE_GRACE`]
/// (at once, if more than [`CLOSE_DRAIN_BYTES`] wait); then its writer stops and what it still
/// holds is freed. The core forgets the connection.
fn close(core: &mut RelayCore, writers: &mut Writers, conn: ConnId) -> Vec<Action> {
    let Some((handles, is_client)) = writers.connections.remove(&conn) else { return Vec::new() };
    handles.reader.abort();
    if is_client {
        writers.closing.push(handles.queued.clone());
    }
    let writer = handles.writer;
    if handles.queued.load(Ordering::Relaxed) > CLOSE_DRAIN_BYTES {
        // Not a last answer waiting but a queue the peer did not read: dropped now.
        writer.abort();
    } else {
        tokio::spawn(async move {
            tokio::time::sleep(CLOSE_GRACE).await;
            writer.abort();
        });
    }
    core.client_closed(conn);
    core.link_closed(conn)
}

/// How long a listener waits after `accept` fails (out of file descriptors, say) before trying
/// again, rather than spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The next connection on `listener`; `None` after a failed `accept`, once the backoff passed.
async fn accept(listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok(accepted) => Some(accepted),
        Err(error) => {
            tracing::warn!(%error, "accepting a connection failed; waiting before the next");
            tokio::time::sleep(ACCEPT_BACKOFF).await;
            None
        }
    }
}

/// How long a TLS handshake may take, on either listener.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a dialed link must stay up to count as up: under TLS 1.3 the dialing side finishes
/// its handshake before the other side has checked its certificate, and a refusal closes the
/// link just after.
const LINK_SETTLE: Duration = Duration::from_secs(1);
/// A refusal of one kind from one address is logged at most once in this time (with a count of
/// those not logged): a peer that retries every two seconds, or a flood, does not fill the log.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// Kinds of refusal by address remembered for [`REFUSAL_LOG_INTERVAL`], at most.
const REFUSALS_KEPT: usize = 4096;

/// The refusals logged lately, by source address and reason: when, and how many like it since.
#[derive(Default)]
struct Refusals {
    said: std::sync::Mutex<HashMap<(std::net::IpAddr, String), (std::time::Instant, u64)>>,
}

impl Refusals {
    /// Logs (at `warn` if `serious`, else at `info`) that a connection from `source` was refused
    /// for `reason` (`detail` says more), unless one like it was logged within
    /// [`REFUSAL_LOG_INTERVAL`].
    fn log(&self, what: &str, source: SocketAddr, reason: &str, detail: Option<&dyn std::fmt::Display>, serious: bool) {
        let now = std::time::Instant::now();
        let unlogged = {
            let mut said = self.said.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if said.len() >= REFUSALS_KEPT {
                said.retain(|_, (at, _)| now.duration_since(*at) < REFUSAL_LOG_INTERVAL);
                if said.len() >= REFUSALS_KEPT {
                    said.clear();
                }
            }
            match said.entry((source.ip(), reason.to_owned())) {
                std::collections::hash_map::Entry::Occupied(mut entry) => {
                    let (at, skipped) = entry.get_mut();
                    if now.duration_since(*at) < REFUSAL_LOG_INTERVAL {
                        *skipped += 1;
                        return;
                    }
                    let unlogged = *skipped;
                    *entry.get_mut() = (now, 0);
                    unlogged
                }
                std::collections::hash_map::Entry::Vacant(entry) => {
                    entry.insert((now, 0));
                    0
                }
            }
        };
        let more = match unlogged {
            0 => String::new(),
            n => format!(" ({n} more like it from this address since it was last said)"),
        };
        let detail = detail.map(|detail| detail.to_string()).unwrap_or_default();
        if serious {
            tracing::warn!(%source, error = %detail, "refused a {what} connection: {reason}{more}");
        } else {
            tracing::info!(%source, error = %detail, "refused a {what} connection: {reason}{more}");
        }
    }
}

/// Where the connections a listener takes are served.
#[derive(Clone)]
enum Sink {
    /// By this node's core.
    Core { events: mpsc::Sender<Event>, next_conn: Arc<AtomicU64> },
    /// By the active node, over this front node's link to it (none while it is down).
    Front(tokio::sync::watch::Receiver<Option<Arc<front::FrontLink>>>),
}

impl Sink {
    /// Serves `stream` (TLS ended) until it closes; why it ended, when something went wrong.
    async fn serve<S>(self, stream: S, kind: connection::Kind, tap: Option<Tap>) -> Option<String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        match self {
            Sink::Core { events, next_conn } => connection::serve(stream, next_conn.fetch_add(1, Ordering::Relaxed), events, kind, tap).await,
            Sink::Front(link) => front::carry(stream, kind, &link).await,
        }
    }
}

async fn accept_clients(listener: TcpListener, acceptor: TlsAcceptor, sink: Sink, tap: Option<Tap>) {
    let refusals = Arc::new(Refusals::default());
    loop {
        let Some((stream, source)) = accept(&listener).await else { continue };
        let (acceptor, sink, tap, refusals) = (acceptor.clone(), sink.clone(), tap.clone(), refusals.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            // A client that does not speak TLS (or not in time) is closed without an answer.
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => return refusals.log("device", source, handshake_failure(&error), Some(&error), false),
                Err(_) => return refusals.log("device", source, "no TLS handshake in time", None, false),
            };
            if let Some(error) = sink.serve(tls, connection::Kind::Client { source: source.ip() }, tap).await {
                tracing::debug!(%source, %error, "a device connection ended");
            }
        });
    }
}

async fn accept_links(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    peers: Arc<HashMap<CertificateDer<'static>, String>>,
    sink: Sink,
    tap: Option<Tap>,
) {
    let refusals = Arc::new(Refusals::default());
    loop {
        let Some((stream, source)) = accept(&listener).await else { continue };
        let (acceptor, peers, sink, tap, refusals) = (acceptor.clone(), peers.clone(), sink.clone(), tap.clone(), refusals.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            keep_link_alive(&stream, source);
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                // A relay whose certificate this federation's CA did not issue lands here.
                Ok(Err(error)) => return refusals.log("federation", source, handshake_failure(&error), Some(&error), true),
                Err(_) => return refusals.log("federation", source, "no TLS handshake in time", None, true),
            };
            let app = tls.get_ref().1.peer_certificates().and_then(|chain| chain.first()).and_then(|cert| peers.get(cert));
            let Some(app) = app.cloned() else {
                let reason = "its certificate is none of the peers' configured here";
                return refusals.log("federation", source, reason, None, true);
            };
            tracing::info!(%source, peer = %app, "a link from {app}'s relay is up");
            let ended_with = sink.serve(tls, connection::Kind::Link { app: app.clone(), dialed: false }, tap).await;
            tracing::info!(%source, peer = %app, "the link from {app}'s relay closed: {}", ended(ended_with));
        });
    }
}

/// What a failed TLS handshake means, in words: which side refused which certificate.
fn handshake_failure(error: &std::io::Error) -> &'static str {
    match error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(_)) => {
            "TLS handshake failed: the other side's certificate was not issued by this federation's CA for its app (another federation's, or one written by a second `switchboard setup`?)"
        }
        Some(rustls::Error::NoCertificatesPresented) => "TLS handshake failed: the other side presented no certificate",
        Some(rustls::Error::AlertReceived(_)) => "TLS handshake failed: the other side refused it (this relay's certificate, say)",
        _ if error.kind() == std::io::ErrorKind::UnexpectedEof => "TLS handshake failed: the other side closed the connection",
        _ => "TLS handshake failed (does the other side speak TLS?)",
    }
}

/// Why a connection ended, as the log says it.
fn ended(error: Option<String>) -> String {
    match error {
        Some(error) if error.contains("close_notify") => "the other side went away".to_owned(),
        Some(error) => error,
        None => "closed".to_owned(),
    }
}

/// TCP keepalive on federation links (dialled and accepted): the first probe after this much
/// silence, then every [`LINK_KEEPALIVE_INTERVAL`], [`LINK_KEEPALIVE_RETRIES`] of them. Without
/// it (nothing set `SO_KEEPALIVE` before), a link to a node whose machine vanished (no reset
/// sent) stays half open: no probe is ever sent, so its reader waits indefinitely, and mail
/// written to the peer goes nowhere until the kernel gives up on it after about 15 minutes of
/// retransmissions (the link's reads and writes then fail).
const LINK_KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
/// See [`LINK_KEEPALIVE_IDLE`].
const LINK_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// See [`LINK_KEEPALIVE_IDLE`].
const LINK_KEEPALIVE_RETRIES: u32 = 3;
/// How long data sent on a federation link may go unacknowledged by the other machine before
/// the kernel drops the link (`TCP_USER_TIMEOUT`, Linux; on Linux it also bounds the keepalive
/// probes): otherwise about 15 minutes of retransmissions. A link dropped this way is dialled
/// again, from the peer's next address once the dead one fails.
const LINK_USER_TIMEOUT: Duration = Duration::from_secs(20);

/// Sets TCP keepalive ([`LINK_KEEPALIVE_IDLE`]) and, on Linux, [`LINK_USER_TIMEOUT`] on a
/// federation link's socket, so that a link whose other machine vanished is dropped (and
/// dialled again). An idle one after about 20 s of silence on Linux (probes at 10 s and 15 s,
/// then [`LINK_USER_TIMEOUT`]), 25 s elsewhere (10 + 3 × 5). While data sent on it is
/// unacknowledged no keepalive probe is sent: on Linux [`LINK_USER_TIMEOUT`] drops it 20 s after
/// the first unacknowledged write (up to about 40 s in all); elsewhere only the retransmission
/// timeout does (minutes).
fn keep_alive(stream: &TcpStream) -> std::io::Result<()> {
    let socket = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new().with_time(LINK_KEEPALIVE_IDLE);
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "macos", target_os = "freebsd", target_os = "windows"))]
    let keepalive = keepalive.with_interval(LINK_KEEPALIVE_INTERVAL).with_retries(LINK_KEEPALIVE_RETRIES);
    socket.set_tcp_keepalive(&keepalive)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket.set_tcp_user_timeout(Some(LINK_USER_TIMEOUT))?;
    Ok(())
}

/// [`keep_alive`], or a debug line saying why not: a link without it still works.
fn keep_link_alive(stream: &TcpStream, peer: SocketAddr) {
    if let Err(error) = keep_alive(stream) {
        tracing::debug!(%peer, %error, "could not set TCP keepalive on a federation link");
    }
}

/// How long the link task waits after its first failed round of dialing a peer...
const DIAL_BACKOFF_FIRST: Duration = Duration::from_millis(50);
/// ...and at most, the wait doubling after each failed round.
const DIAL_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Why dialing a peer failed, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
enum DialFailure {
    /// Nothing listens there (yet): the peer's relay is not running.
    Unreachable(String),
    /// The peer's TLS or certificate is not the one expected, or it refused this relay's.
    Refused(String),
    /// No answer in time.
    TimedOut,
}

impl DialFailure {
    /// How much it says, of the failures of a round over a peer's addresses, the one logged
    /// being the one that says most: a refusal (of the peer's certificate, or this relay's) is
    /// a setup to fix; no answer in time, a node hung; nothing listening, a standby or a node
    /// down, which a relay of several nodes always has.
    fn weight(&self) -> u8 {
        match self {
            DialFailure::Unreachable(_) => 0,
            DialFailure::TimedOut => 1,
            DialFailure::Refused(_) => 2,
        }
    }

    /// Logs it (the failure at `address`), once for as long as the same failure at the same
    /// address repeats.
    fn log(self, peer: &Peer, address: SocketAddr, last: &mut Option<(SocketAddr, DialFailure)>) {
        if last.as_ref().is_some_and(|(at, failure)| *at == address && *failure == self) {
            return;
        }
        let app = &peer.app;
        match &self {
            DialFailure::Unreachable(error) => {
                tracing::info!(peer = %app, %address, %error, "cannot reach {app}'s relay; trying again (said once until it changes)")
            }
            DialFailure::Refused(error) => {
                tracing::warn!(peer = %app, %address, "no link to {app}'s relay: {error}; trying again (said once until it changes)")
            }
            DialFailure::TimedOut => tracing::warn!(peer = %app, %address, "{app}'s relay did not answer in time; trying again"),
        }
        *last = Some((address, self));
    }
}

/// Keeps a link to `peer` up, reconnecting with backoff. Each round dials the peer's addresses in
/// turn, from the one that answered last (the active node of a relay of several, as long as it
/// lives), until a link comes up; a round in which none did is followed by a pause, from
/// [`DIAL_BACKOFF_FIRST`] doubling to [`DIAL_BACKOFF_MAX`], and a link that was up and closed by
/// [`DIAL_BACKOFF_FIRST`] (the doubling starting over). Says when the link comes up and goes
/// down, and why dialing fails (of a round's failures the one that says most, once, until it
/// changes).
async fn dial(
    peer: Peer,
    certificate: CertificateDer<'static>,
    connector: TlsConnector,
    events: mpsc::Sender<Event>,
    next_conn: Arc<AtomicU64>,
    tap: Option<Tap>,
) {
    let mut backoff = DIAL_BACKOFF_FIRST;
    let mut last_failure = None;
    let mut last_good = 0;
    let count = peer.addresses.len();
    loop {
        let mut said: Option<(SocketAddr, DialFailure)> = None;
        for index in (last_good..count).chain(0..last_good) {
            let address = peer.addresses[index];
            let failure = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&peer.app, address, &certificate, &connector)).await {
                Ok(Ok(tls)) => match link(&peer, address, tls, &events, &next_conn, &tap).await {
                    // It was up and has closed: a new round, from this address.
                    None => {
                        last_good = index;
                        backoff = DIAL_BACKOFF_FIRST;
                        last_failure = None;
                        said = None;
                        break;
                    }
                    Some(failure) => failure,
                },
                Ok(Err(failure)) => failure,
                Err(_) => DialFailure::TimedOut,
            };
            if said.as_ref().is_none_or(|(_, kept)| failure.weight() >= kept.weight()) {
                said = Some((address, failure));
            }
        }
        if let Some((address, failure)) = said {
            failure.log(&peer, address, &mut last_failure);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(DIAL_BACKOFF_MAX);
    }
}

/// A TLS session with the node at `address` of `app`'s relay (another app's, or this app's own
/// for a front node), its certificate the one expected, `certificate`.
async fn handshake(
    app: &str,
    address: SocketAddr,
    certificate: &CertificateDer<'static>,
    connector: &TlsConnector,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, DialFailure> {
    let stream = TcpStream::connect(address).await.map_err(|e| DialFailure::Unreachable(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    keep_link_alive(&stream, address);
    let name = ServerName::try_from(app.to_owned()).map_err(|e| DialFailure::Refused(e.to_string()))?;
    let tls = connector.connect(name, stream).await.map_err(|e| DialFailure::Refused(format!("{}: {e}", handshake_failure(&e))))?;
    let presented = tls.get_ref().1.peer_certificates().and_then(|chain| chain.first()).cloned();
    match presented {
        Some(presented) if presented == *certificate => Ok(tls),
        _ => Err(DialFailure::Refused("its certificate is not the one configured for it".into())),
    }
}

/// Serves the link a handshake with `peer`'s node at `address` opened, until it closes: `None`
/// then; or the failure, when it closed within [`LINK_SETTLE`] (the other side refused this
/// relay's certificate, most likely, or its node stopped).
async fn link(
    peer: &Peer,
    address: SocketAddr,
    tls: tokio_rustls::client::TlsStream<TcpStream>,
    events: &mpsc::Sender<Event>,
    next_conn: &AtomicU64,
    tap: &Option<Tap>,
) -> Option<DialFailure> {
    let conn = next_conn.fetch_add(1, Ordering::Relaxed);
    let kind = connection::Kind::Link { app: peer.app.clone(), dialed: true };
    let served = connection::serve(tls, conn, events.clone(), kind, tap.clone());
    tokio::pin!(served);
    tokio::select! {
        ended_with = &mut served => {
            let why = ended(ended_with);
            return Some(DialFailure::Refused(format!(
                "the link closed at once ({why}): the other side may not accept this relay's certificate, or its node stopped"
            )));
        }
        () = tokio::time::sleep(LINK_SETTLE) => {}
    }
    tracing::info!(peer = %peer.app, %address, "the link to {}'s relay is up", peer.app);
    let why = ended(served.await);
    tracing::info!(peer = %peer.app, %address, "the link to {}'s relay closed: {why}; dialing again", peer.app);
    None
}

/// Encodes `message` as one frame (for callers building their own connections).
pub fn frame(message: &impl Message) -> Vec<u8> {
    encode_frame(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_federation_socket_gets_keepalive_and_a_user_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dialled = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        for stream in [&dialled, &accepted] {
            keep_alive(stream).unwrap();
            let socket = socket2::SockRef::from(stream);
            assert!(socket.keepalive().unwrap());
            #[cfg(any(target_os = "linux", target_os = "android"))]
            {
                assert_eq!(socket.tcp_keepalive_time().unwrap(), LINK_KEEPALIVE_IDLE);
                assert_eq!(socket.tcp_keepalive_interval().unwrap(), LINK_KEEPALIVE_INTERVAL);
                assert_eq!(socket.tcp_keepalive_retries().unwrap(), LINK_KEEPALIVE_RETRIES);
                assert_eq!(socket.tcp_user_timeout().unwrap(), Some(LINK_USER_TIMEOUT));
            }
        }
    }
}
