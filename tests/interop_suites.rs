//! The downgrade check between a Switchboard client device and Signal's reference C library: a
//! plain libsignal peer, which offers and states no suites, keeps talking `signal-v3` both ways;
//! the suites a Switchboard device states in its first messages reach libsignal-c as part of the
//! plaintext, which it hands over untouched.

mod common;

use common::{bundle_from_c, bundle_to_c, c_kind, rust_kind};
use rand::SeedableRng;
use rand::rngs::StdRng;
use switchboard_client::{Device, InMemoryDirectory, Received};
use switchboard_libsignal_c as c;
use switchboard_session::{CiphertextMessage, MessageKind, ProtocolAddress, Suite};
use switchboard_wire::switchboard::{PairwisePayload, pairwise_payload::Body};
use switchboard_wire::{Message, decode};

fn application(bytes: &[u8]) -> Vec<u8> {
    PairwisePayload { body: Some(Body::Application(bytes.to_vec())), ..Default::default() }.encode_to_vec()
}

fn read(plaintext: &[u8]) -> PairwisePayload {
    decode(plaintext, 1 << 16).expect("a pairwise payload")
}

#[test]
fn a_libsignal_c_initiator_states_no_suites_and_is_accepted_on_signal_v3() {
    let mut rng = StdRng::seed_from_u64(31);
    let bob_at = ProtocolAddress::new("bob@blue", 1);
    let mut bob = Device::new(bob_at.clone(), 202, &mut rng);
    let mut alice = c::Party::new(101, 1, 5, 31).unwrap();
    let bundle = bob.publish_bundles(1, &mut rng).remove(0);
    assert!(bundle.offers(Suite::Aes256Gcm), "the Switchboard device offers the stronger suite");
    // The C library's bundle type has no suite list: it sees a plain libsignal bundle.
    alice.process_bundle("bob@blue", 1, &bundle_to_c(&bundle)).unwrap();
    let (kind, bytes) = alice.encrypt("bob@blue", 1, &application(b"from libsignal-c")).unwrap();
    assert_eq!(rust_kind(kind), MessageKind::PreKey);

    let alice_at = ProtocolAddress::new("alice@c", 1);
    let mut directory = InMemoryDirectory::default();
    let message = CiphertextMessage::parse(MessageKind::PreKey, &bytes).unwrap();
    let (received, _) = bob.receive(&alice_at, &message, &mut directory, &mut rng).unwrap();
    assert!(matches!(received, Received::Application { content, .. } if content == b"from libsignal-c"));
    assert_eq!(bob.current_session(&alice_at).unwrap().suite(), Suite::SignalV3);

    let reply = bob.send(&alice_at, b"from switchboard", &mut directory, &mut rng).unwrap();
    let plaintext = alice.decrypt("bob@blue", 1, c_kind(reply.message.kind()), &reply.message.serialize()).expect("libsignal-c reads the reply");
    let payload = read(&plaintext);
    assert_eq!(payload.body, Some(Body::Application(b"from switchboard".to_vec())));
    assert!(payload.suites.is_empty(), "a responder states nothing");
}

#[test]
fn a_switchboard_initiator_states_its_suites_to_libsignal_c_which_reads_them_as_plaintext() {
    let mut rng = StdRng::seed_from_u64(32);
    let alice_at = ProtocolAddress::new("alice@green", 1);
    let mut alice = Device::new(alice_at.clone(), 101, &mut rng);
    let mut bob = c::Party::new(202, 1, 5, 32).unwrap();
    let bob_at = ProtocolAddress::new("bob@c", 1);
    let mut directory = InMemoryDirectory::default();
    directory.publish(&bob_at, [bundle_from_c(&bob.bundle().unwrap())]).unwrap();

    let mut sent = Vec::new();
    for text in [&b"first"[..], b"second"] {
        let outgoing = alice.send(&bob_at, text, &mut directory, &mut rng).unwrap();
        assert_eq!(outgoing.message.kind(), MessageKind::PreKey);
        let CiphertextMessage::PreKey(prekey) = &outgoing.message else { unreachable!() };
        assert_eq!(prekey.suite(), Suite::SignalV3, "all a plain libsignal bundle offers");
        sent.push(outgoing);
    }
    for (outgoing, text) in sent.iter().zip([&b"first"[..], b"second"]) {
        let plaintext = bob.decrypt("alice@green", 1, c::MessageKind::PreKey, &outgoing.message.serialize()).expect("libsignal-c reads a first message");
        let payload = read(&plaintext);
        assert_eq!(payload.body, Some(Body::Application(text.to_vec())));
        let names: Vec<&str> = Suite::ALL.iter().map(|suite| suite.name()).collect();
        assert_eq!(payload.suites, names, "every PreKeySignalMessage states the initiator's suites");
    }

    let (kind, bytes) = bob.encrypt("alice@green", 1, &application(b"reply")).unwrap();
    let message = CiphertextMessage::parse(rust_kind(kind), &bytes).unwrap();
    let (received, _) = alice.receive(&bob_at, &message, &mut directory, &mut rng).unwrap();
    assert!(matches!(received, Received::Application { content, .. } if content == b"reply"));
    let after = alice.send(&bob_at, b"after the reply", &mut directory, &mut rng).unwrap();
    assert_eq!(after.message.kind(), MessageKind::Signal);
    let plaintext = bob.decrypt("alice@green", 1, c::MessageKind::Signal, &after.message.serialize()).expect("libsignal-c reads the session's next message");
    assert!(read(&plaintext).suites.is_empty(), "stated only until the first reply");
}
