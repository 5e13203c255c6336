//! The session interaction model: two or three parties, sessions in both suites started from
//! fresh bundles, and a network the input controls (deliver any in-flight message, drop,
//! duplicate, reorder, tamper, misdeliver, persist and restore records). Every delivery is
//! checked against what was sent.
//!
//! What the model expects of a delivery of a genuine, untampered message to its recipient:
//! - never delivered before: it decrypts to exactly the plaintext sent, unless its receiving
//!   chain has legitimately been dropped ([`MAX_RECEIVER_CHAINS`] newer chains of the same
//!   session have been opened at the recipient since) — then it must fail;
//! - delivered before: it fails.
//!
//! Anything else (tampered bytes, the wrong recipient, the wrong sender address, the wrong
//! message kind) fails — with one exception libsignal shares: a `signal-v3` PreKeySignalMessage
//! whose outer fields are not authenticated (registration id, unknown fields, and the prekey ids
//! once the session exists) may still decrypt if its base key, identity key and inner message
//! are untouched; it then counts as the delivery of the original. Every failure leaves the
//! recipient's record, prekeys and stored identity for that address exactly as they were.
//!
//! The model keeps within the protocol's limits so that no genuine message is lost to them other
//! than as modelled: at most [`MAX_SENDS`] messages (far below 2,000 skipped keys per chain) and
//! [`MAX_STARTS`] sessions (far below 40 archived sessions).

use std::collections::HashMap;

use arbitrary::{Arbitrary, Unstructured};
use rand::SeedableRng;
use rand::rngs::StdRng;
use switchboard_session::limits::MAX_RECEIVER_CHAINS;
use switchboard_session::session::{decrypt, encrypt, has_session, process_prekey_bundle};
use switchboard_session::store::{IdentityKeyStore, SessionStore};
use switchboard_session::suite::Cipher;
use switchboard_session::{CiphertextMessage, MessageKind, SessionRecord, Suite};
use switchboard_wire::{limits, signal};

use crate::fixtures::{Party, SessionSnapshot, parties};
use crate::{byte, pick, word};

/// Messages sent per run, at most.
pub const MAX_SENDS: usize = 250;
/// Sessions started per run, at most.
pub const MAX_STARTS: usize = 8;
/// Actions per run, at most.
pub const MAX_ACTIONS: usize = 1_000;

/// One step of the network or of a party. Indices pick among the messages in flight (or, for
/// `Replay`, among those delivered) modulo their number; party numbers are modulo the party count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `from` processes a fresh bundle of `to` (with a one-time prekey or not) under a suite:
    /// the GCM cipher or libsignal's, with a post-quantum key agreement or without.
    Start { from: u8, to: u8, gcm: bool, pq: bool, one_time: bool },
    /// `from` encrypts a message of `len` bytes for `to` (if it has a session).
    Send { from: u8, to: u8, len: u8 },
    /// The network hands an in-flight message to its recipient.
    Deliver { index: u8 },
    /// The network loses an in-flight message.
    Drop { index: u8 },
    /// The network hands an already delivered message over again.
    Replay { index: u8 },
    /// Two in-flight messages change places.
    Swap { i: u8, j: u8 },
    /// The in-flight messages are reversed.
    Reverse,
    /// A copy of an in-flight message with one byte changed is delivered (the original stays).
    Tamper { index: u8, position: u16, xor: u8 },
    /// An in-flight message is handed to a party that is not its recipient (it stays in flight).
    Misdeliver { index: u8, to: u8 },
    /// An in-flight message is handed to its recipient as if from another party.
    WrongSender { index: u8, from: u8 },
    /// An in-flight message is handed over as the other message kind.
    WrongKind { index: u8 },
    /// `party`'s record for `peer` goes through serialize and deserialize.
    Persist { party: u8, peer: u8 },
}

const OPS: u8 = 12;

impl<'a> Arbitrary<'a> for Action {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match byte(u) % OPS {
            0 => {
                let (from, to, suite) = (byte(u), byte(u), byte(u));
                Action::Start { from, to, gcm: suite & 1 == 1, pq: suite & 2 == 2, one_time: byte(u) & 1 == 1 }
            }
            1 => Action::Send { from: byte(u), to: byte(u), len: byte(u) },
            2 => Action::Deliver { index: byte(u) },
            3 => Action::Drop { index: byte(u) },
            4 => Action::Replay { index: byte(u) },
            5 => Action::Swap { i: byte(u), j: byte(u) },
            6 => Action::Reverse,
            7 => Action::Tamper { index: byte(u), position: word(u), xor: byte(u) },
            8 => Action::Misdeliver { index: byte(u), to: byte(u) },
            9 => Action::WrongSender { index: byte(u), from: byte(u) },
            10 => Action::WrongKind { index: byte(u) },
            _ => Action::Persist { party: byte(u), peer: byte(u) },
        })
    }
}

impl Action {
    /// The bytes [`Arbitrary::arbitrary`] reads back as this action.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Action::Start { from, to, gcm, pq, one_time } => out.extend([0, from, to, u8::from(gcm) | u8::from(pq) << 1, u8::from(one_time)]),
            Action::Send { from, to, len } => out.extend([1, from, to, len]),
            Action::Deliver { index } => out.extend([2, index]),
            Action::Drop { index } => out.extend([3, index]),
            Action::Replay { index } => out.extend([4, index]),
            Action::Swap { i, j } => out.extend([5, i, j]),
            Action::Reverse => out.push(6),
            Action::Tamper { index, position, xor } => {
                out.extend([7, index]);
                out.extend(position.to_le_bytes());
                out.push(xor);
            }
            Action::Misdeliver { index, to } => out.extend([8, index, to]),
            Action::WrongSender { index, from } => out.extend([9, index, from]),
            Action::WrongKind { index } => out.extend([10, index]),
            Action::Persist { party, peer } => out.extend([11, party, peer]),
        }
    }
}

/// A whole input: the number of parties, then actions until the bytes run out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    pub three_parties: bool,
    pub actions: Vec<Action>,
}

impl Script {
    pub fn decode(data: &[u8]) -> Script {
        let mut u = Unstructured::new(data);
        let three_parties = byte(&mut u) & 1 == 1;
        let mut actions = Vec::new();
        while !u.is_empty() && actions.len() < MAX_ACTIONS {
            actions.push(Action::arbitrary(&mut u).expect("reading bytes never fails"));
        }
        Script { three_parties, actions }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![u8::from(self.three_parties)];
        for action in &self.actions {
            action.encode(&mut out);
        }
        out
    }
}

/// A message as sent, with what the model needs to judge its deliveries.
#[derive(Clone, Debug)]
struct Sent {
    from: usize,
    to: usize,
    kind: MessageKind,
    bytes: Vec<u8>,
    plaintext: Vec<u8>,
    /// The session it belongs to: the initiator's base key, as both sides' records store it.
    session: Vec<u8>,
    /// The sender's ratchet key: the receiving chain it belongs to.
    ratchet_key: Vec<u8>,
}

struct World {
    parties: Vec<Party>,
    rng: StdRng,
    in_flight: Vec<Sent>,
    delivered: Vec<Sent>,
    /// Receiving chains opened, in order, per (recipient, sender, session).
    chains: HashMap<(usize, usize, Vec<u8>), Vec<Vec<u8>>>,
    sends: usize,
    starts: usize,
}

/// Runs one input through the model, panicking on the first violated expectation.
pub fn run(data: &[u8]) {
    let script = Script::decode(data);
    let count = if script.three_parties { 3 } else { 2 };
    let mut world = World {
        parties: parties()[..count].to_vec(),
        rng: StdRng::seed_from_u64(0x1a7e + data.len() as u64),
        in_flight: Vec::new(),
        delivered: Vec::new(),
        chains: HashMap::new(),
        sends: 0,
        starts: 0,
    };
    for action in &script.actions {
        world.step(action);
    }
    // In the end the network delivers everything still in flight.
    while !world.in_flight.is_empty() {
        let sent = world.in_flight.remove(0);
        world.deliver(sent);
    }
}

impl World {
    fn party(&self, index: u8) -> usize {
        usize::from(index) % self.parties.len()
    }

    fn step(&mut self, action: &Action) {
        match *action {
            Action::Start { from, to, gcm, pq, one_time } => self.start(self.party(from), self.party(to), gcm, pq, one_time),
            Action::Send { from, to, len } => self.send(self.party(from), self.party(to), len),
            Action::Deliver { index } => {
                if let Some(i) = pick(index, self.in_flight.len()) {
                    let sent = self.in_flight.remove(i);
                    self.deliver(sent);
                }
            }
            Action::Drop { index } => {
                if let Some(i) = pick(index, self.in_flight.len()) {
                    self.in_flight.remove(i);
                }
            }
            Action::Replay { index } => {
                if let Some(i) = pick(index, self.delivered.len()) {
                    let sent = self.delivered[i].clone();
                    self.must_fail(&sent, sent.to, sent.from, sent.kind, &sent.bytes, "a delivered message decrypted again");
                }
            }
            Action::Swap { i, j } => {
                if let (Some(i), Some(j)) = (pick(i, self.in_flight.len()), pick(j, self.in_flight.len())) {
                    self.in_flight.swap(i, j);
                }
            }
            Action::Reverse => self.in_flight.reverse(),
            Action::Tamper { index, position, xor } => {
                if let Some(i) = pick(index, self.in_flight.len()) {
                    self.tamper(i, position, xor);
                }
            }
            Action::Misdeliver { index, to } => {
                if let Some(i) = pick(index, self.in_flight.len()) {
                    let sent = self.in_flight[i].clone();
                    let to = self.party(to);
                    if to != sent.to {
                        self.must_fail(&sent, to, sent.from, sent.kind, &sent.bytes, "a message decrypted at the wrong party");
                    }
                }
            }
            Action::WrongSender { index, from } => {
                if let Some(i) = pick(index, self.in_flight.len()) {
                    let sent = self.in_flight[i].clone();
                    let from = self.party(from);
                    // A PreKeySignalMessage authenticates its identity key, not the address it
                    // arrives from: where the recipient knows no identity for that address
                    // (trust on first use), taking it as a new session from there is the
                    // protocol working as designed, so that case is not played.
                    let claimed = &self.parties[from].address;
                    let known = self.parties[sent.to].store.identity(claimed).expect("in-memory store").is_some();
                    if from != sent.from && (sent.kind == MessageKind::Signal || known) {
                        self.must_fail(&sent, sent.to, from, sent.kind, &sent.bytes, "a message decrypted as from another sender");
                    }
                }
            }
            Action::WrongKind { index } => {
                if let Some(i) = pick(index, self.in_flight.len()) {
                    let sent = self.in_flight[i].clone();
                    let kind = match sent.kind {
                        MessageKind::PreKey => MessageKind::Signal,
                        MessageKind::Signal => MessageKind::PreKey,
                    };
                    self.must_fail(&sent, sent.to, sent.from, kind, &sent.bytes, "a message decrypted as the other kind");
                }
            }
            Action::Persist { party, peer } => {
                let (party, peer) = (self.party(party), self.party(peer));
                let address = self.parties[peer].address.clone();
                let store = &mut self.parties[party].store;
                if let Some(record) = store.load_session(&address).expect("in-memory store") {
                    let bytes = record.serialize();
                    let restored = SessionRecord::deserialize(&bytes).expect("a serialized record deserializes");
                    assert_eq!(*restored.serialize(), *bytes, "a record changed through serialize and deserialize");
                    store.store_session(&address, restored).expect("in-memory store");
                }
            }
        }
    }

    fn start(&mut self, from: usize, to: usize, gcm: bool, pq: bool, one_time: bool) {
        if from == to || self.starts >= MAX_STARTS {
            return;
        }
        self.starts += 1;
        let suite = match (gcm, pq) {
            (false, false) => Suite::SignalV3,
            (true, false) => Suite::Aes256Gcm,
            (false, true) => Suite::SignalPqxdh,
            (true, true) => Suite::PqAes256Gcm,
        };
        let bundle = self.parties[to].bundle(one_time, &mut self.rng);
        // Through bytes, as a bundle travels.
        let bundle = switchboard_session::PreKeyBundle::deserialize(&bundle.serialize()).expect("a bundle round-trips");
        let address = self.parties[to].address.clone();
        process_prekey_bundle(&mut self.parties[from].store, &address, &bundle, suite, &mut self.rng)
            .expect("a genuine bundle is accepted");
    }

    fn send(&mut self, from: usize, to: usize, len: u8) {
        let address = self.parties[to].address.clone();
        let store = &mut self.parties[from].store;
        if from == to || self.sends >= MAX_SENDS || !has_session(store, &address).expect("in-memory store") {
            return;
        }
        let mut plaintext = (self.sends as u32).to_be_bytes().to_vec();
        plaintext.extend((0..len).map(|i| i.wrapping_mul(31) ^ from as u8));
        self.sends += 1;
        let message = encrypt(store, &address, &plaintext).expect("encrypt with a current session");
        let record = store.load_session(&address).expect("in-memory store").expect("a session");
        let structure: signal::RecordStructure =
            switchboard_wire::decode(&record.serialize(), limits::MAX_RECORD_LEN).expect("a record decodes");
        let session = structure.current_session.and_then(|state| state.alice_base_key).expect("a base key");
        let ratchet_key = match &message {
            CiphertextMessage::PreKey(message) => message.message().ratchet_key().serialize().to_vec(),
            CiphertextMessage::Signal(message) => message.ratchet_key().serialize().to_vec(),
        };
        self.in_flight.push(Sent {
            from,
            to,
            kind: message.kind(),
            bytes: message.serialize().to_vec(),
            plaintext,
            session,
            ratchet_key,
        });
    }

    /// Whether `sent`'s receiving chain has been dropped at its recipient: more than the limit
    /// of newer chains of the same session opened since.
    fn chain_dropped(&self, sent: &Sent) -> bool {
        let Some(chains) = self.chains.get(&(sent.to, sent.from, sent.session.clone())) else { return false };
        chains.iter().position(|key| *key == sent.ratchet_key).is_some_and(|at| chains.len() - at > MAX_RECEIVER_CHAINS)
    }

    fn delivered_ok(&mut self, sent: Sent) {
        let chains = self.chains.entry((sent.to, sent.from, sent.session.clone())).or_default();
        if !chains.contains(&sent.ratchet_key) {
            chains.push(sent.ratchet_key.clone());
        }
        self.delivered.push(sent);
    }

    /// Hands `bytes` as `kind` to `to` as if from `from`: the result, and whether the state `to`
    /// keeps about `from` is unchanged.
    fn hand(&mut self, to: usize, from: usize, kind: MessageKind, bytes: &[u8]) -> Option<(Result<Vec<u8>, String>, bool)> {
        let message = CiphertextMessage::parse(kind, bytes).ok()?;
        let address = self.parties[from].address.clone();
        let store = &mut self.parties[to].store;
        let before = SessionSnapshot::take(store, &address);
        let result = decrypt(store, &address, &message, &mut self.rng).map_err(|e| format!("{e:?}"));
        let unchanged = SessionSnapshot::take(store, &address) == before;
        Some((result, unchanged))
    }

    fn deliver(&mut self, sent: Sent) {
        let (result, unchanged) =
            self.hand(sent.to, sent.from, sent.kind, &sent.bytes).expect("a genuine message parses");
        match result {
            Ok(plaintext) => {
                assert_eq!(plaintext, sent.plaintext, "a message decrypted to something else than was sent");
                assert!(!self.chain_dropped(&sent), "a message of a dropped receiving chain decrypted");
                self.delivered_ok(sent);
            }
            Err(error) => {
                assert!(unchanged, "a failed decrypt ({error}) changed the recipient's state");
                assert!(self.chain_dropped(&sent), "a genuine message failed to decrypt: {error}\n{sent:?}");
            }
        }
    }

    fn must_fail(&mut self, sent: &Sent, to: usize, from: usize, kind: MessageKind, bytes: &[u8], what: &str) {
        if let Some((result, unchanged)) = self.hand(to, from, kind, bytes) {
            match result {
                Ok(plaintext) => panic!("{what}: {plaintext:02x?}\n{sent:?}"),
                Err(error) => assert!(unchanged, "a failed decrypt ({error}) changed the recipient's state"),
            }
        }
    }

    fn tamper(&mut self, index: usize, position: u16, xor: u8) {
        let sent = self.in_flight[index].clone();
        let mut bytes = sent.bytes.clone();
        let position = usize::from(position) % bytes.len();
        bytes[position] ^= if xor == 0 { 1 } else { xor };
        let Some((result, unchanged)) = self.hand(sent.to, sent.from, sent.kind, &bytes) else { return };
        match result {
            Err(error) => assert!(unchanged, "a failed decrypt ({error}) changed the recipient's state"),
            Ok(plaintext) => {
                assert!(
                    unauthenticated_change(&sent, &bytes),
                    "a tampered message decrypted: byte {position}\n{plaintext:02x?}\n{sent:?}"
                );
                assert_eq!(plaintext, sent.plaintext, "a tampered message decrypted to something else");
                assert!(!self.chain_dropped(&sent), "a message of a dropped receiving chain decrypted");
                let sent = self.in_flight.remove(index);
                self.delivered_ok(sent);
            }
        }
    }
}

/// Whether `tampered` differs from `sent` only in what a PreKeySignalMessage in libsignal's format
/// (`signal-v3`, `signal-pqxdh`) leaves unauthenticated: same suite, base key, identity key and
/// inner message. (The prekey ids and the KEM fields select keys only when the message starts a
/// session; a repeated first message of a session already set up is read without them.)
fn unauthenticated_change(sent: &Sent, tampered: &[u8]) -> bool {
    let (Ok(CiphertextMessage::PreKey(original)), Ok(CiphertextMessage::PreKey(changed))) =
        (CiphertextMessage::parse(sent.kind, &sent.bytes), CiphertextMessage::parse(MessageKind::PreKey, tampered))
    else {
        return false;
    };
    original.suite().cipher() == Cipher::CbcHmac
        && changed.suite() == original.suite()
        && original.base_key() == changed.base_key()
        && original.identity_key() == changed.identity_key()
        && original.message().serialize() == changed.message().serialize()
}
