//! PreKeySignalMessage: the X3DH inputs an initiator repeats with each message until the responder
//! replies, wrapped around a SignalMessage. `version byte ‖ protobuf`, as libsignal writes it.
//!
//! Under `signal-v3` the outer fields are authenticated only through the keys they select (base
//! key, identity key, prekey ids) and the inner MAC (identity key); the registration id is not
//! authenticated at all, as in libsignal. Under `aes-256-gcm` the whole outer header is part of
//! the inner message's associated data.
//!
//! The post-quantum suites add the KEM prekey's id (field 7) and the ciphertext sent to it (field
//! 8, type byte first), as libsignal's PQXDH messages do; a message of a post-quantum suite
//! without them, or of a classical suite with them, is refused. The ciphertext is authenticated
//! through the secret it yields (and, under `pq-aes-256-gcm`, as associated data too).

use switchboard_wire::scan::{Kind, scan};
use switchboard_wire::{DecodeError, Message, decode, decode_canonical, limits, signal};

use crate::error::{Error, Result};
use crate::kem::KEM_CIPHERTEXT_LEN;
use crate::keys::{IdentityKey, PublicKey};
use crate::protocol::SignalMessage;
use crate::ratchet::state::PendingKem;
use crate::suite::{Cipher, Suite};

/// A parsed or freshly written PreKeySignalMessage. Its wire bytes are the first `wire_len` bytes
/// of the inner message's buffer: the inner message lies within them, not in a copy of its own.
#[derive(Clone, Debug)]
pub struct PreKeySignalMessage {
    header: PreKeyHeader,
    message: SignalMessage,
    wire_len: usize,
}

/// How PreKeySignalMessage's fields are declared, field 1 first.
const FIELDS: [Kind; 8] =
    [Kind::Uint32, Kind::Bytes, Kind::Bytes, Kind::Bytes, Kind::Uint32, Kind::Uint32, Kind::Uint32, Kind::Bytes];

/// The outer fields, before the inner message exists.
#[derive(Clone, Debug)]
pub(crate) struct PreKeyHeader {
    pub suite: Suite,
    pub registration_id: u32,
    pub prekey_id: Option<u32>,
    pub signed_prekey_id: u32,
    pub base_key: PublicKey,
    pub identity_key: IdentityKey,
    pub kem: Option<PendingKem>,
}

impl PreKeyHeader {
    fn structure(&self) -> signal::PreKeySignalMessage {
        signal::PreKeySignalMessage {
            pre_key_id: self.prekey_id,
            base_key: Some(self.base_key.serialize().to_vec()),
            identity_key: Some(self.identity_key.serialize().to_vec()),
            message: None,
            registration_id: Some(self.registration_id),
            signed_pre_key_id: Some(self.signed_prekey_id),
            kyber_pre_key_id: self.kem.as_ref().map(|kem| kem.prekey_id),
            kyber_ciphertext: self.kem.as_ref().map(|kem| kem.ciphertext.clone()),
        }
    }

    /// The bytes the inner message's associated data covers (empty under `signal-v3`).
    pub(crate) fn associated_data(&self) -> Vec<u8> {
        match self.suite.cipher() {
            Cipher::CbcHmac => Vec::new(),
            Cipher::Gcm => self.structure().encode_to_vec(),
        }
    }

    /// Wraps `message` (already encrypted with [`Self::associated_data`]).
    pub(crate) fn wrap(self, message: SignalMessage) -> PreKeySignalMessage {
        let mut structure = self.structure();
        structure.message = Some(message.serialize().to_vec());
        let mut serialized = Vec::with_capacity(1 + structure.encoded_len());
        serialized.push(self.suite.version_byte());
        structure.encode(&mut serialized).expect("a Vec grows as needed");
        let inner = scan(&serialized[1..], FIELDS).and_then(|fields| fields.bytes(4)).expect("the message just encoded");
        let wire_len = serialized.len();
        let message = message.moved_into(serialized, inner.start + 1..inner.end + 1);
        PreKeySignalMessage { header: self, message, wire_len }
    }
}

impl PreKeySignalMessage {
    /// Parses a PreKeySignalMessage from the wire, with its inner SignalMessage.
    pub fn parse(bytes: &[u8]) -> Result<PreKeySignalMessage> {
        let (&version, body) = bytes.split_first().ok_or(Error::InvalidMessage("empty message"))?;
        let suite = Suite::from_version_byte(version)?;
        if body.len() > limits::MAX_MESSAGE_LEN {
            return Err(DecodeError::TooLong { len: body.len(), limit: limits::MAX_MESSAGE_LEN }.into());
        }
        let Some(fields) = scan(body, FIELDS) else {
            return Self::parse_with_prost(suite, bytes, body);
        };
        if suite.cipher() == Cipher::Gcm && !fields.canonical {
            return Err(DecodeError::NonCanonical.into());
        }
        let field = |number| fields.bytes(number).map(|range| &body[range]);
        let outer = Outer {
            pre_key_id: fields.uint32(1),
            base_key: field(2),
            identity_key: field(3),
            registration_id: fields.uint32(5),
            signed_pre_key_id: fields.uint32(6),
            kyber_pre_key_id: fields.uint32(7),
            kyber_ciphertext: field(8),
        };
        let (base_key, identity_key) = outer.keys()?;
        // The inner message stays where it lies in the outer one: `body` starts after the version
        // byte.
        let inner = fields.bytes(4).ok_or(Error::InvalidMessage("no inner message"))?;
        let message = SignalMessage::parse_within(bytes.to_vec(), inner.start + 1..inner.end + 1)?;
        outer.finish(suite, base_key, identity_key, message, bytes.len())
    }

    /// The slow path of [`Self::parse`], for what [`scan`] declines: prost's decoding and errors,
    /// and for an encoding it accepts, the inner message it read, kept after the wire bytes.
    fn parse_with_prost(suite: Suite, bytes: &[u8], body: &[u8]) -> Result<PreKeySignalMessage> {
        let structure: signal::PreKeySignalMessage = match suite.cipher() {
            Cipher::CbcHmac => decode(body, limits::MAX_MESSAGE_LEN)?,
            Cipher::Gcm => decode_canonical(body, limits::MAX_MESSAGE_LEN)?,
        };
        let outer = Outer {
            pre_key_id: structure.pre_key_id,
            base_key: structure.base_key.as_deref(),
            identity_key: structure.identity_key.as_deref(),
            registration_id: structure.registration_id,
            signed_pre_key_id: structure.signed_pre_key_id,
            kyber_pre_key_id: structure.kyber_pre_key_id,
            kyber_ciphertext: structure.kyber_ciphertext.as_deref(),
        };
        let (base_key, identity_key) = outer.keys()?;
        let inner = structure.message.as_deref().ok_or(Error::InvalidMessage("no inner message"))?;
        let mut buffer = Vec::with_capacity(bytes.len() + inner.len());
        buffer.extend_from_slice(bytes);
        buffer.extend_from_slice(inner);
        let message = SignalMessage::parse_within(buffer, bytes.len()..bytes.len() + inner.len())?;
        outer.finish(suite, base_key, identity_key, message, bytes.len())
    }

    pub(crate) fn header(&self) -> &PreKeyHeader {
        &self.header
    }

    /// The suite the message was written under.
    pub fn suite(&self) -> Suite {
        self.header.suite
    }

    /// The sender's registration id (unauthenticated under `signal-v3`).
    pub fn registration_id(&self) -> u32 {
        self.header.registration_id
    }

    /// The one-time prekey the sender used, if any.
    pub fn prekey_id(&self) -> Option<u32> {
        self.header.prekey_id
    }

    /// The signed prekey the sender used.
    pub fn signed_prekey_id(&self) -> u32 {
        self.header.signed_prekey_id
    }

    /// The sender's X3DH ephemeral key.
    pub fn base_key(&self) -> &PublicKey {
        &self.header.base_key
    }

    /// The sender's identity key.
    pub fn identity_key(&self) -> &IdentityKey {
        &self.header.identity_key
    }

    /// The KEM prekey the sender used (post-quantum suites).
    pub fn kem_prekey_id(&self) -> Option<u32> {
        self.header.kem.as_ref().map(|kem| kem.prekey_id)
    }

    /// The KEM ciphertext, type byte first (post-quantum suites).
    pub fn kem_ciphertext(&self) -> Option<&[u8]> {
        self.header.kem.as_ref().map(|kem| kem.ciphertext.as_slice())
    }

    /// The inner SignalMessage.
    pub fn message(&self) -> &SignalMessage {
        &self.message
    }

    /// The exact bytes on the wire.
    pub fn serialize(&self) -> &[u8] {
        &self.message.buffer()[..self.wire_len]
    }
}

/// The outer fields as read, by whichever decoder read them.
struct Outer<'a> {
    pre_key_id: Option<u32>,
    base_key: Option<&'a [u8]>,
    identity_key: Option<&'a [u8]>,
    registration_id: Option<u32>,
    signed_pre_key_id: Option<u32>,
    kyber_pre_key_id: Option<u32>,
    kyber_ciphertext: Option<&'a [u8]>,
}

impl Outer<'_> {
    /// The base key and identity key, present and well formed.
    fn keys(&self) -> Result<(PublicKey, IdentityKey)> {
        let key = |bytes: Option<&[u8]>, missing: &'static str, malformed: &'static str| {
            PublicKey::from_bytes(bytes.ok_or(Error::InvalidMessage(missing))?)
                .map_err(|_| Error::InvalidMessage(malformed))
        };
        let base_key = key(self.base_key, "no base key", "malformed base key")?;
        // The base key is not authenticated, and sessions (and uses of a last-resort KEM prekey)
        // are found by its bytes: an alias of it, agreeing to the same secrets, would set up the
        // same session a second time and read its messages again. libsignal-c takes aliases
        // (found by the differential_session target).
        if !base_key.is_canonical() {
            return Err(Error::InvalidMessage("base key not in canonical form"));
        }
        let identity_key = key(self.identity_key, "no identity key", "malformed identity key")?;
        Ok((base_key, identity_key))
    }

    /// The message, once its inner message is parsed: the checks after the keys, in the order
    /// they have always been made.
    fn finish(
        self,
        suite: Suite,
        base_key: PublicKey,
        identity_key: IdentityKey,
        message: SignalMessage,
        wire_len: usize,
    ) -> Result<PreKeySignalMessage> {
        if message.suite() != suite {
            return Err(Error::InvalidMessage("inner message is of another suite"));
        }
        let header = PreKeyHeader {
            suite,
            registration_id: self.registration_id.unwrap_or(0),
            prekey_id: self.pre_key_id,
            signed_prekey_id: self.signed_pre_key_id.ok_or(Error::InvalidMessage("no signed prekey id"))?,
            base_key,
            identity_key,
            kem: kem_fields(suite, self.kyber_pre_key_id, self.kyber_ciphertext)?,
        };
        Ok(PreKeySignalMessage { header, message, wire_len })
    }
}

/// Fields 7 and 8: both present, of the suite's KEM and length, under a post-quantum suite; both
/// absent under a classical one.
fn kem_fields(suite: Suite, id: Option<u32>, ciphertext: Option<&[u8]>) -> Result<Option<PendingKem>> {
    match (suite.kem(), id, ciphertext) {
        (None, None, None) => Ok(None),
        (None, _, _) => Err(Error::InvalidMessage("KEM fields in a message of a classical suite")),
        (Some(kem), Some(prekey_id), Some(ciphertext)) => {
            if ciphertext.len() != 1 + KEM_CIPHERTEXT_LEN || ciphertext[0] != kem.type_byte() {
                return Err(Error::InvalidMessage("KEM ciphertext of the wrong KEM or length"));
            }
            Ok(Some(PendingKem { prekey_id, ciphertext: ciphertext.to_vec() }))
        }
        (Some(_), _, _) => Err(Error::InvalidMessage("post-quantum message without its KEM prekey id and ciphertext")),
    }
}
