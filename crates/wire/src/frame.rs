//! Length-delimited frames, as every connection carries them: a 4-byte big-endian length, then
//! that many bytes of one protobuf message. Sans-IO: bytes go in as they arrive, whole frames
//! come out. The length is checked against the limit before anything is allocated for it.

use prost::Message;

use crate::decode::{DecodeError, decode};

/// The largest frame accepted on any connection (client or federation).
pub const MAX_FRAME_LEN: usize = 1024 * 1024;
/// Bytes of the length prefix.
pub const PREFIX_LEN: usize = 4;

/// Why a stream of frames cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A length prefix over the limit: the peer is misbehaving; close the connection.
    #[error("frame of {len} bytes exceeds the limit of {limit}")]
    TooLong {
        /// The length the prefix announced, in bytes.
        len: usize,
        /// The decoder's limit, in bytes.
        limit: usize,
    },
    /// A frame that is not a valid message.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// `message` framed: length prefix and body.
pub fn encode_frame(message: &impl Message) -> Vec<u8> {
    let len = message.encoded_len();
    let mut frame = Vec::with_capacity(PREFIX_LEN + len);
    frame.extend_from_slice(&(len as u32).to_be_bytes());
    message.encode(&mut frame).expect("a Vec grows as needed");
    frame
}

/// Splits a byte stream into frames.
#[derive(Debug)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
    limit: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(MAX_FRAME_LEN)
    }
}

impl FrameDecoder {
    /// A decoder refusing frames longer than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        FrameDecoder { buffer: Vec::new(), limit }
    }

    /// Appends bytes received from the connection.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame's body, if one has arrived. After an error the stream is unusable.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let Some(prefix) = self.buffer.first_chunk::<PREFIX_LEN>() else { return Ok(None) };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > self.limit {
            return Err(FrameError::TooLong { len, limit: self.limit });
        }
        if self.buffer.len() < PREFIX_LEN + len {
            return Ok(None);
        }
        let body = self.buffer[PREFIX_LEN..PREFIX_LEN + len].to_vec();
        self.buffer.drain(..PREFIX_LEN + len);
        Ok(Some(body))
    }

    /// The next whole frame, decoded as `M`.
    pub fn next_message<M: Message + Default>(&mut self) -> Result<Option<M>, FrameError> {
        match self.next_frame()? {
            Some(body) => Ok(Some(decode(&body, self.limit)?)),
            None => Ok(None),
        }
    }

    /// Bytes received but not yet part of a whole frame.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Bytes;
    use crate::switchboard::{Acknowledge, ClientFrame, EnvelopeRef, client_frame::Body};

    fn frame(ids: usize) -> ClientFrame {
        ClientFrame { request_id: 7, body: Some(Body::Acknowledge(Acknowledge { envelopes: vec![EnvelopeRef { sender: None, id: Bytes::from(vec![1; 16]) }; ids] })) }
    }

    #[test]
    fn frames_come_out_whole_however_the_bytes_are_split() {
        let frames = [frame(1), frame(3), frame(0)];
        let stream: Vec<u8> = frames.iter().flat_map(encode_frame).collect();
        for chunk in [1, 2, 3, 7, 64, stream.len()] {
            let mut decoder = FrameDecoder::default();
            let mut out = Vec::new();
            for piece in stream.chunks(chunk) {
                decoder.extend(piece);
                while let Some(message) = decoder.next_message::<ClientFrame>().unwrap() {
                    out.push(message);
                }
            }
            assert_eq!(out, frames);
            assert_eq!(decoder.buffered(), 0);
        }
    }

    #[test]
    fn an_oversized_length_is_refused_before_the_body_arrives() {
        let mut decoder = FrameDecoder::new(100);
        decoder.extend(&101u32.to_be_bytes());
        assert_eq!(decoder.next_frame(), Err(FrameError::TooLong { len: 101, limit: 100 }));
        let mut decoder = FrameDecoder::new(100);
        decoder.extend(&u32::MAX.to_be_bytes());
        assert!(decoder.next_frame().is_err());
    }

    #[test]
    fn a_malformed_body_is_an_error() {
        let mut decoder = FrameDecoder::default();
        decoder.extend(&[0, 0, 0, 2, 0xff, 0xff]);
        assert!(matches!(decoder.next_message::<ClientFrame>(), Err(FrameError::Decode(_))));
    }
}
