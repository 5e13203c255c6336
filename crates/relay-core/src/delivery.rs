//! Mail goes to an online device in a window: at most [`DELIVERY_WINDOW`] envelopes and
//! [`DELIVERY_WINDOW_BYTES`] of content handed over and not yet acknowledged, and more as
//! acknowledgements come, oldest first. A device that authenticates with a full mailbox no
//! longer has the whole of it copied into its connection's write queue at once, and what one
//! connection can have queued is bounded in bytes. (What all connections together have queued is
//! the driver's to bound: it knows what was written out; in flight here is not in memory there.)
//!
//! The window is larger than what a device may keep unacknowledged on purpose (group messages
//! held for a key still to come, changes held for their hub's word: see the client core), so
//! that the envelope which releases them is never stuck behind them.
//!
//! Only envelopes whose batch is durable are handed over: a delivery never runs ahead of what a
//! crash would keep. They are read back from the store ([`crate::storage::Contents`]) as the
//! window opens: the core never holds a mailbox's contents.

use std::collections::{BTreeMap, HashMap};

use super::{Action, ConnId, RelayCore, deliver};
use crate::state::DeviceKey;

/// Envelopes handed to one device and not yet acknowledged.
pub const DELIVERY_WINDOW: usize = 4_096;
/// Bytes of content handed to one device and not yet acknowledged (one envelope always goes,
/// however large, if nothing else is in flight).
pub const DELIVERY_WINDOW_BYTES: usize = 48 * 1024 * 1024;

/// What one online device has been handed on its connection.
#[derive(Debug)]
pub(super) struct Delivering {
    conn: ConnId,
    /// Every durable envelope of the mailbox up to this sequence number was handed over.
    cursor: u64,
    /// Handed over and not acknowledged: sequence number → content bytes.
    in_flight: BTreeMap<u64, usize>,
    bytes: usize,
}

/// The deliveries to every online device.
pub(super) type Deliveries = HashMap<DeviceKey, Delivering>;

impl RelayCore {
    /// `device` authenticated on `conn`: its mailbox is handed over from the start (what the
    /// previous connection was handed and did not acknowledge, again).
    pub(super) fn start_delivering(&mut self, device: &DeviceKey, conn: ConnId) -> Vec<Action> {
        self.stop_delivering(device);
        let delivering = Delivering { conn, cursor: 0, in_flight: BTreeMap::new(), bytes: 0 };
        self.deliveries.insert(device.clone(), delivering);
        self.pump(device)
    }

    /// `device` went offline (or its connection was replaced): what it had in flight is freed.
    pub(super) fn stop_delivering(&mut self, device: &DeviceKey) {
        self.deliveries.remove(device);
    }

    /// The envelope `seq` of `device` was acknowledged (and deleted).
    pub(super) fn delivered(&mut self, device: &DeviceKey, seq: u64) {
        let Some(delivering) = self.deliveries.get_mut(device) else { return };
        if let Some(bytes) = delivering.in_flight.remove(&seq) {
            delivering.bytes -= bytes;
        }
    }

    /// Hands `device`, if online, what its window has room for: chosen from what the core knows
    /// of its mailbox (acknowledged envelopes, their deletes perhaps not yet on disk, are no
    /// longer in it), then read back from the store.
    pub(super) fn pump(&mut self, device: &DeviceKey) -> Vec<Action> {
        let (Some(delivering), Some(mailbox)) = (self.deliveries.get_mut(device), self.state.mailboxes.get(device)) else {
            return Vec::new();
        };
        let mut chosen: Vec<(u64, usize)> = Vec::new();
        let mut bytes = delivering.bytes;
        for (seq, entry) in mailbox.range(delivering.cursor + 1..self.durable_seq) {
            let in_flight = delivering.in_flight.len() + chosen.len();
            if in_flight >= DELIVERY_WINDOW || (in_flight > 0 && bytes + entry.bytes > DELIVERY_WINDOW_BYTES) {
                break;
            }
            chosen.push((*seq, entry.bytes));
            bytes += entry.bytes;
        }
        let Some(&(last, _)) = chosen.last() else { return Vec::new() };
        let seqs: Vec<u64> = chosen.iter().map(|(seq, _)| *seq).collect();
        let read = match self.contents.mail(device, &seqs) {
            Ok(read) if read.len() == seqs.len() => read,
            Ok(read) => {
                let missing = seqs.len() - read.len();
                return vec![Action::StorageFailed(format!("{missing} durable envelopes of a mailbox are missing from the store"))];
            }
            Err(error) => return vec![Action::StorageFailed(error.chain())],
        };
        let mut actions = Vec::with_capacity(chosen.len());
        for ((seq, envelope), (_, bytes)) in read.into_iter().zip(chosen) {
            delivering.in_flight.insert(seq, bytes);
            delivering.bytes += bytes;
            actions.push(deliver(delivering.conn, envelope));
        }
        delivering.cursor = last;
        actions
    }
}
