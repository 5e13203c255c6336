//! The relay core fed arbitrary frames: from a device that authenticated, from a stranger who
//! did not, and from another app's relay on an inbound and an outbound federation link, with
//! batches committed to a memory store in between as a driver would.
//!
//! Checks: no panic; every delivery goes to the connection authenticated as the envelope's
//! recipient (no one can fetch another device's mail); a stranger's connection never receives a
//! delivery; the relay answers within its limits; the core never finds the store short of what it
//! committed (`StorageFailed`: what the core holds of mailboxes and outboxes and what the store
//! has drifted apart).
//!
//! Input: a sequence of (source byte, 2-byte length, frame bytes).

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_relay_core::{Action, RelayCore};
use switchboard_relay_core::state::StoredState;
use switchboard_relay_core::storage::{MemoryStore, Store};
use switchboard_wire::Message;
use switchboard_wire::switchboard::{Authenticate, ClientFrame, Register, client_frame::Body, server_frame};

const ALICE: u64 = 1;
const STRANGER: u64 = 2;
const INBOUND: u64 = 3;
const OUTBOUND: u64 = 4;

/// Commits the core's next batch to `store`; what the core releases then.
fn commit(core: &mut RelayCore, store: &mut MemoryStore) -> Option<Vec<Action>> {
    let batch = core.take_batch()?;
    store.commit(&batch.mutations).expect("a memory store does not fail");
    Some(core.committed(batch.id))
}

fn credential(core: &mut RelayCore, store: &mut MemoryStore, conn: u64, user: &str) -> Vec<u8> {
    let register = ClientFrame { request_id: 1, body: Some(Body::Register(Register { user: user.into(), device_id: 1 })) };
    core.client_frame(conn, &register.encode_to_vec());
    for action in commit(core, store).expect("registration is a change") {
        if let Action::ToClient { frame, .. } = action {
            if let Some(server_frame::Body::Registered(registered)) = frame.body {
                return registered.credential;
            }
        }
    }
    panic!("no credential");
}

fuzz_target!(|data: &[u8]| {
    let peers = ["blue".to_string(), "red".to_string()];
    let mut store = MemoryStore::default();
    let contents = Box::new(store.clone());
    let mut core = RelayCore::new("green", peers, StoredState::default(), contents, rand::SeedableRng::seed_from_u64(1));
    core.client_connected(ALICE, None);
    core.client_connected(STRANGER, None);
    let alice = credential(&mut core, &mut store, ALICE, "alice@green");
    credential(&mut core, &mut store, STRANGER, "bob@green");
    let auth = ClientFrame {
        request_id: 2,
        body: Some(Body::Authenticate(Authenticate { user: "alice@green".into(), device_id: 1, credential: alice })),
    };
    core.client_frame(ALICE, &auth.encode_to_vec());
    core.link_up(INBOUND, "blue", false);
    core.link_up(OUTBOUND, "red", true);

    let mut rest = data;
    let mut actions = Vec::new();
    while let [source, high, low, tail @ ..] = rest {
        let len = (usize::from(*high) << 8 | usize::from(*low)).min(tail.len());
        let (frame, next) = tail.split_at(len);
        rest = next;
        actions.extend(match source % 5 {
            0 => core.client_frame(ALICE, frame),
            1 => core.client_frame(STRANGER, frame),
            2 => core.link_frame(INBOUND, frame),
            3 => core.link_frame(OUTBOUND, frame),
            _ => commit(&mut core, &mut store).unwrap_or_default(),
        });
    }
    while let Some(released) = commit(&mut core, &mut store) {
        actions.extend(released);
    }
    for action in actions {
        assert!(!matches!(action, Action::StorageFailed(_)), "{action:?}");
        if let Action::ToClient { conn, frame } = action {
            if let Some(server_frame::Body::Deliver(envelope)) = frame.body {
                let recipient = envelope.recipient.expect("a stored envelope has a recipient");
                assert_eq!(conn, ALICE, "a delivery to a connection that is no device's");
                assert_eq!((recipient.name.as_str(), recipient.device_id), ("alice@green", 1), "someone else's mail");
            }
        }
    }
});
