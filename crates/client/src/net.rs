//! A connection to an app's relay: framed requests answered by request id, and deliveries
//! pushed by the relay at any time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_wire::frame::{FrameDecoder, encode_frame};
use switchboard_wire::switchboard::{ClientFrame, Envelope, ServerFrame, client_frame, server_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};

/// Deliveries received but not yet taken by the app.
pub const DELIVERY_QUEUE: usize = 1024;
/// How long a request may wait for its answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("cannot reach the relay: {0}")]
    Unreachable(String),
    #[error("the connection to the relay closed")]
    Closed,
    #[error("the relay gave no answer in time")]
    Timeout,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<ServerFrame>>>>;

/// One connection to a relay.
pub struct Connection {
    writer: OwnedWriteHalf,
    pending: Pending,
    closed: Arc<AtomicBool>,
    next_request: u64,
    deliveries: mpsc::Receiver<Envelope>,
}

impl Connection {
    /// Connects to the relay's client address.
    pub async fn connect(address: SocketAddr) -> Result<Connection, NetError> {
        let stream = TcpStream::connect(address).await.map_err(|e| NetError::Unreachable(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (mut reader, writer) = stream.into_split();
        let pending: Pending = Arc::default();
        let (deliver, deliveries) = mpsc::channel(DELIVERY_QUEUE);
        let answers = pending.clone();
        let closed = Arc::new(AtomicBool::new(false));
        let reader_closed = closed.clone();
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
                    // A frame over the limit or malformed: the relay misbehaves; hang up.
                    let Ok(next) = decoder.next_message::<ServerFrame>() else { break 'reading };
                    let Some(frame) = next else { break };
                    match frame.body {
                        Some(server_frame::Body::Deliver(envelope)) if frame.request_id == 0 => {
                            // Waits while the app is behind: the relay keeps the rest meanwhile.
                            if deliver.send(envelope).await.is_err() {
                                break 'reading;
                            }
                        }
                        _ => {
                            if let Some(waiting) = answers.lock().expect("not poisoned").remove(&frame.request_id) {
                                let _ = waiting.send(frame);
                            }
                        }
                    }
                }
            }
            // The connection is gone: refuse new requests, then wake every waiting one.
            reader_closed.store(true, Ordering::SeqCst);
            answers.lock().expect("not poisoned").clear();
        });
        Ok(Connection { writer, pending, closed, next_request: 1, deliveries })
    }

    /// Sends a request and waits for its answer.
    pub async fn request(&mut self, body: client_frame::Body) -> Result<ServerFrame, NetError> {
        let request_id = self.next_request;
        self.next_request += 1;
        let (reply, answer) = oneshot::channel();
        self.pending.lock().expect("not poisoned").insert(request_id, reply);
        // Checked after registering: a reader that ends later clears (and so answers) it.
        if self.closed.load(Ordering::SeqCst) {
            self.pending.lock().expect("not poisoned").remove(&request_id);
            return Err(NetError::Closed);
        }
        let frame = encode_frame(&ClientFrame { request_id, body: Some(body) });
        self.writer.write_all(&frame).await.map_err(|_| NetError::Closed)?;
        match tokio::time::timeout(REQUEST_TIMEOUT, answer).await {
            Ok(Ok(frame)) => Ok(frame),
            Ok(Err(_)) => Err(NetError::Closed),
            Err(_) => Err(NetError::Timeout),
        }
    }

    /// Sends a frame that gets no answer (acknowledgements).
    pub async fn notify(&mut self, body: client_frame::Body) -> Result<(), NetError> {
        let frame = encode_frame(&ClientFrame { request_id: 0, body: Some(body) });
        self.writer.write_all(&frame).await.map_err(|_| NetError::Closed)
    }

    /// The next delivery, waiting at most `wait`.
    pub async fn next_delivery(&mut self, wait: Duration) -> Option<Envelope> {
        tokio::time::timeout(wait, self.deliveries.recv()).await.ok().flatten()
    }
}
