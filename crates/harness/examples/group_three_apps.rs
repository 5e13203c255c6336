//! A group spanning three apps, over the in-memory harness: real client endpoints and real relay
//! cores, in one process on a virtual clock, with nothing but this harness between them.
//!
//! Alice (on green) makes a group with Bob (blue) and Carol (red); each app's relay sees only
//! ciphertext. Alice then removes Bob: what is sent after that, Bob cannot read. Run with
//! `cargo run -p switchboard-harness --example group_three_apps`.

use switchboard_client_core::endpoint::Member;
use switchboard_harness::Harness;
use switchboard_session::Suite;

fn main() {
    // Three apps, each with its own relay, linked pairwise; the seed makes the run repeatable.
    let mut harness = Harness::new(&["green", "blue", "red"], 7);
    let alice = harness.add_device("alice@green", 1, false);
    let bob = harness.add_device("bob@blue", 1, false);
    let carol = harness.add_device("carol@red", 1, false);
    for device in [alice, bob, carol] {
        harness.connect(device);
    }
    // `settle` runs until no frame, batch or timer is left to handle.
    harness.settle();

    // The group lives at Alice's app (its id ends in @green), which orders its changes.
    let members = vec![Member::User("bob@blue".into()), Member::User("carol@red".into())];
    harness.with(alice, |endpoint, now, rng| endpoint.create_group(now, "trip@green", members, Suite::SignalV3, rng));
    harness.settle();
    harness.with(alice, |endpoint, now, rng| endpoint.send_group(now, "trip@green", b"where to?".to_vec(), rng)).expect("a member");
    harness.settle();
    for (name, device) in [("bob", bob), ("carol", carol)] {
        for (from, group, text) in harness.take_messages(device) {
            println!("{name} read from {from} in {}: {}", group.as_deref().unwrap_or("-"), String::from_utf8_lossy(&text));
            assert_eq!(text, b"where to?");
        }
    }

    // Bob leaves the group: Alice makes a new sender key and hands it to Carol only.
    harness.with(alice, |endpoint, now, rng| endpoint.remove_member(now, "trip@green", Member::User("bob@blue".into()), rng));
    harness.settle();
    harness.with(alice, |endpoint, now, rng| endpoint.send_group(now, "trip@green", b"Lisbon".to_vec(), rng)).expect("a member");
    harness.settle();
    let carol_read: Vec<Vec<u8>> = harness.take_messages(carol).into_iter().map(|(_, _, text)| text).collect();
    let bob_read: Vec<Vec<u8>> = harness.take_messages(bob).into_iter().map(|(_, _, text)| text).collect();
    println!("after Bob's removal: Carol read {} message(s), Bob {}", carol_read.len(), bob_read.len());
    assert_eq!(carol_read, vec![b"Lisbon".to_vec()]);
    assert!(bob_read.is_empty(), "a removed member reads nothing sent after");
}
