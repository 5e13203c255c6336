//! Envelopes already processed, remembered by sender and envelope id so that a delivery repeated
//! by the relay (after a lost acknowledgement, a reconnect or a replay) is dropped before it is
//! decrypted.
//!
//! The window is bounded ([`MAX_SEEN`] entries, oldest forgotten first). What falls out of it is
//! still refused by the ratchets themselves (a message key is used once), so the window is what
//! makes a duplicate cheap and quiet, not what makes it harmless.

use std::collections::{HashSet, VecDeque};

use switchboard_session::ProtocolAddress;

/// Envelopes remembered per device.
pub const MAX_SEEN: usize = 50_000;

/// One processed envelope: a digest of who sent it and the id the sender gave it. Sixteen bytes
/// of SHA-256, so the window costs the same whatever the names, and no sender can make its
/// (sender, id) pair collide with another's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeenKey([u8; 16]);

impl SeenKey {
    /// The key of envelope id `envelope` from device `device_id` of user `sender`: the first 16
    /// bytes of a SHA-256 over the three ([`switchboard_wire::envelope::envelope_key`]).
    pub fn new(sender: &str, device_id: u32, envelope: &[u8]) -> SeenKey {
        SeenKey(switchboard_wire::envelope::envelope_key(sender, device_id, envelope))
    }

    /// The key as stored.
    pub fn to_bytes(&self) -> [u8; 16] {
        self.0
    }

    /// The key [`Self::to_bytes`] wrote, if `bytes` is one.
    pub fn from_bytes(bytes: &[u8]) -> Option<SeenKey> {
        Some(SeenKey(bytes.try_into().ok()?))
    }

    /// The key of `envelope` from `sender`.
    pub fn of(sender: &ProtocolAddress, envelope: &[u8]) -> SeenKey {
        SeenKey::new(sender.name(), sender.device_id(), envelope)
    }
}

/// The bounded window of processed envelopes.
#[derive(Default)]
pub(crate) struct SeenWindow {
    set: HashSet<SeenKey>,
    order: VecDeque<SeenKey>,
}

impl SeenWindow {
    pub(crate) fn contains(&self, key: &SeenKey) -> bool {
        self.set.contains(key)
    }

    /// Remembers `key`; returns the key forgotten to make room, if any.
    pub(crate) fn insert(&mut self, key: SeenKey) -> Option<SeenKey> {
        if !self.set.insert(key) {
            return None;
        }
        self.order.push_back(key);
        if self.order.len() > MAX_SEEN {
            let oldest = self.order.pop_front()?;
            self.set.remove(&oldest);
            return Some(oldest);
        }
        None
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_tell_senders_and_ids_apart() {
        let key = SeenKey::new("ana@green", 7, &[9; 16]);
        assert_eq!(SeenKey::from_bytes(&key.to_bytes()), Some(key));
        assert_eq!(SeenKey::from_bytes(&[1; 15]), None);
        assert_ne!(key, SeenKey::new("ana@green", 8, &[9; 16]));
        assert_ne!(key, SeenKey::new("ana@gree", 7, &[9; 16]));
        assert_ne!(key, SeenKey::new("ana@green", 7, &[9; 15]));
    }

    #[test]
    fn the_window_forgets_the_oldest_first() {
        let mut window = SeenWindow::default();
        let key = |n: usize| SeenKey::new("a@x", 1, &(n as u128).to_be_bytes());
        for n in 0..MAX_SEEN {
            assert_eq!(window.insert(key(n)), None);
        }
        assert_eq!(window.insert(key(0)), None, "already there: nothing forgotten");
        assert_eq!(window.insert(key(MAX_SEEN)), Some(key(0)));
        assert!(!window.contains(&key(0)) && window.contains(&key(1)) && window.contains(&key(MAX_SEEN)));
        assert_eq!(window.len(), MAX_SEEN);
    }
}
