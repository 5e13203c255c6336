//! The differential group model: three members of one group, each a Switchboard sender-key store
//! and a libsignal-protocol-c party, playing the same Sender Keys steps with the same randomness
//! (the twins restart their RNGs from the step's number before every step). After every step:
//!
//! - distribution messages (first, repeated, after a rotation) are the same bytes in both;
//! - group messages are the same bytes in both, signature included;
//! - a delivery — in order, out of order, replayed, tampered, cut short, from a key the reader
//!   never got or no longer holds — decrypts to the same plaintext in both or fails in both, for
//!   the same class of reason;
//! - each member's sender key states for every sender (keys, chain, skipped message keys) are
//!   the same in both.
//!
//! Known differences, where only Switchboard's side is checked (see [`known_difference`]):
//! - Switchboard remembers the last 16 sender keys of each sender it has retired (fallen out of
//!   the five it keeps, or replaced under the same id) and refuses their distribution messages: libsignal-c takes one
//!   back in, and with it an old chain position, so that messages it had already read decrypt a
//!   second time. The refused distribution must leave Switchboard's record unchanged, and is not
//!   handed to the C twin, so that the twins go on agreeing. A message under a retired key fails
//!   in both (Switchboard says the key is retired, libsignal-c that it has no such key).
//! - A distribution of a sender key the reader holds (the same id and signing key) leaves
//!   Switchboard's record as it is; libsignal-c adds it again as the newest key, at the
//!   distribution's iteration, so that messages it had read decrypt a second time (its
//!   "rewind"). Checked: Switchboard's record unchanged; the C twin is not given it.

use arbitrary::{Arbitrary, Unstructured};
use rand::SeedableRng;
use rand::rngs::StdRng;
use switchboard_libsignal_c as c;
use switchboard_session::group::{self, InMemorySenderKeyStore, SenderKeyDistributionMessage, SenderKeyMessage, SenderKeyStore};
use switchboard_session::{Error, ProtocolAddress, Suite};
use switchboard_wire::{limits, signal};

use crate::{byte, pick, word};

/// Members of the group.
pub const MEMBERS: usize = 3;
/// Group messages sent per run, at most.
pub const MAX_SENDS: usize = 200;
/// Actions per run, at most.
pub const MAX_ACTIONS: usize = 600;

const GROUP: &str = "differential";
const NAMES: [&str; MEMBERS] = ["m0", "m1", "m2"];
const DEVICE_ID: u32 = 1;

/// One step. Members are taken modulo [`MEMBERS`]; indices pick among the messages sent so far
/// (of either kind) modulo their number, so that old ones can be delivered again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `sender` creates its sender key if it has none, and hands out its distribution message.
    Distribute { sender: u8 },
    /// `sender` replaces its sender key with a fresh one and hands out the new distribution.
    Rotate { sender: u8 },
    /// Member `to` processes a distribution message sent so far.
    Process { index: u8, to: u8 },
    /// `sender` encrypts a group message of `len` bytes.
    Send { sender: u8, len: u8 },
    /// Member `to` decrypts a group message sent so far (again, if it has before).
    Deliver { index: u8, to: u8 },
    /// Member `to` decrypts a copy of a group message with one byte changed.
    Tamper { index: u8, to: u8, position: u16, xor: u8 },
    /// Member `to` decrypts a copy of a group message cut to `len` bytes.
    Truncate { index: u8, to: u8, len: u16 },
}

const OPS: u8 = 7;

impl<'a> Arbitrary<'a> for Action {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match byte(u) % OPS {
            0 => Action::Distribute { sender: byte(u) },
            1 => Action::Rotate { sender: byte(u) },
            2 => Action::Process { index: byte(u), to: byte(u) },
            3 => Action::Send { sender: byte(u), len: byte(u) },
            4 => Action::Deliver { index: byte(u), to: byte(u) },
            5 => Action::Tamper { index: byte(u), to: byte(u), position: word(u), xor: byte(u) },
            _ => Action::Truncate { index: byte(u), to: byte(u), len: word(u) },
        })
    }
}

impl crate::Encode for Action {
    fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Action::Distribute { sender } => out.extend([0, sender]),
            Action::Rotate { sender } => out.extend([1, sender]),
            Action::Process { index, to } => out.extend([2, index, to]),
            Action::Send { sender, len } => out.extend([3, sender, len]),
            Action::Deliver { index, to } => out.extend([4, index, to]),
            Action::Tamper { index, to, position, xor } => {
                out.extend([5, index, to]);
                out.extend(position.to_le_bytes());
                out.push(xor);
            }
            Action::Truncate { index, to, len } => {
                out.extend([6, index, to]);
                out.extend(len.to_le_bytes());
            }
        }
    }
}

/// A whole input: actions until the bytes run out.
pub fn decode(data: &[u8]) -> Vec<Action> {
    crate::decode_actions(data, MAX_ACTIONS)
}

/// The bytes [`decode`] reads back as `actions`.
pub fn encode(actions: &[Action]) -> Vec<u8> {
    crate::encode_actions(actions)
}

/// Why an operation failed, in classes both implementations share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Malformed, unauthenticated, of an unknown version, or too far ahead.
    Invalid,
    Duplicate,
    NoSenderKey,
}

fn rust_failure(error: &Error) -> Failure {
    match error {
        Error::Duplicate { .. } => Failure::Duplicate,
        // A key Switchboard has retired is one libsignal-c no longer holds.
        Error::NoSenderKey { .. } | Error::RetiredSenderKey { .. } => Failure::NoSenderKey,
        _ => Failure::Invalid,
    }
}

fn c_failure(error: &c::Error) -> Failure {
    match error {
        c::Error::Duplicate => Failure::Duplicate,
        c::Error::NoSenderKey => Failure::NoSenderKey,
        _ => Failure::Invalid,
    }
}

/// What one twin made of an operation: a plaintext (empty for a processed distribution) or why
/// it failed.
type Outcome = Result<Vec<u8>, Failure>;

/// A message as sent (both twins wrote exactly these bytes).
#[derive(Clone, Debug)]
struct Sent {
    sender: usize,
    bytes: Vec<u8>,
}

/// One member, twice.
struct Twin {
    rust: InMemorySenderKeyStore,
    c: c::Party,
}

fn address(member: usize) -> ProtocolAddress {
    ProtocolAddress::new(NAMES[member], DEVICE_ID)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A sender key record's states, as libsignal lays them out (Switchboard's list of retired keys,
/// which libsignal-c has not, left out).
fn states(record: Option<&[u8]>) -> Vec<signal::SenderKeyStateStructure> {
    record
        .map(|bytes| decode_record(bytes).expect("a stored record decodes").sender_key_states)
        .unwrap_or_default()
}

fn decode_record(bytes: &[u8]) -> Result<signal::SenderKeyRecordStructure, switchboard_wire::DecodeError> {
    switchboard_wire::decode(bytes, limits::MAX_RECORD_LEN)
}

/// A step on which the two are known to differ (see the module's documentation), or `None` when
/// they must agree: the distribution of a key the reader has retired (and still remembers), or of
/// one it holds.
fn known_difference(twin: &Twin, sender: usize, distribution: &SenderKeyDistributionMessage) -> Option<&'static str> {
    let record = twin.rust.load_sender_key(GROUP, &address(sender)).expect("in-memory store")?;
    let structure = decode_record(&record.serialize()).expect("a stored record decodes");
    let signing_key = distribution.signing_key().serialize();
    let names_it = |id: Option<u32>, key: Option<&[u8]>| id == Some(distribution.key_id()) && key == Some(signing_key.as_slice());
    if structure.retired.iter().any(|retired| names_it(retired.sender_key_id, retired.signing_key.as_deref())) {
        return Some("Switchboard refuses the distribution of a sender key it has retired; libsignal-c takes it back");
    }
    structure
        .sender_key_states
        .iter()
        .any(|state| names_it(state.sender_key_id, state.sender_signing_key.as_ref().and_then(|key| key.public.as_deref())))
        .then_some("Switchboard keeps a sender key it holds as it is; libsignal-c adds the distribution again, winding it back")
}

struct World {
    twins: Vec<Twin>,
    distributions: Vec<Sent>,
    messages: Vec<Sent>,
    sends: usize,
    step: usize,
}

/// Runs one input on both implementations, panicking on the first disagreement.
pub fn run(data: &[u8]) {
    let twins = (0..MEMBERS)
        .map(|member| Twin {
            rust: InMemorySenderKeyStore::default(),
            c: c::Party::new(100 + member as u32, DEVICE_ID, 0, 0xd1ff_6000 + member as u64).expect("a C party"),
        })
        .collect();
    let mut world = World { twins, distributions: Vec::new(), messages: Vec::new(), sends: 0, step: 0 };
    for action in decode(data) {
        world.act(&action);
    }
}

impl World {
    fn act(&mut self, action: &Action) {
        self.step += 1;
        let seed = 0x6e0_0000_0000 + self.step as u64;
        for twin in &mut self.twins {
            twin.c.reseed(seed);
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let member = |index: u8| usize::from(index) % MEMBERS;
        match *action {
            Action::Distribute { sender } => self.distribute(member(sender), false, &mut rng),
            Action::Rotate { sender } => self.distribute(member(sender), true, &mut rng),
            Action::Process { index, to } => {
                if let Some(i) = pick(index, self.distributions.len()) {
                    self.process(i, member(to));
                }
            }
            Action::Send { sender, len } => self.send(member(sender), len, &mut rng),
            Action::Deliver { index, to } => {
                if let Some(i) = pick(index, self.messages.len()) {
                    let bytes = self.messages[i].bytes.clone();
                    self.deliver(i, member(to), &bytes);
                }
            }
            Action::Tamper { index, to, position, xor } => {
                if let Some(i) = pick(index, self.messages.len()) {
                    let mut bytes = self.messages[i].bytes.clone();
                    let position = usize::from(position) % bytes.len();
                    bytes[position] ^= xor.max(1);
                    self.deliver(i, member(to), &bytes);
                }
            }
            Action::Truncate { index, to, len } => {
                if let Some(i) = pick(index, self.messages.len()) {
                    let bytes = self.messages[i].bytes.clone();
                    let len = usize::from(len) % bytes.len();
                    self.deliver(i, member(to), &bytes[..len]);
                }
            }
        }
    }

    fn distribute(&mut self, sender: usize, rotate: bool, rng: &mut StdRng) {
        let step = self.step;
        let twin = &mut self.twins[sender];
        let local = address(sender);
        let ours = if rotate {
            group::rotate(&mut twin.rust, GROUP, &local, Suite::SignalV3, rng)
        } else {
            group::create_distribution(&mut twin.rust, GROUP, &local, Suite::SignalV3, rng)
        }
        .expect("a distribution");
        let theirs = if rotate { twin.c.group_rotate(GROUP) } else { twin.c.group_distribution(GROUP) }.expect("a C distribution");
        assert_eq!(
            hex(ours.serialize()),
            hex(&theirs),
            "step {step}: the distribution messages differ (rotate: {rotate})"
        );
        self.check_states(sender, sender);
        self.distributions.push(Sent { sender, bytes: theirs });
    }

    fn process(&mut self, index: usize, to: usize) {
        let sent = self.distributions[index].clone();
        if sent.sender == to {
            return;
        }
        let step = self.step;
        let twin = &mut self.twins[to];
        let sender = address(sent.sender);
        let distribution = SenderKeyDistributionMessage::parse(&sent.bytes).expect("a genuine distribution parses");
        let before = twin.rust.load_sender_key(GROUP, &sender).expect("in-memory store").map(|record| record.serialize().to_vec());
        if let Some(why) = known_difference(twin, sent.sender, &distribution) {
            // Switchboard's side: its record as it was. The C twin is not given the distribution,
            // so that the twins go on holding the same states.
            let ours = group::process_distribution(&mut twin.rust, GROUP, &sender, &distribution);
            let after = twin.rust.load_sender_key(GROUP, &sender).expect("in-memory store").map(|record| record.serialize().to_vec());
            assert!(after == before, "step {step}: {why}, but Switchboard's record changed ({ours:?})");
            return;
        }
        let ours: Outcome = group::process_distribution(&mut twin.rust, GROUP, &sender, &distribution)
            .map(|()| Vec::new())
            .map_err(|error| rust_failure(&error));
        let theirs: Outcome =
            twin.c.group_process(GROUP, NAMES[sent.sender], DEVICE_ID, &sent.bytes).map(|()| Vec::new()).map_err(|error| c_failure(&error));
        assert_eq!(ours, theirs, "step {step}: processing a distribution of {}: switchboard, libsignal-c", NAMES[sent.sender]);
        self.check_states(to, sent.sender);
    }

    fn send(&mut self, sender: usize, len: u8, rng: &mut StdRng) {
        if self.sends >= MAX_SENDS {
            return;
        }
        let step = self.step;
        let mut plaintext = (self.sends as u32).to_be_bytes().to_vec();
        plaintext.extend((0..len).map(|i| i.wrapping_mul(37) ^ sender as u8));
        let twin = &mut self.twins[sender];
        let ours = group::encrypt(&mut twin.rust, GROUP, &address(sender), &plaintext, rng);
        let theirs = twin.c.group_encrypt(GROUP, &plaintext);
        match (ours, theirs) {
            (Ok(ours), Ok(theirs)) => {
                assert_eq!(hex(ours.serialize()), hex(&theirs), "step {step}: the group messages differ");
                self.sends += 1;
                self.messages.push(Sent { sender, bytes: theirs });
            }
            (Err(Error::NoSenderKey { .. }), Err(c::Error::NoSenderKey)) => {}
            (ours, theirs) => panic!("step {step}: group encryption: switchboard {ours:?}, libsignal-c {theirs:?}"),
        }
        self.check_states(sender, sender);
    }

    fn deliver(&mut self, index: usize, to: usize, bytes: &[u8]) {
        let sent = &self.messages[index];
        let sender = sent.sender;
        if sender == to {
            return;
        }
        let step = self.step;
        let twin = &mut self.twins[to];
        let ours: Outcome = SenderKeyMessage::parse(bytes)
            .and_then(|message| group::decrypt(&mut twin.rust, GROUP, &address(sender), &message))
            .map_err(|error| rust_failure(&error));
        let theirs: Outcome = twin.c.group_decrypt(GROUP, NAMES[sender], DEVICE_ID, bytes).map_err(|error| c_failure(&error));
        assert_eq!(ours, theirs, "step {step}: {} reading a group message of {}: switchboard, libsignal-c", NAMES[to], NAMES[sender]);
        self.check_states(to, sender);
    }

    /// Member `member`'s sender key states for `sender` must be the same in both twins.
    fn check_states(&self, member: usize, sender: usize) {
        let twin = &self.twins[member];
        let ours = twin.rust.load_sender_key(GROUP, &address(sender)).expect("in-memory store").map(|record| record.serialize().to_vec());
        let theirs = if member == sender {
            twin.c.sender_key_record(GROUP, None)
        } else {
            twin.c.sender_key_record(GROUP, Some((NAMES[sender], DEVICE_ID)))
        };
        let (ours, theirs) = (states(ours.as_deref()), states(theirs.as_deref()));
        assert!(
            ours == theirs,
            "step {}: {}'s sender key states for {} differ\n switchboard: {ours:?}\n libsignal-c: {theirs:?}",
            self.step,
            NAMES[member],
            NAMES[sender]
        );
    }
}
