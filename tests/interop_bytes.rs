//! Byte-for-byte agreement with libsignal-protocol-c where the protocol is deterministic.
//!
//! Encryption under `signal-v3` draws no randomness (keys and IV come from the chain), so two
//! implementations holding the same session state must write the same bytes. Session records use
//! libsignal's own layout, so the state of a live session can be copied from one implementation
//! to the other mid-conversation: the copy must then encrypt exactly what the original does.

use rand::SeedableRng;
use rand::rngs::StdRng;
use switchboard_libsignal_c as c;
use switchboard_session::store::SessionStore;
use switchboard_session::testing::Device;
use switchboard_session::{CiphertextMessage, IdentityKeyPair, ProtocolAddress, SessionRecord, Suite, fingerprint, session};

mod common;
use common::{bundle_from_c, bundle_to_c, c_kind, rust_kind};

/// A C party and a Switchboard device in a session, with copy-and-compare at every step.
struct Conversation {
    c_side: c::Party,
    rust_side: Device,
    rng: StdRng,
}

const C_NAME: &str = "c-party";
const RUST_NAME: &str = "rust-party";

impl Conversation {
    fn new(c_initiates: bool, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut c_side = c::Party::new(7, 1, 10, seed).unwrap();
        let mut rust_side = Device::new(8, 1, &mut rng);
        if c_initiates {
            let bundle = bundle_to_c(&rust_side.bundle(&[Suite::SignalV3], &mut rng));
            c_side.process_bundle(RUST_NAME, 1, &bundle).unwrap();
        } else {
            let bundle = bundle_from_c(&c_side.bundle().unwrap());
            session::process_prekey_bundle(&mut rust_side.store, &ProtocolAddress::new(C_NAME, 1), &bundle, Suite::SignalV3, &mut rng)
                .unwrap();
        }
        Conversation { c_side, rust_side, rng }
    }

    /// The C side's record, loaded into a fresh Switchboard store, encrypts `plaintext` to the
    /// same bytes as the C side itself; then the real message is delivered.
    fn c_sends(&mut self, plaintext: &[u8]) {
        let record = self.c_side.session_record(RUST_NAME, 1).unwrap();
        let parsed = SessionRecord::deserialize(&record).unwrap();
        assert_eq!(parsed.serialize().as_slice(), record.as_slice(), "record did not round-trip byte for byte");
        let mut shadow = Device::new(99, 1, &mut self.rng);
        let peer = ProtocolAddress::new(RUST_NAME, 1);
        shadow.store.store_session(&peer, parsed).unwrap();
        let ours = session::encrypt(&mut shadow.store, &peer, plaintext).unwrap();

        let (kind, theirs) = self.c_side.encrypt(RUST_NAME, 1, plaintext).unwrap();
        assert_eq!(ours.kind(), rust_kind(kind));
        assert_eq!(hex::encode(ours.serialize()), hex::encode(&theirs), "Switchboard and libsignal-c wrote different bytes");

        let message = CiphertextMessage::parse(rust_kind(kind), &theirs).unwrap();
        let read = session::decrypt(&mut self.rust_side.store, &ProtocolAddress::new(C_NAME, 1), &message, &mut self.rng).unwrap();
        assert_eq!(read, plaintext);
    }

    /// The Switchboard side's record, loaded into a C party, encrypts `plaintext` to the same
    /// bytes as Switchboard; then the real message is delivered.
    fn rust_sends(&mut self, plaintext: &[u8]) {
        let peer = ProtocolAddress::new(C_NAME, 1);
        let record = self.rust_side.store.load_session(&peer).unwrap().unwrap().serialize();
        let mut shadow = c::Party::new(99, 1, 0, 99).unwrap();
        shadow.set_session_record(C_NAME, 1, &record).unwrap();
        assert_eq!(shadow.session_record(C_NAME, 1).unwrap(), record.as_slice(), "C re-serialized our record differently");
        let (kind, theirs) = shadow.encrypt(C_NAME, 1, plaintext).unwrap();

        let ours = session::encrypt(&mut self.rust_side.store, &peer, plaintext).unwrap();
        assert_eq!(ours.kind(), rust_kind(kind));
        assert_eq!(hex::encode(ours.serialize()), hex::encode(&theirs), "Switchboard and libsignal-c wrote different bytes");

        let read = self.c_side.decrypt(RUST_NAME, 1, c_kind(ours.kind()), ours.serialize()).unwrap();
        assert_eq!(read, plaintext);
    }
}

#[test]
fn copied_sessions_encrypt_to_identical_bytes_throughout_a_conversation() {
    for c_initiates in [true, false] {
        let mut conversation = Conversation::new(c_initiates, 42);
        for turn in 0..25u32 {
            let text = format!("turn {turn}: {}", "x".repeat(turn as usize * 3));
            let sends = (turn % 3 + 1) as usize;
            let first_speaker_is_c = (turn % 2 == 0) == c_initiates;
            for _ in 0..sends {
                if first_speaker_is_c { conversation.c_sends(text.as_bytes()) } else { conversation.rust_sends(text.as_bytes()) }
            }
            if first_speaker_is_c { conversation.rust_sends(b"ack") } else { conversation.c_sends(b"ack") }
        }
    }
}

#[test]
fn prekey_messages_are_identical_byte_for_byte() {
    for c_initiates in [true, false] {
        let mut conversation = Conversation::new(c_initiates, 7);
        for i in 0..3 {
            if c_initiates {
                conversation.c_sends(format!("first contact {i}").as_bytes());
            } else {
                conversation.rust_sends(format!("first contact {i}").as_bytes());
            }
        }
    }
}

#[test]
fn safety_numbers_match_the_reference() {
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..4 {
        let alice = IdentityKeyPair::generate(&mut rng);
        let bob = IdentityKeyPair::generate(&mut rng);
        let ours = fingerprint::safety_number(b"alice@green", alice.identity_key(), b"bob@blue", bob.identity_key(), 5200);
        let theirs = c::safety_number(
            5200,
            b"alice@green",
            &alice.identity_key().serialize(),
            b"bob@blue",
            &bob.identity_key().serialize(),
        )
        .unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(ours.len(), 60);
    }
}

#[test]
fn signatures_verify_across_implementations() {
    let mut rng = StdRng::seed_from_u64(4);
    // Ours, checked by the C library.
    for _ in 0..16 {
        let identity = IdentityKeyPair::generate(&mut rng);
        let signature = identity.private_key().sign(b"signed by switchboard", &mut rng);
        let public = identity.identity_key().serialize();
        assert!(c::verify_signature(&public, b"signed by switchboard", &signature));
        assert!(!c::verify_signature(&public, b"signed by someone else", &signature));
    }
    // Theirs (a signed prekey), checked here.
    for seed in 0..16 {
        let bundle = bundle_from_c(&c::Party::new(1, 1, 1, seed).unwrap().bundle().unwrap());
        bundle.verify().unwrap();
        let mut bad = bundle.clone();
        bad.signed_prekey_signature[0] ^= 1;
        assert!(bad.verify().is_err());
    }
}
