//! A connection to an app's relay, as frames: a task reads and splits the byte stream, the
//! driver writes. What the frames mean is the endpoint's business.

use std::net::SocketAddr;
use std::time::Duration;

use switchboard_wire::frame::{FrameDecoder, PREFIX_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

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
    #[error("the connection to the relay closed")]
    Closed,
}

/// One connection to a relay.
pub struct Connection {
    writer: OwnedWriteHalf,
    frames: mpsc::Receiver<Vec<u8>>,
}

impl Connection {
    /// Connects to the relay's client address.
    pub async fn connect(address: SocketAddr) -> Result<Connection, NetError> {
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(NetError::Unreachable(error.to_string())),
            Err(_) => return Err(NetError::Unreachable("timed out".into())),
        };
        let _ = stream.set_nodelay(true);
        let (mut reader, writer) = stream.into_split();
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
        match tokio::time::timeout(WRITE_TIMEOUT, self.writer.write_all(&bytes)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(NetError::Closed),
        }
    }

    /// The next frame from the relay; `None` once the connection is closed.
    pub async fn next_frame(&mut self) -> Option<Vec<u8>> {
        self.frames.recv().await
    }
}
