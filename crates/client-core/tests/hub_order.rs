//! A group's hub orders its changes: two admins' changes for one epoch never both stand, and a
//! device outside a group joins only a state the hub holds — shown over the in-memory harness
//! (real endpoints, real relay cores).

use std::time::Duration;

use switchboard_client_core::endpoint::{ACK_DELAY, DropReason, Member};
use switchboard_client_core::{ClientError, Event, OrderKey};
use switchboard_harness::Harness;
use switchboard_session::{ProtocolAddress, Suite};
use switchboard_wire::Message;
use switchboard_wire::switchboard::{PairwisePayload, pairwise_payload::Body};

const GROUP: &str = "g@green";
const TICK: Duration = Duration::from_millis(10);

fn online(h: &mut Harness, user: &str) -> usize {
    let d = h.add_device(user, 1, false);
    h.connect(d);
    h.settle();
    assert!(h.devices[d].endpoint.is_online());
    h.take_events(d);
    d
}

fn state(h: &Harness, d: usize) -> Option<[u8; 32]> {
    h.devices[d].endpoint.group(GROUP).map(|group| *group.hash())
}

fn device(user: &str) -> ProtocolAddress {
    ProtocolAddress::new(user, 1)
}

#[test]
fn two_admins_changes_for_one_epoch_are_ordered_by_the_hub_and_only_one_stands() {
    let mut h = Harness::new(&["green", "blue", "red"], 31);
    let alice = online(&mut h, "alice@green");
    let bob = online(&mut h, "bob@blue");
    let carol = online(&mut h, "carol@red");
    let dave = online(&mut h, "dave@blue");
    h.with(alice, |e, now, rng| e.create_group(now, GROUP, vec![Member::User("bob@blue".into())], Suite::Aes256Gcm, rng));
    h.settle();
    h.with(alice, |e, now, rng| e.promote(now, GROUP, device("bob@blue"), rng));
    h.settle();
    assert!(h.devices[bob].endpoint.group(GROUP).unwrap().admins().contains(&device("bob@blue")));
    // Both admins change the group at once, from the same state: Alice adds Carol, Bob adds Dave.
    h.with(alice, |e, now, rng| e.add_member(now, GROUP, Member::User("carol@red".into()), rng));
    h.with(bob, |e, now, rng| e.add_member(now, GROUP, Member::User("dave@blue".into()), rng));
    h.settle();
    h.advance(ACK_DELAY + TICK);
    // One of the two was ordered; the other admin heard its change was not.
    let not_ordered: Vec<usize> = [alice, bob]
        .into_iter()
        .filter(|d| {
            h.take_events(*d).iter().any(|e| matches!(e, Event::SendDropped { reason: DropReason::CouldNotSeal(ClientError::NotOrdered { epoch: 2, .. }) }))
        })
        .collect();
    assert_eq!(not_ordered.len(), 1, "exactly one admin's change lost");
    let (winner, joined, left_out) = if not_ordered == [bob] { (alice, carol, dave) } else { (bob, dave, carol) };
    // Every member holds the winner's state; the other newcomer is in no group and reads nothing.
    let winning = state(&h, winner).expect("the winner's state");
    for member in [alice, bob, joined] {
        assert_eq!(state(&h, member), Some(winning), "member {member} holds another state");
    }
    assert_eq!(state(&h, left_out), None);
    let mut events = h.take_events(alice);
    events.extend(h.take_events(bob));
    assert!(events.iter().all(|e| !matches!(e, Event::GroupForked { .. })), "{events:?}");
    h.with(winner, |e, now, rng| e.send_group(now, GROUP, b"after the race".to_vec(), rng)).unwrap();
    h.advance(ACK_DELAY + TICK);
    let read = |h: &mut Harness, d: usize| h.take_messages(d).into_iter().any(|(_, _, content)| content == b"after the race");
    assert!(read(&mut h, joined));
    assert!(!read(&mut h, left_out));
}

#[test]
fn a_member_cannot_make_a_device_outside_the_group_join_a_state_of_its_own() {
    // Found in review at stop 25: a member (not an admin) handed a device outside the group a
    // state naming itself admin; the device joined it, later refused the real admin's addition
    // as "not an admin", and its first message handed its key to whoever the fake state listed.
    let mut h = Harness::new(&["green", "blue", "red"], 32);
    let alice = online(&mut h, "alice@green");
    let bob = online(&mut h, "bob@blue");
    let carol = online(&mut h, "carol@red");
    let erin = online(&mut h, "erin@blue");
    let members = vec![Member::User("bob@blue".into()), Member::User("carol@red".into())];
    h.with(alice, |e, now, rng| e.create_group(now, GROUP, members, Suite::Aes256Gcm, rng));
    h.settle();
    // Carol tells Erin she joined a state of Carol's making (signed with a key of her own).
    let view = h.devices[carol].endpoint.group(GROUP).unwrap().clone();
    let mut forged_members = view.members().clone();
    forged_members.insert(device("erin@blue"));
    let own = h.with(carol, |_, _, rng| OrderKey::generate(rng));
    let forged = view.next(forged_members, [device("carol@red")].into_iter().collect(), Some(&own)).unwrap().sign(&own);
    let payload = PairwisePayload { body: Some(Body::GroupControl(forged.announcement())), ..Default::default() }.encode_to_vec();
    h.with(carol, |e, now, rng| e.send_payload(now, device("erin@blue"), payload, rng));
    h.settle();
    h.advance(ACK_DELAY + TICK);
    assert_eq!(state(&h, erin), None, "Erin joined a state no admin made");
    assert!(h.take_events(erin).iter().any(|e| matches!(e, Event::UnorderedChange { from, .. } if *from == device("carol@red"))));
    // Alice adds Erin for real: Erin joins Alice's state and reads the members, not Carol's list.
    h.with(alice, |e, now, rng| e.add_member(now, GROUP, Member::User("erin@blue".into()), rng));
    h.settle();
    h.advance(ACK_DELAY + TICK);
    assert_eq!(state(&h, erin), state(&h, alice));
    h.with(erin, |e, now, rng| e.send_group(now, GROUP, b"erin is in".to_vec(), rng)).unwrap();
    h.advance(ACK_DELAY + TICK);
    for member in [alice, bob, carol] {
        assert!(h.take_messages(member).into_iter().any(|(_, _, content)| content == b"erin is in"), "member {member} did not read Erin");
    }
}

#[test]
fn an_admin_cannot_show_a_member_a_change_the_hub_did_not_order() {
    // Found in review: members checked the signature but not the hub, so an admin (or a removed
    // one, with the key it held) could show a member a change it never ordered.
    let mut h = Harness::new(&["green", "blue", "red"], 33);
    let alice = online(&mut h, "alice@green");
    let bob = online(&mut h, "bob@blue");
    let carol = online(&mut h, "carol@red");
    let _erin = online(&mut h, "erin@blue");
    let members = vec![Member::User("bob@blue".into()), Member::User("carol@red".into())];
    h.with(alice, |e, now, rng| e.create_group(now, GROUP, members, Suite::Aes256Gcm, rng));
    h.settle();
    h.with(alice, |e, now, rng| e.promote(now, GROUP, device("bob@blue"), rng));
    h.settle();
    h.advance(ACK_DELAY + TICK);
    let before = state(&h, carol).unwrap();
    // Bob, an admin holding the group's order key, signs a change adding Erin and shows it to
    // Carol only, without asking the hub.
    let view = h.devices[bob].endpoint.group(GROUP).unwrap().clone();
    let key = h.devices[bob].endpoint.device().order_key(GROUP).unwrap().clone();
    let mut with_erin = view.members().clone();
    with_erin.insert(device("erin@blue"));
    let unordered = view.next(with_erin, view.admins().clone(), None).unwrap().sign(&key);
    let payload = PairwisePayload { body: Some(Body::GroupControl(unordered.announcement())), ..Default::default() }.encode_to_vec();
    h.with(bob, |e, now, rng| e.send_payload(now, device("carol@red"), payload, rng));
    h.settle();
    h.advance(ACK_DELAY + TICK);
    assert_eq!(state(&h, carol), Some(before), "Carol applied a change the hub never ordered");
    assert!(h.take_events(carol).iter().any(|e| matches!(e, Event::UnorderedChange { from, .. } if *from == device("bob@blue"))));
    // The group goes on: Alice's next change is ordered and reaches Carol.
    h.with(alice, |e, now, rng| e.remove_member(now, GROUP, Member::User("bob@blue".into()), rng));
    h.settle();
    h.advance(ACK_DELAY + TICK);
    assert_eq!(state(&h, carol), state(&h, alice));
    assert!(!h.devices[carol].endpoint.group(GROUP).unwrap().members().contains(&device("bob@blue")));
}

#[test]
fn a_restored_endpoint_sends_the_order_of_every_change_waiting_for_its_hub_and_no_other() {
    use rand::SeedableRng;
    use switchboard_client_core::{Endpoint, EndpointConfig};
    use switchboard_wire::switchboard::{ClientFrame, client_frame};
    let mut h = Harness::new(&["green", "blue"], 34);
    let alice = online(&mut h, "alice@green");
    let _bob = online(&mut h, "bob@blue");
    h.with(alice, |e, now, rng| e.create_group(now, GROUP, vec![Member::User("bob@blue".into())], Suite::Aes256Gcm, rng));
    h.settle();
    // Alice proposes a change; her snapshot holds the proposal, her outbox its order.
    h.devices[alice].hold_frames = true;
    h.with(alice, |e, now, rng| e.promote(now, GROUP, device("bob@blue"), rng));
    let endpoint = &h.devices[alice].endpoint;
    let (snapshot, outbox) = (endpoint.snapshot(), endpoint.outbox_frames());
    let is_order = |bytes: &Vec<u8>| {
        let frame = ClientFrame::decode(bytes.as_slice()).unwrap();
        matches!(frame.body, Some(client_frame::Body::OrderChange(_)))
    };
    assert_eq!(outbox.iter().filter(|(_, bytes)| is_order(bytes)).count(), 1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    // Written apart, the two may disagree: an outbox without the order gets it back…
    let without: Vec<_> = outbox.iter().filter(|(_, bytes)| !is_order(bytes)).cloned().collect();
    let restored = Endpoint::restore(&snapshot, [], without, EndpointConfig::default(), &mut rng).unwrap();
    assert_eq!(restored.outbox_frames().iter().filter(|(_, bytes)| is_order(bytes)).count(), 1);
    // …and an order whose proposal is gone is not sent.
    let mut forgotten = snapshot.clone();
    forgotten.proposals.clear();
    let restored = Endpoint::restore(&forgotten, [], outbox, EndpointConfig::default(), &mut rng).unwrap();
    assert_eq!(restored.outbox_frames().iter().filter(|(_, bytes)| is_order(bytes)).count(), 0);
}

#[test]
fn a_member_that_missed_a_change_for_good_catches_up_on_the_hubs_word_and_rotates() {
    use switchboard_client_core::endpoint::RESYNC_AFTER;
    let mut h = Harness::new(&["green", "blue", "red"], 35);
    let alice = online(&mut h, "alice@green");
    let bob = online(&mut h, "bob@blue");
    let carol = online(&mut h, "carol@red");
    let dave = online(&mut h, "dave@blue");
    let members = vec![Member::User("bob@blue".into()), Member::User("carol@red".into())];
    h.with(alice, |e, now, rng| e.create_group(now, GROUP, members, Suite::Aes256Gcm, rng));
    h.settle();
    h.with(bob, |e, now, rng| e.send_group(now, GROUP, b"before".to_vec(), rng)).unwrap();
    h.advance(ACK_DELAY + TICK);
    assert!(h.take_messages(carol).into_iter().any(|(_, _, content)| content == b"before"));
    // Carol's removal never reaches Bob (lost on the way); Dave's addition after it does.
    h.devices[bob].hold_frames = true;
    h.with(alice, |e, now, rng| e.remove_member(now, GROUP, Member::User("carol@red".into()), rng));
    h.settle();
    let lost = h.devices[bob].held.len();
    h.with(alice, |e, now, rng| e.add_member(now, GROUP, Member::User("dave@blue".into()), rng));
    h.settle();
    let arrived = h.devices[bob].held.len();
    h.devices[bob].hold_frames = false;
    h.release_held(bob, lost..arrived);
    h.settle();
    assert_eq!(h.devices[bob].endpoint.group(GROUP).unwrap().epoch(), 0, "the addition waits for the removal");
    // After a while Bob asks the hub, takes the state it ordered, and rotates his key.
    h.advance(RESYNC_AFTER + RESYNC_AFTER / 2);
    h.settle();
    assert_eq!(state(&h, bob), state(&h, alice));
    assert_eq!(h.devices[bob].endpoint.stats().resyncs, 1);
    h.with(bob, |e, now, rng| e.send_group(now, GROUP, b"after".to_vec(), rng)).unwrap();
    h.advance(ACK_DELAY + TICK);
    let read = |h: &mut Harness, d: usize| h.take_messages(d).into_iter().any(|(_, _, content)| content == b"after");
    assert!(read(&mut h, dave) && read(&mut h, alice));
    assert!(!read(&mut h, carol), "Carol, removed, read Bob's message");
}

#[test]
fn an_old_state_offered_as_a_join_is_not_joined() {
    // Found in review: the hub vouches for the last 64 states, so a join must name its head.
    let mut h = Harness::new(&["green", "blue", "red"], 36);
    let alice = online(&mut h, "alice@green");
    let _bob = online(&mut h, "bob@blue");
    let carol = online(&mut h, "carol@red");
    h.with(alice, |e, now, rng| e.create_group(now, GROUP, vec![Member::User("bob@blue".into())], Suite::Aes256Gcm, rng));
    h.settle();
    h.with(alice, |e, now, rng| e.add_member(now, GROUP, Member::User("carol@red".into()), rng));
    h.settle();
    h.advance(ACK_DELAY + TICK);
    let with_carol = h.devices[alice].endpoint.group(GROUP).unwrap().announcement();
    h.with(alice, |e, now, rng| e.remove_member(now, GROUP, Member::User("carol@red".into()), rng));
    h.settle();
    h.advance(ACK_DELAY + TICK);
    assert_eq!(state(&h, carol), None);
    // The state that had Carol in it, signed and ordered once, is offered to her again.
    let payload = PairwisePayload { body: Some(Body::GroupControl(with_carol)), ..Default::default() }.encode_to_vec();
    h.with(alice, |e, now, rng| e.send_payload(now, device("carol@red"), payload, rng));
    h.settle();
    h.advance(ACK_DELAY + TICK);
    assert_eq!(state(&h, carol), None, "Carol joined a state the group had left behind");
}
