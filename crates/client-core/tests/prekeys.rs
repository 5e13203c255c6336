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
    assert_eq!(received, Received::Application(b"hello".to_vec()));
    // Its grace over: forgotten, and a first message naming it is refused.
    assert_eq!(bob.forget_signed_prekeys_superseded_before(2_000), 1);
    let (carol, message) = &first[1];
    assert!(bob.receive(carol, &message.message, &mut directory, &mut rng).is_err());
    assert_eq!(bob.current_signed_prekey().id, 2, "the current one is never forgotten");
}
