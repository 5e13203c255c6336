//! Shared set-up for the integration tests: parties talking C to C.
#![allow(dead_code)]

use switchboard_libsignal_c::{MessageKind, Party};

pub const ALICE: &str = "alice";
pub const BOB: &str = "bob";
pub const CAROL: &str = "carol";

pub fn party(registration_id: u32, seed: u64) -> Party {
    Party::new(registration_id, 1, 5, seed).expect("party")
}

/// Alice has processed Bob's bundle; nothing was sent yet.
pub fn alice_knows_bob() -> (Party, Party) {
    let mut alice = party(1111, 1);
    let mut bob = party(2222, 2);
    let bundle = bob.bundle().unwrap();
    alice.process_bundle(BOB, 1, &bundle).unwrap();
    (alice, bob)
}

/// A fully acknowledged session: Alice sent a PreKey message and Bob replied.
pub fn established() -> (Party, Party) {
    let (mut alice, mut bob) = alice_knows_bob();
    send(&mut alice, ALICE, &mut bob, BOB, b"hello bob");
    send(&mut bob, BOB, &mut alice, ALICE, b"hello alice");
    (alice, bob)
}

/// Encrypts on `from` and decrypts on `to`, checking the plaintext survives.
pub fn send(
    from: &mut Party,
    from_name: &str,
    to: &mut Party,
    to_name: &str,
    msg: &[u8],
) -> MessageKind {
    let (kind, ct) = from.encrypt(to_name, to.device_id(), msg).unwrap();
    let pt = to.decrypt(from_name, from.device_id(), kind, &ct).unwrap();
    assert_eq!(pt, msg);
    kind
}
