//! SignalMessage: one Double Ratchet message.
//!
//! `signal-v3`: `0x33 ‖ protobuf ‖ MAC`, the MAC being the first 8 bytes of HMAC-SHA256 under the
//! message's MAC key over sender identity ‖ receiver identity ‖ version byte and protobuf, exactly
//! as libsignal writes it.
//!
//! `aes-256-gcm`: `0xa1 ‖ protobuf`, the ciphertext field holding the GCM ciphertext and tag. The
//! associated data is sender identity ‖ receiver identity ‖ version byte ‖ the protobuf header
//! without its ciphertext ‖ (for the inner message of a PreKeySignalMessage) the outer header. The
//! protobuf must be in its canonical encoding, so the tag covers the exact bytes received.

use hmac::Mac;
use subtle::ConstantTimeEq;
use switchboard_wire::{Message, decode, decode_canonical, limits, signal};

use crate::cipher;
use crate::error::{Error, Result};
use crate::kdf;
use crate::keys::{IdentityKey, PublicKey};
use crate::ratchet::keys::{GCM_NONCE_LEN, MessageKeys};
use crate::suite::Suite;

/// Length of the truncated MAC of a `signal-v3` SignalMessage.
pub const MAC_LEN: usize = 8;

/// A parsed or freshly written SignalMessage.
#[derive(Clone, Debug)]
pub struct SignalMessage {
    suite: Suite,
    ratchet_key: PublicKey,
    counter: u32,
    previous_counter: u32,
    ciphertext: Vec<u8>,
    serialized: Vec<u8>,
}

/// The identities a message is bound to, in the order the MAC and AAD list them.
pub(crate) struct Parties<'a> {
    pub sender: &'a IdentityKey,
    pub receiver: &'a IdentityKey,
}

impl SignalMessage {
    /// Encrypts `plaintext` under `keys` and frames it.
    pub(crate) fn encrypt(
        suite: Suite,
        keys: &MessageKeys,
        ratchet_key: PublicKey,
        previous_counter: u32,
        plaintext: &[u8],
        parties: Parties<'_>,
        prekey_header: &[u8],
    ) -> SignalMessage {
        let mut header = signal::SignalMessage {
            ratchet_key: Some(ratchet_key.serialize().to_vec()),
            counter: Some(keys.index),
            previous_counter: Some(previous_counter),
            ciphertext: None,
        };
        let version = suite.version_byte();
        let (ciphertext, serialized) = match suite {
            Suite::SignalV3 => {
                let ciphertext = cipher::cbc_encrypt(&keys.cipher_key, &keys.iv, plaintext);
                header.ciphertext = Some(ciphertext);
                let mut serialized = Vec::with_capacity(1 + header.encoded_len() + MAC_LEN);
                serialized.push(version);
                header.encode(&mut serialized).expect("a Vec grows as needed");
                let mac = v3_mac(&keys.mac_key, &parties, &serialized);
                serialized.extend_from_slice(&mac);
                (header.ciphertext.take().unwrap_or_default(), serialized)
            }
            Suite::Aes256Gcm => {
                let aad = gcm_aad(version, &parties, &header.encode_to_vec(), prekey_header);
                let ciphertext =
                    cipher::gcm_encrypt(&keys.cipher_key, &keys.iv[..GCM_NONCE_LEN], plaintext, &aad);
                header.ciphertext = Some(ciphertext);
                let mut serialized = Vec::with_capacity(1 + header.encoded_len());
                serialized.push(version);
                header.encode(&mut serialized).expect("a Vec grows as needed");
                (header.ciphertext.take().unwrap_or_default(), serialized)
            }
        };
        SignalMessage {
            suite,
            ratchet_key,
            counter: keys.index,
            previous_counter,
            ciphertext,
            serialized,
        }
    }

    /// Parses a SignalMessage from the wire. Checks the framing only; the MAC or tag is checked
    /// when it is decrypted.
    pub fn parse(bytes: &[u8]) -> Result<SignalMessage> {
        let (&version, body) = bytes.split_first().ok_or(Error::InvalidMessage("empty message"))?;
        let suite = Suite::from_version_byte(version)?;
        let structure: signal::SignalMessage = match suite {
            Suite::SignalV3 => {
                let end = body
                    .len()
                    .checked_sub(MAC_LEN)
                    .ok_or(Error::InvalidMessage("message shorter than its MAC"))?;
                decode(&body[..end], limits::MAX_MESSAGE_LEN)?
            }
            Suite::Aes256Gcm => decode_canonical(body, limits::MAX_MESSAGE_LEN)?,
        };
        let ratchet_key = PublicKey::from_bytes(
            structure.ratchet_key.as_deref().ok_or(Error::InvalidMessage("no ratchet key"))?,
        )
        .map_err(|_| Error::InvalidMessage("malformed ratchet key"))?;
        Ok(SignalMessage {
            suite,
            ratchet_key,
            counter: structure.counter.ok_or(Error::InvalidMessage("no counter"))?,
            previous_counter: structure.previous_counter.unwrap_or(0),
            ciphertext: structure.ciphertext.ok_or(Error::InvalidMessage("no ciphertext"))?,
            serialized: bytes.to_vec(),
        })
    }

    /// Checks the MAC or tag under `keys`, then decrypts.
    pub(crate) fn decrypt(&self, keys: &MessageKeys, parties: Parties<'_>, prekey_header: &[u8]) -> Result<Vec<u8>> {
        match self.suite {
            Suite::SignalV3 => {
                let (body, mac) = self.serialized.split_at(self.serialized.len() - MAC_LEN);
                let expected = v3_mac(&keys.mac_key, &parties, body);
                if !bool::from(expected.ct_eq(mac)) {
                    return Err(Error::InvalidMessage("MAC does not verify"));
                }
                cipher::cbc_decrypt(&keys.cipher_key, &keys.iv, &self.ciphertext)
            }
            Suite::Aes256Gcm => {
                let header = signal::SignalMessage {
                    ratchet_key: Some(self.ratchet_key.serialize().to_vec()),
                    counter: Some(self.counter),
                    previous_counter: Some(self.previous_counter),
                    ciphertext: None,
                };
                let aad = gcm_aad(self.suite.version_byte(), &parties, &header.encode_to_vec(), prekey_header);
                cipher::gcm_decrypt(&keys.cipher_key, &keys.iv[..GCM_NONCE_LEN], &self.ciphertext, &aad)
            }
        }
    }

    /// The suite the message was written under.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The sender's ratchet public key.
    pub fn ratchet_key(&self) -> &PublicKey {
        &self.ratchet_key
    }

    /// The message's index in its sending chain.
    pub fn counter(&self) -> u32 {
        self.counter
    }

    /// The length of the sender's previous sending chain.
    pub fn previous_counter(&self) -> u32 {
        self.previous_counter
    }

    /// The exact bytes on the wire.
    pub fn serialize(&self) -> &[u8] {
        &self.serialized
    }
}

fn v3_mac(mac_key: &[u8; 32], parties: &Parties<'_>, body: &[u8]) -> [u8; MAC_LEN] {
    let mut mac = kdf::hmac(mac_key);
    mac.update(&parties.sender.serialize());
    mac.update(&parties.receiver.serialize());
    mac.update(body);
    let full = mac.finalize().into_bytes();
    let mut truncated = [0u8; MAC_LEN];
    truncated.copy_from_slice(&full[..MAC_LEN]);
    truncated
}

fn gcm_aad(version: u8, parties: &Parties<'_>, header: &[u8], prekey_header: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(2 * 33 + 1 + header.len() + prekey_header.len());
    aad.extend_from_slice(&parties.sender.serialize());
    aad.extend_from_slice(&parties.receiver.serialize());
    aad.push(version);
    aad.extend_from_slice(header);
    aad.extend_from_slice(prekey_header);
    aad
}
