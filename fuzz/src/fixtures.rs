//! Keys and live sessions made once per process (key generation dominates a fresh run), then
//! cloned into each run. Everything is drawn from fixed seeds, so a run depends on its input alone.

use std::sync::OnceLock;

use rand::SeedableRng;
use rand::rngs::StdRng;
use switchboard_session::group::{self, InMemorySenderKeyStore, SenderKeyDistributionMessage, SenderKeyMessage, SenderKeyStore};
use switchboard_session::prekey::{KemPreKeyRecord, PreKeyRecord, SignedPreKeyRecord, SignedSuites};
use switchboard_session::session::{decrypt, encrypt, process_prekey_bundle};
use switchboard_session::store::{IdentityKeyStore, KemPreKeyStore, PreKeyStore, SessionStore, SignedPreKeyStore};
use switchboard_session::{CiphertextMessage, IdentityKeyPair, InMemoryStore, Kem, MessageKind, PreKeyBundle, ProtocolAddress, Suite};

/// Every suite, in the order fuzz inputs select them by (`suite_index`): the classical two first,
/// as they were before the post-quantum ones came, so that old inputs keep their meaning.
pub const SUITES: [Suite; 4] = [Suite::SignalV3, Suite::Aes256Gcm, Suite::SignalPqxdh, Suite::PqAes256Gcm];

/// The position of `suite` in [`SUITES`].
pub fn suite_index(suite: Suite) -> usize {
    SUITES.iter().position(|known| *known == suite).expect("every suite is listed")
}

/// The signed prekey id of every fixture party.
pub const SIGNED_PREKEY_ID: u32 = 1;

/// One device: its stores, its address, and what it needs to hand out bundles.
#[derive(Clone)]
pub struct Party {
    pub store: InMemoryStore,
    pub address: ProtocolAddress,
    pub registration_id: u32,
    suites: SignedSuites,
    next_prekey: u32,
    next_kem_prekey: u32,
}

impl Party {
    /// A new device with a fresh identity and signed prekey; its suite list is signed once here.
    pub fn new(name: &str, registration_id: u32, rng: &mut StdRng) -> Party {
        let identity = IdentityKeyPair::generate(rng);
        let signed = SignedPreKeyRecord::generate(SIGNED_PREKEY_ID, &identity, 0, rng);
        let suites = SignedSuites::sign(&Suite::ALL, &identity, rng);
        let mut store = InMemoryStore::new(identity, registration_id);
        store.save_signed_prekey(signed).expect("in-memory store");
        Party { store, address: ProtocolAddress::new(name, 1), registration_id, suites, next_prekey: 1, next_kem_prekey: 1 }
    }

    /// A bundle offering every suite, with a fresh one-time prekey when `one_time`, and fresh
    /// KEM prekeys of both KEMs (one-time with a one-time prekey, else last-resort).
    pub fn bundle(&mut self, one_time: bool, rng: &mut StdRng) -> PreKeyBundle {
        let identity = self.store.identity_key_pair().expect("in-memory store");
        let signed = self.store.signed_prekey(SIGNED_PREKEY_ID).expect("in-memory store").expect("made in new");
        let prekey = one_time.then(|| {
            let record = PreKeyRecord::generate(self.next_prekey, rng);
            self.next_prekey += 1;
            let public = (record.id, record.key_pair.public);
            self.store.save_prekey(record).expect("in-memory store");
            public
        });
        // KEM prekeys from randomness of their own, so that the fixtures' other keys (and so the
        // meaning of every corpus input made before the post-quantum suites) stay as they were.
        let mut kem_rng = StdRng::seed_from_u64(u64::from(self.registration_id) << 32 | u64::from(self.next_kem_prekey));
        let kem_prekeys = [Kem::Kyber1024, Kem::MlKem1024]
            .into_iter()
            .map(|kem| {
                let record = KemPreKeyRecord::generate(self.next_kem_prekey, kem, !one_time, &identity, 0, &mut kem_rng);
                self.next_kem_prekey += 1;
                let public = record.signed_public();
                self.store.save_kem_prekey(record).expect("in-memory store");
                public
            })
            .collect();
        PreKeyBundle {
            registration_id: self.registration_id,
            device_id: self.address.device_id(),
            identity_key: *identity.identity_key(),
            signed_prekey_id: signed.id,
            signed_prekey: signed.key_pair.public,
            signed_prekey_signature: signed.signature.to_vec(),
            prekey,
            suites: Some(self.suites.clone()),
            kem_prekeys,
        }
    }
}

/// The three parties of the session interaction target, before any session.
pub fn parties() -> &'static [Party; 3] {
    static PARTIES: OnceLock<[Party; 3]> = OnceLock::new();
    PARTIES.get_or_init(|| {
        let mut rng = StdRng::seed_from_u64(0x5e55_1011);
        [Party::new("alice@a", 1, &mut rng), Party::new("bob@b", 2, &mut rng), Party::new("carol@c", 3, &mut rng)]
    })
}

/// A genuine message still in flight in a fixture.
#[derive(Clone, Debug)]
pub struct InFlight {
    pub kind: MessageKind,
    pub bytes: Vec<u8>,
    pub plaintext: Vec<u8>,
}

/// How far a fixture session has gone when the hostile bytes arrive at bob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Alice has sent two PreKeySignalMessages; bob has no session yet.
    Fresh,
    /// Bob has read alice's first message; alice still sends PreKeySignalMessages.
    Started,
    /// Several round trips; bob keeps one skipped key; alice sends SignalMessages.
    Ratcheted,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Fresh, Phase::Started, Phase::Ratcheted];
}

/// Alice and bob with a session from alice to bob in `suite`, at `phase`, and the messages from
/// alice that bob has not read yet.
#[derive(Clone)]
pub struct SessionFixture {
    pub alice: Party,
    pub bob: Party,
    pub in_flight: Vec<InFlight>,
}

fn genuine(store: &mut InMemoryStore, to: &ProtocolAddress, plaintext: &[u8]) -> InFlight {
    let message = encrypt(store, to, plaintext).expect("fixture encrypt");
    InFlight { kind: message.kind(), bytes: message.serialize().to_vec(), plaintext: plaintext.to_vec() }
}

fn read(store: &mut InMemoryStore, from: &ProtocolAddress, message: &InFlight, rng: &mut StdRng) {
    let parsed = CiphertextMessage::parse(message.kind, &message.bytes).expect("fixture message parses");
    let plaintext = decrypt(store, from, &parsed, rng).expect("fixture decrypt");
    assert_eq!(plaintext, message.plaintext);
}

impl SessionFixture {
    fn build(suite: Suite, phase: Phase) -> SessionFixture {
        let mut rng = StdRng::seed_from_u64(0xf1c5 + suite_index(suite) as u64 * 16 + phase as u64);
        let [alice, bob, _] = parties().clone();
        let (mut alice, mut bob) = (alice, bob);
        let (alice_at, bob_at) = (alice.address.clone(), bob.address.clone());
        let bundle = bob.bundle(true, &mut rng);
        process_prekey_bundle(&mut alice.store, &bob_at, &bundle, suite, &mut rng).expect("fixture bundle");
        let first = genuine(&mut alice.store, &bob_at, b"first");
        let second = genuine(&mut alice.store, &bob_at, b"second");
        let in_flight = match phase {
            Phase::Fresh => vec![first, second],
            Phase::Started => {
                read(&mut bob.store, &alice_at, &first, &mut rng);
                vec![second, genuine(&mut alice.store, &bob_at, b"third")]
            }
            Phase::Ratcheted => {
                read(&mut bob.store, &alice_at, &first, &mut rng);
                read(&mut bob.store, &alice_at, &second, &mut rng);
                for round in 0..3u8 {
                    let reply = genuine(&mut bob.store, &alice_at, &[b'r', round]);
                    read(&mut alice.store, &bob_at, &reply, &mut rng);
                    let answer = genuine(&mut alice.store, &bob_at, &[b'a', round]);
                    read(&mut bob.store, &alice_at, &answer, &mut rng);
                }
                let skipped = genuine(&mut alice.store, &bob_at, b"skipped");
                let read_ahead = genuine(&mut alice.store, &bob_at, b"read ahead");
                read(&mut bob.store, &alice_at, &read_ahead, &mut rng);
                vec![skipped, genuine(&mut alice.store, &bob_at, b"next")]
            }
        };
        SessionFixture { alice, bob, in_flight }
    }

    /// The fixture for `suite` at `phase`, built on first use.
    pub fn get(suite: Suite, phase: Phase) -> &'static SessionFixture {
        static FIXTURES: OnceLock<Vec<SessionFixture>> = OnceLock::new();
        let all = FIXTURES.get_or_init(|| {
            SUITES
                .into_iter()
                .flat_map(|suite| Phase::ALL.into_iter().map(move |phase| SessionFixture::build(suite, phase)))
                .collect()
        });
        &all[suite_index(suite) * Phase::ALL.len() + phase as usize]
    }
}

/// The group every group fixture and model uses.
pub const GROUP: &str = "fuzz-group";

/// Alice and bob in a group under `suite`: alice has sent under two sender keys (the first one
/// replaced by a rotation), bob has read some, and keeps skipped keys under both.
#[derive(Clone)]
pub struct GroupFixture {
    pub alice: ProtocolAddress,
    pub alice_keys: InMemorySenderKeyStore,
    pub bob: ProtocolAddress,
    pub bob_keys: InMemorySenderKeyStore,
    /// Group messages from alice that bob has not read: (bytes, plaintext).
    pub in_flight: Vec<(Vec<u8>, Vec<u8>)>,
}

impl GroupFixture {
    fn build(suite: Suite) -> GroupFixture {
        let mut rng = StdRng::seed_from_u64(0x6e0c + suite_index(suite) as u64);
        let (alice, bob) = (ProtocolAddress::new("alice@a", 1), ProtocolAddress::new("bob@b", 1));
        let mut alice_keys = InMemorySenderKeyStore::default();
        let mut bob_keys = InMemorySenderKeyStore::default();
        let hand_over = |distribution: SenderKeyDistributionMessage, bob_keys: &mut InMemorySenderKeyStore| {
            let parsed = SenderKeyDistributionMessage::parse(distribution.serialize()).expect("fixture distribution");
            group::process_distribution(bob_keys, GROUP, &alice, &parsed).expect("fixture distribution");
        };
        let send = |alice_keys: &mut InMemorySenderKeyStore, plaintext: &[u8], rng: &mut StdRng| {
            let message = group::encrypt(alice_keys, GROUP, &alice, plaintext, rng).expect("fixture group encrypt");
            (message.serialize().to_vec(), plaintext.to_vec())
        };
        let bob_reads = |bob_keys: &mut InMemorySenderKeyStore, message: &(Vec<u8>, Vec<u8>)| {
            let parsed = SenderKeyMessage::parse(&message.0).expect("fixture group message parses");
            assert_eq!(group::decrypt(bob_keys, GROUP, &alice, &parsed).expect("fixture group decrypt"), message.1);
        };
        let distribution = group::create_distribution(&mut alice_keys, GROUP, &alice, suite, &mut rng).expect("fixture");
        hand_over(distribution, &mut bob_keys);
        let old_skipped = send(&mut alice_keys, b"old key, skipped", &mut rng);
        let old_read = send(&mut alice_keys, b"old key, read", &mut rng);
        bob_reads(&mut bob_keys, &old_read);
        let distribution = group::rotate(&mut alice_keys, GROUP, &alice, suite, &mut rng).expect("fixture rotate");
        hand_over(distribution, &mut bob_keys);
        let skipped = send(&mut alice_keys, b"new key, skipped", &mut rng);
        let read_ahead = send(&mut alice_keys, b"new key, read", &mut rng);
        bob_reads(&mut bob_keys, &read_ahead);
        let next = send(&mut alice_keys, b"new key, next", &mut rng);
        assert!(bob_keys.load_sender_key(GROUP, &alice).expect("in-memory").is_some());
        GroupFixture { alice, alice_keys, bob, bob_keys, in_flight: vec![old_skipped, skipped, next] }
    }

    /// The fixture for `suite`, built on first use.
    pub fn get(suite: Suite) -> &'static GroupFixture {
        static FIXTURES: OnceLock<[GroupFixture; 2]> = OnceLock::new();
        &FIXTURES.get_or_init(|| [GroupFixture::build(Suite::SignalV3), GroupFixture::build(Suite::Aes256Gcm)])
            [suite_index(suite)]
    }
}

/// Everything about `peer` that a failed decrypt must leave as it was: the session record, the
/// one-time prekeys, the stored identity.
#[derive(Debug, PartialEq, Eq)]
pub struct SessionSnapshot {
    record: Option<Vec<u8>>,
    prekeys: usize,
    identity: Option<Vec<u8>>,
}

impl SessionSnapshot {
    pub fn take(store: &InMemoryStore, peer: &ProtocolAddress) -> SessionSnapshot {
        SessionSnapshot {
            record: store.load_session(peer).expect("in-memory store").map(|record| record.serialize().to_vec()),
            prekeys: store.prekey_count(),
            identity: store.identity(peer).expect("in-memory store").map(|key| key.serialize().to_vec()),
        }
    }
}

/// A sender's record as a receiver holds it, serialized (empty when there is none).
pub fn sender_key_bytes(store: &InMemorySenderKeyStore, sender: &ProtocolAddress) -> Vec<u8> {
    store.load_sender_key(GROUP, sender).expect("in-memory store").map(|record| record.serialize().to_vec()).unwrap_or_default()
}
