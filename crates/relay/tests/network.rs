//! Three relays on loopback with real sockets, TLS between them and redb under them; devices on
//! each chatting one to one and in a group across all three.

use std::time::Duration;

use switchboard_client::{ChatClient, Event};
use switchboard_relay::local::LocalFederation;
use switchboard_session::Suite;
use switchboard_wire::address::UserAddress;
use switchboard_wire::switchboard::{Text, content};

fn text(s: &str) -> content::Body {
    content::Body::Text(Text { text: s.into() })
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message { content, .. } => match &content.body {
                Some(content::Body::Text(t)) => Some(t.text.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chats_across_three_apps_over_real_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let federation = LocalFederation::start(&["green", "blue", "red"], dir.path()).await.unwrap();
    let address = |app: &str| federation.relay(app).client_address;
    let mut alice = ChatClient::register(address("green"), "alice@green", 1, seeded(1)).await.unwrap();
    let mut bob = ChatClient::register(address("blue"), "bob@blue", 1, seeded(2)).await.unwrap();
    let mut carol = ChatClient::register(address("red"), "carol@red", 1, seeded(3)).await.unwrap();

    alice.send("bob@blue", text("hi bob")).await.unwrap();
    assert_eq!(texts(&bob.poll(QUIET).await.unwrap()), ["hi bob"]);
    bob.send("alice@green", text("hi alice")).await.unwrap();
    assert_eq!(texts(&alice.poll(QUIET).await.unwrap()), ["hi alice"]);

    alice.create_group("trip@green", &["bob@blue", "carol@red"], Suite::Aes256Gcm).await.unwrap();
    // Membership and keys settle as everyone processes what arrived.
    for _ in 0..3 {
        for client in [&mut bob, &mut carol, &mut alice] {
            client.poll(QUIET).await.unwrap();
        }
    }
    carol.send_group("trip@green", text("from carol to all")).await.unwrap();
    assert_eq!(texts(&alice.poll(QUIET).await.unwrap()), ["from carol to all"]);
    assert_eq!(texts(&bob.poll(QUIET).await.unwrap()), ["from carol to all"]);

    // Nothing a relay holds contains a plaintext.
    for relay in &federation.relays {
        let (_, state) = relay.inspect().await.unwrap();
        for mailbox in state.mailboxes.values() {
            for envelope in mailbox.values() {
                assert!(!envelope.content.windows(4).any(|w| w == b"from"));
            }
        }
    }
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_restarted_from_its_database_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let federation = LocalFederation::start(&["green", "blue"], dir.path()).await.unwrap();
    let (green, blue) = (federation.relay("green").client_address, federation.relay("blue").client_address);
    let mut alice = ChatClient::register(green, "alice@green", 1, seeded(1)).await.unwrap();
    let path = dir.path().join("bob-device.redb");
    let mut bob = ChatClient::register_with_database(blue, "bob@blue", 1, seeded(2), &path).await.unwrap();
    alice.create_group("pair@green", &["bob@blue"], Suite::SignalV3).await.unwrap();
    alice.send("bob@blue", text("before the restart")).await.unwrap();
    for _ in 0..2 {
        bob.poll(QUIET).await.unwrap();
        alice.poll(QUIET).await.unwrap();
    }
    // The app stops without warning; messages arrive meanwhile.
    drop(bob);
    alice.send("bob@blue", text("while bob was down")).await.unwrap();
    alice.send_group("pair@green", text("group, while bob was down")).await.unwrap();
    let mut bob = ChatClient::resume(blue, &path, seeded(3)).await.unwrap();
    let mut seen = texts(&bob.poll(QUIET).await.unwrap());
    seen.sort();
    assert_eq!(seen, ["group, while bob was down", "while bob was down"]);
    // Its sessions and sender keys survived: replies need no new key agreement.
    bob.send("alice@green", text("back again")).await.unwrap();
    bob.send_group("pair@green", text("back in the group")).await.unwrap();
    let mut replies = texts(&alice.poll(QUIET).await.unwrap());
    replies.sort();
    assert_eq!(replies, ["back again", "back in the group"]);
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attachment_crosses_apps_as_an_opaque_blob() {
    let dir = tempfile::tempdir().unwrap();
    let federation = LocalFederation::start(&["green", "blue"], dir.path()).await.unwrap();
    let mut alice = ChatClient::register(federation.relay("green").client_address, "alice@green", 1, seeded(1)).await.unwrap();
    let mut bob = ChatClient::register(federation.relay("blue").client_address, "bob@blue", 1, seeded(2)).await.unwrap();
    let photo: Vec<u8> = b"PNG of the lake at dawn ".iter().copied().cycle().take(200_000).collect();
    alice.send_attachment("bob@blue", &photo, "image/png", "lake.png").await.unwrap();
    let events = bob.poll(QUIET).await.unwrap();
    let Some(Event::Message { content, .. }) = events.first() else { panic!("{events:?}") };
    let Some(content::Body::Attachment(pointer)) = &content.body else { panic!("{content:?}") };
    assert_eq!((pointer.size, pointer.file_name.as_str()), (200_000, "lake.png"));
    let blob_id: UserAddress = pointer.blob_id.parse().unwrap();
    assert_eq!(blob_id.app(), "green", "kept by the sender's app");
    // Bob's relay fetches it from Green's through federation.
    assert_eq!(bob.download(pointer).await.unwrap(), photo);
    // Green holds the blob, encrypted; a pointer with a wrong digest is refused.
    let (_, green) = federation.relay("green").inspect().await.unwrap();
    let blob = &green.blobs[&pointer.blob_id];
    assert!(!blob.windows(12).any(|w| w == b"PNG of the l"));
    let mut forged = pointer.clone();
    forged.digest[0] ^= 1;
    assert!(bob.download(&forged).await.is_err());
    let mut missing = pointer.clone();
    missing.blob_id = "00@green".into();
    assert!(bob.download(&missing).await.is_err());
    federation.shutdown().await;
}

fn seeded(seed: u64) -> rand::rngs::StdRng {
    rand::SeedableRng::seed_from_u64(seed)
}
