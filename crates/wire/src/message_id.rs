//! Message ids as MIMI content defines them (draft-ietf-mimi-content, "Message ID"): every app
//! derives the same 32 bytes for one message from who sent it, where, and the exact bytes sent, so
//! that a reply, a reaction or an edit names a message the same way in every app, and no sender can
//! give two messages one id without a SHA-256 collision.
//!
//! `id = 0x01 ‖ SHA-256(len(sender) ‖ sender ‖ len(room) ‖ room ‖ message ‖ salt)[..31]`, the lengths
//! as big-endian u16. The message bytes include the salt (16 random bytes chosen by the sender);
//! the salt is hashed again at the end so that no length extension can reach the id.

use sha2::{Digest, Sha256};

/// Length of a message id.
pub const MESSAGE_ID_LEN: usize = 32;
/// Length of the salt every message carries.
pub const SALT_LEN: usize = 16;
/// The first byte of an id: the hash it was made with (SHA-256, from IANA's named-information
/// hash algorithm registry).
pub const SHA256_ID: u8 = 0x01;

/// A message's id.
pub type MessageId = [u8; MESSAGE_ID_LEN];

/// Why no id can be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageIdError {
    #[error("a sender or room URI of {0} bytes is over the 65,535 the id's length prefix holds")]
    UriTooLong(usize),
}

/// The id of `message` (the exact bytes its sender encoded, salt included) sent by `sender_uri`
/// in `room_uri`, with `salt` the salt those bytes carry.
pub fn message_id(sender_uri: &str, room_uri: &str, message: &[u8], salt: &[u8; SALT_LEN]) -> Result<MessageId, MessageIdError> {
    let mut hasher = Sha256::new();
    for uri in [sender_uri, room_uri] {
        let len = u16::try_from(uri.len()).map_err(|_| MessageIdError::UriTooLong(uri.len()))?;
        hasher.update(len.to_be_bytes());
        hasher.update(uri.as_bytes());
    }
    hasher.update(message);
    hasher.update(salt);
    let hash = hasher.finalize();
    let mut id = [0u8; MESSAGE_ID_LEN];
    id[0] = SHA256_ID;
    id[1..].copy_from_slice(&hash[..MESSAGE_ID_LEN - 1]);
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_changes_the_id() {
        let salt = [7u8; SALT_LEN];
        let base = message_id("mimi://a/u/x", "mimi://a/r/y", b"m", &salt).unwrap();
        assert_eq!(base[0], SHA256_ID);
        assert_ne!(base, message_id("mimi://a/u/z", "mimi://a/r/y", b"m", &salt).unwrap());
        assert_ne!(base, message_id("mimi://a/u/x", "mimi://a/r/z", b"m", &salt).unwrap());
        assert_ne!(base, message_id("mimi://a/u/x", "mimi://a/r/y", b"n", &salt).unwrap());
        assert_ne!(base, message_id("mimi://a/u/x", "mimi://a/r/y", b"m", &[8u8; SALT_LEN]).unwrap());
        // The length prefixes keep the boundary between sender and room.
        assert_ne!(message_id("ab", "c", b"", &salt).unwrap(), message_id("a", "bc", b"", &salt).unwrap());
    }

    #[test]
    fn an_overlong_uri_is_refused() {
        let long = "x".repeat(70_000);
        assert_eq!(message_id(&long, "r", b"", &[0; SALT_LEN]), Err(MessageIdError::UriTooLong(70_000)));
    }
}
