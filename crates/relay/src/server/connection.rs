//! One connection: a reader task that cuts frames out of the byte stream and hands them to the
//! core, and a writer task that writes what the core sends, coalescing queued frames into one
//! flush. A peer that does not take what is written within [`WRITE_DEADLINE`] is disconnected
//! and its queue freed, whether the core still wants the connection or has let it go.

use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use switchboard_wire::frame::FrameDecoder;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use super::{Event, Tap, WRITE_DEADLINE, WRITE_QUEUE};
use crate::core::ConnId;

pub(super) enum Kind {
    Client { source: std::net::IpAddr },
    Link { app: String, dialed: bool },
}

/// One frame waiting to be written, counted in its connection's queued bytes and (for a device's
/// connection) in the relay's; it gives its bytes back when it is dropped, written or not (a
/// connection dropped with frames still queued frees them at once).
pub(super) struct Queued {
    bytes: Vec<u8>,
    counters: [Option<Arc<AtomicUsize>>; 2],
}

impl Queued {
    /// A frame counted in `connection` and in `relay` (if any) while it waits.
    pub(super) fn new(bytes: Vec<u8>, connection: &Arc<AtomicUsize>, relay: Option<&Arc<AtomicUsize>>) -> Queued {
        let counters = [Some(connection.clone()), relay.cloned()];
        for counter in counters.iter().flatten() {
            counter.fetch_add(bytes.len(), Ordering::Relaxed);
        }
        Queued { bytes, counters }
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        for counter in self.counters.iter().flatten() {
            counter.fetch_sub(self.bytes.len(), Ordering::Relaxed);
        }
    }
}

/// What the core task holds of a connection: its queue, and the handles that stop its reader
/// and its writer.
pub(super) struct Handles {
    pub(super) queue: mpsc::Sender<Queued>,
    /// Bytes waiting in `queue`.
    pub(super) queued: Arc<AtomicUsize>,
    pub(super) reader: AbortHandle,
    pub(super) writer: AbortHandle,
}

/// Writes what `queue` holds until its senders are all gone, then shuts `writer`: the frames
/// waiting together in one vectored write (TLS seals them in as few records as it can, and the
/// socket takes them in as few calls; a write per frame made a record and a system call per
/// frame), each batch and the shutdown within [`WRITE_DEADLINE`]. `written` sees each batch once
/// it is written.
pub(super) async fn write_queue<W>(writer: &mut W, queue: &mut mpsc::Receiver<Queued>, mut written: impl FnMut(&[Queued])) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let too_slow = || std::io::Error::new(std::io::ErrorKind::TimedOut, "the peer does not read");
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = queue.try_recv() {
            batch.push(more);
        }
        let write_batch = async {
            let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|frame| IoSlice::new(&frame.bytes)).collect();
            let mut unwritten = &mut slices[..];
            while !unwritten.is_empty() {
                match writer.write_vectored(unwritten).await? {
                    0 => return Err(std::io::ErrorKind::WriteZero.into()),
                    wrote => IoSlice::advance_slices(&mut unwritten, wrote),
                }
            }
            writer.flush().await
        };
        tokio::time::timeout(WRITE_DEADLINE, write_batch).await.map_err(|_| too_slow())??;
        written(&batch);
    }
    tokio::time::timeout(WRITE_DEADLINE, writer.shutdown()).await.map_err(|_| too_slow())?
}

/// Serves one connection until either side closes it. The core hears of the connection before
/// its first frame, and the writer drains what the core queued before the socket is shut down
/// (within [`WRITE_DEADLINE`] per batch, and the grace the driver gives a connection it closed).
/// Returns why it ended, when something went wrong (a read or write error, a frame that does not
/// decode), for the log.
pub(super) async fn serve<S>(stream: S, conn: ConnId, events: mpsc::Sender<Event>, kind: Kind, tap: Option<Tap>) -> Option<String>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    serve_halves(reader, writer, conn, events, kind, tap).await
}

/// [`serve`], the connection's two directions given apart: the reader is dropped as soon as
/// reading stops (the core closed the connection, or the peer sent what cannot be read), while
/// the writer may drain a little longer.
pub(super) async fn serve_halves<R, W>(mut reader: R, mut writer: W, conn: ConnId, events: mpsc::Sender<Event>, kind: Kind, tap: Option<Tap>) -> Option<String>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let (outgoing, mut queue) = mpsc::channel::<Queued>(WRITE_QUEUE);
    let (start, started) = oneshot::channel::<()>();
    let is_link = matches!(kind, Kind::Link { .. });
    let events_for_reader = events.clone();
    let read_tap = tap.clone();
    let read = tokio::spawn(async move {
        if started.await.is_err() {
            return None;
        }
        let mut decoder = FrameDecoder::default();
        let mut buffer = vec![0u8; 64 * 1024];
        let mut ended = None;
        'reading: loop {
            let read = match reader.read(&mut buffer).await {
                Ok(0) => break,
                Err(error) => {
                    ended = Some(error.to_string());
                    break;
                }
                Ok(read) => read,
            };
            decoder.extend(&buffer[..read]);
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => {
                        if let Some(tap) = &read_tap {
                            tap.lock().expect("not poisoned").push(frame.clone());
                        }
                        let event = if is_link { Event::LinkFrame(conn, frame) } else { Event::ClientFrame(conn, frame) };
                        if events_for_reader.send(event).await.is_err() {
                            return None;
                        }
                    }
                    Ok(None) => break,
                    Err(error) => {
                        ended = Some(format!("a frame that cannot be read: {error}"));
                        if !is_link {
                            let _ = events_for_reader.send(Event::ClientOversized(conn)).await;
                        }
                        break 'reading;
                    }
                }
            }
        }
        let closed = if is_link { Event::LinkClosed(conn) } else { Event::ClientClosed(conn) };
        let _ = events_for_reader.send(closed).await;
        ended
    });
    let read_abort = read.abort_handle();
    let events_for_writer = events.clone();
    // Until the core lets go of the connection (it closed it, or heard that the peer did).
    let write = tokio::spawn(async move {
        let written = write_queue(&mut writer, &mut queue, |batch| {
            if let Some(tap) = &tap {
                tap.lock().expect("not poisoned").extend(batch.iter().map(|frame| frame.bytes.clone()));
            }
        });
        match written.await {
            Ok(()) => None,
            Err(error) => {
                // The reader stops too, and the core hears of it now (if it still holds the
                // connection); what was queued is dropped with this task.
                read_abort.abort();
                tracing::info!(conn, %error, "connection dropped");
                let closed = if is_link { Event::LinkClosed(conn) } else { Event::ClientClosed(conn) };
                let _ = events_for_writer.send(closed).await;
                Some(error.to_string())
            }
        }
    });
    let handles = Handles { queue: outgoing, queued: Arc::new(AtomicUsize::new(0)), reader: read.abort_handle(), writer: write.abort_handle() };
    let opened = match kind {
        Kind::Client { source } => Event::ClientOpened(conn, Some(source), handles),
        Kind::Link { app, dialed } => Event::LinkOpened(conn, app, dialed, handles),
    };
    if events.send(opened).await.is_err() {
        read.abort();
        write.abort();
        return None;
    }
    let _ = start.send(());
    let written = write.await.ok().flatten();
    // The reader has ended (it told the core, which let the writer go), or it is stopped now
    // (the relay is shutting down).
    read.abort();
    let read = read.await.ok().flatten();
    written.or(read)
}
