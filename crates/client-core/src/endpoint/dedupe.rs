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

/// One processed envelope: who sent it, and the id the sender gave it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeenKey {
    pub sender: ProtocolAddress,
    pub envelope: [u8; 16],
}

impl SeenKey {
    /// The key as stored: the envelope id, the device id (big-endian) and the sender's name.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(20 + self.sender.name().len());
        bytes.extend_from_slice(&self.envelope);
        bytes.extend_from_slice(&self.sender.device_id().to_be_bytes());
        bytes.extend_from_slice(self.sender.name().as_bytes());
        bytes
    }

    /// The key [`Self::to_bytes`] wrote, if `bytes` is one.
    pub fn from_bytes(bytes: &[u8]) -> Option<SeenKey> {
        let envelope = bytes.get(..16)?.try_into().ok()?;
        let device_id = u32::from_be_bytes(bytes.get(16..20)?.try_into().ok()?);
        let name = std::str::from_utf8(bytes.get(20..)?).ok()?;
        Some(SeenKey { sender: ProtocolAddress::new(name, device_id), envelope })
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
        if !self.set.insert(key.clone()) {
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
    fn keys_round_trip_and_garbage_is_refused() {
        let key = SeenKey { sender: ProtocolAddress::new("ana@green", 7), envelope: [9; 16] };
        assert_eq!(SeenKey::from_bytes(&key.to_bytes()), Some(key));
        assert_eq!(SeenKey::from_bytes(&[1; 19]), None);
        assert_eq!(SeenKey::from_bytes(&[[1; 20].as_slice(), &[0xff]].concat()), None);
    }

    #[test]
    fn the_window_forgets_the_oldest_first() {
        let mut window = SeenWindow::default();
        let key = |n: usize| SeenKey { sender: ProtocolAddress::new("a@x", 1), envelope: (n as u128).to_be_bytes() };
        for n in 0..MAX_SEEN {
            assert_eq!(window.insert(key(n)), None);
        }
        assert_eq!(window.insert(key(0)), None, "already there: nothing forgotten");
        assert_eq!(window.insert(key(MAX_SEEN)), Some(key(0)));
        assert!(!window.contains(&key(0)) && window.contains(&key(1)) && window.contains(&key(MAX_SEEN)));
        assert_eq!(window.len(), MAX_SEEN);
    }
}
