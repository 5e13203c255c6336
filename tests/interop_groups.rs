//! Group chats whose members run different implementations: Switchboard and Signal's reference C
//! library. Every distribution message and every group message written by one is read by the other.

use rand::SeedableRng;
use rand::rngs::StdRng;
use switchboard_libsignal_c as c;
use switchboard_session::group::{self, InMemorySenderKeyStore, SenderKeyDistributionMessage, SenderKeyMessage};
use switchboard_session::{Error, ProtocolAddress, Suite};

const GROUP: &str = "cross-implementation group";

enum Member {
    Rust { address: ProtocolAddress, store: InMemorySenderKeyStore },
    C { name: String, party: c::Party },
}

#[derive(Debug, PartialEq)]
enum Failure {
    Duplicate,
    NoKey,
    Invalid,
}

struct Chat {
    members: Vec<Member>,
    rng: StdRng,
}

impl Chat {
    /// Members 0, 2, 4… run Switchboard; 1, 3, 5… the C library.
    fn new(size: usize, seed: u64) -> Chat {
        let members = (0..size)
            .map(|i| {
                let name = format!("member{i}");
                if i % 2 == 0 {
                    Member::Rust { address: ProtocolAddress::new(name, 1), store: Default::default() }
                } else {
                    Member::C { name, party: c::Party::new(i as u32 + 1, 1, 0, seed + i as u64).unwrap() }
                }
            })
            .collect();
        let mut chat = Chat { members, rng: StdRng::seed_from_u64(seed) };
        for sender in 0..size {
            let distribution = chat.distribution(sender, false);
            chat.deliver_distribution(sender, &distribution, |_| true);
        }
        chat
    }

    fn name(&self, member: usize) -> String {
        match &self.members[member] {
            Member::Rust { address, .. } => address.name().to_owned(),
            Member::C { name, .. } => name.clone(),
        }
    }

    fn distribution(&mut self, sender: usize, rotate: bool) -> Vec<u8> {
        match &mut self.members[sender] {
            Member::Rust { address, store } => {
                let message = if rotate {
                    group::rotate(store, GROUP, address, Suite::SignalV3, &mut self.rng)
                } else {
                    group::create_distribution(store, GROUP, address, Suite::SignalV3, &mut self.rng)
                };
                message.unwrap().serialize().to_vec()
            }
            Member::C { party, .. } => {
                if rotate { party.group_rotate(GROUP) } else { party.group_distribution(GROUP) }.unwrap()
            }
        }
    }

    fn deliver_distribution(&mut self, sender: usize, bytes: &[u8], to: impl Fn(usize) -> bool) {
        let sender_name = self.name(sender);
        for (i, member) in self.members.iter_mut().enumerate() {
            if i == sender || !to(i) {
                continue;
            }
            match member {
                Member::Rust { store, .. } => {
                    let message = SenderKeyDistributionMessage::parse(bytes).unwrap();
                    group::process_distribution(store, GROUP, &ProtocolAddress::new(sender_name.clone(), 1), &message).unwrap();
                }
                Member::C { party, .. } => party.group_process(GROUP, &sender_name, 1, bytes).unwrap(),
            }
        }
    }

    fn send(&mut self, sender: usize, plaintext: &[u8]) -> Vec<u8> {
        match &mut self.members[sender] {
            Member::Rust { address, store } => {
                group::encrypt(store, GROUP, address, plaintext, &mut self.rng).unwrap().serialize().to_vec()
            }
            Member::C { party, .. } => party.group_encrypt(GROUP, plaintext).unwrap(),
        }
    }

    fn read(&mut self, reader: usize, sender: usize, bytes: &[u8]) -> Result<Vec<u8>, Failure> {
        let sender_name = self.name(sender);
        match &mut self.members[reader] {
            Member::Rust { store, .. } => SenderKeyMessage::parse(bytes)
                .and_then(|message| group::decrypt(store, GROUP, &ProtocolAddress::new(sender_name, 1), &message))
                .map_err(|error| match error {
                    Error::Duplicate { .. } => Failure::Duplicate,
                    Error::NoSenderKey { .. } => Failure::NoKey,
                    _ => Failure::Invalid,
                }),
            Member::C { party, .. } => party.group_decrypt(GROUP, &sender_name, 1, bytes).map_err(|error| match error {
                c::Error::Duplicate => Failure::Duplicate,
                c::Error::NoSenderKey => Failure::NoKey,
                _ => Failure::Invalid,
            }),
        }
    }
}

#[test]
fn every_member_of_either_implementation_reads_every_other() {
    let mut chat = Chat::new(6, 1);
    for round in 0..20 {
        for sender in 0..6 {
            let text = format!("round {round} from member {sender}: {}", "·".repeat(round));
            let bytes = chat.send(sender, text.as_bytes());
            for reader in (0..6).filter(|r| *r != sender) {
                assert_eq!(chat.read(reader, sender, &bytes).as_deref(), Ok(text.as_bytes()), "{sender} → {reader}");
            }
        }
    }
}

#[test]
fn out_of_order_and_duplicates_across_implementations() {
    let mut chat = Chat::new(4, 2);
    for sender in 0..4 {
        let messages: Vec<_> = (0..30u8).map(|i| chat.send(sender, &[sender as u8, i])).collect();
        for reader in (0..4).filter(|r| *r != sender) {
            for i in [29, 0, 15, 3, 28, 1, 2, 14] {
                assert_eq!(chat.read(reader, sender, &messages[i]), Ok(vec![sender as u8, i as u8]), "{sender} → {reader}");
            }
            assert_eq!(chat.read(reader, sender, &messages[15]), Err(Failure::Duplicate), "{sender} → {reader}");
            assert_eq!(chat.read(reader, sender, &messages[29]), Err(Failure::Duplicate), "{sender} → {reader}");
        }
    }
}

#[test]
fn tampered_group_messages_are_rejected_by_both_and_harm_nothing() {
    let mut chat = Chat::new(2, 3);
    for sender in 0..2 {
        let reader = 1 - sender;
        let bytes = chat.send(sender, b"a group message that must arrive as written");
        for index in 0..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[index] ^= 0x20;
            assert!(chat.read(reader, sender, &tampered).is_err(), "{sender} → {reader}: byte {index} accepted");
        }
        assert_eq!(chat.read(reader, sender, &bytes).as_deref(), Ok(&b"a group message that must arrive as written"[..]));
    }
}

#[test]
fn rotation_after_a_removal_works_across_implementations() {
    let mut chat = Chat::new(4, 4);
    // Member 3 (C) is removed: every remaining member rotates and tells only the remaining ones.
    let in_flight: Vec<_> = (0..3).map(|sender| chat.send(sender, b"before removal")).collect();
    for sender in 0..3 {
        let fresh = chat.distribution(sender, true);
        chat.deliver_distribution(sender, &fresh, |i| i != 3);
    }
    for sender in 0..3 {
        let bytes = chat.send(sender, b"after removal");
        for reader in (0..3).filter(|r| *r != sender) {
            assert_eq!(chat.read(reader, sender, &bytes).as_deref(), Ok(&b"after removal"[..]), "{sender} → {reader}");
        }
        assert_eq!(chat.read(3, sender, &bytes), Err(Failure::NoKey), "removed member read {sender}'s message");
    }
    // Messages sent before the removal still decrypt for the members who remain.
    for (sender, bytes) in in_flight.iter().enumerate() {
        for reader in (0..3).filter(|r| *r != sender) {
            assert_eq!(chat.read(reader, sender, bytes).as_deref(), Ok(&b"before removal"[..]), "{sender} → {reader}");
        }
    }
}
