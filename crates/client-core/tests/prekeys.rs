//! A device's signed prekey over its life: replaced on a schedule, the one it replaced kept for
//! first messages already on their way, then forgotten, after which a first message naming it is
//! refused.

use rand::SeedableRng;
use rand::rngs::StdRng;
use switchboard_client_core::{Device, InMemoryDirectory, Received};
use switchboard_session::ProtocolAddress;

#[test]
fn a_replaced_signed_prekey_serves_until_forgotten_and_not_after() {
    let mut rng = StdRng::seed_from_u64(31);
    let address = |name: &str| ProtocolAddress::new(name, 1);
    let mut bob = Device::new_at(address("bob@blue"), 1, 1_000, &mut rng);
    let bundles = bob.publish_bundles(2, &mut rng);
    assert!(bundles.iter().all(|bundle| bundle.signed_prekey_id == 1));
    let mut directory = InMemoryDirectory::default();
    directory.publish(&address("bob@blue"), bundles).unwrap();
    // Two senders start sessions on signed prekey 1; their first messages are on their way.
    let mut first = Vec::new();
    for (n, name) in ["alice@green", "carol@red"].into_iter().enumerate() {
        let mut sender = Device::new(address(name), n as u32 + 2, &mut rng);
        first.push((address(name), sender.send(&address("bob@blue"), b"hello", &mut directory, &mut rng).unwrap()));
    }
    assert_eq!(bob.rotate_signed_prekey(2_000, &mut rng), 2);
    assert_eq!(bob.current_signed_prekey().id, 2);
    assert!(bob.publish_bundles(1, &mut rng).iter().all(|bundle| bundle.signed_prekey_id == 2));
    // Still within its grace: kept.
    assert_eq!(bob.forget_signed_prekeys_superseded_before(1_999), 0);
    let (alice, message) = &first[0];
    let (received, _) = bob.receive(alice, &message.message, &mut directory, &mut rng).unwrap();
    assert!(matches!(received, Received::Application { content, .. } if content == b"hello"));
    // Its grace over: forgotten, and a first message naming it is refused.
    assert_eq!(bob.forget_signed_prekeys_superseded_before(2_000), 1);
    let (carol, message) = &first[1];
    assert!(bob.receive(carol, &message.message, &mut directory, &mut rng).is_err());
    assert_eq!(bob.current_signed_prekey().id, 2, "the current one is never forgotten");
}

/// KEM prekeys live as the prekeys they come with: one-time ones beside each one-time prekey,
/// used once; last-resort ones with the signed prekey, kept while it is, new with each new one;
/// all of them through a snapshot.
#[test]
fn kem_prekeys_follow_the_prekeys_they_come_with() {
    use switchboard_session::{CiphertextMessage, Kem, Suite};
    let mut rng = StdRng::seed_from_u64(32);
    let address = |name: &str| ProtocolAddress::new(name, 1);
    let mut bob = Device::new_at(address("bob@blue"), 1, 1_000, &mut rng);
    let bundles = bob.publish_bundles(2, &mut rng);
    assert_eq!(bundles.len(), 3, "two one-time bundles and the last-resort one");
    for bundle in &bundles {
        assert_eq!(bundle.kem_prekeys.iter().map(|k| k.key.kem()).collect::<Vec<_>>(), [Kem::Kyber1024, Kem::MlKem1024]);
        assert!(bundle.serialize().len() <= switchboard_wire::limits::MAX_BUNDLE_LEN);
    }
    let kem_ids = |bundle: &switchboard_session::PreKeyBundle| bundle.kem_prekeys.iter().map(|k| k.id).collect::<Vec<_>>();
    assert!(bundles[2].prekey.is_none());
    let last_resort = kem_ids(&bundles[2]);
    assert_eq!(kem_ids(bob.publish_bundles(0, &mut rng).last().unwrap()), last_resort, "kept while the signed prekey is");

    // Two sessions on the last-resort bundle, one on a one-time bundle, across a snapshot.
    let mut directory = InMemoryDirectory::default(); // bob's: he needs no bundle to read
    let first = |bundle: &switchboard_session::PreKeyBundle, name: &str, rng: &mut StdRng| {
        let mut directory = InMemoryDirectory::default();
        directory.publish(&address("bob@blue"), vec![bundle.clone()]).unwrap();
        let mut sender = Device::new(address(name), 7, rng);
        let sent = sender.send(&address("bob@blue"), b"hello", &mut directory, rng).unwrap();
        let CiphertextMessage::PreKey(message) = &sent.message else { panic!("a first message") };
        assert_eq!(message.suite(), Suite::PqAes256Gcm);
        (address(name), sent)
    };
    let one_time = first(&bundles[0], "alice@green", &mut rng);
    let again = first(&bundles[0], "dave@green", &mut rng);
    let resorts = [first(&bundles[2], "carol@red", &mut rng), first(&bundles[2], "erin@red", &mut rng)];
    let mut bob = Device::restore(&bob.snapshot()).unwrap();
    for (from, sent) in [&one_time, &resorts[0], &resorts[1]] {
        let (received, _) = bob.receive(from, &sent.message, &mut directory, &mut rng).unwrap();
        assert!(matches!(received, Received::Application { content, .. } if content == b"hello"));
    }
    assert!(bob.receive(&again.0, &again.1.message, &mut directory, &mut rng).is_err(), "a one-time KEM prekey serves once");
    // And the other KEM prekey of that bundle went with it: two one-time bundles were made, one
    // used; what is left is the unused bundle's pair and the two last-resort keys.
    let kem_records = bob.snapshot().kem_prekeys.len();
    assert_eq!(kem_records, 4, "{kem_records} KEM prekeys kept");

    // A new signed prekey brings new last-resort KEM prekeys; the old ones go when it goes.
    bob.rotate_signed_prekey(2_000, &mut rng);
    let rotated = bob.publish_bundles(0, &mut rng);
    assert_ne!(kem_ids(&rotated[0]), last_resort);
    let late = first(&bundles[2], "frank@red", &mut rng);
    assert_eq!(bob.forget_signed_prekeys_superseded_before(2_000), 1);
    assert!(bob.receive(&late.0, &late.1.message, &mut directory, &mut rng).is_err(), "its last-resort KEM prekey is gone");
    let fresh = first(&rotated[0], "grace@red", &mut rng);
    bob.receive(&fresh.0, &fresh.1.message, &mut directory, &mut rng).unwrap();
}
