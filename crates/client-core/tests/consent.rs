//! Requests, acceptance, blocks and reports at the endpoint, over the in-memory harness: real
//! endpoints and real relay cores.

use switchboard_client_core::Event;
use switchboard_client_core::endpoint::RequestFailed;
use switchboard_client_core::franking::Evidence;
use switchboard_harness::Harness;
use switchboard_wire::switchboard::ErrorCode;

fn online(h: &mut Harness, user: &str) -> usize {
    let d = h.add_device(user, 1, false);
    h.connect(d);
    h.settle();
    assert!(h.devices[d].endpoint.is_online());
    h.take_events(d);
    d
}

/// Every message `d` was shown: sender, content, whether a request, and its evidence.
fn shown(h: &mut Harness, d: usize) -> Vec<(String, Vec<u8>, bool, Evidence)> {
    h.take_events(d)
        .into_iter()
        .filter_map(|event| match event {
            Event::Message { from, content, request, evidence, .. } => Some((from.name().to_owned(), content, request, *evidence)),
            _ => None,
        })
        .collect()
}

fn send(h: &mut Harness, from: usize, to: &str, text: &str) {
    let text = text.as_bytes().to_vec();
    h.with(from, |e, now, rng| e.send(now, to, text, rng).unwrap());
    h.settle();
}

#[test]
fn a_first_message_from_a_stranger_is_a_request_until_accepted_or_answered() {
    let mut h = Harness::new(&["green", "blue"], 3);
    let alice = online(&mut h, "alice@green");
    let bob = online(&mut h, "bob@blue");
    let carol = online(&mut h, "carol@blue");
    send(&mut h, alice, "bob@blue", "hello");
    assert!(shown(&mut h, bob)[0].2, "a first message from a stranger is a request");
    send(&mut h, bob, "alice@green", "hi");
    assert!(!shown(&mut h, alice)[0].2, "she wrote first: his answer is no request");
    send(&mut h, alice, "bob@blue", "again");
    assert!(!shown(&mut h, bob)[0].2, "he answered: no request any more");
    send(&mut h, carol, "bob@blue", "buy now");
    assert!(shown(&mut h, bob)[0].2);
    h.with(bob, |e, now, rng| e.accept(now, "carol@blue", rng).unwrap());
    h.settle();
    send(&mut h, carol, "bob@blue", "thanks");
    assert!(!shown(&mut h, bob)[0].2, "accepted");
}

#[test]
fn a_blocked_user_reaches_nothing_and_an_unblocked_one_again() {
    let mut h = Harness::new(&["green", "blue"], 4);
    let mallory = online(&mut h, "mallory@green");
    let bob = online(&mut h, "bob@blue");
    send(&mut h, mallory, "bob@blue", "first");
    assert_eq!(shown(&mut h, bob).len(), 1);
    h.with(bob, |e, now, rng| e.block(now, "mallory@green", rng).unwrap());
    h.settle();
    send(&mut h, mallory, "bob@blue", "second");
    assert!(shown(&mut h, bob).is_empty(), "nothing from her once blocked");
    assert!(h.devices[mallory].endpoint.is_idle(), "her send was answered as any other");
    h.with(bob, |e, now, rng| e.unblock(now, "mallory@green", rng).unwrap());
    h.settle();
    send(&mut h, mallory, "bob@blue", "third");
    assert_eq!(shown(&mut h, bob).into_iter().map(|m| m.1).collect::<Vec<_>>(), vec![b"third".to_vec()]);
}

#[test]
fn a_report_is_verified_through_federation_and_an_altered_one_refused() {
    let mut h = Harness::new(&["green", "blue"], 5);
    let alice = online(&mut h, "alice@green");
    let bob = online(&mut h, "bob@blue");
    send(&mut h, alice, "bob@blue", "something vile");
    let (_, content, _, evidence) = shown(&mut h, bob).pop().expect("shown");
    let answers = |h: &mut Harness| -> Vec<Result<(), RequestFailed>> {
        h.take_events(bob).into_iter().filter_map(|event| match event {
            Event::ReportAnswered { result, .. } => Some(result),
            _ => None,
        }).collect()
    };
    h.with(bob, |e, now, _| e.report(now, &evidence, content.clone()));
    h.settle();
    assert_eq!(answers(&mut h), vec![Ok(())]);
    let mut altered = content.clone();
    altered[0] ^= 1;
    h.with(bob, |e, now, _| e.report(now, &evidence, altered));
    h.settle();
    assert_eq!(answers(&mut h), vec![Err(RequestFailed::Refused(ErrorCode::Forbidden))]);
}

#[test]
fn a_block_made_offline_reaches_the_relay_after_a_crash() {
    let mut h = Harness::new(&["green", "blue"], 5);
    let mallory = online(&mut h, "mallory@green");
    let bob = h.add_device("bob@blue", 1, true);
    h.connect(bob);
    h.settle();
    send(&mut h, mallory, "bob@blue", "first");
    assert_eq!(shown(&mut h, bob).len(), 1);
    // Bob blocks her while offline: the relay's copy of the block waits in his outbox, on disk.
    h.disconnect(bob);
    h.with(bob, |e, now, rng| e.block(now, "mallory@green", rng).unwrap());
    h.settle();
    h.crash(bob);
    h.connect(bob);
    h.advance(switchboard_client_core::endpoint::ACK_DELAY * 2);
    assert!(h.devices[bob].endpoint.is_idle(), "the block was sent and answered");
    // With Bob offline again, what she sends is dropped by his relay, not stored for him.
    h.disconnect(bob);
    send(&mut h, mallory, "bob@blue", "second");
    assert_eq!(h.mailbox_len("blue"), 0, "his relay holds the block");
}
