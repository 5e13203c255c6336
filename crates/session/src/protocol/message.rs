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
use prost::bytes::BufMut;
use prost::encoding::{WireType, encode_key, encode_varint};
use subtle::ConstantTimeEq;
use std::ops::Range;

use switchboard_wire::scan::{Kind, scan};
use switchboard_wire::{DecodeError, decode, decode_canonical, limits, signal};

use crate::cipher;
use crate::error::{Error, Result};
use crate::kdf;
use crate::keys::{IdentityKey, PUBLIC_KEY_LEN, PublicKey};
use crate::ratchet::keys::MessageKeys;
use crate::suite::{Cipher, Suite};

/// Length of the truncated MAC of a `signal-v3` SignalMessage.
pub const MAC_LEN: usize = 8;

/// A parsed or freshly written SignalMessage. The message is kept in the one buffer it arrived in
/// (or was framed in; for the inner message of a PreKeySignalMessage, the outer message's): its
/// wire bytes and its ciphertext are ranges of that buffer.
#[derive(Clone, Debug)]
pub struct SignalMessage {
    suite: Suite,
    ratchet_key: PublicKey,
    counter: u32,
    previous_counter: u32,
    /// Where the message's wire bytes lie in `buffer`.
    wire: Range<usize>,
    /// Where the ciphertext lies in `buffer`.
    ciphertext: Range<usize>,
    /// The wire bytes and, only for the rare encodings that [`scan`] leaves to prost, the
    /// ciphertext prost read after them.
    buffer: Vec<u8>,
}

/// The identities a message is bound to, in the order the MAC and AAD list them.
pub(crate) struct Parties<'a> {
    pub sender: &'a IdentityKey,
    pub receiver: &'a IdentityKey,
}

/// How SignalMessage's fields are declared, field 1 first.
const FIELDS: [Kind; 4] = [Kind::Bytes, Kind::Uint32, Kind::Uint32, Kind::Bytes];

impl SignalMessage {
    /// Encrypts `plaintext` under `keys` and frames it, encrypting straight into the message.
    pub(crate) fn encrypt(
        suite: Suite,
        keys: &MessageKeys,
        ratchet_key: PublicKey,
        previous_counter: u32,
        plaintext: &[u8],
        parties: Parties<'_>,
        prekey_header: &[u8],
    ) -> SignalMessage {
        let version = suite.version_byte();
        let ciphertext_len = match suite.cipher() {
            Cipher::CbcHmac => cipher::cbc_len(plaintext.len()),
            Cipher::Gcm => plaintext.len() + cipher::GCM_TAG_LEN,
        };
        let mut buffer = Vec::with_capacity(1 + HEADER_MAX_LEN + CIPHERTEXT_KEY_MAX_LEN + ciphertext_len + MAC_LEN);
        buffer.push(version);
        encode_header(&mut buffer, &ratchet_key, keys.index, previous_counter);
        encode_key(4, WireType::LengthDelimited, &mut buffer);
        encode_varint(ciphertext_len as u64, &mut buffer);
        let start = buffer.len();
        match suite.cipher() {
            Cipher::CbcHmac => {
                cipher::cbc_encrypt_into(keys.cipher_key(), keys.iv(), plaintext, &mut buffer);
                let mac = v3_mac(keys.mac_key(), &parties, &buffer);
                buffer.extend_from_slice(&mac);
            }
            Cipher::Gcm => {
                let aad = GcmAad::new(version, &parties, &ratchet_key, keys.index, previous_counter, prekey_header);
                cipher::gcm_encrypt_into(keys.cipher_key(), keys.gcm_nonce(), plaintext, aad.bytes(), &mut buffer);
            }
        }
        debug_assert_eq!(buffer.len(), start + ciphertext_len + if suite.cipher() == Cipher::CbcHmac { MAC_LEN } else { 0 });
        SignalMessage {
            suite,
            ratchet_key,
            counter: keys.index,
            previous_counter,
            wire: 0..buffer.len(),
            ciphertext: start..start + ciphertext_len,
            buffer,
        }
    }

    /// Parses a SignalMessage from the wire. Checks the framing only; the MAC or tag is checked
    /// when it is decrypted.
    pub fn parse(bytes: &[u8]) -> Result<SignalMessage> {
        Self::parse_owned(bytes.to_vec())
    }

    /// [`Self::parse`], keeping `bytes` as the message's buffer instead of copying them.
    pub fn parse_owned(bytes: Vec<u8>) -> Result<SignalMessage> {
        let wire = 0..bytes.len();
        Self::parse_within(bytes, wire)
    }

    /// Parses the message at `wire` in `buffer`, keeping the buffer (the outer message, for the
    /// inner message of a PreKeySignalMessage).
    pub(crate) fn parse_within(buffer: Vec<u8>, wire: Range<usize>) -> Result<SignalMessage> {
        let bytes = &buffer[wire.clone()];
        let (&version, body) = bytes.split_first().ok_or(Error::InvalidMessage("empty message"))?;
        let suite = Suite::from_version_byte(version)?;
        let body = match suite.cipher() {
            Cipher::CbcHmac => {
                let end = body.len().checked_sub(MAC_LEN).ok_or(Error::InvalidMessage("message shorter than its MAC"))?;
                &body[..end]
            }
            Cipher::Gcm => body,
        };
        if body.len() > limits::MAX_MESSAGE_LEN {
            return Err(DecodeError::TooLong { len: body.len(), limit: limits::MAX_MESSAGE_LEN }.into());
        }
        let Some(fields) = scan(body, FIELDS) else {
            return Self::parse_with_prost(suite, buffer, wire);
        };
        if suite.cipher() == Cipher::Gcm && !fields.canonical {
            return Err(DecodeError::NonCanonical.into());
        }
        let ratchet_key = parse_ratchet_key(fields.bytes(1).map(|range| &body[range]))?;
        let counter = fields.uint32(2).ok_or(Error::InvalidMessage("no counter"))?;
        let ciphertext = fields.bytes(4).ok_or(Error::InvalidMessage("no ciphertext"))?;
        // `body` starts after the version byte.
        let offset = wire.start + 1;
        Ok(SignalMessage {
            suite,
            ratchet_key,
            counter,
            previous_counter: fields.uint32(3).unwrap_or(0),
            wire,
            ciphertext: ciphertext.start + offset..ciphertext.end + offset,
            buffer,
        })
    }

    /// The slow path of [`Self::parse_within`], for what [`scan`] declines: prost's decoding, its
    /// errors, and for an encoding it accepts (one with groups, say) the ciphertext it read, kept
    /// after the wire bytes.
    fn parse_with_prost(suite: Suite, mut buffer: Vec<u8>, wire: Range<usize>) -> Result<SignalMessage> {
        let body = &buffer[wire.start + 1..];
        let body = match suite.cipher() {
            Cipher::CbcHmac => &body[..wire.len() - 1 - MAC_LEN],
            Cipher::Gcm => &body[..wire.len() - 1],
        };
        let structure: signal::SignalMessage = match suite.cipher() {
            Cipher::CbcHmac => decode(body, limits::MAX_MESSAGE_LEN)?,
            Cipher::Gcm => decode_canonical(body, limits::MAX_MESSAGE_LEN)?,
        };
        let ratchet_key = parse_ratchet_key(structure.ratchet_key.as_deref())?;
        let counter = structure.counter.ok_or(Error::InvalidMessage("no counter"))?;
        let ciphertext = structure.ciphertext.ok_or(Error::InvalidMessage("no ciphertext"))?;
        let start = buffer.len();
        buffer.extend_from_slice(&ciphertext);
        Ok(SignalMessage {
            suite,
            ratchet_key,
            counter,
            previous_counter: structure.previous_counter.unwrap_or(0),
            wire,
            ciphertext: start..buffer.len(),
            buffer,
        })
    }

    /// This message moved into `buffer`, where its wire bytes are at `wire` (the outer message a
    /// PreKeySignalMessage frames around it).
    pub(crate) fn moved_into(self, buffer: Vec<u8>, wire: Range<usize>) -> SignalMessage {
        // Only for a message just framed by `encrypt`, whose ciphertext lies within its wire
        // bytes (not one parsed by prost's path, which keeps its ciphertext after them).
        assert!(self.wire.start <= self.ciphertext.start && self.ciphertext.end <= self.wire.end);
        debug_assert_eq!(&buffer[wire.clone()], self.serialize());
        let shift = |at: usize| at - self.wire.start + wire.start;
        SignalMessage { ciphertext: shift(self.ciphertext.start)..shift(self.ciphertext.end), wire, buffer, ..self }
    }

    /// The buffer the message lies in.
    pub(crate) fn buffer(&self) -> &[u8] {
        &self.buffer
    }

    /// Checks the MAC or tag under `keys`, then decrypts (a copy: the message is left as it is).
    pub(crate) fn decrypt(&self, keys: &MessageKeys, parties: Parties<'_>, prekey_header: &[u8]) -> Result<Vec<u8>> {
        let mut copy = self.clone();
        let plaintext = copy.decrypt_in_place(keys, parties, prekey_header)?;
        Ok(copy.into_plaintext(plaintext))
    }

    /// Checks the MAC or tag under `keys`, then decrypts in the message's own buffer, and
    /// returns where the plaintext lies in it ([`Self::plaintext`], [`Self::into_plaintext`]).
    /// A failure (a MAC or tag that does not verify, bad padding) leaves the message as it was;
    /// once the plaintext is there, the message is no longer one to decrypt again or to
    /// serialize.
    pub(crate) fn decrypt_in_place(&mut self, keys: &MessageKeys, parties: Parties<'_>, prekey_header: &[u8]) -> Result<Range<usize>> {
        let start = self.ciphertext.start;
        let length = match self.suite.cipher() {
            Cipher::CbcHmac => {
                let wire = self.serialize();
                let (body, mac) = wire.split_at(wire.len() - MAC_LEN);
                let expected = v3_mac(keys.mac_key(), &parties, body);
                // A deliberate defect, built only to show that the differential fuzz target
                // finds a divergence from libsignal-c (FUZZING.md): the MAC's last byte unchecked.
                #[cfg(switchboard_inject_divergence)]
                let (expected, mac) = (&expected[..MAC_LEN - 1], &mac[..MAC_LEN - 1]);
                if !bool::from(expected.ct_eq(mac)) {
                    return Err(Error::InvalidMessage("MAC does not verify"));
                }
                cipher::cbc_decrypt_in_place(keys.cipher_key(), keys.iv(), &mut self.buffer[self.ciphertext.clone()])?
            }
            Cipher::Gcm => {
                let aad = GcmAad::new(
                    self.suite.version_byte(),
                    &parties,
                    &self.ratchet_key,
                    self.counter,
                    self.previous_counter,
                    prekey_header,
                );
                cipher::gcm_decrypt_in_place(keys.cipher_key(), keys.gcm_nonce(), &mut self.buffer[self.ciphertext.clone()], aad.bytes())?
            }
        };
        Ok(start..start + length)
    }

    /// The plaintext [`Self::decrypt_in_place`] left at `plaintext`.
    pub(crate) fn plaintext(&self, plaintext: Range<usize>) -> &[u8] {
        &self.buffer[plaintext]
    }

    /// The plaintext [`Self::decrypt_in_place`] left at `plaintext`, in the message's buffer.
    /// Its spare capacity may hold a part of the plaintext (moved to the front): wiping the
    /// plaintext means wiping the whole capacity, as `Zeroizing` does.
    pub(crate) fn into_plaintext(self, plaintext: Range<usize>) -> Vec<u8> {
        let mut buffer = self.buffer;
        buffer.truncate(plaintext.end);
        buffer.drain(..plaintext.start);
        buffer
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

    /// The counter of the last message the sender sent on its previous sending chain (0 if it sent
    /// none), as libsignal writes it. Carried for compatibility; no receiver here reads it.
    pub fn previous_counter(&self) -> u32 {
        self.previous_counter
    }

    /// The exact bytes on the wire.
    pub fn serialize(&self) -> &[u8] {
        &self.buffer[self.wire.clone()]
    }
}

/// Field 1, the sender's ratchet key: present and well formed.
fn parse_ratchet_key(bytes: Option<&[u8]>) -> Result<PublicKey> {
    PublicKey::from_bytes(bytes.ok_or(Error::InvalidMessage("no ratchet key"))?)
        .map_err(|_| Error::InvalidMessage("malformed ratchet key"))
}

fn v3_mac(mac_key: &[u8; 32], parties: &Parties<'_>, body: &[u8]) -> [u8; MAC_LEN] {
    let mut mac = kdf::hmac(mac_key);
    mac.update(&parties.sender.serialize());
    mac.update(&parties.receiver.serialize());
    mac.update(body);
    let full = kdf::hmac_finish(mac);
    let mut truncated = [0u8; MAC_LEN];
    truncated.copy_from_slice(&full[..MAC_LEN]);
    truncated
}

/// Longest encoding of the header fields [`encode_header`] writes: ratchet key (2 + 33 bytes),
/// counter and previous counter (1 + 5 bytes each).
const HEADER_MAX_LEN: usize = 2 + PUBLIC_KEY_LEN + 2 * (1 + 5);
/// Longest key and length prefix of the ciphertext field.
const CIPHERTEXT_KEY_MAX_LEN: usize = 1 + 5;

/// Fields 1 to 3 of a SignalMessage (ratchet key, counter, previous counter), byte for byte as
/// prost encodes `signal::SignalMessage` with all three present: fields in tag order, each key and
/// length a varint. Writing them straight into the output saves the owned copies prost's struct
/// needs (and, under GCM, a second buffer for the associated data).
fn encode_header(out: &mut impl BufMut, ratchet_key: &PublicKey, counter: u32, previous_counter: u32) {
    encode_key(1, WireType::LengthDelimited, out);
    encode_varint(PUBLIC_KEY_LEN as u64, out);
    out.put_slice(&ratchet_key.serialize());
    encode_key(2, WireType::Varint, out);
    encode_varint(u64::from(counter), out);
    encode_key(3, WireType::Varint, out);
    encode_varint(u64::from(previous_counter), out);
}

/// The associated data of a GCM message: sender identity ‖ receiver identity ‖ version byte ‖
/// header fields 1–3 as [`encode_header`] writes them ‖ the PreKeySignalMessage's outer header (if
/// any). Kept on the stack unless there is an outer header.
enum GcmAad {
    Inline { bytes: [u8; GCM_AAD_INLINE_LEN], len: usize },
    WithPreKeyHeader(Vec<u8>),
}

/// Identities, version byte and the longest header.
const GCM_AAD_INLINE_LEN: usize = 2 * PUBLIC_KEY_LEN + 1 + HEADER_MAX_LEN;

impl GcmAad {
    fn new(
        version: u8,
        parties: &Parties<'_>,
        ratchet_key: &PublicKey,
        counter: u32,
        previous_counter: u32,
        prekey_header: &[u8],
    ) -> GcmAad {
        fn write(out: &mut impl BufMut, version: u8, parties: &Parties<'_>, key: &PublicKey, counter: u32, previous: u32) {
            out.put_slice(&parties.sender.serialize());
            out.put_slice(&parties.receiver.serialize());
            out.put_u8(version);
            encode_header(out, key, counter, previous);
        }
        if prekey_header.is_empty() {
            let mut bytes = [0u8; GCM_AAD_INLINE_LEN];
            let mut rest = &mut bytes[..];
            write(&mut rest, version, parties, ratchet_key, counter, previous_counter);
            let len = GCM_AAD_INLINE_LEN - rest.len();
            return GcmAad::Inline { bytes, len };
        }
        let mut aad = Vec::with_capacity(GCM_AAD_INLINE_LEN + prekey_header.len());
        write(&mut aad, version, parties, ratchet_key, counter, previous_counter);
        aad.extend_from_slice(prekey_header);
        GcmAad::WithPreKeyHeader(aad)
    }

    fn bytes(&self) -> &[u8] {
        match self {
            GcmAad::Inline { bytes, len } => &bytes[..*len],
            GcmAad::WithPreKeyHeader(bytes) => bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use switchboard_wire::Message;

    use super::*;

    /// The hand-written framing is byte for byte prost's encoding of the same message, and what
    /// `encrypt` frames parses and decrypts back, under both suites.
    #[test]
    fn framing_matches_prost() {
        let key = PublicKey::from_bytes(&[[5u8].as_slice(), &[0xa7; 32]].concat()).unwrap();
        let (sender, receiver) = (key, PublicKey::from_bytes(&[[5u8].as_slice(), &[0x3c; 32]].concat()).unwrap());
        let counters = [0, 1, 127, 128, 300, 16_383, 16_384, 2_097_152, u32::MAX - 1, u32::MAX];
        for (i, &counter) in counters.iter().enumerate() {
            let previous_counter = counters[counters.len() - 1 - i];
            let header = signal::SignalMessage {
                ratchet_key: Some(key.serialize().to_vec()),
                counter: Some(counter),
                previous_counter: Some(previous_counter),
                ciphertext: None,
            };
            let mut ours = Vec::new();
            encode_header(&mut ours, &key, counter, previous_counter);
            assert_eq!(ours, header.encode_to_vec());
            assert!(ours.len() <= HEADER_MAX_LEN);
            for suite in [Suite::SignalV3, Suite::Aes256Gcm] {
                for len in [0usize, 15, 16, 112, 127, 128, 16_400, 65_552] {
                    let plaintext = vec![0x5au8; len];
                    let keys = MessageKeys::from_parts(&[1; 32], &[2; 32], &[3; 16], counter);
                    let parties = || Parties { sender: &sender, receiver: &receiver };
                    let message = SignalMessage::encrypt(suite, &keys, key, previous_counter, &plaintext, parties(), &[]);
                    let wire = message.serialize();
                    let body = match suite.cipher() {
                        Cipher::CbcHmac => &wire[1..wire.len() - MAC_LEN],
                        Cipher::Gcm => &wire[1..],
                    };
                    let full = signal::SignalMessage { ciphertext: Some(message.buffer[message.ciphertext.clone()].to_vec()), ..header.clone() };
                    assert_eq!(body, full.encode_to_vec(), "{} {len}", suite.name());
                    let parsed = SignalMessage::parse(wire).unwrap();
                    assert_eq!((parsed.counter(), parsed.previous_counter(), parsed.ratchet_key()), (counter, previous_counter, &key));
                    assert_eq!(parsed.decrypt(&keys, parties(), &[]).unwrap(), plaintext, "{} {len}", suite.name());
                }
            }
        }
    }
}
