//! Three relays on loopback with real sockets, TLS between them and redb under them; devices on
//! each chatting one to one and in a group across all three.

use std::time::Duration;

use switchboard_client::net::NetError;
use switchboard_client::{ChatClient, ChatError, Event, RelayAddress};
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
    let address = |app: &str| relay(&federation, app);
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

    federation.shutdown().await;
    // Nothing a relay wrote to its disk contains a plaintext.
    for app in ["green", "blue", "red"] {
        let database = std::fs::read(dir.path().join(format!("{app}.redb"))).unwrap();
        assert!(!database.windows(10).any(|w| w == b"from carol"), "{app}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_restarted_from_its_database_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let federation = LocalFederation::start(&["green", "blue"], dir.path()).await.unwrap();
    let (green, blue) = (relay(&federation, "green"), relay(&federation, "blue"));
    let mut alice = ChatClient::register(green, "alice@green", 1, seeded(1)).await.unwrap();
    let path = dir.path().join("bob-device.redb");
    let mut bob = ChatClient::register_with_database(blue.clone(), "bob@blue", 1, seeded(2), &path).await.unwrap();
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
    let mut bob = ChatClient::resume(blue.clone(), &path, seeded(3)).await.unwrap();
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
    let mut alice = ChatClient::register(relay(&federation, "green"), "alice@green", 1, seeded(1)).await.unwrap();
    let mut bob = ChatClient::register(relay(&federation, "blue"), "bob@blue", 1, seeded(2)).await.unwrap();
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
    assert!(green.blobs[&pointer.blob_id].bytes > photo.len(), "sealed: the photo and a tag");
    let database = std::fs::read(dir.path().join("green.redb")).unwrap();
    assert!(!database.windows(12).any(|w| w == b"PNG of the l"), "the relay's disk holds the photo in the clear");
    let mut forged = pointer.clone();
    forged.digest[0] ^= 1;
    assert!(bob.download(&forged).await.is_err());
    let mut missing = pointer.clone();
    missing.blob_id = "00@green".into();
    assert!(bob.download(&missing).await.is_err());
    federation.shutdown().await;
}

/// How a device of `app` reaches and recognises its relay.
fn relay(federation: &LocalFederation, app: &str) -> RelayAddress {
    RelayAddress::new(federation.relay(app).client_address, app, federation.ca_certificate()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_speaks_to_its_relay_only_over_tls_and_only_to_its_relay() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let federation = LocalFederation::start(&["green", "blue"], dir.path()).await.unwrap();
    let green = federation.relay("green").client_address;
    // A registration in the clear gets no answer: the connection is closed, nothing is registered.
    let register = switchboard_wire::switchboard::ClientFrame {
        request_id: 1,
        body: Some(switchboard_wire::switchboard::client_frame::Body::Register(switchboard_wire::switchboard::Register {
            user: "mallory@green".into(),
            device_id: 1,
        })),
    };
    let mut plain = tokio::net::TcpStream::connect(green).await.unwrap();
    plain.write_all(&switchboard_relay::server::frame(&register)).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), plain.read_to_end(&mut answer)).await.expect("closed");
    // At most a TLS alert record (content type 21); a frame would start with its length.
    assert!(answer.is_empty() || answer[0] == 21, "answered in the clear: {answer:?}");
    let (_, state) = federation.relay("green").inspect().await.unwrap();
    assert!(state.accounts.is_empty(), "a plain-TCP client registered");
    // A device refuses a relay whose certificate is not for its app, or not from its CA: its
    // credential never leaves it.
    let wrong_name = RelayAddress::new(green, "blue", federation.ca_certificate()).unwrap();
    let error = ChatClient::register(wrong_name, "alice@blue", 1, seeded(1)).await.err().expect("refused");
    assert!(matches!(error, ChatError::Net(NetError::NotTheRelay { .. })), "{error}");
    let other_ca = switchboard_relay::server::tls::Pki::generate(&["green"]).unwrap().ca_certificate;
    let wrong_ca = RelayAddress::new(green, "green", &other_ca).unwrap();
    let error = ChatClient::register(wrong_ca, "alice@green", 1, seeded(2)).await.err().expect("refused");
    assert!(matches!(error, ChatError::Net(NetError::NotTheRelay { .. })), "{error}");
    let (_, state) = federation.relay("green").inspect().await.unwrap();
    assert!(state.accounts.is_empty());
    // The right relay: registered.
    ChatClient::register(relay(&federation, "green"), "alice@green", 1, seeded(3)).await.unwrap();
    federation.shutdown().await;
}

fn seeded(seed: u64) -> rand::rngs::StdRng {
    rand::SeedableRng::seed_from_u64(seed)
}
