//! Three relays as separate processes on loopback (`switchboard relay --config`), devices of each
//! app in this test: chats across them, relays killed with SIGKILL while messages flow and
//! restarted, an offline device, hostile connections, and relays that read or tamper with what
//! they store.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use switchboard_client::ChatClient;
use switchboard_relay::state::Mutation;
use switchboard_relay::storage::{Contents, RedbStore, Store};
use switchboard_session::Suite;

mod federation;

use federation::chat::Chat;
use federation::{APPS, Federation, text, texts};
const QUIET: Duration = Duration::from_millis(200);


/// Reconnects `client` until its relay answers (it may be restarting).
async fn reconnect(client: &mut ChatClient) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.reconnect().await.is_err() {
        assert!(Instant::now() < deadline, "could not reconnect {}", client.user());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls until `client` has seen `count` texts in all (reconnecting when its relay went away).
async fn collect(client: &mut ChatClient, seen: &mut Vec<String>, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < count {
        assert!(Instant::now() < deadline, "{} saw {} of {count}: {seen:?}", client.user(), seen.len());
        match client.poll(QUIET).await {
            Ok(events) if !events.is_empty() => seen.extend(texts(&events)),
            _ => reconnect(client).await,
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chats_and_groups_across_three_relay_processes() {
    let federation = Federation::new();
    let mut alice = ChatClient::register(federation.relay("green"), "alice@green", 1, seeded(1)).await.unwrap();
    let mut bob = ChatClient::register(federation.relay("blue"), "bob@blue", 1, seeded(2)).await.unwrap();
    let mut carol = ChatClient::register(federation.relay("red"), "carol@red", 1, seeded(3)).await.unwrap();
    alice.send("bob@blue", text("hello blue")).await.unwrap();
    bob.send("carol@red", text("hello red")).await.unwrap();
    assert_eq!(texts(&bob.poll(QUIET).await.unwrap()), ["hello blue"]);
    assert_eq!(texts(&carol.poll(QUIET).await.unwrap()), ["hello red"]);

    alice.create_group("g@green", &["bob@blue", "carol@red"], Suite::SignalV3).await.unwrap();
    for _ in 0..3 {
        for client in [&mut bob, &mut carol, &mut alice] {
            client.poll(QUIET).await.unwrap();
        }
    }
    bob.send_group("g@green", text("from blue to everyone")).await.unwrap();
    assert_eq!(texts(&alice.poll(QUIET).await.unwrap()), ["from blue to everyone"]);
    assert_eq!(texts(&carol.poll(QUIET).await.unwrap()), ["from blue to everyone"]);
    for app in APPS {
        let bytes = std::fs::read(federation.database(app)).unwrap_or_default();
        for plain in ["hello blue", "hello red", "from blue to everyone"] {
            assert!(!contains(&bytes, plain.as_bytes()), "{app} stored a plaintext");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_killed_mid_stream_lose_nothing_and_duplicate_nothing() {
    let mut federation = Federation::new();
    let mut alice = ChatClient::register(federation.relay("green"), "alice@green", 1, seeded(11)).await.unwrap();
    let mut bob = ChatClient::register(federation.relay("blue"), "bob@blue", 1, seeded(12)).await.unwrap();
    const TOTAL: usize = 120;
    let mut seen = Vec::new();
    for i in 0..TOTAL {
        if i == 40 {
            federation.kill("blue"); // the receiver's relay
        }
        if i == 60 {
            federation.start("blue");
        }
        if i == 80 {
            federation.kill("green"); // the sender's relay: alice's outbox holds what it cannot send
        }
        if i == 95 {
            federation.start("green");
            reconnect(&mut alice).await;
        }
        alice.send("bob@blue", text(&format!("message {i}"))).await.unwrap();
        if i % 10 == 9 {
            let _ = bob.poll(Duration::from_millis(20)).await.map(|events| seen.extend(texts(&events)));
        }
    }
    if alice.outbox_len() > 0 {
        reconnect(&mut alice).await;
    }
    assert_eq!(alice.outbox_len(), 0);
    collect(&mut bob, &mut seen, TOTAL).await;
    // Nothing more arrives: exactly once.
    seen.extend(texts(&bob.poll(Duration::from_millis(500)).await.unwrap()));
    let mut expected: Vec<String> = (0..TOTAL).map(|i| format!("message {i}")).collect();
    let mut got = seen.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_device_catches_up_and_a_tampering_relay_is_caught() {
    let mut federation = Federation::new();
    let mut alice = ChatClient::register(federation.relay("green"), "alice@green", 1, seeded(21)).await.unwrap();
    let mut bob = ChatClient::register(federation.relay("blue"), "bob@blue", 1, seeded(22)).await.unwrap();
    alice.send("bob@blue", text("before going offline")).await.unwrap();
    assert_eq!(texts(&bob.poll(QUIET).await.unwrap()), ["before going offline"]);
    bob.disconnect();
    for i in 0..5 {
        alice.send("bob@blue", text(&format!("while offline {i}"))).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Blue's operator reads and edits its database while it is down.
    federation.kill("blue");
    let path = federation.database("blue");
    let raw = std::fs::read(&path).unwrap();
    assert!(!contains(&raw, b"while offline"), "the relay's database holds a plaintext");
    {
        let (mut store, state) = RedbStore::open(&path).unwrap();
        let (device, mailbox) = state.mailboxes.iter().find(|(_, m)| m.len() == 5).expect("bob's five envelopes");
        let seq = mailbox.keys().nth(2).unwrap();
        let [(_, mut tampered)] = store.contents().mail(device, &[*seq]).unwrap().try_into().unwrap();
        let mut content = tampered.content.to_vec();
        let middle = content.len() / 2;
        content[middle] ^= 0x40;
        tampered.content = content.into();
        store.commit(&[Mutation::PutEnvelope { device: device.clone(), seq: *seq, envelope: tampered }]).unwrap();
    }
    federation.start("blue");
    reconnect(&mut bob).await;
    let mut seen = Vec::new();
    collect(&mut bob, &mut seen, 4).await;
    seen.sort();
    assert_eq!(seen, ["while offline 0", "while offline 1", "while offline 3", "while offline 4"]);
    assert_eq!(bob.stats().refused, 1, "the tampered envelope is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_connections_are_closed_and_everyone_else_carries_on() {
    let federation = Federation::new();
    let mut alice = ChatClient::register(federation.relay("green"), "alice@green", 1, seeded(31)).await.unwrap();
    let mut bob = ChatClient::register(federation.relay("blue"), "bob@blue", 1, seeded(32)).await.unwrap();
    let green = federation.clients["green"];
    let hostile: [&[u8]; 4] = [
        &[0xff, 0xff, 0xff, 0xff, 1, 2, 3],     // a length far over the limit
        &[0, 0, 0, 3, 0xff, 0xff, 0xff],         // a frame that is not a message
        &[0, 0, 0, 10, 1, 2],                    // half a frame, then silence
        b"GET / HTTP/1.1\r\nHost: green\r\n\r\n", // another protocol altogether
    ];
    for bytes in hostile {
        let mut stream = TcpStream::connect(green).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        stream.write_all(bytes).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
    }
    // The federation port speaks only TLS with a certificate of the federation: a forwarded
    // envelope in plain bytes gets nothing back but a closed connection.
    let mut stream = TcpStream::connect(federation.federation["green"]).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(&[0, 0, 0, 4, 0x12, 0x02, 0x0a, 0x00]).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(!answer.windows(2).any(|w| w == [0x12, 0x02]), "the federation port answered a plain frame");
    alice.send("bob@blue", text("still working")).await.unwrap();
    assert_eq!(texts(&bob.poll(QUIET).await.unwrap()), ["still working"]);
}

fn seeded(seed: u64) -> rand::rngs::StdRng {
    rand::SeedableRng::seed_from_u64(seed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_chat_survives_its_relay_and_its_own_restart() {
    let mut federation = Federation::new();
    let db = federation.dir.path().join("bob-chat.redb");
    let mut bob = Chat::start(&federation, "bob@blue", &db);
    bob.wait_for("its registration", |line| line.starts_with("registered bob@blue"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&db).unwrap().permissions().mode() & 0o777, 0o600, "the device database holds keys");
    }
    let mut alice = ChatClient::register(federation.relay("green"), "alice@green", 1, seeded(31)).await.unwrap();
    let mut sent = Vec::new();
    let send = async |alice: &mut ChatClient, n: usize| {
        let line = format!("message {n}");
        alice.send("bob@blue", text(&line)).await.unwrap();
        line
    };
    for n in 0..3 {
        sent.push(send(&mut alice, n).await);
    }
    bob.wait_for("message 2", |line| line.ends_with("message 2"));

    // The receiver's relay dies while the sender sends; Bob types meanwhile.
    federation.kill("blue");
    for n in 3..6 {
        sent.push(send(&mut alice, n).await);
    }
    bob.wait_for("that it is offline", |line| line.starts_with("* offline"));
    bob.type_line("@alice@green are you there?");
    bob.wait_for("its outbox", |line| line.contains("1 message(s) wait in the outbox"));
    federation.start("blue");
    bob.wait_for("message 5", |line| line.ends_with("message 5"));
    let mut replies = Vec::new();
    collect(&mut alice, &mut replies, 1).await;
    assert_eq!(replies, ["are you there?"]);

    // Bob's chat dies (SIGKILL) and starts again from its database, with mail waiting.
    let before = bob.kill();
    for n in 6..9 {
        sent.push(send(&mut alice, n).await);
    }
    let mut bob = Chat::start(&federation, "bob@blue", &db);
    bob.wait_for("its resumption", |line| line.starts_with("resumed bob@blue"));
    bob.wait_for("message 8", |line| line.ends_with("message 8"));
    // The account is still usable, both ways.
    bob.type_line("@alice@green got them all");
    collect(&mut alice, &mut replies, 2).await;
    assert_eq!(replies, ["are you there?", "got them all"]);
    sent.push(send(&mut alice, 9).await);
    bob.wait_for("message 9", |line| line.ends_with("message 9"));
    std::thread::sleep(QUIET);
    let after = bob.kill();
    let shown: Vec<&String> = before.iter().chain(&after).filter(|line| line.starts_with("alice@green: ")).collect();
    let expected: Vec<String> = sent.iter().map(|line| format!("alice@green: {line}")).collect();
    assert_eq!(shown, expected.iter().collect::<Vec<_>>(), "every message once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_message_that_overtakes_its_key_is_read_once_the_key_arrives() {
    let mut federation = Federation::new();
    let mut alice = ChatClient::register(federation.relay("green"), "alice@green", 1, seeded(41)).await.unwrap();
    let mut bob = ChatClient::register(federation.relay("blue"), "bob@blue", 1, seeded(42)).await.unwrap();
    alice.create_group("g@green", &["bob@blue"], Suite::Aes256Gcm).await.unwrap();
    bob.poll(QUIET).await.unwrap();
    bob.disconnect();
    // Alice's first group message: her key (pairwise) and the message, in that order in Bob's
    // mailbox; Blue's operator swaps them while the relay is down.
    alice.send_group("g@green", text("the key comes second")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    federation.kill("blue");
    {
        let (mut store, state) = RedbStore::open(&federation.database("blue")).unwrap();
        let (device, mailbox) = state.mailboxes.iter().find(|(_, m)| m.len() == 2).expect("the key and the message");
        let seqs: Vec<u64> = mailbox.keys().copied().collect();
        let entries = store.contents().mail(device, &seqs).unwrap();
        let swapped = [
            Mutation::PutEnvelope { device: device.clone(), seq: entries[0].0, envelope: entries[1].1.clone() },
            Mutation::PutEnvelope { device: device.clone(), seq: entries[1].0, envelope: entries[0].1.clone() },
        ];
        store.commit(&swapped).unwrap();
    }
    federation.start("blue");
    reconnect(&mut bob).await;
    let mut seen = Vec::new();
    collect(&mut bob, &mut seen, 1).await;
    seen.extend(texts(&bob.poll(Duration::from_millis(500)).await.unwrap()));
    assert_eq!(seen, ["the key comes second"], "held, then read once the key came (before: refused, acknowledged, lost)");
    assert_eq!(bob.stats().held_for_key, 1);
    assert_eq!(bob.stats().refused, 0);
}
