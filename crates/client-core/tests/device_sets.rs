//! A sender whose list of someone's devices is out of date: the relay that holds the user says
//! which devices changed, the sender seals the message again for the devices the user has now,
//! and every device reads it exactly once (in one app and across apps).

use switchboard_client_core::Event;
use switchboard_harness::Harness;
use switchboard_wire::switchboard::client_frame;

fn online(h: &mut Harness, user: &str) -> usize {
    let d = h.add_device(user, 1, true);
    h.connect(d);
    h.settle();
    h.take_events(d);
    d
}

fn texts(h: &mut Harness, d: usize) -> Vec<String> {
    h.take_messages(d).into_iter().map(|(_, _, content)| String::from_utf8(content).unwrap()).collect()
}

/// Links device 2 of `first`'s user and brings it online.
fn second_device(h: &mut Harness, first: usize, user: &str) -> usize {
    let second = h.add_device(user, 2, true);
    h.with(first, |e, now, _| e.link_device(now, 2)).unwrap();
    h.settle();
    let credential = h.take_events(first).into_iter().find_map(|e| match e {
        Event::DeviceLinked { credential, .. } => Some(credential),
        _ => None,
    });
    h.with(second, |e, _, _| e.set_credential(credential.expect("linked")));
    h.connect(second);
    h.settle();
    second
}

fn check(apps: &[&str], bob_user: &str) {
    let mut h = Harness::new(apps, 21);
    let alice = online(&mut h, "alice@green");
    let bob = online(&mut h, bob_user);
    h.with(bob, |e, now, rng| e.send(now, "alice@green", b"first".to_vec(), rng).unwrap());
    h.settle();
    assert_eq!(texts(&mut h, alice), ["first"]);
    // Alice adds a device; bob still knows one.
    let alice2 = second_device(&mut h, alice, "alice@green");
    let frames_before = h.devices[bob].frames.len();
    h.with(bob, |e, now, rng| e.send(now, "alice@green", b"second".to_vec(), rng).unwrap());
    h.settle();
    assert_eq!(texts(&mut h, alice), ["second"]);
    assert_eq!(texts(&mut h, alice2), ["second"], "the device bob did not know of reads it too");
    // Sent twice: once for the one device bob knew (refused whole, nothing stored), once for both.
    let sends: Vec<usize> = h.devices[bob].frames[frames_before..]
        .iter()
        .filter_map(|frame| match &frame.body {
            Some(client_frame::Body::SendToUser(send)) => Some(send.envelopes.len()),
            _ => None,
        })
        .collect();
    assert_eq!(sends, [1, 2]);
    let stats = h.devices[bob].endpoint.stats();
    assert_eq!(stats.sends_dropped, 0);
    // From now on one send reaches both.
    h.with(bob, |e, now, rng| e.send(now, "alice@green", b"third".to_vec(), rng).unwrap());
    h.settle();
    assert_eq!((texts(&mut h, alice), texts(&mut h, alice2)), (vec!["third".to_owned()], vec!["third".to_owned()]));
}

#[test]
fn a_stale_device_list_is_corrected_by_the_relay_in_one_app() {
    check(&["green"], "bob@green");
}

#[test]
fn a_stale_device_list_is_corrected_by_the_recipients_relay_across_apps() {
    check(&["green", "blue"], "bob@blue");
}

/// While the user's app cannot be reached, its relay cannot check the devices: the envelopes go
/// one by one, kept by the sender's relay until the link comes back, so the message does not wait
/// on the sender's device (which may be gone by then).
#[test]
fn during_another_apps_outage_the_senders_relay_keeps_the_message() {
    let mut h = Harness::new(&["green", "blue"], 22);
    let alice = online(&mut h, "alice@green");
    let bob = online(&mut h, "bob@blue");
    h.with(alice, |e, now, rng| e.send(now, "bob@blue", b"first".to_vec(), rng).unwrap());
    h.settle();
    assert_eq!(texts(&mut h, bob), ["first"]);
    h.cut("green", "blue");
    h.with(alice, |e, now, rng| e.send(now, "bob@blue", b"during the outage".to_vec(), rng).unwrap());
    h.settle();
    assert_eq!(h.devices[alice].endpoint.outbox_len(), 0, "taken by alice's relay");
    h.disconnect(alice);
    h.restore("green", "blue");
    h.settle();
    assert_eq!(texts(&mut h, bob), ["during the outage"]);
    assert_eq!(h.devices[alice].endpoint.stats().sends_dropped, 0);
}

/// The relay stored a message but its answer was lost; meanwhile the user added a device. The
/// resend is refused as naming too few devices: the envelope already stored goes again under its
/// id (kept once), and only the new device gets a new one — each device reads the message once.
#[test]
fn a_resend_after_a_lost_answer_and_a_new_device_shows_the_message_once_everywhere() {
    let mut h = Harness::new(&["green"], 23);
    let alice = online(&mut h, "alice@green");
    let bob = online(&mut h, "bob@green");
    h.with(bob, |e, now, rng| e.send(now, "alice@green", b"first".to_vec(), rng).unwrap());
    h.settle();
    assert_eq!(texts(&mut h, alice), ["first"]);
    // Bob's answer from the relay never reaches him.
    h.devices[bob].hold_frames = true;
    h.with(bob, |e, now, rng| e.send(now, "alice@green", b"once".to_vec(), rng).unwrap());
    h.settle();
    assert_eq!(texts(&mut h, alice), ["once"]);
    let alice2 = second_device(&mut h, alice, "alice@green");
    h.disconnect(bob);
    h.devices[bob].hold_frames = false;
    h.connect(bob);
    h.settle();
    assert_eq!(texts(&mut h, alice), Vec::<String>::new(), "not shown twice");
    assert_eq!(texts(&mut h, alice2), ["once"]);
    assert_eq!(h.devices[bob].endpoint.outbox_len(), 0);
    assert_eq!(h.devices[bob].endpoint.stats().sends_dropped, 0);
}
