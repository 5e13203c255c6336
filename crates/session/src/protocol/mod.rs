//! The messages of a 1:1 session as bytes on the wire: version byte, protobuf, and (under
//! `signal-v3`) the truncated MAC.

mod message;
mod prekey_message;

pub(crate) use message::Parties;
pub use message::{MAC_LEN, SignalMessage};
pub(crate) use prekey_message::PreKeyHeader;
pub use prekey_message::PreKeySignalMessage;

use crate::error::Result;
use crate::keys::PublicKey;

/// Which of the two message kinds a ciphertext is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// A PreKeySignalMessage: sent until the responder's first reply arrives.
    PreKey,
    /// A SignalMessage.
    Signal,
}

impl MessageKind {
    /// The name used by the peer protocol: `prekey` or `signal`.
    pub fn name(self) -> &'static str {
        match self {
            MessageKind::PreKey => "prekey",
            MessageKind::Signal => "signal",
        }
    }
}

/// An encrypted 1:1 message of either kind.
#[derive(Clone, Debug)]
pub enum CiphertextMessage {
    /// A first message, which also carries what starts the session at the receiver. Boxed: it is
    /// the rare and much larger kind, and every message moves through a few `Result`s.
    PreKey(Box<PreKeySignalMessage>),
    /// A message on a session both sides already hold.
    Signal(SignalMessage),
}

impl CiphertextMessage {
    /// Parses bytes received as a message of `kind`.
    pub fn parse(kind: MessageKind, bytes: &[u8]) -> Result<Self> {
        Ok(match kind {
            MessageKind::PreKey => CiphertextMessage::PreKey(Box::new(PreKeySignalMessage::parse(bytes)?)),
            MessageKind::Signal => CiphertextMessage::Signal(SignalMessage::parse(bytes)?),
        })
    }

    /// [`Self::parse`] of bytes the caller gives up: a SignalMessage keeps them as its buffer
    /// rather than copying them (a PreKeySignalMessage, the rare kind, is still copied).
    pub fn parse_owned(kind: MessageKind, bytes: Vec<u8>) -> Result<Self> {
        Ok(match kind {
            MessageKind::PreKey => CiphertextMessage::PreKey(Box::new(PreKeySignalMessage::parse(&bytes)?)),
            MessageKind::Signal => CiphertextMessage::Signal(SignalMessage::parse_owned(bytes)?),
        })
    }

    /// The sender's ratchet public key.
    pub fn ratchet_key(&self) -> &PublicKey {
        match self {
            CiphertextMessage::PreKey(message) => message.message().ratchet_key(),
            CiphertextMessage::Signal(message) => message.ratchet_key(),
        }
    }

    /// The message's kind.
    pub fn kind(&self) -> MessageKind {
        match self {
            CiphertextMessage::PreKey(_) => MessageKind::PreKey,
            CiphertextMessage::Signal(_) => MessageKind::Signal,
        }
    }

    /// The exact bytes that go on the wire.
    pub fn serialize(&self) -> &[u8] {
        match self {
            CiphertextMessage::PreKey(message) => message.serialize(),
            CiphertextMessage::Signal(message) => message.serialize(),
        }
    }
}
