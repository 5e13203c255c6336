//! What this device has sent and the relay has not yet confirmed durable. Entries leave only on
//! the relay's answer (done, or refused for good); after a reconnect every entry goes again, and
//! the relay drops a second copy by envelope id.
//!
//! An entry may go out only once the state that made it is durable: a ciphertext sent before
//! its ratchet step is saved could, after a crash, be followed by a different message under the
//! same key, which its recipient would refuse as a duplicate.

use std::collections::{BTreeMap, BTreeSet};

use switchboard_wire::switchboard::client_frame::Body;

/// Entries an outbox may hold…
pub const MAX_OUTBOX: usize = 100_000;
/// …and their bytes; sends beyond either are dropped with [`super::DropReason::OutboxFull`].
pub const MAX_OUTBOX_BYTES: usize = 256 * 1024 * 1024;

pub(crate) struct Entry {
    pub(crate) body: Body,
    bytes: usize,
    /// The state generation that made this entry: it goes out once that is durable.
    pub(crate) generation: u64,
}

#[derive(Default)]
pub(crate) struct Outbox {
    entries: BTreeMap<u64, Entry>,
    next: u64,
    /// Entries to send on the current connection, in order (not in flight, not deferred).
    unsent: BTreeSet<u64>,
    /// Entries the relay could not take for now: they go again at the next retry.
    deferred: BTreeSet<u64>,
    bytes: usize,
}

impl Outbox {
    /// Whether an entry of `bytes` more would pass a bound.
    pub(crate) fn full(&self, bytes: usize) -> bool {
        self.entries.len() >= MAX_OUTBOX || self.bytes + bytes > MAX_OUTBOX_BYTES
    }

    pub(crate) fn push(&mut self, body: Body, generation: u64) -> u64 {
        let seq = self.next;
        self.next += 1;
        let bytes = body.encoded_len();
        self.bytes += bytes;
        self.entries.insert(seq, Entry { body, bytes, generation });
        self.unsent.insert(seq);
        seq
    }

    /// Puts back an entry read from storage (durable by definition).
    pub(crate) fn restore(&mut self, seq: u64, body: Body) {
        let bytes = body.encoded_len();
        self.bytes += bytes;
        self.entries.insert(seq, Entry { body, bytes, generation: 0 });
        self.unsent.insert(seq);
        self.next = self.next.max(seq.saturating_add(1));
    }

    pub(crate) fn remove(&mut self, seq: u64) -> bool {
        self.unsent.remove(&seq);
        self.deferred.remove(&seq);
        match self.entries.remove(&seq) {
            Some(entry) => {
                self.bytes -= entry.bytes;
                true
            }
            None => false,
        }
    }

    pub(crate) fn get(&self, seq: u64) -> Option<&Body> {
        self.entries.get(&seq).map(|entry| &entry.body)
    }

    /// The relay did not take `seq` for now: it goes again at the next retry.
    pub(crate) fn defer(&mut self, seq: u64) {
        if self.entries.contains_key(&seq) {
            self.deferred.insert(seq);
        }
    }

    /// The deferred entries are due again.
    pub(crate) fn retry(&mut self) {
        self.unsent.append(&mut self.deferred);
    }

    /// The connection is gone: every entry goes again on the next one.
    pub(crate) fn connection_lost(&mut self) {
        self.deferred.clear();
        self.unsent = self.entries.keys().copied().collect();
    }

    /// Entries to send now — durable at `durable`, not in flight, not deferred — oldest first;
    /// they count as in flight from here on. (Generations grow with sequence numbers, so the
    /// first entry not yet durable ends the run.)
    pub(crate) fn take_sendable(&mut self, durable: u64) -> Vec<u64> {
        let mut ready = Vec::new();
        while let Some(&seq) = self.unsent.first() {
            match self.entries.get(&seq) {
                Some(entry) if entry.generation > durable => break,
                Some(_) => ready.push(seq),
                None => {}
            }
            self.unsent.pop_first();
        }
        ready
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &Body)> {
        self.entries.iter().map(|(seq, entry)| (*seq, &entry.body))
    }
}
