//! Relays of several nodes on loopback, in one process: each app's relay and a front node
//! beside it that carries the connections it takes to the relay. Devices on every node chat as
//! with one relay (links between apps go relay to relay here: each dials the other's relay
//! first; a link carried by a front node is tested in `server::carried`'s unit tests).

use std::time::Duration;

use switchboard_client::{ChatClient, Event, RelayAddress};
use switchboard_relay::local::{LocalFederation, LocalOptions};
use switchboard_session::Suite;
use switchboard_wire::switchboard::{Text, content};

const QUIET: Duration = Duration::from_millis(300);

fn text(s: &str) -> content::Body {
    content::Body::Text(Text { text: s.into() })
}

fn texts(events: &[Event]) -> Vec<String> {
    let mut texts: Vec<String> = events
        .iter()
        .filter_map(|event| match event {
            Event::Message { content, .. } => match &content.body {
                Some(content::Body::Text(text)) => Some(text.text.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    texts.sort();
    texts
}

fn seeded(seed: u64) -> rand::rngs::StdRng {
    rand::SeedableRng::seed_from_u64(seed)
}

/// `app`'s node `node` (0: the relay, 1: its front node), alone, for a device to connect to.
fn node(federation: &LocalFederation, app: &str, node: usize) -> RelayAddress {
    RelayAddress::new(federation.client_addresses(app)[node], app, federation.ca_certificate()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_on_front_nodes_chat_one_to_one_and_in_groups_across_apps() {
    let dir = tempfile::tempdir().unwrap();
    let options = LocalOptions { nodes: 2, ..LocalOptions::default() };
    let federation = LocalFederation::start_with(&["green", "blue"], dir.path(), options).await.unwrap();
    assert_eq!(federation.fronts.len(), 2);
    // Alice on green's front node, Carol on green's relay itself, Bob on blue's front node.
    let mut alice = ChatClient::register(node(&federation, "green", 1), "alice@green", 1, seeded(1)).await.unwrap();
    let mut carol = ChatClient::register(node(&federation, "green", 0), "carol@green", 1, seeded(2)).await.unwrap();
    let mut bob = ChatClient::register(node(&federation, "blue", 1), "bob@blue", 1, seeded(3)).await.unwrap();

    alice.send("carol@green", text("to carol, on the other node")).await.unwrap();
    assert_eq!(texts(&carol.poll(QUIET).await.unwrap()), ["to carol, on the other node"]);
    carol.send("alice@green", text("to alice, on the front")).await.unwrap();
    assert_eq!(texts(&alice.poll(QUIET).await.unwrap()), ["to alice, on the front"]);
    alice.send("bob@blue", text("to bob, front to front")).await.unwrap();
    assert_eq!(texts(&bob.poll(QUIET).await.unwrap()), ["to bob, front to front"]);
    bob.send("alice@green", text("to alice, from blue")).await.unwrap();
    assert_eq!(texts(&alice.poll(QUIET).await.unwrap()), ["to alice, from blue"]);

    alice.create_group("walk@green", &["bob@blue", "carol@green"], Suite::SignalV3).await.unwrap();
    for _ in 0..3 {
        for client in [&mut bob, &mut carol, &mut alice] {
            client.poll(QUIET).await.unwrap();
        }
    }
    bob.send_group("walk@green", text("from bob to the group")).await.unwrap();
    assert_eq!(texts(&alice.poll(QUIET).await.unwrap()), ["from bob to the group"]);
    assert_eq!(texts(&carol.poll(QUIET).await.unwrap()), ["from bob to the group"]);
    for client in [&alice, &bob, &carol] {
        assert_eq!(client.stats().duplicates, 0);
    }
    // What the front nodes carried was served by the relays: the devices are theirs.
    let (_, green_state) = federation.relay("green").inspect().await.unwrap();
    assert!(green_state.accounts.keys().any(|(user, _)| user == "alice@green"));
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_of_a_front_node_whose_relay_stops_is_closed_and_refused_until_another_serves() {
    let dir = tempfile::tempdir().unwrap();
    let options = LocalOptions { nodes: 2, ..LocalOptions::default() };
    let mut federation = LocalFederation::start_with(&["green"], dir.path(), options).await.unwrap();
    let mut alice = ChatClient::register(node(&federation, "green", 1), "alice@green", 1, seeded(1)).await.unwrap();
    assert!(alice.is_online());
    // The relay goes; the front node's link with it, and the connection it carried.
    let relay = federation.relays.pop().unwrap();
    relay.shutdown().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while federation.fronts[0].active_node().is_some() || alice.is_online() {
        assert!(std::time::Instant::now() < deadline, "the front node still carries alice's connection");
        let _ = alice.poll(Duration::from_millis(100)).await;
    }
    // A new connection to the front node finds no relay behind it: refused, not left hanging.
    let refused = tokio::time::timeout(Duration::from_secs(5), alice.reconnect()).await.expect("refused in time");
    assert!(refused.is_err(), "reconnected with no relay serving");
    for front in std::mem::take(&mut federation.fronts) {
        front.shutdown().await;
    }
}
