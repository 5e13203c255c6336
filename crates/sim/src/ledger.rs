//! The ledger: what was sent, to whom, and what each device read — the ground truth the
//! invariants are checked against.

use std::collections::BTreeMap;

// Keyed by the simulator's own indices and ids, never by hostile input: an unkeyed hash will do.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use serde::Serialize;
use switchboard_session::ProtocolAddress;
use switchboard_session::group::{self as sender_keys, InMemorySenderKeyStore, SenderKeyMessage};

/// The invariant a device breaks by reading a group's message when the admins' changes never
/// made it a member.
pub const OUTSIDER_READ: &str = "no read while not a member by the admins' changes";

/// The invariant a person's device breaks by never showing a message she sent from another.
pub const SYNCED: &str = "every message she sends reaches her other devices";

/// Violations listed one by one in a report; beyond this, only counted.
pub const MAX_LISTED_VIOLATIONS: usize = 100;

/// One message sent.
#[derive(Debug, Clone)]
pub struct MessageRecord {
    pub sent_at_us: u64,
    pub sender: usize,
    pub group: Option<usize>,
    /// Devices it was addressed to (shared by the messages a sender sends to one view of a
    /// group): for a message to one account of a linked person, every device of hers.
    pub addressed: std::rc::Rc<[usize]>,
    /// Devices it must reach as a transcript: the sender's person's other devices (empty for a
    /// sender who is no person, and for group messages).
    pub synced: std::rc::Rc<[usize]>,
}

/// A group message's ciphertext, for checking who else could read it.
#[derive(Debug, Clone)]
pub struct GroupCiphertext {
    pub message: u64,
    pub group: usize,
    pub sender: usize,
    /// The sender's group epoch when it encrypted.
    pub sender_epoch: u64,
    pub bytes: Vec<u8>,
}

/// An invariant that did not hold, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The invariant, as [`crate::report::Invariant::name`] names it.
    pub invariant: &'static str,
    /// What happened: which message, device or group, and when.
    pub detail: String,
}

/// What the delivery check found.
pub struct Delivery {
    pub violations: Vec<Violation>,
    /// Required deliveries that did not happen.
    pub missing: u64,
    /// Of those, the ones to devices an adversarial relay serves.
    pub prevented: u64,
    /// (message, device) pairs read more than once.
    pub read_twice: u64,
    /// Deliveries required.
    pub expected: u64,
    /// Messages of members removed later, never read by a device that learnt of the removal
    /// before they arrived (allowed; reported).
    pub from_removed_unread: u64,
}

/// Everything the invariants need.
#[derive(Default)]
pub struct Ledger {
    pub messages: Vec<MessageRecord>,
    /// (message, device) → times read.
    pub reads: HashMap<(u64, usize), u32>,
    pub latencies_us: Vec<u64>,
    pub group_ciphertexts: Vec<GroupCiphertext>,
    /// Per group, per device: the epochs of its membership as [from, until) intervals.
    pub membership: BTreeMap<usize, HashMap<usize, Vec<(u64, u64)>>>,
    /// Per (group, device): the times of its membership, as [from, until) intervals.
    pub tenure: HashMap<(usize, usize), Vec<(u64, u64)>>,
    /// (device, envelope id) an adversary changed.
    pub tampered: HashSet<(usize, [u8; 16])>,
    pub tampered_read: u64,
    pub tampered_refused: u64,
    pub replayed: u64,
    pub withheld: HashSet<(usize, [u8; 16])>,
    /// Bundle answers an adversary took the suite lists out of.
    pub bundles_stripped: u64,
    /// Envelopes refused by their recipient as starting a downgraded session, and the (initiator,
    /// responder) pairs they came from.
    pub downgrades_refused: u64,
    pub downgraded_pairs: HashSet<(usize, usize)>,
    pub duplicates_dropped: u64,
    pub refused: u64,
    /// Every state of a group its admins made, by group and hash.
    pub admin_states: HashSet<(usize, [u8; 32])>,
    /// Fork alarms devices raised: another member holds (or claims to hold) another state of a
    /// group at the same epoch.
    pub forks_detected: u64,
    /// Announcements a forging member sent to members, and envelopes from forging members that
    /// their recipients refused.
    pub forged_changes: u64,
    pub forgeries_refused: u64,
    /// Junk envelopes sent under other senders' ids; junk a flooder sent, and how much of it its
    /// target's relay refused.
    pub ids_reused: u64,
    pub flood_sent: u64,
    pub flood_refused: u64,
    /// Lookup answers a relay changed (and the records it made of them), and lookups whose
    /// answer its asker refused.
    pub links_forged: u64,
    pub forged_records: HashSet<Vec<u8>>,
    pub lookups_refused: u64,
    /// Lookups answered with a record its asker kept.
    pub lookups_kept: u64,
    /// (sender, recipient) devices whose messages are not expected: the recipient's person
    /// blocked the sender's.
    pub unwanted: HashSet<(usize, usize)>,
}

impl Ledger {
    /// Records a message (its number is its index).
    pub fn sent(&mut self, record: MessageRecord) {
        self.messages.push(record);
    }

    /// `device` read `message` at `now_us` from the envelope `envelope`.
    pub fn read(&mut self, message: u64, device: usize, envelope: [u8; 16], now_us: u64) {
        let count = self.reads.entry((message, device)).or_default();
        *count += 1;
        if *count == 1 {
            if let Some(record) = self.messages.get(message as usize) {
                self.latencies_us.push(now_us.saturating_sub(record.sent_at_us));
            }
        }
        if self.tampered.contains(&(device, envelope)) {
            self.tampered_read += 1;
        }
    }

    pub fn refused(&mut self, device: usize, envelope: [u8; 16]) {
        self.refused += 1;
        if self.tampered.contains(&(device, envelope)) {
            self.tampered_refused += 1;
        }
    }

    /// `device` is a member of `group` from `epoch` (time `at_us`) on.
    pub fn joined(&mut self, group: usize, device: usize, epoch: u64, at_us: u64) {
        self.membership.entry(group).or_default().entry(device).or_default().push((epoch, u64::MAX));
        self.tenure.entry((group, device)).or_default().push((at_us, u64::MAX));
    }

    /// `device` is no member of `group` from `epoch` (time `at_us`) on.
    pub fn left(&mut self, group: usize, device: usize, epoch: u64, at_us: u64) {
        if let Some(last) = self.membership.entry(group).or_default().entry(device).or_default().last_mut() {
            if last.1 == u64::MAX {
                last.1 = epoch;
            }
        }
        if let Some(last) = self.tenure.entry((group, device)).or_default().last_mut() {
            if last.1 == u64::MAX {
                last.1 = at_us;
            }
        }
    }

    fn member_at(&self, group: usize, device: usize, epoch: u64) -> bool {
        self.membership
            .get(&group)
            .and_then(|members| members.get(&device))
            .is_some_and(|intervals| intervals.iter().any(|(from, until)| (*from..*until).contains(&epoch)))
    }

    /// Whether `device` was a member of `group` at `at_us` and stayed one to the end of the run.
    fn stays_from(&self, group: usize, device: usize, at_us: u64) -> bool {
        self.tenure
            .get(&(group, device))
            .is_some_and(|tenure| tenure.iter().any(|(from, until)| *from <= at_us && *until == u64::MAX))
    }

    /// Checks delivery: every message read at most once by each device, and only by devices it
    /// was addressed to; and read at least once by every device it was addressed to — for a group
    /// message, if sender and reader were both members when it was sent and stayed members (a
    /// member removed later may drop what reaches it after the news of its removal, and members
    /// drop what a removed member sent once they know, as Signal's clients do). A message an
    /// adversarial relay may keep from arriving (`attacked(sender, recipient)`) may be missed:
    /// counted, not a violation.
    pub fn check_delivery(&self, attacked: &dyn Fn(usize, usize) -> bool, describe: &dyn Fn(usize) -> String) -> Delivery {
        let mut violations = Vec::new();
        let mut missing = 0u64;
        let mut prevented = 0u64;
        let mut expected = 0u64;
        let mut from_removed_unread = 0u64;
        let mut read_twice = 0u64;
        let addressed_count = self.messages.iter().map(|record| record.addressed.len() + record.synced.len()).sum();
        let mut addressed_to: HashSet<(u64, usize)> = HashSet::with_capacity_and_hasher(addressed_count, Default::default());
        for (number, record) in self.messages.iter().enumerate() {
            let number = number as u64;
            for &device in record.synced.iter() {
                addressed_to.insert((number, device));
                expected += 1;
                if self.reads.contains_key(&(number, device)) {
                    continue;
                }
                missing += 1;
                if attacked(record.sender, device) {
                    prevented += 1;
                    continue;
                }
                violations.push(Violation {
                    invariant: SYNCED,
                    detail: format!(
                        "message {number} (sent at {:.3} s by {}) never reached {}, another device of the same person",
                        record.sent_at_us as f64 / 1e6,
                        describe(record.sender),
                        describe(device)
                    ),
                });
            }
            for &device in record.addressed.iter() {
                addressed_to.insert((number, device));
                if self.unwanted.contains(&(record.sender, device)) {
                    continue;
                }
                let read = self.reads.contains_key(&(number, device));
                if let Some(group) = record.group {
                    if !self.stays_from(group, device, record.sent_at_us) {
                        continue;
                    }
                    if !self.stays_from(group, record.sender, record.sent_at_us) {
                        from_removed_unread += u64::from(!read);
                        continue;
                    }
                }
                expected += 1;
                if read {
                    continue;
                }
                missing += 1;
                if attacked(record.sender, device) {
                    prevented += 1;
                    continue;
                }
                violations.push(Violation {
                    invariant: "exactly-once delivery",
                    detail: format!(
                        "message {number} (sent at {:.3} s by {}) never reached {}",
                        record.sent_at_us as f64 / 1e6,
                        describe(record.sender),
                        describe(device)
                    ),
                });
            }
        }
        // Only the offending reads are sorted (for a stable report), not every read.
        let mut offending: Vec<(&(u64, usize), &u32)> =
            self.reads.iter().filter(|(key, count)| **count > 1 || !addressed_to.contains(key)).collect();
        offending.sort();
        for (&(message, device), &count) in offending {
            if count > 1 {
                read_twice += 1;
                violations.push(Violation {
                    invariant: "exactly-once delivery",
                    detail: format!("message {message} read {count} times by {}", describe(device)),
                });
            }
            if !addressed_to.contains(&(message, device)) {
                violations.push(Violation {
                    invariant: "exactly-once delivery",
                    detail: format!("message {message} read by {}, which it was not addressed to", describe(device)),
                });
            }
        }
        Delivery { violations, missing, prevented, expected, from_removed_unread, read_twice }
    }

    /// Checks that no device read, or could read, a group message sent (by the sender's epoch)
    /// while the admins' changes did not make it a member: every read of a kept group message
    /// is checked against the reader's membership; and each device that holds keys of a group
    /// although the admins never made it a member (`holders`: by group, the devices holding any of
    /// its sender keys) tries every message of that group with those keys (a store that read a
    /// message has used its key up, hence both). Any such read is a violation: a key reached the
    /// device through a change no admin made. Returns (outsiders, attempts, readable,
    /// violations), where `readable` counts both kinds.
    pub fn check_outsiders(
        &self,
        holders: &HashMap<usize, Vec<usize>>,
        stores: &dyn Fn(usize) -> InMemorySenderKeyStore,
        address: &dyn Fn(usize) -> ProtocolAddress,
        group_id: &dyn Fn(usize) -> String,
    ) -> (u64, u64, u64, Vec<Violation>) {
        let (mut outsiders, mut attempts, mut readable) = (0, 0, 0);
        let mut violations = Vec::new();
        let kept: HashSet<u64> = self.group_ciphertexts.iter().map(|c| c.message).collect();
        let mut readers: HashMap<u64, Vec<usize>> = HashMap::default();
        for &(message, device) in self.reads.keys().filter(|(message, _)| kept.contains(message)) {
            readers.entry(message).or_default().push(device);
        }
        for ciphertext in &self.group_ciphertexts {
            let mut readers = readers.remove(&ciphertext.message).unwrap_or_default();
            readers.sort_unstable();
            for reader in readers {
                if reader != ciphertext.sender && !self.member_at(ciphertext.group, reader, ciphertext.sender_epoch) {
                    readable += 1;
                    violations.push(Violation {
                        invariant: OUTSIDER_READ,
                        detail: format!(
                            "{} read message {} that {} sent to {} at epoch {}, when the admins' changes did not make it a member",
                            address(reader),
                            ciphertext.message,
                            address(ciphertext.sender),
                            group_id(ciphertext.group),
                            ciphertext.sender_epoch
                        ),
                    });
                }
            }
        }
        let mut groups: Vec<usize> = holders.keys().copied().collect();
        groups.sort_unstable();
        for group in groups {
            let members = self.membership.get(&group);
            for &device in &holders[&group] {
                if members.is_some_and(|members| members.contains_key(&device)) {
                    continue;
                }
                outsiders += 1;
                let mut store = stores(device);
                let id = group_id(group);
                for ciphertext in self.group_ciphertexts.iter().filter(|c| c.group == group && c.sender != device) {
                    attempts += 1;
                    let Ok(message) = SenderKeyMessage::parse(&ciphertext.bytes) else { continue };
                    if sender_keys::decrypt(&mut store, &id, &address(ciphertext.sender), &message).is_ok() {
                        readable += 1;
                        violations.push(Violation {
                            invariant: OUTSIDER_READ,
                            detail: format!(
                                "{} could read message {} that {} sent to {id}, though no admin ever added it",
                                address(device),
                                ciphertext.message,
                                address(ciphertext.sender)
                            ),
                        });
                    }
                }
            }
        }
        (outsiders, attempts, readable, violations)
    }

    /// For each device that was ever in a group, tries every message of that group sent (by the
    /// sender's epoch) while the device was *not* a member, with the sender keys the device holds
    /// at the end of the run (a member that keeps everything it is given; a store keeps the five
    /// newest keys of each sender). Devices never in the group hold none of its keys. Returns
    /// (attempts, readable) and a violation per readable message.
    pub fn check_membership(
        &self,
        stores: &dyn Fn(usize) -> InMemorySenderKeyStore,
        address: &dyn Fn(usize) -> ProtocolAddress,
        group_id: &dyn Fn(usize) -> String,
    ) -> (u64, u64, Vec<Violation>) {
        let mut attempts = 0;
        let mut readable = 0;
        let mut violations = Vec::new();
        for (&group, members) in &self.membership {
            let mut devices: Vec<usize> = members.keys().copied().collect();
            devices.sort_unstable();
            for device in devices {
                let outside: Vec<&GroupCiphertext> = self
                    .group_ciphertexts
                    .iter()
                    .filter(|c| c.group == group && c.sender != device && !self.member_at(group, device, c.sender_epoch))
                    .collect();
                if outside.is_empty() {
                    continue;
                }
                let mut store = stores(device);
                let id = group_id(group);
                for ciphertext in outside {
                    attempts += 1;
                    let Ok(message) = SenderKeyMessage::parse(&ciphertext.bytes) else { continue };
                    if sender_keys::decrypt(&mut store, &id, &address(ciphertext.sender), &message).is_ok() {
                        readable += 1;
                        let joined_later = members.get(&device).is_some_and(|i| i.iter().all(|(from, _)| *from > ciphertext.sender_epoch));
                        violations.push(Violation {
                            invariant: if joined_later { "no read before joining" } else { "no read after removal" },
                            detail: format!(
                                "{} could read message {} that {} sent to {id} at epoch {}, when it was not a member",
                                address(device),
                                ciphertext.message,
                                address(ciphertext.sender),
                                ciphertext.sender_epoch
                            ),
                        });
                    }
                }
            }
        }
        (attempts, readable, violations)
    }
}
