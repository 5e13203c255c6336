//! Group membership across devices of three apps: a removed member reads nothing sent after its
//! removal, a member who joins late reads nothing sent before it joined, and everyone else reads
//! everything.

mod common;

use common::{GROUP, address, founded};
use switchboard_client_core::{ClientError, GroupMessage, Received};
use switchboard_session::Suite;

#[test]
fn a_new_group_is_known_to_all_and_everyone_reads_everyone() {
    for suite in [Suite::SignalV3, Suite::Aes256Gcm] {
        let mut world = founded(suite, 1);
        let members = ["alice@green", "bob@blue", "carol@red", "dave@blue"];
        for member in members {
            let group = world.device(member).group(GROUP).unwrap().clone();
            assert_eq!(group.epoch(), 0);
            assert_eq!(group.members().len(), 4);
            assert_eq!(group.suite(), suite);
        }
        world.everyone_reads_everyone(&members, "hello");
    }
}

#[test]
fn a_removed_member_reads_nothing_sent_after_its_removal() {
    for suite in [Suite::SignalV3, Suite::Aes256Gcm] {
        let mut world = founded(suite, 2);
        let before: Vec<_> = ["alice@green", "bob@blue", "carol@red"].iter().map(|m| (*m, world.group_send(m, "before"))).collect();

        let rng = &mut world.rng;
        let outgoing = world.devices.get_mut(&address("alice@green")).unwrap()
            .remove_member(GROUP, &address("dave@blue"), &mut world.directory, rng).unwrap();
        // Dave's copy of the notice is held back: he keeps the group and every key he had, as a
        // removed member who ignores his removal would.
        let (to_dave, others): (Vec<_>, Vec<_>) = outgoing.into_iter().partition(|o| o.to == address("dave@blue"));
        world.post("alice@green", others);
        assert!(world.deliver_all().iter().all(|(_, result)| result.is_ok()));
        for member in ["alice@green", "bob@blue", "carol@red"] {
            let group = world.device(member).group(GROUP).unwrap();
            assert_eq!(group.epoch(), 1);
            assert!(!group.members().contains(&address("dave@blue")));
        }
        assert_eq!(world.device("dave@blue").group(GROUP).unwrap().epoch(), 0);

        // Every remaining member rotated and told only the others: Dave has no key for anything
        // they send now.
        for sender in ["alice@green", "bob@blue", "carol@red"] {
            let after = world.group_send(sender, "after");
            assert_eq!(after.recipients.len(), 2, "the removed member is no longer a recipient");
            assert!(
                matches!(
                    world.group_read("dave@blue", sender, &after),
                    Err(ClientError::Session(switchboard_session::Error::NoSenderKey { .. }))
                ),
                "dave could read {sender}'s message"
            );
        }
        // When the notice reaches him, Dave drops the group.
        world.post("alice@green", to_dave);
        let results = world.deliver_all();
        assert_eq!(results, vec![(address("dave@blue"), Ok(Received::RemovedFromGroup { group: GROUP.into() }))]);
        assert!(world.device("dave@blue").group(GROUP).is_none());
        world.everyone_reads_everyone(&["alice@green", "bob@blue", "carol@red"], "after removal");
        // Messages from before the removal, still in flight, remain readable by those who stay.
        for (sender, message) in &before {
            for reader in ["alice@green", "bob@blue", "carol@red"].iter().filter(|r| *r != sender) {
                assert_eq!(world.group_read(reader, sender, message).unwrap(), b"before");
            }
        }
        // And Dave's own messages are refused: he is no longer a member.
        assert!(matches!(
            world.device("alice@green").decrypt_group(GROUP, &address("dave@blue"), &[0x33; 80]),
            Err(ClientError::NotAMember { .. })
        ));
    }
}

#[test]
fn a_late_joiner_reads_nothing_sent_before_it_joined() {
    for suite in [Suite::SignalV3, Suite::Aes256Gcm] {
        let mut world = founded(suite, 3);
        let members = ["alice@green", "bob@blue", "carol@red", "dave@blue"];
        let before: Vec<_> = members.iter().map(|m| (*m, world.group_send(m, "before erin"))).collect();

        let rng = &mut world.rng;
        let outgoing = world.devices.get_mut(&address("alice@green")).unwrap()
            .add_member(GROUP, address("erin@red"), &mut world.directory, rng).unwrap();
        world.post("alice@green", outgoing);
        assert!(world.deliver_all().iter().all(|(_, result)| result.is_ok()));
        assert_eq!(world.device("erin@red").group(GROUP).unwrap().epoch(), 1);

        // Every member hands Erin its current key with its next message; earlier keys are behind it.
        world.everyone_reads_everyone(&["alice@green", "bob@blue", "carol@red", "dave@blue", "erin@red"], "with erin");
        for (sender, message) in &before {
            assert!(
                matches!(
                    world.group_read("erin@red", sender, message),
                    Err(ClientError::Session(switchboard_session::Error::Duplicate { .. }))
                ),
                "erin read {sender}'s earlier message"
            );
        }
    }
}

#[test]
fn a_newcomers_key_that_overtakes_the_news_of_her_joining_is_kept_until_it_arrives() {
    let mut world = founded(Suite::SignalV3, 4);
    let rng = &mut world.rng;
    let outgoing = world.devices.get_mut(&address("alice@green")).unwrap()
        .add_member(GROUP, address("erin@red"), &mut world.directory, rng).unwrap();
    world.post("alice@green", outgoing);
    // Erin hears first, and writes to the group at once: her key reaches Bob, Carol and Dave
    // before Alice's notices do.
    let (to_erin, notices): (Vec<_>, Vec<_>) = world.network.drain(..).partition(|(_, o)| o.to == address("erin@red"));
    world.network.extend(to_erin);
    assert!(world.deliver_all().iter().all(|(_, result)| result.is_ok()));
    let rng = &mut world.rng;
    let erin = world.devices.get_mut(&address("erin@red")).unwrap();
    let mut early = erin.encrypt_group(GROUP, b"hi all", rng).unwrap();
    let keys = erin.seal_all(std::mem::take(&mut early.key_distributions), &mut world.directory, rng).unwrap();
    world.post("erin@red", keys);
    let held = world.deliver_all();
    assert_eq!(held.len(), 4);
    assert!(held.iter().all(|(_, result)| result.is_ok()), "{held:?}");
    assert!(matches!(world.group_read("bob@blue", "erin@red", &early), Err(ClientError::NotAMember { .. })));
    // The notices arrive: the kept keys take effect.
    world.network.extend(notices);
    assert!(world.deliver_all().iter().all(|(_, result)| result.is_ok()));
    for reader in ["alice@green", "bob@blue", "carol@red", "dave@blue"] {
        assert_eq!(world.group_read(reader, "erin@red", &early).unwrap(), b"hi all");
    }
}

#[test]
fn only_members_can_change_a_group() {
    let mut world = founded(Suite::SignalV3, 5);
    // Erin, not a member, claims a newer epoch without Dave.
    let rng = &mut world.rng;
    let erin = world.devices.get_mut(&address("erin@red")).unwrap();
    let forged = erin
        .create_group(GROUP, ["alice@green", "bob@blue", "carol@red"].map(address), Suite::SignalV3, &mut world.directory, rng)
        .unwrap();
    world.post("erin@red", forged);
    let results = world.deliver_all();
    assert!(results.iter().all(|(_, r)| matches!(r, Err(ClientError::NotAnAdmin { .. }))), "{results:?}");
    assert_eq!(world.device("alice@green").group(GROUP).unwrap().members().len(), 4);
}

#[test]
fn a_member_added_back_takes_a_fresh_key_that_members_removed_meanwhile_cannot_hold() {
    // Found by the group_interaction fuzz target: C removed, then B removed, then C added back.
    // B still holds the sender key C had before; C must not use it again.
    let key_id = |message: &GroupMessage| switchboard_session::group::SenderKeyMessage::parse(&message.bytes).unwrap().key_id();
    let mut world = founded(Suite::SignalV3, 6);
    let before = world.group_send("carol@red", "before leaving");
    for (remover, removed) in [("alice@green", "carol@red"), ("alice@green", "bob@blue")] {
        let rng = &mut world.rng;
        let outgoing = world.devices.get_mut(&address(remover)).unwrap()
            .remove_member(GROUP, &address(removed), &mut world.directory, rng).unwrap();
        world.post(remover, outgoing);
        assert!(world.deliver_all().iter().all(|(_, result)| result.is_ok()));
    }
    let rng = &mut world.rng;
    let outgoing = world.devices.get_mut(&address("alice@green")).unwrap()
        .add_member(GROUP, address("carol@red"), &mut world.directory, rng).unwrap();
    world.post("alice@green", outgoing);
    assert!(world.deliver_all().iter().all(|(_, result)| result.is_ok()));
    let after = world.group_send("carol@red", "after coming back");
    assert_ne!(key_id(&after), key_id(&before), "carol reused a sender key bob still holds");
    assert_eq!(world.group_read("alice@green", "carol@red", &after).unwrap(), b"after coming back");
    assert_eq!(world.group_read("dave@blue", "carol@red", &after).unwrap(), b"after coming back");
}

#[test]
fn a_key_that_could_not_go_out_goes_with_the_next_message() {
    let mut world = founded(Suite::Aes256Gcm, 6);
    let rng = &mut world.rng;
    let alice = world.devices.get_mut(&address("alice@green")).unwrap();
    let first = alice.encrypt_group(GROUP, b"lost", rng).unwrap();
    assert_eq!(first.key_distributions.len(), 3);
    // Sealing failed (say, no bundle at hand): the caller says so, and nothing was sent.
    alice.key_not_delivered(GROUP, &first.key_distributions);
    let second = alice.encrypt_group(GROUP, b"again", rng).unwrap();
    let to: Vec<_> = second.key_distributions.iter().map(|d| d.to.clone()).collect();
    assert_eq!(to, ["bob@blue", "carol@red", "dave@blue"].map(address));
    let third = alice.encrypt_group(GROUP, b"held by all now", rng).unwrap();
    assert!(third.key_distributions.is_empty());
}
