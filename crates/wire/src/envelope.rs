//! The one name of an envelope for dropping duplicates: its sender and the id its sender gave it.
//! Ids are chosen by senders, so an id alone names nothing: a member who learns the id of a group
//! message could otherwise send junk under it first and have the real one dropped.

use sha2::{Digest, Sha256};

/// Length of an [`envelope_key`].
pub const ENVELOPE_KEY_LEN: usize = 16;

/// Sixteen bytes of SHA-256 over the sender's name (length-prefixed), its device id and the
/// envelope id: the same size whatever the names, and no sender can make its pair collide with
/// another's. Relays key mailboxes by it and devices their window of processed envelopes.
pub fn envelope_key(sender: &str, device_id: u32, id: &[u8]) -> [u8; ENVELOPE_KEY_LEN] {
    let mut hash = Sha256::new();
    hash.update(b"switchboard seen envelope");
    hash.update((sender.len() as u64).to_be_bytes());
    hash.update(sender.as_bytes());
    hash.update(device_id.to_be_bytes());
    hash.update(id);
    let digest = hash.finalize();
    let mut key = [0u8; ENVELOPE_KEY_LEN];
    key.copy_from_slice(&digest[..ENVELOPE_KEY_LEN]);
    key
}

#[cfg(test)]
mod tests {
    use super::envelope_key;

    #[test]
    fn names_split_differently_give_different_keys() {
        // "ab" device 1 vs "a" + "b…": the length prefix keeps name and id apart.
        assert_ne!(envelope_key("ab", 1, b"c"), envelope_key("a", 1, b"bc"));
        assert_ne!(envelope_key("a", 1, b"x"), envelope_key("a", 2, b"x"));
        assert_eq!(envelope_key("a", 1, b"x"), envelope_key("a", 1, b"x"));
    }
}
