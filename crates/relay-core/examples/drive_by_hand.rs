//! Driving a `RelayCore` by hand: the core is a state machine; this file is its whole driver.
//!
//! A driver feeds the core bytes and connection events, carries out the actions it returns
//! (frames to send, connections to close), and commits the batches of mutations it hands out —
//! reporting each commit back, since the core holds every answer that promises durability until
//! then. Here the "connections" are numbers, the "disk" is a `MemoryStore`, and two devices of
//! one app, Alice and Bob, exchange one envelope. Run with
//! `cargo run -p switchboard-relay-core --example drive_by_hand`.

use rand::SeedableRng;
use switchboard_relay_core::storage::{MemoryStore, Store};
use switchboard_relay_core::{Action, ConnId, RelayCore};
use switchboard_wire::Message;
use switchboard_wire::switchboard::client_frame::Body;
use switchboard_wire::switchboard::{
    Acknowledge, Authenticate, ClientFrame, DeviceAddress, Envelope, EnvelopeKind, EnvelopeRef, Register, ServerFrame, server_frame,
};

/// The driver: one core, its disk, and the frames it sent to each connection.
struct Driver {
    core: RelayCore,
    disk: MemoryStore,
    sent: Vec<(ConnId, ServerFrame)>,
}

impl Driver {
    /// Hands the core a frame from `conn`, then does what it asks until nothing is left.
    fn receive(&mut self, conn: ConnId, frame: ClientFrame) {
        let actions = self.core.client_frame(conn, &frame.encode_to_vec());
        self.act(actions);
    }

    fn act(&mut self, mut actions: Vec<Action>) {
        loop {
            for action in actions.drain(..) {
                match action {
                    Action::ToClient { conn, frame } => self.sent.push((conn, frame)),
                    Action::Close { conn } => println!("  relay closes connection {conn}"),
                    Action::ToLink { .. } => unreachable!("one app: no federation links"),
                    Action::StorageFailed(error) => panic!("the disk failed: {error}"),
                }
            }
            // Group commit: one batch at a time; whatever arrived meanwhile goes in the next.
            let Some(batch) = self.core.take_batch() else { return };
            println!("  commit batch {} ({} mutations)", batch.id, batch.mutations.len());
            self.disk.commit(&batch.mutations).expect("memory does not fail");
            actions = self.core.committed(batch.id);
        }
    }

    /// The frames sent to `conn` since the last call.
    fn take(&mut self, conn: ConnId) -> Vec<ServerFrame> {
        let (mine, rest) = std::mem::take(&mut self.sent).into_iter().partition(|(to, _)| *to == conn);
        self.sent = rest;
        mine.into_iter().map(|(_, frame)| frame).collect()
    }

    /// Registers `user`'s device 1 on connection `conn` and authenticates it.
    fn sign_in(&mut self, conn: ConnId, user: &str) {
        self.core.client_connected(conn, None);
        self.receive(conn, ClientFrame { request_id: 1, body: Some(Body::Register(Register { user: user.into(), device_id: 1 })) });
        let Some(server_frame::Body::Registered(registered)) = self.take(conn).remove(0).body else { panic!("not registered") };
        let authenticate = Authenticate { user: user.into(), device_id: 1, credential: registered.credential };
        self.receive(conn, ClientFrame { request_id: 2, body: Some(Body::Authenticate(authenticate)) });
        println!("{user} signed in on connection {conn}: {:?}", self.take(conn).iter().map(name).collect::<Vec<_>>());
    }
}

fn name(frame: &ServerFrame) -> &'static str {
    match &frame.body {
        Some(server_frame::Body::Done(_)) => "Done",
        Some(server_frame::Body::Deliver(_)) => "Deliver",
        Some(server_frame::Body::Failure(_)) => "Failure",
        _ => "other",
    }
}

fn main() {
    let disk = MemoryStore::default();
    // A core starts from what is on disk (nothing yet) and reads mail back from the same store.
    let core = RelayCore::new("green", [], disk.state(), Box::new(disk.clone()), rand::rngs::StdRng::seed_from_u64(1));
    let mut driver = Driver { core, disk, sent: Vec::new() };
    let (alice, bob) = (1, 2);
    driver.sign_in(alice, "alice@green");
    driver.sign_in(bob, "bob@green");

    // The relay never reads `content`: devices encrypt it end to end (see the session crate).
    let address = |user: &str| DeviceAddress { name: user.into(), device_id: 1 };
    let envelope = Envelope {
        id: vec![7; 16].into(),
        sender: Some(address("alice@green")),
        recipient: Some(address("bob@green")),
        kind: EnvelopeKind::SignalMessage as i32,
        content: b"ciphertext, opaque to the relay".to_vec().into(),
        ..Default::default()
    };
    println!("alice sends one envelope to bob");
    driver.receive(alice, ClientFrame { request_id: 3, body: Some(Body::Send(envelope)) });
    // Alice's `Done` and Bob's delivery both came out of `committed`: after the batch was durable.
    println!("to alice: {:?}; to bob: {:?}", driver.take(alice).iter().map(name).collect::<Vec<_>>(), driver.take(bob).iter().map(name).collect::<Vec<_>>());
    assert_eq!(driver.core.state().mailboxes[&("bob@green".to_owned(), 1)].len(), 1, "kept until acknowledged");

    println!("bob acknowledges it");
    let reference = EnvelopeRef { sender: Some(address("alice@green")), id: vec![7; 16].into() };
    driver.receive(bob, ClientFrame { request_id: 3, body: Some(Body::Acknowledge(Acknowledge { envelopes: vec![reference] })) });
    assert!(driver.disk.state().mailboxes[&("bob@green".to_owned(), 1)].is_empty(), "deleted on disk");
    let metrics = driver.core.metrics();
    println!("bob's mailbox on disk is empty; {} envelope stored, {} batches committed", metrics.envelopes_stored, metrics.batches);
}
