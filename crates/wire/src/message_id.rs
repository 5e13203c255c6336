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
#[non_exhaustive]
pub enum MessageIdError {
    /// A URI is longer than the id's 16-bit length prefix holds; the value is its length in bytes.
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

/// The URI MIMI content names a user by: `mimi://{app}/u/{name}` for `name@app`.
pub fn user_uri(user: &str) -> Option<String> {
    let (name, app) = crate::address::UserAddress::split(user).ok()?;
    Some(format!("mimi://{app}/u/{name}"))
}

/// The URI of a conversation: `mimi://{app}/r/{name}` for a group `name@app` (its hub's), and
/// `mimi://switchboard/dm/{conversation}` for anything else (a conversation of two): the two
/// forms never name one room.
pub fn room_uri(conversation: &str) -> String {
    match crate::address::UserAddress::split(conversation) {
        Ok((name, app)) => format!("mimi://{app}/r/{name}"),
        Err(_) => format!("mimi://switchboard/dm/{conversation}"),
    }
}

/// The id of a `Content` (its encoded bytes, exactly as sent) that `sender` (`name@app`) sent:
/// [`message_id`] over the sender's and the conversation's URIs, the bytes and their salt. `None`
/// if the bytes do not decode, carry no 16-byte salt, or name no valid sender.
pub fn content_id(sender: &str, content: &[u8]) -> Option<MessageId> {
    let decoded: crate::switchboard::Content = crate::decode(content, crate::limits::MAX_PAYLOAD_LEN).ok()?;
    let salt: [u8; SALT_LEN] = decoded.salt.as_slice().try_into().ok()?;
    let conversation = if decoded.conversation.is_empty() { decoded.group_id.as_str() } else { decoded.conversation.as_str() };
    message_id(&user_uri(sender)?, &room_uri(conversation), content, &salt).ok()
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
    fn a_content_id_is_the_message_id_over_its_uris_and_names_no_content_without_salt() {
        use crate::Message;
        use crate::switchboard::Content;
        let content = Content { salt: vec![3; SALT_LEN], conversation: "dm-ab".into(), ..Default::default() }.encode_to_vec();
        let expected = message_id("mimi://green/u/alice", "mimi://switchboard/dm/dm-ab", &content, &[3; SALT_LEN]).unwrap();
        assert_eq!(content_id("alice@green", &content), Some(expected));
        assert_ne!(content_id("alice@blue", &content), Some(expected), "the sending account is part of it");
        let group = Content { salt: vec![3; SALT_LEN], group_id: "trip@blue".into(), ..Default::default() }.encode_to_vec();
        let in_group = message_id("mimi://green/u/alice", "mimi://blue/r/trip", &group, &[3; SALT_LEN]).unwrap();
        assert_eq!(content_id("alice@green", &group), Some(in_group));
        let unsalted = Content { salt: vec![3; 15], ..Default::default() }.encode_to_vec();
        assert_eq!(content_id("alice@green", &unsalted), None);
        assert_eq!(content_id("not an address", &content), None);
        assert_eq!(content_id("alice@green", &[0xff; 4]), None);
    }

    #[test]
    fn an_overlong_uri_is_refused() {
        let long = "x".repeat(70_000);
        assert_eq!(message_id(&long, "r", b"", &[0; SALT_LEN]), Err(MessageIdError::UriTooLong(70_000)));
    }
}
