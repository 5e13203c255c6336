//! Mail and frames for other apps that this store committed and the core has not read yet, kept
//! so that reading them back, as the core does right after each commit, costs no round trip to
//! the database.
//!
//! Only what a commit wrote goes in, after the commit succeeded; a read takes what it finds (the
//! core reads an envelope once, unless its device reconnects or the link to its app comes back,
//! and then the database answers), a delete removes, and the oldest entries go first once
//! [`RECENT_BYTES`] is reached. So the core reads what the database holds, and memory stays
//! bounded whatever the mailboxes hold. It holds only while this store is the only writer of
//! the database (one node, or the active node of several, fenced): another writer's deletes
//! would not reach it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use switchboard_wire::Message;
use switchboard_wire::switchboard::{Envelope, FederationFrame};

use crate::state::{DeviceKey, Mutation};

/// Bytes kept at most: envelopes and frames as encoded, and [`ENTRY_BYTES`] and the key's name
/// twice for each.
pub(super) const RECENT_BYTES: usize = 32 * 1024 * 1024;

/// What one entry costs beside its value and its key's name (the two maps' nodes, the key, the
/// decoded value's own fields), rounded up: so that many small envelopes stay within
/// [`RECENT_BYTES`] too.
const ENTRY_BYTES: usize = 256;

/// What the writer's commits leave for the reader; cloned into both.
#[derive(Clone, Default)]
pub(super) struct Recent(Arc<Mutex<Entries>>);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Mail(DeviceKey, u64),
    Frame(String, u64),
}

enum Value {
    Mail(Envelope),
    Frame(FederationFrame),
}

struct Entry {
    age: u64,
    bytes: usize,
    value: Value,
}

#[derive(Default)]
struct Entries {
    by_key: HashMap<Key, Entry>,
    /// Keys by the order they went in, oldest first.
    by_age: BTreeMap<u64, Key>,
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
                    let bytes = envelope.encoded_len() + ENTRY_BYTES + 2 * device.0.len();
                    entries.put(Key::Mail(device, seq), bytes, Value::Mail(envelope));
                }
                Mutation::PutOutbound { app, seq, frame } => {
                    let bytes = frame.encoded_len() + ENTRY_BYTES + 2 * app.len();
                    entries.put(Key::Frame(app, seq), bytes, Value::Frame(frame));
                }
                Mutation::DeleteEnvelope { device, seq } => entries.remove(&Key::Mail(device, seq)),
                Mutation::DeleteOutbound { app, seq } => entries.remove(&Key::Frame(app, seq)),
                Mutation::DeleteAccount { device } => {
                    let gone: Vec<Key> =
                        entries.by_key.keys().filter(|key| matches!(key, Key::Mail(of, _) if *of == device)).cloned().collect();
                    for key in &gone {
                        entries.remove(key);
                    }
                }
                _ => {}
            }
        }
    }

    /// Takes the envelopes of `device` at `seqs` that are kept: one answer per seq, in order.
    pub(super) fn take_mail(&self, device: &DeviceKey, seqs: &[u64]) -> Vec<Option<Envelope>> {
        let mut entries = self.lock();
        seqs.iter()
            .map(|seq| match entries.take(&Key::Mail(device.clone(), *seq)) {
                Some(Value::Mail(envelope)) => Some(envelope),
                _ => None,
            })
            .collect()
    }

    /// Takes the frames for `app` at `seqs` that are kept: one answer per seq, in order.
    pub(super) fn take_frames(&self, app: &str, seqs: &[u64]) -> Vec<Option<FederationFrame>> {
        let mut entries = self.lock();
        seqs.iter()
            .map(|seq| match entries.take(&Key::Frame(app.to_owned(), *seq)) {
                Some(Value::Frame(frame)) => Some(frame),
                _ => None,
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves the maps consistent (each change is one insert
        // or remove on both), so the entries are still good to use.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Entries {
    fn put(&mut self, key: Key, bytes: usize, value: Value) {
        self.remove(&key);
        if bytes > RECENT_BYTES {
            return;
        }
        while self.bytes + bytes > RECENT_BYTES {
            let Some((_, oldest)) = self.by_age.pop_first() else { break };
            if let Some(entry) = self.by_key.remove(&oldest) {
                self.bytes -= entry.bytes;
            }
        }
        let age = self.next_age;
        self.next_age += 1;
        self.by_age.insert(age, key.clone());
        self.by_key.insert(key, Entry { age, bytes, value });
        self.bytes += bytes;
    }

    fn take(&mut self, key: &Key) -> Option<Value> {
        let entry = self.by_key.remove(key)?;
        self.by_age.remove(&entry.age);
        self.bytes -= entry.bytes;
        Some(entry.value)
    }

    fn remove(&mut self, key: &Key) {
        self.take(key);
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
        assert!(entries.by_key.is_empty() && entries.by_age.is_empty() && entries.bytes == 0);
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
        assert!(entries.by_key.len() < RECENT_BYTES / ENTRY_BYTES && entries.bytes <= RECENT_BYTES);
        assert_eq!(entries.by_key.len(), entries.by_age.len());
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
