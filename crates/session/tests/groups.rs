//! Sender Keys between Switchboard members, in both suites: every member sends and reads, out of
//! order, duplicates, tampering, limits, rotation, persistence and batch catch-up.

use rand::SeedableRng;
use rand::rngs::StdRng;
use switchboard_session::group::{self, InMemorySenderKeyStore, SenderKeyDistributionMessage, SenderKeyMessage, SenderKeyRecord, SenderKeyStore};
use switchboard_session::limits::{MAX_FORWARD_JUMPS, MAX_RETIRED_SENDER_KEYS, MAX_SENDER_KEY_STATES, MAX_SKIPPED_KEYS};
use switchboard_session::{Error, KeyPair, ProtocolAddress, Suite};
use switchboard_wire::{Message, decode, signal};

const GROUP: &str = "group-1";

struct Member {
    address: ProtocolAddress,
    store: InMemorySenderKeyStore,
}

struct Group {
    members: Vec<Member>,
    suite: Suite,
    rng: StdRng,
}

impl Group {
    /// `size` members who have all exchanged distribution messages.
    fn new(size: usize, suite: Suite, seed: u64) -> Group {
        let members = (0..size)
            .map(|i| Member { address: ProtocolAddress::new(format!("member{i}@app{}", i % 3), 1), store: Default::default() })
            .collect();
        let mut group = Group { members, suite, rng: StdRng::seed_from_u64(seed) };
        for sender in 0..size {
            let distribution = group.distribution(sender);
            group.deliver_distribution(sender, &distribution, |_| true);
        }
        group
    }

    fn distribution(&mut self, sender: usize) -> SenderKeyDistributionMessage {
        let member = &mut self.members[sender];
        let message = group::create_distribution(&mut member.store, GROUP, &member.address, self.suite, &mut self.rng).unwrap();
        // Through bytes, as it would travel.
        SenderKeyDistributionMessage::parse(message.serialize()).unwrap()
    }

    fn deliver_distribution(&mut self, sender: usize, message: &SenderKeyDistributionMessage, to: impl Fn(usize) -> bool) {
        let from = self.members[sender].address.clone();
        for (i, member) in self.members.iter_mut().enumerate() {
            if i != sender && to(i) {
                group::process_distribution(&mut member.store, GROUP, &from, message).unwrap();
            }
        }
    }

    fn send(&mut self, sender: usize, plaintext: &[u8]) -> Vec<u8> {
        let member = &mut self.members[sender];
        group::encrypt(&mut member.store, GROUP, &member.address, plaintext, &mut self.rng).unwrap().serialize().to_vec()
    }

    fn read(&mut self, reader: usize, sender: usize, bytes: &[u8]) -> Result<Vec<u8>, Error> {
        let from = self.members[sender].address.clone();
        let message = SenderKeyMessage::parse(bytes)?;
        group::decrypt(&mut self.members[reader].store, GROUP, &from, &message)
    }

    fn record(&self, reader: usize, sender: usize) -> Vec<u8> {
        let from = &self.members[sender].address;
        self.members[reader].store.load_sender_key(GROUP, from).unwrap().map(|r| r.serialize().to_vec()).unwrap_or_default()
    }
}

fn both_suites(test: impl Fn(Suite)) {
    for suite in [Suite::SignalV3, Suite::Aes256Gcm] {
        test(suite);
    }
}

#[test]
fn every_member_sends_and_every_other_member_reads() {
    both_suites(|suite| {
        let mut group = Group::new(5, suite, 1);
        for round in 0..10 {
            for sender in 0..5 {
                let text = format!("{suite} round {round} from {sender}");
                let bytes = group.send(sender, text.as_bytes());
                assert_eq!(bytes[0], suite.version_byte());
                for reader in (0..5).filter(|r| *r != sender) {
                    assert_eq!(group.read(reader, sender, &bytes).unwrap(), text.as_bytes());
                }
            }
        }
    });
}

#[test]
fn out_of_order_duplicates_and_loss() {
    both_suites(|suite| {
        let mut group = Group::new(3, suite, 2);
        let messages: Vec<_> = (0..20).map(|i| group.send(0, &[i])).collect();
        for i in [19, 3, 0, 10, 7, 18, 1] {
            assert_eq!(group.read(1, 0, &messages[i]).unwrap(), [i as u8]);
        }
        for i in [3, 19, 0] {
            let before = group.record(1, 0);
            assert!(matches!(group.read(1, 0, &messages[i]), Err(Error::Duplicate { .. })));
            assert_eq!(group.record(1, 0), before);
        }
        // Member 2 lost everything but the last: it still reads it, and older ones later.
        assert_eq!(group.read(2, 0, &messages[19]).unwrap(), [19]);
        assert_eq!(group.read(2, 0, &messages[5]).unwrap(), [5]);
    });
}

#[test]
fn every_flipped_byte_is_rejected_and_changes_nothing() {
    both_suites(|suite| {
        let mut group = Group::new(2, suite, 3);
        let bytes = group.send(0, b"signed and sealed, more than one block long");
        let before = group.record(1, 0);
        for index in 0..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[index] ^= 0x10;
            assert!(group.read(1, 0, &tampered).is_err(), "{suite}: byte {index} accepted");
            assert_eq!(group.record(1, 0), before, "{suite}: byte {index} changed state");
        }
        assert!(group.read(1, 0, &bytes[..bytes.len() - 1]).is_err());
        assert_eq!(group.read(1, 0, &bytes).unwrap(), b"signed and sealed, more than one block long");
    });
}

#[test]
fn a_message_signed_by_another_key_is_rejected() {
    let mut group = Group::new(3, Suite::SignalV3, 4);
    let from_1 = group.send(1, b"from member 1");
    // Presented as if from member 2: wrong key id and signing key.
    assert!(group.read(0, 2, &from_1).is_err());
    assert_eq!(group.read(0, 1, &from_1).unwrap(), b"from member 1");
}

#[test]
fn forward_jumps_and_stored_keys_are_limited() {
    both_suites(|suite| {
        let mut group = Group::new(2, suite, 5);
        let messages: Vec<_> = (0..=MAX_FORWARD_JUMPS + 1).map(|_| group.send(0, b"m")).collect();
        assert!(matches!(
            group.read(1, 0, &messages[MAX_FORWARD_JUMPS as usize + 1]),
            Err(Error::TooFarAhead { .. })
        ));
        assert_eq!(group.read(1, 0, &messages[MAX_FORWARD_JUMPS as usize]).unwrap(), b"m");
        let oldest_kept = MAX_FORWARD_JUMPS as usize - MAX_SKIPPED_KEYS;
        assert_eq!(group.read(1, 0, &messages[oldest_kept]).unwrap(), b"m");
        assert!(matches!(group.read(1, 0, &messages[oldest_kept - 1]), Err(Error::Duplicate { .. })));
    });
}

#[test]
fn rotation_cuts_off_members_who_do_not_get_the_new_key_and_old_messages_still_decrypt() {
    both_suites(|suite| {
        let mut group = Group::new(3, suite, 6);
        let before_rotation = group.send(0, b"before");
        let member = &mut group.members[0];
        let fresh = group::rotate(&mut member.store, GROUP, &member.address, suite, &mut group.rng).unwrap();
        group.deliver_distribution(0, &fresh, |i| i == 1); // member 2 was removed
        let after = group.send(0, b"after");
        assert_eq!(group.read(1, 0, &after).unwrap(), b"after");
        assert!(matches!(group.read(2, 0, &after), Err(Error::NoSenderKey { .. })));
        // In-flight messages under the old key still decrypt for the remaining members.
        assert_eq!(group.read(1, 0, &before_rotation).unwrap(), b"before");
        assert_eq!(group.read(2, 0, &before_rotation).unwrap(), b"before");
    });
}

#[test]
fn only_the_newest_sender_keys_are_kept() {
    let mut group = Group::new(2, Suite::SignalV3, 7);
    let mut old_messages = Vec::new();
    for _ in 0..MAX_SENDER_KEY_STATES + 2 {
        old_messages.push(group.send(0, b"old"));
        let member = &mut group.members[0];
        let fresh = group::rotate(&mut member.store, GROUP, &member.address, Suite::SignalV3, &mut group.rng).unwrap();
        group.deliver_distribution(0, &fresh, |_| true);
    }
    let decryptable = old_messages.iter().filter(|m| group.read(1, 0, m).is_ok()).count();
    // The newest MAX_SENDER_KEY_STATES keys are kept; the current one sent none of old_messages.
    assert_eq!(decryptable, MAX_SENDER_KEY_STATES - 1);
}

#[test]
fn reprocessing_a_distribution_does_not_rewind_the_chain() {
    let mut group = Group::new(2, Suite::SignalV3, 8);
    let first_distribution = group.distribution(0);
    let message = group.send(0, b"read once");
    assert_eq!(group.read(1, 0, &message).unwrap(), b"read once");
    group.deliver_distribution(0, &first_distribution, |_| true);
    assert!(matches!(group.read(1, 0, &message), Err(Error::Duplicate { .. })));
}

/// Member 0 rotates `times` times after its first key, member 1 processing every new key; returns
/// the first key's distribution and a message member 1 read under it.
fn rotate_past(group: &mut Group, times: usize) -> (SenderKeyDistributionMessage, Vec<u8>) {
    let first = group.distribution(0);
    let message = group.send(0, b"under the first key");
    assert_eq!(group.read(1, 0, &message).unwrap(), b"under the first key");
    for _ in 0..times {
        let member = &mut group.members[0];
        let fresh = group::rotate(&mut member.store, GROUP, &member.address, group.suite, &mut group.rng).unwrap();
        group.deliver_distribution(0, &fresh, |_| true);
    }
    (first, message)
}

fn process_again(group: &mut Group, distribution: &SenderKeyDistributionMessage) -> Result<(), Error> {
    let from = group.members[0].address.clone();
    group::process_distribution(&mut group.members[1].store, GROUP, &from, distribution)
}

#[test]
fn an_evicted_sender_key_does_not_come_back_at_its_old_iteration() {
    both_suites(|suite| {
        let mut group = Group::new(2, suite, 12);
        let (first, read_once) = rotate_past(&mut group, MAX_SENDER_KEY_STATES);
        assert!(matches!(group.read(1, 0, &read_once), Err(Error::NoSenderKey { .. })), "evicted");
        let before = group.record(1, 0);
        assert!(matches!(process_again(&mut group, &first), Err(Error::RetiredSenderKey { .. })));
        assert_eq!(group.record(1, 0), before, "a refused distribution changes nothing");
        // So a message read once under it is not read again.
        assert!(matches!(group.read(1, 0, &read_once), Err(Error::NoSenderKey { .. })));
        // What is retired stays retired across a restart.
        let from = group.members[0].address.clone();
        let record = group.members[1].store.load_sender_key(GROUP, &from).unwrap().unwrap();
        let restored = SenderKeyRecord::deserialize(&record.serialize()).unwrap();
        group.members[1].store.store_sender_key(GROUP, &from, restored).unwrap();
        assert!(matches!(process_again(&mut group, &first), Err(Error::RetiredSenderKey { .. })));
    });
}

/// `message` with its signing key swapped for a fresh one (same key id, chain and iteration).
fn with_other_signing_key(message: &SenderKeyDistributionMessage, rng: &mut StdRng) -> SenderKeyDistributionMessage {
    let bytes = message.serialize();
    let mut structure: signal::SenderKeyDistributionMessage = decode(&bytes[1..], 1 << 12).unwrap();
    structure.signing_key = Some(KeyPair::generate(rng).public.serialize().to_vec());
    let mut forged = vec![bytes[0]];
    forged.extend(structure.encode_to_vec());
    SenderKeyDistributionMessage::parse(&forged).unwrap()
}

#[test]
fn a_key_replaced_under_the_same_id_does_not_come_back() {
    let mut group = Group::new(2, Suite::Aes256Gcm, 13);
    let first = group.distribution(0);
    let other = with_other_signing_key(&first, &mut group.rng);
    process_again(&mut group, &other).unwrap();
    // The first signing key left the record: offering it again does not flip the key back.
    assert!(matches!(process_again(&mut group, &first), Err(Error::RetiredSenderKey { .. })));
    // A key still held (the current one) may be offered again: nothing changes.
    let before = group.record(1, 0);
    process_again(&mut group, &other).unwrap();
    assert_eq!(group.record(1, 0), before);
}

#[test]
fn retired_keys_in_a_stored_record_are_bounded_and_checked() {
    use signal::sender_key_record_structure::RetiredSenderKey;
    let mut rng = StdRng::seed_from_u64(14);
    let mut retired = |id| RetiredSenderKey { sender_key_id: Some(id), signing_key: Some(KeyPair::generate(&mut rng).public.serialize().to_vec()) };
    let record = |retired: Vec<RetiredSenderKey>| signal::SenderKeyRecordStructure { sender_key_states: Vec::new(), retired }.encode_to_vec();
    let at_the_bound: Vec<_> = (0..MAX_RETIRED_SENDER_KEYS as u32).map(&mut retired).collect();
    assert!(SenderKeyRecord::deserialize(&record(at_the_bound.clone())).is_ok());
    let mut over = at_the_bound.clone();
    over.push(retired(99));
    assert!(matches!(SenderKeyRecord::deserialize(&record(over)), Err(Error::InvalidRecord(_))));
    let mut no_id = at_the_bound[..1].to_vec();
    no_id[0].sender_key_id = None;
    assert!(matches!(SenderKeyRecord::deserialize(&record(no_id)), Err(Error::InvalidRecord(_))));
    let mut bad_key = at_the_bound[..1].to_vec();
    bad_key[0].signing_key = Some(vec![5; 7]);
    assert!(matches!(SenderKeyRecord::deserialize(&record(bad_key)), Err(Error::InvalidRecord(_))));
}

#[test]
fn sender_keys_survive_a_restart() {
    both_suites(|suite| {
        let mut group = Group::new(2, suite, 9);
        let early: Vec<_> = (0..3).map(|i| group.send(0, &[i])).collect();
        assert_eq!(group.read(1, 0, &early[2]).unwrap(), [2]);
        for member in 0..2 {
            for sender in 0..2 {
                let address = group.members[sender].address.clone();
                let store = &mut group.members[member].store;
                if let Some(record) = store.load_sender_key(GROUP, &address).unwrap() {
                    let restored = SenderKeyRecord::deserialize(&record.serialize()).unwrap();
                    store.store_sender_key(GROUP, &address, restored).unwrap();
                }
            }
        }
        assert_eq!(group.read(1, 0, &early[0]).unwrap(), [0]);
        let later = group.send(0, b"after restart");
        assert_eq!(group.read(1, 0, &later).unwrap(), b"after restart");
        let back = group.send(1, b"back");
        assert_eq!(group.read(0, 1, &back).unwrap(), b"back");
    });
}

#[test]
fn batch_catch_up_reads_everything_and_still_finds_a_forgery() {
    both_suites(|suite| {
        let mut group = Group::new(4, suite, 10);
        let mut queued = Vec::new();
        for i in 0..60u8 {
            let sender = 1 + (i as usize % 3);
            queued.push((sender, vec![i], group.send(sender, &[i])));
        }
        let parsed = |queued: &[(usize, Vec<u8>, Vec<u8>)], group: &Group| -> Vec<_> {
            queued
                .iter()
                .map(|(sender, _, bytes)| (group.members[*sender].address.clone(), SenderKeyMessage::parse(bytes).unwrap()))
                .collect()
        };
        let batch = parsed(&queued, &group);
        let results = group::decrypt_batch(&mut group.members[0].store, GROUP, &batch);
        for ((_, plaintext, _), result) in queued.iter().zip(&results) {
            assert_eq!(result.as_ref().unwrap(), plaintext);
        }
        // A batch with one forged signature: the forgery fails, every other message decrypts.
        let mut more = Vec::new();
        for i in 0..10u8 {
            more.push((1, vec![i], group.send(1, &[i])));
        }
        let last = more[4].2.len() - 1;
        more[4].2[last] ^= 1;
        let batch = parsed(&more, &group);
        let results = group::decrypt_batch(&mut group.members[2].store, GROUP, &batch);
        for (i, ((_, plaintext, _), result)) in more.iter().zip(&results).enumerate() {
            if i == 4 {
                assert!(result.is_err());
            } else {
                assert_eq!(result.as_ref().unwrap(), plaintext, "message {i}");
            }
        }
    });
}

#[test]
fn a_group_message_of_one_suite_is_not_read_under_the_other() {
    let mut v3 = Group::new(2, Suite::SignalV3, 11);
    let mut gcm = Group::new(2, Suite::Aes256Gcm, 11);
    let v3_message = v3.send(0, b"v3");
    let gcm_message = gcm.send(0, b"gcm");
    assert!(v3.read(1, 0, &gcm_message).is_err());
    assert!(gcm.read(1, 0, &v3_message).is_err());
    let mut relabelled = gcm_message.clone();
    relabelled[0] = Suite::SignalV3.version_byte();
    assert!(gcm.read(1, 0, &relabelled).is_err());
}

/// A group created under a post-quantum suite keeps its classical twin's messages (its keys come
/// over pairwise sessions; libsignal writes version 3 sender-key messages under PQXDH too), and
/// sender-key bytes labelled with a post-quantum version are refused.
#[test]
fn a_post_quantum_suite_gives_a_group_its_classical_twin() {
    for (suite, twin) in [(Suite::SignalPqxdh, Suite::SignalV3), (Suite::PqAes256Gcm, Suite::Aes256Gcm)] {
        let mut group = Group::new(3, suite, 9);
        let bytes = group.send(0, b"hello");
        assert_eq!(bytes[0], twin.version_byte());
        assert_eq!(group.read(1, 0, &bytes).unwrap(), b"hello");
        let mut relabelled = bytes.clone();
        relabelled[0] = suite.version_byte();
        assert!(matches!(SenderKeyMessage::parse(&relabelled), Err(Error::InvalidVersion(_))));
    }
}
