//! The differential session model: every party exists twice, once as a Switchboard device and
//! once as a libsignal-protocol-c party, with the same keys, and every step is played on both
//! twins with the same randomness. `signal-v3` is deterministic given a session's state and the
//! random bytes drawn, and both implementations keep libsignal's record layout, so after every
//! step the twins must agree exactly:
//!
//! - a bundle is accepted by both or refused by both;
//! - encryption writes the same message kind and the same bytes;
//! - a delivery (genuine, replayed, tampered, of the wrong kind, out of order) decrypts to the
//!   same plaintext in both or fails in both, for the same class of reason;
//! - the session records the two hold for each peer are byte-identical.
//!
//! Where the two legitimately differ, the difference is named in [`Divergence::is_known`] and only
//! Switchboard's side of it is checked:
//! - a first message whose base key was changed in transit, which libsignal-c reads (or calls a
//!   duplicate) with the session it already has after building (and keeping) a session from the
//!   forged key, and Switchboard refuses without changing anything;
//! - a first message whose base key is not in canonical form (the top bit set, or at or above
//!   the field's prime): X25519 takes it for the same point as the canonical key, so libsignal-c
//!   sets the session up a second time and reads the message again (a replay, where the first
//!   message named no one-time prekey). Switchboard refuses it; the C twin is only asked what it
//!   would do ([`c::Party::decrypt_without_keeping`]), so that the twins go on agreeing.
//!
//! Randomness: before each step both twins restart their RNGs from the same seed (the step's
//! number), so the twins draw equal bytes as long as they draw them in the same order — which the
//! set-up checks for key generation and the record comparison checks for everything after. A
//! delivery is the exception: libsignal-c draws a fresh ratchet key for every session it tries
//! before the one that decrypts (and throws those away), Switchboard draws one for the session
//! that decrypts. So in a delivery step every draw of both twins yields the same 32 bytes, and
//! the key kept is the same however many were drawn.

use arbitrary::{Arbitrary, Unstructured};
use rand::SeedableRng;
use rand::rngs::StdRng;
use switchboard_libsignal_c as c;
use switchboard_session::prekey::{PreKeyRecord, SignedPreKeyRecord};
use switchboard_session::session::{decrypt, encrypt, process_prekey_bundle};
use switchboard_session::store::{IdentityKeyStore, PreKeyStore, SignedPreKeyStore};
use switchboard_session::{
    CiphertextMessage, Error, IdentityKeyPair, InMemoryStore, MessageKind, PreKeyBundle, ProtocolAddress, PublicKey, Suite,
};
use switchboard_wire::{limits, signal};

use crate::{byte, pick, word};

/// One-time prekeys each party starts with (ids 1..=PREKEYS).
pub const PREKEYS: u32 = 6;
/// Messages sent per run, at most.
pub const MAX_SENDS: usize = 200;
/// Sessions started per run, at most.
pub const MAX_STARTS: usize = 8;
/// Actions per run, at most.
pub const MAX_ACTIONS: usize = 600;

/// Set to print each step and the bytes each delivery hands over (to stderr), for reading a
/// finding.
pub const TRACE_ENV: &str = "DIFFERENTIAL_TRACE";

const NAMES: [&str; 2] = ["alice", "bob"];
const REGISTRATION_IDS: [u32; 2] = [1001, 2002];
const DEVICE_ID: u32 = 1;

/// One step. Parties are 0 and 1 (the operand's low bit); indices pick among the messages in
/// flight (or, for `Replay`, among those delivered) modulo their number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `from` processes a bundle of the other party, with its next one-time prekey or without
    /// one. With a session already there, this is a session reset: the old state is archived.
    Start { from: u8, one_time: bool },
    /// `from` encrypts a message of `len` bytes to the other party.
    Send { from: u8, len: u8 },
    /// The network hands an in-flight message to its recipient.
    Deliver { index: u8 },
    /// The network hands an already delivered message over again.
    Replay { index: u8 },
    /// A copy of an in-flight message with one byte changed is delivered (the original stays).
    Tamper { index: u8, position: u16, xor: u8 },
    /// A copy of an in-flight message cut to `len` bytes is delivered (the original stays).
    Truncate { index: u8, len: u16 },
    /// An in-flight message is handed over as the other message kind (it stays in flight).
    WrongKind { index: u8 },
    /// The network loses an in-flight message.
    Drop { index: u8 },
}

const OPS: u8 = 8;

impl<'a> Arbitrary<'a> for Action {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match byte(u) % OPS {
            0 => Action::Start { from: byte(u), one_time: byte(u) & 1 == 1 },
            1 => Action::Send { from: byte(u), len: byte(u) },
            2 => Action::Deliver { index: byte(u) },
            3 => Action::Replay { index: byte(u) },
            4 => Action::Tamper { index: byte(u), position: word(u), xor: byte(u) },
            5 => Action::Truncate { index: byte(u), len: word(u) },
            6 => Action::WrongKind { index: byte(u) },
            _ => Action::Drop { index: byte(u) },
        })
    }
}

impl crate::Encode for Action {
    fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Action::Start { from, one_time } => out.extend([0, from, u8::from(one_time)]),
            Action::Send { from, len } => out.extend([1, from, len]),
            Action::Deliver { index } => out.extend([2, index]),
            Action::Replay { index } => out.extend([3, index]),
            Action::Tamper { index, position, xor } => {
                out.extend([4, index]);
                out.extend(position.to_le_bytes());
                out.push(xor);
            }
            Action::Truncate { index, len } => {
                out.extend([5, index]);
                out.extend(len.to_le_bytes());
            }
            Action::WrongKind { index } => out.extend([6, index]),
            Action::Drop { index } => out.extend([7, index]),
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

/// Why a decrypt failed, in classes both implementations share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Malformed, unauthenticated, of an unknown version, or too far ahead.
    Invalid,
    Duplicate,
    NoSession,
    Untrusted,
    InvalidKey,
    /// A prekey or signed prekey the message names is not (or no longer) there.
    UnknownPreKey,
}

fn rust_failure(error: &Error) -> Failure {
    match error {
        Error::Duplicate { .. } => Failure::Duplicate,
        Error::NoSession { .. } => Failure::NoSession,
        Error::UntrustedIdentity { .. } => Failure::Untrusted,
        Error::InvalidKey(_) => Failure::InvalidKey,
        Error::UnknownPreKey { .. } | Error::UnknownSignedPreKey { .. } => Failure::UnknownPreKey,
        _ => Failure::Invalid,
    }
}

fn c_failure(error: &c::Error) -> Failure {
    match error {
        c::Error::Duplicate => Failure::Duplicate,
        c::Error::NoSession => Failure::NoSession,
        c::Error::UntrustedIdentity => Failure::Untrusted,
        // The harness's wording for SG_ERR_INVALID_KEY_ID.
        c::Error::InvalidKey(context) if context.ends_with("unknown key id") => Failure::UnknownPreKey,
        c::Error::InvalidKey(_) => Failure::InvalidKey,
        _ => Failure::Invalid,
    }
}

/// What one twin made of a delivery.
type Outcome = Result<Vec<u8>, Failure>;

/// A disagreement between the twins on one delivery.
#[derive(Debug)]
pub struct Divergence<'a> {
    pub rust: &'a Outcome,
    pub c: &'a Outcome,
    pub delivery: &'a Delivery,
    /// The message as sent, and as handed over.
    pub sent: &'a [u8],
    pub received: &'a [u8],
}

impl Divergence<'_> {
    /// A difference between the two implementations that is understood and intended (a weakness
    /// of libsignal-c that Switchboard fixes); Switchboard's side of it is checked by the caller.
    pub fn is_known(&self) -> Option<&'static str> {
        let changed_in_transit = matches!(self.delivery, Delivery::Tampered { .. } | Delivery::Truncated { .. });
        // Read as protobuf, not parsed: Switchboard's parser refuses some of these forgeries.
        let fields = |bytes: &[u8]| {
            let message: signal::PreKeySignalMessage = switchboard_wire::decode(bytes.get(1..)?, limits::MAX_MESSAGE_LEN).ok()?;
            Some((message.base_key?, message.message?))
        };
        let ((sent_base_key, sent_inner), (received_base_key, received_inner)) = (fields(self.sent)?, fields(self.received)?);
        (changed_in_transit
            && self.rust.is_err()
            && matches!(self.c, Ok(_) | Err(Failure::Duplicate))
            && received_base_key != sent_base_key
            && received_inner == sent_inner)
            .then_some(
                "a first message whose base key was changed in transit: libsignal-c builds a session from the forged key, \
                 fails with it, reads the untouched inner message with the session it already had (or calls it a duplicate \
                 there), and keeps the forged session among its archived ones (so a network attacker can push real ones \
                 out); Switchboard refuses it and changes nothing",
            )
    }
}

/// How a message reached its recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    Genuine,
    Replayed,
    Tampered { position: usize, xor: u8 },
    Truncated { len: usize },
    WrongKind,
}

/// A message as sent (both twins wrote exactly these bytes).
#[derive(Clone, Debug)]
struct Sent {
    to: usize,
    kind: MessageKind,
    bytes: Vec<u8>,
    plaintext: Vec<u8>,
}

/// Randomness whose every draw yields the same 32 bytes (cut or repeated to the length asked),
/// as [`c::Party::repeat_randomness`] makes the C side's.
struct Repeating([u8; 32]);

impl rand::TryRng for Repeating {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut bytes = [0; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut bytes = [0; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }
    fn try_fill_bytes(&mut self, out: &mut [u8]) -> Result<(), Self::Error> {
        out.iter_mut().zip(self.0.iter().cycle()).for_each(|(byte, from)| *byte = *from);
        Ok(())
    }
}

impl rand::TryCryptoRng for Repeating {}

/// One party, twice.
struct Twin {
    rust: InMemoryStore,
    c: c::Party,
    /// One-time prekeys handed out so far (ids 1..=handed).
    handed: u32,
}

impl Twin {
    /// Party `index` in both implementations, from one seed. Key generation draws the same bytes
    /// in the same order in both (identity, signed prekey and its signature nonce, prekeys 1..),
    /// which is checked here: a set-up that diverges is a finding of its own.
    fn new(index: usize) -> Twin {
        let seed = 0xd1ff_0000 + index as u64;
        let c = c::Party::new(REGISTRATION_IDS[index], DEVICE_ID, PREKEYS, seed).expect("a C party");
        let mut rng = StdRng::seed_from_u64(seed);
        let identity = IdentityKeyPair::generate(&mut rng);
        let signed = SignedPreKeyRecord::generate(c::SIGNED_PREKEY_ID, &identity, 0, &mut rng);
        assert_eq!(identity.identity_key().serialize().as_slice(), c.identity_public(), "identity keys differ");
        let mut rust = InMemoryStore::new(identity, REGISTRATION_IDS[index]);
        rust.save_signed_prekey(signed).expect("in-memory store");
        for id in 1..=PREKEYS {
            rust.save_prekey(PreKeyRecord::generate(id, &mut rng)).expect("in-memory store");
        }
        let mut twin = Twin { rust, c, handed: 0 };
        // The C party's bundles (which hand out prekeys 1.. in turn) carry exactly these keys.
        for id in 1..=PREKEYS {
            let theirs = twin.c.bundle().expect("a C bundle");
            let ours = twin.bundle(true);
            assert_eq!(ours.signed_prekey.serialize().as_slice(), theirs.signed_prekey.as_slice(), "signed prekeys differ");
            assert_eq!(ours.signed_prekey_signature, theirs.signed_prekey_signature, "signed prekey signatures differ");
            let (ours_id, ours_key) = ours.prekey.expect("a prekey");
            assert_eq!((ours_id, ours_key.serialize().to_vec()), (id, theirs.prekey.expect("a C prekey")), "one-time prekeys differ");
        }
        twin.handed = 0;
        twin
    }

    /// The party's bundle, with its next one-time prekey or without one.
    fn bundle(&mut self, one_time: bool) -> PreKeyBundle {
        let identity = self.rust.identity_key_pair().expect("in-memory store");
        let signed = self.rust.signed_prekey(c::SIGNED_PREKEY_ID).expect("in-memory store").expect("made in new");
        let prekey = (one_time && self.handed < PREKEYS).then(|| {
            self.handed += 1;
            let record = self.rust.prekey(self.handed).expect("in-memory store").expect("handed out once");
            (record.id, record.key_pair.public)
        });
        PreKeyBundle {
            registration_id: self.rust.local_registration_id().expect("in-memory store"),
            device_id: DEVICE_ID,
            identity_key: *identity.identity_key(),
            signed_prekey_id: signed.id,
            signed_prekey: signed.key_pair.public,
            signed_prekey_signature: signed.signature.to_vec(),
            prekey,
            suites: None,
            kem_prekeys: Vec::new(),
        }
    }

    /// The session record each twin holds for `peer`, which must be the same bytes.
    fn check_records(&self, peer: usize, step: usize) {
        let ours = self.rust.session(&address(peer)).map(|record| record.serialize().to_vec());
        let theirs = self.c.session_record(NAMES[peer], DEVICE_ID);
        if ours != theirs {
            panic!(
                "step {step}: the session records for {} differ\n switchboard: {}\n libsignal-c: {}",
                NAMES[peer],
                ours.as_deref().map(hex).unwrap_or_default(),
                theirs.as_deref().map(hex).unwrap_or_default(),
            );
        }
    }
}

/// The base key of a PreKeySignalMessage, read from its protobuf (Switchboard's parser refuses
/// one that is not in canonical form).
fn base_key_of(bytes: &[u8]) -> Option<PublicKey> {
    let message: signal::PreKeySignalMessage = switchboard_wire::decode(bytes.get(1..)?, limits::MAX_MESSAGE_LEN).ok()?;
    PublicKey::from_bytes(&message.base_key?).ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn address(index: usize) -> ProtocolAddress {
    ProtocolAddress::new(NAMES[index], DEVICE_ID)
}

fn c_kind(kind: MessageKind) -> c::MessageKind {
    match kind {
        MessageKind::PreKey => c::MessageKind::PreKey,
        MessageKind::Signal => c::MessageKind::Signal,
    }
}

fn rust_kind(kind: c::MessageKind) -> MessageKind {
    match kind {
        c::MessageKind::PreKey => MessageKind::PreKey,
        c::MessageKind::Signal => MessageKind::Signal,
    }
}

struct World {
    twins: [Twin; 2],
    in_flight: Vec<Sent>,
    delivered: Vec<Sent>,
    sends: usize,
    starts: usize,
    step: usize,
}

/// Runs one input on both implementations, panicking on the first disagreement.
pub fn run(data: &[u8]) {
    let mut world = World {
        twins: [Twin::new(0), Twin::new(1)],
        in_flight: Vec::new(),
        delivered: Vec::new(),
        sends: 0,
        starts: 0,
        step: 0,
    };
    for action in decode(data) {
        world.act(&action);
    }
    // In the end the network delivers everything still in flight, in order.
    while !world.in_flight.is_empty() {
        world.act(&Action::Deliver { index: 0 });
    }
}

impl World {
    fn act(&mut self, action: &Action) {
        self.step += 1;
        if std::env::var_os(TRACE_ENV).is_some() {
            eprintln!("step {}: {action:?}", self.step);
        }
        let seed = 0x5eed_0000_0000 + self.step as u64;
        for twin in &mut self.twins {
            twin.c.reseed(seed);
        }
        let mut rng = StdRng::seed_from_u64(seed);
        match *action {
            Action::Start { from, one_time } => self.start(usize::from(from & 1), one_time, &mut rng),
            Action::Send { from, len } => self.send(usize::from(from & 1), len),
            Action::Deliver { index } => {
                if let Some(i) = pick(index, self.in_flight.len()) {
                    let sent = self.in_flight.remove(i);
                    self.deliver(&sent, sent.kind, &sent.bytes, Delivery::Genuine, &mut rng);
                    self.delivered.push(sent);
                }
            }
            Action::Replay { index } => {
                if let Some(i) = pick(index, self.delivered.len()) {
                    let sent = self.delivered[i].clone();
                    self.deliver(&sent, sent.kind, &sent.bytes, Delivery::Replayed, &mut rng);
                }
            }
            Action::Tamper { index, position, xor } => {
                if let Some(i) = pick(index, self.in_flight.len()) {
                    let sent = self.in_flight[i].clone();
                    let position = usize::from(position) % sent.bytes.len();
                    let xor = xor.max(1);
                    let mut bytes = sent.bytes.clone();
                    bytes[position] ^= xor;
                    self.deliver(&sent, sent.kind, &bytes, Delivery::Tampered { position, xor }, &mut rng);
                }
            }
            Action::Truncate { index, len } => {
                if let Some(i) = pick(index, self.in_flight.len()) {
                    let sent = self.in_flight[i].clone();
                    let len = usize::from(len) % sent.bytes.len();
                    self.deliver(&sent, sent.kind, &sent.bytes[..len], Delivery::Truncated { len }, &mut rng);
                }
            }
            Action::WrongKind { index } => {
                if let Some(i) = pick(index, self.in_flight.len()) {
                    let sent = self.in_flight[i].clone();
                    let kind = match sent.kind {
                        MessageKind::PreKey => MessageKind::Signal,
                        MessageKind::Signal => MessageKind::PreKey,
                    };
                    self.deliver(&sent, kind, &sent.bytes, Delivery::WrongKind, &mut rng);
                }
            }
            Action::Drop { index } => {
                if let Some(i) = pick(index, self.in_flight.len()) {
                    self.in_flight.remove(i);
                }
            }
        }
    }

    fn start(&mut self, from: usize, one_time: bool, rng: &mut StdRng) {
        if self.starts >= MAX_STARTS {
            return;
        }
        self.starts += 1;
        let to = 1 - from;
        let bundle = self.twins[to].bundle(one_time);
        let step = self.step;
        let twin = &mut self.twins[from];
        let ours = process_prekey_bundle(&mut twin.rust, &address(to), &bundle, Suite::SignalV3, rng);
        let c_bundle = c::Bundle {
            registration_id: bundle.registration_id,
            device_id: bundle.device_id,
            identity_key: bundle.identity_key.serialize().to_vec(),
            signed_prekey_id: bundle.signed_prekey_id,
            signed_prekey: bundle.signed_prekey.serialize().to_vec(),
            signed_prekey_signature: bundle.signed_prekey_signature.clone(),
            prekey_id: bundle.prekey.map(|(id, _)| id),
            prekey: bundle.prekey.map(|(_, key)| key.serialize().to_vec()),
        };
        let theirs = twin.c.process_bundle(NAMES[to], DEVICE_ID, &c_bundle);
        assert!(ours.is_ok() && theirs.is_ok(), "step {step}: a genuine bundle: switchboard {ours:?}, libsignal-c {theirs:?}");
        twin.check_records(to, step);
    }

    fn send(&mut self, from: usize, len: u8) {
        if self.sends >= MAX_SENDS {
            return;
        }
        let to = 1 - from;
        let mut plaintext = (self.sends as u32).to_be_bytes().to_vec();
        plaintext.extend((0..len).map(|i| i.wrapping_mul(29) ^ from as u8));
        let step = self.step;
        let twin = &mut self.twins[from];
        let ours = encrypt(&mut twin.rust, &address(to), &plaintext);
        let theirs = twin.c.encrypt(NAMES[to], DEVICE_ID, &plaintext);
        match (ours, theirs) {
            (Ok(ours), Ok((kind, theirs))) => {
                assert_eq!(ours.kind(), rust_kind(kind), "step {step}: encryption wrote different message kinds");
                assert_eq!(
                    hex(ours.serialize()),
                    hex(&theirs),
                    "step {step}: switchboard and libsignal-c encrypted to different bytes"
                );
                self.sends += 1;
                self.in_flight.push(Sent { to, kind: ours.kind(), bytes: theirs, plaintext });
            }
            (Err(Error::NoSession { .. }), Err(c::Error::NoSession)) => {}
            (ours, theirs) => panic!("step {step}: encryption: switchboard {ours:?}, libsignal-c {theirs:?}"),
        }
        twin.check_records(to, step);
    }

    fn deliver(&mut self, sent: &Sent, kind: MessageKind, bytes: &[u8], delivery: Delivery, rng: &mut StdRng) {
        let (to, from) = (sent.to, 1 - sent.to);
        let step = self.step;
        if std::env::var_os(TRACE_ENV).is_some() {
            eprintln!("  to {} as {kind:?} ({delivery:?}): {}\n  sent: {}", NAMES[to], hex(bytes), hex(&sent.bytes));
        }
        let twin = &mut self.twins[to];
        let mut block = [0; 32];
        rand::Rng::fill_bytes(rng, &mut block);
        twin.c.repeat_randomness(block);
        let rng = &mut Repeating(block);
        let records_before = (twin.rust.session(&address(from)).map(|record| record.serialize().to_vec()), twin.c.session_record(NAMES[from], DEVICE_ID));
        let ours_raw = CiphertextMessage::parse(kind, bytes).and_then(|message| decrypt(&mut twin.rust, &address(from), &message, rng));
        // A first message whose base key is another encoding of a point (a known difference):
        // the C twin is only asked what it would do, so that the twins go on agreeing.
        let alias = kind == MessageKind::PreKey && base_key_of(bytes).is_some_and(|key| !key.is_canonical());
        let theirs_raw = if alias {
            twin.c.decrypt_without_keeping(NAMES[from], DEVICE_ID, c_kind(kind), bytes)
        } else {
            twin.c.decrypt(NAMES[from], DEVICE_ID, c_kind(kind), bytes)
        };
        let ours: Outcome = ours_raw.as_ref().map(Vec::clone).map_err(rust_failure);
        let theirs: Outcome = theirs_raw.as_ref().map(Vec::clone).map_err(c_failure);
        if alias {
            assert_eq!(
                ours,
                Err(Failure::Invalid),
                "step {step}: a first message whose base key is not in canonical form (libsignal-c: {theirs:?})"
            );
        } else if ours != theirs {
            let divergence = Divergence { rust: &ours, c: &theirs, delivery: &delivery, sent: &sent.bytes, received: bytes };
            let Some(why) = divergence.is_known() else {
                panic!(
                    "step {step}: the implementations disagree on a delivery: {divergence:?}\n switchboard: {:?}\n libsignal-c: {:?}",
                    ours_raw.err(),
                    theirs_raw.err()
                );
            };
            // Switchboard's side: its record as it was. The C twin's record goes back to where
            // it was, so that the twins go on agreeing.
            let ours_after = twin.rust.session(&address(from)).map(|record| record.serialize().to_vec());
            assert!(ours_after == records_before.0, "step {step}: {why}, but Switchboard's record changed");
            let c_before = records_before.1.expect("the C twin read it with a session it had");
            twin.c.set_session_record(NAMES[from], DEVICE_ID, &c_before).expect("a record the C twin wrote");
        }
        if delivery == Delivery::Genuine
            && let Ok(plaintext) = &ours
        {
            assert_eq!(*plaintext, sent.plaintext, "step {step}: a genuine message decrypted to something else");
        }
        twin.check_records(from, step);
    }
}
