//! Mail and frames for other apps that this store committed and the core has not read yet, kept
//! so that reading them back, as the core does right after each commit, costs no round trip to
//! the database.
//!
//! Only what a commit wrote goes in, after the commit succeeded; a read takes what it finds (the
//! core reads an envelope once, unless its device reconnects, the link to its app comes back or
//! a frame is sent again later, and then the database answers), a delete removes, and the oldest
//! entries go first once about [`RECENT_BYTES`] are kept. So the core reads what the database
//! holds, and memory stays bounded whatever the mailboxes hold. It holds only while this store is
//! the only writer of the database (one node, or the active node of several): another writer's
//! deletes would not reach it. A node that lost its lock finds out at its next commit, which
//! fails and empties what is kept; until then it may deliver again, from here, mail the new
//! active node has had acknowledged (as it could before from its rows), which devices drop as
//! duplicates by id.

use std::collections::{BTreeMap, HashMap};
use std::mem::size_of;
use std::sync::{Arc, Mutex};

use switchboard_wire::Message;
use switchboard_wire::switchboard::{Envelope, FederationFrame};

use crate::state::{DeviceKey, Mutation};

/// Bytes kept at most, counted as the values' encoded length, [`ENTRY_BYTES`] and the name of
/// the entry's mailbox or outbox for each: an estimate of the memory used, not a measure of it.
pub(super) const RECENT_BYTES: usize = 32 * 1024 * 1024;

/// What one entry costs beside its encoded value and its place's name: its slots in the two
/// B-trees (nodes are at least half full, so twice their size), the boxed value's fields, and the
/// small allocations a decoded value holds (names, ids), rounded up.
const ENTRY_BYTES: usize = 2 * (size_of::<(u64, Entry)>() + size_of::<(u64, (Place, u64))>())
    + if size_of::<Envelope>() > size_of::<FederationFrame>() { size_of::<Envelope>() } else { size_of::<FederationFrame>() }
    + 256;

/// What the writer's commits leave for the reader; cloned into both.
#[derive(Clone, Default)]
pub(super) struct Recent(Arc<Mutex<Entries>>);

/// Where an entry was written: a device's mailbox or an app's outbox.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Place {
    Mailbox(DeviceKey),
    Outbox(String),
}

impl Place {
    fn name_len(&self) -> usize {
        match self {
            Place::Mailbox((user, _)) => user.len(),
            Place::Outbox(app) => app.len(),
        }
    }
}

enum Value {
    Mail(Box<Envelope>),
    Frame(Box<FederationFrame>),
}

struct Entry {
    age: u64,
    bytes: usize,
    value: Value,
}

#[derive(Default)]
struct Entries {
    /// Each mailbox's and outbox's entries by seq; a place with none is removed.
    places: HashMap<Place, BTreeMap<u64, Entry>>,
    /// Where each entry is, oldest first.
    by_age: BTreeMap<u64, (Place, u64)>,
    next_age: u64,
    bytes: usize,
}

impl Recent {
    /// Takes in what `mutations`, just committed, wrote and deleted.
    pub(super) fn committed(&self, mutations: Vec<Mutation>) {
        let mut entries = self.lock();
        for mutation in mutations {
            match mutation {
                Mutation::PutEnvelope { device, seq, envelope } => {
                    let bytes = envelope.encoded_len();
                    entries.put(Place::Mailbox(device), seq, bytes, Value::Mail(Box::new(envelope)));
                }
                Mutation::PutOutbound { app, seq, frame } => {
                    let bytes = frame.encoded_len();
                    entries.put(Place::Outbox(app), seq, bytes, Value::Frame(Box::new(frame)));
                }
                Mutation::DeleteEnvelope { device, seq } => {
                    entries.take(&Place::Mailbox(device), seq);
                }
                Mutation::DeleteOutbound { app, seq } => {
                    entries.take(&Place::Outbox(app), seq);
                }
                Mutation::DeleteAccount { device } => entries.remove_place(&Place::Mailbox(device)),
                _ => {}
            }
        }
    }

    /// Forgets everything kept: after a commit that failed, when what the database holds is no
    /// longer known.
    pub(super) fn clear(&self) {
        *self.lock() = Entries::default();
    }

    /// Takes the envelopes of `device` at `seqs` that are kept: one answer per seq, in order.
    pub(super) fn take_mail(&self, device: &DeviceKey, seqs: &[u64]) -> Vec<Option<Envelope>> {
        self.take_each(&Place::Mailbox(device.clone()), seqs, |value| match value {
            Value::Mail(envelope) => Some(*envelope),
            Value::Frame(_) => None,
        })
    }

    /// Takes the frames for `app` at `seqs` that are kept: one answer per seq, in order.
    pub(super) fn take_frames(&self, app: &str, seqs: &[u64]) -> Vec<Option<FederationFrame>> {
        self.take_each(&Place::Outbox(app.to_owned()), seqs, |value| match value {
            Value::Frame(frame) => Some(*frame),
            Value::Mail(_) => None,
        })
    }

    fn take_each<T>(&self, place: &Place, seqs: &[u64], unpack: fn(Value) -> Option<T>) -> Vec<Option<T>> {
        let mut entries = self.lock();
        seqs.iter().map(|seq| entries.take(place, *seq).and_then(unpack)).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock may leave the maps out of step (an entry in one and not
        // the other): start afresh, which only sends reads to the database.
        self.0.lock().unwrap_or_else(|poisoned| {
            let mut entries = poisoned.into_inner();
            *entries = Entries::default();
            self.0.clear_poison();
            entries
        })
    }
}

impl Entries {
    fn put(&mut self, place: Place, seq: u64, encoded: usize, value: Value) {
        self.take(&place, seq);
        let bytes = encoded + ENTRY_BYTES + 2 * place.name_len();
        if bytes > RECENT_BYTES {
            return;
        }
        while self.bytes + bytes > RECENT_BYTES {
            let Some((_, (oldest, oldest_seq))) = self.by_age.first_key_value().map(|(age, at)| (*age, at.clone())) else { break };
            self.take(&oldest, oldest_seq);
        }
        let age = self.next_age;
        self.next_age += 1;
        self.by_age.insert(age, (place.clone(), seq));
        self.places.entry(place).or_default().insert(seq, Entry { age, bytes, value });
        self.bytes += bytes;
    }

    fn take(&mut self, place: &Place, seq: u64) -> Option<Value> {
        let kept = self.places.get_mut(place)?;
        let entry = kept.remove(&seq)?;
        if kept.is_empty() {
            self.places.remove(place);
        }
        self.by_age.remove(&entry.age);
        self.bytes -= entry.bytes;
        Some(entry.value)
    }

    fn remove_place(&mut self, place: &Place) {
        for entry in self.places.remove(place).into_iter().flat_map(BTreeMap::into_values) {
            self.by_age.remove(&entry.age);
            self.bytes -= entry.bytes;
        }
    }
}

/// `seqs` answered: what [`Recent`] held (`kept`, one per seq) and, for the rest, what the
/// database gave (`read`, in the order of the seqs asked of it). A seq neither holds is left out,
/// as the database's own answer leaves it out.
pub(super) fn merged<T>(seqs: &[u64], kept: Vec<Option<T>>, read: Vec<(u64, T)>) -> Vec<(u64, T)> {
    let mut read = read.into_iter().peekable();
    let mut answer = Vec::with_capacity(seqs.len());
    for (seq, kept) in seqs.iter().zip(kept) {
        match kept {
            Some(value) => answer.push((*seq, value)),
            None => {
                if let Some((_, value)) = read.next_if(|(read_seq, _)| read_seq == seq) {
                    answer.push((*seq, value));
                }
            }
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> DeviceKey {
        ("bob@green".to_owned(), 1)
    }

    fn envelope(len: usize) -> Envelope {
        Envelope { content: vec![7; len].into(), ..Default::default() }
    }

    fn put(seq: u64, len: usize) -> Mutation {
        Mutation::PutEnvelope { device: device(), seq, envelope: envelope(len) }
    }

    #[test]
    fn a_committed_envelope_is_read_once_then_left_to_the_database() {
        let recent = Recent::default();
        recent.committed(vec![put(1, 10), put(2, 10)]);
        let first = recent.take_mail(&device(), &[1, 2, 3]);
        assert_eq!(first.iter().map(Option::is_some).collect::<Vec<_>>(), [true, true, false]);
        assert!(recent.take_mail(&device(), &[1, 2]).iter().all(Option::is_none));
        assert_eq!(recent.lock().bytes, 0);
    }

    #[test]
    fn deletes_and_a_deleted_account_remove_what_is_kept() {
        let recent = Recent::default();
        recent.committed(vec![put(1, 10), put(2, 10), put(3, 10)]);
        recent.committed(vec![Mutation::DeleteEnvelope { device: device(), seq: 1 }]);
        assert!(recent.take_mail(&device(), &[1])[0].is_none());
        recent.committed(vec![Mutation::DeleteAccount { device: device() }]);
        assert!(recent.take_mail(&device(), &[2, 3]).iter().all(Option::is_none));
        let entries = recent.lock();
        assert!(entries.places.is_empty() && entries.by_age.is_empty() && entries.bytes == 0);
    }

    #[test]
    fn the_oldest_go_first_past_the_bound() {
        let recent = Recent::default();
        let len = RECENT_BYTES / 4;
        recent.committed((1..=5).map(|seq| put(seq, len)).collect());
        assert!(recent.lock().bytes <= RECENT_BYTES);
        let kept = recent.take_mail(&device(), &[1, 2, 3, 4, 5]);
        assert_eq!(kept.iter().map(Option::is_some).collect::<Vec<_>>(), [false, false, true, true, true]);
    }

    #[test]
    fn many_empty_envelopes_are_bounded_by_their_count_too() {
        let recent = Recent::default();
        let count = RECENT_BYTES / ENTRY_BYTES + 1_000;
        recent.committed((0..count as u64).map(|seq| put(seq, 0)).collect());
        let entries = recent.lock();
        assert!(entries.by_age.len() < RECENT_BYTES / ENTRY_BYTES && entries.bytes <= RECENT_BYTES);
        assert_eq!(entries.places.values().map(BTreeMap::len).sum::<usize>(), entries.by_age.len());
    }

    #[test]
    fn cleared_after_a_failed_commit_it_answers_nothing() {
        let recent = Recent::default();
        recent.committed(vec![put(1, 10)]);
        recent.clear();
        assert!(recent.take_mail(&device(), &[1])[0].is_none());
        assert_eq!(recent.lock().bytes, 0);
    }

    #[test]
    fn mail_and_frames_of_one_seq_are_kept_apart() {
        let recent = Recent::default();
        let frame = FederationFrame::default();
        recent.committed(vec![put(1, 10), Mutation::PutOutbound { app: "green".to_owned(), seq: 1, frame }]);
        assert!(recent.take_frames("green", &[1])[0].is_some());
        assert!(recent.take_mail(&device(), &[1])[0].is_some());
    }

    #[test]
    fn merged_answers_in_the_order_asked_and_leaves_out_what_neither_holds() {
        let kept = vec![None, Some("b"), None, None];
        let read = vec![(1, "a"), (4, "d")];
        assert_eq!(merged(&[1, 2, 3, 4], kept, read), [(1, "a"), (2, "b"), (4, "d")]);
    }
}
