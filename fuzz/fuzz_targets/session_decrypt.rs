//! Hostile bytes delivered into an established session, in either suite and as either message
//! kind: decryption must fail cleanly, leave the session exactly as it was, and the next genuine
//! message must still decrypt.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::StdRng;
use switchboard_session::session::{decrypt, encrypt, process_prekey_bundle};
use switchboard_session::store::SessionStore;
use switchboard_session::testing::Device;
use switchboard_session::{CiphertextMessage, MessageKind, ProtocolAddress, Suite};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let suite = if selector & 1 == 0 { Suite::SignalV3 } else { Suite::Aes256Gcm };
    let kind = if selector & 2 == 0 { MessageKind::Signal } else { MessageKind::PreKey };

    let mut rng = StdRng::seed_from_u64(u64::from(selector));
    let (alice_at, bob_at) = (ProtocolAddress::new("alice", 1), ProtocolAddress::new("bob", 1));
    let mut alice = Device::new(1, 1, &mut rng);
    let mut bob = Device::new(2, 1, &mut rng);
    let bundle = bob.bundle(&Suite::ALL, &mut rng);
    process_prekey_bundle(&mut alice.store, &bob_at, &bundle, suite, &mut rng).unwrap();
    let first = encrypt(&mut alice.store, &bob_at, b"first").unwrap();
    decrypt(&mut bob.store, &alice_at, &first, &mut rng).unwrap();
    let pending = encrypt(&mut alice.store, &bob_at, b"pending").unwrap();

    let before = bob.store.load_session(&alice_at).unwrap().unwrap().serialize();
    if let Ok(message) = CiphertextMessage::parse(kind, bytes) {
        if decrypt(&mut bob.store, &alice_at, &message, &mut rng).is_err() {
            let after = bob.store.load_session(&alice_at).unwrap().unwrap().serialize();
            assert_eq!(before, after, "a failed decrypt changed the session");
        }
    }
    assert_eq!(decrypt(&mut bob.store, &alice_at, &pending, &mut rng).as_deref(), Ok(&b"pending"[..]));
});
