//! The group interaction model: up to four devices, a membership the input changes, sender keys
//! in one suite, and a network the input controls (deliver any message to anyone, in batches,
//! twice, tampered, under the wrong sender). Membership is this model's own, as an app would
//! keep it: a member added receives every current member's distribution at its current
//! iteration and hands its own to each (a device that was a member before hands out a fresh key:
//! its old one is known to members removed since); a member removed makes every remaining member
//! rotate and hand the new key to the remaining members only. Distributions travel as bytes.
//!
//! What the model expects of handing a genuine group message to a device:
//! - the device was a member (not the sender) when it was sent, and has not read it yet: it
//!   decrypts to exactly the plaintext sent — unless the device has since taken in
//!   [`MAX_SENDER_KEY_STATES`] newer sender keys of that sender, which legitimately drops the key;
//! - otherwise (read before; sent before the device joined or after it was removed; its own
//!   message): it fails.
//!
//! Tampered bytes and the wrong sender address always fail, and a failed decrypt leaves the
//! device's record of that sender exactly as it was. At most [`MAX_SENDS`] messages are sent, far
//! below the 2,000 skipped keys a sender key keeps.

use std::collections::{BTreeSet, HashMap};

use arbitrary::{Arbitrary, Unstructured};
use rand::SeedableRng;
use rand::rngs::StdRng;
use switchboard_session::group::{self, InMemorySenderKeyStore, SenderKeyDistributionMessage, SenderKeyMessage, SenderKeyRecord, SenderKeyStore};
use switchboard_session::limits::MAX_SENDER_KEY_STATES;
use switchboard_session::{ProtocolAddress, Suite};

use crate::fixtures::{GROUP, sender_key_bytes};
use crate::{byte, pick, word};

/// Devices that can be members.
pub const DEVICES: usize = 4;
/// Group messages per run, at most.
pub const MAX_SENDS: usize = 200;
/// Actions per run, at most.
pub const MAX_ACTIONS: usize = 1_000;

/// One step. Device numbers are modulo [`DEVICES`]; message indices modulo the messages sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A member sends a group message of `len` bytes.
    Send { from: u8, len: u8 },
    /// Message `index` is handed to device `to` (member or not).
    Deliver { index: u8, to: u8 },
    /// `count` messages from `index` on are handed to `to` together (`decrypt_batch`), one of
    /// them tampered when `tamper` is not 0.
    Batch { index: u8, count: u8, to: u8, tamper: u8 },
    /// A copy of message `index` with one byte changed is handed to `to`.
    Tamper { index: u8, to: u8, position: u16, xor: u8 },
    /// Message `index` is handed to `to` as if from device `from`.
    WrongSender { index: u8, to: u8, from: u8 },
    /// A device joins.
    Add { device: u8 },
    /// A member leaves; the rest rotate.
    Remove { device: u8 },
    /// A member replaces its sender key and hands it to the others.
    Rotate { device: u8 },
    /// A member's current distribution reaches another member again (a duplicate).
    Redistribute { from: u8, to: u8 },
    /// `device`'s record of `sender` goes through serialize and deserialize.
    Persist { device: u8, sender: u8 },
}

const OPS: u8 = 10;

impl<'a> Arbitrary<'a> for Action {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match byte(u) % OPS {
            0 => Action::Send { from: byte(u), len: byte(u) },
            1 => Action::Deliver { index: byte(u), to: byte(u) },
            2 => Action::Batch { index: byte(u), count: byte(u), to: byte(u), tamper: byte(u) },
            3 => Action::Tamper { index: byte(u), to: byte(u), position: word(u), xor: byte(u) },
            4 => Action::WrongSender { index: byte(u), to: byte(u), from: byte(u) },
            5 => Action::Add { device: byte(u) },
            6 => Action::Remove { device: byte(u) },
            7 => Action::Rotate { device: byte(u) },
            8 => Action::Redistribute { from: byte(u), to: byte(u) },
            _ => Action::Persist { device: byte(u), sender: byte(u) },
        })
    }
}

impl Action {
    /// The bytes [`Arbitrary::arbitrary`] reads back as this action.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Action::Send { from, len } => out.extend([0, from, len]),
            Action::Deliver { index, to } => out.extend([1, index, to]),
            Action::Batch { index, count, to, tamper } => out.extend([2, index, count, to, tamper]),
            Action::Tamper { index, to, position, xor } => {
                out.extend([3, index, to]);
                out.extend(position.to_le_bytes());
                out.push(xor);
            }
            Action::WrongSender { index, to, from } => out.extend([4, index, to, from]),
            Action::Add { device } => out.extend([5, device]),
            Action::Remove { device } => out.extend([6, device]),
            Action::Rotate { device } => out.extend([7, device]),
            Action::Redistribute { from, to } => out.extend([8, from, to]),
            Action::Persist { device, sender } => out.extend([9, device, sender]),
        }
    }
}

/// A whole input: the suite, the first members (a bit mask), then actions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    pub gcm: bool,
    pub initial: u8,
    pub actions: Vec<Action>,
}

impl Script {
    pub fn decode(data: &[u8]) -> Script {
        let mut u = Unstructured::new(data);
        let flags = byte(&mut u);
        let mut actions = Vec::new();
        while !u.is_empty() && actions.len() < MAX_ACTIONS {
            actions.push(Action::arbitrary(&mut u).expect("reading bytes never fails"));
        }
        Script { gcm: flags & 1 == 1, initial: flags >> 1 & 0x0f, actions }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![u8::from(self.gcm) | (self.initial & 0x0f) << 1];
        for action in &self.actions {
            action.encode(&mut out);
        }
        out
    }
}

#[derive(Clone, Debug)]
struct Sent {
    from: usize,
    key_id: u32,
    bytes: Vec<u8>,
    plaintext: Vec<u8>,
    /// Members other than the sender when it was sent: who may read it.
    readers: BTreeSet<usize>,
    /// Who has read it.
    read_by: BTreeSet<usize>,
}

struct World {
    suite: Suite,
    rng: StdRng,
    addresses: Vec<ProtocolAddress>,
    stores: Vec<InMemorySenderKeyStore>,
    members: BTreeSet<usize>,
    sent: Vec<Sent>,
    /// Sender key ids each device has taken in from each sender, in order.
    keys_seen: HashMap<(usize, usize), Vec<u32>>,
}

/// Runs one input through the model, panicking on the first violated expectation.
pub fn run(data: &[u8]) {
    let script = Script::decode(data);
    let mut world = World {
        suite: if script.gcm { Suite::Aes256Gcm } else { Suite::SignalV3 },
        rng: StdRng::seed_from_u64(0x9e0 + data.len() as u64),
        addresses: (0..DEVICES).map(|i| ProtocolAddress::new(format!("device{i}@app{}", i % 2), 1)).collect(),
        stores: vec![InMemorySenderKeyStore::default(); DEVICES],
        members: BTreeSet::new(),
        sent: Vec::new(),
        keys_seen: HashMap::new(),
    };
    for device in 0..DEVICES {
        if script.initial >> device & 1 == 1 {
            world.add(device);
        }
    }
    for action in &script.actions {
        world.step(action);
    }
    // In the end every message reaches every device that may read it and has not.
    for index in 0..world.sent.len() {
        for to in world.sent[index].readers.clone() {
            if !world.sent[index].read_by.contains(&to) {
                world.deliver(index, to);
            }
        }
    }
}

impl World {
    fn step(&mut self, action: &Action) {
        let device = |d: u8| usize::from(d) % DEVICES;
        match *action {
            Action::Send { from, len } => self.send(device(from), len),
            Action::Deliver { index, to } => {
                if let Some(index) = pick(index, self.sent.len()) {
                    self.deliver(index, device(to));
                }
            }
            Action::Batch { index, count, to, tamper } => {
                if let Some(index) = pick(index, self.sent.len()) {
                    self.batch(index, usize::from(count % 8) + 1, device(to), tamper);
                }
            }
            Action::Tamper { index, to, position, xor } => {
                if let Some(index) = pick(index, self.sent.len()) {
                    let mut bytes = self.sent[index].bytes.clone();
                    let position = usize::from(position) % bytes.len();
                    bytes[position] ^= if xor == 0 { 1 } else { xor };
                    self.must_fail(index, device(to), self.sent[index].from, &bytes, "a tampered group message decrypted");
                }
            }
            Action::WrongSender { index, to, from } => {
                if let Some(index) = pick(index, self.sent.len()) {
                    let (from, sender) = (device(from), self.sent[index].from);
                    if from != sender {
                        let bytes = self.sent[index].bytes.clone();
                        self.must_fail(index, device(to), from, &bytes, "a group message decrypted as from another sender");
                    }
                }
            }
            Action::Add { device: d } => self.add(device(d)),
            Action::Remove { device: d } => self.remove(device(d)),
            Action::Rotate { device: d } => {
                let d = device(d);
                if self.members.contains(&d) {
                    self.rotate(d);
                }
            }
            Action::Redistribute { from, to } => {
                let (from, to) = (device(from), device(to));
                if from != to && self.members.contains(&from) && self.members.contains(&to) {
                    let distribution = self.distribution(from);
                    self.hand_distribution(from, to, &distribution);
                }
            }
            Action::Persist { device: d, sender } => {
                let (d, sender) = (device(d), device(sender));
                let address = self.addresses[sender].clone();
                let store = &mut self.stores[d];
                if let Some(record) = store.load_sender_key(GROUP, &address).expect("in-memory store") {
                    let bytes = record.serialize();
                    let restored = SenderKeyRecord::deserialize(&bytes).expect("a serialized record deserializes");
                    assert_eq!(*restored.serialize(), *bytes, "a sender key record changed through serialize and deserialize");
                    store.store_sender_key(GROUP, &address, restored).expect("in-memory store");
                }
            }
        }
    }

    /// `device`'s current distribution (creating its sender key if it has none), as bytes.
    fn distribution(&mut self, device: usize) -> Vec<u8> {
        let message =
            group::create_distribution(&mut self.stores[device], GROUP, &self.addresses[device], self.suite, &mut self.rng)
                .expect("create a distribution");
        message.serialize().to_vec()
    }

    fn hand_distribution(&mut self, from: usize, to: usize, bytes: &[u8]) {
        let message = SenderKeyDistributionMessage::parse(bytes).expect("a genuine distribution parses");
        group::process_distribution(&mut self.stores[to], GROUP, &self.addresses[from], &message)
            .expect("a genuine distribution is taken in");
        let seen = self.keys_seen.entry((to, from)).or_default();
        if !seen.contains(&message.key_id()) {
            seen.push(message.key_id());
        }
    }

    fn add(&mut self, device: usize) {
        if self.members.contains(&device) {
            return;
        }
        // A device coming back must not reuse the sender key it had: every member of that time
        // holds it, and some of them may have been removed since. It starts a fresh one.
        let returning = self.stores[device].load_sender_key(GROUP, &self.addresses[device]).expect("in-memory store").is_some();
        let own = if returning {
            let message = group::rotate(&mut self.stores[device], GROUP, &self.addresses[device], self.suite, &mut self.rng)
                .expect("rotate");
            message.serialize().to_vec()
        } else {
            self.distribution(device)
        };
        for member in self.members.clone() {
            self.hand_distribution(device, member, &own);
            let theirs = self.distribution(member);
            self.hand_distribution(member, device, &theirs);
        }
        self.members.insert(device);
    }

    fn remove(&mut self, device: usize) {
        if !self.members.remove(&device) {
            return;
        }
        for member in self.members.clone() {
            self.rotate(member);
        }
    }

    fn rotate(&mut self, device: usize) {
        let message = group::rotate(&mut self.stores[device], GROUP, &self.addresses[device], self.suite, &mut self.rng)
            .expect("rotate");
        let bytes = message.serialize().to_vec();
        for member in self.members.clone() {
            if member != device {
                self.hand_distribution(device, member, &bytes);
            }
        }
    }

    fn send(&mut self, from: usize, len: u8) {
        if !self.members.contains(&from) || self.sent.len() >= MAX_SENDS {
            return;
        }
        let mut plaintext = (self.sent.len() as u32).to_be_bytes().to_vec();
        plaintext.extend((0..len).map(|i| i.wrapping_mul(17) ^ from as u8));
        let message = group::encrypt(&mut self.stores[from], GROUP, &self.addresses[from], &plaintext, &mut self.rng)
            .expect("a member encrypts");
        let readers = self.members.iter().copied().filter(|m| *m != from).collect();
        self.sent.push(Sent {
            from,
            key_id: message.key_id(),
            bytes: message.serialize().to_vec(),
            plaintext,
            readers,
            read_by: BTreeSet::new(),
        });
    }

    /// Whether `to` has legitimately dropped the sender key of message `index`.
    fn key_dropped(&self, index: usize, to: usize) -> bool {
        let sent = &self.sent[index];
        let Some(seen) = self.keys_seen.get(&(to, sent.from)) else { return false };
        seen.iter().position(|id| *id == sent.key_id).is_some_and(|at| seen.len() - at > MAX_SENDER_KEY_STATES)
    }

    /// Whether `to` must read message `index` now.
    fn must_read(&self, index: usize, to: usize) -> bool {
        let sent = &self.sent[index];
        sent.readers.contains(&to) && !sent.read_by.contains(&to) && !self.key_dropped(index, to)
    }

    /// Checks the outcome of handing message `index` (untampered, from its sender) to `to`.
    fn judge(&mut self, index: usize, to: usize, result: Result<Vec<u8>, String>) {
        let expected = self.must_read(index, to);
        let sent = &mut self.sent[index];
        match result {
            Ok(plaintext) => {
                assert!(
                    expected,
                    "device {to} read message {index} it may not read (readers {:?}, read by {:?}, sender {})",
                    sent.readers, sent.read_by, sent.from
                );
                assert_eq!(plaintext, sent.plaintext, "a group message decrypted to something else than was sent");
                sent.read_by.insert(to);
            }
            Err(error) => assert!(!expected, "device {to} failed to read message {index}: {error}"),
        }
    }

    fn deliver(&mut self, index: usize, to: usize) {
        let sender = self.addresses[self.sent[index].from].clone();
        let message = SenderKeyMessage::parse(&self.sent[index].bytes).expect("a genuine group message parses");
        let before = sender_key_bytes(&self.stores[to], &sender);
        let result = group::decrypt(&mut self.stores[to], GROUP, &sender, &message).map_err(|e| format!("{e:?}"));
        if result.is_err() {
            assert_eq!(before, sender_key_bytes(&self.stores[to], &sender), "a failed group decrypt changed the record");
        }
        self.judge(index, to, result);
    }

    fn batch(&mut self, first: usize, count: usize, to: usize, tamper: u8) {
        let indices: Vec<usize> = (first..first + count).map(|i| i % self.sent.len()).collect();
        let tampered = (tamper != 0).then(|| usize::from(tamper) % indices.len());
        let mut batch = Vec::new();
        for (slot, &index) in indices.iter().enumerate() {
            let mut bytes = self.sent[index].bytes.clone();
            if tampered == Some(slot) {
                let position = usize::from(tamper) * 7 % bytes.len();
                bytes[position] ^= tamper;
            }
            let message = SenderKeyMessage::parse(&bytes);
            batch.push((slot, index, message));
        }
        let messages: Vec<(ProtocolAddress, SenderKeyMessage)> = batch
            .iter()
            .filter_map(|(_, index, message)| {
                message.as_ref().ok().map(|m| (self.addresses[self.sent[*index].from].clone(), m.clone()))
            })
            .collect();
        let mut results = group::decrypt_batch(&mut self.stores[to], GROUP, &messages).into_iter();
        for (slot, index, message) in batch {
            if message.is_err() {
                assert_ne!(tampered, None, "a genuine group message did not parse");
                continue;
            }
            let result = results.next().expect("one result per message").map_err(|e| format!("{e:?}"));
            if tampered == Some(slot) {
                assert!(result.is_err(), "a tampered group message decrypted in a batch");
            } else {
                self.judge(index, to, result);
            }
        }
    }

    fn must_fail(&mut self, index: usize, to: usize, from: usize, bytes: &[u8], what: &str) {
        let Ok(message) = SenderKeyMessage::parse(bytes) else { return };
        let sender = self.addresses[from].clone();
        let before = sender_key_bytes(&self.stores[to], &sender);
        match group::decrypt(&mut self.stores[to], GROUP, &sender, &message) {
            Ok(plaintext) => panic!("{what}: message {index} at device {to}: {plaintext:02x?}"),
            Err(_) => assert_eq!(before, sender_key_bytes(&self.stores[to], &sender), "a failed group decrypt changed the record"),
        }
    }
}
