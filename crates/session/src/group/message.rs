//! Group messages on the wire.
//!
//! SenderKeyMessage: `version ‖ protobuf ‖ signature`, the 64-byte signature by the sender's
//! signing key over version and protobuf, exactly as libsignal writes it. Under `aes-256-gcm`
//! (version 0xa1) the ciphertext is AES-256-GCM with the version byte and the protobuf header
//! (key id, iteration) as associated data, and the protobuf must be canonical.
//!
//! SenderKeyDistributionMessage: `version ‖ protobuf`, handed to each member over a pairwise
//! session, which authenticates it.

use std::ops::Range;

use prost::bytes::BufMut;
use prost::encoding::{WireType, encode_key, encode_varint};
use switchboard_wire::scan::{Kind, scan};
use switchboard_wire::{DecodeError, Message, decode, decode_canonical, limits, signal};

use crate::cipher;
use crate::error::{Error, Result};
use crate::group::keys::GroupCipherKeys;
use crate::group::state::VerifyingKey;
use crate::keys::PublicKey;
use crate::ratchet::keys::GCM_NONCE_LEN;
use crate::suite::{Cipher, Suite};
use crate::xeddsa::SIGNATURE_LEN;

/// A parsed or freshly written SenderKeyMessage; its signature is checked by the group cipher.
/// The message is kept as the one buffer it arrived in (or was framed in); its ciphertext is a
/// range of that buffer.
#[derive(Clone, Debug)]
pub struct SenderKeyMessage {
    pub(crate) suite: Suite,
    pub(crate) key_id: u32,
    pub(crate) iteration: u32,
    /// The wire bytes, `buffer[..wire_len]`.
    wire_len: usize,
    /// Where the ciphertext lies in `buffer`.
    ciphertext: Range<usize>,
    /// The wire bytes and, only for the rare encodings that [`scan`] leaves to prost, the
    /// ciphertext prost read after them.
    buffer: Vec<u8>,
}

/// How SenderKeyMessage's fields are declared, field 1 first: key id, iteration, ciphertext.
const FIELDS: [Kind; 3] = [Kind::Uint32, Kind::Uint32, Kind::Bytes];

/// Longest encoding of the header fields [`encode_header`] writes: key id and iteration (a key
/// byte and up to 5 bytes of varint each).
const HEADER_MAX_LEN: usize = 2 * (1 + 5);
/// Longest key and length prefix of the ciphertext field (a length below 2^35).
const CIPHERTEXT_KEY_MAX_LEN: usize = 1 + 5;

impl SenderKeyMessage {
    /// Encrypts `plaintext` under `keys`, framing the message in the buffer it is encrypted into,
    /// and signs it with `sign`.
    pub(crate) fn encrypt(
        suite: Suite,
        key_id: u32,
        iteration: u32,
        keys: &GroupCipherKeys,
        plaintext: &[u8],
        sign: impl FnOnce(&[u8]) -> [u8; SIGNATURE_LEN],
    ) -> SenderKeyMessage {
        let ciphertext_len = match suite.cipher() {
            Cipher::CbcHmac => cipher::cbc_len(plaintext.len()),
            Cipher::Gcm => plaintext.len() + cipher::GCM_TAG_LEN,
        };
        let mut buffer = Vec::with_capacity(1 + HEADER_MAX_LEN + CIPHERTEXT_KEY_MAX_LEN + ciphertext_len + SIGNATURE_LEN);
        buffer.push(suite.version_byte());
        encode_header(&mut buffer, key_id, iteration);
        // Version byte and header: what a GCM message takes as associated data.
        let mut aad = [0u8; 1 + HEADER_MAX_LEN];
        let aad_len = buffer.len();
        aad[..aad_len].copy_from_slice(&buffer);
        encode_key(3, WireType::LengthDelimited, &mut buffer);
        encode_varint(ciphertext_len as u64, &mut buffer);
        let start = buffer.len();
        match suite.cipher() {
            Cipher::CbcHmac => cipher::cbc_encrypt_into(&keys.cipher_key, &keys.iv, plaintext, &mut buffer),
            Cipher::Gcm => {
                cipher::gcm_encrypt_into(&keys.cipher_key, &keys.iv[..GCM_NONCE_LEN], plaintext, &aad[..aad_len], &mut buffer)
            }
        }
        debug_assert_eq!(buffer.len(), start + ciphertext_len);
        let signature = sign(&buffer);
        buffer.extend_from_slice(&signature);
        SenderKeyMessage { suite, key_id, iteration, wire_len: buffer.len(), ciphertext: start..start + ciphertext_len, buffer }
    }

    /// Decrypts the ciphertext under `keys` (the signature is not checked here).
    pub(crate) fn decrypt(&self, keys: &GroupCipherKeys) -> Result<Vec<u8>> {
        let ciphertext = &self.buffer[self.ciphertext.clone()];
        match self.suite.cipher() {
            Cipher::CbcHmac => cipher::cbc_decrypt(&keys.cipher_key, &keys.iv, ciphertext),
            Cipher::Gcm => {
                let (aad, len) = gcm_associated_data(self.suite, self.key_id, self.iteration);
                cipher::gcm_decrypt(&keys.cipher_key, &keys.iv[..GCM_NONCE_LEN], ciphertext, &aad[..len])
            }
        }
    }

    /// Parses a SenderKeyMessage from the wire. Reads the fields where they lie (see [`scan`]);
    /// under `aes-256-gcm` the protobuf must be canonical, so that the signature and the tag
    /// cover the same header the fields are read from.
    pub fn parse(bytes: &[u8]) -> Result<SenderKeyMessage> {
        let (&version, _) = bytes.split_first().ok_or(Error::InvalidMessage("empty message"))?;
        let suite = Suite::classical_from_version_byte(version)?;
        let end = bytes
            .len()
            .checked_sub(SIGNATURE_LEN)
            .filter(|end| *end >= 1)
            .ok_or(Error::InvalidMessage("message shorter than its signature"))?;
        let body = &bytes[1..end];
        if body.len() > limits::MAX_MESSAGE_LEN {
            return Err(DecodeError::TooLong { len: body.len(), limit: limits::MAX_MESSAGE_LEN }.into());
        }
        let Some(fields) = scan(body, FIELDS) else {
            return Self::parse_with_prost(suite, bytes, body);
        };
        if suite.cipher() == Cipher::Gcm && !fields.canonical {
            return Err(DecodeError::NonCanonical.into());
        }
        let key_id = fields.uint32(1).ok_or(Error::InvalidMessage("no key id"))?;
        let iteration = fields.uint32(2).ok_or(Error::InvalidMessage("no iteration"))?;
        let ciphertext = fields.bytes(3).ok_or(Error::InvalidMessage("no ciphertext"))?;
        Ok(SenderKeyMessage {
            suite,
            key_id,
            iteration,
            wire_len: bytes.len(),
            // `body` starts after the version byte.
            ciphertext: ciphertext.start + 1..ciphertext.end + 1,
            buffer: bytes.to_vec(),
        })
    }

    /// The slow path of [`Self::parse`], for what [`scan`] declines: prost's decoding, its errors,
    /// and for an encoding it accepts (one with groups, say) the ciphertext it read.
    fn parse_with_prost(suite: Suite, bytes: &[u8], body: &[u8]) -> Result<SenderKeyMessage> {
        let structure: signal::SenderKeyMessage = match suite.cipher() {
            Cipher::CbcHmac => decode(body, limits::MAX_MESSAGE_LEN)?,
            Cipher::Gcm => decode_canonical(body, limits::MAX_MESSAGE_LEN)?,
        };
        let key_id = structure.id.ok_or(Error::InvalidMessage("no key id"))?;
        let iteration = structure.iteration.ok_or(Error::InvalidMessage("no iteration"))?;
        let ciphertext = structure.ciphertext.ok_or(Error::InvalidMessage("no ciphertext"))?;
        let mut buffer = Vec::with_capacity(bytes.len() + ciphertext.len());
        buffer.extend_from_slice(bytes);
        buffer.extend_from_slice(&ciphertext);
        Ok(SenderKeyMessage { suite, key_id, iteration, wire_len: bytes.len(), ciphertext: bytes.len()..buffer.len(), buffer })
    }

    /// The signed part (version and protobuf) and the signature.
    pub(crate) fn signed_parts(&self) -> (&[u8], &[u8; SIGNATURE_LEN]) {
        let (body, signature) = self.serialize().split_at(self.wire_len - SIGNATURE_LEN);
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
        &self.buffer[..self.wire_len]
    }
}

/// Fields 1 and 2 of a SenderKeyMessage (key id, iteration), byte for byte as prost encodes
/// `signal::SenderKeyMessage` with both present: in tag order, each key and value a varint.
fn encode_header(out: &mut impl BufMut, key_id: u32, iteration: u32) {
    encode_key(1, WireType::Varint, out);
    encode_varint(u64::from(key_id), out);
    encode_key(2, WireType::Varint, out);
    encode_varint(u64::from(iteration), out);
}

/// The associated data of a GCM group message: version byte and header, on the stack (the bytes
/// and their length).
fn gcm_associated_data(suite: Suite, key_id: u32, iteration: u32) -> ([u8; 1 + HEADER_MAX_LEN], usize) {
    let mut aad = [0u8; 1 + HEADER_MAX_LEN];
    aad[0] = suite.version_byte();
    let unused = {
        let mut rest = &mut aad[1..];
        encode_header(&mut rest, key_id, iteration);
        rest.len()
    };
    (aad, aad.len() - unused)
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
    use proptest::prelude::*;

    use super::*;

    /// What `SenderKeyMessage::parse` gave before it read fields where they lie: prost's decoding
    /// (canonical under `aes-256-gcm`) of the protobuf between version byte and signature.
    fn parse_with_prost_only(bytes: &[u8]) -> Result<(Suite, u32, u32, Vec<u8>)> {
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
        Ok((
            suite,
            structure.id.ok_or(Error::InvalidMessage("no key id"))?,
            structure.iteration.ok_or(Error::InvalidMessage("no iteration"))?,
            structure.ciphertext.ok_or(Error::InvalidMessage("no ciphertext"))?,
        ))
    }

    /// `parse` accepts exactly what prost's decoding accepted (canonical only, under GCM), reads
    /// the same values, keeps the bytes as they came, and refuses the rest with the same error.
    fn check(bytes: &[u8]) {
        let ours = SenderKeyMessage::parse(bytes);
        match (parse_with_prost_only(bytes), ours) {
            (Ok((suite, key_id, iteration, ciphertext)), Ok(message)) => {
                assert_eq!((message.suite(), message.key_id(), message.iteration()), (suite, key_id, iteration), "{bytes:02x?}");
                assert_eq!(&message.buffer[message.ciphertext.clone()], &ciphertext[..], "{bytes:02x?}");
                assert_eq!(message.serialize(), bytes);
                let (signed, signature) = message.signed_parts();
                assert_eq!((signed, &signature[..]), bytes.split_at(bytes.len() - SIGNATURE_LEN));
            }
            (Err(expected), Err(error)) => assert_eq!(error, expected, "{bytes:02x?}"),
            (expected, ours) => panic!("prost: {expected:?}, parse: {ours:?}: {bytes:02x?}"),
        }
    }

    /// `body` framed as a message: a version byte before it, a signature after it.
    fn framed(version: u8, body: &[u8], signature: u8) -> Vec<u8> {
        [&[version][..], body, &[signature; SIGNATURE_LEN]].concat()
    }

    /// Version bytes: `signal-v3` (both as written and another of its nibble), `aes-256-gcm`, a
    /// post-quantum suite's and one of no suite.
    const VERSIONS: [u8; 5] = [0x33, 0x3f, 0xa1, 0x44, 0x00];

    fn version() -> impl Strategy<Value = u8> {
        prop::sample::select(&VERSIONS[..])
    }

    fn sender_key_message() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::option::of(prop_oneof![Just(0u32), Just(u32::MAX), any::<u32>()]),
            proptest::option::of(prop_oneof![Just(0u32), Just(127), Just(128), any::<u32>()]),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
        )
            .prop_map(|(id, iteration, ciphertext)| signal::SenderKeyMessage { id, iteration, ciphertext }.encode_to_vec())
    }

    /// A varint of `value`, padded with `padding` continuation bytes (at most ten bytes in all).
    fn push_varint(out: &mut Vec<u8>, mut value: u64, padding: usize) {
        let mut bytes = Vec::new();
        loop {
            bytes.push((value & 0x7f) as u8 | 0x80);
            value >>= 7;
            if value == 0 {
                break;
            }
        }
        bytes.extend(std::iter::repeat_n(0x80, padding));
        let last = bytes.len() - 1;
        bytes[last] &= 0x7f;
        if bytes.len() > 10 {
            bytes.truncate(10);
            bytes[9] &= 0x01;
        }
        out.extend_from_slice(&bytes);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn parse_agrees_with_prost_on_messages_prost_wrote(version in version(), body in sender_key_message(), signature: u8) {
            check(&framed(version, &body, signature));
        }

        #[test]
        fn parse_agrees_with_prost_on_mutated_messages(
            version in version(),
            body in sender_key_message(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..4),
        ) {
            let mut bytes = framed(version, &body, 0x5a);
            for (at, byte, how) in edits {
                let at = at.index(bytes.len() + 1);
                match how {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    2 if at < bytes.len() => { bytes.remove(at); }
                    _ => bytes.truncate(at),
                }
            }
            check(&bytes);
        }

        #[test]
        fn parse_agrees_with_prost_on_any_bytes(version in version(), body in proptest::collection::vec(any::<u8>(), 0..48)) {
            check(&framed(version, &body, 0xa5));
            check(&body);
        }

        #[test]
        fn parse_agrees_with_prost_on_fields_repeated_reordered_padded_unknown_or_grouped(
            version in version(),
            fields in proptest::collection::vec((1u32..6, 0u32..8, any::<u64>(), proptest::collection::vec(any::<u8>(), 0..8), 0usize..3), 0..8),
        ) {
            // Hand-made encodings: any field number (4 and 5 unknown), any wire type (groups,
            // and the invalid 6 and 7, included), values past 32 bits, varints padded by up to
            // two bytes.
            let mut body = Vec::new();
            for (number, wire_type, value, bytes, padding) in fields {
                push_varint(&mut body, u64::from(number << 3 | wire_type), padding);
                match wire_type {
                    0 => push_varint(&mut body, value, padding),
                    1 => body.extend_from_slice(&value.to_le_bytes()),
                    2 => { push_varint(&mut body, bytes.len() as u64, padding); body.extend_from_slice(&bytes); }
                    5 => body.extend_from_slice(&(value as u32).to_le_bytes()),
                    _ => {}
                }
            }
            check(&framed(version, &body, 0x11));
        }
    }

    /// Every body of up to two bytes, under every suite's version byte, and the message cut at
    /// every length.
    #[test]
    fn parse_agrees_with_prost_on_every_short_body() {
        for version in VERSIONS {
            check(&framed(version, &[], 0));
            for first in 0..=255u8 {
                check(&framed(version, &[first], 0));
                for second in 0..=255u8 {
                    check(&framed(version, &[first, second], 0));
                }
            }
            let whole = framed(version, &signal::SenderKeyMessage { id: Some(300), iteration: Some(7), ciphertext: Some(vec![9; 32]) }.encode_to_vec(), 1);
            for cut in 0..=whole.len() {
                check(&whole[..cut]);
            }
        }
    }

    /// The cases a scanner might get wrong, each named: under `signal-v3` prost's reading (the
    /// last occurrence wins, unknown fields and groups are skipped, a uint32 is truncated to 32
    /// bits); under `aes-256-gcm` only the canonical encoding.
    #[test]
    fn parse_agrees_with_prost_on_the_edge_cases() {
        let canonical: &[u8] = &[0x08, 0x07, 0x10, 0x02, 0x1a, 0x02, 0xaa, 0xbb];
        let cases: &[&[u8]] = &[
            canonical,
            &[0x08, 0x07, 0x10, 0x02, 0x1a, 0x02, 0xaa, 0xbb, 0x08, 0x09],   // id again: the last wins
            &[0x1a, 0x01, 0xaa, 0x08, 0x07, 0x10, 0x02],                     // fields reordered
            &[0x08, 0x07, 0x10, 0x02, 0x1a, 0x01, 0xaa, 0x1a, 0x01, 0xbb],   // ciphertext twice
            &[0x08, 0x87, 0x00, 0x10, 0x02, 0x1a, 0x00],                     // padded id
            &[0x88, 0x00, 0x07, 0x10, 0x02, 0x1a, 0x00],                     // padded key
            &[0x08, 0x07, 0x10, 0x02, 0x1a, 0x80, 0x00],                     // padded length
            &[0x08, 0x81, 0x80, 0x80, 0x80, 0x10, 0x10, 0x02, 0x1a, 0x00],   // id past 32 bits
            &[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x10, 0x00, 0x1a, 0x00], // u64::MAX
            &[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x10, 0x00, 0x1a, 0x00], // varint overflow
            &[0x08, 0x07, 0x10, 0x02, 0x1a, 0x00, 0x20, 0x01],               // unknown varint field
            &[0x08, 0x07, 0x10, 0x02, 0x1a, 0x00, 0x25, 1, 2, 3, 4],         // unknown fixed32
            &[0x08, 0x07, 0x10, 0x02, 0x1a, 0x00, 0x21, 1, 2, 3, 4, 5, 6, 7], // unknown fixed64, short
            &[0x08, 0x07, 0x10, 0x02, 0x1a, 0x00, 0x23, 0x08, 0x01, 0x24],   // a group
            &[0x08, 0x07, 0x10, 0x02, 0x1a, 0x00, 0x23, 0x08, 0x01, 0x2c],   // a group closed by another tag
            &[0x08, 0x07, 0x10, 0x02, 0x1a, 0x00, 0x24],                     // an end without a start
            &[0x0b, 0x0c, 0x10, 0x02, 0x1a, 0x00],                           // field 1 as a group
            &[0x0a, 0x00, 0x10, 0x02, 0x1a, 0x00],                           // field 1 length-delimited
            &[0x08, 0x07, 0x10, 0x02, 0x18, 0x00],                           // field 3 as a varint
            &[0x08, 0x07, 0x10, 0x02, 0x1a, 0x05, 0xaa],                     // ciphertext overruns
            &[0x08, 0x07, 0x10, 0x02, 0x1e, 0x00],                           // wire type 6
            &[0x00, 0x01],                                                   // field 0
            &[0x08, 0x07, 0x1a, 0x00],                                       // no iteration
            &[0x10, 0x02, 0x1a, 0x00],                                       // no key id
            &[0x08, 0x07, 0x10, 0x02],                                       // no ciphertext
            &[0x08, 0x00, 0x10, 0x00, 0x1a, 0x00],                           // zeros, present
            &[0xf8, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x08, 0x07, 0x10, 0x02, 0x1a, 0x00], // the largest field number
            &[0xf8, 0xff, 0xff, 0xff, 0x1f, 0x01],                           // a key past 32 bits
        ];
        for version in VERSIONS {
            for case in cases {
                check(&framed(version, case, 0x77));
            }
        }
        for (version, accepted) in [(0x33u8, true), (0xa1, false)] {
            assert_eq!(SenderKeyMessage::parse(&framed(version, cases[1], 0)).is_ok(), accepted);
        }
        // Groups nested to prost's recursion limit and past it.
        for depth in [98, 99, 100, 101] {
            let mut body = canonical.to_vec();
            body.extend(std::iter::repeat_n(0x23, depth));
            body.extend(std::iter::repeat_n(0x24, depth));
            for version in VERSIONS {
                check(&framed(version, &body, 0));
            }
        }
        // Longer than any message may be.
        let mut long = canonical.to_vec();
        long.extend([0x22, 0x80, 0x80, 0x20]);
        long.resize(limits::MAX_MESSAGE_LEN + 1, 0);
        for version in VERSIONS {
            check(&framed(version, &long, 0));
        }
        assert!(matches!(SenderKeyMessage::parse(&framed(0x33, &long, 0)), Err(Error::Decode(DecodeError::TooLong { .. }))));
    }

    /// What `encrypt` frames is byte for byte prost's encoding of the same fields, under both
    /// suites, and parses back.
    #[test]
    fn framing_matches_prost() {
        let keys = GroupCipherKeys { cipher_key: zeroize::Zeroizing::new([1; 32]), iv: zeroize::Zeroizing::new([2; 16]) };
        for (key_id, iteration) in [(0, 0), (1, 127), (0x7fff_ffff, 128), (u32::MAX, u32::MAX - 1), (300, 16_384)] {
            for suite in [Suite::SignalV3, Suite::Aes256Gcm] {
                for len in [0usize, 15, 16, 100, 127, 128, 16_400] {
                    let plaintext = vec![0x5a; len];
                    let message = SenderKeyMessage::encrypt(suite, key_id, iteration, &keys, &plaintext, |_| [3; SIGNATURE_LEN]);
                    let ciphertext = message.buffer[message.ciphertext.clone()].to_vec();
                    let structure = signal::SenderKeyMessage { id: Some(key_id), iteration: Some(iteration), ciphertext: Some(ciphertext) };
                    assert_eq!(message.serialize(), framed(suite.version_byte(), &structure.encode_to_vec(), 3));
                    let parsed = SenderKeyMessage::parse(message.serialize()).unwrap();
                    assert_eq!(parsed.decrypt(&keys).unwrap(), plaintext);
                    check(message.serialize());
                }
            }
        }
    }

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
