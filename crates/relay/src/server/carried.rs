//! The active node's end of its front nodes' links. A front node (a node of the same app waiting
//! for the database's lock: see [`front`](super::front)) ends the TLS of the devices and other
//! apps' relays that connect to it and carries each connection's bytes here over one mutually
//! authenticated TLS link, as [`NodeFrame`]s. Each carried connection is served by
//! [`connection::serve`] over an in-memory pipe, exactly as a socket accepted here would be: the
//! core cannot tell them apart, and every bound of a connection (its write queue, its deadline,
//! the relay's budget) holds for it.
//!
//! Only the app's own certificate is accepted on the node listener: a front node holds the app's
//! key, as the active node does.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustls::pki_types::CertificateDer;
use switchboard_wire::decode;
use switchboard_wire::frame::{FrameDecoder, MAX_FRAME_LEN, encode_frame};
use switchboard_wire::switchboard::{NodeClose, NodeFrame, NodeOpen, node_frame, node_open};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::{Event, HANDSHAKE_TIMEOUT, Tap, WRITE_DEADLINE, accept, connection, keep_link_alive};

/// Connections one front node's link may carry at once; an open past it closes the link.
pub const MAX_CARRIED_CONNECTIONS: usize = 16_384;
/// Bytes of a carried connection's data in one [`NodeFrame`], at most: a read's worth.
pub const CARRIED_CHUNK: usize = 64 * 1024;
/// Bytes the in-memory pipe of a carried connection holds each way before the writer waits.
const PIPE_BYTES: usize = 2 * CARRIED_CHUNK;
/// Encoded frames waiting to be written on a front node's link (each at most a chunk and a
/// little): when it is full, the connections it carries wait to be read.
pub(super) const LINK_QUEUE: usize = 1024;

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
    /// More than [`MAX_CARRIED_CONNECTIONS`] open at once.
    #[error("more than {MAX_CARRIED_CONNECTIONS} connections carried at once")]
    TooMany,
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

/// Accepts front nodes' links on `listener` (TLS, the app's own certificate `own` required of the
/// other side) and serves the connections each carries, until the relay stops.
pub(super) async fn accept_fronts(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    own: CertificateDer<'static>,
    events: mpsc::Sender<Event>,
    next_conn: Arc<AtomicU64>,
    tap: Option<Tap>,
) {
    let own = Arc::new(own);
    loop {
        let Some((stream, source)) = accept(&listener).await else { continue };
        let (acceptor, own, events, next_conn, tap) = (acceptor.clone(), own.clone(), events.clone(), next_conn.clone(), tap.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            keep_link_alive(&stream, source);
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => return tracing::warn!(%source, %error, "refused a node link: TLS handshake failed"),
                Err(_) => return tracing::warn!(%source, "refused a node link: no TLS handshake in time"),
            };
            let presented = tls.get_ref().1.peer_certificates().and_then(|chain| chain.first());
            if presented != Some(&*own) {
                return tracing::warn!(%source, "refused a node link: its certificate is not this app's own");
            }
            tracing::info!(%source, "a front node's link is up");
            match serve_front(tls, events, next_conn, tap).await {
                Ok(()) => tracing::info!(%source, "a front node's link closed"),
                Err(error) => tracing::warn!(%source, %error, "closed a front node's link"),
            }
        });
    }
}

/// One carried connection, as the link's reader holds it: the pipe's end its bytes are written
/// into, and the task that carries back what the relay writes to it.
struct Carried {
    input: WriteHalf<DuplexStream>,
    output: JoinHandle<()>,
}

/// Serves one front node's link until it closes or breaks the protocol. Every connection it
/// carried is closed with it (each device reconnects, to this node or another).
pub(super) async fn serve_front<S>(stream: S, events: mpsc::Sender<Event>, next_conn: Arc<AtomicU64>, tap: Option<Tap>) -> Result<(), NodeLinkError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
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
                    if carried.len() >= MAX_CARRIED_CONNECTIONS {
                        return Err(NodeLinkError::TooMany);
                    }
                    let kind = carried_kind(open)?;
                    carried.insert(stream, open_carried(stream, kind, &outgoing, &events, &next_conn, &tap));
                }
                node_frame::Body::Data(data) => {
                    // A stream closed here a moment ago may still get bytes sent before the
                    // front node heard of it: they are dropped.
                    let Some(connection) = carried.get_mut(&stream) else { continue };
                    if connection.input.write_all(&data).await.is_err() {
                        // The relay let the connection go; its output says so to the front.
                        carried.remove(&stream);
                    }
                }
                node_frame::Body::Close(NodeClose {}) => {
                    if let Some(mut connection) = carried.remove(&stream) {
                        // The relay reads the end of the connection; what it still writes is
                        // carried back until it lets go (the front node drops it).
                        let _ = connection.input.shutdown().await;
                    }
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

/// Starts serving one carried connection: the relay's end of a pipe goes to [`connection::serve`]
/// as a socket would; what the relay writes is read from the other end and sent to the front
/// node, then a close once the relay shut its side.
fn open_carried(
    stream: u64,
    kind: connection::Kind,
    outgoing: &mpsc::Sender<Vec<u8>>,
    events: &mpsc::Sender<Event>,
    next_conn: &AtomicU64,
    tap: &Option<Tap>,
) -> Carried {
    let (ours, relays) = tokio::io::duplex(PIPE_BYTES);
    let conn = next_conn.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(connection::serve(relays, conn, events.clone(), kind, tap.clone()));
    let (output, input) = tokio::io::split(ours);
    let output = tokio::spawn(carry_back(stream, output, outgoing.clone()));
    Carried { input, output }
}

/// Sends what the relay writes to a carried connection to the front node, then its end.
async fn carry_back(stream: u64, mut output: ReadHalf<DuplexStream>, outgoing: mpsc::Sender<Vec<u8>>) {
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
        let serving = tokio::spawn(serve_front(active, events, Arc::new(AtomicU64::new(1)), None));
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
