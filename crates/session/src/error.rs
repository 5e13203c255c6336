//! The one error type of this crate. No variant carries key material.

use switchboard_wire::DecodeError;

/// Everything that can go wrong in a session operation. A failed operation leaves every session,
/// prekey and identity exactly as it was.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Bytes from a peer that are not a valid message: malformed, wrong length, bad MAC or tag,
    /// bad padding, missing fields.
    #[error("invalid message: {0}")]
    InvalidMessage(&'static str),
    /// A message whose version byte belongs to no suite this implementation speaks, or to a
    /// different suite than the session's.
    #[error("message version byte {0:#04x} is not accepted here")]
    InvalidVersion(u8),
    /// A message already decrypted, or one whose key was dropped.
    #[error("duplicate message: counter {counter} was already used or its key is gone")]
    Duplicate {
        /// The message's counter in its chain.
        counter: u32,
    },
    /// A message further ahead in its chain than [`crate::limits::MAX_FORWARD_JUMPS`] allows.
    #[error("message is {jump} messages ahead of its chain, more than the limit of {limit}")]
    TooFarAhead {
        /// How many message keys the message would have made this device derive and keep.
        jump: u32,
        /// The most it may derive for one message.
        limit: u32,
    },
    /// The remote identity key differs from the one stored for that address.
    #[error("the identity key of {address} changed; accept it before talking to them again")]
    UntrustedIdentity {
        /// The remote device, as `name.device`.
        address: String,
    },
    /// A key or bundle that does not parse or whose signature fails.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// There is no session with that address.
    #[error("no session with {address}")]
    NoSession {
        /// The remote device, as `name.device`.
        address: String,
    },
    /// A PreKeySignalMessage names a one-time prekey this device does not have (used already).
    #[error("unknown one-time prekey {id}")]
    UnknownPreKey {
        /// The prekey id the message names.
        id: u32,
    },
    /// A PreKeySignalMessage names a KEM prekey this device does not have (a one-time key used
    /// already, or a last-resort key superseded).
    #[error("unknown KEM prekey {id}")]
    UnknownKemPreKey {
        /// The KEM prekey id the message names.
        id: u32,
    },
    /// A PreKeySignalMessage that started a session on a last-resort KEM prekey before, sent
    /// again after that session left the record: a replay.
    #[error("a first message replayed: a session was started with this base key before")]
    ReplayedFirstMessage,
    /// A PreKeySignalMessage names a signed prekey this device does not have.
    #[error("unknown signed prekey {id}")]
    UnknownSignedPreKey {
        /// The signed prekey id the message names.
        id: u32,
    },
    /// The suite was not offered by the remote device, or is not known here.
    #[error("suite not supported: {0}")]
    UnsupportedSuite(String),
    /// A group message from a sender whose sender key this device does not hold.
    #[error("no sender key for {sender} in this group")]
    NoSenderKey {
        /// The sender, as `name.device`.
        sender: String,
    },
    /// A distribution of a sender key this device has seen replaced (by a newer key of the same
    /// sender, or pushed out of the record): a retired key does not come back.
    #[error("sender key {key_id} was retired and does not come back")]
    RetiredSenderKey {
        /// The sender key's id, as in its distribution message.
        key_id: u32,
    },
    /// Bytes that do not decode (oversized, malformed protobuf).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A stored record that does not make sense (wrong key lengths, missing fields).
    #[error("invalid stored record: {0}")]
    InvalidRecord(&'static str),
    /// A store backend failed.
    #[error("store failed: {0}")]
    Store(String),
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
