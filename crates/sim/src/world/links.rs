//! The network side of the world: connections between devices and relays and between relays,
//! frames through links (delay and faults), what relays do with them, and commits.

use std::time::Instant;

use rand::RngExt;
use switchboard_relay_core::Action;
use switchboard_relay_core::storage::Store;
use switchboard_wire::Message;
use switchboard_wire::switchboard::{FederationFrame, ServerFrame, federation_frame, server_frame};

use super::{ADVERSARY_HOLD_US, Conn, ConnKind, Event, RECONNECT_US, REDIAL_US, SECOND, World};
use crate::client;
use switchboard_client_core::endpoint::id16;
use crate::network::{Fate, RESET_DETECTION_US};
use crate::relay::{COMMIT_US, Decision};
use crate::scenario::AdversaryKind;
use crate::trace::{Node, TraceEvent};

impl World {
    pub(super) fn new_conn(&mut self, kind: ConnKind, replays: bool) -> u64 {
        let id = self.next_conn;
        self.next_conn += 1;
        let history = replays.then(Default::default);
        self.conns.insert(id, Conn { kind, broken: false, last_arrival: [0, 0], history });
        id
    }

    pub(super) fn connect(&mut self, device: usize) {
        if self.offline_windows[device] > 0 || self.client_conn[device].is_some() || !self.clients[device].can_connect() {
            return;
        }
        let relay = self.clients[device].app;
        if !self.relays[relay].is_up() {
            self.schedule(self.now + RECONNECT_US, Event::Connect { device });
            return;
        }
        let replays = self.access[relay].spec.replay > 0.0;
        let conn = self.new_conn(ConnKind::Client { device, relay }, replays);
        self.client_conn[device] = Some(conn);
        if let Some(core) = self.relays[relay].core.as_mut() {
            core.client_connected(conn, None);
        }
        let mut out = Vec::new();
        self.clients[device].connected(self.now, &mut out);
        self.client_out(device, out);
    }

    pub(super) fn partitioned(&self, a: usize, b: usize) -> bool {
        let (a, b) = (a.min(b), a.max(b));
        self.partitions.iter().any(|(x, y, from, until)| (*x, *y) == (a, b) && (*from..*until).contains(&self.now))
    }

    pub(super) fn dial(&mut self, dialer: usize, acceptor: usize) {
        if !self.relays[dialer].is_up() {
            return; // it dials again when it restarts
        }
        if !self.relays[acceptor].is_up() || self.partitioned(dialer, acceptor) {
            self.schedule(self.now + REDIAL_US, Event::Dial { dialer, acceptor });
            return;
        }
        let link = &self.federation[&(dialer.min(acceptor), dialer.max(acceptor))];
        let replays = link.spec.replay > 0.0;
        let conn = self.new_conn(ConnKind::Link { dialer, acceptor }, replays);
        let (dialer_app, acceptor_app) = (self.app_names[dialer].clone(), self.app_names[acceptor].clone());
        if let Some(core) = self.relays[acceptor].core.as_mut() {
            core.link_up(conn, &dialer_app, false);
        }
        let actions = self.relays[dialer].core.as_mut().map(|core| core.link_up(conn, &acceptor_app, true)).unwrap_or_default();
        self.relay_actions(dialer, actions);
    }

    /// A connection is gone: both ends learn it, and the side that opens it tries again.
    pub(super) fn conn_down(&mut self, conn: u64) {
        let Some(closed) = self.conns.remove(&conn) else { return };
        match closed.kind {
            ConnKind::Client { device, relay } => {
                self.trace.record(TraceEvent::Reset { at_us: self.now, a: Node::Device(device), b: Node::Relay(relay) });
                if let Some(core) = self.relays[relay].core.as_mut() {
                    core.client_closed(conn);
                }
                if self.client_conn[device] == Some(conn) {
                    self.client_conn[device] = None;
                }
                self.clients[device].disconnected(self.now);
                if self.offline_windows[device] == 0 {
                    let jitter = self.rng.random_range(0..RECONNECT_US);
                    self.schedule(self.now + RECONNECT_US + jitter, Event::Connect { device });
                }
            }
            ConnKind::Link { dialer, acceptor } => {
                self.trace.record(TraceEvent::Reset { at_us: self.now, a: Node::Relay(dialer), b: Node::Relay(acceptor) });
                if let Some(core) = self.relays[acceptor].core.as_mut() {
                    core.link_closed(conn);
                }
                let actions = self.relays[dialer].core.as_mut().map(|core| core.link_closed(conn)).unwrap_or_default();
                self.relay_actions(dialer, actions);
                self.schedule(self.now + REDIAL_US, Event::Dial { dialer, acceptor });
            }
        }
    }

    pub(super) fn crash(&mut self, relay: usize, down_us: u64) {
        if !self.relays[relay].is_up() {
            return;
        }
        self.relays[relay].crash();
        self.faults.crashes += 1;
        self.trace.record(TraceEvent::Crashed { at_us: self.now, relay });
        let mut touching: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| match c.kind {
                ConnKind::Client { relay: r, .. } => r == relay,
                ConnKind::Link { dialer, acceptor } => dialer == relay || acceptor == relay,
            })
            .map(|(id, _)| *id)
            .collect();
        touching.sort_unstable();
        for conn in touching {
            self.conn_down(conn);
        }
        self.schedule(self.now + down_us, Event::Restart { relay });
        for other in 0..self.relays.len() {
            if other != relay {
                self.schedule(self.now + down_us + 1, Event::Dial { dialer: relay, acceptor: other });
            }
        }
    }

    // ---- frames ----------------------------------------------------------------------------------

    pub(super) fn ends(kind: ConnKind, toward: usize) -> (Node, Node) {
        match (kind, toward) {
            (ConnKind::Client { device, relay }, 0) => (Node::Device(device), Node::Relay(relay)),
            (ConnKind::Client { device, relay }, _) => (Node::Relay(relay), Node::Device(device)),
            (ConnKind::Link { dialer, acceptor }, 0) => (Node::Relay(dialer), Node::Relay(acceptor)),
            (ConnKind::Link { dialer, acceptor }, _) => (Node::Relay(acceptor), Node::Relay(dialer)),
        }
    }

    /// Puts a frame on a connection, through the link's delay and faults.
    pub(super) fn send(&mut self, conn: u64, toward: usize, bytes: Vec<u8>, what: &'static str, extra_delay: u64) {
        let Some(c) = self.conns.get(&conn) else { return };
        if c.broken {
            return;
        }
        let kind = c.kind;
        let (from, to) = Self::ends(kind, toward);
        self.trace.record(TraceEvent::Sent { at_us: self.now, from, to, bytes: bytes.len(), what });
        if let (Some(harvester), ConnKind::Client { .. }) = (self.harvester.as_mut(), kind) {
            // Every envelope crosses a device's link first, and every bundle last.
            if toward == 0 { harvester.from_device(&bytes) } else { harvester.to_device(&bytes) }
        }
        let (link, partitioned) = match kind {
            ConnKind::Client { relay, .. } => {
                let load = &mut self.access_load[relay];
                load.frames += 1;
                load.bytes += bytes.len() as u64;
                (&self.access[relay], false)
            }
            ConnKind::Link { dialer, acceptor } => {
                let key = (dialer.min(acceptor), dialer.max(acceptor));
                let load = self.federation_load.entry(key).or_default();
                load.frames += 1;
                load.bytes += bytes.len() as u64;
                (&self.federation[&key], self.partitioned(dialer, acceptor))
            }
        };
        let fate = if partitioned { Fate::Resets { fault: "partition" } } else { link.fate(self.now, &mut self.rng) };
        let replay = !partitioned && link.replays(self.now, &mut self.rng);
        match fate {
            Fate::Resets { fault } => {
                match fault {
                    "drop" => self.faults.dropped += 1,
                    "corrupt" => self.faults.corrupted += 1,
                    _ => self.faults.partitioned += 1,
                }
                self.faults.resets += 1;
                self.trace.record(TraceEvent::Fault { at_us: self.now, from, to, fault });
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.broken = true;
                }
                self.schedule(self.now + RESET_DETECTION_US, Event::ConnDown { conn });
            }
            Fate::Arrives { delay_us, duplicate_after_us, reordered } => {
                let c = self.conns.get_mut(&conn).expect("checked above");
                let mut at = self.now + delay_us + extra_delay;
                if reordered || extra_delay > 0 {
                    self.faults.reordered += u64::from(reordered);
                } else {
                    at = at.max(c.last_arrival[toward]);
                    c.last_arrival[toward] = at;
                }
                let earlier = match (&mut c.history, replay) {
                    (Some(history), true) => history[toward].pick(&mut self.rng),
                    _ => None,
                };
                if let Some(history) = c.history.as_mut() {
                    history[toward].remember(what, &bytes);
                }
                if let Some(after) = duplicate_after_us {
                    self.faults.duplicated += 1;
                    self.trace.record(TraceEvent::Fault { at_us: self.now, from, to, fault: "duplicate" });
                    self.schedule(at + after, Event::Frame { conn, toward, bytes: bytes.clone(), what, again: true });
                }
                if let Some((earlier_what, earlier)) = earlier {
                    self.faults.replayed += 1;
                    self.trace.record(TraceEvent::Fault { at_us: self.now, from, to, fault: "replay" });
                    self.schedule(at + 1, Event::Frame { conn, toward, bytes: earlier, what: earlier_what, again: true });
                }
                self.schedule(at, Event::Frame { conn, toward, bytes, what, again: false });
            }
        }
    }

    pub(super) fn frame_arrived(&mut self, conn: u64, toward: usize, bytes: Vec<u8>, what: &'static str, again: bool) {
        let Some(c) = self.conns.get(&conn) else { return };
        if c.broken {
            return;
        }
        let kind = c.kind;
        let (from, to) = Self::ends(kind, toward);
        self.trace.record(TraceEvent::Arrived { at_us: self.now, from, to, bytes: bytes.len(), what, again });
        match (kind, toward) {
            (ConnKind::Client { relay, .. }, 0) => {
                let node = &mut self.relays[relay];
                // A report opens one message to the reporter's own app, on purpose.
                if what != "report" {
                    node.inspect(&bytes);
                }
                let Some(core) = node.core.as_mut() else { return };
                let started = Instant::now();
                let actions = core.client_frame(conn, &bytes);
                node.stats.busy += started.elapsed();
                self.relay_actions(relay, actions);
            }
            (ConnKind::Client { device, .. }, _) => {
                if self.victims.contains_key(&device) {
                    self.capture_for_thief(device, &bytes);
                }
                let mut out = Vec::new();
                let mut outcomes = Vec::new();
                let started = Instant::now();
                self.clients[device].frame_arrived(self.now, &bytes, &mut crate::harvest::Watched::new(&mut self.rng, self.harvester.as_mut()), &mut out, &mut outcomes);
                self.client_busy[self.clients[device].app] += started.elapsed();
                self.client_out(device, out);
                self.outcomes(device, outcomes);
            }
            (ConnKind::Link { dialer, acceptor }, toward) => {
                let relay = if toward == 0 { acceptor } else { dialer };
                let node = &mut self.relays[relay];
                node.inspect(&bytes);
                let Some(core) = node.core.as_mut() else { return };
                let started = Instant::now();
                let actions = core.link_frame(conn, &bytes);
                node.stats.busy += started.elapsed();
                self.relay_actions(relay, actions);
            }
        }
    }

    /// Frames a device wants sent, on its current connection; a retry scheduled if it asked.
    pub(super) fn client_out(&mut self, device: usize, out: Vec<client::OutFrame>) {
        if let Some(conn) = self.client_conn[device] {
            for frame in out {
                self.send(conn, 0, frame.bytes, frame.what, 0);
            }
        }
        self.record_changes(device);
        for (device_id, credential) in std::mem::take(&mut self.clients[device].linked) {
            let user = &self.users[self.user_of[device]];
            if let Some(&sibling) = user.devices.iter().find(|d| self.clients[**d].address.device_id() == device_id) {
                self.clients[sibling].set_credential(credential);
                self.schedule(self.now + 1, Event::Connect { device: sibling });
            }
        }
        if let Some(at_us) = self.clients[device].next_timeout_us() {
            if self.timer_at[device].is_none_or(|scheduled| at_us < scheduled) {
                self.timer_at[device] = Some(at_us);
                self.schedule(at_us.max(self.now), Event::ClientTimer { device, at_us });
            }
        }
    }

    pub(super) fn relay_actions(&mut self, relay: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::ToClient { conn, frame } => self.to_client(relay, conn, frame),
                Action::ToLink { conn, frame } => {
                    let Some(c) = self.conns.get(&conn) else { continue };
                    let toward = match c.kind {
                        ConnKind::Link { dialer, .. } if dialer == relay => 0,
                        _ => 1,
                    };
                    let what = federation_what(&frame);
                    self.send(conn, toward, frame.encode_to_vec(), what, 0);
                }
                Action::Close { conn } => self.conn_down(conn),
                Action::StorageFailed(error) => panic!("a memory store failed: {error}"),
            }
        }
        self.maybe_commit(relay);
    }

    /// A frame from a relay to one of its devices, through the relay's adversary if it has one.
    pub(super) fn to_client(&mut self, relay: usize, conn: u64, mut frame: ServerFrame) {
        let Some(ConnKind::Client { device, .. }) = self.conns.get(&conn).map(|c| c.kind) else { return };
        if self.rogue_answer(device, &frame) {
            return;
        }
        if let Some(server_frame::Body::Deliver(envelope)) = &frame.body {
            self.reuse_id(device, envelope);
        }
        let mut extra_delay = 0;
        let mut replay_later = None;
        if let (Some(adversary), Some(server_frame::Body::Bundles(bundles))) = (self.relays[relay].adversary.as_mut(), frame.body.as_mut())
            && adversary.kind == AdversaryKind::StripSuites
            && adversary.decide_frame(device, &mut self.rng) == Decision::Act
        {
            // The bundles then read as plain libsignal bundles: their signed prekeys still verify.
            for bundle in bundles.devices.iter_mut().filter_map(|device| device.bundle.as_mut()) {
                bundle.suites.clear();
                bundle.suites_signature.clear();
            }
            self.ledger.bundles_stripped += 1;
            self.trace.record(TraceEvent::Adversary { at_us: self.now, relay, device, action: "strip-suites" });
        }
        if let (Some(adversary), Some(server_frame::Body::PersonFound(found))) = (self.relays[relay].adversary.as_mut(), frame.body.as_mut())
            && adversary.kind == AdversaryKind::ForgeLink
            && adversary.decide_frame(device, &mut self.rng) == Decision::Act
            && let Some(record) = found.record.as_mut()
        {
            // A link added (an account of its own making, with a device whose key it holds and
            // which cross-signs her person key as a device of hers would), or one of hers hidden:
            // either way a record her person key did not sign.
            if record.accounts.len() > 1 && self.rng.random::<bool>() {
                record.accounts.pop();
            } else if let Ok(person_key) = switchboard_session::IdentityKey::from_bytes(&record.person_key) {
                let device_key = switchboard_session::IdentityKeyPair::generate(&mut self.rng);
                let user = format!("forged@{}", self.app_names[relay]);
                let signed = switchboard_client_core::person::device_signed_bytes(&person_key, &user, 1);
                let signature = device_key.private_key().sign(&signed, &mut self.rng).to_vec();
                let identity_key = device_key.identity_key().serialize().to_vec();
                let device = switchboard_wire::switchboard::LinkedDevice { device_id: 1, identity_key, signature };
                record.accounts.push(switchboard_wire::switchboard::LinkedAccount {
                    user,
                    visibility: switchboard_wire::switchboard::Visibility::Public as i32,
                    devices: vec![device],
                    shown_to: Vec::new(),
                });
            }
            self.ledger.forged_records.insert(record.encode_to_vec());
            self.ledger.links_forged += 1;
            self.trace.record(TraceEvent::Adversary { at_us: self.now, relay, device, action: "forge-link" });
        }
        if let (Some(adversary), Some(server_frame::Body::Deliver(envelope))) = (self.relays[relay].adversary.as_mut(), frame.body.as_mut())
            && matches!(adversary.kind, AdversaryKind::Tamper | AdversaryKind::Withhold | AdversaryKind::Reorder | AdversaryKind::Replay)
        {
            let id = id16(&envelope.id);
            if adversary.decide(device, id, &mut self.rng) == Decision::Act {
                let action = match adversary.kind {
                    AdversaryKind::Tamper => {
                        if !envelope.content.is_empty() {
                            let at = self.rng.random_range(0..envelope.content.len());
                            let mut content = envelope.content.to_vec();
                            content[at] ^= 0x01 << self.rng.random_range(0..8);
                            envelope.content = content.into();
                        }
                        self.ledger.tampered.insert((device, id));
                        "tamper"
                    }
                    AdversaryKind::Withhold => {
                        self.ledger.withheld.insert((device, id));
                        self.trace.record(TraceEvent::Adversary { at_us: self.now, relay, device, action: "withhold" });
                        return;
                    }
                    AdversaryKind::Reorder => {
                        extra_delay = self.rng.random_range(0..ADVERSARY_HOLD_US);
                        "reorder"
                    }
                    AdversaryKind::Replay => {
                        replay_later = Some(self.rng.random_range(SECOND / 2..5 * SECOND));
                        self.ledger.replayed += 1;
                        "replay"
                    }
                    // Strip-suites and forge-link act on other frames (above); the others are
                    // devices, not relays.
                    AdversaryKind::StripSuites
                    | AdversaryKind::ForgeLink
                    | AdversaryKind::ForgeMembership
                    | AdversaryKind::ReuseIds
                    | AdversaryKind::Flood
                    | AdversaryKind::HarvestNow => {
                        unreachable!("not an envelope adversary")
                    }
                };
                self.trace.record(TraceEvent::Adversary { at_us: self.now, relay, device, action });
            }
        }
        let what = server_what(&frame);
        let bytes = frame.encode_to_vec();
        if let Some(after) = replay_later {
            // Straight onto the connection, past the link's faults: the relay sends it again.
            self.schedule(self.now + after, Event::Frame { conn, toward: 1, bytes: bytes.clone(), what, again: true });
        }
        self.send(conn, 1, bytes, what, extra_delay);
    }

    pub(super) fn maybe_commit(&mut self, relay: usize) {
        let node = &mut self.relays[relay];
        if node.committing.is_some() {
            return;
        }
        let Some(batch) = node.core.as_mut().and_then(|core| core.take_batch()) else { return };
        node.committing = Some(batch);
        let epoch = node.epoch;
        self.schedule(self.now + COMMIT_US, Event::Commit { relay, epoch });
    }

    pub(super) fn commit(&mut self, relay: usize, epoch: u32) {
        let node = &mut self.relays[relay];
        if node.epoch != epoch {
            return; // the relay crashed meanwhile: that batch never reached the disk
        }
        let Some(batch) = node.committing.take() else { return };
        if self.scenario.consent.blocks > 0 {
            // Against what the disk held before this batch: a block made durable earlier.
            let stored_blocked = node.disk.read_state(|state| super::consent::stored_from_blocked(state, &batch.mutations));
            for (device, sender) in stored_blocked {
                self.consent.relay_stored_blocked(&node.app, &device, &sender);
            }
        }
        let node = &mut self.relays[relay];
        node.disk.commit(&batch.mutations).expect("a memory store does not fail");
        let Some(core) = node.core.as_mut() else { return };
        let started = Instant::now();
        let actions = core.committed(batch.id);
        node.stats.busy += started.elapsed();
        self.relay_actions(relay, actions);
    }
}

fn server_what(frame: &ServerFrame) -> &'static str {
    match &frame.body {
        Some(server_frame::Body::Done(_)) => "done",
        Some(server_frame::Body::Failure(_)) => "failure",
        Some(server_frame::Body::Registered(_)) => "registered",
        Some(server_frame::Body::Bundles(_)) => "bundles",
        Some(server_frame::Body::Deliver(_)) => "deliver",
        Some(server_frame::Body::Blob(_)) => "blob",
        Some(server_frame::Body::PrekeyCount(_)) => "prekey count",
        Some(server_frame::Body::GroupHead(_)) => "group head",
        Some(server_frame::Body::PersonFound(_)) => "person found",
        Some(server_frame::Body::DevicesChanged(_)) => "devices changed",
        Some(server_frame::Body::ChannelInfo(_)) => "channel info",
        None => "?",
    }
}

fn federation_what(frame: &FederationFrame) -> &'static str {
    match &frame.body {
        Some(federation_frame::Body::Forward(_)) => "forward",
        Some(federation_frame::Body::ForwardGroup(_)) => "forward group",
        Some(federation_frame::Body::FetchBundles(_)) => "fetch bundles",
        Some(federation_frame::Body::Bundles(_)) => "bundles",
        Some(federation_frame::Body::Acknowledge(_)) => "ack",
        Some(federation_frame::Body::Failure(_)) => "failure",
        Some(federation_frame::Body::FetchBlob(_)) => "fetch blob",
        Some(federation_frame::Body::Blob(_)) => "blob",
        Some(federation_frame::Body::OrderChange(_)) => "order change",
        Some(federation_frame::Body::FetchHead(_)) => "fetch head",
        Some(federation_frame::Body::GroupHead(_)) => "group head",
        Some(federation_frame::Body::LookupPerson(_)) => "lookup person",
        Some(federation_frame::Body::PersonFound(_)) => "person found",
        Some(federation_frame::Body::SendToUser(_)) => "send to user",
        Some(federation_frame::Body::DevicesChanged(_)) => "devices changed",
        Some(federation_frame::Body::CheckStamp(_)) => "check stamp",
        Some(federation_frame::Body::FollowChannel(_)) => "follow channel",
        Some(federation_frame::Body::ChannelInfo(_)) => "channel info",
        None => "?",
    }
}
