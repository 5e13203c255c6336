//! Property: any interleaving of sends in both directions, delivered in any order (messages may
//! be held back across later sends), decrypts every message exactly once, to its plaintext, as
//! long as it stays within the limits (here: at most 4 sending turns per side, so every chain a
//! message was sent on is still among the 5 receiving chains kept).

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use switchboard_session::session::{decrypt, encrypt, has_session, process_prekey_bundle};
use switchboard_session::testing::Device;
use switchboard_session::{CiphertextMessage, Error, ProtocolAddress, Suite};

#[derive(Debug, Clone)]
struct Phase {
    /// Who sends each message of this phase: true for Alice.
    senders: Vec<bool>,
    /// Which messages (by position among those in flight) are held back to the next phase.
    hold_back: Vec<bool>,
    shuffle_seed: u64,
}

fn phase() -> impl Strategy<Value = Phase> {
    (prop::collection::vec(any::<bool>(), 0..12), prop::collection::vec(any::<bool>(), 24), any::<u64>())
        .prop_map(|(senders, hold_back, shuffle_seed)| Phase { senders, hold_back, shuffle_seed })
}

struct InFlight {
    to_bob: bool,
    plaintext: Vec<u8>,
    message: CiphertextMessage,
}

fn run(suite: Suite, seed: u64, phases: &[Phase]) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (alice_at, bob_at) = (ProtocolAddress::new("alice", 1), ProtocolAddress::new("bob", 1));
    let mut alice = Device::new(1, 1, &mut rng);
    let mut bob = Device::new(2, 1, &mut rng);
    let bundle = bob.bundle(&Suite::ALL, &mut rng);
    process_prekey_bundle(&mut alice.store, &bob_at, &bundle, suite, &mut rng).unwrap();

    let mut in_flight: Vec<InFlight> = Vec::new();
    let mut delivered: Vec<InFlight> = Vec::new();
    let mut sent = 0u32;
    for (number, phase) in phases.iter().enumerate() {
        for &from_alice in &phase.senders {
            // Bob can only write once Alice's first message has reached him.
            let from_alice = from_alice || !has_session(&bob.store, &alice_at).unwrap();
            let plaintext = format!("message {sent}").into_bytes();
            sent += 1;
            let message = if from_alice {
                encrypt(&mut alice.store, &bob_at, &plaintext).unwrap()
            } else {
                encrypt(&mut bob.store, &alice_at, &plaintext).unwrap()
            };
            in_flight.push(InFlight { to_bob: from_alice, plaintext, message });
        }
        in_flight.shuffle(&mut StdRng::seed_from_u64(phase.shuffle_seed));
        let last_phase = number + 1 == phases.len();
        let mut held = Vec::new();
        for (position, item) in in_flight.drain(..).enumerate() {
            if !last_phase && phase.hold_back.get(position).copied().unwrap_or(false) {
                held.push(item);
                continue;
            }
            let plaintext = if item.to_bob {
                decrypt(&mut bob.store, &alice_at, &item.message, &mut rng)
            } else {
                decrypt(&mut alice.store, &bob_at, &item.message, &mut rng)
            };
            assert_eq!(plaintext.as_deref(), Ok(item.plaintext.as_slice()), "{suite}: phase {number}");
            delivered.push(item);
        }
        in_flight = held;
    }
    assert!(in_flight.is_empty());
    assert_eq!(delivered.len() as u32, sent);
    // Exactly once: every message delivered again is refused.
    for item in &delivered {
        let again = if item.to_bob {
            decrypt(&mut bob.store, &alice_at, &item.message, &mut rng)
        } else {
            decrypt(&mut alice.store, &bob_at, &item.message, &mut rng)
        };
        assert!(matches!(again, Err(Error::Duplicate { .. })), "{suite}: a replay gave {again:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_message_decrypts_exactly_once_signal_v3(seed in any::<u64>(), phases in prop::collection::vec(phase(), 1..=4)) {
        run(Suite::SignalV3, seed, &phases);
    }

    #[test]
    fn every_message_decrypts_exactly_once_aes_256_gcm(seed in any::<u64>(), phases in prop::collection::vec(phase(), 1..=4)) {
        run(Suite::Aes256Gcm, seed, &phases);
    }

    #[test]
    fn every_message_decrypts_exactly_once_signal_pqxdh(seed in any::<u64>(), phases in prop::collection::vec(phase(), 1..=4)) {
        run(Suite::SignalPqxdh, seed, &phases);
    }

    #[test]
    fn every_message_decrypts_exactly_once_pq_aes_256_gcm(seed in any::<u64>(), phases in prop::collection::vec(phase(), 1..=4)) {
        run(Suite::PqAes256Gcm, seed, &phases);
    }
}
