//! Consent, blocking and abuse reports over three relay processes on loopback: a block by one
//! address covers every account of the person behind it, on two apps, at the blocker's relay;
//! a report of a message from another app is verified through federation, and a forged one is
//! refused.

use std::time::{Duration, Instant};

use switchboard_client::endpoint::RequestFailed;
use switchboard_client::{ChatClient, ChatError, Event};
use switchboard_session::ProtocolAddress;
use switchboard_wire::message_id::MessageId;
use switchboard_wire::switchboard::{Content, ErrorCode, Visibility, content};
use switchboard_wire::{Message, decode, limits};

mod federation;

use federation::{Federation, text, texts};

const QUIET: Duration = Duration::from_millis(200);
/// How long a message may take to arrive on a loaded machine before the test gives up.
const DELIVERY_LIMIT: Duration = Duration::from_secs(60);

fn seeded(seed: u64) -> rand::rngs::StdRng {
    <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed)
}

async fn register(federation: &Federation, user: &str, seed: u64) -> ChatClient {
    let app = user.split_once('@').unwrap().1;
    ChatClient::register(federation.relay(app), user, 1, seeded(seed)).await.unwrap_or_else(|error| panic!("registering {user}: {error}"))
}

/// Polls `client` until the texts of the messages it received include every one of `expected`
/// (or panics after [`DELIVERY_LIMIT`], naming `what`); returns every event seen.
async fn receive(client: &mut ChatClient, expected: &[&str], what: &str) -> Vec<Event> {
    let deadline = Instant::now() + DELIVERY_LIMIT;
    let mut seen = Vec::new();
    loop {
        seen.extend(client.poll(QUIET).await.unwrap());
        let arrived = texts(&seen);
        if expected.iter().all(|text| arrived.iter().any(|arrived| arrived == text)) {
            return seen;
        }
        assert!(Instant::now() < deadline, "{} never received {what} ({expected:?}); it got {arrived:?}", client.user());
        tokio::time::sleep(QUIET).await;
    }
}

/// Polls `client` until nothing comes for a while, and returns what came.
async fn settle(client: &mut ChatClient) -> Vec<Event> {
    let deadline = Instant::now() + DELIVERY_LIMIT;
    let mut seen = Vec::new();
    loop {
        let events = client.poll(QUIET).await.unwrap();
        let quiet = events.is_empty() && client.outbox_len() == 0;
        seen.extend(events);
        if quiet || Instant::now() > deadline {
            return seen;
        }
    }
}

/// The id of the message among `events` whose text is `body`.
fn id_of(events: &[Event], body: &str) -> MessageId {
    events
        .iter()
        .find_map(|event| match event {
            Event::Message { id, content: Content { body: Some(content::Body::Text(t)), .. }, .. } if t.text == body => *id,
            _ => None,
        })
        .unwrap_or_else(|| panic!("no message {body:?} with an id among {events:#?}"))
}

/// Sends `body` from `client` to `to`, and checks the sender learns nothing but that its relay
/// took it: no error, nothing left to send, nothing given up.
async fn send_unaware(client: &mut ChatClient, to: &str, body: &str) {
    let dropped = client.stats().sends_dropped;
    client.send(to, text(body)).await.unwrap_or_else(|error| panic!("{} sending {body:?}: {error}", client.user()));
    let events = settle(client).await;
    assert!(!events.iter().any(|event| matches!(event, Event::SendDropped { .. })), "{} heard of a drop: {events:#?}", client.user());
    assert_eq!(client.stats().sends_dropped, dropped, "{} gave up a send", client.user());
    assert_eq!(client.outbox_len(), 0, "{}'s relay took everything", client.user());
}

/// Mallory, one person on green and blue, writes to Bob (on red) from green: he sees a request,
/// and her record. He blocks her by that one address; then nothing she sends from either account
/// reaches his device (his relay drops it, answering her as if stored), while Carol's and Dave's
/// messages, sent after hers through the same two apps, do. Once he unblocks her, hers arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_covers_a_persons_addresses_on_two_apps() {
    let federation = Federation::new();
    let mut mallory_green = register(&federation, "mallory@green", 81).await;
    let mut mallory_blue = register(&federation, "mallory@blue", 82).await;
    let mut bob = register(&federation, "bob@red", 83).await;
    let mut carol = register(&federation, "carol@green", 84).await;
    let mut dave = register(&federation, "dave@blue", 85).await;
    mallory_green.become_person(Visibility::Public).await.unwrap();
    let invitation = mallory_green.person_invitation().unwrap();
    mallory_blue.join_person(&invitation, Visibility::Public).await.unwrap();
    let deadline = Instant::now() + DELIVERY_LIMIT;
    while mallory_green.person_record().unwrap().accounts().len() < 2 {
        assert!(Instant::now() < deadline, "mallory@green never took the record mallory@blue signed");
        settle(&mut mallory_blue).await;
        settle(&mut mallory_green).await;
    }

    // A request from green, with her record: bob knows both of her accounts.
    mallory_green.send("bob@red", text("hello bob")).await.unwrap();
    let seen = receive(&mut bob, &["hello bob"], "mallory's first message").await;
    let first = id_of(&seen, "hello bob");
    assert!(bob.received(&first).expect("kept to report").request, "a message from a stranger is a request");
    let accounts: Vec<String> = bob.person_of("mallory@green").expect("her record came with it").accounts().iter().map(|a| a.user.clone()).collect();
    assert!(accounts.contains(&"mallory@blue".to_owned()), "{accounts:?}");

    // Blocked by one address: both go quiet, and she learns nothing.
    bob.block("mallory@green").await.unwrap();
    let before = bob.stats();
    send_unaware(&mut mallory_green, "bob@red", "blocked from green").await;
    send_unaware(&mut mallory_blue, "bob@red", "blocked from blue").await;
    // The same paths (green → red, blue → red) still carry everyone else's, after hers.
    carol.send("bob@red", text("from carol")).await.unwrap();
    dave.send("bob@red", text("from dave")).await.unwrap();
    let mut seen = receive(&mut bob, &["from carol", "from dave"], "the messages sent after mallory's").await;
    seen.extend(settle(&mut bob).await);
    let mut arrived = texts(&seen);
    arrived.sort();
    assert_eq!(arrived, ["from carol", "from dave"], "nothing from mallory on either account");
    let after = bob.stats();
    assert_eq!(after.received - before.received, 2);
    assert_eq!(after.blocked_dropped, before.blocked_dropped, "his relay dropped hers: none reached his device");

    // Unblocked: she reaches him again, from both.
    bob.unblock("mallory@green").await.unwrap();
    mallory_green.send("bob@red", text("again from green")).await.unwrap();
    mallory_blue.send("bob@red", text("again from blue")).await.unwrap();
    receive(&mut bob, &["again from green", "again from blue"], "mallory's messages after the unblock").await;
}

/// Alice (green) writes to Bob (blue); Bob reports it to blue, which verifies it with green:
/// verified. The same evidence with other content, or naming another sender, is refused, and so
/// is Bob's evidence reported by someone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_of_a_message_from_another_app_is_verified_through_federation() {
    let federation = Federation::new();
    let mut alice = register(&federation, "alice@green", 91).await;
    let mut bob = register(&federation, "bob@blue", 92).await;
    let _carol = register(&federation, "carol@green", 93).await;
    let mut eve = register(&federation, "eve@blue", 94).await;
    let sent = alice.send("bob@blue", text("something to report")).await.unwrap();
    let seen = receive(&mut bob, &["something to report"], "alice's message").await;
    assert_eq!(id_of(&seen, "something to report"), sent, "one id for the message at both ends");

    bob.report(&sent).await.unwrap_or_else(|error| panic!("the report of a real message: {error}"));

    let kept = bob.received(&sent).expect("kept to report").clone();
    let forbidden = |result: Result<(), ChatError>, what: &str| match result {
        Err(ChatError::Request(RequestFailed::Refused(ErrorCode::Forbidden))) => {}
        other => panic!("{what}: {other:?}, not refused as forbidden"),
    };
    let mut altered = decode::<Content>(kept.content(), limits::MAX_PAYLOAD_LEN).unwrap();
    altered.body = Some(text("something alice never said"));
    forbidden(bob.report_evidence(kept.evidence(), altered.encode_to_vec()).await, "a report of altered content");
    let mut other_sender = kept.evidence().clone();
    other_sender.sender = ProtocolAddress::new("carol@green", 1);
    forbidden(bob.report_evidence(&other_sender, kept.content().to_vec()).await, "a report naming another sender");
    // Someone else given bob's evidence cannot report it, not even by calling it a group's.
    forbidden(eve.report_evidence(kept.evidence(), kept.content().to_vec()).await, "a report by someone it was not sent to");
    let mut as_group = kept.evidence().clone();
    as_group.group = true;
    forbidden(eve.report_evidence(&as_group, kept.content().to_vec()).await, "a one-to-one message reported as a group's");

    // A message never received (or no longer kept) is no report at all.
    let unknown = [7u8; 32];
    assert!(matches!(bob.report(&unknown).await, Err(ChatError::UnknownMessage(id)) if id == unknown));
    // And the real one still verifies.
    bob.report(&sent).await.unwrap();
}
