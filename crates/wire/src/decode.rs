//! Bounded decoding: the size limit is checked before any parsing, and prost's own checks (nesting
//! depth, lengths that overrun the buffer) turn every malformed input into an error.

use prost::Message;

/// Size limits for the messages this crate defines, in bytes.
pub mod limits {
    /// A Signal message on the wire (1:1 or group): room for a 512 KiB plaintext and its framing.
    pub const MAX_MESSAGE_LEN: usize = 512 * 1024 + 1024;
    /// A prekey bundle: its classical keys, a Kyber-1024 and an ML-KEM-1024 prekey (1,569 bytes
    /// each and their signatures), and the signed suite list.
    pub const MAX_BUNDLE_LEN: usize = 8 * 1024;
    /// Devices one user may have (its relay registers no more; a client reads no more from a
    /// bundle answer): 64 post-quantum bundles of ~3.6 KiB keep an answer well within a frame.
    pub const MAX_DEVICES_PER_USER: usize = 64;
    /// A stored KEM prekey record: id, seed (65 bytes), signature, timestamp, flag.
    pub const MAX_KEM_PREKEY_RECORD_LEN: usize = 256;
    /// A pairwise payload: a group control message with up to a few thousand members, or an
    /// application's content.
    pub const MAX_PAYLOAD_LEN: usize = 256 * 1024;
    /// A sender key distribution message.
    pub const MAX_DISTRIBUTION_LEN: usize = 1024;
    /// A stored session record: 40 archived sessions of up to 5 receiver chains with up to 2,000
    /// skipped message keys each fit well below this.
    pub const MAX_RECORD_LEN: usize = 64 * 1024 * 1024;
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is longer than the limit for its message type.
    #[error("{len} bytes exceed the limit of {limit} bytes for this message")]
    TooLong {
        /// The input's length, in bytes.
        len: usize,
        /// The limit it was decoded under, in bytes.
        limit: usize,
    },
    /// The input is not a valid encoding of the message.
    #[error("malformed protobuf: {0}")]
    Malformed(prost::DecodeError),
    /// The input decodes, but not from the one encoding this crate writes for its value.
    #[error("non-canonical encoding")]
    NonCanonical,
}

/// Decodes `bytes` as `M`, refusing anything longer than `limit` before reading it.
pub fn decode<M: Message + Default>(bytes: &[u8], limit: usize) -> Result<M, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLong { len: bytes.len(), limit });
    }
    M::decode(bytes).map_err(DecodeError::Malformed)
}

/// Decodes like [`decode`], then requires that re-encoding gives back exactly `bytes`: no unknown
/// fields, no repeated or reordered fields, no padded varints. Where a signature or an AEAD tag
/// covers the decoded values rather than the received bytes, this makes the two the same thing.
pub fn decode_canonical<M: Message + Default>(bytes: &[u8], limit: usize) -> Result<M, DecodeError> {
    let message: M = decode(bytes, limit)?;
    if message.encoded_len() != bytes.len() || message.encode_to_vec() != bytes {
        return Err(DecodeError::NonCanonical);
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::SignalMessage;

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let bytes = vec![0u8; 11];
        assert_eq!(
            decode::<SignalMessage>(&bytes, 10),
            Err(DecodeError::TooLong { len: 11, limit: 10 })
        );
    }

    #[test]
    fn truncated_input_is_malformed() {
        let message = SignalMessage {
            ratchet_key: Some(vec![5; 33]),
            counter: Some(7),
            previous_counter: Some(0),
            ciphertext: Some(vec![1; 48]),
        };
        let bytes = message.encode_to_vec();
        // Fields are written in field-number order, so a cut between two fields leaves a valid
        // message of the fields before it; a cut inside a field must be refused.
        let prefixes = [
            SignalMessage { ratchet_key: message.ratchet_key.clone(), ..Default::default() },
            SignalMessage { ratchet_key: message.ratchet_key.clone(), counter: Some(7), ..Default::default() },
            SignalMessage { ciphertext: None, ..message.clone() },
        ];
        for cut in 1..bytes.len() {
            let decoded = decode::<SignalMessage>(&bytes[..cut], 1024);
            match prefixes.iter().find(|prefix| prefix.encoded_len() == cut) {
                Some(prefix) => assert_eq!(decoded.as_ref(), Ok(prefix), "a cut between fields, at {cut}"),
                None => assert!(matches!(decoded, Err(DecodeError::Malformed(_))), "a cut inside a field, at {cut}: {decoded:?}"),
            }
        }
        assert_eq!(decode::<SignalMessage>(&bytes, 1024), Ok(message));
    }

    #[test]
    fn fields_are_written_in_field_number_order_as_libsignal_writes_them() {
        let message = crate::signal::PreKeySignalMessage {
            registration_id: Some(1),
            pre_key_id: Some(2),
            signed_pre_key_id: Some(3),
            base_key: Some(vec![4]),
            identity_key: Some(vec![5]),
            message: Some(vec![6]),
            kyber_pre_key_id: Some(7),
            kyber_ciphertext: Some(vec![8]),
        };
        let tags: Vec<u8> = {
            let bytes = message.encode_to_vec();
            let mut tags = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                let key = bytes[i];
                tags.push(key >> 3);
                i += if key & 7 == 0 { 2 } else { 2 + bytes[i + 1] as usize };
            }
            tags
        };
        assert_eq!(tags, [1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn non_canonical_encodings_are_refused_by_decode_canonical() {
        // counter = 1 written as a padded two-byte varint.
        let padded = [0x10, 0x81, 0x00];
        assert!(decode::<SignalMessage>(&padded, 64).is_ok());
        assert_eq!(decode_canonical::<SignalMessage>(&padded, 64), Err(DecodeError::NonCanonical));
        // An unknown field.
        let unknown = [0x10, 0x01, 0x78, 0x01];
        assert_eq!(decode_canonical::<SignalMessage>(&unknown, 64), Err(DecodeError::NonCanonical));
        assert!(decode_canonical::<SignalMessage>(&[0x10, 0x01], 64).is_ok());
    }
}
