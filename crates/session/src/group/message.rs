//! Group messages on the wire.
//!
//! SenderKeyMessage: `version ‖ protobuf ‖ signature`, the 64-byte signature by the sender's
//! signing key over version and protobuf, exactly as libsignal writes it. Under `aes-256-gcm`
//! (version 0xa1) the ciphertext is AES-256-GCM with the version byte and the protobuf header
//! (key id, iteration) as associated data, and the protobuf must be canonical.
//!
//! SenderKeyDistributionMessage: `version ‖ protobuf`, handed to each member over a pairwise
//! session, which authenticates it.

use switchboard_wire::{Message, decode, decode_canonical, limits, signal};

use crate::error::{Error, Result};
use crate::group::state::VerifyingKey;
use crate::keys::PublicKey;
use crate::suite::{Cipher, Suite};
use crate::xeddsa::SIGNATURE_LEN;

/// A parsed SenderKeyMessage; its signature is checked by the group cipher.
#[derive(Clone, Debug)]
pub struct SenderKeyMessage {
    pub(crate) suite: Suite,
    pub(crate) key_id: u32,
    pub(crate) iteration: u32,
    pub(crate) ciphertext: Vec<u8>,
    serialized: Vec<u8>,
}

impl SenderKeyMessage {
    /// Frames a message and signs it with `sign`.
    pub(crate) fn new(
        suite: Suite,
        key_id: u32,
        iteration: u32,
        ciphertext: Vec<u8>,
        sign: impl FnOnce(&[u8]) -> [u8; SIGNATURE_LEN],
    ) -> SenderKeyMessage {
        let structure = signal::SenderKeyMessage { id: Some(key_id), iteration: Some(iteration), ciphertext: Some(ciphertext) };
        let mut serialized = Vec::with_capacity(1 + structure.encoded_len() + SIGNATURE_LEN);
        serialized.push(suite.version_byte());
        structure.encode(&mut serialized).expect("a Vec grows as needed");
        let signature = sign(&serialized);
        serialized.extend_from_slice(&signature);
        SenderKeyMessage {
            suite,
            key_id,
            iteration,
            ciphertext: structure.ciphertext.unwrap_or_default(),
            serialized,
        }
    }

    /// The associated data of a GCM group message: version byte and header.
    pub(crate) fn gcm_associated_data(suite: Suite, key_id: u32, iteration: u32) -> Vec<u8> {
        let header = signal::SenderKeyMessage { id: Some(key_id), iteration: Some(iteration), ciphertext: None };
        let mut aad = vec![suite.version_byte()];
        header.encode(&mut aad).expect("a Vec grows as needed");
        aad
    }

    /// Parses a SenderKeyMessage from the wire.
    pub fn parse(bytes: &[u8]) -> Result<SenderKeyMessage> {
        let (&version, _) = bytes.split_first().ok_or(Error::InvalidMessage("empty message"))?;
        let suite = Suite::classical_from_version_byte(version)?;
        let end = bytes
            .len()
            .checked_sub(SIGNATURE_LEN)
            .filter(|end| *end >= 1)
            .ok_or(Error::InvalidMessage("message shorter than its signature"))?;
        let body = &bytes[1..end];
        let structure: signal::SenderKeyMessage = match suite.cipher() {
            Cipher::CbcHmac => decode(body, limits::MAX_MESSAGE_LEN)?,
            Cipher::Gcm => decode_canonical(body, limits::MAX_MESSAGE_LEN)?,
        };
        Ok(SenderKeyMessage {
            suite,
            key_id: structure.id.ok_or(Error::InvalidMessage("no key id"))?,
            iteration: structure.iteration.ok_or(Error::InvalidMessage("no iteration"))?,
            ciphertext: structure.ciphertext.ok_or(Error::InvalidMessage("no ciphertext"))?,
            serialized: bytes.to_vec(),
        })
    }

    /// The signed part (version and protobuf) and the signature.
    pub(crate) fn signed_parts(&self) -> (&[u8], &[u8; SIGNATURE_LEN]) {
        let (body, signature) = self.serialized.split_at(self.serialized.len() - SIGNATURE_LEN);
        (body, signature.try_into().expect("split at the signature length"))
    }

    /// The sender key id the message was written under.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The message's index in the sender chain.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The suite the message was written under.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The exact bytes on the wire.
    pub fn serialize(&self) -> &[u8] {
        &self.serialized
    }
}

/// A sender key as handed to one member: key id, current iteration, chain key, public signing key.
#[derive(Clone)]
pub struct SenderKeyDistributionMessage {
    pub(crate) suite: Suite,
    pub(crate) key_id: u32,
    pub(crate) iteration: u32,
    pub(crate) chain_key: zeroize::Zeroizing<[u8; 32]>,
    /// The signing key, decompressed when the message was parsed (or taken from our state).
    pub(crate) verifying: VerifyingKey,
    serialized: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SenderKeyDistributionMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderKeyDistributionMessage")
            .field("suite", &self.suite)
            .field("key_id", &self.key_id)
            .field("iteration", &self.iteration)
            .field("chain_key", &"<redacted>")
            .field("signing_key", self.verifying.public())
            .finish()
    }
}

impl SenderKeyDistributionMessage {
    pub(crate) fn new(suite: Suite, key_id: u32, iteration: u32, chain_key: &[u8; 32], verifying: VerifyingKey) -> Self {
        let structure = signal::SenderKeyDistributionMessage {
            id: Some(key_id),
            iteration: Some(iteration),
            chain_key: Some(chain_key.to_vec()),
            signing_key: Some(verifying.public().serialize().to_vec()),
        };
        let mut serialized = zeroize::Zeroizing::new(Vec::with_capacity(1 + structure.encoded_len()));
        serialized.push(suite.version_byte());
        structure.encode(&mut *serialized).expect("a Vec grows as needed");
        let mut structure = structure;
        if let Some(chain) = structure.chain_key.as_mut() {
            zeroize::Zeroize::zeroize(chain);
        }
        SenderKeyDistributionMessage {
            suite,
            key_id,
            iteration,
            chain_key: zeroize::Zeroizing::new(*chain_key),
            verifying,
            serialized,
        }
    }

    /// Parses a distribution message (received over a pairwise session).
    pub fn parse(bytes: &[u8]) -> Result<SenderKeyDistributionMessage> {
        let (&version, body) = bytes.split_first().ok_or(Error::InvalidMessage("empty message"))?;
        let suite = Suite::classical_from_version_byte(version)?;
        let mut structure: signal::SenderKeyDistributionMessage = match suite.cipher() {
            Cipher::CbcHmac => decode(body, limits::MAX_DISTRIBUTION_LEN)?,
            Cipher::Gcm => decode_canonical(body, limits::MAX_DISTRIBUTION_LEN)?,
        };
        let chain = zeroize::Zeroizing::new(structure.chain_key.take().unwrap_or_default());
        let chain_key: [u8; 32] =
            chain.as_slice().try_into().map_err(|_| Error::InvalidMessage("chain key is not 32 bytes"))?;
        let signing_key = PublicKey::from_bytes(structure.signing_key.as_deref().unwrap_or_default())
            .map_err(|_| Error::InvalidMessage("malformed signing key"))?;
        // Refused here, not only when the key is installed: a receiver may keep a distribution
        // for later (its sender's joining not yet announced), and must know now that it is usable.
        // The point is kept for the state the message will make.
        let verifying =
            VerifyingKey::new(signing_key).map_err(|_| Error::InvalidMessage("signing key has no Edwards form"))?;
        Ok(SenderKeyDistributionMessage {
            suite,
            key_id: structure.id.ok_or(Error::InvalidMessage("no key id"))?,
            iteration: structure.iteration.ok_or(Error::InvalidMessage("no iteration"))?,
            chain_key: zeroize::Zeroizing::new(chain_key),
            verifying,
            serialized: zeroize::Zeroizing::new(bytes.to_vec()),
        })
    }

    /// The sender key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The suite of the sender key.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The public key the sender signs its group messages with under this sender key.
    pub fn signing_key(&self) -> &PublicKey {
        self.verifying.public()
    }

    /// The exact bytes to send (over a pairwise session: they carry a chain key).
    pub fn serialize(&self) -> &[u8] {
        &self.serialized
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of a distribution message whose signing key is `signing_key`, framed as
    /// `SenderKeyDistributionMessage::new` frames one.
    fn distribution_bytes(signing_key: &PublicKey) -> Vec<u8> {
        let structure = signal::SenderKeyDistributionMessage {
            id: Some(7),
            iteration: Some(0),
            chain_key: Some(vec![1; 32]),
            signing_key: Some(signing_key.serialize().to_vec()),
        };
        [vec![Suite::SignalV3.version_byte()], structure.encode_to_vec()].concat()
    }

    #[test]
    fn a_distribution_whose_signing_key_has_no_edwards_form_is_refused_when_parsed() {
        // u = p − 1 has no Edwards form (y = (u − 1)/(u + 1) divides by zero).
        let mut u = [0xffu8; 32];
        u[0] = 0xec;
        u[31] = 0x7f;
        let mut bytes = vec![0x05];
        bytes.extend_from_slice(&u);
        let bad = PublicKey::from_bytes(&bytes).expect("33 bytes, type 0x05");
        assert!(matches!(SenderKeyDistributionMessage::parse(&distribution_bytes(&bad)), Err(Error::InvalidMessage(_))));
        // A genuine key parses, and `new` frames it the same way.
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        let good = crate::keys::KeyPair::generate(&mut rng).public;
        let parsed = SenderKeyDistributionMessage::parse(&distribution_bytes(&good)).unwrap();
        let made = SenderKeyDistributionMessage::new(Suite::SignalV3, 7, 0, &[1; 32], VerifyingKey::new(good).unwrap());
        assert_eq!(parsed.serialize(), made.serialize());
    }
}
