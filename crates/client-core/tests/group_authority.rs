//! Who may change a group, and in what order: only its admins, one epoch at a time, each change
//! naming the state it applies to. A member that is not an admin cannot add, remove or jump the
//! epoch (the attacks of Rösler, Mainka and Schwenk, "More is Less", 2018); an admin that shows
//! members different changes is caught as a fork; changes that arrive out of order apply in order.

mod common;

use common::{GROUP, World, address, founded};
use switchboard_client_core::{ClientError, Group, MAX_EPOCH_GAP, OrderKey, PendingSend, Received};
use switchboard_session::Suite;
use switchboard_wire::Message;
use switchboard_wire::switchboard::{GroupControl, PairwisePayload, pairwise_payload::Body};

/// `from` sends `group`'s announcement to each of `to`, as a modified client would: whatever its
/// own device would let it do.
fn announce(world: &mut World, from: &str, group: &Group, to: &[&str]) {
    send_control(world, from, group.announcement(), to);
}

fn send_control(world: &mut World, from: &str, control: GroupControl, to: &[&str]) {
    let payload = PairwisePayload { body: Some(Body::GroupControl(control)), ..Default::default() }.encode_to_vec();
    let pending = to.iter().map(|to| PendingSend::new(address(to), payload.clone())).collect();
    let rng = &mut world.rng;
    let sealed = world.devices.get_mut(&address(from)).unwrap().seal_all(pending, &mut world.directory, rng).unwrap();
    world.post(from, sealed);
}

/// `who`'s view of the group, with `members` and `admins` at the next epoch, signed with the
/// group's order key if `who` holds it (an admin), else with a key of its own.
fn next(world: &mut World, who: &str, members: &[&str], admins: &[&str]) -> Group {
    let own = OrderKey::generate(&mut world.rng);
    let device = world.device(who);
    let signer = device.order_key(GROUP).cloned().unwrap_or(own);
    let group = device.group(GROUP).unwrap().clone();
    group.next(members.iter().map(|m| address(m)).collect(), admins.iter().map(|m| address(m)).collect(), None).unwrap().sign(&signer)
}

fn hash(world: &mut World, who: &str) -> [u8; 32] {
    *world.device(who).group(GROUP).unwrap().hash()
}

#[test]
fn a_member_who_is_not_an_admin_cannot_add_a_stranger_in_secret() {
    let mut world = founded(Suite::Aes256Gcm, 11);
    // Carol adds Erin and tells only Bob (and Erin), naming herself admin for Erin's benefit.
    let forged = next(&mut world, "carol@red", &["alice@green", "bob@blue", "carol@red", "dave@blue", "erin@red"], &["carol@red"]);
    announce(&mut world, "carol@red", &forged, &["bob@blue", "erin@red"]);
    let results = world.deliver_all();
    assert!(matches!(&results[0], (to, Err(ClientError::NotAnAdmin { .. })) if *to == address("bob@blue")), "{results:?}");
    assert_eq!(world.device("bob@blue").group(GROUP).unwrap().members().len(), 4);
    // Bob's next message hands his key to the members only: Erin cannot read it.
    let message = world.group_send("bob@blue", "members only");
    assert!(!message.recipients.contains(&address("erin@red")));
    assert!(world.group_read("erin@red", "bob@blue", &message).is_err());
    assert_eq!(world.group_read("alice@green", "bob@blue", &message).unwrap(), b"members only");
}

#[test]
fn a_member_who_is_not_an_admin_cannot_remove_anyone_or_show_members_different_changes() {
    let mut world = founded(Suite::SignalV3, 12);
    let without_dave = next(&mut world, "carol@red", &["alice@green", "bob@blue", "carol@red"], &["alice@green"]);
    let without_bob = next(&mut world, "carol@red", &["alice@green", "carol@red", "dave@blue"], &["alice@green"]);
    announce(&mut world, "carol@red", &without_dave, &["alice@green", "bob@blue"]);
    announce(&mut world, "carol@red", &without_bob, &["dave@blue"]);
    let results = world.deliver_all();
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|(_, result)| matches!(result, Err(ClientError::NotAnAdmin { .. }))), "{results:?}");
    let genesis = hash(&mut world, "alice@green");
    for member in ["bob@blue", "carol@red", "dave@blue"] {
        assert_eq!(hash(&mut world, member), genesis, "{member} holds another state");
    }
    world.everyone_reads_everyone(&["alice@green", "bob@blue", "carol@red", "dave@blue"], "still four");
}

#[test]
fn an_epoch_jump_does_not_pin_a_member_and_a_removal_still_applies() {
    let mut world = founded(Suite::Aes256Gcm, 13);
    // Carol claims an epoch near the end of the range, to make Alice's removal of her look old.
    let mut jumped = world.device("carol@red").group(GROUP).unwrap().announcement();
    jumped.epoch = u64::MAX - 1;
    let payload = PairwisePayload { body: Some(Body::GroupControl(jumped)), ..Default::default() }.encode_to_vec();
    let rng = &mut world.rng;
    let sealed = world.devices.get_mut(&address("carol@red")).unwrap()
        .seal_all(vec![PendingSend::new(address("bob@blue"), payload)], &mut world.directory, rng).unwrap();
    world.post("carol@red", sealed);
    assert_eq!(world.deliver_all(), vec![(address("bob@blue"), Err(ClientError::LimitExceeded { what: "epochs an announcement kept for later may be ahead", limit: MAX_EPOCH_GAP as usize }))]);

    let rng = &mut world.rng;
    let outgoing = world.devices.get_mut(&address("alice@green")).unwrap()
        .remove_member(GROUP, &address("carol@red"), &mut world.directory, rng).unwrap();
    world.post("alice@green", outgoing);
    assert!(world.deliver_all().iter().all(|(_, result)| result.is_ok()));
    assert_eq!(world.device("bob@blue").group(GROUP).unwrap().epoch(), 1);
    let after = world.group_send("bob@blue", "after carol left");
    assert!(world.group_read("carol@red", "bob@blue", &after).is_err(), "the removed member read a later message");
    assert_eq!(world.group_read("dave@blue", "bob@blue", &after).unwrap(), b"after carol left");
}

#[test]
fn an_admin_who_shows_members_different_changes_is_caught_as_a_fork() {
    let mut world = founded(Suite::Aes256Gcm, 14);
    let with_erin = next(&mut world, "alice@green", &["alice@green", "bob@blue", "carol@red", "dave@blue", "erin@red"], &["alice@green"]);
    let without_dave = next(&mut world, "alice@green", &["alice@green", "bob@blue", "carol@red"], &["alice@green"]);
    announce(&mut world, "alice@green", &with_erin, &["bob@blue", "erin@red"]);
    announce(&mut world, "alice@green", &without_dave, &["carol@red"]);
    assert!(world.deliver_all().iter().all(|(_, result)| result.is_ok()));
    assert_ne!(hash(&mut world, "bob@blue"), hash(&mut world, "carol@red"));
    // Bob's key reaches Carol naming his state at epoch 1: not hers. She refuses it and says so.
    let rng = &mut world.rng;
    let bob = world.devices.get_mut(&address("bob@blue")).unwrap();
    let mut message = bob.encrypt_group(GROUP, b"hello", rng).unwrap();
    let keys = bob.seal_all(std::mem::take(&mut message.key_distributions), &mut world.directory, rng).unwrap();
    world.post("bob@blue", keys);
    let results = world.deliver_all();
    let fork = ClientError::GroupFork { group: GROUP.into(), epoch: 1, from: address("bob@blue") };
    assert!(results.contains(&(address("carol@red"), Err(fork.clone()))), "{results:?}");
    assert_eq!(world.device("carol@red").take_forks(), vec![fork]);
    assert!(world.group_read("carol@red", "bob@blue", &message).is_err());
    // A third state for epoch 1, from Alice's own device: a fork to Bob too.
    let rng = &mut world.rng;
    let outgoing = world.devices.get_mut(&address("alice@green")).unwrap().promote(GROUP, &address("dave@blue"), &mut world.directory, rng).unwrap();
    world.post("alice@green", outgoing.into_iter().filter(|o| o.to == address("bob@blue")).collect());
    let fork = ClientError::GroupFork { group: GROUP.into(), epoch: 1, from: address("alice@green") };
    assert_eq!(world.deliver_all(), vec![(address("bob@blue"), Err(fork))]);
}

#[test]
fn changes_that_arrive_out_of_order_apply_in_the_order_of_their_chain() {
    let mut world = founded(Suite::SignalV3, 15);
    let mut changes = Vec::new();
    for change in 0..2 {
        let rng = &mut world.rng;
        let alice = world.devices.get_mut(&address("alice@green")).unwrap();
        let outgoing = match change {
            0 => alice.remove_member(GROUP, &address("dave@blue"), &mut world.directory, rng),
            _ => alice.add_member(GROUP, address("erin@red"), &mut world.directory, rng),
        };
        changes.push(outgoing.unwrap().into_iter().filter(|o| o.to == address("bob@blue")).collect::<Vec<_>>());
    }
    // Bob hears of Erin's arrival (epoch 2) before Dave's removal (epoch 1): it waits.
    world.post("alice@green", changes.pop().unwrap());
    let results = world.deliver_all();
    assert_eq!(results, vec![(address("bob@blue"), Ok(Received::Group { group: GROUP.into(), epoch: 0, change: None }))]);
    world.post("alice@green", changes.pop().unwrap());
    let results = world.deliver_all();
    let Ok(Received::Group { epoch: 2, change: Some(change), .. }) = &results[0].1 else { panic!("{results:?}") };
    assert_eq!((change.added.clone(), change.removed.clone()), (vec![address("erin@red")], vec![address("dave@blue")]));
    assert_eq!(hash(&mut world, "bob@blue"), hash(&mut world, "alice@green"));
    // Bob rotated for Dave's removal: Dave reads none of what Bob sends now.
    let message = world.group_send("bob@blue", "after both");
    assert!(world.group_read("dave@blue", "bob@blue", &message).is_err());
}

#[test]
fn an_admin_promotes_a_member_who_may_then_change_the_group() {
    let mut world = founded(Suite::Aes256Gcm, 16);
    let rng = &mut world.rng;
    let bob_first = world.devices.get_mut(&address("bob@blue")).unwrap().remove_member(GROUP, &address("dave@blue"), &mut world.directory, rng);
    assert!(matches!(bob_first, Err(ClientError::NotAnAdmin { .. })), "not yet");
    let outgoing = world.devices.get_mut(&address("alice@green")).unwrap().promote(GROUP, &address("bob@blue"), &mut world.directory, rng).unwrap();
    world.post("alice@green", outgoing);
    assert!(world.deliver_all().iter().all(|(_, result)| result.is_ok()));
    let rng = &mut world.rng;
    let outgoing = world.devices.get_mut(&address("bob@blue")).unwrap().remove_member(GROUP, &address("dave@blue"), &mut world.directory, rng).unwrap();
    world.post("bob@blue", outgoing);
    assert!(world.deliver_all().iter().all(|(_, result)| result.is_ok()));
    for member in ["alice@green", "carol@red"] {
        assert_eq!(hash(&mut world, member), hash(&mut world, "bob@blue"));
        assert_eq!(world.device(member).group(GROUP).unwrap().epoch(), 2);
    }
    assert!(world.device("dave@blue").group(GROUP).is_none());
}

/// Alice's changes, each as its copy to `to`.
fn changes_to(world: &mut World, to: &str, changes: &[(&str, bool)]) -> Vec<Vec<switchboard_client_core::Outgoing>> {
    let mut copies = Vec::new();
    for (member, add) in changes {
        let rng = &mut world.rng;
        let alice = world.devices.get_mut(&address("alice@green")).unwrap();
        let outgoing = match add {
            true => alice.add_member(GROUP, address(member), &mut world.directory, rng),
            false => alice.remove_member(GROUP, &address(member), &mut world.directory, rng),
        };
        copies.push(outgoing.unwrap().into_iter().filter(|o| o.to == address(to)).collect());
    }
    copies
}

#[test]
fn strangers_cannot_fill_the_room_kept_for_early_changes() {
    // Found in review: 32 announcements from strangers naming themselves admin took every slot,
    // and a removal that came before the change it built on was then lost.
    let mut world = founded(Suite::Aes256Gcm, 17);
    let held = world.device("bob@blue").group(GROUP).unwrap().clone();
    for stranger in 0..8 {
        let name = format!("s{stranger}@red");
        world.add_device(&name);
        for ahead in 0..4 {
            let mut members = held.members().clone();
            members.insert(address(&name));
            let own = OrderKey::generate(&mut world.rng);
            let mut control = held.next(members, [address(&name)].into_iter().collect(), Some(&own)).unwrap().sign(&own).announcement();
            control.epoch = 32 - ahead;
            send_control(&mut world, &name, control, &["bob@blue"]);
        }
    }
    let results = world.deliver_all();
    assert!(results.iter().all(|(_, result)| matches!(result, Err(ClientError::NotAMember { .. }))), "{results:?}");
    let mut copies = changes_to(&mut world, "bob@blue", &[("erin@red", true), ("dave@blue", false)]);
    world.post("alice@green", copies.pop().unwrap());
    world.post("alice@green", copies.pop().unwrap());
    assert!(world.deliver_all().iter().all(|(_, result)| result.is_ok()));
    assert_eq!(hash(&mut world, "bob@blue"), hash(&mut world, "alice@green"));
}

#[test]
fn an_admins_changes_apply_in_order_however_late_the_first_arrives() {
    // Found in review: with room for 4 early changes per sender, the sixth was refused for good.
    let mut world = founded(Suite::Aes256Gcm, 18);
    let names: Vec<String> = (0..12).map(|n| format!("n{n}@red")).collect();
    for name in &names {
        world.add_device(name);
    }
    let adds: Vec<(&str, bool)> = names.iter().map(|name| (name.as_str(), true)).collect();
    let mut copies = changes_to(&mut world, "bob@blue", &adds);
    let first = copies.remove(0);
    for copy in copies.into_iter().rev() {
        world.post("alice@green", copy);
    }
    world.post("alice@green", first);
    assert!(world.deliver_all().iter().all(|(_, result)| result.is_ok()));
    assert_eq!(world.device("bob@blue").group(GROUP).unwrap().epoch(), 12);
    assert_eq!(hash(&mut world, "bob@blue"), hash(&mut world, "alice@green"));
}

#[test]
fn a_member_removed_and_added_back_rejoins_whichever_news_comes_first() {
    // Found in review: the re-addition, kept while the removal was on its way, was dropped with it.
    let mut world = founded(Suite::SignalV3, 19);
    let mut copies = changes_to(&mut world, "dave@blue", &[("dave@blue", false), ("dave@blue", true)]);
    world.post("alice@green", copies.pop().unwrap());
    assert!(world.deliver_all().iter().all(|(_, result)| result.is_ok()));
    world.post("alice@green", copies.pop().unwrap());
    let results = world.deliver_all();
    assert!(matches!(&results[0].1, Ok(Received::Group { epoch: 2, .. })), "{results:?}");
    assert_eq!(hash(&mut world, "dave@blue"), hash(&mut world, "alice@green"));
    world.everyone_reads_everyone(&["alice@green", "bob@blue", "carol@red", "dave@blue"], "back");
}

#[test]
fn a_member_re_added_after_changes_it_never_saw_rejoins_when_its_removal_comes_last() {
    // Found by the simulator (`faults`, seed 29): Dave holds his re-addition at epoch 3, the
    // removal of Carol at epoch 2 never reaches him (he was out), and his own removal comes last.
    // Applying it left him out for good, his re-addition dropped with the rest.
    let mut world = founded(Suite::SignalV3, 21);
    let mut copies = changes_to(&mut world, "dave@blue", &[("dave@blue", false), ("carol@red", false), ("dave@blue", true)]);
    assert!(copies[1].is_empty(), "Dave is told nothing of a change made while he is out");
    world.post("alice@green", copies.pop().unwrap());
    assert!(world.deliver_all().iter().all(|(_, result)| result.is_ok()));
    world.post("alice@green", copies.remove(0));
    let results = world.deliver_all();
    assert!(results.iter().all(|(_, result)| result.is_ok()), "{results:?}");
    assert_eq!(world.device("dave@blue").group(GROUP).map(|group| group.epoch()), Some(3));
    assert_eq!(hash(&mut world, "dave@blue"), hash(&mut world, "alice@green"));
    // (Only Dave was told of the changes here: Alice and Dave read each other.)
    let from_alice = world.group_send("alice@green", "welcome back");
    assert_eq!(world.group_read("dave@blue", "alice@green", &from_alice).unwrap(), b"welcome back");
    let from_dave = world.group_send("dave@blue", "glad to be");
    assert_eq!(world.group_read("alice@green", "dave@blue", &from_dave).unwrap(), b"glad to be");
}

#[test]
fn a_member_raises_one_fork_alarm_per_epoch_at_most_and_slips_no_key_in_with_an_announcement() {
    // Found in review: a key naming another state made Bob report a fork per copy; an old
    // announcement carrying a key installed it.
    let mut world = founded(Suite::Aes256Gcm, 20);
    let held = world.device("carol@red").group(GROUP).unwrap().clone();
    let mut keys = switchboard_session::group::InMemorySenderKeyStore::default();
    let distribution = switchboard_session::group::create_distribution(&mut keys, GROUP, &address("carol@red"), Suite::Aes256Gcm, &mut world.rng).unwrap();
    let key = GroupControl {
        group_id: GROUP.into(),
        epoch: held.epoch(),
        suite: held.suite().name().into(),
        sender_key_distribution: distribution.serialize().to_vec(),
        state_hash: vec![7; 32],
        ..Default::default()
    };
    for _ in 0..3 {
        send_control(&mut world, "carol@red", key.clone(), &["bob@blue"]);
    }
    let results = world.deliver_all();
    assert!(results.iter().all(|(_, result)| matches!(result, Err(ClientError::GroupFork { .. }))), "{results:?}");
    let forks = world.device("bob@blue").take_forks();
    assert_eq!(forks, vec![ClientError::GroupFork { group: GROUP.into(), epoch: 0, from: address("carol@red") }], "one alarm, naming its claimant");
    let mut with_key = held.announcement();
    with_key.sender_key_distribution = distribution.serialize().to_vec();
    send_control(&mut world, "carol@red", with_key, &["bob@blue"]);
    assert_eq!(world.deliver_all(), vec![(address("bob@blue"), Err(ClientError::InvalidPayload("an announcement carries no sender key")))]);
    let carols = world.device("bob@blue").sender_key_store().records().filter(|(_, sender, _)| **sender == address("carol@red")).count();
    assert_eq!(carols, 0);
}

#[test]
fn only_admins_hold_the_order_key_and_it_changes_when_an_admin_leaves() {
    let mut world = founded(Suite::Aes256Gcm, 19);
    let genesis_key = *world.device("alice@green").group(GROUP).unwrap().order_key();
    assert_eq!(world.device("alice@green").order_key(GROUP).map(OrderKey::public), Some(genesis_key));
    assert!(world.device("bob@blue").order_key(GROUP).is_none(), "a member that is no admin holds no order key");
    // Promoted, Bob is handed the key with the announcement (and only he is).
    let rng = &mut world.rng;
    let outgoing = world.devices.get_mut(&address("alice@green")).unwrap().promote(GROUP, &address("bob@blue"), &mut world.directory, rng).unwrap();
    world.post("alice@green", outgoing);
    assert!(world.deliver_all().iter().all(|(_, result)| result.is_ok()));
    assert_eq!(world.device("bob@blue").order_key(GROUP).map(OrderKey::public), Some(genesis_key));
    assert!(world.device("carol@red").order_key(GROUP).is_none());
    let bobs_key = world.device("bob@blue").order_key(GROUP).unwrap().clone();
    // Alice removes Bob: the next state names a new key, which Bob never sees.
    let rng = &mut world.rng;
    let outgoing = world.devices.get_mut(&address("alice@green")).unwrap().remove_member(GROUP, &address("bob@blue"), &mut world.directory, rng).unwrap();
    world.post("alice@green", outgoing);
    world.deliver_all();
    let after = world.device("carol@red").group(GROUP).unwrap().clone();
    assert_ne!(*after.order_key(), genesis_key);
    assert_eq!(world.device("alice@green").order_key(GROUP).map(OrderKey::public), Some(*after.order_key()));
    // What Bob signs with the key he held orders nothing: an admin's own device relaying it
    // (Alice here, as a modified client would) is refused too.
    let mut members = after.members().clone();
    members.insert(address("erin@red"));
    let forged = after.next(members, after.admins().clone(), None).unwrap().sign(&bobs_key);
    announce(&mut world, "alice@green", &forged, &["carol@red"]);
    let results = world.deliver_all();
    assert!(matches!(&results[0].1, Err(ClientError::UnorderedChange { .. })), "{results:?}");
    assert_eq!(world.device("carol@red").group(GROUP).unwrap().hash(), after.hash());
}

#[test]
fn a_restored_admin_keeps_its_order_key_and_a_change_waiting_for_its_hub() {
    let mut world = founded(Suite::Aes256Gcm, 20);
    let rng = &mut world.rng;
    let alice = world.devices.get_mut(&address("alice@green")).unwrap();
    let change = switchboard_client_core::Change { remove: vec![address("dave@blue")], ..Default::default() };
    let order = alice.propose(GROUP, &change, rng).unwrap();
    let snapshot = alice.snapshot();
    let mut restored = switchboard_client_core::Device::restore(&snapshot).unwrap();
    assert_eq!(restored.order_key(GROUP).map(OrderKey::public), alice.order_key(GROUP).map(OrderKey::public));
    assert_eq!(restored.proposals().collect::<Vec<_>>(), vec![order.clone()]);
    // The hub's answer, after the restart, applies the change.
    let head = switchboard_wire::switchboard::GroupHead { group_id: GROUP.into(), epoch: order.epoch, state_hash: order.state_hash.clone() };
    let announcements = restored.ordered(&head, rng).unwrap();
    assert_eq!(announcements.len(), 3, "bob, carol, and dave who learns he is out");
    assert!(!restored.group(GROUP).unwrap().members().contains(&address("dave@blue")));
    // A snapshot whose order key is not the group's does not restore.
    let mut tampered = snapshot.clone();
    tampered.groups[0].order_secret = vec![9; 32];
    assert!(switchboard_client_core::Device::restore(&tampered).is_err());
}

#[test]
fn only_an_admins_later_change_starts_a_resync_and_one_the_hub_contradicts_is_dropped() {
    let mut world = founded(Suite::Aes256Gcm, 21);
    world.add_device("erin@red");
    let current = world.device("bob@blue").group(GROUP).unwrap().clone();
    // Carol (no admin) keeps a state two epochs ahead at Bob's: no resync on her word.
    let own = OrderKey::generate(&mut world.rng);
    let mut members = current.members().clone();
    members.insert(address("erin@red"));
    let planted = current.next(members, [address("carol@red")].into_iter().collect(), Some(&own)).unwrap().sign(&own);
    let mut control = planted.next(planted.members().clone(), planted.admins().clone(), None).unwrap().sign(&own).announcement();
    control.epoch = current.epoch() + 2;
    send_control(&mut world, "carol@red", control, &["bob@blue"]);
    world.deliver_all();
    assert!(world.device("bob@blue").behind().is_empty(), "a member's word started a resync");
    // An admin's later change does; the hub naming another state there drops it.
    let alices = changes_to(&mut world, "bob@blue", &[("erin@red", true), ("dave@blue", false)]);
    world.post("alice@green", alices[1].clone());
    world.deliver_all();
    let ahead = current.epoch() + 2;
    assert_eq!(world.device("bob@blue").behind(), vec![(GROUP.to_owned(), ahead)]);
    let rng = &mut world.rng;
    let other = switchboard_wire::switchboard::GroupHead { group_id: GROUP.into(), epoch: ahead, state_hash: vec![7; 32] };
    let bob = world.devices.get_mut(&address("bob@blue")).unwrap();
    assert!(bob.resync(ahead, &other, rng).unwrap().is_none());
    assert!(bob.behind().is_empty(), "a change the hub contradicts still holds a resync back");
    assert_eq!(bob.group(GROUP).unwrap().hash(), current.hash());
}
