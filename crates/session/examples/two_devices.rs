//! Two devices holding a session, with nothing between them but bytes.
//!
//! Bob publishes a bundle; Alice starts a session from it and writes first; Bob answers. Every
//! value that would cross a network (the bundle, each message) crosses here as serialized bytes,
//! so what is printed is what a relay would carry. Run with
//! `cargo run -p switchboard-session --example two_devices`.

use switchboard_session::fingerprint::{SAFETY_NUMBER_ITERATIONS, safety_number};
use switchboard_session::testing::Device;
use switchboard_session::{CiphertextMessage, PreKeyBundle, ProtocolAddress, Suite, session};

fn main() -> Result<(), switchboard_session::Error> {
    let mut rng = rand::rng();
    let mut alice = Device::new(1, 1, &mut rng);
    let mut bob = Device::new(2, 1, &mut rng);
    let (alice_at, bob_at) = (ProtocolAddress::new("alice@green", 1), ProtocolAddress::new("bob@blue", 1));

    // Bob's bundle, as his relay hands it out: it offers every suite, signed by his identity key.
    let bundle_bytes = bob.bundle(Suite::ALL.as_slice(), &mut rng).serialize();
    let bundle = PreKeyBundle::deserialize(&bundle_bytes)?;
    // Alice checks its signatures and starts a session in the suite she picks.
    session::process_prekey_bundle(&mut alice.store, &bob_at, &bundle, Suite::SignalV3, &mut rng)?;

    // Her first message carries what Bob needs to start the session on his side.
    let first = session::encrypt(&mut alice.store, &bob_at, b"hello Bob")?;
    let (kind, bytes) = (first.kind(), first.serialize().to_vec());
    println!("alice -> bob: {} message, {} bytes", kind.name(), bytes.len());
    let received = CiphertextMessage::parse(kind, &bytes)?;
    assert_eq!(session::decrypt(&mut bob.store, &alice_at, &received, &mut rng)?, b"hello Bob");

    // Bob's answer is an ordinary message on the session both now hold.
    let answer = session::encrypt(&mut bob.store, &alice_at, b"hi Alice")?;
    println!("bob -> alice: {} message, {} bytes", answer.kind().name(), answer.serialize().len());
    let received = CiphertextMessage::parse(answer.kind(), answer.serialize())?;
    assert_eq!(session::decrypt(&mut alice.store, &bob_at, &received, &mut rng)?, b"hi Alice");

    // A replayed message is refused and leaves the session as it was.
    let replay = session::decrypt(&mut alice.store, &bob_at, &received, &mut rng);
    println!("the same message again: {}", replay.expect_err("a replay decrypts once only"));

    // The number both read out to each other to check that no one sits between them.
    let number = safety_number(b"alice@green", &alice.identity_key(), b"bob@blue", &bob.identity_key(), SAFETY_NUMBER_ITERATIONS);
    println!("safety number: {number}");
    Ok(())
}
