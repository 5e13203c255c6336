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

use switchboard_wire::{Message, decode, decode_canonical, limits, signal};

use crate::error::{Error, Result};
use crate::kem::KEM_CIPHERTEXT_LEN;
use crate::keys::{IdentityKey, PublicKey};
use crate::protocol::SignalMessage;
use crate::ratchet::state::PendingKem;
use crate::suite::{Cipher, Suite};

/// A parsed or freshly written PreKeySignalMessage.
#[derive(Clone, Debug)]
pub struct PreKeySignalMessage {
    header: PreKeyHeader,
    message: SignalMessage,
    serialized: Vec<u8>,
}

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
        PreKeySignalMessage { header: self, message, serialized }
    }
}

impl PreKeySignalMessage {
    /// Parses a PreKeySignalMessage from the wire, with its inner SignalMessage.
    pub fn parse(bytes: &[u8]) -> Result<PreKeySignalMessage> {
        let (&version, body) = bytes.split_first().ok_or(Error::InvalidMessage("empty message"))?;
        let suite = Suite::from_version_byte(version)?;
        let structure: signal::PreKeySignalMessage = match suite.cipher() {
            Cipher::CbcHmac => decode(body, limits::MAX_MESSAGE_LEN)?,
            Cipher::Gcm => decode_canonical(body, limits::MAX_MESSAGE_LEN)?,
        };
        let key = |bytes: Option<&[u8]>, missing: &'static str, malformed: &'static str| {
            PublicKey::from_bytes(bytes.ok_or(Error::InvalidMessage(missing))?)
                .map_err(|_| Error::InvalidMessage(malformed))
        };
        let base_key = key(structure.base_key.as_deref(), "no base key", "malformed base key")?;
        // The base key is not authenticated, and sessions (and uses of a last-resort KEM prekey)
        // are found by its bytes: an alias of it, agreeing to the same secrets, would set up the
        // same session a second time and read its messages again. libsignal-c takes aliases
        // (found by the differential_session target).
        if !base_key.is_canonical() {
            return Err(Error::InvalidMessage("base key not in canonical form"));
        }
        let identity_key =
            key(structure.identity_key.as_deref(), "no identity key", "malformed identity key")?;
        let message = SignalMessage::parse(
            structure.message.as_deref().ok_or(Error::InvalidMessage("no inner message"))?,
        )?;
        if message.suite() != suite {
            return Err(Error::InvalidMessage("inner message is of another suite"));
        }
        let header = PreKeyHeader {
            suite,
            registration_id: structure.registration_id.unwrap_or(0),
            prekey_id: structure.pre_key_id,
            signed_prekey_id: structure.signed_pre_key_id.ok_or(Error::InvalidMessage("no signed prekey id"))?,
            base_key,
            identity_key,
            kem: kem_fields(suite, structure.kyber_pre_key_id, structure.kyber_ciphertext)?,
        };
        Ok(PreKeySignalMessage { header, message, serialized: bytes.to_vec() })
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
        &self.serialized
    }
}

/// Fields 7 and 8: both present, of the suite's KEM and length, under a post-quantum suite; both
/// absent under a classical one.
fn kem_fields(suite: Suite, id: Option<u32>, ciphertext: Option<Vec<u8>>) -> Result<Option<PendingKem>> {
    match (suite.kem(), id, ciphertext) {
        (None, None, None) => Ok(None),
        (None, _, _) => Err(Error::InvalidMessage("KEM fields in a message of a classical suite")),
        (Some(kem), Some(prekey_id), Some(ciphertext)) => {
            if ciphertext.len() != 1 + KEM_CIPHERTEXT_LEN || ciphertext[0] != kem.type_byte() {
                return Err(Error::InvalidMessage("KEM ciphertext of the wrong KEM or length"));
            }
            Ok(Some(PendingKem { prekey_id, ciphertext }))
        }
        (Some(_), _, _) => Err(Error::InvalidMessage("post-quantum message without its KEM prekey id and ciphertext")),
    }
}
