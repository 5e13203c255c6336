//! Client endpoints and relay cores in one process, on a virtual clock, with nothing between
//! them but this harness: the in-memory counterpart of the tokio drivers, for deterministic tests
//! of the client and the relay, fuzz targets and examples. Sans-IO all the way down.
//!
//! What a driver does, the harness does the same way: it feeds each endpoint its frames, writes
//! what the endpoint asks to persist to the device's "disk" (unless told to hold it back, to crash
//! a device between processing and persisting), commits each relay's batches to its durable
//! state, and fires timers as the virtual clock reaches them. Between relays every pair of apps
//! is linked; links can be cut and restored. Frames to a device can be held and released in any
//! order, to make one overtake another. It checks, for every durable device, that no envelope
//! shown as a message is acknowledged before the device has written that it read it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use switchboard_client_core::endpoint::{EndpointConfig, Persist, SeenKey, Storage};
use switchboard_client_core::{Endpoint, Event};
use switchboard_relay_core::{Action, ConnId, RelayCore};
use switchboard_relay_core::state::StoredState;
use switchboard_relay_core::storage::{MemoryStore, Store};
use switchboard_session::ProtocolAddress;
use switchboard_wire::Message;
use switchboard_wire::switchboard::{ClientFrame, DeviceSnapshot, ServerFrame, client_frame, server_frame};

/// Steps [`Harness::settle`] takes at most before it gives up (a livelock is a bug).
pub const MAX_STEPS: usize = 1_000_000;
/// How often relays retry what other apps refused for now.
pub const RELAY_TICK: Duration = Duration::from_secs(1);

/// Delivery frames kept per device for handing over again ([`DeviceNode::recent_deliveries`]).
pub const RECENT_DELIVERIES: usize = 32;

/// A device's index in the harness.
pub type DeviceId = usize;

/// What a device has written durably: what its driver's database would hold.
#[derive(Clone, Default)]
pub struct Disk {
    /// The last snapshot written ([`Endpoint::snapshot`], encoded); `None` until a persist
    /// first reports the device changed.
    pub snapshot: Option<Vec<u8>>,
    /// The dedupe window: each processed envelope's key ([`SeenKey::to_bytes`]) with a counter
    /// that orders the keys as written (a restore hands them over oldest first).
    pub seen: BTreeMap<[u8; 16], u64>,
    /// The outbox: each entry's sequence number with the frame [`Endpoint::outbox_frame`] gave.
    pub outbox: BTreeMap<u64, Vec<u8>>,
    counter: u64,
}

impl Disk {
    fn write(&mut self, endpoint: &Endpoint, persist: &Persist) {
        if persist.device {
            self.snapshot = Some(endpoint.snapshot().encode_to_vec());
        }
        for key in &persist.seen_forgotten {
            self.seen.remove(&key.to_bytes());
        }
        for key in &persist.seen_added {
            self.counter += 1;
            self.seen.insert(key.to_bytes(), self.counter);
        }
        for seq in &persist.outbox_removed {
            self.outbox.remove(seq);
        }
        for seq in &persist.outbox_added {
            if let Some(frame) = endpoint.outbox_frame(*seq) {
                self.outbox.insert(*seq, frame);
            }
        }
    }

    /// The endpoint as this disk holds it.
    fn restore(&self, config: EndpointConfig, rng: &mut StdRng) -> Endpoint {
        let snapshot: DeviceSnapshot =
            switchboard_wire::decode(self.snapshot.as_ref().expect("a device writes its snapshot first"), usize::MAX).expect("written here");
        let mut seen: Vec<(&u64, &[u8; 16])> = self.seen.iter().map(|(k, v)| (v, k)).collect();
        seen.sort();
        let seen = seen.into_iter().filter_map(|(_, key)| SeenKey::from_bytes(key));
        let outbox = self.outbox.iter().map(|(seq, frame)| (*seq, frame.clone()));
        Endpoint::restore(&snapshot, seen, outbox, config, rng).expect("written here")
    }
}

/// One device under the harness.
pub struct DeviceNode {
    /// The device's endpoint; [`Harness::crash`] replaces it with one restored from `disk`.
    pub endpoint: Endpoint,
    /// The app of the device's user (`name@app`): the relay it connects to.
    pub app: String,
    config: EndpointConfig,
    conn: Option<ConnId>,
    /// Its durable state (durable devices only).
    pub disk: Option<Disk>,
    /// While set, what the endpoint asks to persist is not written (a crash loses it).
    pub hold_persistence: bool,
    /// While set, frames to this device are kept in `held` instead of delivered.
    pub hold_frames: bool,
    /// The frames kept while `hold_frames` was set (encoded `ServerFrame`s), in arrival order,
    /// until [`Harness::release_held`] hands them over.
    pub held: Vec<Vec<u8>>,
    /// Every event the endpoint reported.
    pub events: Vec<Event>,
    /// Every frame the endpoint wrote, as `what` labels, in order.
    pub sent: Vec<&'static str>,
    /// Every frame the endpoint wrote, decoded.
    pub frames: Vec<ClientFrame>,
    /// The last [`RECENT_DELIVERIES`] delivery frames handed to the endpoint, as bytes: what a
    /// relay might hand over again.
    pub recent_deliveries: VecDeque<Vec<u8>>,
    /// The dedupe keys of the envelopes the endpoint showed as messages: a durable device must
    /// have such a key on its disk before it acknowledges the envelope.
    shown: BTreeSet<[u8; 16]>,
}

impl DeviceNode {
    /// Hands `bytes` to the endpoint, noting the envelope it carries.
    fn hand(&mut self, now: Duration, bytes: &[u8], rng: &mut StdRng) {
        if let Ok(ServerFrame { body: Some(server_frame::Body::Deliver(_)), .. }) = switchboard_wire::decode(bytes, usize::MAX) {
            if self.recent_deliveries.len() == RECENT_DELIVERIES {
                self.recent_deliveries.pop_front();
            }
            self.recent_deliveries.push_back(bytes.to_vec());
        }
        self.endpoint.handle_frame(now, bytes, rng);
    }

    /// Checks that an acknowledgement `frame` names no envelope this durable device showed as a
    /// message without having its dedupe key on disk: a crash after the acknowledgement would
    /// lose the message, or show it again.
    fn check_acknowledgement(&self, frame: &ClientFrame) {
        let (Some(client_frame::Body::Acknowledge(ack)), Some(disk)) = (&frame.body, &self.disk) else { return };
        for envelope in &ack.envelopes {
            let Some(sender) = &envelope.sender else { continue };
            let key = SeenKey::new(&sender.name, sender.device_id, &envelope.id).to_bytes();
            if self.shown.contains(&key) {
                assert!(
                    disk.seen.contains_key(&key),
                    "{} acknowledged envelope {} of {} before persisting that it had read it",
                    self.endpoint.address(),
                    envelope.id.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                    sender.name
                );
            }
        }
    }
}

struct RelayNode {
    core: RelayCore,
    durable: MemoryStore,
    next_tick: Duration,
}

/// Work waiting to be done, in order.
enum Step {
    ToRelay { app: String, conn: ConnId, bytes: Vec<u8> },
    ToDevice { conn: ConnId, bytes: Vec<u8> },
    Relay { app: String, actions: Vec<Action> },
}

/// The harness: relays, devices and the clock.
pub struct Harness {
    /// The virtual clock, since the harness was made: every input carries it, and it only moves
    /// forward (as time is advanced and timers fire).
    pub now: Duration,
    rng: StdRng,
    relays: BTreeMap<String, RelayNode>,
    /// (app, conn) → the other end of a federation link.
    links: BTreeMap<(String, ConnId), (String, ConnId)>,
    /// Every device added, indexed by its [`DeviceId`].
    pub devices: Vec<DeviceNode>,
    /// Client connection → device.
    conns: BTreeMap<ConnId, DeviceId>,
    next_conn: ConnId,
    queue: VecDeque<Step>,
}

impl Harness {
    /// Relays for `apps`, every pair linked. `seed` drives every key and id.
    pub fn new(apps: &[&str], seed: u64) -> Harness {
        let mut harness = Harness {
            now: Duration::ZERO,
            rng: StdRng::seed_from_u64(seed),
            relays: BTreeMap::new(),
            links: BTreeMap::new(),
            devices: Vec::new(),
            conns: BTreeMap::new(),
            next_conn: 1,
            queue: VecDeque::new(),
        };
        for app in apps {
            let peers = apps.iter().map(|a| a.to_string());
            let durable = MemoryStore::default();
            let core = RelayCore::new(app, peers, StoredState::default(), Box::new(durable.clone()), StdRng::seed_from_u64(seed ^ 0x5eed));
            harness.relays.insert(app.to_string(), RelayNode { core, durable, next_tick: RELAY_TICK });
        }
        for a in apps {
            for b in apps {
                if a != b {
                    harness.link(a, b);
                }
            }
        }
        harness.settle();
        harness
    }

    fn conn(&mut self) -> ConnId {
        self.next_conn += 1;
        self.next_conn
    }

    /// Links `a` to `b` (`a` dials; requests from `a` go out on the links it dialed).
    pub fn link(&mut self, a: &str, b: &str) {
        let (ca, cb) = (self.conn(), self.conn());
        self.links.insert((a.into(), ca), (b.into(), cb));
        self.links.insert((b.into(), cb), (a.into(), ca));
        let accepted = self.relay(b).link_up(cb, a, false);
        self.queue.push_back(Step::Relay { app: b.into(), actions: accepted });
        let dialed = self.relay(a).link_up(ca, b, true);
        self.queue.push_back(Step::Relay { app: a.into(), actions: dialed });
    }

    /// Cuts the links between `a` and `b` (both ways): requests between them fail as
    /// unavailable. [`Self::restore`] links them again.
    pub fn cut(&mut self, a: &str, b: &str) {
        let ends: Vec<(String, ConnId)> =
            self.links.iter().filter(|((app, _), (other, _))| (app == a && other == b) || (app == b && other == a)).map(|(k, _)| k.clone()).collect();
        for (app, conn) in ends {
            self.links.remove(&(app.clone(), conn));
            let actions = self.relay(&app).link_closed(conn);
            self.queue.push_back(Step::Relay { app, actions });
        }
    }

    /// Links `a` and `b` again after [`Self::cut`]: one link dialed by each.
    pub fn restore(&mut self, a: &str, b: &str) {
        self.link(a, b);
        self.link(b, a);
    }

    fn relay(&mut self, app: &str) -> &mut RelayCore {
        &mut self.relays.get_mut(app).expect("a relay of the harness").core
    }

    /// A new device (`name@app/n`), registering itself if it is its user's first device; with
    /// `durable`, its state goes to a disk through the persistence handshake.
    pub fn add_device(&mut self, user: &str, device_id: u32, durable: bool) -> DeviceId {
        let config = EndpointConfig {
            prekeys: 20,
            storage: if durable { Storage::Durable } else { Storage::InMemory },
            ..EndpointConfig::default()
        };
        self.add_device_with(user, device_id, config)
    }

    /// Like [`Self::add_device`], with `config` as given: its `storage` decides whether the
    /// device gets a disk.
    pub fn add_device_with(&mut self, user: &str, device_id: u32, config: EndpointConfig) -> DeviceId {
        let app = switchboard_wire::address::UserAddress::split(user).expect("name@app").1.to_owned();
        let endpoint = Endpoint::new(ProtocolAddress::new(user, device_id), None, config, &mut self.rng);
        let disk = (config.storage == Storage::Durable).then(Disk::default);
        self.devices.push(DeviceNode {
            endpoint,
            app,
            config,
            conn: None,
            disk,
            hold_persistence: false,
            hold_frames: false,
            held: Vec::new(),
            events: Vec::new(),
            sent: Vec::new(),
            frames: Vec::new(),
            recent_deliveries: VecDeque::new(),
            shown: BTreeSet::new(),
        });
        let id = self.devices.len() - 1;
        self.pump(id);
        id
    }

    /// Connects device `d` to its relay.
    pub fn connect(&mut self, d: DeviceId) {
        if self.devices[d].conn.is_some() {
            return;
        }
        let conn = self.conn();
        let app = self.devices[d].app.clone();
        self.relay(&app).client_connected(conn, None);
        self.conns.insert(conn, d);
        self.devices[d].conn = Some(conn);
        let now = self.now;
        self.devices[d].endpoint.connected(now);
        self.pump(d);
    }

    /// Drops device `d`'s connection (frames in flight to or from it are lost).
    pub fn disconnect(&mut self, d: DeviceId) {
        let Some(conn) = self.devices[d].conn.take() else { return };
        self.conns.remove(&conn);
        let app = self.devices[d].app.clone();
        self.relay(&app).client_closed(conn);
        let now = self.now;
        self.devices[d].endpoint.disconnected(now);
        self.pump(d);
    }

    /// The device process dies and starts again from its disk: what it had not persisted is
    /// gone. It comes back offline.
    pub fn crash(&mut self, d: DeviceId) {
        self.disconnect(d);
        let node = &mut self.devices[d];
        let disk = node.disk.as_ref().expect("a durable device");
        node.endpoint = disk.restore(node.config, &mut self.rng);
        node.hold_persistence = false;
        self.pump(d);
    }

    /// Runs `f` on device `d`'s endpoint at the current time, then carries out what it asked.
    pub fn with<T>(&mut self, d: DeviceId, f: impl FnOnce(&mut Endpoint, Duration, &mut StdRng) -> T) -> T {
        let now = self.now;
        let result = f(&mut self.devices[d].endpoint, now, &mut self.rng);
        self.pump(d);
        result
    }

    /// Hands the frames held for device `d` over, in the order `order` gives (indices into
    /// what was held).
    pub fn release_held(&mut self, d: DeviceId, order: impl IntoIterator<Item = usize>) {
        let held = std::mem::take(&mut self.devices[d].held);
        for index in order {
            let bytes = held[index].clone();
            let now = self.now;
            self.devices[d].hand(now, &bytes, &mut self.rng);
            self.pump(d);
        }
    }

    /// Persists, transmits and collects events for device `d`.
    fn pump(&mut self, d: DeviceId) {
        let node = &mut self.devices[d];
        if !node.hold_persistence {
            if let Some(persist) = node.endpoint.poll_persist() {
                if let Some(disk) = node.disk.as_mut() {
                    disk.write(&node.endpoint, &persist);
                }
                node.endpoint.persisted(persist.generation);
            }
        }
        // Events before frames, so that an acknowledgement is checked against what was shown.
        while let Some(event) = node.endpoint.poll_event() {
            if let Event::Message { from, envelope, .. } = &event {
                node.shown.insert(SeenKey::of(from, envelope).to_bytes());
            }
            node.events.push(event);
        }
        while let Some(transmit) = node.endpoint.poll_transmit() {
            node.sent.push(transmit.what);
            if let Ok(frame) = switchboard_wire::decode::<ClientFrame>(&transmit.bytes, usize::MAX) {
                node.check_acknowledgement(&frame);
                node.frames.push(frame);
            }
            if let Some(conn) = node.conn {
                self.queue.push_back(Step::ToRelay { app: node.app.clone(), conn, bytes: transmit.bytes });
            }
        }
    }

    /// Runs until nothing is left to do now (timers not yet due are left).
    pub fn settle(&mut self) {
        for _ in 0..MAX_STEPS {
            let Some(step) = self.queue.pop_front() else {
                if !self.commit() {
                    return;
                }
                continue;
            };
            match step {
                Step::ToRelay { app, conn, bytes } => {
                    let actions = self.relay(&app).client_frame(conn, &bytes);
                    self.queue.push_back(Step::Relay { app, actions });
                }
                Step::ToDevice { conn, bytes } => {
                    let Some(&d) = self.conns.get(&conn) else { continue };
                    if self.devices[d].hold_frames {
                        self.devices[d].held.push(bytes);
                        continue;
                    }
                    let now = self.now;
                    self.devices[d].hand(now, &bytes, &mut self.rng);
                    self.pump(d);
                }
                Step::Relay { app, actions } => self.actions(&app, actions),
            }
        }
        panic!("the harness did not settle in {MAX_STEPS} steps");
    }

    fn actions(&mut self, app: &str, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::ToClient { conn, frame } => self.queue.push_back(Step::ToDevice { conn, bytes: frame.encode_to_vec() }),
                Action::ToLink { conn, frame } => {
                    let Some((other, their_conn)) = self.links.get(&(app.to_owned(), conn)).cloned() else { continue };
                    let more = self.relay(&other).link_frame(their_conn, &frame.encode_to_vec());
                    self.queue.push_back(Step::Relay { app: other, actions: more });
                }
                Action::StorageFailed(error) => panic!("a memory store failed: {error}"),
                Action::Close { conn } => {
                    if let Some(&d) = self.conns.get(&conn) {
                        self.disconnect(d);
                    }
                }
            }
        }
    }

    /// Commits every relay's pending batch; whether any was.
    fn commit(&mut self) -> bool {
        let mut any = false;
        for (app, node) in &mut self.relays {
            if let Some(batch) = node.core.take_batch() {
                node.durable.commit(&batch.mutations).expect("a memory store does not fail");
                let actions = node.core.committed(batch.id);
                self.queue.push_back(Step::Relay { app: app.clone(), actions });
                any = true;
            }
        }
        any
    }

    /// Advances the clock by `by`, firing every timer (endpoints' and relays') that comes due,
    /// settling after each.
    pub fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        self.settle();
        loop {
            let next_device = self.devices.iter().enumerate().filter_map(|(d, n)| n.endpoint.poll_timeout().map(|t| (t, d))).min();
            let next_relay = self.relays.values().map(|r| r.next_tick).min();
            let next = match (next_device, next_relay) {
                (Some((t, _)), Some(r)) => t.min(r),
                (Some((t, _)), None) => t,
                (None, Some(r)) => r,
                (None, None) => end,
            };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            for d in 0..self.devices.len() {
                if self.devices[d].endpoint.poll_timeout().is_some_and(|t| t <= self.now) {
                    let now = self.now;
                    self.devices[d].endpoint.handle_timeout(now, &mut self.rng);
                    self.pump(d);
                }
            }
            let due: Vec<String> = self.relays.iter().filter(|(_, r)| r.next_tick <= self.now).map(|(a, _)| a.clone()).collect();
            for app in due {
                let now = self.now;
                let node = self.relays.get_mut(&app).expect("listed");
                node.next_tick = now + RELAY_TICK;
                let actions = node.core.tick(now.as_secs());
                self.queue.push_back(Step::Relay { app, actions });
            }
            self.settle();
        }
        self.now = end;
    }

    /// Events of device `d` so far, taken.
    pub fn take_events(&mut self, d: DeviceId) -> Vec<Event> {
        std::mem::take(&mut self.devices[d].events)
    }

    /// Application contents device `d` received so far (taken), with their senders.
    pub fn take_messages(&mut self, d: DeviceId) -> Vec<(ProtocolAddress, Option<String>, Vec<u8>)> {
        let events = self.take_events(d);
        events
            .into_iter()
            .filter_map(|event| match event {
                Event::Message { from, group, content, .. } => Some((from, group, content)),
                _ => None,
            })
            .collect()
    }

    /// How many acknowledgement frames device `d` wrote, and how many envelopes they named.
    pub fn acks_sent(&self, d: DeviceId) -> (usize, usize) {
        let acks: Vec<usize> = self.devices[d]
            .frames
            .iter()
            .filter_map(|frame| match &frame.body {
                Some(client_frame::Body::Acknowledge(ack)) => Some(ack.envelopes.len()),
                _ => None,
            })
            .collect();
        (acks.len(), acks.iter().sum())
    }

    /// Envelopes waiting in relay `app`'s durable mailboxes.
    pub fn mailbox_len(&self, app: &str) -> usize {
        self.relays[app].durable.state().mailboxes.values().map(|m| m.len()).sum()
    }

    /// A frame straight to device `d`, as if its relay had sent it.
    pub fn inject_frame(&mut self, d: DeviceId, frame: &ServerFrame) {
        self.inject_bytes(d, &frame.encode_to_vec());
    }

    /// Bytes straight to device `d`, as if its relay had sent them (whatever they are).
    pub fn inject_bytes(&mut self, d: DeviceId, bytes: &[u8]) {
        let now = self.now;
        self.devices[d].hand(now, bytes, &mut self.rng);
        self.pump(d);
    }
}
