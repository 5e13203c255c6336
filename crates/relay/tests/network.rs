//! Three relays on loopback with real sockets, TLS between them and redb under them; devices on
//! each chatting one to one and in a group across all three; devices dialling relays of several
//! nodes, some of them hung.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use switchboard_client::net::{CONNECT_TIMEOUT, NetError};
use switchboard_client::{ChatClient, ChatError, Event, RelayAddress};
use switchboard_relay::local::LocalFederation;
use switchboard_relay::server::tls::{Pki, TlsIdentity};
use switchboard_relay::server::{Peer, RelayHandle, RelaySettings, start};
use switchboard_relay::storage::open_redb;
use tokio::net::TcpListener;
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

/// A node that takes TCP connections and holds them without a word (a node hung mid-way, or
/// half dead): its address.
async fn silent_node() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    address
}

/// A node that takes TCP connections and closes them at once: its address.
async fn closing_node() -> SocketAddr {
    counted_closing_node().await.0
}

/// [`closing_node`], and how many connections it took so far (counted before each is closed:
/// a dialer that saw one closed finds it counted).
async fn counted_closing_node() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let taken = Arc::new(AtomicUsize::new(0));
    let counted = taken.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (address, taken)
}

/// A TCP proxy to `upstream` on `listener`: counts the connections it takes (each before it
/// connects on), and cuts those it carries on [`Proxy::cut`] (as a network drop ends a link)
/// while it goes on taking new ones. Dropped, it takes no more.
struct Proxy {
    taken: Arc<AtomicUsize>,
    cut: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    fn start(listener: TcpListener, upstream: SocketAddr) -> Proxy {
        let taken = Arc::new(AtomicUsize::new(0));
        let cut = Arc::new(tokio::sync::Notify::new());
        let (counted, cutting) = (taken.clone(), cut.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut near, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let cutting = cutting.clone();
                tokio::spawn(async move {
                    let cut = cutting.notified();
                    tokio::pin!(cut);
                    cut.as_mut().enable();
                    let Ok(mut far) = tokio::net::TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut near, &mut far) => {}
                        () = cut => {}
                    }
                });
            }
        });
        Proxy { taken, cut, task }
    }

    fn taken(&self) -> usize {
        self.taken.load(Ordering::SeqCst)
    }

    fn cut(&self) {
        self.cut.notify_waiters();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut.notify_waiters();
    }
}

/// Waits until `holds`, for at most `limit`, saying `what` if it does not.
async fn wait_until(what: &str, limit: Duration, holds: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !holds() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A listener on `address`, once it is free again (a listener on it just closed).
async fn bind_again(address: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(address).await {
            Ok(listener) => return listener,
            Err(error) => assert!(Instant::now() < deadline, "{address}: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback port nothing listens on (bound, then let go).
fn refusing_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A node that hangs in the handshake, or closes the connection, is passed over: the device
/// reaches its relay at the next address, and dials that one first from then on. A node whose
/// certificate is not the relay's still says so over nodes that are only out of reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_hangs_or_closes_in_the_handshake_is_passed_over_for_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let federation = LocalFederation::start(&["green"], dir.path()).await.unwrap();
    let green = federation.relay("green").client_address;
    let ca = federation.ca_certificate();
    // The closing node fails fast either way: whether it was dialled again is counted.
    let (closing, taken) = counted_closing_node().await;
    let relay = RelayAddress::with_addresses(&[closing, green], "green", ca).unwrap();
    relay.dial().await.unwrap_or_else(|error| panic!("the relay at the second address was not reached past {closing}: {error:?}"));
    assert_eq!(taken.load(Ordering::SeqCst), 1, "the closing node was dialled once");
    relay.dial().await.expect("the node that answered last answers again");
    assert_eq!(taken.load(Ordering::SeqCst), 1, "the node that answered last was not dialled first");
    // The hung node: dialled again first, it would cost CONNECT_TIMEOUT.
    let hung = silent_node().await;
    let relay = RelayAddress::with_addresses(&[hung, green], "green", ca).unwrap();
    let started = Instant::now();
    relay.dial().await.unwrap_or_else(|error| panic!("the relay at the second address was not reached past {hung}: {error:?}"));
    assert!(started.elapsed() >= CONNECT_TIMEOUT, "the hung node was passed over before its handshake timed out");
    let again = Instant::now();
    relay.dial().await.expect("the node that answered last answers again");
    assert!(again.elapsed() < CONNECT_TIMEOUT, "the node that answered last was not dialled first");
    // A wrong certificate outweighs a refusal and a closed connection, whichever node came last.
    let (refused, closing) = (refusing_port(), closing_node().await);
    let not_blue = RelayAddress::with_addresses(&[green, refused, closing], "blue", ca).unwrap();
    let error = not_blue.dial().await.expect_err("green's relay is not blue's");
    assert!(matches!(&error, NetError::NotTheRelay { address, .. } if *address == green), "{error:?}");
    assert!(!error.is_for_now());
    federation.shutdown().await;
}

/// The relay of `app`: its certificate and key from `pki`, its state in the redb database at
/// `path`, devices on `clients`, other relays on `federation`, linked to `peers`.
async fn start_app(pki: &Pki, app: &str, path: &std::path::Path, clients: TcpListener, federation: TcpListener, peers: Vec<Peer>) -> RelayHandle {
    // The database of a relay just shut down is let go by its committer thread a moment later.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (store, contents, state) = loop {
        match open_redb(path) {
            Ok(opened) => break opened,
            Err(error) => assert!(Instant::now() < deadline, "{error}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    start(settings(pki, app, peers), clients, federation, store, contents, state).await.unwrap()
}

/// The settings of `app`'s relay: its certificate and key from `pki`, linked to `peers`.
fn settings(pki: &Pki, app: &str, peers: Vec<Peer>) -> RelaySettings {
    let (certificate, private_key) = pki.apps[app].clone();
    RelaySettings {
        app: app.into(),
        tls: TlsIdentity { certificate, private_key, ca_certificate: pki.ca_certificate.clone() },
        peers,
        seed: None,
        tap: None,
        rate_limits: Default::default(),
    }
}

/// A peer made in code, not read from a file, is held to the rules a file's are: no address, more
/// than `MAX_PEER_ADDRESSES`, or one given twice, and the relay does not start.
#[tokio::test]
async fn a_peer_made_in_code_with_addresses_a_file_could_not_give_is_refused_at_start() {
    use switchboard_relay::config::{MAX_PEER_ADDRESSES, PeerAddressError};
    use switchboard_relay::server::StartError;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&["green", "blue"]).unwrap();
    let one: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let many: Vec<SocketAddr> = (0..=MAX_PEER_ADDRESSES).map(|i| SocketAddr::from(([127, 0, 0, 1], 20_000 + i as u16))).collect();
    let cases = [
        (Vec::new(), PeerAddressError::Neither),
        (many, PeerAddressError::TooMany { given: MAX_PEER_ADDRESSES + 1 }),
        (vec![one, "127.0.0.1:10".parse().unwrap(), one], PeerAddressError::Duplicate { address: one }),
    ];
    for (i, (addresses, expected)) in cases.into_iter().enumerate() {
        let (store, contents, state) = open_redb(&dir.path().join(format!("green-{i}.redb"))).unwrap();
        let peer = Peer { app: "blue".into(), addresses, certificate: pki.apps["blue"].0.clone() };
        let clients = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let federation = TcpListener::bind("127.0.0.1:0").await.unwrap();
        match start(settings(&pki, "green", vec![peer]), clients, federation, store, contents, state).await {
            Err(StartError::PeerAddresses { app, source }) => assert_eq!((app.as_str(), source), ("blue", expected)),
            Err(other) => panic!("case {i}: {other}"),
            Ok(_) => panic!("case {i}: the relay started with a peer's addresses it should refuse"),
        }
    }
}

/// [`start_app`] for green alone, other relays on any port.
async fn start_green(pki: &Pki, path: &std::path::Path, clients: TcpListener) -> RelayHandle {
    start_app(pki, "green", path, clients, TcpListener::bind("127.0.0.1:0").await.unwrap(), Vec::new()).await
}

/// Another app's relay of several nodes: blue's relay names green's by two federation
/// addresses, the first a node that is down (or a standby, which does not listen). Blue dials on
/// to the second, so mail and requests from blue reach green, and back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_first_address_is_dead_is_reached_at_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&["green", "blue"]).unwrap();
    let any = || TcpListener::bind("127.0.0.1:0");
    let (green_clients, green_federation, blue_clients, blue_federation) = (any().await.unwrap(), any().await.unwrap(), any().await.unwrap(), any().await.unwrap());
    let address = |listener: &TcpListener| listener.local_addr().unwrap();
    let (green_at, blue_at) = (address(&green_clients), address(&blue_clients));
    let dead = refusing_port();
    let peer = |app: &str, addresses: Vec<SocketAddr>| Peer { app: app.into(), addresses, certificate: pki.apps[app].0.clone() };
    let to_blue = vec![peer("blue", vec![address(&blue_federation)])];
    let to_green = vec![peer("green", vec![dead, address(&green_federation)])];
    let green = start_app(&pki, "green", &dir.path().join("green.redb"), green_clients, green_federation, to_blue).await;
    let blue = start_app(&pki, "blue", &dir.path().join("blue.redb"), blue_clients, blue_federation, to_green).await;

    let mut alice = ChatClient::register(RelayAddress::new(green_at, "green", &pki.ca_certificate).unwrap(), "alice@green", 1, seeded(1)).await.unwrap();
    let mut bob = ChatClient::register(RelayAddress::new(blue_at, "blue", &pki.ca_certificate).unwrap(), "bob@blue", 1, seeded(2)).await.unwrap();
    // Bob's relay fetches alice's keys from green's and forwards his message, both over the
    // link it dialed: through the second address.
    bob.send("alice@green", text("from blue, past a dead node")).await.unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.is_empty() {
        assert!(Instant::now() < deadline, "bob's message did not reach green's relay at its second address");
        seen.extend(texts(&alice.poll(QUIET).await.unwrap()));
    }
    assert_eq!(seen, ["from blue, past a dead node"]);
    alice.send("bob@blue", text("and back")).await.unwrap();
    assert_eq!(texts(&bob.poll(QUIET).await.unwrap()), ["and back"]);
    let (_, kept) = blue.inspect().await.unwrap();
    assert!(kept.outboxes.values().all(|outbox| outbox.is_empty()), "blue's outbox still holds mail for green");
    green.shutdown().await;
    blue.shutdown().await;
}

/// A device that starts while one node of its relay hangs in the handshake and the other is
/// down (a failover under way) starts offline rather than failing, and reaches the relay at its
/// second address once it is up, with the mail that waited for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_resumes_past_a_hung_node_and_reaches_its_relay_at_the_next_address() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&["green"]).unwrap();
    let path = dir.path().join("green.redb");
    let clients = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = clients.local_addr().unwrap();
    let relay = start_green(&pki, &path, clients).await;
    let address = RelayAddress::new(node, "green", &pki.ca_certificate).unwrap();
    let mut alice = ChatClient::register(address.clone(), "alice@green", 1, seeded(1)).await.unwrap();
    let bob_path = dir.path().join("bob-device.redb");
    let bob = ChatClient::register_with_database(address, "bob@green", 1, seeded(2), &bob_path).await.unwrap();
    drop(bob);
    alice.send("bob@green", text("while bob was away")).await.unwrap();
    relay.shutdown().await;

    let hung = silent_node().await;
    // A relay whose only node hangs in the handshake (NetError::Handshake, and nothing else to
    // say instead): the device starts offline all the same.
    let alone = RelayAddress::new(hung, "green", &pki.ca_certificate).unwrap();
    let bob = ChatClient::resume(alone, &bob_path, seeded(3)).await.expect("a relay whose only node hangs is no reason not to start");
    assert!(!bob.is_online());
    drop(bob);
    // A hung node and a node down: the last node's refusal is what the dial says.
    let nodes = RelayAddress::with_addresses(&[hung, node], "green", &pki.ca_certificate).unwrap();
    let mut bob = ChatClient::resume(nodes, &bob_path, seeded(4)).await.expect("a hung node and a node down are no reason not to start");
    assert!(!bob.is_online());
    let relay = start_green(&pki, &path, TcpListener::bind(node).await.unwrap()).await;
    let mut seen = Vec::new();
    let deadline = Instant::now() + CONNECT_TIMEOUT * 4;
    while seen.is_empty() {
        assert!(Instant::now() < deadline, "bob's client did not reach the relay at its second address");
        seen.extend(texts(&bob.poll(Duration::from_millis(200)).await.unwrap()));
    }
    assert_eq!(seen, ["while bob was away"]);
    assert!(bob.is_online());
    relay.shutdown().await;
}

/// Once a link came up and closed, blue's relay dials green's again from the address that
/// answered last: green's relay is named by a node that closes every connection, then green
/// behind a proxy; the link through the proxy is cut once up, and the next round dials the
/// proxy first, the closing node not again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_link_closes_the_peer_is_dialled_again_from_the_address_that_answered_last() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&["green", "blue"]).unwrap();
    let any = || TcpListener::bind("127.0.0.1:0");
    let (green_clients, green_federation, blue_clients, blue_federation) = (any().await.unwrap(), any().await.unwrap(), any().await.unwrap(), any().await.unwrap());
    let address = |listener: &TcpListener| listener.local_addr().unwrap();
    let (closing, closing_taken) = counted_closing_node().await;
    let proxy_listener = any().await.unwrap();
    let proxied = address(&proxy_listener);
    let proxy = Proxy::start(proxy_listener, address(&green_federation));
    let peer = |app: &str, addresses: Vec<SocketAddr>| Peer { app: app.into(), addresses, certificate: pki.apps[app].0.clone() };
    let to_blue = vec![peer("blue", vec![address(&blue_federation)])];
    let to_green = vec![peer("green", vec![closing, proxied])];
    let green = start_app(&pki, "green", &dir.path().join("green.redb"), green_clients, green_federation, to_blue).await;
    let blue = start_app(&pki, "blue", &dir.path().join("blue.redb"), blue_clients, blue_federation, to_green).await;

    // The first round: the closing node, then the proxy.
    wait_until("blue's relay did not dial green's past the closing node", Duration::from_secs(10), || proxy.taken() == 1).await;
    assert_eq!(closing_taken.load(Ordering::SeqCst), 1);
    // Up once it stayed up a second (LINK_SETTLE), then cut.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.cut();
    wait_until("blue's relay did not dial green's again", Duration::from_secs(10), || proxy.taken() == 2).await;
    assert_eq!(closing_taken.load(Ordering::SeqCst), 1, "the next round began at the first address, not at the one that answered last");
    drop(proxy);
    green.shutdown().await;
    blue.shutdown().await;
}

/// A device whose relay went away and that, reconnecting, finds at the relay's address something
/// whose certificate is not the relay's (another federation's green, behind a proxy that counts
/// the tries) says so once, as `Event::NotTheRelay`, however often it tries again; and is back
/// online once its relay is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_met_while_reconnecting_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&["green"]).unwrap();
    let path = dir.path().join("green.redb");
    let clients = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = clients.local_addr().unwrap();
    let relay = start_green(&pki, &path, clients).await;
    let mut alice = ChatClient::register(RelayAddress::new(node, "green", &pki.ca_certificate).unwrap(), "alice@green", 1, seeded(1)).await.unwrap();
    relay.shutdown().await;

    let other = Pki::generate(&["green"]).unwrap();
    let impostor_clients = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let impostor_at = impostor_clients.local_addr().unwrap();
    let impostor = start_green(&other, &dir.path().join("impostor.redb"), impostor_clients).await;
    let proxy = Proxy::start(bind_again(node).await, impostor_at);
    let mut events = Vec::new();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until || proxy.taken() < 3 {
        assert!(Instant::now() < until + Duration::from_secs(10), "alice's client tried {} times", proxy.taken());
        events.extend(alice.poll(Duration::from_millis(200)).await.unwrap());
    }
    let said: Vec<&Event> = events.iter().filter(|event| matches!(event, Event::NotTheRelay { .. })).collect();
    assert_eq!(said, [&Event::NotTheRelay { address: node }], "{} tries: {events:?}", proxy.taken());
    assert!(!alice.is_online());

    drop(proxy);
    impostor.shutdown().await;
    let relay = start_green(&pki, &path, bind_again(node).await).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !alice.is_online() {
        assert!(Instant::now() < deadline, "alice's client did not come back to its relay");
        alice.poll(Duration::from_millis(200)).await.unwrap();
    }
    relay.shutdown().await;
}

fn seeded(seed: u64) -> rand::rngs::StdRng {
    rand::SeedableRng::seed_from_u64(seed)
}
