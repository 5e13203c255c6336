//! The active node's end of its front nodes' links. A front node (a node of the same app waiting
//! for the database's lock: see [`front`](super::front)) ends the TLS of the devices and other
//! apps' relays that connect to it and carries each connection's bytes here over one mutually
//! authenticated TLS link, as [`NodeFrame`]s. Each carried connection is served by
//! [`connection::serve_halves`] as a socket accepted here would be (its input a channel the
//! link's reader fills, its output an in-memory pipe): the core cannot tell them apart. Its write queue and the relay's budget bound what waits here to go
//! into the pipe; what the front node holds for the device, the front node bounds the same way
//! ([`front`](super::front)).
//!
//! Only the app's own certificate is accepted on the node listener. A front node holds the app's
//! key, as the active node does, and is trusted as the active node's own listeners are: the
//! address it says a device connected from (which the per-address limits count), and the app it
//! says a link's certificate proved, are believed (an app that is not one of this relay's peers is
//! refused all the same).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use rustls::pki_types::CertificateDer;
use switchboard_wire::decode;
use switchboard_wire::frame::{FrameDecoder, MAX_FRAME_LEN, encode_frame};
use switchboard_wire::switchboard::{NodeClose, NodeFrame, NodeOpen, node_frame, node_open};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::{Event, HANDSHAKE_TIMEOUT, Refusals, Tap, WRITE_DEADLINE, accept, connection, keep_link_alive};

/// Connections one front node's link may carry at once: a front node takes no more, and the
/// active node refuses (closes) an open past it.
pub const MAX_CARRIED_CONNECTIONS: usize = 16_384;
/// Bytes of a carried connection's data in one [`NodeFrame`], at most: a read's worth.
pub const CARRIED_CHUNK: usize = 64 * 1024;
/// Bytes the in-memory pipe from the relay to a carried connection holds before the relay's
/// writer waits.
const PIPE_BYTES: usize = 2 * CARRIED_CHUNK;
/// Chunks of a carried connection's data (each at most [`CARRIED_CHUNK`]) waiting for the relay
/// to read them, before the link's reader waits.
const INCOMING_CHUNKS: usize = 4;
/// Encoded frames waiting to be written on a node link (each at most a chunk and a little, so
/// 16 MiB at most): when it is full, the connections it carries wait their turn.
pub(super) const LINK_QUEUE: usize = 256;

/// Why a node link is closed: what the other node sent cannot be served.
#[derive(Debug, thiserror::Error)]
pub(super) enum NodeLinkError {
    /// A frame that is not a [`NodeFrame`], or a frame over the limit.
    #[error("a frame that cannot be read: {0}")]
    Frame(String),
    /// A frame for stream 0, an open of a stream already open, an open that names neither kind,
    /// an address of neither 4 nor 16 bytes, or a frame with no body.
    #[error("a frame that breaks the node protocol: {0}")]
    Protocol(&'static str),
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Encodes one frame of the node protocol.
pub(super) fn node_frame(stream: u64, body: node_frame::Body) -> Vec<u8> {
    encode_frame(&NodeFrame { stream, body: Some(body) })
}

/// The next whole [`NodeFrame`] from `reader`, or `None` at the end of the stream.
pub(super) async fn read_node_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    decoder: &mut FrameDecoder,
    buffer: &mut [u8],
) -> Result<Option<NodeFrame>, NodeLinkError> {
    loop {
        match decoder.next_frame() {
            Ok(Some(frame)) => return decode::<NodeFrame>(&frame, MAX_FRAME_LEN).map(Some).map_err(|error| NodeLinkError::Frame(error.to_string())),
            Ok(None) => {}
            Err(error) => return Err(NodeLinkError::Frame(error.to_string())),
        }
        match reader.read(buffer).await? {
            0 => return Ok(None),
            read => decoder.extend(&buffer[..read]),
        }
    }
}

/// Writes the frames queued for a node link, those waiting together in one write, until the
/// queue's senders are all gone; each write within [`WRITE_DEADLINE`].
pub(super) async fn write_node_frames<W: AsyncWrite + Unpin>(mut writer: W, mut queue: mpsc::Receiver<Vec<u8>>) -> std::io::Result<()> {
    let mut batch = Vec::new();
    while let Some(first) = queue.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        while batch.len() < 4 * CARRIED_CHUNK
            && let Ok(more) = queue.try_recv()
        {
            batch.extend_from_slice(&more);
        }
        let written = async {
            writer.write_all(&batch).await?;
            writer.flush().await
        };
        tokio::time::timeout(WRITE_DEADLINE, written)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "the other node does not read"))??;
    }
    writer.shutdown().await
}

/// What serving front nodes' links takes: the app's own certificate, which a front node must
/// present; the relay's peers, the only apps whose links a front node may carry; and how a
/// carried connection reaches the core.
#[derive(Clone)]
pub(super) struct Fronts {
    pub(super) own: Arc<CertificateDer<'static>>,
    pub(super) peers: Arc<HashSet<String>>,
    pub(super) events: mpsc::Sender<Event>,
    pub(super) next_conn: Arc<AtomicU64>,
    pub(super) tap: Option<Tap>,
}

/// Accepts front nodes' links on `listener` (TLS, the app's own certificate required of the other
/// side) and serves the connections each carries, until the relay stops.
pub(super) async fn accept_fronts(listener: TcpListener, acceptor: TlsAcceptor, fronts: Fronts) {
    let refusals = Arc::new(Refusals::default());
    loop {
        let Some((stream, source)) = accept(&listener).await else { continue };
        let (acceptor, fronts, refusals) = (acceptor.clone(), fronts.clone(), refusals.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            keep_link_alive(&stream, source);
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => return refusals.log("node", source, super::handshake_failure(&error), Some(&error), true),
                Err(_) => return refusals.log("node", source, "no TLS handshake in time", None, true),
            };
            let presented = tls.get_ref().1.peer_certificates().and_then(|chain| chain.first());
            if presented != Some(&*fronts.own) {
                return refusals.log("node", source, "its certificate is not this app's own", None, true);
            }
            tracing::info!(%source, "a front node's link is up");
            match serve_front(tls, fronts).await {
                Ok(()) => tracing::info!(%source, "a front node's link closed"),
                Err(error) => tracing::warn!(%source, %error, "closed a front node's link"),
            }
        });
    }
}

/// One carried connection, as the link's reader holds it: where its bytes go for the relay to
/// read (closed as soon as the relay stops reading it), and the task that carries back what the
/// relay writes to it.
struct Carried {
    input: mpsc::Sender<Vec<u8>>,
    output: JoinHandle<()>,
}

/// The relay's reading end of a carried connection: the chunks the front node sent, in order;
/// the end of the connection once the link's reader lets go.
struct Incoming {
    chunks: mpsc::Receiver<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
}

impl AsyncRead for Incoming {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        while this.at == this.current.len() {
            match std::task::ready!(this.chunks.poll_recv(cx)) {
                Some(chunk) => (this.current, this.at) = (chunk, 0),
                None => return Poll::Ready(Ok(())),
            }
        }
        let taken = buf.remaining().min(this.current.len() - this.at);
        buf.put_slice(&this.current[this.at..this.at + taken]);
        this.at += taken;
        Poll::Ready(Ok(()))
    }
}

/// Serves one front node's link until it closes or breaks the protocol. Every connection it
/// carried is closed with it (each device reconnects, to this node or another).
pub(super) async fn serve_front<S>(stream: S, fronts: Fronts) -> Result<(), NodeLinkError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let Fronts { peers, events, next_conn, tap, .. } = fronts;
    let (mut reader, writer) = tokio::io::split(stream);
    let (outgoing, queue) = mpsc::channel::<Vec<u8>>(LINK_QUEUE);
    let writing = tokio::spawn(write_node_frames(writer, queue));
    let mut carried: HashMap<u64, Carried> = HashMap::new();
    let read = async {
        let mut decoder = FrameDecoder::default();
        let mut buffer = vec![0u8; CARRIED_CHUNK];
        while let Some(frame) = read_node_frame(&mut reader, &mut decoder, &mut buffer).await? {
            let stream = frame.stream;
            if stream == 0 {
                return Err(NodeLinkError::Protocol("stream 0"));
            }
            match frame.body.ok_or(NodeLinkError::Protocol("a frame with no body"))? {
                node_frame::Body::Open(open) => {
                    if carried.contains_key(&stream) {
                        return Err(NodeLinkError::Protocol("an open of a stream already open"));
                    }
                    let kind = carried_kind(open)?;
                    let unknown_app = matches!(&kind, connection::Kind::Link { app, .. } if !peers.contains(app));
                    if carried.len() >= MAX_CARRIED_CONNECTIONS || unknown_app {
                        // Refused, not served: the front node closes it.
                        tracing::warn!(stream, unknown_app, "refused a carried connection: too many carried, or a link of no peer of this relay");
                        if outgoing.send(node_frame(stream, node_frame::Body::Close(NodeClose {}))).await.is_err() {
                            return Ok(());
                        }
                        continue;
                    }
                    carried.insert(stream, open_carried(stream, kind, &outgoing, &events, &next_conn, &tap));
                }
                node_frame::Body::Data(data) => {
                    // A stream closed here a moment ago may still get bytes sent before the
                    // front node heard of it: they are dropped.
                    let Some(connection) = carried.get(&stream) else { continue };
                    // Waits while the relay is behind in reading it; fails at once when the relay
                    // stopped reading it (it closed the connection): its output says so to the
                    // front node, if it has not yet.
                    if connection.input.send(data).await.is_err() {
                        carried.remove(&stream);
                    }
                }
                node_frame::Body::Close(NodeClose {}) => {
                    // The relay reads the end of the connection; what it still writes is carried
                    // back until it lets go (the front node drops it).
                    carried.remove(&stream);
                }
            }
        }
        Ok(())
    };
    // A relay that stops (its core gone) lets its front nodes' links go with it.
    let core_gone = events.clone();
    let ended = tokio::select! {
        ended = read => ended,
        () = core_gone.closed() => Ok(()),
    };
    for (_, connection) in carried.drain() {
        connection.output.abort();
    }
    drop(outgoing);
    writing.abort();
    ended
}

/// What a [`NodeOpen`] asks to be served as.
fn carried_kind(open: NodeOpen) -> Result<connection::Kind, NodeLinkError> {
    match open.kind.ok_or(NodeLinkError::Protocol("an open that names no kind"))? {
        node_open::Kind::DeviceSource(source) => {
            let source = match source.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(source.as_slice()).expect("4 bytes")),
                16 => IpAddr::from(<[u8; 16]>::try_from(source.as_slice()).expect("16 bytes")),
                _ => return Err(NodeLinkError::Protocol("a device's address of neither 4 nor 16 bytes")),
            };
            Ok(connection::Kind::Client { source })
        }
        node_open::Kind::LinkApp(app) => Ok(connection::Kind::Link { app, dialed: false }),
    }
}

/// Starts serving one carried connection with [`connection::serve_halves`], as a socket would
/// be: it reads the chunks the link's reader hands it and writes into a pipe, whose other end is
/// read and sent to the front node, then a close once the relay shut its side.
fn open_carried(
    stream: u64,
    kind: connection::Kind,
    outgoing: &mpsc::Sender<Vec<u8>>,
    events: &mpsc::Sender<Event>,
    next_conn: &AtomicU64,
    tap: &Option<Tap>,
) -> Carried {
    let (input, chunks) = mpsc::channel(INCOMING_CHUNKS);
    let (output, relays) = tokio::io::duplex(PIPE_BYTES);
    let conn = next_conn.fetch_add(1, Ordering::Relaxed);
    let incoming = Incoming { chunks, current: Vec::new(), at: 0 };
    tokio::spawn(connection::serve_halves(incoming, relays, conn, events.clone(), kind, tap.clone()));
    let output = tokio::spawn(carry_back(stream, output, outgoing.clone()));
    Carried { input, output }
}

/// Sends what the relay writes to a carried connection to the front node, then its end.
async fn carry_back(stream: u64, mut output: DuplexStream, outgoing: mpsc::Sender<Vec<u8>>) {
    let mut buffer = vec![0u8; CARRIED_CHUNK];
    loop {
        let body = match output.read(&mut buffer).await {
            Ok(0) | Err(_) => node_frame::Body::Close(NodeClose {}),
            Ok(read) => node_frame::Body::Data(buffer[..read].to_vec()),
        };
        let last = matches!(body, node_frame::Body::Close(_));
        if outgoing.send(node_frame(stream, body)).await.is_err() || last {
            return;
        }
    }
}

/// The address a device connected from, as a [`NodeOpen`] carries it.
pub(super) fn source_bytes(source: IpAddr) -> Vec<u8> {
    match source {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A front node's link to `serve_front`, in memory: the front's end, the events the relay's
    /// core would get, and the task serving the link.
    fn link() -> (DuplexStream, mpsc::Receiver<Event>, JoinHandle<Result<(), NodeLinkError>>) {
        let (front, active) = tokio::io::duplex(1 << 20);
        let (events, received) = mpsc::channel(64);
        let own = Arc::new(CertificateDer::from(Vec::new()));
        let peers = Arc::new(HashSet::from(["blue".to_owned()]));
        let fronts = Fronts { own, peers, events, next_conn: Arc::new(AtomicU64::new(1)), tap: None };
        let serving = tokio::spawn(serve_front(active, fronts));
        (front, received, serving)
    }

    fn open_device(stream: u64, source: &[u8]) -> Vec<u8> {
        node_frame(stream, node_frame::Body::Open(NodeOpen { kind: Some(node_open::Kind::DeviceSource(source.to_vec())) }))
    }

    async fn next_event(events: &mut mpsc::Receiver<Event>) -> Event {
        tokio::time::timeout(std::time::Duration::from_secs(5), events.recv()).await.expect("an event in time").expect("the link serves on")
    }

    #[tokio::test]
    async fn a_carried_connection_is_served_as_one_from_the_address_it_names_and_written_back() {
        let (mut front, mut events, _serving) = link();
        front.write_all(&open_device(7, &[10, 0, 0, 7])).await.unwrap();
        let Event::ClientOpened(conn, source, handles) = next_event(&mut events).await else { panic!("not an open") };
        assert_eq!(source, Some(IpAddr::from([10, 0, 0, 7])));
        // The device's bytes, a frame cut in two, reach the core as the one frame.
        let frame = encode_frame(&NodeClose {});
        let mut framed = (2u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&[8, 1]);
        front.write_all(&node_frame(7, node_frame::Body::Data(framed[..3].to_vec()))).await.unwrap();
        front.write_all(&node_frame(7, node_frame::Body::Data(framed[3..].to_vec()))).await.unwrap();
        let Event::ClientFrame(framed_conn, bytes) = next_event(&mut events).await else { panic!("not a frame") };
        assert_eq!((framed_conn, bytes), (conn, vec![8, 1]));
        // What the relay writes comes back as data of that stream.
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        handles.queue.try_send(connection::Queued::new(frame.clone(), &queued, None)).unwrap();
        let mut decoder = FrameDecoder::default();
        let mut buffer = vec![0u8; 1024];
        let back = read_node_frame(&mut front, &mut decoder, &mut buffer).await.unwrap().unwrap();
        assert_eq!(back, NodeFrame { stream: 7, body: Some(node_frame::Body::Data(frame)) });
        // The front's close reaches the core as the device's.
        front.write_all(&node_frame(7, node_frame::Body::Close(NodeClose {}))).await.unwrap();
        let Event::ClientClosed(closed) = next_event(&mut events).await else { panic!("not a close") };
        assert_eq!(closed, conn);
        // The relay lets it go: the front hears the close.
        drop(handles);
        let back = read_node_frame(&mut front, &mut decoder, &mut buffer).await.unwrap().unwrap();
        assert_eq!(back, NodeFrame { stream: 7, body: Some(node_frame::Body::Close(NodeClose {})) });
    }

    #[tokio::test]
    async fn a_link_that_breaks_the_protocol_is_closed_with_what_it_did() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (open_device(0, &[127, 0, 0, 1]), "stream 0"),
            (open_device(3, &[127, 0, 0]), "neither 4 nor 16"),
            (node_frame(3, node_frame::Body::Open(NodeOpen { kind: None })), "no kind"),
            (encode_frame(&NodeFrame { stream: 3, body: None }), "no body"),
            ([open_device(3, &[127, 0, 0, 1]), open_device(3, &[127, 0, 0, 1])].concat(), "already open"),
            (vec![0, 0, 0, 2, 0xff, 0xff], "cannot be read"),
            ((u32::MAX).to_be_bytes().to_vec(), "cannot be read"),
        ];
        for (bytes, said) in cases {
            let (mut front, _events, serving) = link();
            front.write_all(&bytes).await.unwrap();
            let error = tokio::time::timeout(std::time::Duration::from_secs(5), serving).await.expect("closed in time").unwrap().expect_err("refused");
            assert!(error.to_string().contains(said), "{said}: {error}");
        }
    }

    #[tokio::test]
    async fn data_for_a_stream_not_open_is_dropped_and_the_link_serves_on() {
        let (mut front, mut events, serving) = link();
        front.write_all(&node_frame(9, node_frame::Body::Data(vec![0, 0, 0, 0]))).await.unwrap();
        front.write_all(&node_frame(9, node_frame::Body::Close(NodeClose {}))).await.unwrap();
        front.write_all(&open_device(9, &[0; 16])).await.unwrap();
        let Event::ClientOpened(_, source, _) = next_event(&mut events).await else { panic!("not an open") };
        assert_eq!(source, Some(IpAddr::from([0u8; 16])));
        assert!(!serving.is_finished());
    }

    #[tokio::test]
    async fn an_open_of_a_link_of_no_peer_is_answered_with_a_close_and_the_link_serves_on() {
        let (mut front, mut events, serving) = link();
        let open = |app: &str| node_frame(4, node_frame::Body::Open(NodeOpen { kind: Some(node_open::Kind::LinkApp(app.to_owned())) }));
        front.write_all(&open("mallory")).await.unwrap();
        let mut decoder = FrameDecoder::default();
        let mut buffer = vec![0u8; 1024];
        let back = read_node_frame(&mut front, &mut decoder, &mut buffer).await.unwrap().unwrap();
        assert_eq!(back, NodeFrame { stream: 4, body: Some(node_frame::Body::Close(NodeClose {})) });
        // A peer's link is served, on the same stream number once the front let it go.
        front.write_all(&node_frame(4, node_frame::Body::Close(NodeClose {}))).await.unwrap();
        front.write_all(&open("blue")).await.unwrap();
        let Event::LinkOpened(_, app, dialed, _) = next_event(&mut events).await else { panic!("not a link") };
        assert_eq!((app.as_str(), dialed), ("blue", false));
        assert!(!serving.is_finished());
    }

    #[tokio::test]
    async fn a_connection_the_relay_stopped_reading_does_not_hold_up_the_link() {
        let (mut front, mut events, serving) = link();
        front.write_all(&open_device(1, &[127, 0, 0, 1])).await.unwrap();
        let Event::ClientOpened(_, _, handles) = next_event(&mut events).await else { panic!("not an open") };
        // The relay closes the connection: its reader stops, its writer drains (held here).
        handles.reader.abort();
        // Far more than the relay would take in unread: the link reader must not wait on it.
        let chunk = vec![0u8; CARRIED_CHUNK];
        for _ in 0..4 * INCOMING_CHUNKS {
            front.write_all(&node_frame(1, node_frame::Body::Data(chunk.clone()))).await.unwrap();
        }
        front.write_all(&open_device(2, &[127, 0, 0, 2])).await.unwrap();
        loop {
            match next_event(&mut events).await {
                Event::ClientOpened(_, source, _) => break assert_eq!(source, Some(IpAddr::from([127, 0, 0, 2]))),
                _ => continue,
            }
        }
        assert!(!serving.is_finished());
        drop(handles);
    }

    #[tokio::test]
    async fn every_carried_connection_ends_with_its_link() {
        let (mut front, mut events, serving) = link();
        front.write_all(&[open_device(1, &[127, 0, 0, 1]), open_device(2, &[127, 0, 0, 2])].concat()).await.unwrap();
        let mut opened = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..2 {
            let Event::ClientOpened(conn, _, held) = next_event(&mut events).await else { panic!("not an open") };
            opened.push(conn);
            handles.push(held);
        }
        drop(front);
        serving.await.unwrap().unwrap();
        let mut closed = Vec::new();
        for _ in 0..2 {
            let Event::ClientClosed(conn) = next_event(&mut events).await else { panic!("not a close") };
            closed.push(conn);
        }
        closed.sort();
        assert_eq!(closed, opened);
    }
}
