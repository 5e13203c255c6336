//! One person on two apps, over three relay processes on loopback: she receives on both apps,
//! replies from the second and her first device shows the reply; a sender whose list of a
//! user's devices is out of date is corrected by the relays and nothing is dropped.

use std::time::{Duration, Instant};

use switchboard_client::{ChatClient, Event};
use switchboard_wire::switchboard::{Visibility, content};

mod federation;

use federation::{Federation, text, texts};

const QUIET: Duration = Duration::from_millis(200);

fn seeded(seed: u64) -> rand::rngs::StdRng {
    <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed)
}

/// Texts of the messages carried to this device by another device of its person.
fn synced(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Synced { content, .. } => match &content.body {
                Some(content::Body::Text(t)) => Some(t.text.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Polls every client until a whole round brings nothing, and returns what each saw.
async fn settle(clients: &mut [&mut ChatClient]) -> Vec<Vec<Event>> {
    let mut seen: Vec<Vec<Event>> = vec![Vec::new(); clients.len()];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut quiet = true;
        for (n, client) in clients.iter_mut().enumerate() {
            let events = client.poll(QUIET).await.unwrap();
            quiet &= events.is_empty() && client.outbox_len() == 0;
            seen[n].extend(events);
        }
        if quiet || Instant::now() > deadline {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_person_receives_on_both_apps_replies_from_the_second_and_her_first_device_shows_it() {
    let federation = Federation::new();
    let mut green = ChatClient::register(federation.relay("green"), "alice@green", 1, seeded(51)).await.unwrap();
    let mut blue = ChatClient::register(federation.relay("blue"), "alice@blue", 1, seeded(52)).await.unwrap();
    let mut bob = ChatClient::register(federation.relay("red"), "bob@red", 1, seeded(53)).await.unwrap();
    green.become_person(Visibility::Public).await.unwrap();
    let invitation = green.person_invitation().unwrap();
    blue.join_person(&invitation, Visibility::Public).await.unwrap();
    settle(&mut [&mut green, &mut blue]).await;
    assert_eq!(green.person_record().unwrap().accounts().len(), 2, "green took the record blue signed");

    // Bob has never talked to her: he looks her up by one address and gets both.
    assert_eq!(bob.lookup_person("alice@green").await.unwrap(), ["alice@green", "alice@blue"]);
    bob.send("alice@green", text("hello alice")).await.unwrap();
    let seen = settle(&mut [&mut green, &mut blue, &mut bob]).await;
    assert_eq!(texts(&seen[0]), ["hello alice"], "on green");
    assert_eq!(texts(&seen[1]), ["hello alice"], "and on blue, from bob directly");

    // She replies from blue; bob reads it, and her green device shows it.
    blue.send("bob@red", text("reply from blue")).await.unwrap();
    let seen = settle(&mut [&mut green, &mut blue, &mut bob]).await;
    assert_eq!(texts(&seen[2]), ["reply from blue"]);
    assert_eq!(synced(&seen[0]), ["reply from blue"], "her first device shows her reply");
    assert!(texts(&seen[0]).is_empty() && synced(&seen[1]).is_empty());
    // One safety number for her, whichever account bob compares it on.
    assert_eq!(bob.person_safety_number("alice@green"), None, "bob is no person: nothing to compare");
    assert!(bob.person_of("alice@blue").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_device_set_is_corrected_and_nothing_is_dropped() {
    let federation = Federation::new();
    let mut alice = ChatClient::register(federation.relay("green"), "alice@green", 1, seeded(61)).await.unwrap();
    let mut bob = ChatClient::register(federation.relay("blue"), "bob@blue", 1, seeded(62)).await.unwrap();
    bob.send("alice@green", text("first")).await.unwrap();
    assert_eq!(texts(&settle(&mut [&mut alice, &mut bob]).await[0]), ["first"]);

    // Alice links a second device; bob's list still has one.
    let credential = alice.link_device(2).await.unwrap();
    let mut alice2 = ChatClient::register_linked(federation.relay("green"), "alice@green", 2, credential, seeded(63)).await.unwrap();
    for n in 0..3 {
        bob.send("alice@green", text(&format!("after the link {n}"))).await.unwrap();
    }
    let seen = settle(&mut [&mut alice, &mut alice2, &mut bob]).await;
    let expected = ["after the link 0", "after the link 1", "after the link 2"];
    assert_eq!(texts(&seen[0]), expected);
    assert_eq!(texts(&seen[1]), expected, "the device bob did not know of reads every one");
    assert_eq!(bob.stats().sends_dropped, 0);
}

/// `switchboard chat` signed in as one person on two apps: one merged inbox that says which app
/// each message came through and shows a message that reached both accounts once; she links the
/// accounts from it, and replies from the account she picks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_chat_is_one_inbox_for_one_person_on_two_apps() {
    use federation::chat::Chat;
    let federation = Federation::new();
    let (green_db, blue_db) = (federation.dir.path().join("alice-green.redb"), federation.dir.path().join("alice-blue.redb"));
    let alice = Chat::start_as(&federation, &[("alice@green", &green_db), ("alice@blue", &blue_db)]);
    alice.wait_for("one inbox", |line| line.starts_with("one inbox for alice@green, alice@blue"));
    let mut alice = alice;
    alice.type_line("/link");
    alice.wait_for("the link", |line| line == "* linked alice@green, alice@blue as one person");
    let mut bob = ChatClient::register(federation.relay("red"), "bob@red", 1, seeded(71)).await.unwrap();
    bob.send("alice@blue", text("to blue only")).await.unwrap();
    alice.wait_for("bob's message through blue", |line| line == "[blue] bob@red: to blue only");
    // Bob learns both accounts; his next message reaches both, and shows once.
    assert_eq!(bob.lookup_person("alice@green").await.unwrap(), ["alice@green"], "blue is shown to contacts only");
    alice.type_line("/from alice@blue");
    alice.wait_for("the switch", |line| line == "* sending from alice@blue");
    alice.type_line("@bob@red hello from blue");
    let seen = settle(&mut [&mut bob]).await;
    assert_eq!(texts(&seen[0]), ["hello from blue"]);
    bob.send("alice@green", text("to both")).await.unwrap();
    alice.wait_for("bob's message to both", |line| line.ends_with("bob@red: to both"));
    std::thread::sleep(Duration::from_millis(1000));
    let lines = alice.kill();
    assert_eq!(lines.iter().filter(|line| line.ends_with("bob@red: to both")).count(), 1, "{lines:#?}");
    assert_eq!(lines.iter().filter(|line| line.ends_with("bob@red: to blue only")).count(), 1, "{lines:#?}");
}
