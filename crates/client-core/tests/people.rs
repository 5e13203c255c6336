//! One person on several apps, over the in-memory harness (real endpoints, real relay cores):
//! receive everywhere, reply anywhere, her other devices in sync, links she chose to hide carried
//! on by her own devices, revocation.

use switchboard_client_core::Event;
use switchboard_harness::Harness;
use switchboard_session::ProtocolAddress;
use switchboard_wire::switchboard::Visibility;

fn online(h: &mut Harness, user: &str) -> usize {
    let d = h.add_device(user, 1, true);
    h.connect(d);
    h.settle();
    assert!(h.devices[d].endpoint.is_online(), "{user} did not come online");
    h.take_events(d);
    d
}

/// What one device showed: messages (sender, text) and transcripts (writer, carried by, text).
#[derive(Debug, Default, PartialEq)]
struct Shown {
    messages: Vec<(String, String)>,
    synced: Vec<(String, String, String)>,
}

fn shown(h: &mut Harness, d: usize) -> Shown {
    let mut shown = Shown::default();
    for event in h.take_events(d) {
        match event {
            Event::Message { from, content, .. } => shown.messages.push((from.to_string(), String::from_utf8(content).unwrap())),
            Event::Synced { from, carried_by, content, .. } => {
                shown.synced.push((from.to_string(), carried_by.to_string(), String::from_utf8(content).unwrap()))
            }
            _ => {}
        }
    }
    shown
}

fn send(h: &mut Harness, d: usize, to: &str, text: &str) {
    h.with(d, |e, now, rng| e.send(now, to, text.as_bytes().to_vec(), rng).unwrap());
    h.settle();
}

/// Alice on green and blue, linked (blue shown to `blue_visibility`), and bob on red.
fn alice_and_bob(blue_visibility: Visibility) -> (Harness, usize, usize, usize) {
    let mut h = Harness::new(&["green", "blue", "red"], 14);
    let green = online(&mut h, "alice@green");
    let blue = online(&mut h, "alice@blue");
    let bob = online(&mut h, "bob@red");
    h.with(green, |e, now, rng| e.become_person(now, Visibility::Public, rng).unwrap());
    let invitation = h.devices[green].endpoint.person_invitation().unwrap();
    h.with(blue, |e, now, rng| e.join_person(now, &invitation, blue_visibility, rng).unwrap());
    h.settle();
    assert!(h.take_events(green).contains(&Event::LinksChanged), "green takes the record blue signed");
    let record = |d: usize, h: &Harness| h.devices[d].endpoint.device().person().unwrap().record().clone();
    assert_eq!(record(green, &h), record(blue, &h));
    assert_eq!(record(green, &h).accounts().len(), 2);
    (h, green, blue, bob)
}

fn address(user: &str) -> String {
    ProtocolAddress::new(user.to_owned(), 1).to_string()
}

#[test]
fn she_receives_on_both_apps_replies_from_the_second_and_her_first_device_shows_the_reply() {
    let (mut h, green, blue, bob) = alice_and_bob(Visibility::Contacts);
    // Bob knows only alice@green: her green device carries the message on to blue.
    send(&mut h, bob, "alice@green", "hello green");
    assert_eq!(shown(&mut h, green).messages, [(address("bob@red"), "hello green".into())]);
    assert_eq!(shown(&mut h, blue).synced, [(address("bob@red"), address("alice@green"), "hello green".into())]);
    // Bob learns nothing of her links from writing to her: only people she writes to do.
    assert!(h.devices[bob].endpoint.device().people().is_empty());
    send(&mut h, green, "bob@red", "hi bob");
    assert_eq!(shown(&mut h, blue).synced, [(address("alice@green"), address("alice@green"), "hi bob".into())]);
    // Green introduced her to bob: he now knows both accounts, and one safety number for her.
    let events = h.take_events(bob);
    assert!(events.iter().any(|e| matches!(e, Event::PersonKnown { .. })), "{events:?}");
    let person = h.devices[bob].endpoint.device().people().person_of("alice@green").unwrap().clone();
    assert_eq!(person.accounts().len(), 2);

    // Now his messages reach both apps directly, each exactly once, and nothing is carried on.
    send(&mut h, bob, "alice@green", "hello both");
    let (on_green, on_blue) = (shown(&mut h, green), shown(&mut h, blue));
    assert_eq!(on_green, Shown { messages: vec![(address("bob@red"), "hello both".into())], synced: vec![] });
    assert_eq!(on_blue, Shown { messages: vec![(address("bob@red"), "hello both".into())], synced: vec![] });

    // She replies from blue; bob reads it from alice@blue, and her green device shows her reply.
    send(&mut h, blue, "bob@red", "reply from blue");
    assert_eq!(shown(&mut h, bob).messages, [(address("alice@blue"), "reply from blue".into())]);
    assert_eq!(shown(&mut h, green).synced, [(address("alice@blue"), address("alice@blue"), "reply from blue".into())]);
    assert_eq!(h.devices[blue].endpoint.stats().transcripts_sent, 1);
}

#[test]
fn a_link_shown_to_nobody_stays_hidden_and_her_devices_still_receive_everything() {
    let (mut h, green, blue, bob) = alice_and_bob(Visibility::Nobody);
    send(&mut h, bob, "alice@green", "zero");
    send(&mut h, green, "bob@red", "hi");
    h.take_events(green);
    h.take_events(blue);
    send(&mut h, bob, "alice@green", "one");
    send(&mut h, bob, "alice@green", "two");
    let people = h.devices[bob].endpoint.device().people();
    assert!(people.person_of("alice@blue").is_none(), "bob never learns the hidden link");
    assert_eq!(people.person_of("alice@green").unwrap().accounts().len(), 1);
    assert_eq!(shown(&mut h, green).messages.len(), 2);
    let synced: Vec<String> = shown(&mut h, blue).synced.into_iter().map(|(_, _, text)| text).collect();
    assert_eq!(synced, ["one", "two"], "carried on by her own devices, each once");
}

#[test]
fn a_revoked_link_receives_nothing_more_as_hers() {
    let (mut h, green, blue, bob) = alice_and_bob(Visibility::Contacts);
    send(&mut h, bob, "alice@green", "before");
    send(&mut h, green, "bob@red", "hi");
    assert_eq!(h.devices[bob].endpoint.device().people().person_of("alice@green").unwrap().accounts().len(), 2);
    h.take_events(green);
    h.take_events(blue);
    h.with(green, |e, now, rng| e.unlink(now, "alice@blue", rng).unwrap());
    h.settle();
    assert_eq!(h.devices[bob].endpoint.device().people().person_of("alice@green").unwrap().accounts().len(), 1);
    assert!(h.devices[blue].endpoint.device().person().is_none(), "the unlinked device belongs to her no more");
    send(&mut h, bob, "alice@green", "after");
    assert_eq!(shown(&mut h, green).messages, [(address("bob@red"), "after".into())]);
    assert_eq!(shown(&mut h, blue).messages, [], "neither sent to it nor carried on");
    assert_eq!(shown(&mut h, blue).synced, []);
}

#[test]
fn one_safety_number_for_the_person_on_both_sides() {
    let (mut h, green, blue, bob) = alice_and_bob(Visibility::Contacts);
    h.with(bob, |e, now, rng| e.become_person(now, Visibility::Public, rng).unwrap());
    send(&mut h, bob, "alice@green", "hi");
    send(&mut h, green, "bob@red", "hi back");
    // Bob's next message reaches blue too, with his record.
    send(&mut h, bob, "alice@green", "again");
    let from_bob = h.devices[bob].endpoint.person_safety_number("alice@green").unwrap();
    assert_eq!(Some(&from_bob), h.devices[green].endpoint.person_safety_number("bob@red").as_ref());
    assert_eq!(Some(&from_bob), h.devices[blue].endpoint.person_safety_number("bob@red").as_ref());
    // Blue writes too: bob then holds her record from blue's own device, with the same key.
    send(&mut h, blue, "bob@red", "from blue");
    assert_eq!(from_bob, h.devices[bob].endpoint.person_safety_number("alice@blue").unwrap());
}

#[test]
fn the_person_and_the_people_a_device_knows_survive_a_crash() {
    let (mut h, green, blue, bob) = alice_and_bob(Visibility::Nobody);
    send(&mut h, bob, "alice@green", "before");
    send(&mut h, green, "bob@red", "hi");
    h.take_events(green);
    h.take_events(blue);
    let record = h.devices[green].endpoint.device().person().unwrap().record().clone();
    h.crash(green);
    h.connect(green);
    h.settle();
    assert_eq!(h.devices[green].endpoint.device().person().unwrap().record(), &record);
    send(&mut h, bob, "alice@green", "after");
    assert_eq!(shown(&mut h, green).messages.len(), 1);
    assert_eq!(shown(&mut h, blue).synced.len(), 1, "still carried on after the restart");
    h.crash(bob);
    h.connect(bob);
    h.settle();
    assert!(h.devices[bob].endpoint.device().people().person_of("alice@green").is_some());
}

#[test]
fn with_two_devices_on_one_account_one_of_them_carries_each_message_on() {
    let (mut h, green, blue, bob) = alice_and_bob(Visibility::Nobody);
    let green2 = h.add_device("alice@green", 2, true);
    h.with(green, |e, now, _| e.link_device(now, 2)).unwrap();
    h.settle();
    let credential = h.take_events(green).into_iter().find_map(|e| match e {
        Event::DeviceLinked { credential, .. } => Some(credential),
        _ => None,
    });
    h.with(green2, |e, _, _| e.set_credential(credential.unwrap()));
    h.connect(green2);
    h.settle();
    let invitation = h.devices[green].endpoint.person_invitation().unwrap();
    h.with(green2, |e, now, rng| e.join_person(now, &invitation, Visibility::Public, rng).unwrap());
    h.settle();
    for d in [green, blue] {
        assert!(h.devices[d].endpoint.device().person().unwrap().owns(&ProtocolAddress::new("alice@green".to_owned(), 2)));
    }
    h.take_events(green);
    h.take_events(blue);
    send(&mut h, bob, "alice@green", "to green");
    assert_eq!(shown(&mut h, green).messages.len(), 1);
    assert_eq!(shown(&mut h, green2).messages.len(), 1);
    assert_eq!(shown(&mut h, blue).synced.len(), 1, "one copy, not one per device of green");
    // What green/2 sends shows on green/1 and on blue, once each.
    send(&mut h, green2, "bob@red", "from green 2");
    assert_eq!(shown(&mut h, green).synced.len(), 1);
    assert_eq!(shown(&mut h, blue).synced.len(), 1);
}

/// Mallory signs a record of her own person that lists alice@blue with a key of hers, and sends
/// it to bob from her real device. Bob keeps it for mallory@red only: his messages to alice@blue
/// go to alice's real device alone, and his messages to mallory go to no device of alice's.
#[test]
fn a_record_that_claims_someone_elses_account_diverts_nothing() {
    use switchboard_client_core::person::{Audience, Person};
    use switchboard_session::IdentityKeyPair;
    use switchboard_wire::Message;
    use switchboard_wire::switchboard::{PairwisePayload, pairwise_payload::Body};

    let (mut h, _green, blue, bob) = alice_and_bob(Visibility::Public);
    let mallory = online(&mut h, "mallory@red");
    send(&mut h, mallory, "bob@red", "hi bob");
    send(&mut h, bob, "mallory@red", "hi mallory");
    send(&mut h, bob, "alice@blue", "hi alice");
    h.take_events(blue);
    h.take_events(mallory);

    let mallory_identity = IdentityKeyPair::deserialize(&h.devices[mallory].endpoint.snapshot().identity_key_pair).unwrap();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
    let mallory_address = ProtocolAddress::new("mallory@red".to_owned(), 1);
    let mut forged = Person::new(&mallory_address, &mallory_identity, Visibility::Public, &mut rng);
    forged.put_device(&ProtocolAddress::new("alice@blue".to_owned(), 1), &IdentityKeyPair::generate(&mut rng), Visibility::Public, &mut rng).unwrap();
    let payload = PairwisePayload { body: Some(Body::Person(forged.view(Audience::Public, &mut rng))), ..Default::default() };
    let bob_address = ProtocolAddress::new("bob@red".to_owned(), 1);
    h.with(mallory, |e, now, rng| e.send_payload(now, bob_address, payload.encode_to_vec(), rng));
    h.settle();
    let people = h.devices[bob].endpoint.device().people();
    assert!(people.person_of("mallory@red").is_some());
    assert!(people.person_of("alice@blue").is_none(), "a claim counts only from the account's own device");

    send(&mut h, bob, "alice@blue", "for alice");
    send(&mut h, bob, "mallory@red", "for mallory");
    let texts = |shown: Shown| shown.messages.into_iter().map(|(_, text)| text).collect::<Vec<_>>();
    assert_eq!(texts(shown(&mut h, blue)), ["for alice"]);
    assert_eq!(texts(shown(&mut h, mallory)), ["for mallory"]);

    // Nor does it make a block of her a block of the account she claims (found in review).
    h.take_events(bob);
    h.with(bob, |e, now, rng| e.block(now, "mallory@red", rng).unwrap());
    h.settle();
    assert!(h.devices[bob].endpoint.is_blocked("mallory@red"));
    assert!(!h.devices[bob].endpoint.is_blocked("alice@blue"));
    send(&mut h, blue, "bob@red", "still here");
    assert_eq!(texts(shown(&mut h, bob)), ["still here"]);
}

#[test]
fn a_lookup_of_one_address_gives_the_links_she_made_public_and_only_those() {
    use switchboard_client_core::endpoint::RequestFailed;
    use switchboard_client_core::endpoint::people::LookupFailed;
    use switchboard_wire::switchboard::ErrorCode;

    let (mut h, green, blue, bob) = alice_and_bob(Visibility::Public);
    let carol = online(&mut h, "carol@red");
    h.with(green, |e, now, rng| e.become_person(now, Visibility::Public, rng).unwrap_err());
    let looked_up = |h: &mut Harness, d: usize, user: &str| {
        let request = h.with(d, |e, now, _| e.lookup_person(now, user).unwrap());
        h.settle();
        h.take_events(d).into_iter().find_map(|event| match event {
            Event::PersonLookedUp { request: r, result, .. } if r == request => Some(result),
            _ => None,
        })
    };
    // Carol never talked to alice: one exact address gives her both public accounts, checked
    // against the devices and keys the relays serve.
    assert_eq!(looked_up(&mut h, carol, "alice@blue"), Some(Ok(vec!["alice@green".to_owned(), "alice@blue".to_owned()])));
    assert!(h.devices[carol].endpoint.device().people().person_of("alice@blue").is_some());
    send(&mut h, carol, "alice@blue", "found you");
    assert_eq!(shown(&mut h, green).messages, [(address("carol@red"), "found you".into())]);
    assert_eq!(shown(&mut h, blue).messages, [(address("carol@red"), "found you".into())]);
    // No record for an address that published none; no answer for a malformed one.
    assert_eq!(looked_up(&mut h, carol, "bob@red"), Some(Err(LookupFailed::Request(RequestFailed::Refused(ErrorCode::UnknownRecipient)))));
    assert!(h.with(carol, |e, now, _| e.lookup_person(now, "alice")).is_err());

    // Blue goes back to contacts only: the public record no longer names it.
    h.with(blue, |e, now, rng| e.set_link_visibility(now, "alice@blue", Visibility::Contacts, Vec::new(), rng).unwrap());
    h.settle();
    let dave = online(&mut h, "dave@red");
    assert_eq!(looked_up(&mut h, dave, "alice@green"), Some(Ok(vec!["alice@green".to_owned()])));
    // And alice@blue's relay publishes nothing for it any more.
    assert_eq!(looked_up(&mut h, dave, "alice@blue"), Some(Err(LookupFailed::Request(RequestFailed::Refused(ErrorCode::UnknownRecipient)))));
    let _ = bob;
}

/// An account she shows to nobody never sends her record: that it came from that account would
/// show the link. Bob, written to from the hidden account, learns no record at all.
#[test]
fn a_hidden_account_writing_to_someone_reveals_no_link() {
    let (mut h, _green, blue, bob) = alice_and_bob(Visibility::Nobody);
    send(&mut h, blue, "bob@red", "from the hidden account");
    assert_eq!(shown(&mut h, bob).messages, [(address("alice@blue"), "from the hidden account".into())]);
    assert!(h.devices[bob].endpoint.device().people().is_empty(), "no record from a hidden account");
    assert_eq!(h.devices[bob].endpoint.stats().refused, 0);
}
