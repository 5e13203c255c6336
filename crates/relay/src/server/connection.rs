//! One connection: a reader task that cuts frames out of the byte stream and hands them to the
//! core, and a writer task that writes what the core sends, coalescing queued frames into one
//! flush.

use switchboard_wire::frame::{FrameDecoder, FrameError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::{Event, Tap, WRITE_QUEUE};
use crate::core::ConnId;

pub(super) enum Kind {
    Client { source: std::net::IpAddr },
    Link { app: String, dialed: bool },
}

/// Serves one connection until either side closes it. The core hears of the connection before
/// its first frame, and the writer drains what the core queued before the socket is shut down.
pub(super) async fn serve<S>(stream: S, conn: ConnId, events: mpsc::Sender<Event>, kind: Kind, tap: Option<Tap>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (outgoing, mut queue) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    let (start, started) = oneshot::channel::<()>();
    let is_link = matches!(kind, Kind::Link { .. });
    let events_for_reader = events.clone();
    let read_tap = tap.clone();
    let read = tokio::spawn(async move {
        if started.await.is_err() {
            return;
        }
        let mut decoder = FrameDecoder::default();
        let mut buffer = vec![0u8; 64 * 1024];
        'reading: loop {
            let read = match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
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
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(FrameError::TooLong { .. }) | Err(FrameError::Decode(_)) => {
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
    });
    let opened = match kind {
        Kind::Client { source } => Event::ClientOpened(conn, Some(source), outgoing, read.abort_handle()),
        Kind::Link { app, dialed } => Event::LinkOpened(conn, app, dialed, outgoing, read.abort_handle()),
    };
    if events.send(opened).await.is_err() {
        read.abort();
        return;
    }
    let _ = start.send(());
    // Until the core lets go of the connection (it closed it, or heard that the peer did).
    let write = async {
        while let Some(first) = queue.recv().await {
            let mut batch = vec![first];
            while let Ok(more) = queue.try_recv() {
                batch.push(more);
            }
            for frame in &batch {
                writer.write_all(frame).await?;
            }
            if let Some(tap) = &tap {
                tap.lock().expect("not poisoned").extend(batch);
            }
            writer.flush().await?;
        }
        writer.shutdown().await
    };
    let _ = write.await;
}
