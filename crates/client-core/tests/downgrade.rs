//! A session's suite cannot be downgraded by whoever carries the bundles: two Switchboard devices
//! that both accept `pq-aes-256-gcm` never end up on a weaker suite because the responder's
//! signed suite list or its KEM prekeys were removed on the way; a device without the
//! post-quantum suites gets the best classical one; a plain libsignal peer, which states no
//! suites, still gets `signal-v3`.

use rand::SeedableRng;
use rand::rngs::StdRng;
use switchboard_client_core::{ClientError, Device, InMemoryDirectory, Received};
use switchboard_session::{CiphertextMessage, MessageKind, ProtocolAddress, Suite, session, testing};
use switchboard_wire::Message;
use switchboard_wire::switchboard::{PairwisePayload, pairwise_payload::Body};

fn address(name: &str) -> ProtocolAddress {
    ProtocolAddress::new(name, 1)
}

/// Alice, Bob, and a directory holding Bob's bundles as `carry` leaves them.
fn alice_and_bob(rng: &mut StdRng, carry: impl Fn(&mut switchboard_session::PreKeyBundle)) -> (Device, Device, InMemoryDirectory) {
    let alice = Device::new(address("alice@green"), 1, rng);
    let mut bob = Device::new(address("bob@blue"), 2, rng);
    let mut bundles = bob.publish_bundles(2, rng);
    bundles.iter_mut().for_each(carry);
    let mut directory = InMemoryDirectory::default();
    directory.publish(bob.address(), bundles).expect("the signatures still hold");
    (alice, bob, directory)
}

#[test]
fn a_bundle_stripped_of_its_suites_is_detected_by_the_responder_and_nothing_is_kept() {
    let mut rng = StdRng::seed_from_u64(1);
    // The relay removes the signed suite list: the bundle then reads as a plain libsignal bundle,
    // whose signed prekey signature still verifies.
    let (mut alice, mut bob, mut directory) = alice_and_bob(&mut rng, |bundle| bundle.suites = None);
    let first = alice.send(bob.address(), b"hello", &mut directory, &mut rng).unwrap();
    let CiphertextMessage::PreKey(prekey) = &first.message else { panic!("a first message is a PreKeySignalMessage") };
    assert_eq!(prekey.suite(), Suite::SignalV3, "the initiator was led to the weaker suite");

    let refused = bob.receive(alice.address(), &first.message, &mut directory, &mut rng);
    assert!(
        matches!(refused, Err(ClientError::Downgrade { chosen: Suite::SignalV3, best: Suite::PqAes256Gcm })),
        "{refused:?}"
    );
    assert!(!bob.has_session(alice.address()), "a refused session is not kept");
    // Every further message of that session is refused the same way.
    let second = alice.send(bob.address(), b"again", &mut directory, &mut rng).unwrap();
    assert!(matches!(bob.receive(alice.address(), &second.message, &mut directory, &mut rng), Err(ClientError::Downgrade { .. })));
}

#[test]
fn the_responder_starts_a_session_back_and_the_initiator_writes_over_it() {
    // Before: the initiator went on writing over the refused session, and every message was lost.
    let mut rng = StdRng::seed_from_u64(4);
    let (mut alice, mut bob, mut directory) = alice_and_bob(&mut rng, |bundle| bundle.suites = None);
    let alice_bundles = alice.publish_bundles(1, &mut rng);
    directory.publish(&address("alice@green"), alice_bundles).unwrap();
    let first = alice.send(bob.address(), b"hello", &mut directory, &mut rng).unwrap();
    assert!(matches!(bob.receive(alice.address(), &first.message, &mut directory, &mut rng), Err(ClientError::Downgrade { .. })));
    // Bob starts one the other way, from Alice's bundle as it reached him (whole).
    let start = bob.seal_all(vec![switchboard_client_core::PendingSend::session_start(alice.address().clone())], &mut directory, &mut rng).unwrap();
    let CiphertextMessage::PreKey(prekey) = &start[0].message else { panic!("a first message") };
    assert_eq!(prekey.suite(), Suite::PqAes256Gcm);
    let (received, _) = alice.receive(bob.address(), &start[0].message, &mut directory, &mut rng).unwrap();
    assert_eq!(received, Received::SessionStarted);
    let next = alice.send(bob.address(), b"over the new one", &mut directory, &mut rng).unwrap();
    assert_eq!(next.message.kind(), MessageKind::Signal);
    let (received, _) = bob.receive(alice.address(), &next.message, &mut directory, &mut rng).unwrap();
    assert!(matches!(received, Received::Application { content, .. } if content == b"over the new one"));
}

#[test]
fn after_a_session_started_back_the_initiator_hands_its_sender_key_out_again() {
    // What Alice handed Bob over the refused session never arrived: her key must go again.
    let mut rng = StdRng::seed_from_u64(5);
    let (mut alice, mut bob, mut directory) = alice_and_bob(&mut rng, |bundle| bundle.suites = None);
    let alice_bundles = alice.publish_bundles(1, &mut rng);
    directory.publish(&address("alice@green"), alice_bundles).unwrap();
    let created = alice.create_group("g@green", [bob.address().clone()], Suite::Aes256Gcm, &mut directory, &mut rng).unwrap();
    let message = alice.encrypt_group("g@green", b"to the group", &mut rng).unwrap();
    assert_eq!(message.key_distributions.len(), 1, "Bob counts as holding Alice's key from here on");
    assert!(matches!(bob.receive(alice.address(), &created[0].message, &mut directory, &mut rng), Err(ClientError::Downgrade { .. })));
    let start = bob.seal_all(vec![switchboard_client_core::PendingSend::session_start(alice.address().clone())], &mut directory, &mut rng).unwrap();
    alice.receive(bob.address(), &start[0].message, &mut directory, &mut rng).unwrap();
    let again = alice.encrypt_group("g@green", b"once more", &mut rng).unwrap();
    let to: Vec<_> = again.key_distributions.iter().map(|d| d.to.clone()).collect();
    assert_eq!(to, vec![bob.address().clone()]);
}

#[test]
fn an_intact_bundle_gives_the_stronger_suite_and_the_session_goes_on_both_ways() {
    let mut rng = StdRng::seed_from_u64(2);
    let (mut alice, mut bob, mut directory) = alice_and_bob(&mut rng, |_| {});
    let alice_bundles = alice.publish_bundles(1, &mut rng);
    directory.publish(&address("alice@green"), alice_bundles).unwrap();
    let first = alice.send(bob.address(), b"hello", &mut directory, &mut rng).unwrap();
    let CiphertextMessage::PreKey(prekey) = &first.message else { panic!("a first message is a PreKeySignalMessage") };
    assert_eq!(prekey.suite(), Suite::PqAes256Gcm);
    let second = alice.send(bob.address(), b"second", &mut directory, &mut rng).unwrap();
    assert_eq!(second.message.kind(), MessageKind::PreKey, "still unanswered");

    for (message, text) in [(&first, &b"hello"[..]), (&second, b"second")] {
        let (received, _) = bob.receive(alice.address(), &message.message, &mut directory, &mut rng).unwrap();
        assert!(matches!(received, Received::Application { content, .. } if content == text));
    }
    let reply = bob.send(alice.address(), b"hi", &mut directory, &mut rng).unwrap();
    assert_eq!(reply.message.kind(), MessageKind::Signal);
    let (received, _) = alice.receive(bob.address(), &reply.message, &mut directory, &mut rng).unwrap();
    assert!(matches!(received, Received::Application { content, .. } if content == b"hi"));
    let after = alice.send(bob.address(), b"after the reply", &mut directory, &mut rng).unwrap();
    assert_eq!(after.message.kind(), MessageKind::Signal);
    bob.receive(alice.address(), &after.message, &mut directory, &mut rng).unwrap();
}

#[test]
fn a_plain_libsignal_initiator_states_no_suites_and_keeps_signal_v3() {
    let mut rng = StdRng::seed_from_u64(3);
    let (_, mut bob, mut directory) = alice_and_bob(&mut rng, |bundle| bundle.suites = None);
    let carol_at = address("carol@libsignal");
    let mut carol = testing::Device::new(7, 1, &mut rng);
    let bundle = switchboard_client_core::BundleDirectory::fetch_bundle(&mut directory, bob.address()).unwrap();
    session::process_verified_bundle(&mut carol.store, bob.address(), &bundle, Suite::SignalV3, &mut rng).unwrap();
    let payload = PairwisePayload { body: Some(Body::Application(b"from libsignal".to_vec())), ..Default::default() };
    let message = session::encrypt(&mut carol.store, bob.address(), &payload.encode_to_vec()).unwrap();

    let (received, _) = bob.receive(&carol_at, &message, &mut directory, &mut rng).unwrap();
    assert!(matches!(received, Received::Application { content, .. } if content == b"from libsignal"));
    assert!(bob.has_session(&carol_at));
}

#[test]
fn a_bundle_stripped_of_its_kem_prekeys_gives_no_session_at_all() {
    let mut rng = StdRng::seed_from_u64(6);
    let mut bob = Device::new(address("bob@blue"), 2, &mut rng);
    let mut directory = InMemoryDirectory::default();
    for kem in [switchboard_session::Kem::Kyber1024, switchboard_session::Kem::MlKem1024] {
        let mut bundles = bob.publish_bundles(2, &mut rng);
        for bundle in &mut bundles {
            bundle.kem_prekeys.retain(|prekey| prekey.key.kem() != kem);
        }
        assert!(directory.publish(bob.address(), bundles).is_err(), "a bundle missing its {kem:?} prekey is refused");
    }
}

#[test]
fn with_a_classical_device_the_best_classical_suite_is_chosen_and_accepted() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut alice = Device::new(address("alice@green"), 1, &mut rng);
    alice.set_suites(&Suite::CLASSICAL);
    let mut bob = Device::new(address("bob@blue"), 2, &mut rng);
    let mut directory = InMemoryDirectory::default();
    let bob_bundles = bob.publish_bundles(1, &mut rng);
    directory.publish(bob.address(), bob_bundles).unwrap();
    let alice_bundles = alice.publish_bundles(1, &mut rng);
    assert!(alice_bundles.iter().all(|bundle| bundle.kem_prekeys.is_empty()));
    directory.publish(alice.address(), alice_bundles).unwrap();
    // Either side starting: aes-256-gcm, and the responder does not call it a downgrade.
    let first = alice.send(bob.address(), b"from the classical side", &mut directory, &mut rng).unwrap();
    assert_eq!(first.message.serialize()[0], Suite::Aes256Gcm.version_byte());
    bob.receive(alice.address(), &first.message, &mut directory, &mut rng).unwrap();
    let mut carol = Device::new(address("carol@blue"), 3, &mut rng);
    let start = carol.send(alice.address(), b"to the classical side", &mut directory, &mut rng).unwrap();
    assert_eq!(start.message.serialize()[0], Suite::Aes256Gcm.version_byte());
    alice.receive(carol.address(), &start.message, &mut directory, &mut rng).unwrap();
}

/// A device that offers the post-quantum suites alone never writes classically, whatever its
/// peer's bundle says after a relay is done with it, and takes no classical session either.
#[test]
fn a_post_quantum_only_device_never_writes_or_reads_classically() {
    let mut rng = StdRng::seed_from_u64(8);
    let (mut alice, bob, mut directory) = alice_and_bob(&mut rng, |bundle| {
        bundle.suites = None;
        bundle.kem_prekeys.clear();
    });
    alice.set_suites(&[Suite::PqAes256Gcm, Suite::SignalPqxdh]);
    assert!(matches!(
        alice.send(bob.address(), b"hello", &mut directory, &mut rng),
        Err(ClientError::Session(switchboard_session::Error::UnsupportedSuite(_)))
    ));
    assert!(!alice.has_session(bob.address()), "nothing was sealed");
    // The other way: a classical first message to her is refused, nothing kept.
    let alice_bundles = alice.publish_bundles(1, &mut rng);
    directory.publish(alice.address(), alice_bundles).unwrap();
    let mut carol = testing::Device::new(7, 1, &mut rng);
    let bundle = switchboard_client_core::BundleDirectory::fetch_bundle(&mut directory, alice.address()).unwrap();
    session::process_verified_bundle(&mut carol.store, alice.address(), &bundle, Suite::SignalV3, &mut rng).unwrap();
    let payload = PairwisePayload { body: Some(Body::Application(b"classical".to_vec())), ..Default::default() };
    let message = session::encrypt(&mut carol.store, alice.address(), &payload.encode_to_vec()).unwrap();
    let carol_at = address("carol@libsignal");
    assert!(alice.receive(&carol_at, &message, &mut directory, &mut rng).is_err());
    assert!(!alice.has_session(&carol_at));
}
